//! Initial validation against mocked AWS answers and the in-memory store:
//! the checks and their refusals, the lock, retries, and whose run it is.

use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{aws, environment, input, strs, Fixture, DEP, ENV, GROUP, LT, SERVER};
use crate::store::Store;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::operation::suspend_processes::SuspendProcessesOutput;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::describe_instances::{DescribeInstancesError, DescribeInstancesOutput};
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_smithy_mocks::{mock, Rule};

type Ec2 = aws_sdk_ec2::Client;
type Asg = aws_sdk_autoscaling::Client;

fn event() -> StateWithExecution {
    StateWithExecution {
        state: input(),
        execution_arn: Some("arn:aws:states:us-east-1:1:execution:sm:x".into()),
    }
}

struct World {
    instances: Rule,
    templates: Rule,
    groups: Rule,
    refreshes: Rule,
    suspend: Rule,
}

fn world(
    server_state: &str,
    group_lt: &str,
    suspended: &'static [&'static str],
    refresh: Option<&'static str>,
) -> World {
    let state = server_state.to_string();
    let lt = group_lt.to_string();
    World {
        instances: mock!(Ec2::describe_instances)
            .match_requests(|r| strs(r.instance_ids()) == [SERVER])
            .then_output(move || {
                DescribeInstancesOutput::builder()
                    .reservations(aws::instance(SERVER, &state))
                    .build()
            }),
        templates: mock!(Ec2::describe_launch_templates).then_output(|| {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::template(3, 3))
                .build()
        }),
        groups: mock!(Asg::describe_auto_scaling_groups).then_output(move || {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(aws::group(2, "3", suspended, &lt))
                .build()
        }),
        refreshes: mock!(Asg::describe_instance_refreshes).then_output(move || {
            let mut b = DescribeInstanceRefreshesOutput::builder();
            if let Some(status) = refresh {
                b = b.instance_refreshes(aws::refresh("r-old", status, 10, "2", None));
            }
            b.build()
        }),
        // Only the exact set not already suspended may be requested.
        suspend: mock!(Asg::suspend_processes)
            .match_requests(|r| {
                r.auto_scaling_group_name() == Some(GROUP)
                    && strs(r.scaling_processes()) == ["AZRebalance", "ScheduledActions"]
            })
            .then_output(|| SuspendProcessesOutput::builder().build()),
    }
}

impl World {
    fn deps(&self, f: &Fixture) -> Deps {
        f.deps(
            &[&self.instances, &self.templates],
            &[&self.groups, &self.refreshes, &self.suspend],
            &[],
        )
    }
}

#[tokio::test]
async fn happy_path_records_server_info_locks_and_suspends_the_missing_processes() {
    // GIVEN a registered environment, no record yet, AlarmNotification already suspended
    let f = Fixture::empty();
    f.store.put_environment(&environment(), None).await.unwrap();
    let w = world("running", LT, &["AlarmNotification"], Some("Successful"));
    let mut e = event();
    e.state.options = Some(crate::domain::RequestedOptions {
        lock_instances: Some(true),
        ..Default::default()
    });
    e.state.owner = Some("alice".into());
    // WHEN
    let out = run(&w.deps(&f), e).await.unwrap();
    // THEN
    assert!(out.done);
    assert_eq!(w.suspend.num_calls(), 1);
    assert_eq!(
        f.store.lock_holder(ENV).await.unwrap().as_deref(),
        Some(DEP)
    );
    let d = f.deployment().await;
    assert_eq!(d.owner, "alice");
    assert_eq!(
        d.execution_arn.as_deref(),
        Some("arn:aws:states:us-east-1:1:execution:sm:x")
    );
    assert_eq!(d.runtime.prior_suspended[GROUP], vec!["AlarmNotification"]);
    // The group's own setting, kept for Finalization whatever fails later.
    assert_eq!(d.runtime.prior_group_versions[GROUP], "3");
    assert_eq!(
        d.runtime.suspended_by_us[GROUP],
        vec!["AZRebalance", "ScheduledActions"]
    );
    let step = d.step(StepName::InitialValidation);
    assert_eq!(step.status, StepStatus::Succeeded);
    let log: Vec<_> = step.actions.iter().map(|a| a.message.as_str()).collect();
    assert!(log.contains(&"Preparation server i-0prep (prep): state running, private IP 10.0.0.10, platform Linux/UNIX"));
    assert!(log
        .iter()
        .any(|m| m.contains("already suspended: AlarmNotification")));
}

#[tokio::test]
async fn a_retry_suspends_nothing_twice() {
    let f = Fixture::new(DeploymentOptions {
        lock_instances: true,
        ..Default::default()
    })
    .await;
    let w = world("running", LT, &["AlarmNotification"], None);
    run(&w.deps(&f), event()).await.unwrap();
    f.update(|d| d.steps[0] = crate::domain::StepRecord::pending(StepName::InitialValidation))
        .await;
    run(&w.deps(&f), event()).await.unwrap();
    assert_eq!(w.suspend.num_calls(), 1);
}

fn scheduled(f: &Fixture) -> Deployment {
    Deployment::new_scheduled(
        DEP.into(),
        ENV.into(),
        "alice@example.com".into(),
        DeploymentOptions {
            lock_instances: true,
            ..Default::default()
        },
        f.now(),
        f.now(),
        crate::domain::ScheduleInfo {
            at: "2026-11-27T09:00:00".into(),
            timezone: "UTC".into(),
            schedule_name: DEP.into(),
            schedule_group: "autosky".into(),
        },
    )
}

#[tokio::test]
async fn a_schedule_delivered_twice_runs_once_and_records_the_second() {
    let f = Fixture::empty();
    f.store.put_environment(&environment(), None).await.unwrap();
    assert!(f
        .store
        .create_scheduled(&scheduled(&f), 0, None)
        .await
        .unwrap());
    let w = world("running", LT, &["AlarmNotification"], None);
    // First delivery: Scheduled → Running, owned by this execution.
    run(&w.deps(&f), event()).await.unwrap();
    let d = f.deployment().await;
    assert_eq!(d.status, DeploymentStatus::Running);
    assert_eq!(d.owner, "alice@example.com");
    assert_eq!(d.execution_arn.as_deref(), event().execution_arn.as_deref());
    assert!(f.store.schedules(ENV).await.unwrap().entries.is_empty());
    // A retry of the same execution carries on.
    run(&w.deps(&f), event()).await.unwrap();
    let before = f.deployment().await;
    // Second delivery (another execution): ignored, nothing touched.
    let mut second = event();
    second.execution_arn = Some("arn:aws:states:us-east-1:1:execution:sm:y".into());
    let err = run(&w.deps(&f), second).await.unwrap_err();
    assert_eq!(err.name(), "AlreadyHandled");
    assert_eq!(w.suspend.num_calls(), 1);
    let after = f.deployment().await;
    assert_eq!(after.steps, before.steps);
    assert_eq!(after.runtime, before.runtime);
    assert_eq!(after.status, DeploymentStatus::Running);
    assert_eq!(after.ignored_runs.len(), 1);
    assert!(after.ignored_runs[0].reason.contains("is run by execution"));
    assert_eq!(
        f.store.lock_holder(ENV).await.unwrap().as_deref(),
        Some(DEP)
    );
}

#[tokio::test]
async fn a_schedule_firing_after_cancel_touches_nothing() {
    let f = Fixture::empty();
    f.store.put_environment(&environment(), None).await.unwrap();
    assert!(f
        .store
        .create_scheduled(&scheduled(&f), 0, None)
        .await
        .unwrap());
    let end = crate::store::ScheduledEnd {
        status: DeploymentStatus::Cancelled,
        at: f.now(),
        cancelled_by: Some("bob".into()),
        error: None,
    };
    assert!(f.store.end_scheduled(ENV, DEP, &end, None).await.unwrap());
    let w = world("running", LT, &[], None);
    let err = run(&w.deps(&f), event()).await.unwrap_err();
    assert_eq!(err.name(), "AlreadyHandled");
    assert!(err.message().contains("cancelled by bob"), "{err}");
    assert_eq!(w.instances.num_calls(), 0);
    assert_eq!(w.suspend.num_calls(), 0);
    assert_eq!(f.store.lock_holder(ENV).await.unwrap(), None);
    let d = f.deployment().await;
    assert_eq!(d.status, DeploymentStatus::Cancelled);
    assert_eq!(d.ignored_runs.len(), 1);
}

#[tokio::test]
async fn unknown_environment_fails_and_creates_nothing() {
    let f = Fixture::empty();
    let w = world("running", LT, &[], None);
    let err = run(&w.deps(&f), event()).await.unwrap_err();
    assert_eq!(
        err,
        StepError::ValidationFailed("environment 'prod-web' is not registered".into())
    );
    assert!(f.store.deployment(ENV, DEP).await.unwrap().is_none());
    assert!(f.store.lock_holder(ENV).await.unwrap().is_none());
    assert_eq!(w.instances.num_calls(), 0);
}

#[tokio::test]
async fn missing_server_is_named() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let w = world("running", LT, &[], None);
    let none = mock!(Ec2::describe_instances).then_error(|| {
        DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("InvalidInstanceID.NotFound")
                .build(),
        )
    });
    let deps = f.deps(&[&none, &w.templates], &[&w.groups, &w.refreshes], &[]);
    let err = run(&deps, event()).await.unwrap_err();
    assert_eq!(
        err,
        StepError::ValidationFailed("preparation server i-0prep not found".into())
    );
}

#[tokio::test]
async fn group_on_another_template_is_refused() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let w = world("running", "lt-other", &[], None);
    let err = run(&w.deps(&f), event()).await.unwrap_err();
    assert_eq!(err.name(), "ValidationFailed");
    assert!(
        err.message()
            .contains("web-asg uses launch template lt-other, not lt-0abc"),
        "{err}"
    );
}

#[tokio::test]
async fn a_running_refresh_refuses_the_deployment() {
    let f = Fixture::new(DeploymentOptions {
        lock_instances: true,
        ..Default::default()
    })
    .await;
    let w = world("running", LT, &[], Some("InProgress"));
    let err = run(&w.deps(&f), event()).await.unwrap_err();
    assert_eq!(err.name(), "RefreshInProgress");
    assert!(err.message().contains("r-old"));
    assert_eq!(w.suspend.num_calls(), 0);
}

#[tokio::test]
async fn a_held_lock_refuses_with_the_holder() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    f.store
        .acquire_lock(ENV, "01JOTHER000000000000000000", f.now())
        .await
        .unwrap();
    let w = world("running", LT, &[], None);
    let err = run(&w.deps(&f), event()).await.unwrap_err();
    assert_eq!(err.name(), "EnvironmentLocked");
    assert!(err.message().contains("01JOTHER000000000000000000"));
    assert_eq!(w.instances.num_calls(), 0);
}

#[tokio::test]
async fn throttling_is_retryable() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let w = world("running", LT, &[], None);
    let throttled = mock!(Ec2::describe_instances).then_error(|| {
        DescribeInstancesError::generic(
            ErrorMetadata::builder()
                .code("RequestLimitExceeded")
                .message("slow down")
                .build(),
        )
    });
    let deps = f.deps(&[&throttled, &w.templates], &[&w.groups, &w.refreshes], &[]);
    assert_eq!(run(&deps, event()).await.unwrap_err().name(), "Retryable");
}

/// A group answer with `edit` applied to the testkit's group on `LT`.
fn groups_answer(
    edit: impl Fn(
            aws_sdk_autoscaling::types::builders::AutoScalingGroupBuilder,
        ) -> aws_sdk_autoscaling::types::builders::AutoScalingGroupBuilder
        + Send
        + Sync
        + 'static,
) -> Rule {
    mock!(Asg::describe_auto_scaling_groups).then_output(move || {
        let g = aws::group(2, "3", &[], LT);
        let b = aws_sdk_autoscaling::types::AutoScalingGroup::builder()
            .auto_scaling_group_name(g.auto_scaling_group_name().unwrap())
            .desired_capacity(2)
            .set_instances(Some(g.instances().to_vec()))
            .set_tags(Some(g.tags().to_vec()));
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(edit(b).build())
            .build()
    })
}

fn spec(id: &str) -> aws_sdk_autoscaling::types::LaunchTemplateSpecification {
    aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
        .launch_template_id(id)
        .version("3")
        .build()
}

fn mixed(
    main: &str,
    overrides: &[(&str, Option<&str>)],
) -> aws_sdk_autoscaling::types::MixedInstancesPolicy {
    use aws_sdk_autoscaling::types::{
        LaunchTemplate, LaunchTemplateOverrides, MixedInstancesPolicy,
    };
    let mut lt = LaunchTemplate::builder().launch_template_specification(spec(main));
    for (t, other) in overrides {
        let mut o = LaunchTemplateOverrides::builder().instance_type(*t);
        if let Some(id) = other {
            o = o.launch_template_specification(spec(id));
        }
        lt = lt.overrides(o.build());
    }
    MixedInstancesPolicy::builder()
        .launch_template(lt.build())
        .build()
}

/// Runs validation with lock instances on against `groups`; returns the
/// error and how often SuspendProcesses was called.
async fn refused(groups: Rule) -> (StepError, usize) {
    let f = Fixture::new(DeploymentOptions {
        lock_instances: true,
        ..Default::default()
    })
    .await;
    let w = world("running", LT, &[], None);
    let deps = f.deps(
        &[&w.instances, &w.templates],
        &[&groups, &w.refreshes, &w.suspend],
        &[],
    );
    let err = run(&deps, event()).await.unwrap_err();
    (err, w.suspend.num_calls())
}

#[tokio::test]
async fn group_on_a_launch_configuration_is_refused_with_what_to_do() {
    let (err, suspends) = refused(groups_answer(|b| b.launch_configuration_name("web-lc"))).await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "Auto Scaling group {GROUP} uses launch configuration web-lc; switch it to launch \
             template {LT} (any version) to deploy with Autosky"
        ))
    );
    assert_eq!(suspends, 0, "nothing changed");
}

#[tokio::test]
async fn group_on_another_template_names_both_and_what_to_do() {
    let (err, suspends) = refused(groups_answer(|b| b.launch_template(spec("lt-other")))).await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "Auto Scaling group {GROUP} uses launch template lt-other, not {LT}; switch it to \
             launch template {LT} (any version) to deploy with Autosky"
        ))
    );
    assert_eq!(suspends, 0);
}

#[tokio::test]
async fn mixed_policy_on_another_template_is_refused() {
    let (err, suspends) = refused(groups_answer(|b| {
        b.mixed_instances_policy(mixed("lt-other", &[]))
    }))
    .await;
    assert_eq!(err.name(), "ValidationFailed");
    assert!(
        err.message().contains(&format!(
            "uses launch template lt-other in its mixed instances policy, not {LT}"
        )),
        "{err}"
    );
    assert_eq!(suspends, 0);
}

#[tokio::test]
async fn mixed_override_on_another_template_is_refused() {
    let policy = mixed(LT, &[("c5.large", None), ("m5.large", Some("lt-arm"))]);
    let (err, suspends) = refused(groups_answer(move |b| {
        b.mixed_instances_policy(policy.clone())
    }))
    .await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "Auto Scaling group {GROUP} uses launch template lt-arm in its mixed instances \
             policy's override for m5.large, not {LT}; switch it to launch template {LT} (any \
             version) to deploy with Autosky"
        ))
    );
    assert_eq!(suspends, 0);
}

#[tokio::test]
async fn mixed_group_on_our_template_everywhere_is_accepted() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let w = world("running", LT, &[], None);
    let policy = mixed(LT, &[("c5.large", None), ("m5.large", Some(LT))]);
    let groups = groups_answer(move |b| b.mixed_instances_policy(policy.clone()));
    let deps = f.deps(&[&w.instances, &w.templates], &[&groups, &w.refreshes], &[]);
    assert!(run(&deps, event()).await.unwrap().done);
}

/// Runs validation with lock instances on, the world's answers replaced by
/// those given; returns the error and how often SuspendProcesses was called.
async fn refused_with(
    instances: Option<Rule>,
    templates: Option<Rule>,
    groups: Option<Rule>,
) -> (StepError, usize) {
    let f = Fixture::new(DeploymentOptions {
        lock_instances: true,
        ..Default::default()
    })
    .await;
    let w = world("running", LT, &[], None);
    let instances = instances.unwrap_or(w.instances);
    let templates = templates.unwrap_or(w.templates);
    let groups = groups.unwrap_or(w.groups);
    let deps = f.deps(
        &[&instances, &templates],
        &[&groups, &w.refreshes, &w.suspend],
        &[],
    );
    let err = run(&deps, event()).await.unwrap_err();
    (err, w.suspend.num_calls())
}

#[tokio::test]
async fn a_server_tagged_with_another_environment_is_refused() {
    let instances = mock!(Ec2::describe_instances)
        .match_requests(|r| strs(r.instance_ids()) == [SERVER])
        .then_output(|| {
            DescribeInstancesOutput::builder()
                .reservations(aws::tagged_instance(SERVER, "stopped", Some("staging")))
                .build()
        });
    let (err, suspends) = refused_with(Some(instances), None, None).await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "preparation server {SERVER} is tagged autosky:environment=staging, not {ENV}: an \
             environment may only use resources tagged with its own id"
        ))
    );
    assert_eq!(suspends, 0, "nothing changed");
}

#[tokio::test]
async fn an_untagged_launch_template_is_refused() {
    let templates = mock!(Ec2::describe_launch_templates)
        .match_requests(|r| strs(r.launch_template_ids()) == [LT])
        .then_output(|| {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::tagged_template(3, 3, None))
                .build()
        });
    let (err, suspends) = refused_with(None, Some(templates), None).await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "launch template {LT} (web) has no autosky:environment tag: tag it \
             autosky:environment={ENV} (the functions' IAM policies refuse untagged resources)"
        ))
    );
    assert_eq!(suspends, 0);
}

#[tokio::test]
async fn a_group_tagged_with_another_environment_is_refused_before_any_suspension() {
    let groups = mock!(Asg::describe_auto_scaling_groups)
        .match_requests(|r| strs(r.auto_scaling_group_names()) == [GROUP])
        .then_output(|| {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(aws::tagged_group(2, "3", &[], LT, Some("prod-api")))
                .build()
        });
    let (err, suspends) = refused_with(None, None, Some(groups)).await;
    assert_eq!(
        err,
        StepError::ValidationFailed(format!(
            "Auto Scaling group {GROUP} is tagged autosky:environment=prod-api, not {ENV}: an \
             environment may only use resources tagged with its own id"
        ))
    );
    assert_eq!(suspends, 0);
}

/// `$Latest` always resolves to the newest version: a rollback to an older
/// one is refused before anything changes, naming the group.
#[tokio::test]
async fn a_rollback_refuses_a_group_on_latest_before_any_change() {
    let f = Fixture::rollback(
        DeploymentOptions {
            lock_instances: true,
            ..Default::default()
        },
        Some(crate::steps::testkit::rollback_of(2)),
    )
    .await;
    let w = world("running", LT, &[], None);
    let latest = mock!(Asg::describe_auto_scaling_groups).then_output(|| {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(aws::group(2, "$Latest", &[], LT))
            .build()
    });
    let deps = f.deps(
        &[&w.instances, &w.templates],
        &[&latest, &w.refreshes, &w.suspend],
        &[],
    );
    let err = run(&deps, event()).await.unwrap_err();
    assert_eq!(err.name(), "ValidationFailed");
    assert!(
        err.message().starts_with(&format!(
            "Auto Scaling group {GROUP} uses $Latest, which always resolves to the newest version of {LT}: \
             a rollback to version 2 cannot apply to it"
        )),
        "{}",
        err.message()
    );
    assert_eq!(w.suspend.num_calls(), 0, "nothing changed");
}
