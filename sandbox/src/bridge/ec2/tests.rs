//! The gateway's EC2 rules against a real emulator: each test starts
//! fakecloud and the gateway, then calls EC2 through the gateway (as the
//! steps do) and straight to the emulator (to see what really happened),
//! and reads the events the gateway published. The expected lengths come
//! from the same settings the gateway read.

use super::*;
use crate::aws_events::PublishedEvent;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceStateName, InstanceType};
use std::time::Duration;
use tokio::time::Instant;

struct World {
    _emulator: crate::emulator::Emulator,
    /// Through the gateway.
    gw: aws_sdk_ec2::Client,
    /// Straight to the emulator.
    direct: aws_sdk_ec2::Client,
    t: Timings,
    events: crate::aws_events::EventBus,
    /// The gateway's URL (its control routes).
    url: String,
}

async fn world() -> World {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let emulator = crate::emulator::Emulator::start(port).await.unwrap();
    let config = crate::sdk_config(&emulator.url());
    let (gateway, handle) = super::super::start(
        0,
        emulator.url(),
        &config,
        std::time::Duration::from_millis(10),
        crate::aws_events::EventBus::resume("us-east-1").unwrap(),
    )
    .await
    .unwrap();
    let client = |url: &str| {
        aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&config)
                .endpoint_url(url)
                .build(),
        )
    };
    World {
        gw: client(&gateway),
        direct: client(&emulator.url()),
        _emulator: emulator,
        t: Timings::from_env(),
        events: handle.events().clone(),
        url: gateway.clone(),
    }
}

/// A moment to wait for: the gateway's lengths, plus a margin for the calls.
const MARGIN: Duration = Duration::from_millis(1500);

impl World {
    /// A running instance.
    async fn instance(&self) -> String {
        let id = self
            .direct
            .run_instances()
            .image_id(crate::seed::BASE_IMAGE)
            .instance_type(InstanceType::T3Micro)
            .min_count(1)
            .max_count(1)
            .send()
            .await
            .unwrap()
            .instances()[0]
            .instance_id()
            .unwrap()
            .to_string();
        for _ in 0..100 {
            if self.state(&self.direct, &id).await == "running" {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{id} never running");
    }

    async fn state(&self, c: &aws_sdk_ec2::Client, id: &str) -> String {
        c.describe_instances()
            .instance_ids(id)
            .send()
            .await
            .unwrap()
            .reservations()[0]
            .instances()[0]
            .state()
            .and_then(|s| s.name())
            .map(|n| n.as_str().to_string())
            .unwrap()
    }

    async fn image(&self, instance: &str, name: &str) -> Result<String, String> {
        self.gw
            .create_image()
            .instance_id(instance)
            .name(name)
            .send()
            .await
            .map(|o| o.image_id().unwrap().to_string())
            .map_err(|e| format!("{}: {}", e.code().unwrap_or("?"), e.message().unwrap_or("")))
    }

    /// The instance state events of `id` published so far: (state, event).
    fn instance_events(&self, id: &str) -> Vec<(String, PublishedEvent)> {
        self.events
            .events()
            .into_iter()
            .filter(|e| e.event["detail"]["instance-id"] == id)
            .map(|e| (e.event["detail"]["state"].as_str().unwrap().to_string(), e))
            .collect()
    }

    /// The AMI state events of `id` published so far: (State, event).
    fn image_events(&self, id: &str) -> Vec<(String, PublishedEvent)> {
        self.events
            .events()
            .into_iter()
            .filter(|e| e.event["detail"]["ImageId"] == id)
            .map(|e| (e.event["detail"]["State"].as_str().unwrap().to_string(), e))
            .collect()
    }

    /// The instance's state through the gateway once it is no longer `from`
    /// (within `limit`), and when that was seen.
    async fn state_after(&self, id: &str, from: &str, limit: Duration) -> (String, Instant) {
        let deadline = Instant::now() + limit;
        loop {
            let s = self.state(&self.gw, id).await;
            if s != from {
                return (s, Instant::now());
            }
            assert!(
                Instant::now() < deadline,
                "{id} still {from} after {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The image's state through the gateway by id, or the error code.
    async fn image_state(&self, id: &str) -> String {
        match self.gw.describe_images().image_ids(id).send().await {
            Ok(o) => o.images()[0].state().unwrap().as_str().to_string(),
            Err(e) => e.code().unwrap_or("?").to_string(),
        }
    }
}

/// Waits (at most [`MARGIN`]) until `f` is true.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + MARGIN;
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds from `t0` to when the event was published.
fn ms_after(t0: chrono::DateTime<chrono::Utc>, e: &PublishedEvent) -> i64 {
    (e.published_at().unwrap() - t0).num_milliseconds()
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_image_invisible_then_pending_then_available_and_its_event() {
    let w = world().await;
    let t = w.t;
    assert!(
        !t.image_invisible.is_zero() && !t.image_pending.is_zero(),
        "timings on by default"
    );
    let server = w.instance().await;

    // By id: not found first, then pending, then available, with time
    // (nobody needs to ask in between).
    let asked = chrono::Utc::now();
    let id = w.image(&server, "by-id").await.unwrap();
    let made = Instant::now();
    assert_eq!(w.image_state(&id).await, "InvalidAMIID.NotFound");
    tokio::time::sleep_until(made + t.image_invisible + t.image_pending / 2).await;
    assert_eq!(w.image_state(&id).await, "pending");
    assert_eq!(w.image_events(&id).len(), 0, "no event while pending");
    eventually("the available event", || !w.image_events(&id).is_empty()).await;
    assert_eq!(w.image_state(&id).await, "available");
    // EC2's event, once, when it became available.
    let events = w.image_events(&id);
    assert_eq!(events.len(), 1, "{events:?}");
    let (state, e) = &events[0];
    assert_eq!(state, "available");
    assert_eq!(e.event["source"], "aws.ec2");
    assert_eq!(e.event["detail-type"], "EC2 AMI State Change");
    assert_eq!(
        e.event["resources"],
        serde_json::json!([format!("arn:aws:ec2:us-east-1::image/{id}")])
    );
    assert_eq!(e.event["detail"]["ErrorMessage"], "");
    assert!(!e.event["detail"]["RequestId"].as_str().unwrap().is_empty());
    assert!(e.matched && e.delivered, "{e:?}");
    let length = (t.image_invisible + t.image_pending).as_millis() as i64;
    assert!(ms_after(asked, e) >= length, "{e:?} after {length} ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.image_events(&id).len(), 1, "published once");

    // By filter: left out first, then pending; the emulator itself has it
    // available all along.
    let id = w.image(&server, "by-filter").await.unwrap();
    let made = Instant::now();
    let listed = || async {
        w.gw.describe_images()
            .owners("self")
            .filters(Filter::builder().name("name").values("by-filter").build())
            .send()
            .await
            .unwrap()
            .images()
            .iter()
            .map(|i| {
                (
                    i.image_id().unwrap().to_string(),
                    i.state().unwrap().as_str().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(listed().await, vec![]);
    tokio::time::sleep_until(made + t.image_invisible + t.image_pending / 2).await;
    assert_eq!(listed().await, vec![(id.clone(), "pending".to_string())]);
    let direct = w
        .direct
        .describe_images()
        .image_ids(&id)
        .send()
        .await
        .unwrap();
    assert_eq!(direct.images()[0].state().unwrap().as_str(), "available");
}

/// CreateImage snapshots each EBS volume of the instance with the request's
/// snapshot tags; DescribeImages shows them as the image's block devices; a
/// snapshot is not deleted while the image is registered
/// (`InvalidSnapshot.InUse`), and DeregisterImage leaves it.
#[tokio::test]
async fn gateway_image_snapshots_tagged_in_use_until_deregistered() {
    use aws_sdk_ec2::types::{
        BlockDeviceMapping, EbsBlockDevice, ResourceType, Tag, TagSpecification,
    };
    let w = world().await;
    let server = w
        .direct
        .run_instances()
        .image_id(crate::seed::BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(EbsBlockDevice::builder().volume_size(8).build())
                .build(),
        )
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    let tag = |rt: ResourceType| {
        TagSpecification::builder()
            .resource_type(rt)
            .tags(
                Tag::builder()
                    .key("autosky:environment")
                    .value("web")
                    .build(),
            )
            .build()
    };
    let image =
        w.gw.create_image()
            .instance_id(&server)
            .name("with-snapshots")
            .tag_specifications(tag(ResourceType::Image))
            .tag_specifications(tag(ResourceType::Snapshot))
            .send()
            .await
            .unwrap()
            .image_id()
            .unwrap()
            .to_string();
    let mut snapshots = vec![];
    let deadline = Instant::now() + w.t.image_invisible + MARGIN;
    while snapshots.is_empty() && Instant::now() < deadline {
        if let Ok(o) = w.gw.describe_images().image_ids(&image).send().await {
            snapshots = o.images()[0]
                .block_device_mappings()
                .iter()
                .filter_map(|m| Some(m.ebs()?.snapshot_id()?.to_string()))
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(snapshots.len(), 1, "one EBS volume, one snapshot");
    let snap = w
        .direct
        .describe_snapshots()
        .snapshot_ids(&snapshots[0])
        .send()
        .await
        .unwrap()
        .snapshots()[0]
        .clone();
    assert_eq!(
        snap.tags()
            .iter()
            .map(|t| (t.key().unwrap(), t.value().unwrap()))
            .collect::<Vec<_>>(),
        vec![("autosky:environment", "web")]
    );
    assert_eq!(
        snap.description(),
        Some(format!("Created by CreateImage({server}) for {image}").as_str())
    );

    let delete = || async {
        w.gw.delete_snapshot()
            .snapshot_id(&snapshots[0])
            .send()
            .await
            .map(|_| ())
            .map_err(|e| e.code().unwrap_or("?").to_string())
    };
    assert_eq!(delete().await, Err("InvalidSnapshot.InUse".to_string()));
    w.gw.deregister_image()
        .image_id(&image)
        .send()
        .await
        .unwrap();
    // EC2's `deregistered` event (no rule of ours wakes on it); deregistered
    // before it was available, it never gets an `available` one.
    let states: Vec<(String, bool)> = w
        .image_events(&image)
        .into_iter()
        .map(|(s, e)| (s, e.matched))
        .collect();
    assert_eq!(states, vec![("deregistered".to_string(), false)]);
    // Deregistering left the snapshot; now it can go.
    assert!(w
        .direct
        .describe_snapshots()
        .snapshot_ids(&snapshots[0])
        .send()
        .await
        .is_ok());
    assert_eq!(delete().await, Ok(()));
    assert_eq!(delete().await, Err("InvalidSnapshot.NotFound".to_string()));
}

#[tokio::test]
async fn gateway_duplicate_ami_name() {
    let w = world().await;
    let server = w.instance().await;
    let first = w.image(&server, "golden").await.unwrap();
    let err = w.image(&server, "golden").await.unwrap_err();
    assert_eq!(
        err,
        format!("InvalidAMIName.Duplicate: AMI name golden is already in use by AMI {first}")
    );
    // Nothing was made by the refused call.
    let named = w
        .direct
        .describe_images()
        .owners("self")
        .filters(Filter::builder().name("name").values("golden").build())
        .send()
        .await
        .unwrap();
    assert_eq!(named.images().len(), 1);
    // Another name is fine.
    w.image(&server, "golden-2").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_stop_pending_is_incorrect_state() {
    let w = world().await;
    assert!(!w.t.starting.is_zero());
    let server = w.instance().await;
    w.direct
        .stop_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
    let asked = chrono::Utc::now();
    w.gw.start_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();

    let err =
        w.gw.stop_instances()
            .instance_ids(&server)
            .send()
            .await
            .unwrap_err();
    assert_eq!(err.code(), Some("IncorrectInstanceState"));
    assert!(err.message().unwrap().contains(&server), "{err:?}");
    // The refused stop changed nothing.
    assert_ne!(w.state(&w.direct, &server).await, "stopped");

    // Once it shows running (after its starting length), the stop is
    // accepted.
    let (state, _) = w
        .state_after(&server, "pending", w.t.starting + MARGIN)
        .await;
    assert_eq!(state, "running");
    eventually("the running event", || {
        w.instance_events(&server).len() == 2
    })
    .await;
    let events = w.instance_events(&server);
    let states: Vec<&str> = events.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(states, ["pending", "running"]);
    assert!(ms_after(asked, &events[1].1) >= w.t.starting.as_millis() as i64);
    w.gw.stop_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_instance_stopping_then_stopped_and_its_events() {
    let w = world().await;
    assert!(!w.t.stopping.is_zero());
    let server = w.instance().await;
    let asked = chrono::Utc::now();
    let out =
        w.gw.stop_instances()
            .instance_ids(&server)
            .send()
            .await
            .unwrap();
    assert_eq!(
        out.stopping_instances()[0]
            .current_state()
            .and_then(|s| s.name()),
        Some(&InstanceStateName::Stopping)
    );
    // `stopping` at once (its event already published), `stopped` once
    // the stopping length has passed, with time alone.
    assert_eq!(w.state(&w.gw, &server).await, "stopping");
    let events = w.instance_events(&server);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0].0, "stopping");
    assert!(!events[0].1.matched, "no rule of ours wakes on stopping");
    eventually("the stopped event", || {
        w.instance_events(&server).len() == 2
    })
    .await;
    assert_eq!(w.state(&w.gw, &server).await, "stopped");
    let events = w.instance_events(&server);
    let (state, e) = &events[1];
    assert_eq!(state, "stopped");
    assert_eq!(e.event["source"], "aws.ec2");
    assert_eq!(
        e.event["detail-type"],
        "EC2 Instance State-change Notification"
    );
    assert_eq!(
        e.event["resources"],
        serde_json::json!([format!(
            "arn:aws:ec2:us-east-1:000000000000:instance/{server}"
        )])
    );
    assert_eq!(
        e.event["detail"],
        serde_json::json!({"instance-id": server, "state": "stopped"})
    );
    assert!(e.matched && e.delivered, "{e:?}");
    let length = w.t.stopping.as_millis() as i64;
    assert!(ms_after(asked, e) >= length, "{e:?} after {length} ms");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(w.instance_events(&server).len(), 2, "each once");
    // The emulator itself has it stopped.
    assert_eq!(w.state(&w.direct, &server).await, "stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn gateway_terminate_sends_shutting_down_then_terminated() {
    let w = world().await;
    let server = w.instance().await;
    let terminate = || async {
        w.gw.terminate_instances()
            .instance_ids(&server)
            .send()
            .await
            .unwrap()
    };
    terminate().await;
    let states: Vec<(String, bool)> = w
        .instance_events(&server)
        .into_iter()
        .map(|(s, e)| (s, e.matched))
        .collect();
    assert_eq!(
        states,
        vec![
            ("shutting-down".to_string(), false),
            ("terminated".to_string(), true)
        ]
    );
    // Terminating it again changes no state: no event.
    terminate().await;
    assert_eq!(w.instance_events(&server).len(), 2);
}

/// A failed AMI, asked for through the control route: `failed` from when it
/// would have been available, its event with the reason; the next image of
/// the same instance is available again.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_image_ends_failed_when_asked() {
    let w = world().await;
    let server = w.instance().await;
    let ask = |outcome: &str| {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("instance", &server)
            .append_pair("outcome", outcome)
            .append_pair("message", "disk read error")
            .finish();
        hyper::Request::post(format!("{}/_sandbox/image-outcome", w.url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    assert_eq!(crate::http::send(ask("sunk")).await.unwrap().0, 400);
    assert_eq!(crate::http::send(ask("failed")).await.unwrap().0, 200);
    let id = w.image(&server, "bad").await.unwrap();
    let made = Instant::now();
    tokio::time::sleep_until(made + w.t.image_invisible + w.t.image_pending / 2).await;
    assert_eq!(w.image_state(&id).await, "pending");
    eventually("the failed event", || !w.image_events(&id).is_empty()).await;
    assert_eq!(w.image_state(&id).await, "failed");
    let events = w.image_events(&id);
    let (state, e) = &events[0];
    assert_eq!(state, "failed");
    assert_eq!(e.event["detail"]["ErrorMessage"], "disk read error");
    assert!(e.matched && e.delivered, "{e:?}");

    let id = w.image(&server, "good").await.unwrap();
    eventually("the available event", || !w.image_events(&id).is_empty()).await;
    assert_eq!(w.image_events(&id)[0].0, "available");
    assert_eq!(w.image_state(&id).await, "available");
}

/// The event bus's control routes, through the harness: the drop switch,
/// an event published as if AWS sent it (a duplicate, a foreign one), the
/// listing; and their refusals.
#[tokio::test(flavor = "multi_thread")]
async fn gateway_event_routes_switch_delivery_publish_and_list() {
    let w = world().await;
    let e = crate::Endpoints {
        api: String::new(),
        emulator: String::new(),
        autoscaling: w.url.clone(),
        state_machine_arn: String::new(),
        table: String::new(),
        sender: String::new(),
    };
    assert_eq!(e.events().await.unwrap(), vec![]);
    let server = w.instance().await;

    // Delivery off: the stop's events are recorded, the matching one dropped.
    e.drop_events(true).await.unwrap();
    assert!(w.events.dropping());
    w.gw.stop_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
    eventually("the stopped event", || {
        w.instance_events(&server).len() == 2
    })
    .await;
    let listed = e.events().await.unwrap();
    let flags: Vec<(String, bool, bool, bool)> = listed
        .iter()
        .map(|p| {
            let state = p.event["detail"]["state"].as_str().unwrap().to_string();
            (state, p.matched, p.delivered, p.dropped)
        })
        .collect();
    assert_eq!(
        flags,
        vec![
            ("stopping".to_string(), false, false, false),
            ("stopped".to_string(), true, false, true)
        ]
    );

    // Delivery on: the same event again (a duplicate) is delivered; a
    // foreign one is recorded, not matched.
    e.drop_events(false).await.unwrap();
    let again = e.publish_event(listed[1].event.clone()).await.unwrap();
    assert!(
        again.matched && again.delivered && !again.dropped,
        "{again:?}"
    );
    let mut foreign = listed[1].event.clone();
    foreign["source"] = serde_json::json!("com.example.test");
    let foreign = e.publish_event(foreign).await.unwrap();
    assert!(!foreign.matched && !foreign.delivered, "{foreign:?}");
    assert_eq!(e.events().await.unwrap().len(), 4);

    // Refusals: not an event, not a switch, not a route.
    let err = e
        .publish_event(serde_json::json!({"detail": {}}))
        .await
        .unwrap_err();
    assert!(err.contains("HTTP 400"), "{err}");
    let req = |method: &str, route: &str, body: &str| {
        hyper::Request::builder()
            .method(method)
            .uri(format!("{}/_sandbox/{route}", w.url))
            .body(http_body_util::Full::new(bytes::Bytes::from(
                body.to_string(),
            )))
            .unwrap()
    };
    let status = |r| async move { crate::http::send(r).await.unwrap().0 };
    assert_eq!(
        status(req("PUT", "events/delivery", "{\"drop\": 1}")).await,
        400
    );
    assert_eq!(status(req("DELETE", "events", "")).await, 405);
    assert_eq!(e.events().await.unwrap().len(), 4, "nothing published");
}

#[test]
fn only_the_items_of_the_named_list_are_edited() {
    let xml = "<R><imagesSet><item><imageId>ami-1</imageId><imageState>available</imageState>\
               <tagSet><item><key>k</key></item></tagSet></item>\
               <item><imageId>ami-2</imageId><imageState>available</imageState></item></imagesSet></R>";
    let out = edit_items(xml, "imagesSet", |i| match i.text(&["imageId"]).as_str() {
        "ami-1" => Edit::Set(vec![(&["imageState"], "pending".into())]),
        _ => Edit::Drop,
    })
    .unwrap();
    assert_eq!(
        out,
        "<R><imagesSet><item><imageId>ami-1</imageId><imageState>pending</imageState>\
         <tagSet><item><key>k</key></item></tagSet></item></imagesSet></R>"
    );
}
