//! What Step Functions passes to a step and gets back: the execution state,
//! the state with its execution's ARN, the error a Catch recorded, and the
//! result of the waiting steps.

use crate::domain::{valid_deployment_id, valid_environment_id, RequestedOptions};
use crate::error::StepError;
use serde::{Deserialize, Serialize};

/// The execution state as Step Functions passes it to every Task: the start
/// input plus the results of earlier Tasks (each under its own ResultPath).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    pub deployment_id: String,
    pub environment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RequestedOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Poll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Poll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Poll>,
    /// Set by the ASL's Catch (`ResultPath: $.error`) when a step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CaughtError>,
    /// Finalization's previous result while it waits for the fleet to be
    /// rolled back or restored (`ResultPath: $.result`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Poll>,
    /// A cleanup execution (started by the safety net): the ARN of the
    /// execution whose deployment it finalizes. The ASL goes straight to
    /// Finalization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cleanup_of: Option<String>,
}

impl StepInput {
    pub(crate) fn check(&self) -> Result<(), StepError> {
        if !valid_environment_id(&self.environment_id) {
            return Err(StepError::BadInput(format!(
                "environmentId '{}' is not a valid environment id ([a-z0-9-]{{1,64}})",
                crate::domain::truncate(&self.environment_id, 80)
            )));
        }
        if !valid_deployment_id(&self.deployment_id) {
            return Err(StepError::BadInput(format!(
                "deploymentId '{}' is not a ULID",
                crate::domain::truncate(&self.deployment_id, 80)
            )));
        }
        Ok(())
    }
}

/// Initial validation's and Finalization's input, `{state, executionArn}`:
/// the state plus the execution ARN, which the ASL adds from the context
/// object (`$$.Execution.Id`): for the console link, and so a step can tell
/// whether its execution owns the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StateWithExecution {
    pub state: StepInput,
    #[serde(default)]
    pub execution_arn: Option<String>,
}

/// What Catch puts in `$.error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl CaughtError {
    /// The human message: Lambda wraps it as JSON `{"errorMessage": ...}`,
    /// activities and States.* errors give plain text.
    pub fn message(&self) -> String {
        let cause = self.cause.as_deref().unwrap_or("");
        serde_json::from_str::<serde_json::Value>(cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| cause.to_string())
    }
}

/// A step's result. A waiting step returns `done: false` with what it waits
/// on; the ASL's waiting state then runs it again with a task token
/// (`steps::wake`), and any wake-up, or the state's timeout, leads back to
/// the check.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub done: bool,
    /// The wake-up keys (`steps::wake`): the waiting state passes them back
    /// when it registers its token.
    #[serde(default)]
    pub wake_on: Vec<String>,
}

impl Poll {
    pub fn done() -> Self {
        Self {
            done: true,
            wake_on: vec![],
        }
    }

    /// Not done: woken by any of `keys`.
    pub fn waiting_on(keys: impl IntoIterator<Item = String>) -> Self {
        Self {
            done: false,
            wake_on: keys.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caught_error_reads_lambda_and_plain_causes() {
        let lambda = CaughtError {
            error: "ImageFailed".into(),
            cause: Some(
                r#"{"errorType":"ImageFailed","errorMessage":"image ami-1 failed: disk"}"#.into(),
            ),
        };
        assert_eq!(lambda.message(), "image ami-1 failed: disk");
        let plain = CaughtError {
            error: "States.Timeout".into(),
            cause: Some("timed out".into()),
        };
        assert_eq!(plain.message(), "timed out");
    }

    #[test]
    fn step_input_rejects_bad_ids() {
        let i = StepInput {
            deployment_id: "x".into(),
            environment_id: "ok".into(),
            ..Default::default()
        };
        assert_eq!(i.check().unwrap_err().name(), "BadInput");
    }
}
