//! The safety net: an execution that ended without reaching Finalization
//! (stopped from the console, timed out, or failed past every Catch) still gets
//! cleaned up. An EventBridge rule sends the "Step Functions Execution Status
//! Change" event to the finalize function, which runs Finalization for the
//! deployment named in the execution's input. Finalization is idempotent, so
//! an execution that did finalize is left as it is.

use super::finalize::{self, FinalOutput};
use super::{CaughtError, StepInput};
use crate::deps::Deps;
use crate::error::StepError;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct StatusChangeEvent {
    #[serde(rename = "detail-type")]
    pub detail_type: String,
    pub detail: StatusDetail,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusDetail {
    pub execution_arn: String,
    pub status: String,
    /// The execution's input, as a JSON string.
    #[serde(default)]
    pub input: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub cause: Option<String>,
}

/// True for an EventBridge event (rather than a Step Functions task input).
pub fn is_status_change(payload: &serde_json::Value) -> bool {
    payload.get("detail-type").is_some() && payload.get("detail").is_some()
}

/// The error Finalization records for an execution that ended this way.
fn caught(d: &StatusDetail) -> Option<CaughtError> {
    let (error, cause) = match d.status.as_str() {
        // Stopped by an operator (console or StopExecution): a cancellation.
        "ABORTED" => (
            "Cancelled",
            format!("execution {} was stopped", d.execution_arn),
        ),
        "TIMED_OUT" => (
            "States.Timeout",
            format!("execution {} timed out", d.execution_arn),
        ),
        "FAILED" => (
            d.error.as_deref().unwrap_or("States.Runtime"),
            d.cause
                .clone()
                .unwrap_or_else(|| format!("execution {} failed", d.execution_arn)),
        ),
        _ => return None,
    };
    Some(CaughtError {
        error: error.to_string(),
        cause: Some(cause),
    })
}

pub async fn run(deps: &Deps, event: StatusChangeEvent) -> Result<Option<FinalOutput>, StepError> {
    if event.detail_type != "Step Functions Execution Status Change" {
        return Err(StepError::BadInput(format!(
            "unexpected event type {}",
            event.detail_type
        )));
    }
    let Some(error) = caught(&event.detail) else {
        return Ok(None); // SUCCEEDED / RUNNING: nothing to clean up
    };
    let input = event.detail.input.as_deref().unwrap_or("{}");
    let mut state: StepInput = serde_json::from_str(input).map_err(|e| {
        StepError::BadInput(format!(
            "execution input of {}: {e}",
            event.detail.execution_arn
        ))
    })?;
    state.error = Some(error);
    tracing::warn!(execution = %event.detail.execution_arn, status = %event.detail.status, "cleaning up after an execution that ended outside Finalization");
    // Finalization itself leaves another execution's deployment alone.
    finalize::run(deps, state, Some(&event.detail.execution_arn))
        .await
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentOptions, DeploymentStatus, StepName, StepStatus};
    use crate::steps::testkit::{Fixture, DEP, ENV, GROUP};
    use crate::store::Store;
    use aws_sdk_autoscaling::operation::resume_processes::ResumeProcessesOutput;
    use aws_smithy_mocks::mock;

    fn event(status: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../events/finalize-execution-aborted.json"
        ))
        .unwrap();
        let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
        v["detail"]["status"] = serde_json::json!(status);
        v["detail"]["input"] = serde_json::json!(
            serde_json::json!({"deploymentId": DEP, "environmentId": ENV}).to_string()
        );
        v
    }

    #[tokio::test]
    async fn an_aborted_execution_is_finalized_as_cancelled() {
        let f = Fixture::new(DeploymentOptions {
            lock_instances: true,
            ..Default::default()
        })
        .await;
        f.store.acquire_lock(ENV, DEP, f.now()).await.unwrap();
        let now = f.now();
        f.update(|d| {
            d.runtime
                .suspended_by_us
                .insert(GROUP.into(), vec!["AZRebalance".into()]);
            let s = d.step_mut(StepName::CreateImage);
            s.status = StepStatus::Running;
            s.started_at = Some(now);
        })
        .await;
        let resume = mock!(aws_sdk_autoscaling::Client::resume_processes)
            .then_output(|| ResumeProcessesOutput::builder().build());
        let send = mock!(aws_sdk_ses::Client::send_email).then_output(|| {
            aws_sdk_ses::operation::send_email::SendEmailOutput::builder()
                .message_id("m")
                .build()
                .unwrap()
        });
        let deps = f.deps(&[], &[&resume], &[&send]);
        let payload = event("ABORTED");
        assert!(is_status_change(&payload));
        let out = crate::steps::run(crate::domain::StepName::Finalization, &deps, payload)
            .await
            .unwrap();
        assert_eq!(out["status"], "Cancelled");
        assert_eq!((resume.num_calls(), send.num_calls()), (1, 1));
        let d = f.deployment().await;
        assert_eq!(d.status, DeploymentStatus::Cancelled);
        assert_eq!(d.step(StepName::CreateImage).status, StepStatus::Failed);
        assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_succeeded_execution_is_left_alone() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let deps = f.deps(&[], &[], &[]);
        let out = crate::steps::run(
            crate::domain::StepName::Finalization,
            &deps,
            event("SUCCEEDED"),
        )
        .await
        .unwrap();
        assert!(out.is_null());
        assert_eq!(f.deployment().await.status, DeploymentStatus::Running);
    }
}
