//! The Deployments API end to end: the router served on loopback by the
//! sandbox, over the real store, state machine and workers; scheduled
//! deployments fired by the emulator's EventBridge Scheduler.

use autosky_core::domain::{new_deployment_id, Deployment, DeploymentOptions, EnvironmentDefaults};
use autosky_core::store::Store;
use autosky_sandbox::harness;
use autosky_sandbox::{http, seed, Clients, Endpoints};
use bytes::Bytes;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

fn sandbox() -> &'static Endpoints {
    harness::shared(env!("CARGO_BIN_EXE_autosky-sandbox"))
}

async fn call(method: &str, path: &str, body: Option<&str>) -> (u16, hyper::HeaderMap, Value) {
    let req = hyper::Request::builder()
        .method(method)
        .uri(format!("{}{path}", sandbox().api))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(
            body.unwrap_or("").to_string(),
        )))
        .unwrap();
    let (status, headers, body) = http::send(req).await.unwrap();
    (
        status,
        headers,
        serde_json::from_slice(&body).unwrap_or(Value::Null),
    )
}

async fn dynamodb_calls() -> BTreeMap<String, u64> {
    let (_, body) = http::get(&format!("{}/_sandbox/dynamodb-calls", sandbox().api))
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// Seeds the resources (tagged with `env`), then registers the environment
/// through the API.
async fn register(c: &Clients, env: &str) -> seed::Seeded {
    register_with(
        c,
        env,
        1,
        json!({"notificationEmails": ["ops@example.com"], "retention": 3}),
    )
    .await
}

async fn wait_terminal(env: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, _, d) = call(
            "GET",
            &format!("/environments/{env}/deployments/{id}"),
            None,
        )
        .await;
        assert_eq!(status, 200, "{d}");
        if !matches!(d["status"].as_str(), Some("Running") | Some("Scheduled")) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "deployment {id} still running: {d}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn start_then_details_until_succeeded() {
    let c = Clients::new(sandbox());
    register(&c, "api-start").await;
    let (status, headers, started) = call(
        "POST",
        "/environments/api-start/deployments",
        Some(r#"{"lockInstances":true,"notificationEmails":["dev@api.example.com"]}"#),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(
        headers.get("location").unwrap(),
        &format!("/environments/api-start/deployments/{id}")
    );
    assert!(started["executionArn"].as_str().unwrap().ends_with(&id));
    let d = wait_terminal("api-start", &id).await;
    assert_eq!(d["status"], "Succeeded", "{d}");
    assert_eq!(d["owner"], "local:developer");
    assert!(
        d["modelVersion"].is_i64() && d["endedAt"].is_string() && d["durationMs"].is_i64(),
        "{d}"
    );
    for s in d["steps"].as_array().unwrap() {
        assert!(
            s["actions"].as_array().is_some_and(|a| !a.is_empty()),
            "{s}"
        );
    }
    assert!(d["consoleUrl"].as_str().unwrap().contains(&id));
    let (_, _, page) = call("GET", "/environments/api-start/deployments", None).await;
    assert_eq!(page["items"][0]["deploymentId"], id.as_str());
    assert_eq!(page["items"][0]["generatedVersion"], d["generatedVersion"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_busy_environment_answers_409() {
    let c = Clients::new(sandbox());
    register(&c, "api-busy").await;
    let (s1, _, first) = call("POST", "/environments/api-busy/deployments", Some("{}")).await;
    assert_eq!(s1, 202, "{first}");
    let (s2, headers, busy) = call("POST", "/environments/api-busy/deployments", Some("{}")).await;
    assert_eq!(s2, 409, "{busy}");
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(busy["runningDeploymentId"], first["deploymentId"]);
    let id = first["deploymentId"].as_str().unwrap();
    assert_eq!(wait_terminal("api-busy", id).await["status"], "Succeeded");
    // Free again afterwards.
    let (s3, _, third) = call("POST", "/environments/api-busy/deployments", Some("{}")).await;
    assert_eq!(s3, 202, "{third}");
    wait_terminal("api-busy", third["deploymentId"].as_str().unwrap()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn history_pages_over_250_deployments_one_query_each() {
    let c = Clients::new(sandbox());
    let env = "api-pages";
    let seeded = seed::environment(&c, env, 0, EnvironmentDefaults::default())
        .await
        .unwrap();
    let _ = seeded;
    let mut created = Vec::new();
    for _ in 0..250 {
        let d = Deployment::new_running(
            new_deployment_id(),
            env.into(),
            "seed".into(),
            DeploymentOptions::default(),
            chrono::Utc::now(),
        );
        c.store.create_deployment(&d, None).await.unwrap();
        created.push(d.deployment_id);
    }
    created.sort();
    created.reverse();
    let before = dynamodb_calls().await;
    let (mut seen, mut pages, mut token) = (Vec::new(), 0u64, None::<String>);
    loop {
        let path = match &token {
            Some(t) => format!("/environments/{env}/deployments?limit=20&nextToken={t}"),
            None => format!("/environments/{env}/deployments?limit=20"),
        };
        let (status, _, page) = call("GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["deploymentId"].as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    let after = dynamodb_calls().await;
    let queries =
        after.get("Query").copied().unwrap_or(0) - before.get("Query").copied().unwrap_or(0);
    assert_eq!(pages, 13);
    assert_eq!(seen.len(), 250);
    assert_eq!(
        seen.iter().collect::<HashSet<_>>().len(),
        250,
        "no duplicate"
    );
    assert_eq!(seen, created, "newest first, no gap");
    // Other tests share this sandbox; their history reads would only add to
    // the count, and none runs concurrently with more Query calls than pages.
    assert!(
        queries >= pages && queries <= pages + 4,
        "{queries} Query calls for {pages} pages"
    );
    assert_eq!(after.get("Scan"), None, "never a Scan");
    println!("history: {pages} pages, {queries} Query calls");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_inputs_get_the_right_4xx_and_change_nothing() {
    let c = Clients::new(sandbox());
    let env = "api-bad";
    let seeded = register(&c, env).await;
    let e = &seeded.environment;
    // What the requests could touch: the environment's config, its lock and
    // its deployments, and the listing of environments.
    let snapshot = |c: Clients| async move {
        (
            c.store.environment(env).await.unwrap(),
            c.store.lock_holder(env).await.unwrap(),
            c.store.history(env, 100, None, None).await.unwrap().items,
            c.store.environment("api-bad-new").await.unwrap(),
        )
    };
    let before = snapshot(c.clone()).await;
    let many: Vec<String> = (0..21).map(|i| format!("u{i}@example.com")).collect();
    let good_env = json!({"preparationServerId": e.preparation_server_id, "autoScalingGroups": e.auto_scaling_groups, "launchTemplateId": e.launch_template_id});
    let mut missing_group = good_env.clone();
    missing_group["autoScalingGroups"] = json!(["no-such-group"]);
    let mut missing_server = good_env.clone();
    missing_server["preparationServerId"] = json!("i-0000000000000dead");
    let deps = format!("/environments/{env}/deployments");
    let cases: Vec<(&str, String, Option<String>, u16)> = vec![
        ("POST", "/environments/API-BAD/deployments".into(), Some("{}".into()), 400),
        ("POST", "/environments/api_bad/deployments".into(), Some("{}".into()), 400),
        ("POST", format!("/environments/{}/deployments", "a".repeat(65)), Some("{}".into()), 400),
        ("POST", deps.clone(), Some("{".into()), 400),
        ("POST", deps.clone(), Some("[]".into()), 400),
        ("POST", deps.clone(), Some(r#"{"owner":"mallory"}"#.into()), 400),
        ("POST", deps.clone(), Some(r#"{"lockInstances":1}"#.into()), 400),
        ("POST", deps.clone(), Some(r#"{"notificationEmails":"a@example.com"}"#.into()), 400),
        ("POST", deps.clone(), Some(r#"{"notificationEmails":["not-an-address"]}"#.into()), 400),
        ("POST", deps.clone(), Some(json!({"notificationEmails": ["a@example.com\r\nBcc: x@example.com"]}).to_string()), 400),
        ("POST", deps.clone(), Some(json!({"notificationEmails": [format!("{}@example.com", "a".repeat(65))]}).to_string()), 400),
        ("POST", deps.clone(), Some(json!({"notificationEmails": many}).to_string()), 400),
        ("POST", deps.clone(), Some(format!(r#"{{"pad":"{}"}}"#, "x".repeat(17 * 1024))), 413),
        ("POST", "/environments/api-nowhere/deployments".into(), Some("{}".into()), 404),
        ("GET", format!("{deps}?limit=0"), None, 400),
        ("GET", format!("{deps}?limit=101"), None, 400),
        ("GET", format!("{deps}?limit=abc"), None, 400),
        ("GET", format!("{deps}?nextToken=dGFtcGVyZWQ"), None, 400),
        ("GET", format!("{deps}?status=Done"), None, 400),
        ("GET", format!("{deps}?order=asc"), None, 400),
        ("GET", format!("{deps}/not-a-ulid"), None, 400),
        ("GET", format!("{deps}/{}", new_deployment_id()), None, 404),
        ("DELETE", format!("/environments/{env}"), None, 405),
        ("GET", "/admin".into(), None, 404),
        ("PUT", "/environments/api-bad-new".into(), Some(r#"{"preparationServerId":"i-0123456789abcdef0"}"#.into()), 400),
        ("PUT", "/environments/api-bad-new".into(), Some(json!({"preparationServerId": "server", "autoScalingGroups": ["g"], "launchTemplateId": "lt-0123456789abcdef0"}).to_string()), 400),
        ("PUT", "/environments/api-bad-new".into(), Some(missing_group.to_string()), 422),
        ("PUT", "/environments/api-bad-new".into(), Some(missing_server.to_string()), 422),
        // The resources are tagged autosky:environment=api-bad: not api-bad-new's.
        ("PUT", "/environments/api-bad-new".into(), Some(good_env.to_string()), 422),
        ("PUT", format!("/environments/{env}"), Some(json!({"preparationServerId": e.preparation_server_id, "autoScalingGroups": e.auto_scaling_groups, "launchTemplateId": e.launch_template_id, "defaults": {"retention": 1}}).to_string()), 400),
    ];
    assert!(cases.len() >= 25);
    for (method, path, body, expected) in &cases {
        let (status, headers, problem) = call(method, path, body.as_deref()).await;
        assert_eq!(status, *expected, "{method} {path}: {problem}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json",
            "{method} {path}"
        );
        assert_eq!(problem["status"], *expected);
        assert!(
            problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{problem}"
        );
    }
    assert_eq!(
        snapshot(c.clone()).await,
        before,
        "the environment's items are unchanged"
    );
    assert!(c.store.environment("api-bad-new").await.unwrap().is_none());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    println!("bad inputs: {} requests, all refused", cases.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_ends_cancelled_and_leaves_the_environment_clean() {
    let c = Clients::new(sandbox());
    let seeded = register(&c, "api-cancel").await;
    let e = &seeded.environment;
    let (status, _, started) = call(
        "POST",
        "/environments/api-cancel/deployments",
        Some(r#"{"lockInstances":true,"stopPreparationServer":true}"#),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["deploymentId"].as_str().unwrap().to_string();
    let path = format!("/environments/api-cancel/deployments/{id}");
    // Cancel once the work is under way (the image is being made or later).
    for _ in 0..200 {
        let (_, _, d) = call("GET", &path, None).await;
        if d["steps"][2]["status"] != "Pending" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _, flagged) = call("POST", &format!("{path}/cancel"), None).await;
    assert_eq!(status, 202, "{flagged}");
    assert_eq!(flagged["cancelledBy"], "local:developer");
    let d = wait_terminal("api-cancel", &id).await;
    assert_eq!(d["status"], "Cancelled", "{d}");
    assert_eq!(d["error"]["name"], "Cancelled");
    assert_eq!(d["error"]["message"], "cancelled by local:developer");
    // The fleet it leaves, per group: still on the version before.
    let group = &e.auto_scaling_groups[0];
    assert_eq!(
        d["fleetVersions"][group], "its 1 instance on version 1",
        "{d}"
    );
    // Clean: unlocked, nothing suspended, server running, default = the previous one.
    assert_eq!(c.store.lock_holder("api-cancel").await.unwrap(), None);
    assert!(harness::suspended_processes(&c, &e.auto_scaling_groups[0])
        .await
        .is_empty());
    assert_eq!(
        harness::instance_state(&c, &e.preparation_server_id).await,
        "running"
    );
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        Some(1)
    );
    // Cancelling again is refused: it is no longer running.
    let (status, _, _) = call("POST", &format!("{path}/cancel"), None).await;
    assert_eq!(status, 409);
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_simultaneous_starts_one_environment_one_runs() {
    let c = Clients::new(sandbox());
    register(&c, "api-race").await;
    let starts: Vec<_> = (0..20)
        .map(|_| {
            tokio::spawn(async {
                call("POST", "/environments/api-race/deployments", Some("{}")).await
            })
        })
        .collect();
    let mut started = Vec::new();
    let mut busy = 0;
    for s in starts {
        let (status, _, body) = s.await.unwrap();
        match status {
            202 => started.push(body["deploymentId"].as_str().unwrap().to_string()),
            409 => busy += 1,
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!((started.len(), busy), (1, 19));
    assert_eq!(
        wait_terminal("api-race", &started[0]).await["status"],
        "Succeeded"
    );
    let (_, _, page) = call("GET", "/environments/api-race/deployments", None).await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        1,
        "refused starts leave no record"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn twenty_environments_deploy_at_once() {
    let c = Clients::new(sandbox());
    let envs: Vec<String> = (0..20).map(|i| format!("api-fleet-{i}")).collect();
    for e in &envs {
        register(&c, e).await;
    }
    let starts: Vec<_> = envs
        .iter()
        .cloned()
        .map(|e| {
            tokio::spawn(async move {
                (
                    call(
                        "POST",
                        &format!("/environments/{e}/deployments"),
                        Some("{}"),
                    )
                    .await,
                    e,
                )
            })
        })
        .collect();
    let mut ids = Vec::new();
    for s in starts {
        let ((status, _, body), env) = s.await.unwrap();
        assert_eq!(status, 202, "{env}: {body}");
        ids.push((env, body["deploymentId"].as_str().unwrap().to_string()));
    }
    for (env, id) in &ids {
        assert_eq!(wait_terminal(env, id).await["status"], "Succeeded", "{env}");
    }
}

// ---- scheduled deployments (the emulator fires at() schedules) ----

/// A local time `secs` from now in `tz` (a zone at UTC+0 all year, because
/// the emulator reads at() in UTC whatever the zone; see ARCHITECTURE.md).
fn local_in(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs))
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string()
}

const ZONE: &str = "Africa/Abidjan";

async fn schedule_names(c: &Clients) -> Vec<String> {
    c.scheduler
        .list_schedules()
        .group_name(autosky_sandbox::provision::SCHEDULE_GROUP)
        .send()
        .await
        .unwrap()
        .schedules()
        .iter()
        .filter_map(|s| s.name().map(str::to_string))
        .collect()
}

async fn schedule_input(c: &Clients, id: &str) -> String {
    let s = c
        .scheduler
        .get_schedule()
        .group_name(autosky_sandbox::provision::SCHEDULE_GROUP)
        .name(id)
        .send()
        .await
        .unwrap();
    assert_eq!(s.schedule_expression_timezone(), Some(ZONE));
    assert_eq!(
        s.action_after_completion().map(|a| a.as_str()),
        Some("DELETE")
    );
    let t = s.target().unwrap();
    assert_eq!(t.arn(), sandbox().state_machine_arn);
    t.input().unwrap().to_string()
}

async fn mails_to(c: &Clients, address: &str) -> Vec<Value> {
    harness::emails(c)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.to_string().contains(address))
        .collect()
}

/// Starts an execution as a second delivery of a schedule would (same input, another name).
async fn deliver_again(c: &Clients, input: &str) -> String {
    let name = format!("dup-{}", new_deployment_id());
    c.sfn
        .start_execution()
        .state_machine_arn(&sandbox().state_machine_arn)
        .name(&name)
        .input(input)
        .send()
        .await
        .unwrap();
    name
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_deployment_runs_by_itself_once_with_its_emails() {
    let c = Clients::new(sandbox());
    let env = "sched-run";
    register(&c, env).await;
    let body = json!({
        "at": local_in(5), "timezone": ZONE,
        "notificationEmails": ["sched-run@example.com"], "notifyOnStart": true,
    });
    let (status, _, d) = call(
        "POST",
        &format!("/environments/{env}/schedules"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let id = d["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(d["status"], "Scheduled");
    assert_eq!(d["schedule"]["timezone"], ZONE);
    let input = schedule_input(&c, &id).await;
    assert!(input.contains(&id));
    let (_, _, page) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    assert_eq!(page["items"][0]["deploymentId"], id.as_str());
    assert_eq!(page["items"][0]["status"], "Scheduled");
    assert!(page["items"][0]["scheduledFor"].is_string());

    // It fires; the moment it runs, a second delivery of the same schedule arrives.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = c.store.deployment(env, &id).await.unwrap().unwrap();
        if r.status != autosky_core::domain::DeploymentStatus::Scheduled {
            break;
        }
        assert!(Instant::now() < deadline, "the schedule did not fire");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dup = deliver_again(&c, &input).await;
    let d = wait_terminal(env, &id).await;
    assert_eq!(d["status"], "Succeeded", "{d}");
    assert_eq!(d["owner"], "local:developer");
    let real = d["executionArn"].as_str().unwrap().to_string();
    assert!(!real.ends_with(&dup));
    assert_eq!(
        harness::wait_execution_arn(
            &c,
            &harness::execution_arn(&c, &dup),
            Duration::from_secs(60)
        )
        .await
        .unwrap(),
        "SUCCEEDED"
    );
    // One run: one image, one refresh; the duplicate is on record and touched nothing.
    assert_eq!(harness::deployment_images(&c, &id).await.len(), 1);
    let r = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(r.ignored_runs.len(), 1, "{:?}", r.ignored_runs);
    assert!(r.ignored_runs[0]
        .execution_arn
        .as_deref()
        .unwrap()
        .ends_with(&dup));
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    // The schedule deleted itself after firing.
    assert!(!schedule_names(&c).await.contains(&id));

    // Confirmation, started and result e-mails, to the deployment's and the environment's recipients.
    let mails = mails_to(&c, "sched-run@example.com").await;
    let text: Vec<String> = mails.iter().map(|m| m.to_string()).collect();
    assert_eq!(mails.len(), 3, "{text:?}");
    assert!(text.iter().all(|m| m.contains("ops@example.com")));
    assert!(
        text[0].contains("sched-run: deployment Scheduled for") && text[0].contains(ZONE),
        "{}",
        text[0]
    );
    assert!(
        text[1].contains("sched-run: deployment Started"),
        "{}",
        text[1]
    );
    assert!(
        text[2].contains("sched-run: deployment Succeeded (version"),
        "{}",
        text[2]
    );
    for step in [
        "Initial validation",
        "Create image",
        "Replace instances",
        "Finalization",
    ] {
        assert!(text[2].contains(step), "{step}");
    }
}

/// Over HTTP as on API Gateway: a 405 carries `Allow`, a body that is not
/// JSON gets 415 and starts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn allow_on_405_and_415_for_a_body_that_is_not_json() {
    let c = Clients::new(sandbox());
    let env = "api-media";
    register(&c, env).await;
    let (status, headers, _) = call("PUT", "/environments", None).await;
    assert_eq!(status, 405);
    assert_eq!(headers.get("allow").unwrap(), "GET");

    let req = hyper::Request::post(format!("{}/environments/{env}/deployments", sandbox().api))
        .header("content-type", "text/plain")
        .body(http_body_util::Full::new(Bytes::from("{}")))
        .unwrap();
    let (status, headers, body) = http::send(req).await.unwrap();
    assert_eq!(status, 415, "{}", String::from_utf8_lossy(&body));
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    let (_, _, history) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    assert_eq!(history["items"], json!([]), "nothing started: {history}");
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}

/// The deployments route's cancel (the api function, not schedules) of a
/// Scheduled deployment unschedules it: its schedule is deleted and the
/// cancellation e-mailed, with the api function's own permissions.
#[tokio::test(flavor = "multi_thread")]
async fn cancelling_a_scheduled_deployment_through_the_deployments_route_unschedules_it() {
    let c = Clients::new(sandbox());
    let env = "sched-cancel-api";
    register(&c, env).await;
    let body = json!({"at": local_in(600), "timezone": ZONE, "notificationEmails": ["sched-cancel-api@example.com"]});
    let (status, _, d) = call(
        "POST",
        &format!("/environments/{env}/schedules"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let id = d["deploymentId"].as_str().unwrap().to_string();
    assert!(schedule_names(&c).await.contains(&id));

    let (status, _, d) = call(
        "POST",
        &format!("/environments/{env}/deployments/{id}/cancel"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "Cancelled");
    assert!(!schedule_names(&c).await.contains(&id), "schedule deleted");
    let mails = mails_to(&c, "sched-cancel-api@example.com").await;
    assert_eq!(mails.len(), 2, "confirmation and cancellation: {mails:?}");
    assert!(mails[1].to_string().contains("deployment Cancelled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cancelled_schedule_runs_nothing_even_if_it_fires_late() {
    let c = Clients::new(sandbox());
    let env = "sched-cancel";
    let seeded = register(&c, env).await;
    let body = json!({"at": local_in(600), "timezone": ZONE, "notificationEmails": ["sched-cancel@example.com"]});
    let (status, _, d) = call(
        "POST",
        &format!("/environments/{env}/schedules"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let id = d["deploymentId"].as_str().unwrap().to_string();
    let input = schedule_input(&c, &id).await;
    let path = format!("/environments/{env}/schedules/{id}");

    let (status, _, moved) = call(
        "PATCH",
        &path,
        Some(&json!({"at": local_in(900)}).to_string()),
    )
    .await;
    assert_eq!(status, 200, "{moved}");
    assert_eq!(moved["schedule"]["timezone"], ZONE);

    let (status, _, d) = call("DELETE", &path, None).await;
    assert_eq!(status, 200, "{d}");
    assert_eq!(d["status"], "Cancelled");
    assert!(!schedule_names(&c).await.contains(&id));
    let (status, _, again) = call("DELETE", &path, None).await;
    assert_eq!(status, 409, "{again}");

    // A delivery that was already on its way when the schedule was deleted.
    let late = deliver_again(&c, &input).await;
    assert_eq!(
        harness::wait_execution_arn(
            &c,
            &harness::execution_arn(&c, &late),
            Duration::from_secs(60)
        )
        .await
        .unwrap(),
        "SUCCEEDED"
    );
    // "Cleanup only?" (not a cleanup execution), Initial validation, Already handled.
    assert_eq!(harness::state_transitions(&c, &late).await.unwrap(), 3);
    let r = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(r.status, autosky_core::domain::DeploymentStatus::Cancelled);
    assert!(r.started_at.is_none());
    assert_eq!(r.ignored_runs.len(), 1);
    assert!(
        r.ignored_runs[0].reason.contains("cancelled"),
        "{}",
        r.ignored_runs[0].reason
    );
    assert!(harness::deployment_images(&c, &id).await.is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    let group = &seeded.environment.auto_scaling_groups[0];
    assert!(harness::suspended_processes(&c, group).await.is_empty());
    let mails = mails_to(&c, "sched-cancel@example.com").await;
    assert_eq!(mails.len(), 2, "confirmation and cancellation");
    assert!(mails[1].to_string().contains("deployment Cancelled"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_schedules_are_refused_and_create_nothing() {
    let c = Clients::new(sandbox());
    let env = "sched-bad";
    register(&c, env).await;
    let (status, _, first) = call(
        "POST",
        &format!("/environments/{env}/schedules"),
        Some(&json!({"at": local_in(3600), "timezone": ZONE}).to_string()),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    let before_names = schedule_names(&c).await.len();
    let cases = [
        (json!({"at": local_in(1)}), 400), // lead time 2 s in the sandbox
        (json!({"at": local_in(400 * 86400)}), 400), // more than a year
        (
            json!({"at": local_in(7200), "timezone": "Nowhere/City"}),
            400,
        ),
        (json!({"at": "next tuesday"}), 400),
        (
            json!({"at": local_in(7200), "notificationEmails": ["a@b@c"]}),
            400,
        ),
        (json!({"at": local_in(3600 + 1800), "timezone": ZONE}), 409), // same hour as the first
    ];
    for (body, want) in &cases {
        let (status, headers, p) = call(
            "POST",
            &format!("/environments/{env}/schedules"),
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(status, *want, "{body}: {p}");
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/problem+json"
        );
        assert!(p["detail"].as_str().is_some_and(|d| !d.is_empty()));
        if *want == 409 {
            assert_eq!(p["conflictingDeploymentId"], first["deploymentId"]);
        }
    }
    let (_, _, page) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(schedule_names(&c).await.len(), before_names);
}

/// Registration keeps an environment to the resources tagged with its own id:
/// another environment's server is refused (422, naming it), and nothing is
/// written; the same resources register under their own id.
#[tokio::test(flavor = "multi_thread")]
async fn registration_refuses_resources_tagged_for_another_environment() {
    let c = Clients::new(sandbox());
    let owner = "api-owner";
    let e = seed::resources(&c, owner, 0, EnvironmentDefaults::default())
        .await
        .unwrap();
    let body = json!({
        "preparationServerId": e.preparation_server_id,
        "autoScalingGroups": e.auto_scaling_groups,
        "launchTemplateId": e.launch_template_id,
    })
    .to_string();
    let (status, headers, problem) = call("PUT", "/environments/api-thief", Some(&body)).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        headers.get("content-type").unwrap(),
        "application/problem+json"
    );
    assert_eq!(
        problem["detail"],
        format!(
            "preparation server {} is tagged autosky:environment={owner}, not api-thief: an \
             environment may only use resources tagged with its own id",
            e.preparation_server_id
        )
    );
    assert!(c.store.environment("api-thief").await.unwrap().is_none());
    let (status, _, registered) = call("PUT", &format!("/environments/{owner}"), Some(&body)).await;
    assert_eq!(status, 201, "{registered}");
}

/// Start, cancel, update the environment over HTTP: the audit trail shows
/// them newest first, each with the sandbox's caller, the update with only
/// the field it changed; a refused request adds nothing.
#[tokio::test(flavor = "multi_thread")]
async fn the_audit_trail_shows_start_cancel_and_update_newest_first() {
    let c = Clients::new(sandbox());
    let seeded = register(&c, "api-audit").await;
    let e = &seeded.environment;
    let (status, _, started) = call(
        "POST",
        "/environments/api-audit/deployments",
        Some(r#"{"stopPreparationServer":true}"#),
    )
    .await;
    assert_eq!(status, 202, "{started}");
    let id = started["deploymentId"].as_str().unwrap().to_string();
    let path = format!("/environments/api-audit/deployments/{id}");
    let (status, _, flagged) = call("POST", &format!("{path}/cancel"), None).await;
    assert_eq!(status, 202, "{flagged}");
    let d = wait_terminal("api-audit", &id).await;
    assert_eq!(d["status"], "Cancelled", "{d}");
    let (status, _, _) = call("POST", &format!("{path}/cancel"), None).await;
    assert_eq!(status, 409);
    let body = json!({
        "preparationServerId": e.preparation_server_id,
        "autoScalingGroups": e.auto_scaling_groups,
        "launchTemplateId": e.launch_template_id,
        "defaults": {"notificationEmails": ["ops@example.com"], "retention": 4},
    });
    let (status, _, b) = call("PUT", "/environments/api-audit", Some(&body.to_string())).await;
    assert_eq!(status, 200, "{b}");

    let (status, _, page) = call("GET", "/environments/api-audit/audit", None).await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["nextToken"], Value::Null);
    let items = page["items"].as_array().unwrap();
    let actions: Vec<&str> = items
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "UpdateEnvironment",
            "CancelDeployment",
            "StartDeployment",
            "RegisterEnvironment"
        ],
        "{page}"
    );
    for i in items {
        assert_eq!(i["caller"], "local:developer", "{i}");
        assert_eq!(i["environmentId"], "api-audit", "{i}");
    }
    assert_eq!(
        items[0]["changes"],
        json!([{"field": "defaults.retention", "before": 3, "after": 4}])
    );
    assert_eq!(items[1]["deploymentId"], id.as_str());
    assert_eq!(items[2]["deploymentId"], id.as_str());
    assert_eq!(
        items[3]["changes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["field"] == "launchTemplateId")
            .unwrap()["after"],
        e.launch_template_id.as_str()
    );
    // Paged like the history.
    let (_, _, first) = call("GET", "/environments/api-audit/audit?limit=3", None).await;
    let token = first["nextToken"].as_str().unwrap();
    let (_, _, rest) = call(
        "GET",
        &format!("/environments/api-audit/audit?limit=3&nextToken={token}"),
        None,
    )
    .await;
    assert_eq!(rest["items"][0]["action"], "RegisterEnvironment", "{rest}");
    assert_eq!(rest["nextToken"], Value::Null);
    let (status, _, _) = call("GET", "/environments/api-nowhere/audit", None).await;
    assert_eq!(status, 404);
}

/// Seeds `instances` instances' worth of resources for `env` and registers
/// them through the API with `defaults`.
async fn register_with(c: &Clients, env: &str, instances: i32, defaults: Value) -> seed::Seeded {
    let environment = seed::resources(c, env, instances, EnvironmentDefaults::default())
        .await
        .unwrap();
    let body = json!({
        "preparationServerId": environment.preparation_server_id,
        "autoScalingGroups": environment.auto_scaling_groups,
        "launchTemplateId": environment.launch_template_id,
        "defaults": defaults,
    });
    let (status, _, b) = call(
        "PUT",
        &format!("/environments/{env}"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(status, 201, "{b}");
    seed::Seeded { environment }
}

/// Starts a deployment (or, with `rollback_of`, a rollback to it) and waits
/// for its end; the record as the API shows it.
async fn deploy(env: &str, rollback_of: Option<&str>) -> Value {
    let id = start(env, rollback_of).await;
    wait_terminal(env, &id).await
}

async fn start(env: &str, rollback_of: Option<&str>) -> String {
    let path = match rollback_of {
        Some(target) => format!("/environments/{env}/deployments/{target}/rollback"),
        None => format!("/environments/{env}/deployments"),
    };
    let (status, _, started) = call("POST", &path, Some("{}")).await;
    assert_eq!(status, 202, "{started}");
    started["deploymentId"].as_str().unwrap().to_string()
}

/// A rollback to `id` is refused with 409 saying `says`.
async fn refused_rollback(env: &str, id: &str, says: &str) {
    let (status, _, p) = call(
        "POST",
        &format!("/environments/{env}/deployments/{id}/rollback"),
        None,
    )
    .await;
    assert_eq!(status, 409, "{p}");
    assert!(p["detail"].as_str().unwrap().contains(says), "{p}");
}

/// Each image the group's instances run.
async fn fleet_images(c: &Clients, group: &str) -> Vec<String> {
    let mut images: Vec<String> = seed::group_instance_images(c, group)
        .await
        .unwrap()
        .into_iter()
        .map(|(_, image)| image)
        .collect();
    images.sort();
    images.dedup();
    images
}

/// Deploy v2, deploy v3; a rollback to v2 cancelled mid-refresh leaves the
/// fleet on v3; a rollback to v2 puts v2's AMI on every instance and makes
/// v2 the default; the history tells the rollback and the targets apart.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_restores_an_earlier_version_and_a_cancelled_one_leaves_the_current() {
    let c = Clients::new(sandbox());
    let env = "api-rollback";
    let seeded = register_with(
        &c,
        env,
        2,
        json!({"notificationEmails": ["ops@example.com"]}),
    )
    .await;
    let e = &seeded.environment;
    let group = &e.auto_scaling_groups[0];
    let v2 = deploy(env, None).await;
    assert_eq!(v2["status"], "Succeeded", "{v2}");
    let v3 = deploy(env, None).await;
    assert_eq!(v3["status"], "Succeeded", "{v3}");
    let (id2, id3) = (
        v2["deploymentId"].as_str().unwrap(),
        v3["deploymentId"].as_str().unwrap(),
    );
    let (image2, image3) = (
        &v2["generatedVersion"]["imageId"],
        &v3["generatedVersion"]["imageId"],
    );
    let version = |d: &Value| {
        d["generatedVersion"]["launchTemplateVersion"]
            .as_i64()
            .unwrap()
    };
    assert_eq!((version(&v2), version(&v3)), (2, 3));
    assert_eq!(
        fleet_images(&c, group).await,
        vec![image3.as_str().unwrap()]
    );
    let (_, _, page) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    let row = |page: &Value, id: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["deploymentId"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(row(&page, id3)["inService"], true, "{page}");
    assert_eq!(row(&page, id2)["canRollBack"], true, "{page}");
    assert_eq!(row(&page, id3).get("canRollBack"), None, "{page}");

    // Cancelled mid-refresh: the fleet goes back to v3.
    harness::set_refresh_outcome(&c, group, "Hold")
        .await
        .unwrap();
    let cancelled = start(env, Some(id2)).await;
    harness::wait_refresh_part_way(&c, group, Duration::from_secs(60))
        .await
        .unwrap();
    let path = format!("/environments/{env}/deployments/{cancelled}");
    let (status, _, flagged) = call("POST", &format!("{path}/cancel"), None).await;
    assert_eq!(status, 202, "{flagged}");
    let d = wait_terminal(env, &cancelled).await;
    assert_eq!(d["status"], "Cancelled", "{d}");
    assert_eq!(d["rollbackOf"]["deploymentId"], id2, "{d}");
    assert_eq!(
        fleet_images(&c, group).await,
        vec![image3.as_str().unwrap()]
    );
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        Some(3)
    );
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);

    // The rollback itself.
    let r = deploy(env, Some(id2)).await;
    assert_eq!(r["status"], "Succeeded", "{r}");
    assert_eq!(
        r["rollbackOf"],
        json!({"deploymentId": id2, "launchTemplateId": e.launch_template_id, "launchTemplateVersion": 2, "imageId": image2})
    );
    assert_eq!(r["generatedVersion"], v2["generatedVersion"], "{r}");
    let status = |i: usize| r["steps"][i]["status"].as_str().unwrap().to_string();
    assert_eq!(
        (1..=5).map(status).collect::<Vec<_>>(),
        [
            "NotApplicable",
            "NotApplicable",
            "Succeeded",
            "Succeeded",
            "Succeeded"
        ]
    );
    assert_eq!(
        fleet_images(&c, group).await,
        vec![image2.as_str().unwrap()]
    );
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        Some(2)
    );
    // No image was taken: the environment still has exactly v2's and v3's.
    assert!(
        harness::deployment_images(&c, r["deploymentId"].as_str().unwrap())
            .await
            .is_empty()
    );
    let (_, _, page) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    let rid = r["deploymentId"].as_str().unwrap();
    assert_eq!(row(&page, rid)["inService"], true, "{page}");
    assert_eq!(row(&page, id3)["canRollBack"], true, "{page}");
    assert_eq!(
        row(&page, id2).get("canRollBack"),
        None,
        "v2 is in service again: {page}"
    );
    // Rolling back to what is in service is refused and starts nothing.
    refused_rollback(env, id2, "is already in service").await;
    let (_, _, after) = call("GET", &format!("/environments/{env}/deployments"), None).await;
    assert_eq!(after["items"].as_array().unwrap().len(), 4);
    let (_, _, audit) = call("GET", &format!("/environments/{env}/audit"), None).await;
    assert_eq!(audit["items"][0]["action"], "RollbackDeployment", "{audit}");
    // E-mailed like any deployment, as a rollback.
    let subjects: Vec<String> = harness::emails(&c)
        .await
        .unwrap()
        .iter()
        .map(|m| m["subject"].as_str().unwrap_or_default().to_string())
        .collect();
    assert!(
        subjects.contains(&format!("[Autosky] {env}: rollback Succeeded (version 2)"))
            && subjects.contains(&format!(
                "[Autosky] {env}: rollback Cancelled (no new version)"
            )),
        "{subjects:?}"
    );
}

/// With one kept deployment and retention 2, the third deployment's Create
/// models removes the first one's version: a rollback to it is refused with
/// 409 and starts nothing.
#[tokio::test(flavor = "multi_thread")]
async fn a_rollback_to_a_removed_version_is_refused_and_starts_nothing() {
    let c = Clients::new(sandbox());
    let env = "api-rollback-gone";
    let seeded = register_with(&c, env, 1, json!({"retention": 2, "keptDeployments": 1})).await;
    let e = &seeded.environment;
    let first = deploy(env, None).await;
    for _ in 0..2 {
        assert_eq!(deploy(env, None).await["status"], "Succeeded");
    }
    let id = first["deploymentId"].as_str().unwrap();
    let version = first["generatedVersion"]["launchTemplateVersion"]
        .as_i64()
        .unwrap();
    let versions: Vec<i64> = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&e.launch_template_id)
        .send()
        .await
        .unwrap()
        .launch_template_versions()
        .iter()
        .filter_map(|v| v.version_number())
        .collect();
    assert!(
        !versions.contains(&version),
        "version {version} removed: {versions:?}"
    );
    let before = call("GET", &format!("/environments/{env}/deployments"), None)
        .await
        .2;
    refused_rollback(
        env,
        id,
        "older than the environment's 1 newest Succeeded deployments",
    )
    .await;
    let after = call("GET", &format!("/environments/{env}/deployments"), None)
        .await
        .2;
    assert_eq!(after, before, "nothing started");
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}
