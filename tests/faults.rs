//! Fault matrix: for every AWS call the steps make in a deployment, (a) a
//! throttling error is retried and the deployment succeeds, (b) a hard error
//! (access denied) ends it — Failed, or Succeeded when the call only serves
//! cleanup or the e-mail — with the five invariants true: lock released,
//! suspended processes exactly the prior set, preparation server in its prior
//! state, launch template default the old version or a new one with a recorded
//! backup, the record terminal with end, duration and the error.

use autosky_core::domain::{Deployment, DeploymentStatus, EnvironmentDefaults};
use autosky_core::store::Store;
use autosky_sandbox::harness;
use autosky_sandbox::{http, seed, Clients, Endpoints};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn sandbox() -> &'static Endpoints {
    harness::shared(env!("CARGO_BIN_EXE_autosky-sandbox"))
}

async fn post(url: String, body: Value) -> (u16, Value) {
    let req = hyper::Request::post(url)
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, _, body) = http::send(req).await.unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

async fn calls() -> BTreeMap<String, u64> {
    let (_, body) = http::get(&format!("{}/_sandbox/calls", sandbox().autoscaling))
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn arm(service: &str, action: &str, error: &str) {
    let (status, body) = post(
        format!("{}/_sandbox/faults", sandbox().autoscaling),
        json!({"service": service, "action": action, "nth": 1, "error": error}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

/// A registered environment whose group has AlarmNotification suspended beforehand.
async fn environment(c: &Clients, env: &str) -> autosky_core::domain::Environment {
    let seeded = seed::environment(
        c,
        env,
        1,
        EnvironmentDefaults {
            notification_emails: vec!["ops@example.com".into()],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    c.asg
        .suspend_processes()
        .auto_scaling_group_name(&seeded.environment.auto_scaling_groups[0])
        .scaling_processes("AlarmNotification")
        .send()
        .await
        .unwrap();
    seeded.environment
}

async fn start(env: &str) -> String {
    let (status, body) = post(
        format!("{}/environments/{env}/deployments", sandbox().api),
        json!({"lockInstances": true, "stopPreparationServer": true}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    body["deploymentId"].as_str().unwrap().to_string()
}

async fn finished(c: &Clients, env: &str, id: &str) -> Deployment {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let d = c.store.deployment(env, id).await.unwrap().unwrap();
        // Terminal and the lock gone (Finalization's last write is the status).
        if d.status.is_terminal() {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "{env}: deployment still {}",
            d.status
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The five invariants; returns what is violated.
async fn invariants(
    c: &Clients,
    e: &autosky_core::domain::Environment,
    d: &Deployment,
) -> Vec<String> {
    let mut bad = Vec::new();
    if c.store
        .lock_holder(&e.environment_id)
        .await
        .unwrap()
        .is_some()
    {
        bad.push("lock held".into());
    }
    let suspended = harness::suspended_processes(c, &e.auto_scaling_groups[0]).await;
    if suspended != ["AlarmNotification"] {
        bad.push(format!("suspended {suspended:?}"));
    }
    let state = harness::instance_state(c, &e.preparation_server_id).await;
    if state != "running" {
        bad.push(format!("server {state}"));
    }
    let default = harness::default_version(c, &e.launch_template_id).await;
    let new_with_backup = d.runtime.backup_version.is_some() && default == d.runtime.main_version;
    if default != Some(1) && !new_with_backup {
        bad.push(format!("default version {default:?} without backup"));
    }
    if !d.status.is_terminal() || d.ended_at.is_none() || d.duration_ms.is_none() {
        bad.push("record not terminal".into());
    }
    if d.status == DeploymentStatus::Failed
        && d.error
            .as_ref()
            .is_none_or(|e| e.step.is_none() || e.message.is_empty())
    {
        bad.push(format!("error not recorded: {:?}", d.error));
    }
    bad
}

/// Calls made by the steps (not the workers' own Step Functions polling).
fn step_calls(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> Vec<(String, String)> {
    after
        .iter()
        .filter(|(k, v)| k.contains(':') && **v > before.get(*k).copied().unwrap_or(0))
        .filter_map(|(k, _)| k.split_once(':'))
        .filter(|(service, _)| *service != "states")
        .map(|(s, a)| (s.to_string(), a.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_call_of_every_step_survives_throttling_and_hard_errors() {
    let c = Clients::new(sandbox());
    // Discover the calls of a whole deployment.
    let e = environment(&c, "fault-probe").await;
    let before = calls().await;
    let id = start("fault-probe").await;
    let d = finished(&c, "fault-probe", &id).await;
    assert_eq!(d.status, DeploymentStatus::Succeeded, "{d:#?}");
    let actions = step_calls(&before, &calls().await);
    assert!(invariants(&c, &e, &d).await.is_empty());
    assert!(actions.len() >= 15, "{actions:?}");

    // (a) Throttling: one fault per action, all deployments at once.
    let mut envs = Vec::new();
    for (i, _) in actions.iter().enumerate() {
        let env = format!("fault-throttle-{i}");
        envs.push((environment(&c, &env).await, env));
    }
    for (service, action) in &actions {
        arm(service, action, "Throttling").await;
    }
    let ids: Vec<String> = futures_join(envs.iter().map(|(_, env)| {
        let env = env.clone();
        async move { start(&env).await }
    }))
    .await;
    let mut passed = 0;
    let mut failures = Vec::new();
    for ((e, env), id) in envs.iter().zip(&ids) {
        let d = finished(&c, env, id).await;
        let bad = invariants(&c, e, &d).await;
        if d.status == DeploymentStatus::Succeeded && bad.is_empty() {
            passed += 1;
        } else {
            failures.push(format!(
                "throttling {env}: {} {:?} {bad:?}",
                d.status, d.error
            ));
        }
    }
    let (_, faults) = http::get(&format!("{}/_sandbox/faults", sandbox().autoscaling))
        .await
        .unwrap();
    let faults: Vec<Value> = serde_json::from_slice(&faults).unwrap();
    assert!(
        faults.iter().all(|f| f["fired"] == true),
        "every throttling fault fired: {faults:?}"
    );

    // (b) Hard errors, one deployment at a time so each meets its own fault.
    let cleanup_only = [
        "ec2:StartInstances",
        "autoscaling:ResumeProcesses",
        "dynamodb:DeleteItem",
        "ses:SendEmail",
        // Create models' read of the kept deployments: without it, old models
        // and images stay (housekeeping never fails a deployment).
        "dynamodb:Query",
    ];
    for (i, (service, action)) in actions.iter().enumerate() {
        let env = format!("fault-denied-{i}");
        let e = environment(&c, &env).await;
        arm(service, action, "AccessDenied").await;
        let id = start(&env).await;
        let d = finished(&c, &env, &id).await;
        let expected = if cleanup_only.contains(&format!("{service}:{action}").as_str()) {
            DeploymentStatus::Succeeded
        } else {
            DeploymentStatus::Failed
        };
        let bad = invariants(&c, &e, &d).await;
        if d.status == expected && bad.is_empty() {
            passed += 1;
        } else {
            failures.push(format!(
                "denied {service}:{action}: {} (expected {expected}) {:?} {bad:?}",
                d.status, d.error
            ));
        }
    }
    let size = actions.len() * 2;
    harness::figure(&format!(
        "fault matrix: {} actions x 2 = {size} cases, {passed} passed",
        actions.len()
    ));
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(passed, size);
}

/// Runs futures concurrently and keeps their order.
async fn futures_join<F: std::future::Future<Output = String> + Send + 'static>(
    futs: impl Iterator<Item = F>,
) -> Vec<String> {
    let handles: Vec<_> = futs.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
