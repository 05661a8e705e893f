//! The group matrix: a deployment on each group setup an operator runs
//! (numbered version, `$Default`, `$Latest`, mixed instances policy, two
//! groups one of them empty) × each way it can end once the instance refresh
//! runs (the refresh succeeds, the refresh fails, the deployment is cancelled
//! while the refresh is part-way). After each, the invariants an operator
//! relies on are checked: the group keeps the kind of launch template setting
//! it had, every instance runs the expected image, the template's default is
//! the new model only on success, nothing is left locked, suspended or
//! stopped, and the record is terminal with each group's fleet version.

use autosky_core::domain::{Deployment, DeploymentStatus, EnvironmentDefaults};
use autosky_core::store::Store;
use autosky_sandbox::seed::{self, GroupSetup, GroupView, BASE_IMAGE};
use autosky_sandbox::{harness, Clients, Endpoints};
use serde_json::json;
use std::time::Duration;

fn sandbox() -> &'static Endpoints {
    harness::shared(env!("CARGO_BIN_EXE_autosky-sandbox"))
}

const SETUPS: [GroupSetup; 5] = [
    GroupSetup::Numbered,
    GroupSetup::Default,
    GroupSetup::Latest,
    GroupSetup::Mixed,
    GroupSetup::TwoGroupsOneEmpty,
];

#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    Successful,
    RefreshFailed,
    CancelledMidRefresh,
}

const ENDS: [End; 3] = [
    End::Successful,
    End::RefreshFailed,
    End::CancelledMidRefresh,
];

/// The kind of a group's launch template setting.
fn kind(version: Option<&str>) -> &'static str {
    match version {
        Some("$Default") | None => "$Default",
        Some("$Latest") => "$Latest",
        Some(v) if v.parse::<i64>().is_ok() => "number",
        Some(_) => "other",
    }
}

struct Before {
    views: Vec<GroupView>,
    mixed: Vec<Option<aws_sdk_autoscaling::types::MixedInstancesPolicy>>,
    server_state: String,
}

async fn mixed_policies(
    c: &Clients,
    groups: &[String],
) -> Vec<Option<aws_sdk_autoscaling::types::MixedInstancesPolicy>> {
    let out = c
        .asg
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(groups.to_vec()))
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    groups
        .iter()
        .map(|name| {
            out.auto_scaling_groups()
                .iter()
                .find(|g| g.auto_scaling_group_name() == Some(name))
                .and_then(|g| g.mixed_instances_policy().cloned())
        })
        .collect()
}

/// A mixed policy without its template version (which a deployment moves):
/// the overrides and the distribution must come back as they were.
fn without_version(p: &Option<aws_sdk_autoscaling::types::MixedInstancesPolicy>) -> Option<String> {
    p.as_ref().map(|p| {
        let overrides = p
            .launch_template()
            .map(|l| format!("{:?}", l.overrides()))
            .unwrap_or_default();
        format!("{overrides} {:?}", p.instances_distribution())
    })
}

/// What is wrong after the deployment `d` (nothing: empty).
async fn invariants(
    c: &Clients,
    e: &autosky_core::domain::Environment,
    before: &Before,
    d: &Deployment,
    end: End,
) -> Vec<String> {
    let mut bad = Vec::new();
    let succeeded = end == End::Successful;
    let views = seed::group_views(&c.asg, &e.auto_scaling_groups)
        .await
        .expect("group views");
    let mixed = mixed_policies(c, &e.auto_scaling_groups).await;
    let new_image = d.runtime.image_id.clone().unwrap_or_default();
    let expected_image = if succeeded {
        new_image.as_str()
    } else {
        BASE_IMAGE
    };
    for ((b, a), (bm, am)) in before
        .views
        .iter()
        .zip(&views)
        .zip(before.mixed.iter().zip(&mixed))
    {
        let (kb, ka) = (kind(b.version.as_deref()), kind(a.version.as_deref()));
        if kb != ka {
            bad.push(format!(
                "{}: setting {:?} became {:?}",
                a.name, b.version, a.version
            ));
        }
        if kb == "number" {
            let want = if succeeded {
                d.runtime.main_version.map(|v| v.to_string())
            } else {
                b.version.clone()
            };
            if a.version != want {
                bad.push(format!(
                    "{}: version {:?}, expected {want:?}",
                    a.name, a.version
                ));
            }
        }
        if without_version(bm) != without_version(am) {
            bad.push(format!("{}: mixed policy {bm:?} became {am:?}", a.name));
        }
        if a.instances.len() != b.instances.len() {
            bad.push(format!(
                "{}: {} instances, had {}",
                a.name,
                a.instances.len(),
                b.instances.len()
            ));
        }
        for (id, image) in seed::group_instance_images(c, &a.name).await.unwrap() {
            if image != expected_image {
                bad.push(format!(
                    "{}: instance {id} runs {image}, expected {expected_image}",
                    a.name
                ));
            }
        }
        if !harness::suspended_processes(c, &a.name).await.is_empty() {
            bad.push(format!("{}: processes left suspended", a.name));
        }
    }
    let default = harness::default_version(c, &e.launch_template_id).await;
    let want_default = if succeeded {
        d.runtime.main_version
    } else {
        d.runtime.backup_version
    };
    if default != want_default {
        bad.push(format!(
            "launch template default {default:?}, expected {want_default:?}"
        ));
    }
    if c.store
        .lock_holder(&e.environment_id)
        .await
        .unwrap()
        .is_some()
    {
        bad.push("environment still locked".into());
    }
    let server = harness::instance_state(c, &e.preparation_server_id).await;
    if server != before.server_state {
        bad.push(format!(
            "preparation server {server}, was {}",
            before.server_state
        ));
    }
    if !d.status.is_terminal() {
        bad.push(format!("record not terminal: {}", d.status));
    }
    for g in &e.auto_scaling_groups {
        if !d.runtime.fleet_versions.contains_key(g) {
            bad.push(format!("no fleet version recorded for {g}"));
        }
    }
    bad
}

fn expected_status(setup: GroupSetup, end: End) -> DeploymentStatus {
    match end {
        End::Successful => DeploymentStatus::Succeeded,
        // A group on a version number (the numbered, mixed and two-group
        // setups) is auto rolled back by AWS; `$Default`/`$Latest` cannot be.
        End::RefreshFailed if !matches!(setup, GroupSetup::Default | GroupSetup::Latest) => {
            DeploymentStatus::RolledBack
        }
        End::RefreshFailed => DeploymentStatus::Failed,
        End::CancelledMidRefresh => DeploymentStatus::Cancelled,
    }
}

/// Runs one case; `Err`: what went wrong.
async fn case(setup: GroupSetup, end: End, n: usize) -> Result<(), String> {
    let c = Clients::new(sandbox());
    let env = format!("matrix-{n}");
    let defaults = EnvironmentDefaults {
        lock_instances: true,
        ..Default::default()
    };
    let seeded = seed::environment_with(&c, &env, setup, 2, defaults).await?;
    let e = seeded.environment;
    let main_group = e.auto_scaling_groups[0].clone();
    let before = Before {
        views: seed::group_views(&c.asg, &e.auto_scaling_groups).await?,
        mixed: mixed_policies(&c, &e.auto_scaling_groups).await,
        server_state: harness::instance_state(&c, &e.preparation_server_id).await,
    };
    match end {
        End::Successful => {}
        End::RefreshFailed => harness::set_refresh_outcome(&c, &main_group, "Failed").await?,
        End::CancelledMidRefresh => harness::set_refresh_outcome(&c, &main_group, "Hold").await?,
    }
    let id = harness::start_deployment(&c, &env, json!({})).await?;
    if end == End::CancelledMidRefresh {
        harness::wait_refresh_part_way(&c, &main_group, Duration::from_secs(60)).await?;
        c.store
            .request_cancel(&env, &id, "matrix", None)
            .await
            .map_err(|e| e.to_string())?;
    }
    let (_, record) = harness::finished(&c, &env, &id).await?;
    let d = record.ok_or("no record")?;
    let want = expected_status(setup, end);
    let mut bad = invariants(&c, &e, &before, &d, end).await;
    if d.status != want {
        bad.insert(
            0,
            format!("status {} (expected {want}), error {:?}", d.status, d.error),
        );
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_group_setup_ends_clean_whatever_the_refresh_does() {
    let cases: Vec<(GroupSetup, End)> = SETUPS
        .iter()
        .flat_map(|s| ENDS.iter().map(move |e| (*s, *e)))
        .collect();
    let handles: Vec<_> = cases
        .iter()
        .enumerate()
        .map(|(n, (s, e))| tokio::spawn(case(*s, *e, n)))
        .collect();
    let mut failures = Vec::new();
    for ((s, e), h) in cases.iter().zip(handles) {
        if let Err(why) = h.await.unwrap() {
            failures.push(format!("{s:?} × {e:?}: {why}"));
        }
    }
    let total = cases.len();
    harness::figure(&format!(
        "group matrix: {}/{total} passed",
        total - failures.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The setups Autosky cannot deploy (a group on a launch configuration, or
/// on another launch template) are refused by Initial validation with a
/// message naming the group and what to switch it to, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn undeployable_group_setups_are_refused_and_nothing_changes() {
    let c = Clients::new(sandbox());
    for (n, setup) in [GroupSetup::LaunchConfiguration, GroupSetup::OtherTemplate]
        .into_iter()
        .enumerate()
    {
        let env = format!("matrix-refused-{n}");
        let defaults = EnvironmentDefaults {
            lock_instances: true,
            ..Default::default()
        };
        let e = seed::environment_with(&c, &env, setup, 2, defaults)
            .await
            .unwrap()
            .environment;
        let group = &e.auto_scaling_groups[0];
        let before = seed::group_views(&c.asg, &e.auto_scaling_groups)
            .await
            .unwrap();
        let template = |c: &Clients| {
            let (c, lt) = (c.clone(), e.launch_template_id.clone());
            async move {
                let t = c
                    .ec2
                    .describe_launch_templates()
                    .launch_template_ids(lt)
                    .send()
                    .await
                    .unwrap();
                let t = &t.launch_templates()[0];
                (t.default_version_number(), t.latest_version_number())
            }
        };
        let versions = template(&c).await;
        let id = harness::start_deployment(&c, &env, json!({}))
            .await
            .unwrap();
        let (_, d) = harness::finished(&c, &env, &id).await.unwrap();
        let d = d.unwrap();
        assert_eq!(d.status, DeploymentStatus::Failed, "{setup:?}");
        let err = d.error.clone().unwrap();
        assert_eq!(
            (err.step, err.name.as_str()),
            (
                Some(autosky_core::domain::StepName::InitialValidation),
                "ValidationFailed"
            ),
            "{setup:?}"
        );
        assert!(
            err.message.contains(group.as_str())
                && err.message.contains(&format!(
                    "switch it to launch template {}",
                    e.launch_template_id
                )),
            "{setup:?}: {}",
            err.message
        );
        assert_eq!(template(&c).await, versions, "{setup:?}: template changed");
        assert_eq!(
            seed::group_views(&c.asg, &e.auto_scaling_groups)
                .await
                .unwrap(),
            before,
            "{setup:?}: group changed"
        );
        assert!(harness::suspended_processes(&c, group).await.is_empty());
        assert!(harness::deployment_images(&c, &id).await.is_empty());
        assert_eq!(c.store.lock_holder(&env).await.unwrap(), None);
    }
}
