//! EC2 capability: the preparation server, images and launch template versions,
//! as the steps need them (domain-shaped results, errors already classified).

use crate::error::{classify_sdk_error, StepError};
use aws_sdk_ec2::error::ProvideErrorMetadata;
use aws_sdk_ec2::types::{Filter, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification};
use aws_sdk_ec2::Client;

mod images;
mod states;
pub use images::{ImageUses, OwnedImage, SnapshotDeletion};
pub use states::{ImageState, InstanceState};

pub const TAG_ENVIRONMENT: &str = "autosky:environment";
pub const TAG_DEPLOYMENT: &str = "autosky:deployment-id";

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceInfo {
    pub id: String,
    pub name: Option<String>,
    pub state: InstanceState,
    pub private_ip: Option<String>,
    pub platform: Option<String>,
    /// The value of its `autosky:environment` tag, if it has one.
    pub environment_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub name: Option<String>,
    pub state: ImageState,
    pub state_reason: Option<String>,
    /// The image's deployment-id tag: which deployment made it, if Autosky did.
    pub deployment_id: Option<String>,
}

/// What CreateImage answered.
#[derive(Debug, Clone, PartialEq)]
pub enum CreatedImage {
    /// A new image, with its id.
    Created(String),
    /// `InvalidAMIName.Duplicate`: an image of this account already has the
    /// name (CreateImage has no client token, so the name is what makes a
    /// repeated call safe).
    NameInUse,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateInfo {
    pub id: String,
    pub name: Option<String>,
    pub default_version: i64,
    pub latest_version: i64,
    /// The value of its `autosky:environment` tag, if it has one.
    pub environment_tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TemplateVersion {
    pub number: i64,
    pub description: Option<String>,
    pub image_id: Option<String>,
}

/// EC2 as the steps and the API use it.
pub type Ec2 = super::Capability<Client>;

/// The value of the tag `key` among `tags`.
fn tag_value(tags: &[Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .map(str::to_string)
}

fn not_found(code: Option<&str>) -> bool {
    code.is_some_and(|c| {
        c.ends_with(".NotFound") || c.ends_with(".Malformed") || c.ends_with("NotFoundException")
    })
}

impl Ec2 {
    /// The instance, or `None` when EC2 does not know it.
    pub async fn instance(&self, id: &str) -> Result<Option<InstanceInfo>, StepError> {
        let out = match self
            .client
            .describe_instances()
            .instance_ids(id)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if not_found(e.code()) => return Ok(None),
            Err(e) => return Err(classify_sdk_error("DescribeInstances", &e)),
        };
        let inst = out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id));
        Ok(inst.map(|i| InstanceInfo {
            id: id.to_string(),
            name: i
                .tags()
                .iter()
                .find(|t| t.key() == Some("Name"))
                .and_then(|t| t.value())
                .map(str::to_string),
            state: InstanceState::of(i.state().and_then(|s| s.name())),
            private_ip: i.private_ip_address().map(str::to_string),
            platform: i.platform_details().map(str::to_string),
            environment_tag: tag_value(i.tags(), TAG_ENVIRONMENT),
        }))
    }

    pub async fn stop_instance(&self, id: &str) -> Result<(), StepError> {
        self.client
            .stop_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                // A stop racing a transition settles by itself: try again later.
                Some("IncorrectInstanceState") => {
                    StepError::Retryable(format!("StopInstances {id}: instance is changing state"))
                }
                _ => classify_sdk_error("StopInstances", &e),
            })
    }

    pub async fn start_instance(&self, id: &str) -> Result<(), StepError> {
        self.client
            .start_instances()
            .instance_ids(id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| match e.code() {
                Some("IncorrectInstanceState") => {
                    StepError::Retryable(format!("StartInstances {id}: instance is still stopping"))
                }
                _ => classify_sdk_error("StartInstances", &e),
            })
    }

    /// The image this deployment already created, found by its deployment-id tag.
    pub async fn image_of_deployment(
        &self,
        deployment_id: &str,
    ) -> Result<Option<ImageInfo>, StepError> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .filters(
                Filter::builder()
                    .name(format!("tag:{TAG_DEPLOYMENT}"))
                    .values(deployment_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeImages", &e))?;
        Ok(out.images().first().map(image_info))
    }

    /// This account's image with that name, if DescribeImages shows it yet.
    pub async fn image_by_name(&self, name: &str) -> Result<Option<ImageInfo>, StepError> {
        let out = self
            .client
            .describe_images()
            .owners("self")
            .filters(Filter::builder().name("name").values(name).build())
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeImages", &e))?;
        Ok(out.images().first().map(image_info))
    }

    /// The image, or `None` when DescribeImages does not show it (unknown, or
    /// not visible yet: EC2 is eventually consistent).
    pub async fn image(&self, id: &str) -> Result<Option<ImageInfo>, StepError> {
        match self.client.describe_images().image_ids(id).send().await {
            Ok(out) => Ok(out.images().first().map(image_info)),
            Err(e) if not_found(e.code()) => Ok(None),
            Err(e) => Err(classify_sdk_error("DescribeImages", &e)),
        }
    }

    /// Creates the image with the environment, deployment id and Name tags on
    /// the image and on its snapshots. `no_reboot` false lets EC2 reboot a
    /// running instance before the snapshots (EC2's default); true images it
    /// as it runs.
    pub async fn create_image(
        &self,
        instance_id: &str,
        name: &str,
        environment_id: &str,
        deployment_id: &str,
        no_reboot: bool,
    ) -> Result<CreatedImage, StepError> {
        let tags = [
            ("Name", name),
            (TAG_ENVIRONMENT, environment_id),
            (TAG_DEPLOYMENT, deployment_id),
        ];
        let spec = |rt: ResourceType| {
            tags.iter()
                .fold(
                    TagSpecification::builder().resource_type(rt),
                    |b, (k, v)| b.tags(Tag::builder().key(*k).value(*v).build()),
                )
                .build()
        };
        let out = self
            .client
            .create_image()
            .instance_id(instance_id)
            .name(name)
            .description(format!(
                "Autosky deployment {deployment_id} of {environment_id}"
            ))
            .tag_specifications(spec(ResourceType::Image))
            .tag_specifications(spec(ResourceType::Snapshot))
            .no_reboot(no_reboot)
            .send()
            .await;
        let out = match out {
            Ok(o) => o,
            Err(e) if e.code() == Some("InvalidAMIName.Duplicate") => {
                return Ok(CreatedImage::NameInUse)
            }
            Err(e) => return Err(classify_sdk_error("CreateImage", &e)),
        };
        out.image_id()
            .map(|id| CreatedImage::Created(id.to_string()))
            .ok_or_else(|| StepError::AwsError("CreateImage returned no image id".into()))
    }

    pub async fn launch_template(&self, id: &str) -> Result<Option<TemplateInfo>, StepError> {
        let out = match self
            .client
            .describe_launch_templates()
            .launch_template_ids(id)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if not_found(e.code()) => return Ok(None),
            Err(e) => return Err(classify_sdk_error("DescribeLaunchTemplates", &e)),
        };
        Ok(out.launch_templates().first().map(|t| TemplateInfo {
            id: id.to_string(),
            name: t.launch_template_name().map(str::to_string),
            default_version: t.default_version_number().unwrap_or(1),
            latest_version: t.latest_version_number().unwrap_or(1),
            environment_tag: tag_value(t.tags(), TAG_ENVIRONMENT),
        }))
    }

    /// All versions of the template, every page.
    pub async fn template_versions(&self, id: &str) -> Result<Vec<TemplateVersion>, StepError> {
        let mut versions = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_launch_template_versions()
                .launch_template_id(id)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeLaunchTemplateVersions", &e))?;
            versions.extend(out.launch_template_versions().iter().filter_map(|v| {
                Some(TemplateVersion {
                    number: v.version_number()?,
                    description: v.version_description().map(str::to_string),
                    image_id: v
                        .launch_template_data()
                        .and_then(|d| d.image_id())
                        .map(str::to_string),
                })
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(versions)
    }

    /// A new version from `source_version` with only the image changed.
    pub async fn create_template_version(
        &self,
        id: &str,
        source_version: i64,
        image_id: &str,
        description: &str,
        client_token: &str,
    ) -> Result<i64, StepError> {
        let out = self
            .client
            .create_launch_template_version()
            .launch_template_id(id)
            .source_version(source_version.to_string())
            .version_description(description)
            .client_token(client_token)
            .launch_template_data(
                RequestLaunchTemplateData::builder()
                    .image_id(image_id)
                    .build(),
            )
            .send()
            .await
            .map_err(|e| classify_sdk_error("CreateLaunchTemplateVersion", &e))?;
        out.launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| {
                StepError::AwsError("CreateLaunchTemplateVersion returned no version".into())
            })
    }

    pub async fn set_default_version(&self, id: &str, version: i64) -> Result<(), StepError> {
        self.client
            .modify_launch_template()
            .launch_template_id(id)
            .default_version(version.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error("ModifyLaunchTemplate", &e))
    }

    /// Deletes versions; returns (deleted, [(version, reason)] not deleted).
    pub async fn delete_template_versions(
        &self,
        id: &str,
        versions: &[i64],
    ) -> Result<(Vec<i64>, Vec<(i64, String)>), StepError> {
        let mut deleted = Vec::new();
        let mut failed = Vec::new();
        // The API takes at most 200 versions per call.
        for chunk in versions.chunks(200) {
            let out = self
                .client
                .delete_launch_template_versions()
                .launch_template_id(id)
                .set_versions(Some(chunk.iter().map(i64::to_string).collect()))
                .send()
                .await
                .map_err(|e| classify_sdk_error("DeleteLaunchTemplateVersions", &e))?;
            deleted.extend(
                out.successfully_deleted_launch_template_versions()
                    .iter()
                    .filter_map(|v| v.version_number()),
            );
            failed.extend(
                out.unsuccessfully_deleted_launch_template_versions()
                    .iter()
                    .filter_map(|v| {
                        Some((
                            v.version_number()?,
                            v.response_error()
                                .and_then(|r| r.message())
                                .unwrap_or("unknown reason")
                                .to_string(),
                        ))
                    }),
            );
        }
        Ok((deleted, failed))
    }
}

fn image_info(i: &aws_sdk_ec2::types::Image) -> ImageInfo {
    ImageInfo {
        id: i.image_id().unwrap_or_default().to_string(),
        name: i.name().map(str::to_string),
        state: ImageState::of(i.state()),
        state_reason: i
            .state_reason()
            .and_then(|r| r.message())
            .map(str::to_string),
        deployment_id: i
            .tags()
            .iter()
            .find(|t| t.key() == Some(TAG_DEPLOYMENT))
            .and_then(|t| t.value())
            .map(str::to_string),
    }
}

/// EC2's own tags on every instance launched from a launch template: the
/// template's id and the version the instance was launched from.
pub const TAG_LAUNCH_TEMPLATE_ID: &str = "aws:ec2launchtemplate:id";
pub const TAG_LAUNCH_TEMPLATE_VERSION: &str = "aws:ec2launchtemplate:version";

/// An instance launched from a launch template, with the version EC2 tagged
/// it with (`None` if the tag is missing).
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceTemplateVersion {
    pub instance_id: String,
    pub version: Option<String>,
}

impl Ec2 {
    /// The instances launched from the template that are not terminated or
    /// terminating (a stopped instance can be started again), in any group
    /// or none, all pages.
    pub async fn template_versions_on_instances(
        &self,
        launch_template_id: &str,
    ) -> Result<Vec<InstanceTemplateVersion>, StepError> {
        // DescribeInstances has no launch template filter: EC2's tag is the
        // way to find them.
        let tagged = Filter::builder()
            .name(format!("tag:{TAG_LAUNCH_TEMPLATE_ID}"))
            .values(launch_template_id)
            .build();
        Ok(self
            .live_instances(tagged)
            .await?
            .iter()
            .map(|i| InstanceTemplateVersion {
                instance_id: i.instance_id().unwrap_or_default().to_string(),
                version: tag_value(i.tags(), TAG_LAUNCH_TEMPLATE_VERSION),
            })
            .collect())
    }

    /// The instances matching `filter` that are not terminated or terminating
    /// (a stopped instance can be started again), all pages.
    pub(super) async fn live_instances(
        &self,
        filter: Filter,
    ) -> Result<Vec<aws_sdk_ec2::types::Instance>, StepError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instances()
                .filters(filter.clone())
                .filters(
                    Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("stopping")
                        .values("stopped")
                        .build(),
                )
                .max_results(1000)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeInstances", &e))?;
            found.extend(
                out.reservations()
                    .iter()
                    .flat_map(|r| r.instances())
                    .cloned(),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }
}
