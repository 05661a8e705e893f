//! Event-driven waits end to end, in a sandbox of their own (the drop switch
//! is the sandbox's, so these tests take turns; the waiting states' timeout,
//! the fallback, is `FALLBACK` seconds): a deployment woken by the events
//! AWS sends never falls back; with the events dropped it still succeeds, by
//! each waiting state's timeout; a duplicate or foreign event changes
//! nothing; cancel during a wait reaches the step at once.

use autosky_core::domain::{DeploymentStatus, EnvironmentDefaults, StepName, StepStatus};
use autosky_core::steps::wake;
use autosky_core::store::Store;
use autosky_sandbox::harness::{self, SandboxProcess};
use autosky_sandbox::{http, seed, Clients, Endpoints};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_autosky-sandbox");
const FALLBACK: u64 = 8;

fn sandbox() -> &'static Endpoints {
    static SANDBOX: std::sync::OnceLock<SandboxProcess> = std::sync::OnceLock::new();
    &SANDBOX
        .get_or_init(|| {
            SandboxProcess::spawn_with(
                BIN,
                false,
                &[(
                    "AUTOSKY_SANDBOX_WAIT_FALLBACK_SECONDS",
                    &FALLBACK.to_string(),
                )],
            )
            .expect("sandbox starts")
        })
        .endpoints
}

/// One test at a time: the drop switch is the sandbox's.
static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn clients() -> Clients {
    Clients::new(sandbox())
}

fn defaults() -> EnvironmentDefaults {
    EnvironmentDefaults {
        refresh_timeout_seconds: 120,
        ..EnvironmentDefaults::default()
    }
}

async fn fallbacks(c: &Clients, id: &str) -> BTreeMap<String, usize> {
    harness::fallbacks(c, &harness::execution_arn(c, id))
        .await
        .unwrap()
}

async fn history_len(c: &Clients, id: &str) -> usize {
    harness::history(c, &harness::execution_arn(c, id))
        .await
        .unwrap()
        .len()
}

/// A deployment on a new environment (a group of two on a version number)
/// whose refresh holds part-way (until cancelled or rolled back); its id.
async fn held_part_way(c: &Clients, env: &str, options: serde_json::Value) -> String {
    let seeded = seed::environment_with(c, env, seed::GroupSetup::Numbered, 2, defaults())
        .await
        .unwrap();
    let group = seeded.environment.auto_scaling_groups[0].clone();
    harness::set_refresh_outcome(c, &group, "Hold")
        .await
        .unwrap();
    let id = harness::start_deployment(c, env, options).await.unwrap();
    harness::wait_refresh_part_way(c, &group, Duration::from_secs(60))
        .await
        .unwrap();
    id
}

/// The newest published event of `detail_type` whose detail has each of
/// `fields`.
async fn published(
    c: &Clients,
    detail_type: &str,
    fields: &[(&str, &str)],
) -> autosky_sandbox::aws_events::PublishedEvent {
    c.endpoints
        .events()
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|p| {
            p.event["detail-type"] == detail_type
                && fields.iter().all(|(f, v)| p.event["detail"][*f] == *v)
        })
        .unwrap_or_else(|| panic!("no {detail_type} event with {fields:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn events_wake_each_wait_and_with_events_dropped_the_timeout_still_ends_it() {
    let _turn = TURN.lock().await;
    let c = clients();
    let env = "waits-events";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let e = &seeded.environment;
    let group = &e.auto_scaling_groups[0];
    let options = json!({"lockInstances": true, "stopPreparationServer": true});

    // Events flow: every wait ends on its event, none on its timeout.
    let id = harness::start_deployment(&c, env, options.clone())
        .await
        .unwrap();
    let (status, d) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "SUCCEEDED");
    let d = d.unwrap();
    assert_eq!(
        fallbacks(&c, &id).await,
        BTreeMap::new(),
        "no wait fell back"
    );
    let image = d.runtime.image_id.clone().unwrap();
    for (detail_type, fields) in [
        (
            "EC2 Instance State-change Notification",
            vec![
                ("instance-id", e.preparation_server_id.as_str()),
                ("state", "stopped"),
            ],
        ),
        ("EC2 AMI State Change", vec![("ImageId", image.as_str())]),
        (
            "EC2 Auto Scaling Instance Refresh Succeeded",
            vec![("AutoScalingGroupName", group.as_str())],
        ),
    ] {
        let p = published(&c, detail_type, &fields).await;
        assert!(p.matched && p.delivered && p.error.is_none(), "{p:?}");
    }
    // At once again: Finalization restarted the server, which is `pending`
    // for a moment; the step waits for it to run (its `running` event), then
    // stops it — still no fallback.
    let next = harness::start_deployment(&c, env, options.clone())
        .await
        .unwrap();
    let (status, _) = harness::finished(&c, env, &next).await.unwrap();
    assert_eq!(status, "SUCCEEDED");
    assert_eq!(
        fallbacks(&c, &next).await,
        BTreeMap::new(),
        "no wait fell back"
    );

    // Any registration left is one whose token is closed (its wait ended
    // by the step's own check, an event having come first): an event now
    // changes nothing.
    let before = history_len(&c, &id).await;
    let again = published(&c, "EC2 AMI State Change", &[("ImageId", &image)]).await;
    c.endpoints.publish_event(again.event).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(history_len(&c, &id).await, before);
    assert_eq!(
        c.store.waiting_on(&wake::image(&image)).await.unwrap(),
        None
    );

    // Events dropped: the same deployment succeeds, each wait by its
    // timeout (the step registers and checks again).
    c.endpoints.drop_events(true).await.unwrap();
    let started = Instant::now();
    let id = harness::start_deployment(&c, env, options).await.unwrap();
    let status = harness::wait_execution(&c, &id, Duration::from_secs(180)).await;
    c.endpoints.drop_events(false).await.unwrap();
    assert_eq!(status.unwrap(), "SUCCEEDED");
    let fell_back = fallbacks(&c, &id).await;
    for wait in [
        "Wait for preparation server",
        "Wait for image",
        "Wait for instances",
    ] {
        assert!(
            fell_back.get(wait).copied().unwrap_or(0) >= 1,
            "{wait} did not fall back: {fell_back:?}"
        );
    }
    assert!(started.elapsed() >= Duration::from_secs(3 * FALLBACK));
    let d = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    let image = d.runtime.image_id.unwrap();
    let p = published(&c, "EC2 AMI State Change", &[("ImageId", &image)]).await;
    assert!(p.matched && p.dropped && !p.delivered, "{p:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn foreign_and_repeated_events_change_nothing_and_cancel_wakes_a_waiting_deployment() {
    let _turn = TURN.lock().await;
    let c = clients();
    let env = "waits-cancel";
    let id = held_part_way(&c, env, json!({"lockInstances": true})).await;
    let arn = harness::execution_arn(&c, &id);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !harness::in_wait_state(&c, &arn, "Wait for instances").await {
        assert!(Instant::now() < deadline, "never in \"Wait for instances\"");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = c.store.deployment(env, &id).await.unwrap().unwrap();
    let image = record.runtime.image_id.clone().unwrap();

    // Another group's refresh, another image, another instance, and this
    // deployment's own AMI event again (its wait was woken and removed):
    // delivered, and nothing moves.
    let own_ami = published(&c, "EC2 AMI State Change", &[("ImageId", &image)]).await;
    let mut foreign_refresh = own_ami.event.clone();
    foreign_refresh["source"] = json!("aws.autoscaling");
    foreign_refresh["detail-type"] = json!("EC2 Auto Scaling Instance Refresh Succeeded");
    foreign_refresh["detail"] = json!({"InstanceRefreshId": "c613620e-07e2-4ed2-a9e2-ef8258911ade", "AutoScalingGroupName": "another-group"});
    let mut foreign_image = own_ami.event.clone();
    foreign_image["detail"]["ImageId"] = json!("ami-0a1b2c3d4e5f60718");
    let mut foreign_instance = own_ami.event.clone();
    foreign_instance["detail-type"] = json!("EC2 Instance State-change Notification");
    foreign_instance["detail"] = json!({"instance-id": "i-0a1b2c3d4e5f60718", "state": "stopped"});
    let before = history_len(&c, &id).await;
    for event in [
        foreign_refresh,
        foreign_image,
        foreign_instance,
        own_ami.event,
    ] {
        let p = c.endpoints.publish_event(event).await.unwrap();
        assert!(p.matched && p.delivered, "{p:?}");
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(history_len(&c, &id).await, before, "no state moved");
    let now = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(now.steps, record.steps, "no step recorded anything");
    assert_eq!(
        now.step(StepName::ReplaceInstances).status,
        StepStatus::Running
    );

    // Cancel: the waiting step is woken and stops well before its timeout.
    let cancelled = Instant::now();
    cancel(&c, env, &id).await;
    loop {
        let d = c.store.deployment(env, &id).await.unwrap().unwrap();
        if d.step(StepName::ReplaceInstances).status != StepStatus::Running {
            break;
        }
        assert!(
            cancelled.elapsed() < Duration::from_secs(FALLBACK / 2),
            "the cancel did not reach the waiting step"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, d) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "FAILED");
    let d = d.unwrap();
    assert_eq!(d.status, DeploymentStatus::Cancelled);
    assert_eq!(
        fallbacks(&c, &id).await,
        BTreeMap::new(),
        "no wait fell back"
    );
}

/// An image that fails ends its wait at once: its "failed" event wakes
/// "Wait for image", whose check fails the step (ImageFailed, completed as
/// the step's own error) and Finalization cleans up.
#[tokio::test(flavor = "multi_thread")]
async fn a_failed_image_wakes_its_wait_and_fails_the_deployment() {
    let _turn = TURN.lock().await;
    let c = clients();
    let env = "waits-image-failed";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let e = &seeded.environment;
    harness::set_image_failed(
        &c,
        &e.preparation_server_id,
        Some("Snapshot creation failed"),
    )
    .await
    .unwrap();
    let id = harness::start_deployment(&c, env, json!({"lockInstances": true}))
        .await
        .unwrap();
    let (status, d) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "FAILED");
    let d = d.unwrap();
    assert_eq!(d.status, DeploymentStatus::Failed);
    let error = d.error.clone().unwrap();
    assert_eq!(error.name, "ImageFailed", "{error:?}");
    assert_eq!(d.step(StepName::CreateImage).status, StepStatus::Failed);
    assert_eq!(
        fallbacks(&c, &id).await,
        BTreeMap::new(),
        "woken, not by the timeout"
    );
    let image = d.runtime.image_id.clone().unwrap();
    let p = published(
        &c,
        "EC2 AMI State Change",
        &[("ImageId", &image), ("State", "failed")],
    )
    .await;
    assert!(p.matched && p.delivered && p.error.is_none(), "{p:?}");
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    assert!(harness::suspended_processes(&c, &e.auto_scaling_groups[0])
        .await
        .is_empty());
}

/// Cancels the deployment through the API (which wakes a waiting step).
async fn cancel(c: &Clients, env: &str, id: &str) {
    let req = hyper::Request::post(format!(
        "{}/environments/{env}/deployments/{id}/cancel",
        c.endpoints.api
    ))
    .body(http_body_util::Full::new(bytes::Bytes::new()))
    .unwrap();
    let (status, _, body) = http::send(req).await.unwrap();
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
}

/// Makes the next `service:Action` call through the gateway fail with the
/// service's own IAM denial (which no SDK retries).
async fn deny_next(c: &Clients, service: &str, action: &str) {
    let fault = json!({"service": service, "action": action, "nth": 1, "error": "AccessDenied"});
    c.endpoints
        .control("POST", "faults", "application/json", fault.to_string())
        .await
        .unwrap();
}

/// Waits until the deployment has registered a wait of `step`.
async fn registered(c: &Clients, env: &str, id: &str, step: StepName) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = c.store.deployment(env, id).await.unwrap();
        if d.is_some_and(|d| d.runtime.wait.is_some_and(|w| w.step == step)) {
            return;
        }
        assert!(Instant::now() < deadline, "no {step:?} wait registered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The states in which a task failed with `error` (reported by the step
/// itself through SendTaskFailure, as fakecloud records it), `*` for any.
async fn failed_in(c: &Clients, id: &str, error: &str) -> Vec<String> {
    let (mut state, mut out) = (String::new(), vec![]);
    for ev in harness::history(c, &harness::execution_arn(c, id))
        .await
        .unwrap()
    {
        if let Some(d) = ev.state_entered_event_details() {
            state = d.name().to_string();
        }
        if ev
            .task_failed_event_details()
            .and_then(|d| d.error())
            .is_some_and(|e| e == error || error == "*")
        {
            out.push(format!(
                "{state}: {}",
                ev.task_failed_event_details()
                    .and_then(|d| d.error())
                    .unwrap_or("")
            ));
        }
    }
    out
}

/// A check that fails in a waiting state reports the step's own error
/// (SendTaskFailure with its name), which the waiting state treats as the
/// step's Task does: the server's stop meets a denial and the deployment
/// fails from "Wait for preparation server" (caught into Finalization);
/// Finalization's restore check meets one and is retried, and the fleet
/// still comes back.
#[tokio::test(flavor = "multi_thread")]
async fn a_check_that_fails_in_a_waiting_state_reports_the_steps_error() {
    let _turn = TURN.lock().await;
    let c = clients();

    let env = "waits-stop-error";
    seed::environment(&c, env, 1, defaults()).await.unwrap();
    let id = harness::start_deployment(&c, env, json!({"stopPreparationServer": true}))
        .await
        .unwrap();
    registered(&c, env, &id, StepName::StopPreparationServer).await;
    deny_next(&c, "ec2", "DescribeInstances").await;
    let (status, d) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "FAILED");
    let d = d.unwrap();
    assert_eq!(d.status, DeploymentStatus::Failed);
    assert_eq!(d.error.unwrap().name, "AwsError");
    // (Finalization may then retry its own cleanup while the server is
    // still stopping: not what this checks.)
    assert_eq!(
        failed_in(&c, &id, "*").await.first().map(String::as_str),
        Some("Wait for preparation server: AwsError")
    );

    let env = "waits-restore-error";
    let id = held_part_way(&c, env, json!({})).await;
    cancel(&c, env, &id).await;
    registered(&c, env, &id, StepName::Finalization).await;
    deny_next(&c, "autoscaling", "DescribeInstanceRefreshes").await;
    let (status, d) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "FAILED");
    assert_eq!(d.unwrap().status, DeploymentStatus::Cancelled);
    let failed = failed_in(&c, &id, "*").await;
    assert!(
        failed
            .iter()
            .any(|f| f.starts_with("Wait for fleet restore: ")),
        "{failed:?}"
    );
}
