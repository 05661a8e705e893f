//! EC2 calls of image cleanup: the environment's images with their
//! snapshots, which of them any launch template version or instance of the
//! Region uses, and their removal (deregistering, deleting snapshots), each
//! tolerant of what is already gone so a retried step repeats nothing.

use super::{tag_value, Ec2, TAG_DEPLOYMENT, TAG_ENVIRONMENT};
use crate::error::{classify_sdk_error, StepError};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::Filter;
use std::collections::{BTreeMap, BTreeSet};

/// EC2 takes at most 200 values per filter.
const FILTER_VALUES: usize = 200;

/// An image of the environment (tagged `autosky:environment=<env>`).
#[derive(Debug, Clone, PartialEq)]
pub struct OwnedImage {
    pub id: String,
    /// Its `autosky:deployment-id` tag.
    pub deployment_id: Option<String>,
    /// EC2's image state (`available`, `pending`, `failed`, …).
    pub state: String,
    /// The EBS snapshots of its block device mappings.
    pub snapshot_ids: Vec<String>,
}

/// What DeleteSnapshot did.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotDeletion {
    Deleted,
    /// `InvalidSnapshot.NotFound`: deleted before (a retry).
    AlreadyGone,
    /// `InvalidSnapshot.InUse`: another image still uses it; kept.
    InUse(String),
}

/// Where an image is still used.
pub type ImageUses = BTreeMap<String, Vec<String>>;

impl Ec2 {
    /// This account's images tagged `autosky:environment=<environment_id>`,
    /// every page.
    pub async fn environment_images(
        &self,
        environment_id: &str,
    ) -> Result<Vec<OwnedImage>, StepError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_images()
                .owners("self")
                .filters(
                    Filter::builder()
                        .name(format!("tag:{TAG_ENVIRONMENT}"))
                        .values(environment_id)
                        .build(),
                )
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeImages", &e))?;
            found.extend(out.images().iter().map(|i| {
                OwnedImage {
                    id: i.image_id().unwrap_or_default().to_string(),
                    deployment_id: tag_value(i.tags(), TAG_DEPLOYMENT),
                    state: i
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                    snapshot_ids: i
                        .block_device_mappings()
                        .iter()
                        .filter_map(|m| m.ebs()?.snapshot_id())
                        .map(str::to_string)
                        .collect(),
                }
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    /// Which of `images` a version of any launch template of the Region uses
    /// ("version 3 of lt-…"). Every template is described, with EC2's
    /// `image-id` filter; the image of each version answered is compared too.
    pub async fn images_in_launch_templates(
        &self,
        images: &BTreeSet<String>,
    ) -> Result<ImageUses, StepError> {
        let mut uses = ImageUses::new();
        if images.is_empty() {
            return Ok(uses);
        }
        let mut templates = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_launch_templates()
                .max_results(200)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeLaunchTemplates", &e))?;
            templates.extend(
                out.launch_templates()
                    .iter()
                    .filter_map(|t| t.launch_template_id().map(str::to_string)),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        let wanted: Vec<&String> = images.iter().collect();
        for template in &templates {
            for chunk in wanted.chunks(FILTER_VALUES) {
                let mut token: Option<String> = None;
                loop {
                    let out = self
                        .client
                        .describe_launch_template_versions()
                        .launch_template_id(template)
                        .filters(
                            Filter::builder()
                                .name("image-id")
                                .set_values(Some(chunk.iter().map(|s| s.to_string()).collect()))
                                .build(),
                        )
                        .set_next_token(token.take())
                        .send()
                        .await
                        .map_err(|e| classify_sdk_error("DescribeLaunchTemplateVersions", &e))?;
                    for v in out.launch_template_versions() {
                        let image = v.launch_template_data().and_then(|d| d.image_id());
                        if let Some(image) = image.filter(|i| images.contains(*i)) {
                            uses.entry(image.to_string()).or_default().push(format!(
                                "version {} of {template}",
                                v.version_number().unwrap_or_default()
                            ));
                        }
                    }
                    match out.next_token() {
                        Some(t) if !t.is_empty() => token = Some(t.to_string()),
                        _ => break,
                    }
                }
            }
        }
        Ok(uses)
    }

    /// Which of `images` an instance of the Region that is not terminated or
    /// terminating runs ("instance i-…"); a stopped one can start again.
    pub async fn images_on_instances(
        &self,
        images: &BTreeSet<String>,
    ) -> Result<ImageUses, StepError> {
        let mut uses = ImageUses::new();
        let wanted: Vec<&String> = images.iter().collect();
        for chunk in wanted.chunks(FILTER_VALUES) {
            let by_image = Filter::builder()
                .name("image-id")
                .set_values(Some(chunk.iter().map(|s| s.to_string()).collect()))
                .build();
            for i in self.live_instances(by_image).await? {
                if let Some(image) = i.image_id().filter(|i| images.contains(*i)) {
                    uses.entry(image.to_string())
                        .or_default()
                        .push(format!("instance {}", i.instance_id().unwrap_or_default()));
                }
            }
        }
        Ok(uses)
    }

    /// Deregisters the image; true if it was, false if EC2 no longer knows it
    /// (`InvalidAMIID.NotFound` / `.Unavailable`: deregistered before).
    pub async fn deregister_image(&self, id: &str) -> Result<bool, StepError> {
        match self.client.deregister_image().image_id(id).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if matches!(
                    e.code(),
                    Some("InvalidAMIID.NotFound" | "InvalidAMIID.Unavailable")
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(classify_sdk_error("DeregisterImage", &e)),
        }
    }

    pub async fn delete_snapshot(&self, id: &str) -> Result<SnapshotDeletion, StepError> {
        match self.client.delete_snapshot().snapshot_id(id).send().await {
            Ok(_) => Ok(SnapshotDeletion::Deleted),
            Err(e) => match e.code() {
                Some("InvalidSnapshot.NotFound") => Ok(SnapshotDeletion::AlreadyGone),
                Some("InvalidSnapshot.InUse") => Ok(SnapshotDeletion::InUse(
                    e.message().unwrap_or("in use").to_string(),
                )),
                _ => Err(classify_sdk_error("DeleteSnapshot", &e)),
            },
        }
    }
}
