//! Finalization brings the fleet back after a failed or cancelled deployment:
//! AWS rolls back a numbered group's active refresh; other groups get a
//! restore refresh to their own setting; Finalization waits, then records the
//! version the instances ended on.

use super::*;
use aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshOutput;
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
use aws_sdk_ec2::operation::delete_launch_template_versions::DeleteLaunchTemplateVersionsOutput;
use aws_sdk_ec2::types::DeleteLaunchTemplateVersionsResponseSuccessItem;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

fn cancelled() -> CaughtError {
    CaughtError {
        error: "Cancelled".into(),
        cause: Some("cancelled by alice".into()),
    }
}

fn failed() -> CaughtError {
    CaughtError {
        error: "RefreshFailed".into(),
        cause: Some("instance refresh r-1 Failed: unhealthy".into()),
    }
}

async fn with_prior(f: &Fixture, version: &str) {
    let v = version.to_string();
    f.update(|d| {
        d.runtime.prior_group_versions.insert(GROUP.into(), v);
    })
    .await;
}

fn rollback() -> Rule {
    mock!(Asg::rollback_instance_refresh)
        .match_requests(|r| r.auto_scaling_group_name() == Some(GROUP))
        .then_output(|| RollbackInstanceRefreshOutput::builder().build())
}

/// StartInstanceRefresh of the restore: desired `version`, skip matching on,
/// auto rollback off, on our template.
fn restore_refresh(version: &'static str) -> Rule {
    mock!(Asg::start_instance_refresh)
        .match_requests(move |r| {
            let lt = r.desired_configuration().and_then(|d| d.launch_template());
            let p = r.preferences();
            r.auto_scaling_group_name() == Some(GROUP)
                && lt.and_then(|l| l.launch_template_id()) == Some(LT)
                && lt.and_then(|l| l.version()) == Some(version)
                && p.and_then(|p| p.skip_matching()) == Some(true)
                && p.and_then(|p| p.auto_rollback()) == Some(false)
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-2")
                .build()
        })
}

/// DeleteLaunchTemplateVersions' answer: version 9 of our template deleted.
fn deleted_version_9() -> DeleteLaunchTemplateVersionsOutput {
    DeleteLaunchTemplateVersionsOutput::builder()
        .successfully_deleted_launch_template_versions(
            DeleteLaunchTemplateVersionsResponseSuccessItem::builder()
                .launch_template_id(LT)
                .version_number(9)
                .build(),
        )
        .build()
}

fn actions(d: &crate::domain::Deployment) -> Vec<String> {
    d.step(StepName::Finalization)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect()
}

#[tokio::test]
async fn cancel_during_replace_rolls_back_numbered_group() {
    let f = fixture().await;
    with_prior(&f, "8").await;
    let w = world(true, RECIPIENTS);
    let rollback = rollback();
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore],
        &[&w.resume, &w.refreshes, &w.cancel, &w.groups, &rollback],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(cancelled());
    let out = run(&deps, i, None).await.unwrap();
    assert!(out.waiting(), "waits for the rollback");
    assert_eq!((rollback.num_calls(), w.cancel.num_calls()), (1, 0));
    let d = f.deployment().await;
    assert_eq!(d.runtime.rollbacks[GROUP], "r-1");
    assert_eq!(d.status, DeploymentStatus::Running, "not finished yet");
    assert_eq!(
        f.store.lock_holder(ENV).await.unwrap().as_deref(),
        Some(DEP)
    );
    assert_eq!(w.resume.num_calls(), 0, "suspended until the fleet is back");
    assert!(actions(&d)
        .iter()
        .any(|a| a.starts_with("Rolling back instance refresh r-1 on group web-asg")));
}

#[tokio::test]
async fn waits_while_rollback_in_progress_then_records_fleet_version() {
    let f = fixture().await;
    with_prior(&f, "8").await;
    let mut w = world(true, RECIPIENTS);
    w.refreshes = refreshes(
        "r-1",
        &["InProgress", "RollbackInProgress", "RollbackSuccessful"],
    );
    let rollback = rollback();
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore],
        &[&w.resume, &w.refreshes, &w.cancel, &w.groups, &rollback],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(cancelled());
    let first = run(&deps, i.clone(), None).await.unwrap();
    assert!(first.waiting());
    i.result = Some(first.poll);
    let second = run(&deps, i.clone(), None).await.unwrap();
    assert!(second.waiting(), "RollbackInProgress: still waiting");
    assert_eq!(
        second.poll.wake_on,
        vec![format!("group:{GROUP}")],
        "woken by the group's refresh events"
    );
    assert_eq!(w.resume.num_calls(), 0);
    i.result = Some(second.poll);
    let last = run(&deps, i, None).await.unwrap();
    assert!(!last.waiting());
    assert_eq!(last.status, DeploymentStatus::Cancelled);
    assert_eq!(
        (
            rollback.num_calls(),
            w.cancel.num_calls(),
            w.resume.num_calls()
        ),
        (1, 0, 1)
    );
    let d = f.deployment().await;
    assert_eq!(d.status, DeploymentStatus::Cancelled);
    assert_eq!(
        d.runtime.fleet_versions[GROUP],
        "all 2 instances on version 8"
    );
    assert!(
        actions(&d).contains(&"Fleet of group web-asg: all 2 instances on version 8".to_string())
    );
    assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
}

#[tokio::test]
async fn default_group_failure_starts_restore_refresh() {
    let f = fixture().await;
    with_prior(&f, "$Default").await;
    let mut w = world(true, RECIPIENTS);
    // The refresh failed after replacing one of the two instances.
    w.refreshes = refreshes("r-1", &["Failed"]);
    w.groups = groups(&["9", "8"]);
    let start = restore_refresh("$Default");
    // r-2 runs, then has ended 20 s before the poll that sees it.
    let ended = f.now() - chrono::Duration::seconds(20);
    let restore_status = mock!(Asg::describe_instance_refreshes)
        .match_requests(|r| r.instance_refresh_ids() == ["r-2".to_string()])
        .sequence()
        .output(|| {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(aws::refresh("r-2", "InProgress", 50, "$Default", None))
                .build()
        })
        .output(move || {
            let mut r = aws::refresh("r-2", "Successful", 100, "$Default", None);
            r.end_time = Some(aws_sdk_autoscaling::primitives::DateTime::from_secs(
                ended.timestamp(),
            ));
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(r)
                .build()
        })
        .repeatedly()
        .build();
    let rollback = rollback();
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore],
        &[
            &w.resume,
            &w.refreshes,
            &w.cancel,
            &w.groups,
            &start,
            &restore_status,
            &rollback,
        ],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(failed());
    let out = run(&deps, i.clone(), None).await.unwrap();
    assert!(out.waiting(), "waits for the restore refresh");
    assert_eq!(start.num_calls(), 1);
    assert_eq!(
        w.restore.num_calls(),
        1,
        "the backup is the default again, so $Default is version 8"
    );
    assert_eq!(
        (rollback.num_calls(), w.cancel.num_calls()),
        (0, 0),
        "an ended refresh is neither rolled back nor cancelled"
    );
    let d = f.deployment().await;
    assert_eq!(d.runtime.restore_refreshes[GROUP], "r-2");
    // The next calls follow r-2 and start nothing more.
    i.result = Some(out.poll);
    let (out, _) = until_done(&deps, i).await;
    assert_eq!(out.status, DeploymentStatus::Failed);
    assert_eq!(start.num_calls(), 1);
    let d = f.deployment().await;
    assert!(d.runtime.fleet_versions.contains_key(GROUP));
    // When AWS says the restore refresh ended, and when Finalization saw it.
    assert_eq!(
        d.runtime.waits_noticed,
        [crate::domain::WaitNoticed {
            wait: crate::domain::WaitNoticed::FLEET_RESTORE.into(),
            group: GROUP.into(),
            ended_at: ended,
            noticed_at: f.now(),
        }]
    );
    let delays: Vec<_> = f
        .metrics
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|m| m["Wait"] == "Fleet restore")
        .map(|m| m["WaitDetectionDelay"].as_i64())
        .collect();
    assert_eq!(delays, [Some(20_000)]);
}

#[tokio::test]
async fn latest_group_failure_deletes_new_version_then_restores() {
    let f = fixture().await;
    with_prior(&f, "$Latest").await;
    let mut w = world(true, RECIPIENTS);
    w.refreshes = refreshes("r-1", &["Cancelled"]);
    w.groups = groups(&["9", "9"]);
    // (The world's template: version 9 is the default until the backup is restored.)
    let deleted = Arc::new(AtomicBool::new(false));
    let flag = deleted.clone();
    let delete = mock!(Ec2::delete_launch_template_versions)
        .match_requests(move |r| {
            let ok = r.launch_template_id() == Some(LT) && r.versions() == ["9".to_string()];
            if ok {
                flag.store(true, Ordering::SeqCst);
            }
            ok
        })
        .then_output(deleted_version_9);
    // The restore refresh may only start once $Latest is version 8 again.
    let seen = deleted.clone();
    let start = mock!(Asg::start_instance_refresh)
        .match_requests(move |r| {
            let lt = r.desired_configuration().and_then(|d| d.launch_template());
            seen.load(Ordering::SeqCst)
                && lt.and_then(|l| l.version()) == Some("$Latest")
                && r.preferences().and_then(|p| p.skip_matching()) == Some(true)
                && r.preferences().and_then(|p| p.auto_rollback()) == Some(false)
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-2")
                .build()
        });
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore, &delete],
        &[&w.resume, &w.refreshes, &w.cancel, &w.groups, &start],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(failed());
    let out = run(&deps, i, None).await.unwrap();
    assert!(out.waiting());
    assert_eq!(
        (w.restore.num_calls(), delete.num_calls(), start.num_calls()),
        (1, 1, 1)
    );
    let d = f.deployment().await;
    assert!(d.runtime.main_version_deleted);
    assert_eq!(d.runtime.restore_refreshes[GROUP], "r-2");
    assert!(actions(&d)
        .iter()
        .any(|a| a.starts_with("Deleted version 9 (this deployment's)")));
}

#[tokio::test]
async fn no_restore_refresh_when_no_instance_runs_the_new_version() {
    let f = fixture().await;
    with_prior(&f, "$Default").await;
    let mut w = world(true, RECIPIENTS);
    w.refreshes = refreshes("r-1", &["Failed"]);
    let start = restore_refresh("$Default");
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore],
        &[&w.resume, &w.refreshes, &w.cancel, &w.groups, &start],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(failed());
    let out = run(&deps, i, None).await.unwrap();
    assert!(!out.waiting());
    assert_eq!(start.num_calls(), 0);
    let d = f.deployment().await;
    assert_eq!(
        d.runtime.fleet_versions[GROUP],
        "all 2 instances on version 8"
    );
}

#[tokio::test]
async fn a_refused_rollback_falls_through_to_the_restore_refresh() {
    let f = fixture().await;
    with_prior(&f, "8").await;
    let mut w = world(true, RECIPIENTS);
    w.groups = groups(&["9", "8"]);
    // An endpoint without RollbackInstanceRefresh answers InvalidAction.
    let refused = mock!(Asg::rollback_instance_refresh).then_error(|| {
        aws_sdk_autoscaling::operation::rollback_instance_refresh::RollbackInstanceRefreshError::generic(
            aws_sdk_autoscaling::error::ErrorMetadata::builder()
                .code("InvalidAction")
                .message("not implemented")
                .build(),
        )
    });
    let start = restore_refresh("8");
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore],
        &[
            &w.resume,
            &w.refreshes,
            &w.cancel,
            &w.groups,
            &refused,
            &start,
        ],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(cancelled());
    // Call 1: refused, so cancelled; call 2: Cancelled, so restored to 8.
    let first = run(&deps, i.clone(), None).await.unwrap();
    assert!(first.waiting());
    assert_eq!((refused.num_calls(), w.cancel.num_calls()), (1, 1));
    i.result = Some(first.poll);
    let second = run(&deps, i, None).await.unwrap();
    assert!(second.waiting());
    assert_eq!(start.num_calls(), 1);
    assert_eq!(f.deployment().await.status, DeploymentStatus::Running);
}

/// A deployment that failed after Create models made version 9 but before
/// Replace instances started a refresh: a group on `$Latest` (recorded by
/// Initial validation) would launch version 9 at its next scale-out, so the
/// version goes; no instance runs it, so nothing is replaced.
#[tokio::test]
async fn latest_group_failure_before_any_refresh_deletes_the_new_version() {
    let f = fixture().await;
    with_prior(&f, "$Latest").await;
    f.update(|d| {
        d.runtime.refreshes.clear();
    })
    .await;
    let w = world(true, RECIPIENTS);
    let delete = mock!(Ec2::delete_launch_template_versions)
        .match_requests(|r| r.launch_template_id() == Some(LT) && r.versions() == ["9".to_string()])
        .then_output(deleted_version_9);
    let deps = f.deps(
        &[&w.instances, &w.start, &w.template, &w.restore, &delete],
        &[&w.resume, &w.refreshes, &w.cancel, &w.groups],
        &[&w.send],
    );
    let mut i = input();
    i.error = Some(failed());
    let out = run(&deps, i, None).await.unwrap();
    assert!(!out.waiting());
    assert_eq!((w.restore.num_calls(), delete.num_calls()), (1, 1));
    let d = f.deployment().await;
    assert!(d.runtime.main_version_deleted);
    assert_eq!(d.status, crate::domain::DeploymentStatus::Failed);
}
