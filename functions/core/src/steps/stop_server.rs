//! Step 2, "Stop preparation server": only with the option on (never for a
//! rollback, which takes no image). Remembers the
//! server's prior state (Finalization restarts it only if it was running),
//! sends StopInstances on every check that finds it `running`, and is called
//! again by the ASL's wait loop until `stopped`.

use super::{wake, Journal, Poll, StepInput};
use crate::aws::ec2::InstanceState;
use crate::deps::Deps;
use crate::domain::{StepName, StepStatus};
use crate::error::StepError;

pub async fn run(deps: &Deps, input: StepInput) -> Result<Poll, StepError> {
    let mut j = Journal::load(deps, &input, StepName::StopPreparationServer).await?;
    if let Some(r) = &j.dep.rollback_of {
        let why = format!(
            "a rollback takes no image; it reuses image {} of deployment {}",
            r.image_id, r.deployment_id
        );
        return j.not_applicable(&why).await;
    }
    if !j.dep.options.stop_preparation_server {
        return j
            .not_applicable("the preparation server keeps running while imaging")
            .await;
    }
    if j.status() == StepStatus::Succeeded {
        return Ok(Poll::done());
    }
    j.start().await?;
    let env = j.environment().await?;
    let server = deps
        .ec2
        .instance(&env.preparation_server_id)
        .await?
        .ok_or_else(|| {
            StepError::StopFailed(format!(
                "preparation server {} not found",
                env.preparation_server_id
            ))
        })?;
    if j.dep.runtime.prior_server_state.is_none() {
        j.dep.runtime.prior_server_state = Some(server.state.to_string());
        j.save_runtime().await?;
        j.action(format!(
            "Preparation server {} was {}",
            server.id, server.state
        ))
        .await?;
    }
    // The server's state decides each poll: StopInstances is not documented
    // as idempotent, and a call that failed (throttling beyond the SDK's
    // retries, a state change racing it) must be sent again, not waited out.
    match &server.state {
        InstanceState::Stopped => {
            j.action(format!("Preparation server {} is stopped", server.id))
                .await?;
            j.end(StepStatus::Succeeded).await?;
            return Ok(Poll::done());
        }
        InstanceState::Running => {
            if !j.dep.runtime.server_stopped_by_us {
                // Flag first: if we die after StopInstances, Finalization still restarts it.
                j.dep.runtime.server_stopped_by_us = true;
                j.save_runtime().await?;
            }
            match deps.ec2.stop_instance(&server.id).await {
                Ok(()) => {
                    j.action(format!("Stopping preparation server {}", server.id))
                        .await?
                }
                // Transient, or the instance is changing state: retried
                // (the Task's or the waiting state's Retry on `Retryable`),
                // which looks at the state again and sends it again if
                // needed. Not waited for: a server still `running` sends no
                // event, so only the waiting state's timeout would wake it.
                Err(e) if e.is_retryable() => {
                    j.action(format!(
                        "StopInstances for {} did not go through ({}); trying again",
                        server.id,
                        e.message()
                    ))
                    .await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        // Not yet running (StopInstances would be refused) or already stopping.
        InstanceState::Pending | InstanceState::Stopping => {}
        other => {
            return Err(StepError::StopFailed(format!(
                "preparation server {} is {other}, it cannot be stopped",
                server.id
            )))
        }
    }
    if j.elapsed_seconds() > env.defaults.stop_timeout_seconds as i64 {
        return Err(StepError::StopFailed(format!(
            "preparation server {} not stopped after {} s (state {})",
            server.id, env.defaults.stop_timeout_seconds, server.state
        )));
    }
    // Woken by the server's state change to `stopped`.
    Ok(Poll::waiting_on([wake::instance(&server.id)]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{aws, input, strs, Fixture, SERVER};
    use aws_sdk_ec2::error::ErrorMetadata;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::stop_instances::{StopInstancesError, StopInstancesOutput};
    use aws_smithy_mocks::{mock, Rule};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type Ec2 = aws_sdk_ec2::Client;

    fn describe(states: &'static [&'static str]) -> Rule {
        let n = Arc::new(AtomicUsize::new(0));
        mock!(Ec2::describe_instances).then_output(move || {
            let i = n.fetch_add(1, Ordering::SeqCst).min(states.len() - 1);
            DescribeInstancesOutput::builder()
                .reservations(aws::instance(SERVER, states[i]))
                .build()
        })
    }

    fn stop() -> Rule {
        mock!(Ec2::stop_instances)
            .match_requests(|r| strs(r.instance_ids()) == [SERVER])
            .then_output(|| StopInstancesOutput::builder().build())
    }

    fn refused(code: &'static str) -> StopInstancesError {
        StopInstancesError::generic(ErrorMetadata::builder().code(code).message("no").build())
    }

    fn with_stop() -> DeploymentOptions {
        DeploymentOptions {
            stop_preparation_server: true,
            ..Default::default()
        }
    }

    /// Runs the step as the ASL's wait loop does, `n` times, and returns the last answer.
    async fn poll(deps: &Deps, n: usize) -> Result<Poll, StepError> {
        let mut last = run(deps, input()).await;
        for _ in 1..n {
            let mut again = input();
            again.stop = last.clone().ok();
            last = run(deps, again).await;
        }
        last
    }

    /// A rollback takes no image: the server is not stopped even with the option on.
    #[tokio::test]
    async fn a_rollback_never_stops_the_server() {
        let f = Fixture::rollback(with_stop(), Some(crate::steps::testkit::rollback_of(5))).await;
        let (d, s) = (describe(&["running"]), stop());
        assert!(
            run(&f.deps(&[&d, &s], &[], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!((d.num_calls(), s.num_calls()), (0, 0));
        let dep = f.deployment().await;
        let step = dep.step(StepName::StopPreparationServer);
        assert_eq!(step.status, StepStatus::NotApplicable);
        assert!(step.actions[0]
            .message
            .contains("a rollback takes no image; it reuses image ami-5"));
    }

    #[tokio::test]
    async fn stop_is_sent_again_after_a_failed_call() {
        let f = Fixture::new(with_stop()).await;
        let d = describe(&["running", "running", "stopped"]);
        let s = mock!(Ec2::stop_instances)
            .match_requests(|r| strs(r.instance_ids()) == [SERVER])
            .sequence()
            // The SDK's three attempts all throttled, then the next call succeeds.
            .error(|| refused("Throttling"))
            .times(3)
            .output(|| StopInstancesOutput::builder().build())
            .build();
        let deps = f.deps(&[&d, &s], &[], &[]);
        // Reported as Retryable (the state machine retries it at once),
        // the flag saved first.
        let first = run(&deps, input()).await.unwrap_err();
        assert_eq!(first.name(), "Retryable");
        assert!(f.deployment().await.runtime.server_stopped_by_us);
        assert!(
            !run(&deps, input()).await.unwrap().done,
            "sent again: stopping"
        );
        assert!(run(&deps, input()).await.unwrap().done);
        assert_eq!(s.num_calls(), 4, "sent again on the retry");
        assert_eq!(
            f.deployment()
                .await
                .step(StepName::StopPreparationServer)
                .status,
            StepStatus::Succeeded
        );
    }

    #[tokio::test]
    async fn a_pending_server_is_waited_for_and_stopped_once_running() {
        let f = Fixture::new(with_stop()).await;
        let d = describe(&["pending", "running", "running", "stopped"]);
        let s = mock!(Ec2::stop_instances)
            .match_requests(|r| strs(r.instance_ids()) == [SERVER])
            .sequence()
            .error(|| refused("IncorrectInstanceState"))
            .output(|| StopInstancesOutput::builder().build())
            .build();
        let deps = f.deps(&[&d, &s], &[], &[]);
        assert!(!run(&deps, input()).await.unwrap().done);
        assert_eq!(s.num_calls(), 0, "no StopInstances while pending");
        assert!(poll(&deps, 3).await.unwrap().done);
        // The refusal on the first running poll did not fail the step: the
        // call was sent again and the server stopped.
        assert_eq!(s.num_calls(), 2);
    }

    #[tokio::test]
    async fn not_applicable_without_the_option_and_touches_nothing() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let d = describe(&["running"]);
        let s = stop();
        let out = run(&f.deps(&[&d, &s], &[], &[]), input()).await.unwrap();
        assert!(out.done);
        assert_eq!(d.num_calls() + s.num_calls(), 0);
        assert_eq!(
            f.deployment()
                .await
                .step(StepName::StopPreparationServer)
                .status,
            StepStatus::NotApplicable
        );
    }

    #[tokio::test]
    async fn stops_a_running_server_once_and_waits_until_stopped() {
        let f = Fixture::new(DeploymentOptions {
            stop_preparation_server: true,
            ..Default::default()
        })
        .await;
        let d = describe(&["running", "stopping", "stopped"]);
        let s = stop();
        let deps = f.deps(&[&d, &s], &[], &[]);
        let first = run(&deps, input()).await.unwrap();
        assert_eq!(
            (first.done, first.wake_on.clone()),
            (false, vec![format!("instance:{SERVER}")])
        );
        let mut again = input();
        again.stop = Some(first);
        let second = run(&deps, again.clone()).await.unwrap();
        assert!(!second.done);
        again.stop = Some(second);
        assert!(run(&deps, again).await.unwrap().done);
        assert_eq!(s.num_calls(), 1);
        let dep = f.deployment().await;
        assert_eq!(dep.runtime.prior_server_state.as_deref(), Some("running"));
        assert!(dep.runtime.server_stopped_by_us);
        assert_eq!(
            dep.step(StepName::StopPreparationServer).status,
            StepStatus::Succeeded
        );
    }

    #[tokio::test]
    async fn an_already_stopped_server_is_fine_and_is_not_restarted_later() {
        let f = Fixture::new(DeploymentOptions {
            stop_preparation_server: true,
            ..Default::default()
        })
        .await;
        let d = describe(&["stopped"]);
        let s = stop();
        assert!(
            run(&f.deps(&[&d, &s], &[], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!(s.num_calls(), 0);
        let dep = f.deployment().await;
        assert_eq!(dep.runtime.prior_server_state.as_deref(), Some("stopped"));
        assert!(!dep.runtime.server_stopped_by_us);
    }

    #[tokio::test]
    async fn gives_up_after_the_stop_timeout() {
        let f = Fixture::new(DeploymentOptions {
            stop_preparation_server: true,
            ..Default::default()
        })
        .await;
        let d = describe(&["running", "stopping"]);
        let s = stop();
        let deps = f.deps(&[&d, &s], &[], &[]);
        run(&deps, input()).await.unwrap();
        f.advance(901);
        assert_eq!(run(&deps, input()).await.unwrap_err().name(), "StopFailed");
    }
}
