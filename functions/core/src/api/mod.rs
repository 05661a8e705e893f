//! The Deployments HTTP API: one framework-free router. In AWS two Lambda
//! functions (lambda_http, API Gateway payload v2) serve it, each its own
//! routes ([`handler::api`], [`handler::schedules`]); on loopback the sandbox
//! serves them all (`Api::handle`). Routes are typed ([`Route`]), each
//! naming the function serving it; the router dispatches on them, the
//! OpenAPI test compares them with `infra/openapi.yaml` and the template test
//! with the functions' events. This file holds [`Api`] and how it is built.

mod access;
mod audit;
mod deployments;
mod environments;
mod executions;
mod input;
#[cfg(feature = "http")]
pub mod lambda;
mod message;
pub mod page;
mod problem;
mod query;
mod rollback;
mod router;
mod routes;
mod schedules;
mod settings;
mod view;

pub use executions::{Executions, SfnExecutions};
pub use input::{valid_email, EnvironmentInput, RescheduleInput, ScheduleInput, StartInput};
pub use message::{ApiRequest, ApiResponse, MAX_BODY};
pub use problem::Problem;
pub use router::handler;
pub use routes::{route_of, Function, Route};
pub use settings::{AccessSettings, ApiSettings, ScheduleSettings, DEFAULT_GROUPS_CLAIM};
pub use view::{step_names, DeploymentView};

use crate::aws::{LazyClient, Scheduler};
use crate::deps::{Deps, Settings};
use std::sync::Arc;

/// What the handlers use: the steps' [`Deps`] (store, EC2 / Auto Scaling /
/// SES capabilities, clock, table / sender / region), plus the Scheduler,
/// the execution starter and the API's own settings.
pub struct Api {
    pub deps: Deps,
    pub scheduler: Scheduler,
    pub executions: Arc<dyn Executions>,
    pub settings: ApiSettings,
}

type ApiResult<T> = std::result::Result<T, Problem>;

impl Api {
    /// Configuration from the function's environment: TABLE_NAME,
    /// SENDER_EMAIL, SCHEDULE_GROUP, SCHEDULER_ROLE_ARN, SCHEDULE_DLQ_ARN,
    /// SCHEDULE_MIN_LEAD_SECONDS, STATE_MACHINE_ARN; one shared SDK config.
    pub async fn from_env() -> Result<Self, String> {
        let settings = Settings::from_env()?;
        let api = ApiSettings::from_lookup(|k| std::env::var(k).ok())?;
        let config = crate::aws::config::from_env()?;
        crate::stage::mark("config");
        let api = Self::from_config(&config, settings, api);
        crate::stage::mark("clients");
        Ok(api)
    }

    /// Every request reads the table, so the store's client is built now
    /// ([`Deps::from_config`]); the other clients on first use, so each
    /// function builds (and links the setup of) only those its routes call.
    pub fn from_config(
        config: &aws_config::SdkConfig,
        settings: Settings,
        api: ApiSettings,
    ) -> Self {
        let shared = Arc::new(config.clone());
        Self {
            deps: Deps::from_config(config, settings),
            scheduler: Scheduler::lazy(shared.clone()),
            executions: Arc::new(SfnExecutions {
                client: LazyClient::lazy(shared),
                state_machine_arn: api.state_machine_arn.clone(),
            }),
            settings: api,
        }
    }
}

#[cfg(test)]
mod tests;
