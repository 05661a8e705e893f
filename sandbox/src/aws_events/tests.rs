//! The events' shapes, ResumeFunction's patterns from template.yaml against
//! the samples in events/, and the bus's delivery, drop switch and retries.

use super::*;
use tokio::sync::mpsc;

fn sample(name: &str) -> Value {
    let path = format!("{}/../events/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

fn resume() -> Rules {
    Rules::of(TARGET, &BTreeMap::new()).unwrap()
}

const GROUP_ARN: &str = "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:\
                         6c1a0d2e-4b8f-4e3a-9d7c-2f5e8b1a3c6d:autoScalingGroupName/web";

fn group_ref() -> RefreshRef<'static> {
    RefreshRef {
        id: "c613620e-07e2-4ed2-a9e2-ef8258911ade",
        group: "web",
        group_arn: GROUP_ARN,
    }
}

#[test]
fn the_resume_rules_match_each_sample() {
    let rules = resume();
    // A wake-up that fails is not retried (the template says so).
    assert_eq!(rules.retries, 0);
    assert_eq!(rules.patterns.len(), 3);
    for name in [
        "resume-instance-stopped.json",
        "resume-image-available.json",
        "resume-refresh-succeeded.json",
    ] {
        assert!(rules.matches(&sample(name)), "{name}");
    }
}

#[test]
fn the_resume_rules_skip_other_states_types_and_sources() {
    let rules = resume();
    let mut stopping = sample("resume-instance-stopped.json");
    stopping["detail"]["state"] = json!("stopping");
    assert!(!rules.matches(&stopping));
    let mut pending = sample("resume-image-available.json");
    pending["detail"]["State"] = json!("pending");
    assert!(!rules.matches(&pending));
    let mut started = sample("resume-refresh-succeeded.json");
    started["detail-type"] = json!("EC2 Auto Scaling Instance Refresh Started");
    assert!(!rules.matches(&started));
    let mut foreign = sample("resume-instance-stopped.json");
    foreign["source"] = json!("com.example.fake");
    assert!(!rules.matches(&foreign));
    // The safety net's event is another rule's.
    assert!(!rules.matches(&sample("finalize-execution-aborted.json")));

    // What the bridge emits: terminated and failed wake too, every refresh
    // end, checkpoint, bake and rollback start does; the rest does not.
    let region = "us-east-1";
    for (state, woken) in [
        ("pending", false),
        ("running", true),
        ("stopping", false),
        ("stopped", true),
        ("shutting-down", false),
        ("terminated", true),
    ] {
        let e = instance_state_change(region, "i-0a1b2c3d4e5f60718", state);
        assert_eq!(rules.matches(&e), woken, "{state}");
    }
    for (state, woken) in [
        ("available", true),
        ("failed", true),
        ("deregistered", false),
    ] {
        let e = ami_state_change(region, "ami-0c2f4e6a8b1d3f5a7", state, "r", "");
        assert_eq!(rules.matches(&e), woken, "{state}");
    }
    for (change, woken) in [
        (RefreshChange::Started, false),
        (RefreshChange::CheckpointReached(50, 3600), true),
        (RefreshChange::StartedBaking, true),
        (RefreshChange::Succeeded, true),
        (RefreshChange::Failed, true),
        (RefreshChange::Cancelled, true),
        (RefreshChange::RollbackStarted, true),
        (RefreshChange::RollbackSucceeded, true),
        (RefreshChange::RollbackFailed, true),
    ] {
        let e = refresh_event(region, change, &group_ref());
        assert_eq!(rules.matches(&e), woken, "{change:?}");
    }
}

/// The keys of an object, sorted.
fn keys(v: &Value) -> Vec<&str> {
    let mut k: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    k.sort();
    k
}

#[test]
fn envelopes_have_the_documented_shape() {
    let e = instance_state_change("us-east-1", "i-0a1b2c3d4e5f60718", "stopped");
    let sample = sample("resume-instance-stopped.json");
    assert_eq!(keys(&e), keys(&sample));
    assert_eq!(keys(&e["detail"]), keys(&sample["detail"]));
    assert_eq!(e["version"], "0");
    assert_eq!(e["account"], ACCOUNT);
    assert_eq!(
        e["resources"],
        json!(["arn:aws:ec2:us-east-1:000000000000:instance/i-0a1b2c3d4e5f60718"])
    );
    assert_eq!(
        e["detail"],
        json!({"instance-id": "i-0a1b2c3d4e5f60718", "state": "stopped"})
    );
    // Seconds, UTC: "2026-11-27T09:41:03Z".
    let time = e["time"].as_str().unwrap();
    assert_eq!(time.len(), 20, "{time}");
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok(), "{time}");
    // 8-4-4-4-12 hex digits, a new one each time.
    let id = e["id"].as_str().unwrap();
    let groups: Vec<usize> = id.split('-').map(str::len).collect();
    assert_eq!(groups, vec![8, 4, 4, 4, 12], "{id}");
    assert!(
        id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()),
        "{id}"
    );
    // Version 4, RFC 4122 variant.
    assert_eq!(&id[14..15], "4", "{id}");
    assert!("89ab".contains(&id[19..20]), "{id}");
    assert_ne!(
        id,
        instance_state_change("us-east-1", "i-1", "stopped")["id"]
    );

    let e = ami_state_change(
        "us-east-1",
        "ami-0c2f4e6a8b1d3f5a7",
        "failed",
        "9e1d7c3b",
        "Sandbox: failed",
    );
    let sample = self::sample("resume-image-available.json");
    assert_eq!(keys(&e), keys(&sample));
    assert_eq!(keys(&e["detail"]), keys(&sample["detail"]));
    assert_eq!(
        e["resources"],
        json!(["arn:aws:ec2:us-east-1::image/ami-0c2f4e6a8b1d3f5a7"])
    );
    assert_eq!(e["detail"]["ErrorMessage"], "Sandbox: failed");

    let e = refresh_event("us-east-1", RefreshChange::Succeeded, &group_ref());
    let sample = self::sample("resume-refresh-succeeded.json");
    assert_eq!(keys(&e), keys(&sample));
    assert_eq!(keys(&e["detail"]), keys(&sample["detail"]));
    assert_eq!(e["source"], "aws.autoscaling");
    assert_eq!(e["resources"], json!([GROUP_ARN]));
    let e = refresh_event(
        "us-east-1",
        RefreshChange::CheckpointReached(50, 300),
        &group_ref(),
    );
    assert_eq!(
        e["detail"],
        json!({
            "InstanceRefreshId": "c613620e-07e2-4ed2-a9e2-ef8258911ade",
            "AutoScalingGroupName": "web",
            "CheckpointPercentage": "50",
            "CheckpointDelay": "300",
        })
    );
    assert_eq!(
        RefreshChange::of_end("RollbackSuccessful"),
        Some(RefreshChange::RollbackSucceeded)
    );
    assert_eq!(RefreshChange::of_end("InProgress"), None);
}

/// A delivery that sends each event it gets on a channel and answers
/// `fail` (an error) or success.
fn recording(fail: bool) -> (Delivery, mpsc::UnboundedReceiver<Value>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let d: Delivery = Arc::new(move |event: Value| {
        let tx = tx.clone();
        Box::pin(async move {
            let _ = tx.send(event);
            if fail {
                Err("handler failed".to_string())
            } else {
                Ok(json!({"woken": true}))
            }
        })
    });
    (d, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Value>) -> Option<Value> {
    tokio::time::timeout(Duration::from_secs(3), rx.recv())
        .await
        .ok()
        .flatten()
}

#[tokio::test]
async fn the_bus_delivers_what_matches_and_records_everything() {
    let bus = EventBus::new(resume(), "us-east-1");
    let (d, mut rx) = recording(false);
    bus.set_delivery(d);

    let stopped = bus.instance_state("i-1", "stopped");
    assert!(stopped.matched && stopped.delivered && !stopped.dropped);
    assert_eq!(next(&mut rx).await, Some(stopped.event.clone()));

    let pending = bus.instance_state("i-1", "pending");
    assert!(!pending.matched && !pending.delivered && !pending.dropped);

    // Published as if AWS sent it: a duplicate is delivered again.
    let again = bus.publish(stopped.event.clone());
    assert!(again.delivered);
    assert_eq!(next(&mut rx).await, Some(stopped.event.clone()));

    // The drop switch: recorded, marked dropped, never delivered.
    bus.set_drop(true);
    let dropped = bus.ami_state("ami-1", "available", "r-1", "");
    assert!(dropped.matched && dropped.dropped && !dropped.delivered);
    bus.set_drop(false);
    let refreshed = bus.refresh(RefreshChange::Succeeded, &group_ref());
    assert!(refreshed.delivered);
    assert_eq!(
        next(&mut rx).await.unwrap()["detail-type"],
        refreshed.detail_type()
    );
    assert!(next(&mut rx).await.is_none(), "nothing else delivered");

    let log = bus.events();
    let types: Vec<(&str, bool, bool)> = log
        .iter()
        .map(|e| {
            (
                e.event["detail"]["state"]
                    .as_str()
                    .or(e.event["detail"]["State"].as_str())
                    .unwrap_or(e.detail_type()),
                e.delivered,
                e.dropped,
            )
        })
        .collect();
    assert_eq!(
        types,
        vec![
            ("stopped", true, false),
            ("pending", false, false),
            ("stopped", true, false),
            ("available", false, true),
            ("EC2 Auto Scaling Instance Refresh Succeeded", true, false),
        ]
    );
    // In publishing order, each with its instant (milliseconds).
    let times: Vec<_> = log.iter().map(|e| e.published_at().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]));
    assert!(log[0].published_at.ends_with('Z') && log[0].published_at.contains('.'));
    // The listing's JSON form.
    let listed: Vec<PublishedEvent> =
        serde_json::from_str(&serde_json::to_string(&log).unwrap()).unwrap();
    assert_eq!(listed, log);
    let json = serde_json::to_value(&log[0]).unwrap();
    assert_eq!(
        keys(&json),
        vec!["delivered", "dropped", "event", "matched", "publishedAt"]
    );
}

#[tokio::test]
async fn a_failed_delivery_is_tried_again_as_many_times_as_the_template_says() {
    // ResumeFunction: no retry.
    let bus = EventBus::new(resume(), "us-east-1");
    let (d, mut rx) = recording(true);
    bus.set_delivery(d);
    bus.instance_state("i-1", "stopped");
    assert!(next(&mut rx).await.is_some());
    assert!(next(&mut rx).await.is_none(), "no retry");
    assert_eq!(bus.events()[0].error.as_deref(), Some("handler failed"));

    // One retry.
    let bus = EventBus::new(
        Rules {
            retries: 1,
            ..resume()
        },
        "us-east-1",
    );
    let (d, mut rx) = recording(true);
    bus.set_delivery(d);
    bus.instance_state("i-1", "terminated");
    assert!(next(&mut rx).await.is_some());
    assert!(next(&mut rx).await.is_some(), "retried once");
    assert!(next(&mut rx).await.is_none(), "and no more");
}

#[test]
fn the_drop_variable_is_1_or_true() {
    for (v, on) in [
        (Some("1"), true),
        (Some("true"), true),
        (Some("TRUE"), true),
        (Some("0"), false),
        (Some(""), false),
        (None, false),
    ] {
        assert_eq!(drop_asked(v), on, "{v:?}");
    }
}
