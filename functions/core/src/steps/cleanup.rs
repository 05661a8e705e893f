//! The safety net: an execution that ended without reaching Finalization
//! (stopped from the console, timed out, or failed past every Catch) still gets
//! cleaned up. An EventBridge rule sends the "Step Functions Execution Status
//! Change" event to the finalize function, which runs Finalization for the
//! deployment named in the execution's input. Finalization is idempotent, so
//! an execution that did finalize is left as it is.
//!
//! The handler cannot wait (it is invoked once per event, and must not loop).
//! When Finalization has to wait for the fleet to be rolled back or restored,
//! the safety net starts a cleanup execution of the same state machine, which
//! goes straight to Finalization's wait loop; the deployment stays
//! unfinished until that Finalization ends it.

use super::finalize::{self, FinalOutput};
use super::{CaughtError, StepInput};
use crate::aws::StepFunctions;
use crate::deps::Deps;
use crate::error::StepError;
use serde::Deserialize;

/// Cleanup executions started per deployment at most: a cleanup execution
/// that itself ends early gets a successor, but never an endless chain.
pub const MAX_CLEANUP_EXECUTIONS: usize = 3;

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
    #[serde(default)]
    pub state_machine_arn: Option<String>,
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

/// `sfn` starts the cleanup execution when Finalization must wait (`None`:
/// no Step Functions client could be made; the event then fails, to be
/// retried and, failing that, kept in the failure queue).
pub async fn run(
    deps: &Deps,
    sfn: Option<&StepFunctions>,
    event: StatusChangeEvent,
) -> Result<Option<FinalOutput>, StepError> {
    if event.detail_type != "Step Functions Execution Status Change" {
        return Err(StepError::BadInput(format!(
            "unexpected event type {}",
            event.detail_type
        )));
    }
    let Some(error) = caught(&event.detail) else {
        return Ok(None); // SUCCEEDED / RUNNING: nothing to clean up
    };
    let execution = &event.detail.execution_arn;
    let input = event.detail.input.as_deref().unwrap_or("{}");
    let mut state: StepInput = serde_json::from_str(input)
        .map_err(|e| StepError::BadInput(format!("execution input of {execution}: {e}")))?;
    // A cleanup execution keeps the error it was started with.
    if state.cleanup_of.is_none() || state.error.is_none() {
        state.error = Some(error);
    }
    state.result = None;
    tracing::warn!(%execution, status = %event.detail.status, "cleaning up after an execution that ended outside Finalization");
    // Finalization itself leaves another execution's deployment alone.
    let out = finalize::run(deps, state.clone(), Some(execution)).await?;
    if !out.waiting() {
        return Ok(Some(out));
    }
    start_cleanup_execution(deps, sfn, &event.detail, state).await?;
    Ok(Some(out))
}

/// Starts the cleanup execution that waits for the fleet in Finalization's
/// loop. Its name is fixed per deployment and predecessor, so a second
/// delivery of the event finds it started (ExecutionAlreadyExists).
async fn start_cleanup_execution(
    deps: &Deps,
    sfn: Option<&StepFunctions>,
    detail: &StatusDetail,
    mut state: StepInput,
) -> Result<(), StepError> {
    let dep = deps
        .store
        .deployment(&state.environment_id, &state.deployment_id)
        .await?
        .ok_or_else(|| StepError::InvalidState("the deployment record is gone".into()))?;
    let owner = dep
        .execution_arn
        .clone()
        .unwrap_or_else(|| detail.execution_arn.clone());
    let earlier = &dep.runtime.cleanup_executions;
    // Named after the execution that ended: the owner's successor is
    // cleanup-<id>, a cleanup execution's is cleanup-<id>-<n+1>.
    let n = earlier
        .iter()
        .position(|a| *a == detail.execution_arn)
        .map_or(1, |i| i + 2);
    if n > MAX_CLEANUP_EXECUTIONS {
        return Err(StepError::InvalidState(format!(
            "deployment {} still waits for its fleet after {MAX_CLEANUP_EXECUTIONS} cleanup executions",
            dep.deployment_id
        )));
    }
    let name = if n == 1 {
        format!("cleanup-{}", dep.deployment_id)
    } else {
        format!("cleanup-{}-{n}", dep.deployment_id)
    };
    let state_machine = detail
        .state_machine_arn
        .clone()
        .or_else(|| state_machine_of(&detail.execution_arn))
        .ok_or_else(|| {
            StepError::BadInput(format!(
                "no state machine for execution {}",
                detail.execution_arn
            ))
        })?;
    let arn = crate::domain::execution_arn(&state_machine, &name);
    let mut j = super::Journal::from_record(deps, dep, crate::domain::StepName::Finalization);
    if !j.dep.runtime.cleanup_executions.contains(&arn) {
        // Recorded first: Finalization accepts only recorded executions.
        j.dep.runtime.cleanup_executions.push(arn.clone());
        j.save_runtime().await?;
    }
    let Some(sfn) = sfn else {
        return Err(StepError::Retryable(format!(
            "cannot start cleanup execution {name}: no Step Functions client"
        )));
    };
    state.cleanup_of = Some(owner);
    let input = serde_json::to_string(&state)
        .map_err(|e| StepError::BadInput(format!("cleanup input: {e}")))?;
    if sfn.start_named(&state_machine, &name, &input).await? {
        j.action(format!(
            "The fleet is still being restored: cleanup execution {name} waits for it and finishes the deployment"
        ))
        .await?;
    }
    Ok(())
}

/// `arn:aws:states:r:a:execution:<machine>:<name>` → the machine's ARN.
fn state_machine_of(execution_arn: &str) -> Option<String> {
    let (machine, _) = execution_arn.rsplit_once(':')?;
    machine
        .contains(":execution:")
        .then(|| machine.replacen(":execution:", ":stateMachine:", 1))
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
        // The fleet as it stays: two instances on version 8.
        let groups = mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(
            || {
                aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(crate::steps::testkit::aws::group(2, "8", &[], "lt-1"))
                    .build()
            },
        );
        let tagged = mock!(aws_sdk_ec2::Client::describe_instances).then_output(|| {
            aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput::builder().build()
        });
        let deps = f.deps(&[&tagged], &[&resume, &groups], &[&send]);
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
        assert_eq!(
            d.runtime.fleet_versions[GROUP],
            "all 2 instances on version 8"
        );
    }

    /// The execution was stopped while its refresh was replacing instances of
    /// a numbered group: AWS rolls the refresh back, which takes a while, and
    /// the handler cannot wait; it starts a cleanup execution to do so.
    #[tokio::test]
    async fn a_needed_wait_starts_the_cleanup_execution() {
        use crate::steps::testkit::aws;
        use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
        use aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshOutput;
        use aws_sdk_sfn::operation::start_execution::StartExecutionOutput;
        const OWNER: &str =
            "arn:aws:states:us-east-1:123456789012:execution:autosky-deployment:01JABCDEFGHJKMNPQRSTVWXYZ0";
        const CLEANUP: &str = "arn:aws:states:us-east-1:123456789012:execution:autosky-deployment:cleanup-01JABCDEFGHJKMNPQRSTVWXYZ0";
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.store.acquire_lock(ENV, DEP, f.now()).await.unwrap();
        assert!(f.store.claim_execution(ENV, DEP, OWNER).await.unwrap());
        f.update(|d| {
            d.runtime.main_version = Some(9);
            d.runtime.backup_version = Some(8);
            d.runtime.refreshes.insert(GROUP.into(), "r-1".into());
            d.runtime
                .prior_group_versions
                .insert(GROUP.into(), "8".into());
        })
        .await;
        let refreshes = mock!(aws_sdk_autoscaling::Client::describe_instance_refreshes)
            .then_output(|| {
                DescribeInstanceRefreshesOutput::builder()
                    .instance_refreshes(aws::refresh("r-1", "InProgress", 50, "9", None))
                    .build()
            });
        let rollback = mock!(aws_sdk_autoscaling::Client::rollback_instance_refresh)
            .then_output(|| RollbackInstanceRefreshOutput::builder().build());
        let template = mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
            aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::template(8, 9))
                .build()
        });
        let start = mock!(aws_sdk_sfn::Client::start_execution)
            .match_requests(|r| {
                let input: serde_json::Value =
                    serde_json::from_str(r.input().unwrap_or("{}")).unwrap();
                r.state_machine_arn()
                    == Some("arn:aws:states:us-east-1:123456789012:stateMachine:autosky-deployment")
                    && r.name() == Some("cleanup-01JABCDEFGHJKMNPQRSTVWXYZ0")
                    && input["cleanupOf"] == OWNER
                    && input["error"]["Error"] == "Cancelled"
                    && input["deploymentId"] == DEP
            })
            .then_output(|| {
                StartExecutionOutput::builder()
                    .execution_arn(CLEANUP)
                    .start_date(aws_sdk_sfn::primitives::DateTime::from_secs(0))
                    .build()
                    .unwrap()
            });
        let deps = f.deps(&[&template], &[&refreshes, &rollback], &[]);
        let sfn = crate::aws::StepFunctions::new(aws_smithy_mocks::mock_client!(
            aws_sdk_sfn,
            aws_smithy_mocks::RuleMode::MatchAny,
            [&start]
        ));
        let mut payload = event("ABORTED");
        payload["detail"]["executionArn"] = serde_json::json!(OWNER);
        let ev: StatusChangeEvent = serde_json::from_value(payload.clone()).unwrap();
        let out = run(&deps, Some(&sfn), ev).await.unwrap().unwrap();
        assert!(out.waiting());
        assert_eq!((rollback.num_calls(), start.num_calls()), (1, 1));
        let d = f.deployment().await;
        assert_eq!(
            d.status,
            DeploymentStatus::Running,
            "the cleanup execution ends it"
        );
        assert_eq!(d.runtime.cleanup_executions, vec![CLEANUP.to_string()]);
        assert_eq!(
            f.store.lock_holder(ENV).await.unwrap().as_deref(),
            Some(DEP)
        );

        // The cleanup execution's Finalization is accepted as the owner's.
        let mut state: StepInput =
            serde_json::from_value(serde_json::json!({"deploymentId": DEP, "environmentId": ENV}))
                .unwrap();
        state.cleanup_of = Some(OWNER.into());
        state.error = Some(CaughtError {
            error: "Cancelled".into(),
            cause: None,
        });
        let again = finalize::run(&deps, state.clone(), Some(CLEANUP))
            .await
            .unwrap();
        assert!(!again.ignored && again.waiting());
        // Any other execution is not.
        let other = finalize::run(
            &deps,
            state,
            Some("arn:aws:states:us-east-1:123456789012:execution:autosky-deployment:x"),
        )
        .await
        .unwrap();
        assert!(other.ignored);
        // A second delivery of the event starts nothing new.
        let ev: StatusChangeEvent = serde_json::from_value(payload).unwrap();
        run(&deps, Some(&sfn), ev).await.unwrap();
        assert_eq!(f.deployment().await.runtime.cleanup_executions.len(), 1);
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
