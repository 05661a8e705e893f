//! What Step Functions passes to a step and gets back: the execution state,
//! the state with its execution's ARN, the error a Catch recorded, and the
//! poll result of the waiting steps.

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
    /// Base poll interval of the wait loops (production 15 s; local runs 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<u64>,
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

    pub fn base_poll_seconds(&self) -> u64 {
        self.poll_seconds.unwrap_or(15).clamp(1, 300)
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

/// A step's result. Waiting steps return `done: false` and the ASL waits
/// `waitSeconds` before calling the same step again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub done: bool,
    #[serde(default)]
    pub wait_seconds: u64,
    #[serde(default)]
    pub attempt: u32,
}

impl Poll {
    pub fn done() -> Self {
        Self {
            done: true,
            wait_seconds: 0,
            attempt: 0,
        }
    }

    /// The next wait after `previous`: the base interval for the first three
    /// polls, then twice, then four times the base (short first, capped).
    pub fn again(previous: Option<&Poll>, base: u64) -> Self {
        let attempt = previous.map(|p| p.attempt + 1).unwrap_or(0);
        let factor = match attempt {
            0..=2 => 1,
            3..=5 => 2,
            _ => 4,
        };
        Self {
            done: false,
            wait_seconds: base * factor,
            attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_grows_and_caps() {
        let mut p = Poll::again(None, 15);
        let mut seen = vec![p.wait_seconds];
        for _ in 0..8 {
            p = Poll::again(Some(&p), 15);
            seen.push(p.wait_seconds);
        }
        assert_eq!(seen, vec![15, 15, 15, 30, 30, 30, 60, 60, 60]);
    }

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
