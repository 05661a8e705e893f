//! What a step needs from the outside world, built once per process: the
//! store, the AWS capabilities, the clock and the settings read from the
//! environment. Missing configuration fails at start with a clear message.
//! One SDK config is loaded; service clients other than the store's are
//! built from it on first use (`aws::LazyClient`).

use crate::aws::{AutoScaling, Ec2, Mailer};
use crate::store::{DynamoStore, Store};
use chrono::{DateTime, Utc};
use std::sync::Arc;

pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Settings from environment variables.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    pub table_name: String,
    /// SES sender identity; without it notifications are skipped (and recorded so).
    pub sender_email: Option<String>,
    pub region: String,
}

impl Settings {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let table_name = get("TABLE_NAME")
            .filter(|v| !v.trim().is_empty())
            .ok_or("TABLE_NAME is not set: it must name the deployments DynamoDB table")?;
        Ok(Self {
            table_name,
            sender_email: get("SENDER_EMAIL").filter(|v| !v.trim().is_empty()),
            region: get("AWS_REGION")
                .or_else(|| get("AWS_DEFAULT_REGION"))
                .unwrap_or_else(|| "us-east-1".into()),
        })
    }
}

pub struct Deps {
    pub store: Arc<dyn Store>,
    pub ec2: Ec2,
    pub asg: AutoScaling,
    pub mailer: Mailer,
    pub clock: Arc<dyn Clock>,
    pub settings: Settings,
    /// Where the deployments' metric lines go (stdout: the function's log group).
    pub metrics: Arc<dyn crate::metrics::MetricSink>,
    /// Completes the waiting states' task tokens (Step Functions, built on first use).
    pub tokens: Arc<dyn crate::aws::TaskTokens>,
    /// The SDK config the clients were built from (None where tests give
    /// mocked clients): the safety net builds its Step Functions client from
    /// it, so every call of the function goes with the same credentials.
    pub config: Option<Arc<aws_config::SdkConfig>>,
}

impl Deps {
    /// One shared SDK config for all clients (endpoints, region and
    /// credentials from the Lambda runtime's variables: `aws::config`).
    pub async fn from_env() -> Result<Self, String> {
        let settings = Settings::from_env()?;
        let config = crate::aws::config::from_env()?;
        crate::stage::mark("config");
        let deps = Self::from_config(&config, settings);
        crate::stage::mark("clients");
        Ok(deps)
    }

    /// The store's client is built now (every step reads its record first);
    /// EC2, Auto Scaling and SES clients on first use, so a step builds (and
    /// its binary links the setup of) only the clients it calls.
    pub fn from_config(config: &aws_config::SdkConfig, settings: Settings) -> Self {
        let shared = Arc::new(config.clone());
        Self {
            store: Arc::new(DynamoStore::new(
                aws_sdk_dynamodb::Client::new(config),
                settings.table_name.clone(),
            )),
            ec2: Ec2::lazy(shared.clone()),
            asg: AutoScaling::lazy(shared.clone()),
            mailer: Mailer::lazy(shared.clone()),
            clock: Arc::new(SystemClock),
            settings,
            metrics: Arc::new(crate::metrics::Stdout),
            tokens: Arc::new(crate::aws::StepFunctions::lazy(shared.clone())),
            config: Some(shared),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_table_name_is_a_clear_start_error() {
        let err = Settings::from_lookup(|_| None).unwrap_err();
        assert!(err.contains("TABLE_NAME"));
        let s = Settings::from_lookup(|k| (k == "TABLE_NAME").then(|| "t".to_string())).unwrap();
        assert_eq!(s.table_name, "t");
        assert_eq!(s.sender_email, None);
    }
}
