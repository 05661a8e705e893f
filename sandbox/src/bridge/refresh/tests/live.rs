//! The emulated refresh run against the emulator (fakecloud, started per
//! test) through the bridge, as a client sees it: the group's setting and
//! instances (DescribeAutoScalingGroups) and the refresh
//! (DescribeInstanceRefreshes).

use crate::aws_events::PublishedEvent;
use crate::seed::{self, GroupSource, GroupView};
use aws_sdk_autoscaling::types::{
    DesiredConfiguration, InstanceRefresh, InstanceRefreshStatus as S, InstancesDistribution,
    LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
    RefreshPreferences,
};
use std::time::{Duration, Instant};

/// How long a phase of the emulated refresh lasts in these tests.
const PHASE_MS: u64 = 200;

struct Live {
    _emulator: crate::emulator::Emulator,
    bridge: String,
    /// The bridge's event bus.
    events: crate::aws_events::EventBus,
    /// Auto Scaling through the bridge.
    asg: aws_sdk_autoscaling::Client,
    ec2: aws_sdk_ec2::Client,
}

async fn live() -> Live {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let emulator = crate::emulator::Emulator::start(port).await.unwrap();
    // The templates of seed::template name the sandbox's instance profile.
    seed::instance_profile(&emulator.url()).await.unwrap();
    let config = crate::sdk_config(&emulator.url());
    let (bridge, handle) = crate::bridge::start(
        0,
        emulator.url(),
        &config,
        Duration::from_millis(PHASE_MS),
        crate::aws_events::EventBus::resume("us-east-1").unwrap(),
    )
    .await
    .unwrap();
    let asg = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::config::Builder::from(&config)
            .endpoint_url(&bridge)
            .build(),
    );
    Live {
        _emulator: emulator,
        bridge,
        events: handle.events().clone(),
        asg,
        ec2: aws_sdk_ec2::Client::new(&config),
    }
}

impl Live {
    /// A launch template with versions 1..=versions (1 the default).
    async fn template(&self, name: &str, versions: i64) -> String {
        let id = seed::template(&self.ec2, "t", name).await.unwrap();
        for _ in 2..=versions {
            self.ec2
                .create_launch_template_version()
                .launch_template_id(&id)
                .source_version("1")
                .send()
                .await
                .unwrap();
        }
        id
    }

    async fn group(&self, name: &str, lt: &str, version: &str, instances: i32) {
        let source = GroupSource::Template {
            launch_template_id: lt.into(),
            version: version.into(),
        };
        seed::create_group(&self.asg, "t", name, source, instances)
            .await
            .unwrap();
    }

    async fn view(&self, group: &str) -> GroupView {
        seed::group_views(&self.asg, &[group.to_string()])
            .await
            .unwrap()
            .remove(0)
    }

    async fn outcome(&self, group: &str, outcome: &str) {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("group", group)
            .append_pair("outcome", outcome)
            .finish();
        let req = hyper::Request::post(format!("{}/_sandbox/refresh-outcome", self.bridge))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap();
        assert_eq!(crate::http::send(req).await.unwrap().0, 200);
    }

    async fn start(
        &self,
        group: &str,
        desired: Option<DesiredConfiguration>,
        prefs: RefreshPreferences,
    ) -> Result<String, String> {
        self.asg
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .set_desired_configuration(desired)
            .preferences(prefs)
            .send()
            .await
            .map(|o| o.instance_refresh_id().unwrap().to_string())
            .map_err(|e| {
                aws_sdk_autoscaling::error::ProvideErrorMetadata::code(&e)
                    .unwrap_or_default()
                    .to_string()
            })
    }

    async fn refresh(&self, group: &str, id: &str) -> InstanceRefresh {
        self.asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .instance_refresh_ids(id)
            .send()
            .await
            .unwrap()
            .instance_refreshes()[0]
            .clone()
    }

    /// Polls the refresh until it ends; `each` sees the group (described
    /// first) and the refresh at every poll while it is active.
    async fn until_end(
        &self,
        group: &str,
        id: &str,
        mut each: impl FnMut(&GroupView, &InstanceRefresh),
    ) -> InstanceRefresh {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let v = self.view(group).await;
            let r = self.refresh(group, id).await;
            if !active(&r) {
                return r;
            }
            each(&v, &r);
            assert!(Instant::now() < deadline, "{r:?} still active");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Polls until `until` holds for the refresh.
    async fn wait(&self, group: &str, id: &str, until: impl Fn(&InstanceRefresh) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !until(&self.refresh(group, id).await) {
            assert!(Instant::now() < deadline, "refresh {id} never got there");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Live {
    /// The events of refresh `id` once the last published is `last` (the
    /// detail type after "EC2 Auto Scaling Instance Refresh "), within 5 s:
    /// each about the group (its ARN the resource, its name in the detail),
    /// published once, delivered exactly when ResumeFunction's rules match
    /// (every one but Started). Returns their short names in order.
    async fn refresh_events(&self, group: &str, id: &str, last: &str) -> Vec<PublishedEvent> {
        let arn = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(group)
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .auto_scaling_group_arn()
            .unwrap()
            .to_string();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let mine: Vec<PublishedEvent> = self
                .events
                .events()
                .into_iter()
                .filter(|e| e.event["detail"]["InstanceRefreshId"] == id)
                .collect();
            if mine.last().is_some_and(|e| short(e) == last) {
                for e in &mine {
                    assert_eq!(e.event["source"], "aws.autoscaling", "{e:?}");
                    assert_eq!(e.event["resources"], serde_json::json!([arn]), "{e:?}");
                    assert_eq!(e.event["detail"]["AutoScalingGroupName"], group, "{e:?}");
                    let wakes = short(e) != "Started";
                    assert_eq!((e.matched, e.delivered), (wakes, wakes), "{e:?}");
                }
                return mine;
            }
            assert!(
                Instant::now() < deadline,
                "no {last} event for refresh {id}: {mine:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A refresh event's detail type after "EC2 Auto Scaling Instance Refresh ".
fn short(e: &PublishedEvent) -> &str {
    e.detail_type()
        .trim_start_matches("EC2 Auto Scaling Instance Refresh ")
}

fn shorts(events: &[PublishedEvent]) -> Vec<&str> {
    events.iter().map(short).collect()
}

/// The (CheckpointPercentage, CheckpointDelay) of each checkpoint event.
fn checkpoints(events: &[PublishedEvent]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| short(e) == "Checkpoint Reached")
        .map(|e| {
            let d = &e.event["detail"];
            (
                d["CheckpointPercentage"].as_str().unwrap().to_string(),
                d["CheckpointDelay"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn active(r: &InstanceRefresh) -> bool {
    matches!(
        r.status(),
        Some(S::Pending | S::InProgress | S::Baking | S::Cancelling | S::RollbackInProgress)
    )
}

fn spec(lt: &str, version: &str) -> LaunchTemplateSpecification {
    LaunchTemplateSpecification::builder()
        .launch_template_id(lt)
        .version(version)
        .build()
}

fn to(lt: &str, version: &str) -> Option<DesiredConfiguration> {
    Some(
        DesiredConfiguration::builder()
            .launch_template(spec(lt, version))
            .build(),
    )
}

fn prefs(min_healthy: i32) -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(min_healthy)
        .build()
}

/// How many of the group's instances are on each version, sorted.
fn versions(v: &GroupView) -> Vec<String> {
    let mut out: Vec<String> = v
        .instances
        .iter()
        .map(|(_, version)| version.clone().unwrap_or_default())
        .collect();
    out.sort();
    out
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_refresh_applies_desired_only_on_success() {
    let l = live().await;
    let lt = l.template("s1", 2).await;
    for g in ["s1-ok", "s1-fail", "s1-cancel"] {
        l.group(g, &lt, "1", 4).await;
    }

    // Successful: while it runs the group shows its own version and its
    // capacity, and the fleet is replaced batch by batch; then the group is
    // on the desired version, and so is every instance.
    let id = l.start("s1-ok", to(&lt, "2"), prefs(90)).await.unwrap();
    let mut mixed_seen = false;
    let r = l
        .until_end("s1-ok", &id, |v, _| {
            assert_eq!(v.version.as_deref(), Some("1"), "{v:?}");
            let vs = versions(v);
            mixed_seen |= vs.contains(&"1".to_string()) && vs.contains(&"2".to_string());
        })
        .await;
    assert_eq!(r.status(), Some(&S::Successful));
    assert!(
        mixed_seen,
        "replaced in batches: a mixed fleet while it ran"
    );
    let v = l.view("s1-ok").await;
    assert_eq!(v.version.as_deref(), Some("2"));
    assert_eq!(versions(&v), strings(&["2", "2", "2", "2"]));
    // Auto Scaling's events, each once, at the status changes.
    let events = l.refresh_events("s1-ok", &id, "Succeeded").await;
    assert_eq!(shorts(&events), ["Started", "Succeeded"]);

    // Failed part-way: the replaced instance stays on the desired version,
    // the group keeps its own.
    l.outcome("s1-fail", "Failed").await;
    let id = l.start("s1-fail", to(&lt, "2"), prefs(90)).await.unwrap();
    let r = l
        .until_end("s1-fail", &id, |v, _| {
            assert_eq!(v.version.as_deref(), Some("1"))
        })
        .await;
    assert_eq!(r.status(), Some(&S::Failed));
    let v = l.view("s1-fail").await;
    assert_eq!(v.version.as_deref(), Some("1"));
    assert_eq!(versions(&v), strings(&["1", "1", "1", "2"]));
    let events = l.refresh_events("s1-fail", &id, "Failed").await;
    assert_eq!(shorts(&events), ["Started", "Failed"]);

    // Cancelled after the first batch (MinHealthyPercentage 50: two at a
    // time): the two replaced stay, the group keeps its own version.
    let id = l.start("s1-cancel", to(&lt, "2"), prefs(50)).await.unwrap();
    l.wait("s1-cancel", &id, |r| r.percentage_complete() == Some(50))
        .await;
    l.asg
        .cancel_instance_refresh()
        .auto_scaling_group_name("s1-cancel")
        .send()
        .await
        .unwrap();
    let r = l.until_end("s1-cancel", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Cancelled));
    let v = l.view("s1-cancel").await;
    assert_eq!(v.version.as_deref(), Some("1"));
    assert_eq!(versions(&v), strings(&["1", "1", "2", "2"]));
    assert_eq!(v.instances.len(), 4);
    let events = l.refresh_events("s1-cancel", &id, "Cancelled").await;
    assert_eq!(shorts(&events), ["Started", "Cancelled"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_rollback_restores_replaced_instances() {
    let l = live().await;
    let lt = l.template("s3", 2).await;
    l.group("s3-rb", &lt, "1", 4).await;
    let id = l.start("s3-rb", to(&lt, "2"), prefs(50)).await.unwrap();
    l.wait("s3-rb", &id, |r| r.percentage_complete() == Some(50))
        .await;
    let out = l
        .asg
        .rollback_instance_refresh()
        .auto_scaling_group_name("s3-rb")
        .send()
        .await
        .unwrap();
    assert_eq!(out.instance_refresh_id(), Some(id.as_str()));
    let r = l.refresh("s3-rb", &id).await;
    assert_eq!(r.status(), Some(&S::RollbackInProgress));
    let details = r.rollback_details().expect("RollbackDetails");
    assert_eq!(details.percentage_complete_on_rollback(), Some(50));
    assert_eq!(details.instances_to_update_on_rollback(), Some(2));
    assert!(details.rollback_reason().is_some() && details.rollback_start_time().is_some());

    let mut last = 100;
    let r = l
        .until_end("s3-rb", &id, |v, r| {
            assert_eq!(v.version.as_deref(), Some("1"));
            let p = r.percentage_complete().unwrap_or_default();
            assert!(p <= last, "PercentageComplete goes down: {p} after {last}");
            last = p;
        })
        .await;
    assert_eq!(r.status(), Some(&S::RollbackSuccessful));
    assert_eq!(r.percentage_complete(), Some(0));
    // Rollback Started once: when RollbackInstanceRefresh answered.
    let events = l.refresh_events("s3-rb", &id, "Rollback Succeeded").await;
    assert_eq!(
        shorts(&events),
        ["Started", "Rollback Started", "Rollback Succeeded"]
    );
    let v = l.view("s3-rb").await;
    assert_eq!(v.version.as_deref(), Some("1"));
    assert_eq!(versions(&v), strings(&["1", "1", "1", "1"]));

    // Nothing active any more.
    let err = l
        .asg
        .rollback_instance_refresh()
        .auto_scaling_group_name("s3-rb")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        aws_sdk_autoscaling::error::ProvideErrorMetadata::code(&err),
        Some("ActiveInstanceRefreshNotFound")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_rollback_refused_for_default_group() {
    let l = live().await;
    let lt = l.template("irr", 2).await;
    l.group("irr-default", &lt, "$Default", 2).await;
    l.group("irr-latest", &lt, "$Latest", 2).await;
    l.group("irr-nodesired", &lt, "1", 2).await;
    l.group("irr-idle", &lt, "1", 2).await;
    let code = |e: aws_sdk_autoscaling::error::SdkError<_>| {
        aws_sdk_autoscaling::error::ProvideErrorMetadata::code(&e).map(str::to_string)
    };
    let rollback = |g: &'static str| {
        l.asg
            .rollback_instance_refresh()
            .auto_scaling_group_name(g)
            .send()
    };
    for g in ["irr-default", "irr-latest"] {
        l.start(g, to(&lt, "$Default"), prefs(90)).await.unwrap();
        assert_eq!(
            rollback(g).await.err().and_then(code).as_deref(),
            Some("IrreversibleInstanceRefresh"),
            "{g}"
        );
    }
    // No desired configuration: nothing to roll back to either.
    l.start("irr-nodesired", None, prefs(90)).await.unwrap();
    assert_eq!(
        rollback("irr-nodesired")
            .await
            .err()
            .and_then(code)
            .as_deref(),
        Some("IrreversibleInstanceRefresh")
    );
    assert_eq!(
        rollback("irr-idle").await.err().and_then(code).as_deref(),
        Some("ActiveInstanceRefreshNotFound")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_failed_refresh_with_auto_rollback_rolls_back() {
    let l = live().await;
    let lt = l.template("ar", 2).await;
    for g in ["ar-auto", "ar-noauto", "ar-rbfails"] {
        l.group(g, &lt, "1", 2).await;
    }
    let auto = RefreshPreferences::builder()
        .min_healthy_percentage(90)
        .auto_rollback(true)
        .build();

    l.outcome("ar-auto", "Failed").await;
    let id = l
        .start("ar-auto", to(&lt, "2"), auto.clone())
        .await
        .unwrap();
    let mut rolling_back = false;
    let r = l
        .until_end("ar-auto", &id, |v, r| {
            assert_eq!(v.version.as_deref(), Some("1"));
            rolling_back |= r.status() == Some(&S::RollbackInProgress);
        })
        .await;
    assert!(rolling_back, "RollbackInProgress before the end");
    assert_eq!(r.status(), Some(&S::RollbackSuccessful));
    assert!(r
        .rollback_details()
        .and_then(|d| d.rollback_reason())
        .is_some_and(|m| m.contains("automatic")));
    let v = l.view("ar-auto").await;
    assert_eq!(versions(&v), strings(&["1", "1"]));
    let events = l.refresh_events("ar-auto", &id, "Rollback Succeeded").await;
    assert_eq!(
        shorts(&events),
        ["Started", "Rollback Started", "Rollback Succeeded"]
    );

    // Without AutoRollback a refresh that fails stays Failed, whatever the
    // test hoped for: the replaced instance stays.
    l.outcome("ar-noauto", "RollbackSuccessful").await;
    let id = l.start("ar-noauto", to(&lt, "2"), prefs(90)).await.unwrap();
    let r = l.until_end("ar-noauto", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Failed));
    assert!(r.status_reason().unwrap().contains("AutoRollback"), "{r:?}");
    assert_eq!(versions(&l.view("ar-noauto").await), strings(&["1", "2"]));

    // A rollback that fails.
    l.outcome("ar-rbfails", "RollbackFailed").await;
    let id = l.start("ar-rbfails", to(&lt, "2"), auto).await.unwrap();
    let r = l.until_end("ar-rbfails", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::RollbackFailed));
    assert_eq!(l.view("ar-rbfails").await.version.as_deref(), Some("1"));
    let events = l.refresh_events("ar-rbfails", &id, "Rollback Failed").await;
    assert_eq!(
        shorts(&events),
        ["Started", "Rollback Started", "Rollback Failed"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_bake_time_shows_baking() {
    let l = live().await;
    let lt = l.template("bake", 2).await;
    l.group("bake", &lt, "1", 2).await;
    let baking = RefreshPreferences::builder().bake_time(600).build();
    let id = l.start("bake", to(&lt, "2"), baking).await.unwrap();
    l.wait("bake", &id, |r| r.status() == Some(&S::Baking))
        .await;
    // Every instance is replaced by then, the group still on its own version,
    // and the refresh is still active.
    let v = l.view("bake").await;
    assert_eq!(versions(&v), strings(&["2", "2"]));
    assert_eq!(v.version.as_deref(), Some("1"));
    assert_eq!(
        l.start("bake", to(&lt, "2"), prefs(90))
            .await
            .err()
            .as_deref(),
        Some("InstanceRefreshInProgress")
    );
    let r = l.until_end("bake", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Successful));
    assert_eq!(l.view("bake").await.version.as_deref(), Some("2"));
    let events = l.refresh_events("bake", &id, "Succeeded").await;
    assert_eq!(shorts(&events), ["Started", "Started Baking", "Succeeded"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_skip_matching_skips_matching_instances() {
    let l = live().await;
    let lt = l.template("skip", 2).await;
    // Two instances on version 1, then two on version 2 (the group on 2).
    l.group("skip", &lt, "1", 2).await;
    l.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name("skip")
        .launch_template(spec(&lt, "2"))
        .desired_capacity(4)
        .send()
        .await
        .unwrap();
    let before = l.view("skip").await;
    assert_eq!(versions(&before), strings(&["1", "1", "2", "2"]));
    let skip = RefreshPreferences::builder()
        .min_healthy_percentage(50)
        .skip_matching(true)
        .build();

    // To version 1: only the two on version 2 are replaced.
    let id = l.start("skip", to(&lt, "1"), skip.clone()).await.unwrap();
    let r = l
        .until_end("skip", &id, |_, r| {
            assert!(r.instances_to_update().unwrap_or_default() <= 2, "{r:?}")
        })
        .await;
    assert_eq!(r.status(), Some(&S::Successful));
    let after = l.view("skip").await;
    assert_eq!(versions(&after), strings(&["1", "1", "1", "1"]));
    assert_eq!(
        after.instances[..2],
        before.instances[..2],
        "kept as they were"
    );
    assert!(after.instances[2..]
        .iter()
        .all(|i| !before.instances.contains(i)));

    // To $Default (version 1): nothing to replace, Successful at once.
    let id = l.start("skip", to(&lt, "$Default"), skip).await.unwrap();
    tokio::time::sleep(Duration::from_millis(PHASE_MS / 4)).await;
    let r = l.refresh("skip", &id).await;
    assert_eq!(r.status(), Some(&S::Successful), "{r:?}");
    assert_eq!(l.view("skip").await.instances, after.instances);
    assert_eq!(l.view("skip").await.version.as_deref(), Some("$Default"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_mixed_policy_refresh_keeps_overrides() {
    let l = live().await;
    let lt = l.template("mixed", 2).await;
    let source = GroupSource::Mixed {
        launch_template_id: lt.clone(),
        version: "1".into(),
        instance_types: strings(&["t3.micro", "t3.small"]),
        on_demand_base_capacity: 1,
        on_demand_percentage_above_base_capacity: 100,
    };
    seed::create_group(&l.asg, "t", "mixed", source, 2)
        .await
        .unwrap();
    let policy = |version: &str| {
        let mut t = LaunchTemplate::builder().launch_template_specification(spec(&lt, version));
        for it in ["t3.micro", "t3.small"] {
            t = t.overrides(LaunchTemplateOverrides::builder().instance_type(it).build());
        }
        MixedInstancesPolicy::builder()
            .launch_template(t.build())
            // OnDemandBaseCapacity left out: the group gets the default, 0.
            .instances_distribution(
                InstancesDistribution::builder()
                    .on_demand_percentage_above_base_capacity(100)
                    .build(),
            )
            .build()
    };
    let desired = DesiredConfiguration::builder()
        .mixed_instances_policy(policy("2"))
        .build();
    let id = l.start("mixed", Some(desired), prefs(90)).await.unwrap();
    let describe = || async {
        l.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names("mixed")
            .send()
            .await
            .unwrap()
            .auto_scaling_groups()[0]
            .clone()
    };
    let during = describe().await;
    let r = l.until_end("mixed", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Successful));
    let m = during.mixed_instances_policy().expect("still mixed");
    let version = |m: &MixedInstancesPolicy| {
        m.launch_template()
            .and_then(|t| t.launch_template_specification())
            .and_then(|s| s.version())
            .map(str::to_string)
    };
    assert_eq!(version(m).as_deref(), Some("1"));
    assert_eq!(
        m.instances_distribution()
            .and_then(|d| d.on_demand_base_capacity()),
        Some(1)
    );

    // The refresh echoes the policy; the group has it whole.
    let echoed = r
        .desired_configuration()
        .and_then(|d| d.mixed_instances_policy())
        .expect("desired policy echoed");
    assert_eq!(version(echoed).as_deref(), Some("2"));
    let after = describe().await;
    let m = after.mixed_instances_policy().expect("mixed");
    assert_eq!(version(m).as_deref(), Some("2"));
    let types: Vec<_> = m
        .launch_template()
        .unwrap()
        .overrides()
        .iter()
        .filter_map(|o| o.instance_type())
        .collect();
    assert_eq!(types, ["t3.micro", "t3.small"]);
    let d = m.instances_distribution().unwrap();
    assert_eq!(
        (
            d.on_demand_base_capacity(),
            d.on_demand_percentage_above_base_capacity()
        ),
        (Some(0), Some(100))
    );
    assert_eq!(versions(&l.view("mixed").await), strings(&["2", "2"]));

    // A group on a launch configuration is refreshed onto a launch template.
    l.asg
        .create_launch_configuration()
        .launch_configuration_name("lc")
        .image_id(seed::BASE_IMAGE)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    seed::create_group(
        &l.asg,
        "t",
        "lc-group",
        GroupSource::Configuration("lc".into()),
        2,
    )
    .await
    .unwrap();
    let id = l.start("lc-group", to(&lt, "2"), prefs(90)).await.unwrap();
    let r = l
        .until_end("lc-group", &id, |v, _| {
            assert_eq!(v.launch_configuration.as_deref(), Some("lc"))
        })
        .await;
    assert_eq!(r.status(), Some(&S::Successful));
    let v = l.view("lc-group").await;
    assert_eq!(
        (v.launch_configuration.as_deref(), v.version.as_deref()),
        (None, Some("2"))
    );
    assert_eq!(versions(&v), strings(&["2", "2"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_hold_stays_part_way_until_cancelled() {
    let l = live().await;
    let lt = l.template("hold", 2).await;
    l.group("hold-g", &lt, "1", 2).await;
    l.outcome("hold-g", "Hold").await;
    let id = l.start("hold-g", to(&lt, "2"), prefs(90)).await.unwrap();
    l.wait("hold-g", &id, |r| r.percentage_complete() == Some(50))
        .await;
    // Several phases later it has not moved on.
    tokio::time::sleep(Duration::from_millis(PHASE_MS * 4)).await;
    let r = l.refresh("hold-g", &id).await;
    assert_eq!(
        (r.status(), r.percentage_complete()),
        (Some(&S::InProgress), Some(50))
    );
    l.asg
        .cancel_instance_refresh()
        .auto_scaling_group_name("hold-g")
        .send()
        .await
        .unwrap();
    let r = l.until_end("hold-g", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Cancelled));
    assert_eq!(versions(&l.view("hold-g").await), strings(&["1", "2"]));
}

/// The seeded template names the sandbox's instance profile and tags what
/// it launches: the instances a refresh launches from it carry both, as on
/// AWS (where the launch passes the profile's role and tags at launch).
#[tokio::test]
async fn bridge_refresh_launches_with_the_templates_profile_and_tags() {
    let l = live().await;
    let lt = l.template("p1", 2).await;
    l.group("p1", &lt, "1", 2).await;
    let id = l.start("p1", to(&lt, "2"), prefs(50)).await.unwrap();
    let r = l.until_end("p1", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Successful));
    let v = l.view("p1").await;
    assert_eq!(versions(&v), strings(&["2", "2"]));
    let ids: Vec<String> = v.instances.iter().map(|(i, _)| i.clone()).collect();
    let out = l
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .unwrap();
    let instances: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .collect();
    assert_eq!(instances.len(), 2);
    for i in instances {
        assert_eq!(
            i.iam_instance_profile().and_then(|p| p.arn()),
            Some(seed::INSTANCE_PROFILE_ARN),
            "{i:?}"
        );
        assert!(
            i.tags()
                .iter()
                .any(|t| t.key() == Some("autosky:environment") && t.value() == Some("t")),
            "{i:?}"
        );
    }
}

impl Live {
    /// Sets a CloudWatch alarm's state through the bridge's control route.
    async fn alarm(&self, name: &str, state: &str) {
        let req = hyper::Request::put(format!("{}/_sandbox/alarms/{name}", self.bridge))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(format!(
                r#"{{"state":"{state}"}}"#
            ))))
            .unwrap();
        assert_eq!(crate::http::send(req).await.unwrap().0, 200);
    }
}

/// Checkpoints [50, 100] with AutoRollback and an alarm; `delay` seconds.
fn rollout(delay: i32, alarm: &str, auto_rollback: bool) -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(90)
        .checkpoint_percentages(50)
        .checkpoint_percentages(100)
        .checkpoint_delay(delay)
        .auto_rollback(auto_rollback)
        .alarm_specification(
            aws_sdk_autoscaling::types::AlarmSpecification::builder()
                .alarms(alarm)
                .build(),
        )
        .build()
}

/// Whether the refresh is paused at its 50 % checkpoint.
fn at_checkpoint(r: &InstanceRefresh) -> bool {
    r.status() == Some(&S::InProgress)
        && r.percentage_complete() == Some(50)
        && r.status_reason()
            .is_some_and(|m| m.contains("checkpoint 50%"))
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_checkpoint_pauses_then_goes_on() {
    let l = live().await;
    let lt = l.template("cp", 2).await;
    l.group("cp-g", &lt, "1", 4).await;
    // 3600 s: 12 phases here. MinHealthy 0 would replace 2 at once; the
    // checkpoint at 50 % caps the first batch.
    let p = RefreshPreferences::builder()
        .min_healthy_percentage(0)
        .checkpoint_percentages(50)
        .checkpoint_percentages(100)
        .build();
    let id = l.start("cp-g", to(&lt, "2"), p).await.unwrap();
    l.wait("cp-g", &id, at_checkpoint).await;
    let paused = Instant::now();
    assert_eq!(
        versions(&l.view("cp-g").await),
        strings(&["1", "1", "2", "2"])
    );
    // Several phases later it is still there.
    tokio::time::sleep(Duration::from_millis(PHASE_MS * 4)).await;
    assert!(at_checkpoint(&l.refresh("cp-g", &id).await));
    let r = l.until_end("cp-g", &id, |_, _| {}).await;
    assert!(paused.elapsed() >= Duration::from_millis(PHASE_MS * 11));
    assert_eq!(r.status(), Some(&S::Successful));
    assert_eq!(r.status_reason(), None);
    assert_eq!(
        versions(&l.view("cp-g").await),
        strings(&["2", "2", "2", "2"])
    );
    // Each checkpoint reached, with the delay asked for (not the scaled one).
    let events = l.refresh_events("cp-g", &id, "Succeeded").await;
    assert_eq!(
        shorts(&events),
        [
            "Started",
            "Checkpoint Reached",
            "Checkpoint Reached",
            "Succeeded"
        ]
    );
    assert_eq!(
        checkpoints(&events),
        [
            ("50".to_string(), "3600".to_string()),
            ("100".to_string(), "3600".to_string())
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_partial_refresh_ends_at_its_last_checkpoint() {
    let l = live().await;
    let lt = l.template("part", 2).await;
    l.group("part-g", &lt, "1", 2).await;
    let p = RefreshPreferences::builder()
        .checkpoint_percentages(50)
        .checkpoint_delay(0)
        .build();
    let id = l.start("part-g", to(&lt, "2"), p).await.unwrap();
    let r = l.until_end("part-g", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Successful));
    assert_eq!(versions(&l.view("part-g").await), strings(&["1", "2"]));
    let events = l.refresh_events("part-g", &id, "Succeeded").await;
    assert_eq!(
        shorts(&events),
        ["Started", "Checkpoint Reached", "Succeeded"]
    );
    assert_eq!(checkpoints(&events), [("50".to_string(), "0".to_string())]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_alarm_at_a_checkpoint_rolls_back_or_fails() {
    let l = live().await;
    let lt = l.template("al", 2).await;
    for g in ["al-auto", "al-noauto"] {
        l.group(g, &lt, "1", 2).await;
    }
    // An alarm in OK does nothing; in ALARM, with AutoRollback, it rolls the
    // refresh back and RollbackDetails names it.
    l.alarm("al-auto-5xx", "OK").await;
    let id = l
        .start("al-auto", to(&lt, "2"), rollout(3600, "al-auto-5xx", true))
        .await
        .unwrap();
    l.wait("al-auto", &id, at_checkpoint).await;
    l.alarm("al-auto-5xx", "ALARM").await;
    let r = l.until_end("al-auto", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::RollbackSuccessful), "{r:?}");
    let reason = r
        .rollback_details()
        .and_then(|d| d.rollback_reason())
        .unwrap();
    assert!(
        reason.contains("al-auto-5xx") && reason.contains("ALARM"),
        "{reason}"
    );
    let v = l.view("al-auto").await;
    assert_eq!(
        (v.version.as_deref(), versions(&v)),
        (Some("1"), strings(&["1", "1"]))
    );

    // Without AutoRollback the alarm fails the refresh; what it replaced stays.
    let id = l
        .start(
            "al-noauto",
            to(&lt, "2"),
            rollout(3600, "al-noauto-5xx", false),
        )
        .await
        .unwrap();
    l.wait("al-noauto", &id, at_checkpoint).await;
    l.alarm("al-noauto-5xx", "ALARM").await;
    let r = l.until_end("al-noauto", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::Failed), "{r:?}");
    assert!(
        r.status_reason().unwrap().contains("al-noauto-5xx"),
        "{r:?}"
    );
    assert_eq!(versions(&l.view("al-noauto").await), strings(&["1", "2"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn bridge_alarm_while_baking_rolls_back() {
    let l = live().await;
    let lt = l.template("ab", 2).await;
    l.group("ab-g", &lt, "1", 2).await;
    let p = RefreshPreferences::builder()
        .bake_time(3600)
        .auto_rollback(true)
        .alarm_specification(
            aws_sdk_autoscaling::types::AlarmSpecification::builder()
                .alarms("ab-latency")
                .build(),
        )
        .build();
    let id = l.start("ab-g", to(&lt, "2"), p).await.unwrap();
    l.wait("ab-g", &id, |r| r.status() == Some(&S::Baking))
        .await;
    l.alarm("ab-latency", "ALARM").await;
    let r = l.until_end("ab-g", &id, |_, _| {}).await;
    assert_eq!(r.status(), Some(&S::RollbackSuccessful), "{r:?}");
    let v = l.view("ab-g").await;
    assert_eq!(
        (v.version.as_deref(), versions(&v)),
        (Some("1"), strings(&["1", "1"]))
    );
    let events = l.refresh_events("ab-g", &id, "Rollback Succeeded").await;
    assert_eq!(
        shorts(&events),
        [
            "Started",
            "Started Baking",
            "Rollback Started",
            "Rollback Succeeded"
        ]
    );
}
