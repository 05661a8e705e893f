//! The Executions port: starting a Step Functions execution of the
//! deployment state machine (a capability, so handlers test without AWS).

use crate::error::StepError;
use async_trait::async_trait;

/// Starts Step Functions executions.
#[async_trait]
pub trait Executions: Send + Sync {
    /// Starts the execution `name` with `input`; returns its ARN.
    async fn start(&self, name: &str, input: &str) -> Result<String, StepError>;
}

/// [`Executions`] on Step Functions; the client is built on first use.
pub struct SfnExecutions {
    pub client: crate::aws::LazyClient<aws_sdk_sfn::Client>,
    pub state_machine_arn: String,
}

#[async_trait]
impl Executions for SfnExecutions {
    async fn start(&self, name: &str, input: &str) -> Result<String, StepError> {
        self.client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
            .map(|o| o.execution_arn().to_string())
            .map_err(|e| crate::error::classify_sdk_error("StartExecution", &e))
    }
}
