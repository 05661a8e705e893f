//! Finalization against mocked AWS answers and the in-memory store: cleanup
//! from the record alone, the outcome, the e-mail, retries, and what it never touches.

use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{aws, input, strs, Fixture, DEP, ENV, GROUP, LT, SERVER};
use crate::steps::CaughtError;
use crate::store::Store;
use aws_sdk_autoscaling::operation::cancel_instance_refresh::CancelInstanceRefreshOutput;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
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
    groups: Rule,
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
        // Two instances, both on the backup version 8.
        groups: groups(&["8", "8"]),
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
        // Version 9 is the default until the backup is restored.
        template: mock!(Ec2::describe_launch_templates)
            .sequence()
            .output(|| {
                DescribeLaunchTemplatesOutput::builder()
                    .launch_templates(aws::template(9, 9))
                    .build()
            })
            .output(|| {
                DescribeLaunchTemplatesOutput::builder()
                    .launch_templates(aws::template(8, 9))
                    .build()
            })
            .repeatedly()
            .build(),
        restore: mock!(Ec2::modify_launch_template)
            .match_requests(|r| {
                r.launch_template_id() == Some(LT) && r.default_version() == Some("8")
            })
            .then_output(|| ModifyLaunchTemplateOutput::builder().build()),
        // Only our refresh, asked for by its id, is described: in progress
        // until it is cancelled.
        refreshes: refreshes("r-1", &["InProgress", "Cancelled"]),
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
            &[&self.resume, &self.refreshes, &self.cancel, &self.groups],
            &[&self.send],
        )
    }
}

/// DescribeInstanceRefreshes of refresh `id` on the group: each call the
/// next status, the last one from then on.
fn refreshes(id: &'static str, statuses: &[&'static str]) -> Rule {
    let mut seq = mock!(Asg::describe_instance_refreshes)
        .match_requests(move |r| {
            r.auto_scaling_group_name() == Some(GROUP)
                && r.instance_refresh_ids() == [id.to_string()]
        })
        .sequence();
    for status in statuses {
        let status = *status;
        seq = seq.output(move || {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(aws::refresh(id, status, 30, "9", None))
                .build()
        });
    }
    seq.repeatedly().build()
}

/// The group with one instance per entry, each on that version as the
/// group records it.
fn groups(versions: &[&'static str]) -> Rule {
    let versions: Vec<&'static str> = versions.to_vec();
    mock!(Asg::describe_auto_scaling_groups)
        .match_requests(|r| r.auto_scaling_group_names() == [GROUP.to_string()])
        .then_output(move || {
            let mut g = aws_sdk_autoscaling::types::AutoScalingGroup::builder()
                .auto_scaling_group_name(GROUP)
                .desired_capacity(versions.len() as i32);
            for (i, v) in versions.iter().enumerate() {
                g = g.instances(
                    aws_sdk_autoscaling::types::Instance::builder()
                        .instance_id(format!("i-{i}"))
                        .launch_template(
                            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                                .launch_template_id(LT)
                                .version(*v)
                                .build(),
                        )
                        .build(),
                );
            }
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(g.build())
                .build()
        })
}

/// Runs Finalization until it is done (at most 10 calls), passing each
/// result back as the ASL does; returns the last output and the calls made.
async fn until_done(deps: &Deps, input: StepInput) -> (FinalOutput, usize) {
    let mut i = input;
    for call in 1..=10 {
        let out = run(deps, i.clone(), None).await.unwrap();
        if !out.waiting() {
            return (out, call);
        }
        i.result = Some(out.poll);
    }
    panic!("Finalization still waiting after 10 calls");
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
        .put_environment(&crate::steps::testkit::environment(), None)
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
    assert!(f.store.create_scheduled(&d, 0, None).await.unwrap());
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
    // The metrics went out once, with the write that ended the deployment.
    assert_eq!(metric_statuses(&f), ["Succeeded"]);
}

/// The `Status` of each deployment document written (step documents have none).
fn metric_statuses(f: &Fixture) -> Vec<String> {
    f.metrics
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter_map(|d| d["Status"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn a_deployment_another_run_ended_emits_no_metrics() {
    let f = fixture().await;
    let w = world(true, RECIPIENTS);
    // Ended meanwhile (e.g. by the safety net's Finalization of the same execution).
    let outcome = Outcome {
        status: DeploymentStatus::Failed,
        ended_at: f.now(),
        duration_ms: 1,
        generated_version: None,
        error: None,
    };
    assert!(f.store.finish(ENV, DEP, &outcome).await.unwrap());
    run(&w.deps(&f), input(), None).await.unwrap();
    assert!(f.metrics.lines().is_empty(), "{:?}", f.metrics.lines());
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
    // The refresh is cancelled, then waited for until it is no longer active.
    let (out, calls) = until_done(&w.deps(&f), i).await;
    assert_eq!(calls, 2);
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
    // Not while it waited for the fleet: once, when it ended.
    assert_eq!(metric_statuses(&f), ["Failed"]);
    let steps = f.metrics.lines().len() - 1;
    assert_eq!(
        steps,
        2,
        "Replace instances and Finalization ran: {:?}",
        f.metrics.lines()
    );
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
        &[&denied, &w.refreshes, &w.cancel, &w.groups],
        &[&w.send],
    );
    for _ in 0..MAX_CLEANUP_ATTEMPTS {
        let err = run(&deps, input(), None).await.unwrap_err();
        assert_eq!(err.name(), "Retryable");
        assert!(
            err.message().contains(
                "resume AZRebalance, ScheduledActions on web-asg: ResumeProcesses: AccessDenied"
            ),
            "{err}"
        );
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
    let mut w = world(true, RECIPIENTS);
    // AWS rolled the refresh back itself (AutoRollback).
    w.refreshes = refreshes("r-1", &["RollbackSuccessful"]);
    let mut i = input();
    i.error = Some(CaughtError {
        error: "RefreshRolledBack".into(),
        cause: Some("rolled back".into()),
    });
    assert_eq!(
        run(&w.deps(&f), i, None).await.unwrap().status,
        DeploymentStatus::RolledBack
    );
    assert_eq!(w.cancel.num_calls(), 0);
    assert_eq!(
        f.deployment().await.runtime.fleet_versions[GROUP],
        "all 2 instances on version 8"
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

#[path = "fleet_tests.rs"]
mod fleet_tests;
