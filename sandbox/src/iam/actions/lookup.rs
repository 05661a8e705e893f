//! What the map reads from the emulator to authorize a call: the tags on a
//! resource, a launch template version's data, a group's ARN and launch
//! template, an instance profile's role, whether an SES identity is verified.

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
    /// The resource types of its `TagSpecifications`.
    pub tag_resource_types: Vec<String>,
    pub subnet_ids: Vec<String>,
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
    /// By id (`lt-…`) or name.
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<TemplateInfo>, String>;
    /// `version` is a number, `$Default` or `$Latest`.
    async fn template_version(&self, id: &str, version: &str)
        -> Result<Option<VersionInfo>, String>;
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
}

impl EmulatorLookup {
    pub fn new(emulator_url: &str, _config: &aws_config::SdkConfig) -> Self {
        Self {
            emulator: emulator_url.to_string(),
        }
    }
}
