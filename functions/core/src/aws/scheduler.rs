//! EventBridge Scheduler capability: the one-time `at()` schedule that starts
//! a scheduled deployment (templated Step Functions target), moved or deleted.

use crate::error::{classify_sdk_error, StepError};
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{
    ActionAfterCompletion, DeadLetterConfig, FlexibleTimeWindow, FlexibleTimeWindowMode,
    RetryPolicy, Target,
};
use aws_sdk_scheduler::Client;

/// How long Scheduler keeps retrying a start that fails (then: the DLQ).
pub const MAX_EVENT_AGE_SECONDS: i32 = 1800;
pub const MAX_RETRY_ATTEMPTS: i32 = 10;

/// EventBridge Scheduler as the scheduling routes use it.
pub type Scheduler = super::Capability<Client>;

/// Everything a one-time schedule is made of.
#[derive(Debug, Clone, PartialEq)]
pub struct OneTimeSchedule {
    pub name: String,
    pub group: String,
    /// `at(yyyy-mm-ddThh:mm:ss)`, read in `timezone`.
    pub expression: String,
    pub timezone: String,
    pub description: String,
    /// The state machine ARN (templated Step Functions StartExecution target).
    pub target_arn: String,
    /// The role Scheduler assumes to start the state machine.
    pub role_arn: String,
    /// The execution input (JSON).
    pub input: String,
    pub dead_letter_arn: Option<String>,
}

impl OneTimeSchedule {
    fn target(&self) -> Result<Target, StepError> {
        Target::builder()
            .arn(&self.target_arn)
            .role_arn(&self.role_arn)
            .input(&self.input)
            .retry_policy(
                RetryPolicy::builder()
                    .maximum_event_age_in_seconds(MAX_EVENT_AGE_SECONDS)
                    .maximum_retry_attempts(MAX_RETRY_ATTEMPTS)
                    .build(),
            )
            .set_dead_letter_config(
                self.dead_letter_arn
                    .as_ref()
                    .map(|arn| DeadLetterConfig::builder().arn(arn).build()),
            )
            .build()
            .map_err(|e| StepError::BadInput(format!("schedule target: {e}")))
    }

    fn window() -> Result<FlexibleTimeWindow, StepError> {
        FlexibleTimeWindow::builder()
            .mode(FlexibleTimeWindowMode::Off)
            .build()
            .map_err(|e| StepError::BadInput(format!("schedule window: {e}")))
    }
}

/// The whole definition of a one-time schedule on a CreateSchedule or
/// UpdateSchedule request (two SDK builder types with the same setters;
/// UpdateSchedule replaces the whole definition, so both set all of it).
macro_rules! definition {
    ($request:expr, $s:expr) => {
        $request
            .name(&$s.name)
            .group_name(&$s.group)
            .schedule_expression(&$s.expression)
            .schedule_expression_timezone(&$s.timezone)
            .description(&$s.description)
            .flexible_time_window(OneTimeSchedule::window()?)
            .action_after_completion(ActionAfterCompletion::Delete)
            .target($s.target()?)
    };
}

impl Scheduler {
    /// Creates the schedule; the deployment id is the client token too, so a
    /// retried request cannot create a second one.
    pub async fn create(&self, s: &OneTimeSchedule) -> Result<String, StepError> {
        let res = definition!(self.client.create_schedule(), s)
            .client_token(&s.name)
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.schedule_arn().to_string()),
            Err(e) if e.code() == Some("ConflictException") => Err(StepError::InvalidState(
                format!("schedule {} already exists in group {}", s.name, s.group),
            )),
            Err(e) => Err(classify_sdk_error("CreateSchedule", &e)),
        }
    }

    /// Moves the schedule (UpdateSchedule replaces the whole definition);
    /// false when it no longer exists (it fired, or was deleted).
    pub async fn update(&self, s: &OneTimeSchedule) -> Result<bool, StepError> {
        let res = definition!(self.client.update_schedule(), s).send().await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(classify_sdk_error("UpdateSchedule", &e)),
        }
    }

    /// Deletes the schedule; false when it did not exist (fired or deleted).
    pub async fn delete(&self, group: &str, name: &str) -> Result<bool, StepError> {
        match self
            .client
            .delete_schedule()
            .group_name(group)
            .name(name)
            .client_token(format!("delete-{name}"))
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(false),
            Err(e) => Err(classify_sdk_error("DeleteSchedule", &e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_scheduler::operation::create_schedule::CreateScheduleOutput;
    use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleError;
    use aws_sdk_scheduler::types::error::ResourceNotFoundException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    fn schedule() -> OneTimeSchedule {
        OneTimeSchedule {
            name: "01JDEPLOY00000000000000000".into(),
            group: "autosky".into(),
            expression: "at(2026-12-01T14:30:00)".into(),
            timezone: "Europe/Paris".into(),
            description: "d".into(),
            target_arn: "arn:aws:states:us-east-1:1:stateMachine:sm".into(),
            role_arn: "arn:aws:iam::1:role/r".into(),
            input: "{\"deploymentId\":\"01JDEPLOY00000000000000000\"}".into(),
            dead_letter_arn: Some("arn:aws:sqs:us-east-1:1:dlq".into()),
        }
    }

    #[tokio::test]
    async fn create_sends_a_one_time_self_deleting_schedule_with_retries_and_dlq() {
        let create = mock!(Client::create_schedule)
            .match_requests(|r| {
                let t = r.target().unwrap();
                r.name() == Some("01JDEPLOY00000000000000000")
                    && r.group_name() == Some("autosky")
                    && r.schedule_expression() == Some("at(2026-12-01T14:30:00)")
                    && r.schedule_expression_timezone() == Some("Europe/Paris")
                    && r.action_after_completion() == Some(&ActionAfterCompletion::Delete)
                    && r.flexible_time_window().map(|w| w.mode())
                        == Some(&FlexibleTimeWindowMode::Off)
                    && r.client_token() == Some("01JDEPLOY00000000000000000")
                    && t.arn() == "arn:aws:states:us-east-1:1:stateMachine:sm"
                    && t.input()
                        .is_some_and(|i| i.contains("01JDEPLOY00000000000000000"))
                    && t.retry_policy().and_then(|p| p.maximum_retry_attempts())
                        == Some(MAX_RETRY_ATTEMPTS)
                    && t.dead_letter_config().and_then(|d| d.arn())
                        == Some("arn:aws:sqs:us-east-1:1:dlq")
            })
            .then_output(|| {
                CreateScheduleOutput::builder()
                    .schedule_arn("arn:s")
                    .build()
                    .unwrap()
            });
        let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&create]);
        let got = Scheduler::new(client).create(&schedule()).await.unwrap();
        assert_eq!(got, "arn:s");
        assert_eq!(create.num_calls(), 1);
    }

    #[tokio::test]
    async fn deleting_a_schedule_that_already_fired_is_not_an_error() {
        let del = mock!(Client::delete_schedule).then_error(|| {
            DeleteScheduleError::ResourceNotFoundException(
                ResourceNotFoundException::builder()
                    .message("gone")
                    .meta(
                        aws_sdk_scheduler::error::ErrorMetadata::builder()
                            .code("ResourceNotFoundException")
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
        });
        let client = mock_client!(aws_sdk_scheduler, RuleMode::MatchAny, [&del]);
        assert!(!Scheduler::new(client)
            .delete("autosky", "01JDEPLOY00000000000000000")
            .await
            .unwrap());
    }
}
