//! Step 6, "Finalization": runs after success and (through Catch) after any
//! failure. It trusts only the deployment record: cancels our refresh and
//! restores the backup model on failure, resumes exactly what we suspended,
//! restarts the preparation server if we stopped it, releases the lock, writes
//! the terminal status, then sends the notification. Safe to call again.

use super::{Journal, StepInput};
use crate::aws::ec2::InstanceState;
use crate::deps::Deps;
use crate::domain::{
    millis_between, DeploymentError, DeploymentStatus, GeneratedVersion, StepName, StepStatus,
};
use crate::error::StepError;
use crate::store::Outcome;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalOutput {
    pub status: DeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_version: Option<GeneratedVersion>,
    /// True when this execution does not own the deployment and left it alone
    /// (the ASL then ends in "Already handled").
    #[serde(default)]
    pub ignored: bool,
}

/// Finalization attempts (each retried by Step Functions) before a cleanup
/// action that keeps failing is left on record instead.
pub const MAX_CLEANUP_ATTEMPTS: u32 = 3;

/// Restores the environment: cancels our refresh and restores the backup
/// model (when the deployment did not succeed), resumes what we suspended,
/// restarts the preparation server if we stopped it. Returns what failed.
async fn cleanup(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: Option<&crate::domain::Environment>,
    rt: &crate::domain::Runtime,
    status: DeploymentStatus,
) -> Result<Vec<String>, StepError> {
    let mut problems = Vec::new();
    let mut note = |what: String, e: StepError| problems.push(format!("{what}: {}", e.message()));

    if status != DeploymentStatus::Succeeded {
        // Stop our refreshes first so nothing keeps replacing instances.
        for group in rt.refreshes.keys() {
            let active = match deps.asg.refreshes(group).await {
                Ok(list) => list.into_iter().any(|r| r.is_active()),
                Err(e) => {
                    note(format!("describe the refresh on {group}"), e);
                    continue;
                }
            };
            if active {
                match deps.asg.cancel_refresh(group).await {
                    Ok(true) => {
                        j.action(format!("Cancelled the instance refresh on group {group}"))
                            .await?
                    }
                    Ok(false) => {}
                    Err(e) => note(format!("cancel the refresh on {group}"), e),
                }
            }
        }
        // Never leave the new version as default without a recorded backup:
        // on failure the backup becomes the default again.
        if let (Some(env), Some(main), Some(backup)) = (env, rt.main_version, rt.backup_version) {
            match deps.ec2.launch_template(&env.launch_template_id).await {
                Ok(Some(t)) if t.default_version == main && main != backup => {
                    match deps
                        .ec2
                        .set_default_version(&env.launch_template_id, backup)
                        .await
                    {
                        Ok(()) => {
                            j.action(format!(
                                "Restored backup model: version {backup} is the default again"
                            ))
                            .await?
                        }
                        Err(e) => note(format!("restore version {backup} as default"), e),
                    }
                }
                Ok(_) => {}
                Err(e) => note("read the launch template".into(), e),
            }
        }
    }

    for (group, processes) in &rt.suspended_by_us {
        if processes.is_empty() {
            continue;
        }
        match deps.asg.resume(group, processes).await {
            Ok(()) => {
                j.action(format!("Resumed {} on group {group}", processes.join(", ")))
                    .await?
            }
            Err(e) => note(format!("resume {} on {group}", processes.join(", ")), e),
        }
    }

    if rt.server_stopped_by_us
        && rt
            .prior_server_state
            .as_deref()
            .and_then(|s| s.parse::<InstanceState>().ok())
            .is_some_and(|s| s.is_up())
    {
        if let Some(env) = env {
            let server = &env.preparation_server_id;
            match deps.ec2.instance(server).await.map(|i| i.map(|i| i.state)) {
                Ok(Some(InstanceState::Stopped)) => match deps.ec2.start_instance(server).await {
                    Ok(()) => {
                        j.action(format!("Started preparation server {server} again"))
                            .await?
                    }
                    Err(e) => note(format!("start preparation server {server}"), e),
                },
                // Started by an earlier attempt of this step (or by someone else).
                Ok(Some(s)) if s.is_up() => {
                    j.action(format!("Preparation server {server} is {s}"))
                        .await?
                }
                Ok(Some(InstanceState::Stopping)) => note(
                    format!("start preparation server {server}"),
                    StepError::Retryable("it is still stopping".into()),
                ),
                Ok(other) => {
                    j.action(format!(
                        "Preparation server {server} could not be started again (state {})",
                        other.as_ref().map_or("unknown", InstanceState::as_str)
                    ))
                    .await?
                }
                Err(e) => note(format!("read preparation server {server}"), e),
            }
        }
    }
    Ok(problems)
}

/// The status a caught error name leads to.
pub fn status_for(error: Option<&str>) -> DeploymentStatus {
    match error {
        None => DeploymentStatus::Succeeded,
        Some("RefreshRolledBack") => DeploymentStatus::RolledBack,
        Some("Cancelled") => DeploymentStatus::Cancelled,
        Some(_) => DeploymentStatus::Failed,
    }
}

/// Finalization for `execution` (None: a direct invocation, trusted).
/// Another execution's deployment is never touched: the run is recorded
/// under `ignoredRuns` and the output says `ignored`.
pub async fn run(
    deps: &Deps,
    input: StepInput,
    execution: Option<&str>,
) -> Result<FinalOutput, StepError> {
    input.check()?;
    let status = status_for(input.error.as_ref().map(|e| e.error.as_str()));
    let Some(dep) = deps
        .store
        .deployment(&input.environment_id, &input.deployment_id)
        .await?
    else {
        // Validation refused before any record existed (unknown environment):
        // there is nothing to clean up and nothing to write.
        return Ok(FinalOutput {
            status,
            generated_version: None,
            ignored: false,
        });
    };
    if let (Some(me), Some(owner)) = (execution, dep.execution_arn.as_deref()) {
        if me != owner {
            let reason = format!(
                "Finalization of execution {me} skipped: deployment {} is run by execution {owner}",
                dep.deployment_id
            );
            tracing::warn!(%reason, "ignored");
            deps.store
                .record_ignored(
                    &dep.environment_id,
                    &dep.deployment_id,
                    &crate::domain::IgnoredRun {
                        execution_arn: Some(me.to_string()),
                        at: deps.clock.now(),
                        reason,
                    },
                )
                .await?;
            return Ok(FinalOutput {
                status: dep.status,
                generated_version: None,
                ignored: true,
            });
        }
    }
    if dep.status.is_terminal() && dep.step(StepName::Finalization).status == StepStatus::Succeeded
    {
        return Ok(FinalOutput {
            status: dep.status,
            generated_version: dep.generated_version,
            ignored: false,
        });
    }
    let mut j = Journal::from_record(deps, dep, StepName::Finalization);
    j.start().await?;

    // The failed step: the one running when the error was caught, or, when
    // it failed before it could even record its start, the first not yet run.
    let mut failed_step = None;
    if let Some(err) = &input.error {
        let steps = StepName::ALL
            .into_iter()
            .filter(|s| *s != StepName::Finalization);
        let running = steps
            .clone()
            .find(|s| j.dep.step(*s).status == StepStatus::Running);
        let name = running.or_else(|| {
            steps
                .clone()
                .find(|s| j.dep.step(*s).status == StepStatus::Pending)
        });
        if let Some(name) = name {
            failed_step = Some(name);
            let mut other = Journal::from_record(deps, j.dep.clone(), name);
            other
                .action(format!("Failed: {}: {}", err.error, err.message()))
                .await?;
            other.end(StepStatus::Failed).await?;
            j.dep.steps[name.index()] = other.dep.steps[name.index()].clone();
        }
    }

    let env = deps.store.environment(&j.dep.environment_id).await?;
    let rt = j.dep.runtime.clone();

    // Every cleanup action is attempted even when another fails; a failed one
    // is recorded, and the whole Finalization is retried (idempotently) a few
    // times before it gives up and finishes with the problem on record.
    let problems = cleanup(deps, &mut j, env.as_ref(), &rt, status).await?;
    if !problems.is_empty() {
        if j.dep.runtime.cleanup_attempts < MAX_CLEANUP_ATTEMPTS {
            j.dep.runtime.cleanup_attempts += 1;
            j.save_runtime().await?;
            return Err(StepError::Retryable(format!(
                "cleanup incomplete, retrying: {}",
                problems.join("; ")
            )));
        }
        j.action(format!(
            "Cleanup incomplete after {MAX_CLEANUP_ATTEMPTS} attempts: {}",
            problems.join("; ")
        ))
        .await?;
    }

    if deps
        .store
        .release_lock(&j.dep.environment_id, &j.dep.deployment_id)
        .await?
    {
        j.action("Environment lock released").await?;
    }

    let now = deps.clock.now();
    let generated_version = match (status, &env, rt.main_version, &rt.image_id) {
        (DeploymentStatus::Succeeded, Some(env), Some(v), Some(image)) => Some(GeneratedVersion {
            launch_template_id: env.launch_template_id.clone(),
            launch_template_version: v,
            image_id: image.clone(),
        }),
        _ => None,
    };
    let error = input.error.as_ref().map(|e| DeploymentError {
        step: failed_step,
        name: e.error.clone(),
        message: e.message(),
    });
    j.end(StepStatus::Succeeded).await?;
    let started = j.dep.started_at.unwrap_or(j.dep.created_at);
    let outcome = Outcome {
        status,
        ended_at: now,
        duration_ms: millis_between(started, now),
        generated_version: generated_version.clone(),
        error: error.clone(),
    };
    if j.dep.status == DeploymentStatus::Scheduled {
        // Its execution failed before starting it: end it and drop its
        // pending-schedule entry in one write, so it blocks no later schedule.
        let end = crate::store::ScheduledEnd {
            status,
            at: now,
            cancelled_by: None,
            error: error.clone(),
        };
        if !deps
            .store
            .end_scheduled(&j.dep.environment_id, &j.dep.deployment_id, &end)
            .await?
        {
            deps.store
                .finish(&j.dep.environment_id, &j.dep.deployment_id, &outcome)
                .await?;
        }
    } else {
        deps.store
            .finish(&j.dep.environment_id, &j.dep.deployment_id, &outcome)
            .await?;
    }
    j.dep.status = status;
    j.dep.ended_at = Some(now);
    j.dep.duration_ms = Some(outcome.duration_ms);
    j.dep.generated_version = generated_version.clone();
    j.dep.error = error;

    super::notify(deps, &mut j, env.as_ref(), super::Notice::Ended).await?;
    Ok(FinalOutput {
        status,
        generated_version,
        ignored: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{aws, input, strs, Fixture, DEP, ENV, GROUP, LT, SERVER};
    use crate::steps::CaughtError;
    use crate::store::Store;
    use aws_sdk_autoscaling::operation::cancel_instance_refresh::CancelInstanceRefreshOutput;
    use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
    use aws_sdk_autoscaling::operation::resume_processes::ResumeProcessesOutput;
    use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
    use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
    use aws_sdk_ec2::operation::modify_launch_template::ModifyLaunchTemplateOutput;
    use aws_sdk_ec2::operation::start_instances::StartInstancesOutput;
    use aws_sdk_ses::error::ErrorMetadata;
    use aws_sdk_ses::operation::send_email::{SendEmailError, SendEmailOutput};
    use aws_smithy_mocks::{mock, Rule};

    type Ec2 = aws_sdk_ec2::Client;
    type Asg = aws_sdk_autoscaling::Client;
    type Ses = aws_sdk_ses::Client;

    /// The deployment's addresses, then the environment's, de-duplicated
    /// case-insensitively (OPS@ and ops@ are one mailbox).
    const RECIPIENTS: &[&str] = &["dev@example.com", "OPS@example.com"];

    struct World {
        resume: Rule,
        instances: Rule,
        start: Rule,
        template: Rule,
        restore: Rule,
        refreshes: Rule,
        cancel: Rule,
        send: Rule,
    }

    fn world(send_ok: bool, to: &'static [&'static str]) -> World {
        World {
            // Exactly the processes we suspended, nothing that was suspended before.
            resume: mock!(Asg::resume_processes)
                .match_requests(|r| {
                    r.auto_scaling_group_name() == Some(GROUP)
                        && strs(r.scaling_processes()) == ["AZRebalance", "ScheduledActions"]
                })
                .then_output(|| ResumeProcessesOutput::builder().build()),
            instances: mock!(Ec2::describe_instances).then_output(|| {
                DescribeInstancesOutput::builder()
                    .reservations(aws::instance(SERVER, "stopped"))
                    .build()
            }),
            start: mock!(Ec2::start_instances)
                .match_requests(|r| strs(r.instance_ids()) == [SERVER])
                .then_output(|| StartInstancesOutput::builder().build()),
            template: mock!(Ec2::describe_launch_templates).then_output(|| {
                DescribeLaunchTemplatesOutput::builder()
                    .launch_templates(aws::template(9, 9))
                    .build()
            }),
            restore: mock!(Ec2::modify_launch_template)
                .match_requests(|r| {
                    r.launch_template_id() == Some(LT) && r.default_version() == Some("8")
                })
                .then_output(|| ModifyLaunchTemplateOutput::builder().build()),
            refreshes: mock!(Asg::describe_instance_refreshes).then_output(|| {
                DescribeInstanceRefreshesOutput::builder()
                    .instance_refreshes(aws::refresh("r-1", "InProgress", 30, "9", None))
                    .build()
            }),
            cancel: mock!(Asg::cancel_instance_refresh)
                .match_requests(|r| r.auto_scaling_group_name() == Some(GROUP))
                .then_output(|| CancelInstanceRefreshOutput::builder().build()),
            send: if send_ok {
                mock!(Ses::send_email)
                    .match_requests(|r| {
                        r.source() == Some("deployments@example.com")
                            && r.destination().map(|d| strs(d.to_addresses())) == Some(to.to_vec())
                    })
                    .then_output(|| {
                        SendEmailOutput::builder()
                            .message_id("m-1")
                            .build()
                            .unwrap()
                    })
            } else {
                mock!(Ses::send_email).then_error(|| {
                    SendEmailError::generic(
                        ErrorMetadata::builder()
                            .code("MessageRejected")
                            .message("Email address is not verified")
                            .build(),
                    )
                })
            },
        }
    }

    impl World {
        fn deps(&self, f: &Fixture) -> Deps {
            f.deps(
                &[&self.instances, &self.start, &self.template, &self.restore],
                &[&self.resume, &self.refreshes, &self.cancel],
                &[&self.send],
            )
        }
    }

    /// A deployment that locked instances, stopped a running server, made
    /// version 9 (backup 8) and started refresh r-1; "Replace instances" running.
    async fn fixture() -> Fixture {
        let f = Fixture::new(DeploymentOptions {
            lock_instances: true,
            stop_preparation_server: true,
            notification_emails: vec!["dev@example.com".into(), "OPS@example.com".into()],
            notify_on_start: false,
        })
        .await;
        f.store.acquire_lock(ENV, DEP, f.now()).await.unwrap();
        let now = f.now();
        f.update(|d| {
            let rt = &mut d.runtime;
            rt.prior_suspended
                .insert(GROUP.into(), vec!["AlarmNotification".into()]);
            rt.suspended_by_us.insert(
                GROUP.into(),
                vec!["AZRebalance".into(), "ScheduledActions".into()],
            );
            rt.prior_server_state = Some("running".into());
            rt.server_stopped_by_us = true;
            rt.image_id = Some("ami-new".into());
            rt.main_version = Some(9);
            rt.backup_version = Some(8);
            rt.refreshes.insert(GROUP.into(), "r-1".into());
            let s = d.step_mut(StepName::ReplaceInstances);
            s.status = StepStatus::Running;
            s.started_at = Some(now);
        })
        .await;
        f.advance(125);
        f
    }

    #[tokio::test]
    async fn a_scheduled_run_that_failed_to_start_ends_failed_and_frees_its_slot() {
        let f = Fixture::empty();
        f.store
            .put_environment(&crate::steps::testkit::environment())
            .await
            .unwrap();
        let d = crate::domain::Deployment::new_scheduled(
            DEP.into(),
            ENV.into(),
            "alice".into(),
            DeploymentOptions::default(),
            f.now(),
            f.now(),
            crate::domain::ScheduleInfo {
                at: "2026-11-27T09:00:00".into(),
                timezone: "UTC".into(),
                schedule_name: DEP.into(),
                schedule_group: "g".into(),
            },
        );
        assert!(f.store.create_scheduled(&d, 0).await.unwrap());
        let w = world(true, &["ops@example.com"]);
        let mut i = input();
        i.error = Some(CaughtError {
            error: "Retryable".into(),
            cause: Some("DynamoDB throttled".into()),
        });
        let out = run(&w.deps(&f), i, Some("arn:x")).await.unwrap();
        assert_eq!(out.status, DeploymentStatus::Failed);
        let d = f.deployment().await;
        assert_eq!(d.status, DeploymentStatus::Failed);
        assert_eq!(d.error.unwrap().name, "Retryable");
        assert!(f.store.schedules(ENV).await.unwrap().entries.is_empty());
        assert_eq!(w.resume.num_calls() + w.start.num_calls(), 0);
        assert_eq!(w.send.num_calls(), 1, "the failure is e-mailed");
    }

    #[tokio::test]
    async fn success_cleans_up_records_and_notifies_once() {
        let f = fixture().await;
        let w = world(true, RECIPIENTS);
        let out = run(&w.deps(&f), input(), None).await.unwrap();
        assert_eq!(out.status, DeploymentStatus::Succeeded);
        assert_eq!(
            (
                w.resume.num_calls(),
                w.start.num_calls(),
                w.send.num_calls()
            ),
            (1, 1, 1)
        );
        assert_eq!((w.restore.num_calls(), w.cancel.num_calls()), (0, 0));
        assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
        let d = f.deployment().await;
        assert_eq!(d.status, DeploymentStatus::Succeeded);
        assert_eq!(d.duration_ms, Some(125_000));
        assert_eq!(
            d.generated_version
                .as_ref()
                .map(|v| (v.launch_template_version, v.image_id.as_str())),
            Some((9, "ami-new"))
        );
        assert_eq!(d.step(StepName::Finalization).status, StepStatus::Succeeded);
        // A second delivery of the same Finalization changes and sends nothing.
        run(&w.deps(&f), input(), None).await.unwrap();
        assert_eq!((w.resume.num_calls(), w.send.num_calls()), (1, 1));
    }

    #[tokio::test]
    async fn failure_marks_the_step_restores_the_backup_and_records_the_error() {
        let f = fixture().await;
        let w = world(true, RECIPIENTS);
        let mut i = input();
        i.error = Some(CaughtError {
            error: "RefreshFailed".into(),
            cause: Some(r#"{"errorType":"RefreshFailed","errorMessage":"instance refresh r-1 Failed: unhealthy"}"#.into()),
        });
        let out = run(&w.deps(&f), i, None).await.unwrap();
        assert_eq!(out.status, DeploymentStatus::Failed);
        assert_eq!(
            (
                w.cancel.num_calls(),
                w.restore.num_calls(),
                w.resume.num_calls(),
                w.start.num_calls()
            ),
            (1, 1, 1, 1)
        );
        let d = f.deployment().await;
        assert_eq!(d.status, DeploymentStatus::Failed);
        assert_eq!(d.generated_version, None);
        let e = d.error.unwrap();
        assert_eq!(
            (e.step, e.name.as_str()),
            (Some(StepName::ReplaceInstances), "RefreshFailed")
        );
        assert_eq!(e.message, "instance refresh r-1 Failed: unhealthy");
        let step = d.steps[StepName::ReplaceInstances.index()].clone();
        assert_eq!(step.status, StepStatus::Failed);
        assert!(step
            .actions
            .iter()
            .any(|a| a.message == "Failed: RefreshFailed: instance refresh r-1 Failed: unhealthy"));
        assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_failing_cleanup_is_retried_then_left_on_record() {
        let f = fixture().await;
        let w = world(true, RECIPIENTS);
        let denied = mock!(Asg::resume_processes).then_error(|| {
            aws_sdk_autoscaling::operation::resume_processes::ResumeProcessesError::generic(
                aws_sdk_autoscaling::error::ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("not allowed")
                    .build(),
            )
        });
        let deps = f.deps(
            &[&w.instances, &w.start, &w.template, &w.restore],
            &[&denied, &w.refreshes, &w.cancel],
            &[&w.send],
        );
        for _ in 0..MAX_CLEANUP_ATTEMPTS {
            let err = run(&deps, input(), None).await.unwrap_err();
            assert_eq!(err.name(), "Retryable");
            assert!(err.message().contains("resume AZRebalance, ScheduledActions on web-asg: ResumeProcesses: AccessDenied"), "{err}");
            assert_eq!(
                f.store.lock_holder(ENV).await.unwrap().as_deref(),
                Some(DEP),
                "held while cleanup is retried"
            );
        }
        // (The mocked server always reads "stopped", so each attempt starts it.)
        assert_eq!(w.start.num_calls() as u32, MAX_CLEANUP_ATTEMPTS);
        let out = run(&deps, input(), None).await.unwrap();
        assert_eq!(out.status, DeploymentStatus::Succeeded);
        assert_eq!(denied.num_calls() as u32, MAX_CLEANUP_ATTEMPTS + 1);
        let d = f.deployment().await;
        assert!(d
            .step(StepName::Finalization)
            .actions
            .iter()
            .any(|a| a.message.starts_with("Cleanup incomplete after 3 attempts")));
        assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_rollback_ends_rolled_back() {
        let f = fixture().await;
        let w = world(true, RECIPIENTS);
        let mut i = input();
        i.error = Some(CaughtError {
            error: "RefreshRolledBack".into(),
            cause: Some("rolled back".into()),
        });
        assert_eq!(
            run(&w.deps(&f), i, None).await.unwrap().status,
            DeploymentStatus::RolledBack
        );
        assert_eq!(f.deployment().await.status, DeploymentStatus::RolledBack);
    }

    #[tokio::test]
    async fn an_email_failure_is_recorded_and_changes_no_status() {
        let f = fixture().await;
        let w = world(false, RECIPIENTS);
        assert_eq!(
            run(&w.deps(&f), input(), None).await.unwrap().status,
            DeploymentStatus::Succeeded
        );
        let d = f.deployment().await;
        assert_eq!(d.status, DeploymentStatus::Succeeded);
        assert!(d
            .step(StepName::Finalization)
            .actions
            .iter()
            .any(|a| a.message.starts_with("Notification e-mail failed")
                && a.message.contains("not verified")));
    }

    #[tokio::test]
    async fn another_deployments_lock_is_never_released() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.store
            .acquire_lock(ENV, "01JOTHER000000000000000000", f.now())
            .await
            .unwrap();
        let w = world(true, &["ops@example.com"]);
        let mut i = input();
        i.error = Some(CaughtError {
            error: "EnvironmentLocked".into(),
            cause: Some("busy".into()),
        });
        assert_eq!(
            run(&w.deps(&f), i, None).await.unwrap().status,
            DeploymentStatus::Failed
        );
        assert_eq!(
            f.store.lock_holder(ENV).await.unwrap().as_deref(),
            Some("01JOTHER000000000000000000")
        );
    }

    #[tokio::test]
    async fn without_a_record_nothing_is_touched() {
        let f = Fixture::empty();
        let w = world(true, RECIPIENTS);
        let mut i = input();
        i.error = Some(CaughtError {
            error: "ValidationFailed".into(),
            cause: None,
        });
        assert_eq!(
            run(&w.deps(&f), i, None).await.unwrap().status,
            DeploymentStatus::Failed
        );
        assert_eq!(
            w.resume.num_calls() + w.send.num_calls() + w.start.num_calls(),
            0
        );
    }
}
