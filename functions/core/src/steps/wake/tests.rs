use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{input, Fixture, DEP, ENV, GROUP, SERVER};
use crate::store::Store;
use serde_json::json;

fn instance_stopped(id: &str) -> Value {
    json!({
        "version": "0", "id": "7bf73129-1428-4cd3-a780-95db273d1602",
        "detail-type": "EC2 Instance State-change Notification", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-12-01T09:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1:123456789012:instance/{id}")],
        "detail": {"instance-id": id, "state": "stopped"}
    })
}

fn image_available(id: &str) -> Value {
    json!({
        "version": "0", "id": "1b8f3a2e-0000-4000-8000-000000000001",
        "detail-type": "EC2 AMI State Change", "source": "aws.ec2",
        "account": "123456789012", "time": "2026-12-01T09:00:00Z", "region": "us-east-1",
        "resources": [format!("arn:aws:ec2:us-east-1::image/{id}")],
        "detail": {"ImageId": id, "State": "available"}
    })
}

fn refresh_succeeded(group: &str) -> Value {
    json!({
        "version": "0", "id": "12345678-1234-1234-1234-123456789012",
        "detail-type": "EC2 Auto Scaling Instance Refresh Succeeded", "source": "aws.autoscaling",
        "account": "123456789012", "time": "2026-12-01T09:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:autoscaling:us-east-1:123456789012:autoScalingGroup:x:autoScalingGroupName/web-asg"],
        "detail": {"InstanceRefreshId": "c613620e-07e2-4ed2-a9e2-ef8258911ade", "AutoScalingGroupName": group}
    })
}

#[test]
fn each_event_names_the_key_of_its_resource() {
    assert_eq!(
        key_of_event(&instance_stopped("i-1")),
        Some(instance("i-1"))
    );
    assert_eq!(
        key_of_event(&image_available("ami-1")),
        Some(image("ami-1"))
    );
    assert_eq!(key_of_event(&refresh_succeeded("web")), Some(group("web")));
    let mut other = image_available("ami-1");
    other["source"] = json!("aws.states");
    assert_eq!(key_of_event(&other), None);
    let mut no_id = instance_stopped("");
    assert_eq!(key_of_event(&no_id), None);
    no_id["detail-type"] = json!("EC2 Spot Instance Interruption Warning");
    assert_eq!(key_of_event(&no_id), None);
}

fn waiting_payload(token: &str, on: &[String]) -> Value {
    json!({"state": input(), "taskToken": token, "wakeOn": on})
}

#[tokio::test]
async fn a_waiting_step_registers_before_it_checks_and_leaves_its_token_open() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let key = instance(SERVER);
    let store = f.store.clone();
    let out = wait(
        StepName::StopPreparationServer,
        &deps,
        waiting_payload("T1", std::slice::from_ref(&key)),
        true,
        |state| async move {
            // The check sees the registration already saved, and the bare state.
            let w = store.waiting_on(&instance(SERVER)).await.unwrap().unwrap();
            assert_eq!(
                (w.wait.token.as_str(), w.deployment_id.as_str()),
                ("T1", DEP)
            );
            assert_eq!(state["deploymentId"], DEP);
            assert!(state.get("taskToken").is_none());
            Ok(json!({"done": false, "wakeOn": [instance(SERVER)]}))
        },
    )
    .await
    .unwrap();
    assert_eq!(out, json!({"waitingOn": [key]}));
    assert!(
        f.tokens.sent().is_empty(),
        "still waiting: the token stays open"
    );
    let rec = f.deployment().await;
    assert_eq!(rec.runtime.wait.map(|w| w.token), Some("T1".into()));
}

#[tokio::test]
async fn a_waiting_step_that_finds_the_wait_over_or_failed_completes_its_token() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let done = json!({"done": true, "wakeOn": []});
    let d = done.clone();
    wait(
        StepName::CreateImage,
        &deps,
        waiting_payload("T1", &[]),
        true,
        |_| async move { Ok(d) },
    )
    .await
    .unwrap();
    wait(
        StepName::CreateImage,
        &deps,
        waiting_payload("T2", &[]),
        true,
        |_| async { Err(StepError::ImageFailed("image ami-1 is failed: disk".into())) },
    )
    .await
    .unwrap();
    assert_eq!(
        f.tokens.sent(),
        vec![
            ("T1".into(), Ok(done)),
            ("T2".into(), Err("ImageFailed".into()))
        ]
    );
}

#[tokio::test]
async fn finalization_keeps_the_execution_arn_and_bad_payloads_change_nothing() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let mut payload = waiting_payload("T1", &[group(GROUP)]);
    payload["executionArn"] = json!("arn:aws:states:us-east-1:1:execution:sm:x");
    wait(
        StepName::Finalization,
        &deps,
        payload,
        false,
        |p| async move {
            assert_eq!(
                p["executionArn"],
                "arn:aws:states:us-east-1:1:execution:sm:x"
            );
            assert!(p.get("taskToken").is_none() && p.get("wakeOn").is_none());
            Ok(json!({"done": false}))
        },
    )
    .await
    .unwrap();
    for bad in [
        json!({"state": input(), "taskToken": ""}),
        json!({"state": {"deploymentId": "x", "environmentId": ENV}, "taskToken": "T"}),
        json!({"state": input(), "taskToken": "T", "wakeOn": "image:ami-1"}),
    ] {
        let err = wait(StepName::CreateImage, &deps, bad, true, |_| async {
            panic!("a bad payload is never checked")
        })
        .await
        .unwrap_err();
        assert_eq!(err.name(), "BadInput");
    }
    assert!(f.store.waiting_on(&image("ami-1")).await.unwrap().is_none());
}

#[tokio::test]
async fn an_event_wakes_the_wait_on_its_resource_once_and_no_other() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let on = vec![image("ami-1")];
    wait(
        StepName::CreateImage,
        &deps,
        waiting_payload("T1", &on),
        true,
        |_| async { Ok(json!({"done": false})) },
    )
    .await
    .unwrap();
    // Another deployment's image: nothing registered under it.
    let other = resume(&deps, image_available("ami-2")).await.unwrap();
    assert_eq!(other["woke"], Value::Null);
    assert!(f.tokens.sent().is_empty());

    let woke = resume(&deps, image_available("ami-1")).await.unwrap();
    assert_eq!(
        (woke["woke"].clone(), woke["deploymentId"].clone()),
        (json!(true), json!(DEP))
    );
    assert_eq!(
        f.tokens.sent(),
        vec![(
            "T1".into(),
            Ok(json!({"done": false, "wakeOn": on, "wokenBy": "image:ami-1"}))
        )]
    );
    // Delivered twice: the registration is gone, nothing is sent again.
    let again = resume(&deps, image_available("ami-1")).await.unwrap();
    assert_eq!(again["woke"], Value::Null);
    assert_eq!(f.tokens.sent().len(), 1);
}

#[tokio::test]
async fn a_closed_token_is_cleared_and_a_newer_wait_under_the_key_stays() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let on = vec![group(GROUP)];
    for token in ["T1", "T2"] {
        wait(
            StepName::ReplaceInstances,
            &deps,
            waiting_payload(token, &on),
            true,
            |_| async { Ok(json!({"done": false})) },
        )
        .await
        .unwrap();
    }
    // T1 was replaced by T2 under the key; clearing T1 leaves T2.
    f.store.clear_wait(&on[0], "T1").await.unwrap();
    assert_eq!(
        f.store
            .waiting_on(&on[0])
            .await
            .unwrap()
            .map(|w| w.wait.token),
        Some("T2".into())
    );
    f.tokens.closed.lock().unwrap().push("T2".into());
    let out = resume(&deps, refresh_succeeded(GROUP)).await.unwrap();
    assert_eq!(out["woke"], json!(false));
    assert!(f.store.waiting_on(&on[0]).await.unwrap().is_none());
    assert!(f.tokens.sent().is_empty());
}

#[tokio::test]
async fn an_event_no_wait_is_woken_by_is_refused() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let deps = f.deps(&[], &[], &[]);
    let err = resume(&deps, json!({"source": "aws.states", "detail-type": "x"}))
        .await
        .unwrap_err();
    assert_eq!(err.name(), "BadInput");
}
