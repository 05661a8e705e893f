//! Roles: every route for every kind of caller — the environment's viewer,
//! deployer and administrator, a stack administrator, a caller of another
//! group and one with no group — answers 2xx, 403 or 404 as its role
//! allows, and a refusal changes nothing.

use super::*;
use crate::domain::{AccessMap, Caller, Role};

const VIEWERS: &str = "support";
const DEPLOYERS: &str = "web-team";
const ENV_ADMINS: &str = "web-leads";

/// An environment only the stack's administrators see (no access map).
const HIDDEN: &str = "secret";

fn access() -> AccessMap {
    AccessMap {
        viewers: vec![VIEWERS.into()],
        deployers: vec![DEPLOYERS.into()],
        administrators: vec![ENV_ADMINS.into()],
    }
}

fn as_caller(mut r: ApiRequest, caller: &Caller) -> ApiRequest {
    r.caller = caller.clone();
    r
}

/// The callers of the table, with their role on `prod-web`.
fn callers() -> Vec<(&'static str, Caller, Option<Role>)> {
    let groups = |g: &[&str]| Caller::Groups(g.iter().map(|s| s.to_string()).collect());
    vec![
        ("viewer", groups(&[VIEWERS]), Some(Role::Viewer)),
        (
            "deployer",
            groups(&[DEPLOYERS, "other"]),
            Some(Role::Deployer),
        ),
        (
            "administrator",
            groups(&[ENV_ADMINS]),
            Some(Role::Administrator),
        ),
        (
            "stack administrator",
            groups(&[ADMINS]),
            Some(Role::Administrator),
        ),
        ("another group", groups(&["sales"]), None),
        ("no group", groups(&[]), None),
    ]
}

/// A world with `prod-web` (the access map above), `secret` (none), a
/// pending schedule and, unless the route starts one, a running deployment
/// (for a rollback, two Succeeded ones instead).
async fn seeded(route: Route) -> (World, String, String) {
    let w = world().await;
    let mut env = environment();
    env.access = Some(access());
    w.store.put_environment(&env, None).await.unwrap();
    let mut hidden = environment();
    hidden.environment_id = HIDDEN.into();
    w.store.put_environment(&hidden, None).await.unwrap();
    let s = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(s.status, 201, "{}", String::from_utf8_lossy(&s.body));
    let schedule = s.json_body()["deploymentId"].as_str().unwrap().to_string();
    let deployment = if route == Route::StartDeployment {
        "01JD0000000000000000000000".to_string()
    } else if route == Route::RollbackDeployment {
        // Two Succeeded deployments: the older one's model can be restored.
        succeeded(&w.store, "01JD0000000000000000000010", 2).await;
        succeeded(&w.store, "01JD0000000000000000000020", 3).await;
        "01JD0000000000000000000010".to_string()
    } else {
        let d = call(
            &w.api,
            req("POST", "/environments/prod-web/deployments", "{}"),
        )
        .await;
        assert_eq!(d.status, 202);
        d.json_body()["deploymentId"].as_str().unwrap().to_string()
    };
    (w, deployment, schedule)
}

/// A request for `route` on `prod-web` that succeeds for a caller allowed it.
fn request(route: Route, deployment: &str, schedule: &str) -> ApiRequest {
    let path = route.template().replace("{env}", ENV).replace(
        "{id}",
        if route.template().contains("schedules") {
            schedule
        } else {
            deployment
        },
    );
    let body = match route {
        Route::PutEnvironment => env_body(API_LT),
        Route::StartDeployment | Route::RollbackDeployment => "{}".into(),
        Route::CreateSchedule => sched_body("2026-11-29T10:00:00", None),
        Route::MoveSchedule => r#"{"at":"2026-11-28T18:00:00"}"#.into(),
        _ => String::new(),
    };
    req(route.method(), &path, &body)
}

/// What a refusal must leave as it was.
async fn state(w: &World) -> Value {
    json!({
        "environments": w.store.list_environments().await.unwrap(),
        "history": w.store.history(ENV, 100, None, None).await.unwrap().items,
        "audit": w.store.audit(ENV, 100, None).await.unwrap().items,
        "schedules": format!("{:?}", w.store.schedules(ENV).await.unwrap()),
        "lock": w.store.lock_holder(ENV).await.unwrap(),
        "started": w.recorder.started.lock().unwrap().len(),
        "scheduler": [w.sched.create.num_calls(), w.sched.update.num_calls(), w.sched.delete.num_calls()],
    })
}

#[tokio::test]
async fn each_role_reaches_exactly_its_routes_and_a_refusal_changes_nothing() {
    let mut table = Vec::new();
    for route in Route::ALL {
        for (who, caller, role) in callers() {
            let (w, deployment, schedule) = seeded(route).await;
            let before = state(&w).await;
            let r = call(
                &w.api,
                as_caller(request(route, &deployment, &schedule), &caller),
            )
            .await;
            let expected = match role {
                Some(role) if route == Route::ListEnvironments || role >= route.role() => "2xx",
                Some(_) => "403",
                None if route == Route::ListEnvironments => "2xx",
                None if route == Route::PutEnvironment => "403",
                None => "404",
            };
            let got = match r.status {
                200..=299 => "2xx",
                403 => "403",
                404 => "404",
                other => panic!(
                    "{who} {route:?}: {other} {}",
                    String::from_utf8_lossy(&r.body)
                ),
            };
            table.push(format!("{route:?} {who}: {got}"));
            assert_eq!(
                got,
                expected,
                "{who} {route:?}: {}",
                String::from_utf8_lossy(&r.body)
            );
            if got != "2xx" {
                assert_eq!(state(&w).await, before, "{who} {route:?} changed something");
                let detail = r.json_body()["detail"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if got == "404" {
                    assert_eq!(detail, format!("environment '{ENV}' is not registered"));
                } else if let Some(role) = role {
                    assert!(
                        detail.contains(&format!(
                            "needs the {} role; you are a {role}",
                            route.role()
                        )),
                        "{detail}"
                    );
                    assert_eq!(r.json_body()["requiredRole"], json!(route.role()));
                }
            }
        }
    }
    assert_eq!(table.len(), Route::ALL.len() * callers().len());
}

#[tokio::test]
async fn the_list_shows_only_the_environments_a_caller_holds_a_role_on_with_that_role() {
    let (w, _, _) = seeded(Route::ListEnvironments).await;
    for (who, caller, role) in callers() {
        let r = call(&w.api, as_caller(req("GET", "/environments", ""), &caller)).await;
        assert_eq!(r.status, 200);
        let items = r.json_body()["items"].as_array().unwrap().clone();
        let seen: Vec<(String, String)> = items
            .iter()
            .map(|i| {
                (
                    i["environmentId"].as_str().unwrap().to_string(),
                    i["role"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let mut expected: Vec<(String, String)> = Vec::new();
        if who == "stack administrator" {
            expected.push((ENV.into(), "administrator".into()));
            expected.push((HIDDEN.into(), "administrator".into()));
        } else if let Some(role) = role {
            expected.push((ENV.into(), role.to_string()));
        }
        expected.sort();
        let mut seen = seen;
        seen.sort();
        assert_eq!(seen, expected, "{who}");
    }
    // An environment without an access map: its existence is not disclosed.
    let r = call(
        &w.api,
        as_caller(
            req("GET", &format!("/environments/{HIDDEN}"), ""),
            &Caller::Groups(vec![ENV_ADMINS.into()]),
        ),
    )
    .await;
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn only_a_stack_administrator_registers_a_new_environment() {
    let w = world_with(true, false);
    let path = format!("/environments/{ENV}");
    let body = env_body(API_LT);
    for caller in [
        Caller::Groups(vec![ENV_ADMINS.into()]),
        Caller::Groups(vec![]),
    ] {
        let r = call(&w.api, as_caller(req("PUT", &path, &body), &caller)).await;
        assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
        assert!(w.store.environment(ENV).await.unwrap().is_none());
    }
    let r = call(
        &w.api,
        as_caller(
            req("PUT", &path, &body),
            &Caller::Groups(vec![ADMINS.into()]),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn an_access_map_with_bad_group_names_is_refused() {
    let w = world_with(true, false);
    let path = format!("/environments/{ENV}");
    for bad in ["", "two words", "a,b", "tab\there", &"g".repeat(129)] {
        let mut body: Value = serde_json::from_str(&env_body(API_LT)).unwrap();
        body["access"] = json!({"deployers": [bad]});
        let r = call(&w.api, req("PUT", &path, &body.to_string())).await;
        assert_eq!(
            r.status,
            400,
            "{bad:?}: {}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(w.store.environment(ENV).await.unwrap().is_none());
    }
    let mut body: Value = serde_json::from_str(&env_body(API_LT)).unwrap();
    body["access"] = json!({"viewers": ["support"], "deployers": ["web-team"]});
    let r = call(&w.api, req("PUT", &path, &body.to_string())).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["access"]["deployers"], json!(["web-team"]));
    assert_eq!(r.json_body()["access"]["administrators"], json!([]));
}
