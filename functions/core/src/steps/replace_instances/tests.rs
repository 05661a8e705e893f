//! Replace instances against mocked Auto Scaling answers: the request sent
//! (version kind, AutoRollback, mixed policy), adoption, progress by id.

use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{aws, input, Fixture, GROUP, LT};
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
use aws_sdk_autoscaling::types::{InstanceRefresh, RefreshStrategy};
use aws_smithy_mocks::{mock, Rule};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

type Asg = aws_sdk_autoscaling::Client;

fn groups(desired: i32) -> Rule {
    groups_on(desired, "8")
}

/// The group with `desired` instances, on launch template `version`.
fn groups_on(desired: i32, version: &'static str) -> Rule {
    mock!(Asg::describe_auto_scaling_groups).then_output(move || {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(aws::group(desired, version, &[], LT))
            .build()
    })
}

/// Answers only DescribeInstanceRefreshes for our refresh id `r-1`.
fn ours_by_id(status: &'static str, version: &'static str) -> Rule {
    mock!(Asg::describe_instance_refreshes)
        .match_requests(|r| r.instance_refresh_ids() == ["r-1".to_string()])
        .then_output(move || {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(aws::refresh("r-1", status, 40, version, None))
                .build()
        })
}

/// Answers only the id-less listing (adoption), with `list`.
fn listing(list: Vec<InstanceRefresh>) -> Rule {
    mock!(Asg::describe_instance_refreshes)
        .match_requests(|r| r.instance_refresh_ids().is_empty())
        .then_output(move || {
            DescribeInstanceRefreshesOutput::builder()
                .set_instance_refreshes(Some(list.clone()))
                .build()
        })
}

fn started_at(mut r: InstanceRefresh, at: chrono::DateTime<chrono::Utc>) -> InstanceRefresh {
    r.start_time = Some(aws_sdk_autoscaling::primitives::DateTime::from_secs(
        at.timestamp(),
    ));
    r
}

/// Matches only a refresh to `version` with AutoRollback `rollback`.
fn start_to(version: &'static str, rollback: bool) -> Rule {
    mock!(Asg::start_instance_refresh)
        .match_requests(move |r| {
            let lt = r.desired_configuration().and_then(|d| d.launch_template());
            lt.and_then(|l| l.version()) == Some(version)
                && lt.and_then(|l| l.launch_template_id()) == Some(LT)
                && r.preferences().and_then(|p| p.auto_rollback()) == Some(rollback)
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-1")
                .build()
        })
}

/// The refresh's status over successive describes (empty first = none yet).
fn refreshes(seq: &'static [(&'static str, i32)], reason: Option<&'static str>) -> Rule {
    let n = Arc::new(AtomicUsize::new(0));
    mock!(Asg::describe_instance_refreshes).then_output(move || {
        let i = n.fetch_add(1, Ordering::SeqCst).min(seq.len() - 1);
        let (status, pct) = seq[i];
        let mut b = DescribeInstanceRefreshesOutput::builder();
        if !status.is_empty() {
            b = b.instance_refreshes(aws::refresh("r-1", status, pct, "9", reason));
        }
        b.build()
    })
}

/// Matches only a rolling refresh pinned to version number 9 with the environment's preferences.
fn start() -> Rule {
    mock!(Asg::start_instance_refresh)
        .match_requests(|r| {
            let lt = r.desired_configuration().and_then(|d| d.launch_template());
            let p = r.preferences();
            r.auto_scaling_group_name() == Some(GROUP)
                && r.strategy() == Some(&RefreshStrategy::Rolling)
                && lt.and_then(|l| l.version()) == Some("9")
                && lt.and_then(|l| l.launch_template_id()) == Some(LT)
                && p.and_then(|p| p.min_healthy_percentage()) == Some(90)
                && p.and_then(|p| p.skip_matching()) == Some(true)
                && p.and_then(|p| p.auto_rollback()) == Some(true)
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-1")
                .build()
        })
}

async fn fixture() -> Fixture {
    let f = Fixture::new(DeploymentOptions::default()).await;
    f.update(|d| d.runtime.main_version = Some(9)).await;
    f
}

#[tokio::test]
async fn starts_a_pinned_refresh_records_progress_and_ends_when_successful() {
    let f = fixture().await;
    let (g, r, s) = (
        groups(2),
        refreshes(
            &[
                ("", 0),
                ("Pending", 0),
                ("InProgress", 50),
                ("Successful", 100),
            ],
            None,
        ),
        start(),
    );
    let deps = f.deps(&[], &[&g, &r, &s], &[]);
    let mut i = input();
    for _ in 0..3 {
        let p = run(&deps, i.clone()).await.unwrap();
        if p.done {
            break;
        }
        i.replace = Some(p);
    }
    assert_eq!(s.num_calls(), 1);
    let d = f.deployment().await;
    let step = d.step(StepName::ReplaceInstances);
    assert_eq!(step.status, StepStatus::Succeeded);
    let log: Vec<_> = step.actions.iter().map(|a| a.message.as_str()).collect();
    assert!(
        log.contains(&"Group web-asg: 50% of instances replaced (InProgress)"),
        "{log:?}"
    );
    assert!(log.contains(&"All instances replaced"));
}

#[tokio::test]
async fn adopts_a_refresh_already_started_for_this_version() {
    let f = fixture().await;
    let (g, r, s) = (groups(2), refreshes(&[("InProgress", 20)], None), start());
    assert!(
        !run(&f.deps(&[], &[&g, &r, &s], &[]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!(s.num_calls(), 0);
    assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");
}

#[tokio::test]
async fn not_applicable_without_instances_on_default() {
    let f = fixture().await;
    let (g, r, s) = (
        groups_on(0, "$Default"),
        refreshes(&[("", 0)], None),
        start(),
    );
    assert!(
        run(&f.deps(&[], &[&g, &r, &s], &[]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!(s.num_calls(), 0);
    assert_eq!(
        f.deployment().await.step(StepName::ReplaceInstances).status,
        StepStatus::NotApplicable
    );
}

/// An empty group on a version number still gets its refresh: the refresh
/// moves its setting to the main model on success, so a later scale-out
/// launches the new version.
#[tokio::test]
async fn an_empty_numbered_group_is_refreshed_to_the_main_model() {
    let f = fixture().await;
    let (g, r, s) = (
        groups(0),
        refreshes(&[("", 0), ("Pending", 0)], None),
        start(),
    );
    assert!(
        !run(&f.deps(&[], &[&g, &r, &s], &[]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!(s.num_calls(), 1);
    assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");
}

#[tokio::test]
async fn a_failed_refresh_fails_with_its_reason() {
    let f = fixture().await;
    let (g, r, s) = (
        groups(2),
        refreshes(&[("", 0), ("Failed", 50)], Some("health checks failed")),
        start(),
    );
    let err = run(&f.deps(&[], &[&g, &r, &s], &[]), input())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "RefreshFailed");
    assert!(err.message().contains("health checks failed"));
}

#[tokio::test]
async fn a_rolled_back_refresh_is_reported_as_such() {
    let f = fixture().await;
    let (g, r, s) = (
        groups(2),
        refreshes(&[("", 0), ("RollbackSuccessful", 100)], Some("alarm")),
        start(),
    );
    let err = run(&f.deps(&[], &[&g, &r, &s], &[]), input())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "RefreshRolledBack");
}

async fn log(f: &Fixture) -> Vec<String> {
    f.deployment()
        .await
        .step(StepName::ReplaceInstances)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect()
}

#[tokio::test]
async fn progress_asks_for_our_refresh_by_id() {
    let f = fixture().await;
    f.update(|d| {
        d.runtime.refreshes.insert(GROUP.into(), "r-1".into());
    })
    .await;
    let (g, r) = (groups(2), ours_by_id("Successful", "9"));
    let p = run(&f.deps(&[], &[&g, &r], &[]), input()).await.unwrap();
    assert!(p.done);
    assert_eq!(r.num_calls(), 1);
}

#[tokio::test]
async fn starts_default_group_without_auto_rollback_and_keeps_default() {
    let f = fixture().await;
    let (g, s, r) = (
        groups_on(2, "$Default"),
        start_to("$Default", false),
        ours_by_id("InProgress", "$Default"),
    );
    let p = run(&f.deps(&[], &[&g, &s, &r], &[]), input())
        .await
        .unwrap();
    assert!(!p.done);
    assert_eq!(s.num_calls(), 1);
    let d = f.deployment().await;
    assert_eq!(d.runtime.refreshes[GROUP], "r-1");
    assert_eq!(d.runtime.prior_group_versions[GROUP], "$Default");
    assert_eq!(d.runtime.refresh_requested_at[GROUP], f.now());
    let log = log(&f).await;
    assert!(
        log.iter().any(|l| l.starts_with(
            "Auto rollback is not available for group web-asg: it uses the $Default launch template version"
        )),
        "{log:?}"
    );
    assert!(
        log.contains(&"Started instance refresh r-1 on group web-asg to launch template version $Default (version 9) (2 instances)".to_string()),
        "{log:?}"
    );
}

#[tokio::test]
async fn numbered_group_gets_auto_rollback_and_the_number() {
    let f = fixture().await;
    let (g, l, s, r) = (
        groups_on(2, "8"),
        listing(vec![]),
        start_to("9", true),
        ours_by_id("InProgress", "9"),
    );
    run(&f.deps(&[], &[&g, &l, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 1);
    assert_eq!(
        f.deployment().await.runtime.prior_group_versions[GROUP],
        "8"
    );
    assert!(!log(&f).await.iter().any(|l| l.contains("Auto rollback")));
}

#[tokio::test]
async fn no_auto_rollback_note_when_the_environment_does_not_ask_for_it() {
    let f = fixture().await;
    let mut env = crate::steps::testkit::environment();
    env.defaults.refresh_preferences.auto_rollback = false;
    crate::store::Store::put_environment(f.store.as_ref(), &env, None)
        .await
        .unwrap();
    let (g, s, r) = (
        groups_on(2, "$Default"),
        start_to("$Default", false),
        ours_by_id("InProgress", "$Default"),
    );
    run(&f.deps(&[], &[&g, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 1);
    assert!(!log(&f).await.iter().any(|l| l.contains("Auto rollback")));
}

#[tokio::test]
async fn latest_group_gets_latest_when_it_is_the_main_model() {
    use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
    let f = fixture().await;
    let lt = mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
        DescribeLaunchTemplatesOutput::builder()
            .launch_templates(aws::template(9, 9))
            .build()
    });
    let (g, s, r) = (
        groups_on(2, "$Latest"),
        start_to("$Latest", false),
        ours_by_id("InProgress", "$Latest"),
    );
    run(&f.deps(&[&lt], &[&g, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 1);

    // A newer version than the main model: $Latest would deploy it instead.
    let f = fixture().await;
    let lt = mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
        DescribeLaunchTemplatesOutput::builder()
            .launch_templates(aws::template(9, 10))
            .build()
    });
    let s = start_to("$Latest", false);
    let err = run(&f.deps(&[&lt], &[&g, &s, &r], &[]), input())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "InvalidState");
    assert_eq!(s.num_calls(), 0);
}

/// A crash after StartInstanceRefresh but before the id was saved: the
/// refresh to $Default that started after the recorded request is ours;
/// an older one to $Default (someone else's) is not.
#[tokio::test]
async fn adopts_our_default_refresh_after_a_crash_by_start_time() {
    let f = fixture().await;
    let asked = f.now();
    f.update(|d| {
        d.runtime.refresh_requested_at.insert(GROUP.into(), asked);
    })
    .await;
    let ours = started_at(
        aws::refresh("r-1", "InProgress", 0, "$Default", None),
        asked + chrono::Duration::seconds(2),
    );
    let (g, l, s, r) = (
        groups_on(2, "$Default"),
        listing(vec![ours]),
        start_to("$Default", false),
        ours_by_id("InProgress", "$Default"),
    );
    run(&f.deps(&[], &[&g, &l, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 0);
    assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");

    let f = fixture().await;
    f.update(|d| {
        d.runtime.refresh_requested_at.insert(GROUP.into(), asked);
    })
    .await;
    let old = started_at(
        aws::refresh("r-old", "Successful", 100, "$Default", None),
        asked - chrono::Duration::hours(1),
    );
    let (l, s) = (listing(vec![old]), start_to("$Default", false));
    run(&f.deps(&[], &[&g, &l, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 1);
    assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");
}

/// Adoption follows NextToken: ours is on the second page.
#[tokio::test]
async fn adoption_pages_through_the_refreshes() {
    let f = fixture().await;
    let first = mock!(Asg::describe_instance_refreshes)
        .match_requests(|r| {
            r.instance_refresh_ids().is_empty()
                && r.next_token().is_none()
                && r.max_records() == Some(100)
        })
        .then_output(|| {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(aws::refresh("r-other", "Successful", 100, "7", None))
                .next_token("page-2")
                .build()
        });
    let second = mock!(Asg::describe_instance_refreshes)
        .match_requests(|r| r.next_token() == Some("page-2"))
        .then_output(|| {
            DescribeInstanceRefreshesOutput::builder()
                .instance_refreshes(aws::refresh("r-1", "InProgress", 10, "9", None))
                .build()
        });
    let (g, s, r) = (groups(2), start(), ours_by_id("InProgress", "9"));
    run(&f.deps(&[], &[&g, &first, &second, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
    assert_eq!(s.num_calls(), 0);
    assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");
}

/// A group with a mixed instances policy on version 8: two instance
/// types (the second on our template by an override), half on demand.
fn mixed_group() -> aws_sdk_autoscaling::types::AutoScalingGroup {
    use aws_sdk_autoscaling::types as asg;
    let spec = |v: &str| {
        asg::LaunchTemplateSpecification::builder()
            .launch_template_id(LT)
            .version(v)
            .build()
    };
    let mut g = aws::group(2, "8", &[], LT);
    g.launch_template = None;
    g.mixed_instances_policy = Some(
        asg::MixedInstancesPolicy::builder()
            .launch_template(
                asg::LaunchTemplate::builder()
                    .launch_template_specification(spec("8"))
                    .overrides(
                        asg::LaunchTemplateOverrides::builder()
                            .instance_type("c5.large")
                            .build(),
                    )
                    .overrides(
                        asg::LaunchTemplateOverrides::builder()
                            .instance_type("m5.large")
                            .weighted_capacity("2")
                            .launch_template_specification(spec("8"))
                            .build(),
                    )
                    .build(),
            )
            .instances_distribution(
                asg::InstancesDistribution::builder()
                    .on_demand_percentage_above_base_capacity(50)
                    .spot_allocation_strategy("price-capacity-optimized")
                    .build(),
            )
            .build(),
    );
    g
}

#[tokio::test]
async fn mixed_group_keeps_overrides_and_distribution() {
    let f = fixture().await;
    let g = mock!(Asg::describe_auto_scaling_groups).then_output(|| {
        DescribeAutoScalingGroupsOutput::builder()
            .auto_scaling_groups(mixed_group())
            .build()
    });
    let s = mock!(Asg::start_instance_refresh)
        .match_requests(|r| {
            let Some(d) = r.desired_configuration() else {
                return false;
            };
            let Some(m) = d.mixed_instances_policy() else {
                return false;
            };
            let lt = m.launch_template();
            let spec = lt.and_then(|l| l.launch_template_specification());
            let overrides = lt.map(|l| l.overrides()).unwrap_or_default();
            let types: Vec<_> = overrides.iter().filter_map(|o| o.instance_type()).collect();
            d.launch_template().is_none()
                && spec.and_then(|s| s.launch_template_id()) == Some(LT)
                && spec.and_then(|s| s.version()) == Some("9")
                && types == ["c5.large", "m5.large"]
                && overrides[1].weighted_capacity() == Some("2")
                && overrides[1]
                    .launch_template_specification()
                    .and_then(|s| s.version())
                    == Some("9")
                && m.instances_distribution()
                    .and_then(|d| d.on_demand_percentage_above_base_capacity())
                    == Some(50)
                && m.instances_distribution()
                    .and_then(|d| d.spot_allocation_strategy())
                    == Some("price-capacity-optimized")
                && r.preferences().and_then(|p| p.auto_rollback()) == Some(true)
        })
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-1")
                .build()
        });
    let (l, r) = (listing(vec![]), ours_by_id("InProgress", "9"));
    run(&f.deps(&[], &[&g, &l, &s, &r], &[]), input())
        .await
        .unwrap();
    assert_eq!(s.num_calls(), 1);
}

/// An environment with checkpoints [10, 50], a 900 s checkpoint delay, a
/// 300 s bake time and one alarm.
async fn rollout_fixture() -> Fixture {
    let f = fixture().await;
    let mut env = crate::steps::testkit::environment();
    let p = &mut env.defaults.refresh_preferences;
    p.checkpoint_percentages = vec![10, 50];
    p.checkpoint_delay_seconds = Some(900);
    p.bake_time_seconds = Some(300);
    p.alarms = vec!["web-5xx".into()];
    crate::store::Store::put_environment(f.store.as_ref(), &env, None)
        .await
        .unwrap();
    f
}

/// StartInstanceRefresh answered only when its preferences satisfy `sent`.
fn start_with_preferences(
    sent: impl Fn(&aws_sdk_autoscaling::types::RefreshPreferences) -> bool + Send + Sync + 'static,
) -> Rule {
    mock!(Asg::start_instance_refresh)
        .match_requests(move |r| r.preferences().is_some_and(&sent))
        .then_output(|| {
            StartInstanceRefreshOutput::builder()
                .instance_refresh_id("r-1")
                .build()
        })
}

/// Runs the step on a group of 2 and checks `start` was the one refresh sent.
async fn starts_once_with(f: &Fixture, start: &Rule) {
    let (g, r) = (groups(2), refreshes(&[("", 0), ("Pending", 0)], None));
    run(&f.deps(&[], &[&g, &r, start], &[]), input())
        .await
        .unwrap();
    assert_eq!(start.num_calls(), 1);
}

#[tokio::test]
async fn checkpoints_pauses_and_alarms_are_sent_as_aws_preferences() {
    let f = rollout_fixture().await;
    let s = start_with_preferences(|p| {
        p.checkpoint_percentages() == [10, 50, 100]
            && p.checkpoint_delay() == Some(900)
            && p.bake_time() == Some(300)
            && p.alarm_specification().map(|a| a.alarms()) == Some(&["web-5xx".to_string()][..])
            && p.auto_rollback() == Some(true)
            && p.min_healthy_percentage() == Some(90)
    });
    starts_once_with(&f, &s).await;
}

/// Without rollout settings none of them is sent (AWS's defaults apply).
#[tokio::test]
async fn no_rollout_settings_sends_no_checkpoint_bake_or_alarm() {
    let f = fixture().await;
    let s = start_with_preferences(|p| {
        p.checkpoint_percentages().is_empty()
            && p.checkpoint_delay().is_none()
            && p.bake_time().is_none()
            && p.alarm_specification().is_none()
    });
    starts_once_with(&f, &s).await;
}

#[tokio::test]
async fn a_checkpoint_and_the_bake_are_recorded_once_with_the_time_left() {
    let f = rollout_fixture().await;
    let (g, s) = (groups(10), start());
    let r = refreshes(
        &[
            ("", 0),
            ("InProgress", 10),
            ("InProgress", 10),
            ("InProgress", 60),
            ("InProgress", 100),
            ("Baking", 100),
            ("Baking", 100),
            ("Successful", 100),
        ],
        None,
    );
    // `start()` expects no checkpoint preferences of its own.
    let deps = f.deps(&[], &[&g, &r, &s], &[]);
    let mut i = input();
    for _ in 0..8 {
        let p = run(&deps, i.clone()).await.unwrap();
        if p.done {
            break;
        }
        i.replace = Some(p);
        f.advance(60);
    }
    let log = log(&f).await;
    let at = |needle: &str| log.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(
        at("Group web-asg: checkpoint 10% reached (1 of 2); AWS waits 900 s (checkpoint delay) before replacing more instances: at most 900 s left, until about 09:"),
        1,
        "{log:#?}"
    );
    assert_eq!(at("CloudWatch alarms watched: web-5xx"), 3, "{log:#?}");
    assert_eq!(at("checkpoint 50% reached (2 of 2)"), 1, "{log:#?}");
    assert_eq!(
        at("Group web-asg: every instance replaced; AWS bakes for 300 s (bake time): at most 300 s left"),
        1,
        "{log:#?}"
    );
    assert!(log.contains(&"All instances replaced".to_string()));
}

#[test]
fn the_highest_checkpoint_reached_is_the_one_paused_at() {
    assert_eq!(checkpoint_reached(&[10, 40, 100], 50), Some(40));
    assert_eq!(checkpoint_reached(&[10, 40, 100], 9), None);
    assert_eq!(checkpoint_reached(&[10, 40, 100], 100), Some(40));
    assert_eq!(checkpoint_reached(&[], 50), None);
}

#[tokio::test]
async fn an_alarm_rollback_names_the_reason_and_the_alarms_watched() {
    let f = rollout_fixture().await;
    let (g, s) = (groups(2), start());
    let rolled_back = mock!(Asg::describe_instance_refreshes).then_output(|| {
        let mut r = aws::refresh("r-1", "RollbackSuccessful", 0, "9", None);
        r.rollback_details = Some(
            aws_sdk_autoscaling::types::RollbackDetails::builder()
                .rollback_reason("CloudWatch alarm web-5xx is in ALARM state")
                .build(),
        );
        DescribeInstanceRefreshesOutput::builder()
            .instance_refreshes(r)
            .build()
    });
    f.update(|d| {
        d.runtime.refreshes.insert(GROUP.into(), "r-1".into());
    })
    .await;
    let err = run(&f.deps(&[], &[&g, &rolled_back, &s], &[]), input())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "RefreshRolledBack");
    assert_eq!(
        err.message(),
        "group web-asg rolled back: CloudWatch alarm web-5xx is in ALARM state \
         (CloudWatch alarms watched: web-5xx)"
    );
}
