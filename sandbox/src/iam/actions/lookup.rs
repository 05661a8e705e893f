//! What the map reads from the emulator to authorize a call: the tags on a
//! resource (instance, image, snapshot), a launch template version's data, a group's ARN and launch
//! template, an instance profile's role, whether an SES identity is verified.

use aws_sdk_ec2::error::ProvideErrorMetadata;
use std::collections::BTreeMap;

pub type Tags = BTreeMap<String, String>;

/// A launch template: its id and tags.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TemplateInfo {
    pub id: String,
    pub name: String,
    pub tags: Tags,
    pub default_version: i64,
    pub latest_version: i64,
}

/// What a launch template version launches.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VersionInfo {
    pub image_id: Option<String>,
    /// The instance profile, as the version names it (ARN or name).
    pub instance_profile: Option<String>,
    /// Its `TagSpecifications`: each resource type with the tags it gets.
    pub tag_specifications: Vec<(String, Tags)>,
    /// The subnets of its network interfaces.
    pub subnet_ids: Vec<String>,
    /// Its security group ids, and those of its network interfaces.
    pub security_group_ids: Vec<String>,
}

/// An Auto Scaling group: its ARN, tags and launch template(s) as
/// `(template id or name, version)` — one, or the mixed instances policy's
/// template and overrides.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupInfo {
    pub arn: String,
    pub tags: Tags,
    pub launch_templates: Vec<(String, String)>,
}

/// Look-ups against the emulator (a fake in unit tests). `Ok(None)`: no such
/// resource.
#[allow(async_fn_in_trait)]
pub trait Lookup {
    async fn instance_tags(&self, id: &str) -> Result<Option<Tags>, String>;
    /// An image's tags (`ami-…`).
    async fn image_tags(&self, id: &str) -> Result<Option<Tags>, String>;
    /// An EBS snapshot's tags (`snap-…`).
    async fn snapshot_tags(&self, id: &str) -> Result<Option<Tags>, String>;
    /// By id (`lt-…`) or name.
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<TemplateInfo>, String>;
    /// `version` is a number, `$Default` or `$Latest`.
    async fn template_version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, String>;
    async fn group(&self, name: &str) -> Result<Option<GroupInfo>, String>;
    /// The role ARNs of an instance profile (ARN or name).
    async fn instance_profile_roles(&self, profile: &str) -> Result<Vec<String>, String>;
    /// Whether SES has this identity (address or domain) verified.
    async fn ses_identity_verified(&self, identity: &str) -> Result<bool, String>;
}

/// The emulator's answers, from clients straight to it (not through the
/// gateway, so the look-ups are neither counted nor authorized).
#[derive(Clone)]
pub struct EmulatorLookup {
    pub emulator: String,
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    ses: aws_sdk_ses::Client,
}

impl EmulatorLookup {
    pub fn new(emulator_url: &str, config: &aws_config::SdkConfig) -> Self {
        Self {
            emulator: emulator_url.to_string(),
            ec2: aws_sdk_ec2::Client::from_conf(
                aws_sdk_ec2::config::Builder::from(config)
                    .endpoint_url(emulator_url)
                    .build(),
            ),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(
                aws_sdk_autoscaling::config::Builder::from(config)
                    .endpoint_url(emulator_url)
                    .build(),
            ),
            ses: aws_sdk_ses::Client::from_conf(
                aws_sdk_ses::config::Builder::from(config)
                    .endpoint_url(emulator_url)
                    .build(),
            ),
        }
    }
}

/// An SDK error's code and message, for look-up failures.
fn describe<E: ProvideErrorMetadata>(e: &E) -> String {
    format!(
        "{}: {}",
        e.code().unwrap_or("?"),
        e.message().unwrap_or_default()
    )
}

/// The error codes EC2 answers for an id that names nothing.
fn ec2_not_found(code: Option<&str>) -> bool {
    matches!(
        code,
        Some(
            "InvalidInstanceID.NotFound"
                | "InvalidInstanceID.Malformed"
                | "InvalidLaunchTemplateId.NotFound"
                | "InvalidLaunchTemplateId.Malformed"
                | "InvalidLaunchTemplateName.NotFoundException"
                | "InvalidLaunchTemplateId.VersionNotFound"
                | "InvalidLaunchTemplateVersion"
                | "InvalidAMIID.NotFound"
                | "InvalidAMIID.Malformed"
                | "InvalidAMIID.Unavailable"
                | "InvalidSnapshot.NotFound"
                | "InvalidSnapshotID.Malformed"
        )
    )
}

fn ec2_tags(tags: &[aws_sdk_ec2::types::Tag]) -> Tags {
    tags.iter()
        .filter_map(|t| {
            Some((
                t.key()?.to_string(),
                t.value().unwrap_or_default().to_string(),
            ))
        })
        .collect()
}

impl Lookup for EmulatorLookup {
    async fn instance_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        let out = match self.ec2.describe_instances().instance_ids(id).send().await {
            Ok(o) => o,
            Err(e) if ec2_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(format!("DescribeInstances {id}: {}", describe(&e))),
        };
        Ok(out
            .reservations()
            .iter()
            .flat_map(|r| r.instances())
            .find(|i| i.instance_id() == Some(id))
            .map(|i| ec2_tags(i.tags())))
    }

    async fn image_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        let out = match self.ec2.describe_images().image_ids(id).send().await {
            Ok(o) => o,
            Err(e) if ec2_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(format!("DescribeImages {id}: {}", describe(&e))),
        };
        Ok(out
            .images()
            .iter()
            .find(|i| i.image_id() == Some(id))
            .map(|i| ec2_tags(i.tags())))
    }

    async fn snapshot_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        let out = match self.ec2.describe_snapshots().snapshot_ids(id).send().await {
            Ok(o) => o,
            Err(e) if ec2_not_found(e.code()) => return Ok(None),
            Err(e) => return Err(format!("DescribeSnapshots {id}: {}", describe(&e))),
        };
        Ok(out
            .snapshots()
            .iter()
            .find(|s| s.snapshot_id() == Some(id))
            .map(|s| ec2_tags(s.tags())))
    }

    async fn launch_template(&self, id_or_name: &str) -> Result<Option<TemplateInfo>, String> {
        let by_id = id_or_name.starts_with("lt-");
        let req = self.ec2.describe_launch_templates();
        let req = if by_id {
            req.launch_template_ids(id_or_name)
        } else {
            req.launch_template_names(id_or_name)
        };
        let out = match req.send().await {
            Ok(o) => o,
            Err(e) if ec2_not_found(e.code()) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "DescribeLaunchTemplates {id_or_name}: {}",
                    describe(&e)
                ))
            }
        };
        // Matched here too: an answer may list more templates than asked for.
        Ok(out
            .launch_templates()
            .iter()
            .find(|t| {
                let key = if by_id {
                    t.launch_template_id()
                } else {
                    t.launch_template_name()
                };
                key == Some(id_or_name)
            })
            .map(|t| TemplateInfo {
                id: t.launch_template_id().unwrap_or_default().to_string(),
                name: t.launch_template_name().unwrap_or_default().to_string(),
                tags: ec2_tags(t.tags()),
                default_version: t.default_version_number().unwrap_or(1),
                latest_version: t.latest_version_number().unwrap_or(1),
            }))
    }

    async fn template_version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, String> {
        let out = match self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(id)
            .versions(version)
            .send()
            .await
        {
            Ok(o) => o,
            Err(e) if ec2_not_found(e.code()) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "DescribeLaunchTemplateVersions {id} {version}: {}",
                    describe(&e)
                ))
            }
        };
        let Some(v) = out.launch_template_versions().first() else {
            return Ok(None);
        };
        let Some(d) = v.launch_template_data() else {
            return Ok(Some(VersionInfo::default()));
        };
        let mut info = VersionInfo {
            image_id: d.image_id().map(str::to_string),
            instance_profile: d
                .iam_instance_profile()
                .and_then(|p| p.arn().or(p.name()))
                .map(str::to_string),
            tag_specifications: d
                .tag_specifications()
                .iter()
                .filter_map(|s| Some((s.resource_type()?.as_str().to_string(), ec2_tags(s.tags()))))
                .collect(),
            subnet_ids: vec![],
            security_group_ids: d.security_group_ids().to_vec(),
        };
        for n in d.network_interfaces() {
            info.subnet_ids.extend(n.subnet_id().map(str::to_string));
            info.security_group_ids.extend(n.groups().iter().cloned());
        }
        info.subnet_ids.sort();
        info.subnet_ids.dedup();
        info.security_group_ids.sort();
        info.security_group_ids.dedup();
        Ok(Some(info))
    }

    async fn group(&self, name: &str) -> Result<Option<GroupInfo>, String> {
        let out = self
            .autoscaling
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| format!("DescribeAutoScalingGroups {name}: {}", describe(&e)))?;
        let Some(g) = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
        else {
            return Ok(None);
        };
        let spec = |s: &aws_sdk_autoscaling::types::LaunchTemplateSpecification| {
            Some((
                s.launch_template_id()
                    .or(s.launch_template_name())?
                    .to_string(),
                s.version().unwrap_or("$Default").to_string(),
            ))
        };
        let mut launch_templates: Vec<(String, String)> =
            g.launch_template().and_then(spec).into_iter().collect();
        if let Some(lt) = g.mixed_instances_policy().and_then(|m| m.launch_template()) {
            launch_templates.extend(lt.launch_template_specification().and_then(spec));
            for o in lt.overrides() {
                launch_templates.extend(o.launch_template_specification().and_then(spec));
            }
        }
        let mut seen = Vec::new();
        launch_templates.retain(|t| {
            let new = !seen.contains(t);
            seen.push(t.clone());
            new
        });
        Ok(Some(GroupInfo {
            arn: g.auto_scaling_group_arn().unwrap_or_default().to_string(),
            tags: g
                .tags()
                .iter()
                .filter_map(|t| {
                    Some((
                        t.key()?.to_string(),
                        t.value().unwrap_or_default().to_string(),
                    ))
                })
                .collect(),
            launch_templates,
        }))
    }

    async fn instance_profile_roles(&self, profile: &str) -> Result<Vec<String>, String> {
        // A profile ARN ends `instance-profile/<path><name>`; IAM looks it up
        // by the name alone.
        let name = if profile.starts_with("arn:") {
            profile.rsplit('/').next().unwrap_or(profile)
        } else {
            profile
        };
        let (status, body) = crate::emulator::iam(
            &self.emulator,
            "GetInstanceProfile",
            &[("InstanceProfileName", name)],
        )
        .await?;
        if status != 200 {
            return Err(format!("GetInstanceProfile {name}: HTTP {status}: {body}"));
        }
        role_arns(&body).map_err(|e| format!("GetInstanceProfile {name}: {e}"))
    }

    async fn ses_identity_verified(&self, identity: &str) -> Result<bool, String> {
        let out = self
            .ses
            .get_identity_verification_attributes()
            .identities(identity)
            .send()
            .await
            .map_err(|e| {
                format!(
                    "GetIdentityVerificationAttributes {identity}: {}",
                    describe(&e)
                )
            })?;
        Ok(out
            .verification_attributes()
            .get(identity)
            .is_some_and(|a| {
                a.verification_status() == &aws_sdk_ses::types::VerificationStatus::Success
            }))
    }
}

/// The role ARNs of a GetInstanceProfile answer: each `Roles/member/Arn`.
fn role_arns(xml: &str) -> Result<Vec<String>, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut roles = Vec::new();
    // The current role ARN's text as written (escaped).
    let mut arn = String::new();
    let in_arn = |path: &[String]| path.ends_with(&["Roles".into(), "member".into(), "Arn".into()]);
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => path.push(e.local_name().as_ref().to_string()),
            Event::End(_) => {
                if in_arn(&path) {
                    let text = quick_xml::escape::unescape(&arn).map_err(|e| e.to_string())?;
                    roles.push(text.trim().to_string());
                    arn.clear();
                }
                path.pop();
            }
            Event::Text(t) if in_arn(&path) => arn.push_str(&t),
            Event::GeneralRef(r) if in_arn(&path) => {
                arn.push('&');
                arn.push_str(&r);
                arn.push(';');
            }
            Event::Eof => break,
            _ => {}
        }
    }
    Ok(roles)
}

#[cfg(test)]
#[path = "tests/fake.rs"]
pub(super) mod fake;

#[cfg(test)]
#[path = "tests/lookup.rs"]
mod tests;
