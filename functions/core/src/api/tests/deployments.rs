//! The deployment routes: start, history pages, details, cancel.

use super::*;

/// A Running deployment of `ME` in the store.
async fn running(w: &World) -> Deployment {
    let d = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        ME.into(),
        Default::default(),
        chrono::Utc::now(),
    );
    w.store.create_deployment(&d, None).await.unwrap();
    d
}

#[tokio::test]
async fn start_takes_the_lock_records_the_owner_and_starts_the_execution() {
    let w = world().await;
    let r = w
        .api
        .handle(req(
            "POST",
            "/environments/prod-web/deployments",
            r#"{"lockInstances":true,"notificationEmails":["dev@example.com"]}"#,
        ))
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json_body();
    let id = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/environments/prod-web/deployments/{id}").as_str())
    );
    assert_eq!(body["owner"], ME);
    assert_eq!(body["status"], "Running");
    assert!(body["executionArn"].as_str().unwrap().ends_with(&id));
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), Some(id.clone()));
    let started = w.recorder.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, id);
    assert_eq!(started[0].1["owner"], ME);
    assert_eq!(started[0].1["options"]["lockInstances"], true);
    assert_eq!(
        started[0].1["options"]["notificationEmails"],
        json!(["dev@example.com"])
    );
}

#[tokio::test]
async fn a_busy_environment_answers_409_with_the_running_deployment() {
    let w = world().await;
    w.store
        .acquire_lock(ENV, "01JOTHER000000000000000000", chrono::Utc::now())
        .await
        .unwrap();
    let r = call(
        &w.api,
        req("POST", "/environments/prod-web/deployments", "{}"),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.json_body()["runningDeploymentId"],
        "01JOTHER000000000000000000"
    );
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert!(w
        .store
        .history(ENV, 10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn a_failed_start_frees_the_environment_and_says_why() {
    let w = world_with(true, true);
    w.store.put_environment(&environment(), None).await.unwrap();
    let r = call(
        &w.api,
        req("POST", "/environments/prod-web/deployments", ""),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    let page = w.store.history(ENV, 10, None, None).await.unwrap();
    assert_eq!(page.items[0].status, DeploymentStatus::Failed);
    assert_eq!(page.items[0].error.as_ref().unwrap().name, "StartFailed");
    // Counted as Failed, without a duration: it never ran.
    assert_eq!(metric_lines(&w), [("Failed".to_string(), false)]);
}

#[tokio::test]
async fn history_pages_newest_first_without_gap_or_duplicate() {
    let w = world().await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let d = running(&w).await;
        ids.push(d.deployment_id.clone());
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("limit", "3")];
        if let Some(t) = &token {
            q.push(("nextToken", t));
        }
        let r = call(
            &w.api,
            with_query(req("GET", "/environments/prod-web/deployments", ""), &q),
        )
        .await;
        assert_eq!(r.status, 200);
        let b = r.json_body();
        for item in b["items"].as_array().unwrap() {
            assert!(
                item["steps"][0].get("actions").is_none(),
                "history items carry no actions"
            );
            seen.push(item["deploymentId"].as_str().unwrap().to_string());
        }
        match b["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn details_show_actions_owner_and_console_link() {
    let w = world().await;
    let mut d = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        ME.into(),
        Default::default(),
        chrono::Utc::now(),
    );
    d.execution_arn = Some("arn:aws:states:us-east-1:1:execution:sm:x".into());
    d.steps[0].actions.push(crate::domain::Action {
        at: chrono::Utc::now(),
        message: "Environment locked".into(),
    });
    d.runtime.main_version = Some(7);
    w.store.create_deployment(&d, None).await.unwrap();
    let r = call(
        &w.api,
        req(
            "GET",
            &format!("/environments/prod-web/deployments/{}", d.deployment_id),
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let b = r.json_body();
    assert_eq!(b["owner"], ME);
    assert_eq!(b["modelVersion"], 7);
    assert_eq!(b["steps"][0]["name"], "Initial validation");
    assert_eq!(b["steps"][0]["actions"][0]["message"], "Environment locked");
    assert!(b["consoleUrl"]
        .as_str()
        .unwrap()
        .contains("states/home?region=us-east-1"));
    assert!(b.get("runtime").is_none(), "internal memory stays internal");
}

#[tokio::test]
async fn cancel_wakes_a_deployment_in_a_waiting_state() {
    let w = world().await;
    let d = running(&w).await;
    let wait = crate::domain::Wait {
        step: crate::domain::StepName::CreateImage,
        token: "token-1".into(),
        on: vec!["image:ami-1".into()],
        at: chrono::Utc::now(),
    };
    w.store
        .save_wait(ENV, &d.deployment_id, &wait)
        .await
        .unwrap();
    let path = format!(
        "/environments/prod-web/deployments/{}/cancel",
        d.deployment_id
    );
    let r = call(&w.api, req("POST", &path, "")).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // Completed as a wake-up: the step runs now and stops with Cancelled.
    assert_eq!(
        w.tokens.sent(),
        vec![(
            "token-1".to_string(),
            Ok(serde_json::json!({"done": false, "wakeOn": ["image:ami-1"], "wokenBy": "cancel"}))
        )]
    );
    // The token is the deployment's secret: never in the API's view.
    assert!(!String::from_utf8_lossy(&r.body).contains("token-1"));
}

#[tokio::test]
async fn cancel_flags_a_running_deployment_and_refuses_an_ended_one() {
    let w = world().await;
    let d = running(&w).await;
    let path = format!(
        "/environments/prod-web/deployments/{}/cancel",
        d.deployment_id
    );
    let r = call(&w.api, req("POST", &path, "")).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["cancelledBy"], ME);
    let stored = w
        .store
        .deployment(ENV, &d.deployment_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.cancel_requested);

    let outcome = crate::store::Outcome {
        status: DeploymentStatus::Succeeded,
        ended_at: chrono::Utc::now(),
        duration_ms: 1,
        generated_version: None,
        error: None,
    };
    let done = running(&w).await;
    w.store
        .finish(ENV, &done.deployment_id, &outcome)
        .await
        .unwrap();
    let r = call(
        &w.api,
        req(
            "POST",
            &format!(
                "/environments/prod-web/deployments/{}/cancel",
                done.deployment_id
            ),
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 409);
    assert!(
        !w.store
            .deployment(ENV, &done.deployment_id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/deployments/01JABCDEFGHJKMNPQRSTVWXYZ9/cancel",
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 404);
}
