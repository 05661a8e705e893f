//! The environment routes: register (resources checked), read, list.

use super::*;

#[tokio::test]
async fn put_environment_checks_resources_then_registers_and_lists() {
    let w = world().await;
    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body("lt-0fff00000")),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["detail"],
        format!("Auto Scaling group {GROUP} uses launch template {API_LT}, not lt-0fff00000")
    );
    assert!(w.store.environment("new-env").await.unwrap().is_none());

    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["defaults"]["retention"], 5);
    let again = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        w.store
            .environment("new-env")
            .await
            .unwrap()
            .unwrap()
            .launch_template_id,
        API_LT
    );
}

#[tokio::test]
async fn put_environment_names_a_missing_server() {
    let w = world_with(false, false);
    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json_body()["detail"],
        format!("preparation server {SERVER_ID} not found")
    );
}

#[tokio::test]
async fn environments_are_listed_and_read() {
    let w = world().await;
    let other = Environment {
        environment_id: "other".into(),
        defaults: EnvironmentDefaults::default(),
        ..environment()
    };
    w.store.put_environment(&other).await.unwrap();
    let r = call(&w.api, req("GET", "/environments", "")).await;
    assert_eq!(r.status, 200);
    let ids: Vec<_> = r.json_body()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environmentId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("other"), json!("prod-web")]);
    let r = call(&w.api, req("GET", "/environments/prod-web", "")).await;
    assert_eq!(r.json_body()["launchTemplateId"], LT);
}
