//! The scheduled-deployment routes: schedule, move, cancel, and a schedule
//! that cannot be created.

use super::*;

#[tokio::test]
async fn scheduling_records_a_scheduled_deployment_creates_the_schedule_and_confirms_by_mail() {
    let w = world().await;
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-27T15:30", Some("Europe/Paris")),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json_body();
    let id = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(body["status"], "Scheduled");
    assert_eq!(body["scheduledFor"], "2026-11-27T14:30:00Z");
    assert_eq!(body["schedule"]["timezone"], "Europe/Paris");
    assert_eq!(body["owner"], ME);
    assert_eq!(w.sched.create.num_calls(), 1);
    assert_eq!(w.mail.num_calls(), 1);
    // Nothing started, nothing locked; history shows it.
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    let h = call(&w.api, req("GET", "/environments/prod-web/deployments", "")).await;
    assert_eq!(h.json_body()["items"][0]["deploymentId"], id.as_str());
    assert_eq!(
        h.json_body()["items"][0]["scheduledFor"],
        "2026-11-27T14:30:00Z"
    );
    let d = w.store.deployment(ENV, &id).await.unwrap().unwrap();
    assert!(
        d.step(StepName::InitialValidation).actions[0]
            .message
            .starts_with("Schedule confirmation e-mail sent to"),
        "{:?}",
        d.step(StepName::InitialValidation).actions
    );
    assert_eq!(w.store.schedules(ENV).await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn every_bad_schedule_is_refused_and_creates_nothing() {
    let w = world().await;
    let ok = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(ok.status, 201);
    let first = ok.json_body()["deploymentId"].as_str().unwrap().to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (sched_body("2026-11-27T12:00:30", None), 400, "at"), // 30 s ahead < 60 s lead
        (sched_body("2026-11-27T11:00:00", None), 400, "at"), // past
        (sched_body("2027-11-28T12:00:00", None), 400, "at"), // > 1 year
        (
            sched_body("2026-11-29T10:00:00", Some("Mars/Base")),
            400,
            "timezone",
        ),
        (sched_body("2026-11-29T10:00:00+01:00", None), 400, "at"),
        (
            sched_body("2027-03-28T02:30:00", Some("Europe/Paris")),
            400,
            "at",
        ), // does not exist
        (json!({"timezone": "UTC"}).to_string(), 400, "at"),
        (
            json!({"at": "2026-11-29T10:00:00", "notificationEmails": ["x@y"]}).to_string(),
            400,
            "notificationEmails",
        ),
        (
            json!({"at": "2026-11-29T10:00:00", "when": "now"}).to_string(),
            400,
            "",
        ),
        (sched_body("2026-11-28T10:59:59", None), 409, "at"), // same hour as the first
        (
            sched_body("2026-11-28T11:30:00", Some("Europe/Paris")),
            409,
            "at",
        ), // 10:30 UTC
    ];
    for (body, status, field) in &cases {
        let r = call(
            &w.api,
            req("POST", "/environments/prod-web/schedules", body),
        )
        .await;
        assert_eq!(
            r.status,
            *status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if !field.is_empty() {
            assert_eq!(r.json_body()["field"], *field, "{body}");
        }
        if r.status == 409 {
            assert_eq!(r.json_body()["conflictingDeploymentId"], first.as_str());
        }
    }
    let unknown = call(
        &w.api,
        req(
            "POST",
            "/environments/nowhere/schedules",
            &sched_body("2026-11-29T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(w.sched.create.num_calls(), 1);
    assert_eq!(
        w.store
            .history(ENV, 100, None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // An hour later is fine.
    let later = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T11:00:00", None),
        ),
    )
    .await;
    assert_eq!(later.status, 201);
}

#[tokio::test]
async fn cancel_and_move_a_schedule_only_while_it_is_scheduled() {
    let w = world().await;
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", Some("Europe/Paris")),
        ),
    )
    .await;
    let id = r.json_body()["deploymentId"].as_str().unwrap().to_string();
    let path = format!("/environments/prod-web/schedules/{id}");

    // Move: the zone is kept unless given.
    let m = call(
        &w.api,
        req("PATCH", &path, r#"{"at":"2026-11-28T18:00:00"}"#),
    )
    .await;
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(m.json_body()["scheduledFor"], "2026-11-28T17:00:00Z");
    assert_eq!(w.sched.update.num_calls(), 1);
    let bad = call(
        &w.api,
        req("PATCH", &path, r#"{"at":"2026-11-27T11:00:00"}"#),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        w.store
            .deployment(ENV, &id)
            .await
            .unwrap()
            .unwrap()
            .scheduled_for,
        Some("2026-11-28T17:00:00Z".parse().unwrap())
    );

    let d = call(&w.api, req("DELETE", &path, "")).await;
    assert_eq!(d.status, 200, "{}", String::from_utf8_lossy(&d.body));
    assert_eq!(d.json_body()["status"], "Cancelled");
    assert_eq!(d.json_body()["cancelledBy"], ME);
    assert_eq!(w.sched.delete.num_calls(), 1);
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    // Confirmation + cancellation e-mails.
    assert_eq!(w.mail.num_calls(), 2);

    for (method, body) in [("DELETE", ""), ("PATCH", r#"{"at":"2026-11-29T10:00:00"}"#)] {
        let again = call(&w.api, req(method, &path, body)).await;
        assert_eq!(again.status, 409, "{method}");
    }
    // Counted once as Cancelled (the refused second cancel counts nothing).
    assert_eq!(metric_lines(&w), [("Cancelled".to_string(), false)]);
    assert_eq!(w.sched.delete.num_calls(), 1);
    assert_eq!(w.sched.update.num_calls(), 1);

    // The deployments cancel route cancels a scheduled deployment too.
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-29T10:00:00", None),
        ),
    )
    .await;
    let id2 = r.json_body()["deploymentId"].as_str().unwrap().to_string();
    let c = call(
        &w.api,
        req(
            "POST",
            &format!("/environments/prod-web/deployments/{id2}/cancel"),
            "",
        ),
    )
    .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.json_body()["status"], "Cancelled");
}

#[tokio::test]
async fn a_schedule_that_cannot_be_created_leaves_a_failed_record_not_a_scheduled_one() {
    let w = world_full(true, false, true);
    w.store.put_environment(&environment(), None).await.unwrap();
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(r.status, 502);
    let items = w.store.history(ENV, 10, None, None).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, DeploymentStatus::Failed);
    assert_eq!(items[0].error.as_ref().unwrap().name, "ScheduleFailed");
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    assert_eq!(w.mail.num_calls(), 0);
    // Counted as Failed, without a duration: it never ran.
    assert_eq!(metric_lines(&w), [("Failed".to_string(), false)]);
}
