//! An image's EBS snapshots, which fakecloud's CreateImage does not make:
//! the gateway makes them as EC2 does — one snapshot of each EBS volume
//! attached to the instance, tagged with the request's `snapshot` tag
//! specification — shows them in the image's block device mappings
//! (DescribeImages), and refuses DeleteSnapshot of a snapshot a registered
//! image uses (`InvalidSnapshot.InUse`). DeregisterImage leaves the
//! snapshots, as on EC2.

use super::super::{xml, Bridge};
use super::{between, rebuilt, text_of};
use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use std::collections::HashMap;

/// One block device of an image: device name, snapshot, size (GiB), type.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageDevice {
    pub device: String,
    pub snapshot_id: String,
    pub size: i32,
    pub volume_type: String,
}

impl Bridge {
    /// Snapshots the instance's EBS volumes for the new image `image_id`.
    /// Nothing is made when the emulator cannot be asked (bridge tests
    /// without a client).
    pub(super) async fn snapshot_volumes(
        &self,
        form: &HashMap<String, String>,
        image_id: &str,
    ) -> Result<(), String> {
        let (Some(ec2), Some(instance)) = (self.ec2_client(), form.get("InstanceId")) else {
            return Ok(());
        };
        let volumes = ec2
            .describe_volumes()
            .filters(
                Filter::builder()
                    .name("attachment.instance-id")
                    .values(instance)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| format!("DescribeVolumes: {e:?}"))?;
        let tags = snapshot_tags(form);
        let mut devices = Vec::new();
        for v in volumes.volumes() {
            let Some(volume_id) = v.volume_id() else {
                continue;
            };
            let device = v
                .attachments()
                .iter()
                .find(|a| a.instance_id() == Some(instance.as_str()))
                .and_then(|a| a.device())
                .unwrap_or("/dev/xvda")
                .to_string();
            let mut req = ec2
                .create_snapshot()
                .volume_id(volume_id)
                // The description EC2 gives an image's snapshots.
                .description(format!("Created by CreateImage({instance}) for {image_id}"));
            if !tags.is_empty() {
                req = req.tag_specifications(
                    tags.iter()
                        .fold(
                            TagSpecification::builder().resource_type(ResourceType::Snapshot),
                            |b, (k, v)| b.tags(Tag::builder().key(k).value(v).build()),
                        )
                        .build(),
                );
            }
            let snap = req
                .send()
                .await
                .map_err(|e| format!("CreateSnapshot: {e:?}"))?;
            devices.push(ImageDevice {
                device,
                snapshot_id: snap.snapshot_id().unwrap_or_default().to_string(),
                size: v.size().unwrap_or(8),
                volume_type: v
                    .volume_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "gp3".into()),
            });
        }
        devices.sort_by(|a, b| a.device.cmp(&b.device));
        self.lock()
            .ec2
            .image_devices
            .insert(image_id.to_string(), devices);
        Ok(())
    }

    /// DeleteSnapshot: refused while a registered image uses the snapshot.
    pub(super) async fn delete_snapshot(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let id = form.get("SnapshotId").cloned().unwrap_or_default();
        let user = {
            let st = self.lock();
            st.ec2
                .image_devices
                .iter()
                .find(|(_, ds)| ds.iter().any(|d| d.snapshot_id == id))
                .map(|(image, _)| image.clone())
        };
        if let Some(image) = user {
            return xml::ec2_error(
                400,
                "InvalidSnapshot.InUse",
                &format!("The snapshot {id} is currently in use by {image}"),
            );
        }
        self.forward(parts, body).await
    }

    /// DeregisterImage: its snapshots stay, no longer in use by it.
    pub(super) async fn deregister_image(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let (res, text) = text_of(self.forward(parts, body).await).await;
        if res.status().is_success() {
            if let Some(id) = form.get("ImageId") {
                self.lock().ec2.image_devices.remove(id);
                let request_id = between(&text, "<requestId>", "</requestId>")
                    .unwrap_or_else(crate::aws_events::event_id);
                self.image_deregistered(id, &request_id);
            }
        }
        rebuilt(res, text)
    }

    /// Fills the empty `blockDeviceMapping` of each image the gateway made
    /// snapshots for.
    pub(super) fn with_block_devices(
        &self,
        res: Response<()>,
        text: String,
    ) -> Response<Full<Bytes>> {
        let st = self.lock();
        let mut out = text;
        for (image, devices) in &st.ec2.image_devices {
            out = fill_block_devices(&out, image, devices);
        }
        rebuilt(res, out)
    }
}

/// The `TagSpecification.N` tags for resource type `snapshot`, in order.
fn snapshot_tags(form: &HashMap<String, String>) -> Vec<(String, String)> {
    let mut n = 1;
    let mut tags = Vec::new();
    while let Some(rt) = form.get(&format!("TagSpecification.{n}.ResourceType")) {
        if rt == "snapshot" {
            let p = format!("TagSpecification.{n}.Tag.");
            let mut m = 1;
            while let Some(k) = form.get(&format!("{p}{m}.Key")) {
                let v = form
                    .get(&format!("{p}{m}.Value"))
                    .cloned()
                    .unwrap_or_default();
                tags.push((k.clone(), v));
                m += 1;
            }
        }
        n += 1;
    }
    tags
}

/// The DescribeImages answer with `image`'s empty `blockDeviceMapping`
/// replaced by `devices`.
pub fn fill_block_devices(text: &str, image: &str, devices: &[ImageDevice]) -> String {
    let marker = format!("<imageId>{image}</imageId>");
    let Some(start) = text.find(&marker) else {
        return text.to_string();
    };
    // The item ends where the next image begins (or at the end of the list).
    let end = text[start + marker.len()..]
        .find("<imageId>")
        .map_or(text.len(), |i| start + marker.len() + i);
    let empty = "<blockDeviceMapping/>";
    let Some(at) = text[start..end].find(empty).map(|i| start + i) else {
        return text.to_string();
    };
    let items: String = devices
        .iter()
        .map(|d| {
            format!(
                "<item><deviceName>{}</deviceName><ebs><snapshotId>{}</snapshotId>\
                 <volumeSize>{}</volumeSize><deleteOnTermination>true</deleteOnTermination>\
                 <volumeType>{}</volumeType><encrypted>false</encrypted></ebs></item>",
                d.device, d.snapshot_id, d.size, d.volume_type
            )
        })
        .collect();
    format!(
        "{}<blockDeviceMapping>{items}</blockDeviceMapping>{}",
        &text[..at],
        &text[at + empty.len()..]
    )
}
