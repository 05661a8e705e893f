//! Routing and the checks every route shares: the route table against the
//! spec, identity, ids, body size, query parameters, and each function
//! serving only its own routes.

use super::*;

#[test]
fn router_and_spec_have_the_same_routes() {
    let spec = spec::Spec::load().routes();
    let router: std::collections::BTreeSet<(String, String)> = Route::ALL
        .iter()
        .map(|r| (r.method().to_string(), r.template().to_string()))
        .collect();
    assert_eq!(router, spec);
}

#[test]
fn the_routes_that_take_a_body_are_the_specs() {
    let router: std::collections::BTreeSet<(String, String)> = Route::ALL
        .iter()
        .filter(|r| r.takes_body())
        .map(|r| (r.method().to_string(), r.template().to_string()))
        .collect();
    assert_eq!(router, spec::Spec::load().routes_with_body());
}

/// A body that is not JSON is refused with 415 before anything is read or
/// written; JSON with parameters (charset) is JSON.
#[tokio::test]
async fn a_body_that_is_not_json_is_415_and_changes_nothing() {
    let w = world().await;
    let path = "/environments/prod-web/deployments";
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let mut r = req("POST", path, "{}");
        r.content_type = content_type.map(str::to_string);
        let res = call(&w.api, r).await;
        assert_eq!(res.status, 415, "{content_type:?}");
        let detail = res.json_body()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(detail.contains("application/json"), "{detail}");
    }
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);

    let mut r = req("POST", path, "{}");
    r.content_type = Some("Application/JSON; charset=utf-8".into());
    assert_eq!(call(&w.api, r).await.status, 202);
    // A route without a body ignores one (as before).
    let mut r = req("GET", "/environments/prod-web", "x");
    r.content_type = Some("text/plain".into());
    assert_eq!(call(&w.api, r).await.status, 200);
}

#[test]
fn the_schema_check_can_fail() {
    let spec = spec::Spec::load();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400, "detail": "d"}),
            "$"
        )
        .is_ok());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": "400", "detail": "d"}),
            "$"
        )
        .is_err());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400}),
            "$"
        )
        .is_err());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400, "detail": "d", "x": 1}),
            "$"
        )
        .is_err());
}

/// RFC 9110: a 405 "MUST generate an Allow header field containing a list
/// of the target resource's currently supported methods".
#[tokio::test]
async fn a_method_not_allowed_names_the_allowed_ones() {
    let w = world().await;
    for (method, path, allow) in [
        ("DELETE", "/environments/prod-web", "GET, PUT"),
        ("PUT", "/environments", "GET"),
        ("PATCH", "/environments/prod-web/deployments", "POST, GET"),
        (
            "PUT",
            "/environments/prod-web/schedules/01JABCDEFGHJKMNPQRSTVWXYZ9",
            "PATCH, DELETE",
        ),
    ] {
        let res = call(&w.api, req(method, path, "")).await;
        assert_eq!(res.status, 405, "{method} {path}");
        assert_eq!(res.header("allow"), Some(allow), "{method} {path}");
        let detail = res.json_body()["detail"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            detail.contains(&format!("{method} is not allowed")),
            "{detail}"
        );
    }
    // 404 (no such resource) carries no Allow.
    let res = call(&w.api, req("GET", "/nothing/here", "")).await;
    assert_eq!((res.status, res.header("allow")), (404, None));
    assert!(w.recorder.started.lock().unwrap().is_empty());
}

#[tokio::test]
async fn no_identity_is_401_and_nothing_happens() {
    let w = world().await;
    let mut r = req("POST", "/environments/prod-web/deployments", "{}");
    r.identity = None;
    assert_eq!(call(&w.api, r).await.status, 401);
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
}

#[tokio::test]
async fn bad_inputs_get_the_right_4xx_and_change_nothing() {
    let w = world().await;
    let long_email = format!("{}@example.com", "a".repeat(65));
    let many: Vec<String> = (0..21).map(|i| format!("u{i}@example.com")).collect();
    let cases: Vec<(ApiRequest, u16)> = vec![
        (req("POST", "/environments/Prod/deployments", "{}"), 400),
        (req("POST", "/environments/prod_web/deployments", "{}"), 400),
        (
            req(
                "POST",
                &format!("/environments/{}/deployments", "a".repeat(65)),
                "{}",
            ),
            400,
        ),
        (req("POST", "/environments/prod-web/deployments", "{"), 400),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"owner":"mallory"}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"lockInstances":"yes"}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"notificationEmails":["x"]}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"notificationEmails":["a@example.com\r\nBcc: b@example.com"]}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &json!({"notificationEmails": [long_email]}).to_string(),
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &json!({"notificationEmails": many}).to_string(),
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &format!(r#"{{"x":"{}"}}"#, "a".repeat(17_000)),
            ),
            413,
        ),
        (req("POST", "/environments/nowhere/deployments", "{}"), 404),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "0")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "101")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "ten")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "+5")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("nextToken", "forged")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("status", "Exploded")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("sort", "asc")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "5"), ("limit", "6")],
            ),
            400,
        ),
        (
            req("GET", "/environments/prod-web/deployments/not-a-ulid", ""),
            400,
        ),
        (
            req(
                "GET",
                "/environments/prod-web/deployments/01JABCDEFGHJKMNPQRSTVWXYZ9",
                "",
            ),
            404,
        ),
        (req("GET", "/environments/nowhere", ""), 404),
        (req("DELETE", "/environments/prod-web", ""), 405),
        (req("GET", "/nothing/here", ""), 404),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"server-1","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345"}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":[],"launchTemplateId":"lt-0abc12345"}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345","defaults":{"retention":1}}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345","extra":1}"#,
            ),
            400,
        ),
    ];
    assert!(cases.len() >= 25);
    for (r, status) in cases {
        let what = format!("{} {} {:?}", r.method, r.path, r.query);
        let res = call(&w.api, r).await;
        assert_eq!(
            res.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        let p = res.json_body();
        assert_eq!(p["status"], status, "{what}");
        assert!(
            p["title"].is_string() && p["detail"].is_string() && p["type"].is_string(),
            "{what}"
        );
    }
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    assert!(w.store.environment("new-env").await.unwrap().is_none());
    assert!(w
        .store
        .history(ENV, 10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn each_function_serves_its_own_routes_and_refuses_the_others_unchanged() {
    let w = world().await;
    let schedule = || {
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-27T15:30", Some("Europe/Paris")),
        )
    };
    let history = || req("GET", "/environments/prod-web/deployments", "");
    // The api function: a scheduling route reached it by a wrong integration.
    let r = handler::api(&w.api, schedule()).await;
    assert_eq!(r.status, 500);
    let detail = r.json_body()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("POST /environments/{env}/schedules is served by the schedules function, and reached the api function"),
        "{detail}"
    );
    assert_eq!(w.sched.create.num_calls(), 0);
    assert_eq!(w.mail.num_calls(), 0);
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    assert_eq!(handler::api(&w.api, history()).await.status, 200);
    let page = handler::api(&w.api, req("GET", "/", "")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // The schedules function: the other routes and the page are not its own.
    let r = handler::schedules(&w.api, history()).await;
    assert_eq!(r.status, 500);
    assert!(r.json_body()["detail"]
        .as_str()
        .unwrap()
        .contains("served by the api function, and reached the schedules function"));
    let r = handler::schedules(
        &w.api,
        req("POST", "/environments/prod-web/deployments", "{}"),
    )
    .await;
    assert_eq!(r.status, 500);
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    assert_eq!(
        handler::schedules(&w.api, req("GET", "/", "")).await.status,
        404
    );
    let r = handler::schedules(&w.api, schedule()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(w.sched.create.num_calls(), 1);
    // Shared checks come first in both: no identity is 401 before any routing.
    let mut anonymous = history();
    anonymous.identity = None;
    assert_eq!(handler::schedules(&w.api, anonymous).await.status, 401);
    // Every route reaching the other function is refused there, before any work.
    for route in Route::ALL {
        let (method, template, function) = (route.method(), route.template(), route.function());
        let path = template
            .replace("{env}", "prod-web")
            .replace("{id}", "01JDEPLOYMENT0000000000000");
        let r = match function {
            Function::Api => handler::schedules(&w.api, req(method, &path, "{}")).await,
            Function::Schedules => handler::api(&w.api, req(method, &path, "{}")).await,
        };
        assert_eq!(r.status, 500, "{method} {path}");
        assert!(
            r.json_body()["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("served by the {} function", function.binary())),
            "{method} {path}"
        );
    }
    assert_eq!(w.sched.create.num_calls(), 1);
    assert!(w.recorder.started.lock().unwrap().is_empty());
}
