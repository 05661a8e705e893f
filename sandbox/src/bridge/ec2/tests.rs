//! The gateway's EC2 rules against a real emulator: each test starts
//! fakecloud and the gateway, then calls EC2 through the gateway (as the
//! steps do) and straight to the emulator (to see what really happened).
//! The expected poll counts come from the same settings the gateway read.

use super::*;
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, InstanceStateName, InstanceType};

struct World {
    _emulator: crate::emulator::Emulator,
    /// Through the gateway.
    gw: aws_sdk_ec2::Client,
    /// Straight to the emulator.
    direct: aws_sdk_ec2::Client,
    t: Timings,
}

async fn world() -> World {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let emulator = crate::emulator::Emulator::start(port).await.unwrap();
    let config = crate::sdk_config(&emulator.url());
    let (gateway, _) = super::super::start(
        0,
        emulator.url(),
        &config,
        std::time::Duration::from_millis(10),
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
    }
}

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

    /// The image's state through the gateway by id, or the error code.
    async fn image_state(&self, id: &str) -> String {
        match self.gw.describe_images().image_ids(id).send().await {
            Ok(o) => o.images()[0].state().unwrap().as_str().to_string(),
            Err(e) => e.code().unwrap_or("?").to_string(),
        }
    }
}

#[tokio::test]
async fn gateway_image_invisible_then_pending_then_available() {
    let w = world().await;
    assert!(
        w.t.image_invisible >= 1 && w.t.image_pending >= 1,
        "timings on by default"
    );
    let server = w.instance().await;

    // By id: not found first, then pending, then available.
    let id = w.image(&server, "by-id").await.unwrap();
    let mut seen = vec![];
    for _ in 0..(w.t.image_invisible + w.t.image_pending + 1) {
        seen.push(w.image_state(&id).await);
    }
    let mut expected = vec!["InvalidAMIID.NotFound".to_string(); w.t.image_invisible as usize];
    expected.extend(vec!["pending".to_string(); w.t.image_pending as usize]);
    expected.push("available".into());
    assert_eq!(seen, expected);

    // By filter: left out first, then pending; the emulator itself has it
    // available all along.
    let id = w.image(&server, "by-filter").await.unwrap();
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
    for _ in 0..(w.t.image_invisible + w.t.image_pending + 1) {
        if let Ok(o) = w.gw.describe_images().image_ids(&image).send().await {
            snapshots = o.images()[0]
                .block_device_mappings()
                .iter()
                .filter_map(|m| Some(m.ebs()?.snapshot_id()?.to_string()))
                .collect();
        }
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

#[tokio::test]
async fn gateway_stop_pending_is_incorrect_state() {
    let w = world().await;
    assert!(w.t.starting >= 1);
    let server = w.instance().await;
    w.direct
        .stop_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
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

    // Once it shows running, the stop is accepted.
    let mut polls = 0;
    while w.state(&w.gw, &server).await == "pending" {
        polls += 1;
        assert!(
            polls <= w.t.starting,
            "pending longer than {} polls",
            w.t.starting
        );
    }
    assert_eq!(polls, w.t.starting);
    w.gw.stop_instances()
        .instance_ids(&server)
        .send()
        .await
        .unwrap();
}

#[tokio::test]
async fn gateway_instance_stopping_then_stopped() {
    let w = world().await;
    assert!(w.t.stopping >= 1);
    let server = w.instance().await;
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
    let mut seen = vec![];
    for _ in 0..=w.t.stopping {
        seen.push(w.state(&w.gw, &server).await);
    }
    let mut expected = vec!["stopping".to_string(); w.t.stopping as usize];
    expected.push("stopped".into());
    assert_eq!(seen, expected);
    // The emulator itself has it stopped.
    assert_eq!(w.state(&w.direct, &server).await, "stopped");
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
