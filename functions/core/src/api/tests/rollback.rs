//! Rolling back: a kept Succeeded deployment's model is restored by a
//! deployment that runs like any other; every refusal changes nothing; the
//! history marks the model in service and the rollback targets.

use super::*;
use crate::domain::{AccessMap, AuditAction, Caller};

const V2: &str = "01JD0000000000000000000020";
const V3: &str = "01JD0000000000000000000030";
const V4: &str = "01JD0000000000000000000040";

fn rollback(id: &str, body: &str) -> ApiRequest {
    req(
        "POST",
        &format!("/environments/{ENV}/deployments/{id}/rollback"),
        body,
    )
}

/// What a refusal must leave as it was.
async fn state(w: &World) -> Value {
    json!({
        "history": w.store.history(ENV, 100, None, None).await.unwrap().items,
        "audit": w.store.audit(ENV, 100, None).await.unwrap().items,
        "lock": w.store.lock_holder(ENV).await.unwrap(),
        "started": w.recorder.started.lock().unwrap().len(),
    })
}

#[tokio::test]
async fn a_rollback_starts_a_deployment_restoring_the_earlier_model() {
    let w = world().await;
    succeeded(&w.store, V2, 2).await;
    succeeded(&w.store, V3, 3).await;
    let r = call(
        &w.api,
        rollback(V2, r#"{"notificationEmails":["dev@example.com"]}"#),
    )
    .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json_body();
    let id = body["deploymentId"].as_str().unwrap().to_string();
    let restored = json!({"deploymentId": V2, "launchTemplateId": LT, "launchTemplateVersion": 2, "imageId": "ami-2"});
    assert_eq!(body["rollbackOf"], restored);
    assert_eq!(body["status"], "Running");
    assert_eq!(
        body["options"]["notificationEmails"],
        json!(["dev@example.com"])
    );

    let stored = w.store.deployment(ENV, &id).await.unwrap().unwrap();
    assert_eq!(
        stored
            .rollback_of
            .as_ref()
            .map(|r| r.launch_template_version),
        Some(2)
    );
    assert_eq!(
        w.store.lock_holder(ENV).await.unwrap().as_deref(),
        Some(id.as_str())
    );
    let started = w.recorder.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, id);
    assert_eq!(started[0].1["rollbackOf"], restored);
    let audit = w.store.audit(ENV, 10, None).await.unwrap().items;
    assert_eq!(audit[0].action, AuditAction::RollbackDeployment);
    assert_eq!(audit[0].deployment_id.as_deref(), Some(id.as_str()));

    // A second rollback while it runs: the environment is busy.
    let before = state(&w).await;
    let again = call(&w.api, rollback(V2, "")).await;
    assert_eq!(again.status, 409);
    assert_eq!(again.json_body()["runningDeploymentId"], json!(id));
    assert_eq!(state(&w).await, before);
}

const V1: &str = "01JD0000000000000000000010";
const FAILED: &str = "01JD0000000000000000000025";

/// `ENV` keeping 2 deployments: v1, v2, a Failed one, v3, and v4 that
/// restored version 3 again (version 3 is in service).
async fn refusal_world() -> World {
    let w = world().await;
    let mut env = environment();
    env.defaults.kept_deployments = 2;
    w.store.put_environment(&env, None).await.unwrap();
    succeeded(&w.store, V1, 1).await;
    succeeded(&w.store, V2, 2).await;
    let failed = Deployment::new_running(
        FAILED.into(),
        ENV.into(),
        ME.into(),
        Default::default(),
        NOW.parse().unwrap(),
    );
    w.store.create_deployment(&failed, None).await.unwrap();
    let outcome = crate::store::Outcome {
        status: DeploymentStatus::Failed,
        ended_at: NOW.parse().unwrap(),
        duration_ms: 1,
        generated_version: None,
        error: None,
    };
    w.store.finish(ENV, FAILED, &outcome).await.unwrap();
    succeeded(&w.store, V3, 3).await;
    succeeded(&w.store, V4, 3).await;
    w
}

#[tokio::test]
async fn a_rollback_is_refused_and_changes_nothing_unless_its_target_is_kept_and_not_in_service() {
    let cases = [
        (FAILED, 409, "is Failed: only a Succeeded deployment's model"),
        (V4, 409, "version 3 (image ami-3) is already in service (deployment 01JD0000000000000000000040)"),
        (V3, 409, "already in service"),
        (V1, 409, "older than the environment's 2 newest Succeeded deployments, whose models alone are kept: version 1 and image ami-1"),
        ("01JD00000000000000000000ZZ", 404, "not found in environment 'prod-web'"),
        ("not-a-ulid", 400, "is not a ULID"),
    ];
    for (id, status, says) in cases {
        let w = refusal_world().await;
        let before = state(&w).await;
        let r = call(&w.api, rollback(id, "")).await;
        let detail = r.json_body()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert_eq!(r.status, status, "{id}: {detail}");
        assert!(detail.contains(says), "{id}: {detail}");
        assert_eq!(state(&w).await, before, "{id} changed something");
    }
    // Options are checked as for a start.
    let w = refusal_world().await;
    let before = state(&w).await;
    let r = call(
        &w.api,
        rollback(V2, r#"{"notificationEmails":["not an address"]}"#),
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(state(&w).await, before);
    // The environment moved to another launch template since.
    let mut env = environment();
    env.launch_template_id = "lt-0other".into();
    w.store.put_environment(&env, None).await.unwrap();
    let before = state(&w).await;
    let r = call(&w.api, rollback(V2, "")).await;
    assert_eq!(r.status, 409);
    assert!(r.json_body()["detail"].as_str().unwrap().contains(&format!(
        "put version 2 of launch template {LT} in service; the environment now uses lt-0other"
    )));
    assert_eq!(state(&w).await, before);
}

#[tokio::test]
async fn the_history_and_details_mark_the_model_in_service_and_the_rollback_targets() {
    let w = refusal_world().await;
    let r = call(
        &w.api,
        req("GET", &format!("/environments/{ENV}/deployments"), ""),
    )
    .await;
    assert_eq!(r.status, 200);
    let rows: Vec<(String, bool, bool)> = r.json_body()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["deploymentId"].as_str().unwrap().to_string(),
                d["inService"].as_bool().unwrap_or(false),
                d["canRollBack"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let row = |id: &str, in_service: bool, can: bool| (id.to_string(), in_service, can);
    assert_eq!(
        rows,
        vec![
            row(V4, true, false),
            row(V3, false, false),
            row(FAILED, false, false),
            row(V2, false, false),
            row(V1, false, false),
        ],
        "2 kept: v4 (in service) and v3 (the same version)"
    );
    let mut env = environment();
    env.defaults.kept_deployments = 3;
    w.store.put_environment(&env, None).await.unwrap();
    let r = call(
        &w.api,
        req("GET", &format!("/environments/{ENV}/deployments/{V2}"), ""),
    )
    .await;
    assert_eq!(r.json_body()["canRollBack"], true);
    assert_eq!(r.json_body().get("inService"), None);
    let r = call(
        &w.api,
        req("GET", &format!("/environments/{ENV}/deployments/{V4}"), ""),
    )
    .await;
    assert_eq!(r.json_body()["inService"], true);
}

#[tokio::test]
async fn only_a_deployer_rolls_back() {
    let w = refusal_world().await;
    let mut env = environment();
    env.access = Some(AccessMap {
        viewers: vec!["support".into()],
        deployers: vec!["web-team".into()],
        administrators: vec![],
    });
    w.store.put_environment(&env, None).await.unwrap();
    let mut r = rollback(V3, "");
    r.caller = Caller::Groups(vec!["support".into()]);
    let before = state(&w).await;
    let res = call(&w.api, r).await;
    assert_eq!(res.status, 403);
    assert_eq!(res.json_body()["requiredRole"], "deployer");
    assert_eq!(state(&w).await, before);
}
