//! The environment routes: register (resources checked), read, list.

use super::*;

#[tokio::test]
async fn put_environment_checks_resources_then_registers_and_lists() {
    // The described resources are tagged autosky:environment=prod-web.
    let w = world_with(true, false);
    let path = format!("/environments/{ENV}");
    let r = call(&w.api, req("PUT", &path, &env_body("lt-0fff00000"))).await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["detail"],
        format!("Auto Scaling group {GROUP} uses launch template {API_LT}, not lt-0fff00000")
    );
    assert!(w.store.environment(ENV).await.unwrap().is_none());

    let r = call(&w.api, req("PUT", &path, &env_body(API_LT))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["defaults"]["retention"], 5);
    let again = call(&w.api, req("PUT", &path, &env_body(API_LT))).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        w.store
            .environment(ENV)
            .await
            .unwrap()
            .unwrap()
            .launch_template_id,
        API_LT
    );
}

/// Registers `env` in a world whose resources carry `tags`: the answer must
/// be a 422 problem whose detail is `detail`, and nothing is written.
async fn refused_registration(env: &str, tags: Tags, detail: &str) {
    let w = world_tagged(true, false, false, tags);
    let r = call(
        &w.api,
        req("PUT", &format!("/environments/{env}"), &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(r.json_body()["status"], 422);
    assert_eq!(r.json_body()["detail"], detail);
    assert!(w.store.environment(env).await.unwrap().is_none());
    assert!(w.store.list_environments().await.unwrap().is_empty());
}

#[tokio::test]
async fn put_environment_refuses_resources_tagged_for_another_environment() {
    // Every resource is tagged prod-web: they cannot become staging's.
    refused_registration(
        "staging",
        Tags::default(),
        &format!(
            "preparation server {SERVER_ID} is tagged autosky:environment={ENV}, not staging: \
             an environment may only use resources tagged with its own id"
        ),
    )
    .await;
}

#[tokio::test]
async fn put_environment_refuses_an_untagged_server() {
    refused_registration(
        ENV,
        Tags {
            server: None,
            ..Tags::default()
        },
        &format!(
            "preparation server {SERVER_ID} has no autosky:environment tag: tag it \
             autosky:environment={ENV} (the functions' IAM policies refuse untagged resources)"
        ),
    )
    .await;
}

#[tokio::test]
async fn put_environment_refuses_a_launch_template_of_another_environment() {
    refused_registration(
        ENV,
        Tags {
            template: Some("staging"),
            ..Tags::default()
        },
        &format!(
            "launch template {API_LT} (web) is tagged autosky:environment=staging, not {ENV}: an \
             environment may only use resources tagged with its own id"
        ),
    )
    .await;
}

#[tokio::test]
async fn put_environment_refuses_an_untagged_group() {
    refused_registration(
        ENV,
        Tags {
            group: None,
            ..Tags::default()
        },
        &format!(
            "Auto Scaling group {GROUP} has no autosky:environment tag: tag it \
             autosky:environment={ENV} (the functions' IAM policies refuse untagged resources)"
        ),
    )
    .await;
}

#[tokio::test]
async fn re_registering_with_a_group_of_another_environment_keeps_the_record() {
    let w = world_tagged(
        true,
        false,
        false,
        Tags {
            group: Some("staging"),
            ..Tags::default()
        },
    );
    w.store.put_environment(&environment(), None).await.unwrap();
    let r = call(
        &w.api,
        req("PUT", &format!("/environments/{ENV}"), &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["detail"],
        format!(
            "Auto Scaling group {GROUP} is tagged autosky:environment=staging, not {ENV}: an \
             environment may only use resources tagged with its own id"
        )
    );
    assert_eq!(
        w.store.environment(ENV).await.unwrap(),
        Some(environment()),
        "the registered record is unchanged"
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
        access: None,
        ..environment()
    };
    w.store.put_environment(&other, None).await.unwrap();
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

/// The spec documents the tag refusal with examples that fit the Problem
/// schema and read as the API words them.
#[test]
fn the_spec_documents_the_tag_refusal_with_examples() {
    let spec = spec::Spec::load();
    let (schema, examples) = spec.examples("PUT", "/environments/{env}", 422);
    assert_eq!(examples.len(), 2, "{examples:?}");
    for e in &examples {
        spec.check(&schema, e, "$").unwrap();
        assert_eq!(e["status"], 422);
        assert_eq!(e["title"], "Unprocessable environment");
        assert!(
            e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("autosky:environment")),
            "{e}"
        );
    }
    let details: Vec<&str> = examples
        .iter()
        .filter_map(|e| e["detail"].as_str())
        .collect();
    assert!(details.contains(
        &crate::domain::ownership_refusal(
            "Auto Scaling group web-asg",
            Some("staging"),
            "prod-web"
        )
        .unwrap()
        .as_str()
    ));
    assert!(details.contains(
        &crate::domain::ownership_refusal(
            "launch template lt-0abc12345def67890 (web)",
            None,
            "prod-web"
        )
        .unwrap()
        .as_str()
    ));
}

/// Checkpoints, pauses and alarms: saved and shown as the spec describes
/// them; a bad list is a 400 naming the field, and the record is unchanged.
#[tokio::test]
async fn put_environment_saves_rollout_settings_and_refuses_bad_ones() {
    let w = world_with(true, false);
    let path = format!("/environments/{ENV}");
    let body = |prefs: serde_json::Value| {
        json!({"preparationServerId": SERVER_ID, "autoScalingGroups": [GROUP],
               "launchTemplateId": API_LT, "defaults": {"refreshPreferences": prefs}})
        .to_string()
    };
    let good = json!({"checkpointPercentages": [10, 50], "checkpointDelaySeconds": 900,
                      "bakeTimeSeconds": 300, "alarms": ["web-5xx"]});
    let r = call(&w.api, req("PUT", &path, &body(good))).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let shown = &r.json_body()["defaults"]["refreshPreferences"];
    assert_eq!(shown["checkpointPercentages"], json!([10, 50]));
    assert_eq!(shown["checkpointDelaySeconds"], 900);
    assert_eq!(shown["bakeTimeSeconds"], 300);
    assert_eq!(shown["alarms"], json!(["web-5xx"]));
    let saved = w.store.environment(ENV).await.unwrap();

    let bad = json!({"checkpointPercentages": [50, 10]});
    let r = call(&w.api, req("PUT", &path, &body(bad))).await;
    assert_eq!(r.status, 400, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["field"],
        "defaults.refreshPreferences.checkpointPercentages"
    );
    assert_eq!(w.store.environment(ENV).await.unwrap(), saved);
}
