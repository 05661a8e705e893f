//! The audit trail: each state-changing route writes exactly one entry with
//! its change, a refused request none, and `GET /environments/{env}/audit`
//! pages them newest first.

use super::*;
use crate::domain::{AuditAction, AuditEntry};

/// Every entry of the environment, newest first, through the API.
async fn trail(w: &World, env: &str) -> Vec<Value> {
    let r = call(
        &w.api,
        with_query(
            req("GET", &format!("/environments/{env}/audit"), ""),
            &[("limit", "100")],
        ),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["nextToken"], Value::Null);
    r.json_body()["items"].as_array().unwrap().clone()
}

/// The one entry `r` must have added to `before` (the trail before it).
async fn one_new_entry(w: &World, before: usize) -> Value {
    let all = trail(w, ENV).await;
    assert_eq!(all.len(), before + 1, "{all:#?}");
    let e = all[0].clone();
    assert_eq!(e["caller"], ME, "{e}");
    assert_eq!(e["environmentId"], ENV, "{e}");
    assert_eq!(e["at"], NOW, "{e}");
    e
}

fn field<'a>(e: &'a Value, name: &str) -> Option<&'a Value> {
    e["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == name)
}

fn ok(r: &ApiResponse, status: u16) -> Value {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    r.json_body()
}

#[tokio::test]
async fn each_state_changing_route_writes_one_entry_with_what_it_changed() {
    let w = world_with(true, false);
    let path = format!("/environments/{ENV}");

    // Register: every field, after only.
    ok(
        &call(&w.api, req("PUT", &path, &env_body(API_LT))).await,
        201,
    );
    let e = one_new_entry(&w, 0).await;
    assert_eq!(e["action"], "RegisterEnvironment");
    assert_eq!(
        field(&e, "preparationServerId").unwrap(),
        &json!({"field": "preparationServerId", "after": SERVER_ID})
    );
    assert_eq!(
        field(&e, "defaults.refreshPreferences.minHealthyPercentage").unwrap()["after"],
        90
    );
    assert!(e["changes"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c.get("before").is_none()));
    assert!(e.get("deploymentId").is_none());

    // Update: only the fields whose value changed, before and after.
    let body = json!({
        "preparationServerId": SERVER_ID,
        "autoScalingGroups": [GROUP],
        "launchTemplateId": API_LT,
        "defaults": {"retention": 3, "refreshPreferences": {"minHealthyPercentage": 50, "instanceWarmupSeconds": 60}},
    });
    ok(
        &call(&w.api, req("PUT", &path, &body.to_string())).await,
        200,
    );
    let e = one_new_entry(&w, 1).await;
    assert_eq!(e["action"], "UpdateEnvironment");
    assert_eq!(
        e["changes"],
        json!([
            {"field": "defaults.refreshPreferences.instanceWarmupSeconds", "before": null, "after": 60},
            {"field": "defaults.refreshPreferences.minHealthyPercentage", "before": 90, "after": 50},
            {"field": "defaults.retention", "before": 5, "after": 3},
        ])
    );

    // Start, then cancel it.
    let started = ok(
        &call(
            &w.api,
            req("POST", &format!("/environments/{ENV}/deployments"), "{}"),
        )
        .await,
        202,
    );
    let id = started["deploymentId"].as_str().unwrap().to_string();
    let e = one_new_entry(&w, 2).await;
    assert_eq!(e["action"], "StartDeployment");
    assert_eq!(e["deploymentId"], id.as_str());
    assert_eq!(
        e["changes"],
        json!([{"field": "status", "after": "Running"}])
    );
    ok(
        &call(
            &w.api,
            req(
                "POST",
                &format!("/environments/{ENV}/deployments/{id}/cancel"),
                "",
            ),
        )
        .await,
        202,
    );
    let e = one_new_entry(&w, 3).await;
    assert_eq!(e["action"], "CancelDeployment");
    assert_eq!(e["deploymentId"], id.as_str());
    assert_eq!(
        e["changes"],
        json!([
            {"field": "cancelRequested", "before": false, "after": true},
            {"field": "cancelledBy", "before": null, "after": ME},
        ])
    );

    // Schedule, move, cancel the schedule.
    let s = ok(
        &call(
            &w.api,
            req(
                "POST",
                &format!("/environments/{ENV}/schedules"),
                &sched_body("2026-11-27T15:30", Some("Europe/Paris")),
            ),
        )
        .await,
        201,
    );
    let sid = s["deploymentId"].as_str().unwrap().to_string();
    let e = one_new_entry(&w, 4).await;
    assert_eq!(e["action"], "ScheduleDeployment");
    assert_eq!(e["deploymentId"], sid.as_str());
    assert_eq!(
        e["changes"],
        json!([
            {"field": "schedule.at", "after": "2026-11-27T15:30:00"},
            {"field": "schedule.timezone", "after": "Europe/Paris"},
            {"field": "scheduledFor", "after": "2026-11-27T14:30:00Z"},
            {"field": "status", "after": "Scheduled"},
        ])
    );
    ok(
        &call(
            &w.api,
            req(
                "PATCH",
                &format!("/environments/{ENV}/schedules/{sid}"),
                r#"{"at":"2026-11-27T17:30"}"#,
            ),
        )
        .await,
        200,
    );
    let e = one_new_entry(&w, 5).await;
    assert_eq!(e["action"], "MoveSchedule");
    assert_eq!(
        e["changes"],
        json!([
            {"field": "schedule.at", "before": "2026-11-27T15:30:00", "after": "2026-11-27T17:30:00"},
            {"field": "scheduledFor", "before": "2026-11-27T14:30:00Z", "after": "2026-11-27T16:30:00Z"},
        ])
    );
    ok(
        &call(
            &w.api,
            req(
                "DELETE",
                &format!("/environments/{ENV}/schedules/{sid}"),
                "",
            ),
        )
        .await,
        200,
    );
    let e = one_new_entry(&w, 6).await;
    assert_eq!(e["action"], "CancelSchedule");
    assert_eq!(
        e["changes"],
        json!([{"field": "status", "before": "Scheduled", "after": "Cancelled"}])
    );

    // Newest first: the trail in the reverse order of the requests.
    let actions: Vec<Value> = trail(&w, ENV)
        .await
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(
        actions,
        json!([
            "CancelSchedule",
            "MoveSchedule",
            "ScheduleDeployment",
            "CancelDeployment",
            "StartDeployment",
            "UpdateEnvironment",
            "RegisterEnvironment"
        ])
        .as_array()
        .unwrap()
        .clone()
    );
}

/// Cancelling a Scheduled deployment through the deployments route is the
/// schedule's cancel, audited once as such.
#[tokio::test]
async fn cancel_of_a_scheduled_deployment_is_one_cancel_schedule_entry() {
    let w = world().await;
    let sid = &scheduled(&w.api, "2026-11-27T15:30").await;
    let cancel = format!("/environments/{ENV}/deployments/{sid}/cancel");
    ok(&call(&w.api, req("POST", &cancel, "")).await, 200);
    let e = one_new_entry(&w, 1).await;
    assert_eq!(e["action"], "CancelSchedule");
    assert_eq!(e["deploymentId"], *sid);
}

/// 400, 401, 404, 409, 413, 415 and 422 on every state-changing route:
/// no entry (nor any change).
#[tokio::test]
async fn a_refused_request_writes_no_entry() {
    let w = world().await;
    // What the refusals below need: a running deployment (busy, and an
    // ended one to cancel) and a started (no longer Scheduled) one to move.
    let mut ended = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        "bob".into(),
        Default::default(),
        NOW.parse().unwrap(),
    );
    ended.status = DeploymentStatus::Succeeded;
    w.store.create_deployment(&ended, None).await.unwrap();
    ok(
        &call(
            &w.api,
            req("POST", &format!("/environments/{ENV}/deployments"), "{}"),
        )
        .await,
        202,
    );
    let before = trail(&w, ENV).await;
    assert_eq!(before.len(), 1);
    let ended_id = ended.deployment_id.as_str();
    let env_path = format!("/environments/{ENV}");
    let mut unauthenticated = req("POST", &format!("{env_path}/deployments"), "{}");
    unauthenticated.identity = None;
    let mut not_json = req("PUT", &env_path, &env_body(API_LT));
    not_json.content_type = Some("text/plain".into());
    let cases: Vec<(ApiRequest, u16)> = vec![
        (unauthenticated, 401),
        (req("POST", &format!("{env_path}/deployments"), "{"), 400),
        (req("POST", &format!("{env_path}/deployments"), "{}"), 409),
        (req("POST", "/environments/nowhere/deployments", "{}"), 404),
        (
            req(
                "POST",
                &format!("{env_path}/deployments/{ended_id}/cancel"),
                "",
            ),
            409,
        ),
        (
            req(
                "POST",
                &format!("{env_path}/deployments/01JABCDEFGHJKMNPQRSTVWXYZ9/cancel"),
                "",
            ),
            404,
        ),
        (
            req(
                "POST",
                &format!("{env_path}/schedules"),
                &sched_body("2026-11-27T12:00:30", None),
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/nowhere/schedules",
                &sched_body("2026-11-27T15:30", None),
            ),
            404,
        ),
        (
            req(
                "PATCH",
                &format!("{env_path}/schedules/{ended_id}"),
                r#"{"at":"2026-11-27T17:30"}"#,
            ),
            409,
        ),
        (
            req("DELETE", &format!("{env_path}/schedules/{ended_id}"), ""),
            409,
        ),
        (not_json, 415),
        (
            req(
                "PUT",
                &env_path,
                &format!(r#"{{"x":"{}"}}"#, "a".repeat(17_000)),
            ),
            413,
        ),
        (req("PUT", &env_path, &env_body("lt-0fff00000")), 422),
        (req("PUT", &env_path, r#"{"preparationServerId":1}"#), 400),
    ];
    for (r, status) in cases {
        let what = format!("{} {}", r.method, r.path);
        let res = call(&w.api, r).await;
        assert_eq!(
            res.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&res.body)
        );
    }
    assert_eq!(trail(&w, ENV).await, before);
    assert!(w
        .store
        .audit("nowhere", 10, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

/// The store's half of "never an entry without its change": a write whose
/// condition fails writes neither, whatever the route; a registration of an
/// environment that exists meanwhile is refused (409 in the API).
#[tokio::test]
async fn a_failed_condition_writes_neither_the_change_nor_the_entry() {
    let w = world().await;
    let entry = |action| AuditEntry::new(ENV, ME, action, NOW.parse().unwrap());
    let env = environment();
    let register = entry(AuditAction::RegisterEnvironment);
    assert!(!w
        .store
        .put_environment(&env, Some(&register))
        .await
        .unwrap());
    let update = entry(AuditAction::UpdateEnvironment);
    let mut other = env.clone();
    other.environment_id = "other".into();
    assert!(!w
        .store
        .put_environment(&other, Some(&update))
        .await
        .unwrap());
    assert!(w.store.environment("other").await.unwrap().is_none());
    let mut d = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        "bob".into(),
        Default::default(),
        NOW.parse().unwrap(),
    );
    d.status = DeploymentStatus::Succeeded;
    w.store.create_deployment(&d, None).await.unwrap();
    let again = entry(AuditAction::StartDeployment);
    assert!(!w.store.create_deployment(&d, Some(&again)).await.unwrap());
    let cancel = entry(AuditAction::CancelDeployment);
    assert!(!w
        .store
        .request_cancel(ENV, &d.deployment_id, ME, Some(&cancel))
        .await
        .unwrap());
    assert!(w.store.audit(ENV, 10, None).await.unwrap().items.is_empty());
    assert!(trail(&w, ENV).await.is_empty());
}

#[tokio::test]
async fn the_audit_pages_newest_first_without_gap_or_duplicate() {
    let w = world().await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let d = Deployment::new_running(
            crate::domain::new_deployment_id(),
            ENV.into(),
            ME.into(),
            Default::default(),
            NOW.parse().unwrap(),
        );
        let e = AuditEntry::new(ENV, ME, AuditAction::StartDeployment, NOW.parse().unwrap())
            .deployment(&d.deployment_id);
        ids.push(e.audit_id.clone());
        assert!(w.store.create_deployment(&d, Some(&e)).await.unwrap());
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut q = vec![("limit", "2")];
        if let Some(t) = &token {
            q.push(("nextToken", t));
        }
        let r = call(
            &w.api,
            with_query(req("GET", &format!("/environments/{ENV}/audit"), ""), &q),
        )
        .await;
        let page = ok(&r, 200);
        pages += 1;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["auditId"].as_str().unwrap().to_string()),
        );
        match page["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
    assert_eq!(pages, 3);
    for (q, status) in [
        (vec![("limit", "0")], 400),
        (vec![("limit", "101")], 400),
        (vec![("nextToken", "forged")], 400),
        (vec![("status", "Running")], 400),
    ] {
        let r = call(
            &w.api,
            with_query(req("GET", &format!("/environments/{ENV}/audit"), ""), &q),
        )
        .await;
        assert_eq!(r.status, status, "{q:?}");
    }
    let r = call(&w.api, req("GET", "/environments/nowhere/audit", "")).await;
    assert_eq!(r.status, 404);
}

/// A move whose schedule cannot be moved is put back, and the putting back
/// is audited too (with why): the move's entry is not the last word.
#[tokio::test]
async fn a_move_put_back_after_a_scheduler_failure_is_audited_with_its_reason() {
    use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleError;
    let mut w = world().await;
    let sid = scheduled(&w.api, "2026-11-27T15:30").await;
    let refused = mock!(aws_sdk_scheduler::Client::update_schedule).then_error(|| {
        UpdateScheduleError::generic(
            aws_sdk_scheduler::error::ErrorMetadata::builder()
                .code("AccessDeniedException")
                .message("not allowed")
                .build(),
        )
    });
    w.api.scheduler = crate::aws::Scheduler::new(mock_client!(
        aws_sdk_scheduler,
        RuleMode::MatchAny,
        [&refused]
    ));
    let r = call(
        &w.api,
        req(
            "PATCH",
            &format!("/environments/{ENV}/schedules/{sid}"),
            r#"{"at":"2026-11-27T17:30"}"#,
        ),
    )
    .await;
    assert_eq!(r.status, 502, "{}", String::from_utf8_lossy(&r.body));
    let d = w.store.deployment(ENV, &sid).await.unwrap().unwrap();
    assert_eq!(
        d.scheduled_for,
        Some("2026-11-27T15:30:00Z".parse().unwrap())
    );
    let all = trail(&w, ENV).await;
    let actions: Vec<&str> = all.iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["MoveSchedule", "MoveSchedule", "ScheduleDeployment"]
    );
    assert_eq!(
        all[1]["changes"],
        json!([
            {"field": "schedule.at", "before": "2026-11-27T15:30:00", "after": "2026-11-27T17:30:00"},
            {"field": "scheduledFor", "before": "2026-11-27T15:30:00Z", "after": "2026-11-27T17:30:00Z"},
        ])
    );
    assert_eq!(
        all[0]["changes"],
        json!([
            {"field": "schedule.at", "before": "2026-11-27T17:30:00", "after": "2026-11-27T15:30:00"},
            {"field": "scheduledFor", "before": "2026-11-27T17:30:00Z", "after": "2026-11-27T15:30:00Z"},
        ])
    );
    assert!(all[0]["note"]
        .as_str()
        .unwrap()
        .starts_with("put back: the schedule could not be moved"));
    assert!(all[1].get("note").is_none());
}

/// Schedules a deployment of the test environment at `at` (UTC): its id.
async fn scheduled(api: &Api, at: &str) -> String {
    let path = format!("/environments/{ENV}/schedules");
    let s = ok(
        &call(api, req("POST", &path, &sched_body(at, None))).await,
        201,
    );
    s["deploymentId"].as_str().unwrap().to_string()
}
