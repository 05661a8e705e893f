//! A fake [`Lookup`] for the map's unit tests, and helpers to build a
//! request as the gateway receives it.

use super::*;
use crate::iam::actions::{Call, MapError};
use crate::iam::Check;
use iam_rs::ContextValue;
use std::collections::HashMap;

#[derive(Default)]
pub struct Fake {
    /// Instance id → tags.
    pub instances: HashMap<String, Tags>,
    /// Image id → tags.
    pub images: HashMap<String, Tags>,
    /// Snapshot id → tags.
    pub snapshots: HashMap<String, Tags>,
    pub templates: Vec<TemplateInfo>,
    /// (template id, version number) → data.
    pub versions: HashMap<(String, i64), VersionInfo>,
    pub groups: HashMap<String, GroupInfo>,
    /// Profile (as named) → role ARNs.
    pub profiles: HashMap<String, Vec<String>>,
    pub verified: Vec<String>,
}

impl Lookup for Fake {
    async fn instance_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        Ok(self.instances.get(id).cloned())
    }
    async fn image_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        Ok(self.images.get(id).cloned())
    }
    async fn snapshot_tags(&self, id: &str) -> Result<Option<Tags>, String> {
        Ok(self.snapshots.get(id).cloned())
    }
    async fn launch_template(&self, id_or_name: &str) -> Result<Option<TemplateInfo>, String> {
        Ok(self
            .templates
            .iter()
            .find(|t| t.id == id_or_name || t.name == id_or_name)
            .cloned())
    }
    async fn template_version(
        &self,
        id: &str,
        version: &str,
    ) -> Result<Option<VersionInfo>, String> {
        let Some(t) = self.templates.iter().find(|t| t.id == id) else {
            return Ok(None);
        };
        let n = match version {
            "$Default" => t.default_version,
            "$Latest" => t.latest_version,
            n => n.parse().map_err(|_| format!("bad version {n}"))?,
        };
        Ok(self.versions.get(&(id.to_string(), n)).cloned())
    }
    async fn group(&self, name: &str) -> Result<Option<GroupInfo>, String> {
        Ok(self.groups.get(name).cloned())
    }
    async fn instance_profile_roles(&self, profile: &str) -> Result<Vec<String>, String> {
        self.profiles
            .get(profile)
            .cloned()
            .ok_or_else(|| format!("no instance profile {profile}"))
    }
    async fn ses_identity_verified(&self, identity: &str) -> Result<bool, String> {
        Ok(self.verified.iter().any(|v| v == identity))
    }
}

pub fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The checks for a query-protocol request with this form.
pub async fn map(
    service: &str,
    action: &str,
    form: &HashMap<String, String>,
    lookup: &Fake,
) -> Result<Vec<Check>, MapError> {
    let call = Call {
        service,
        action,
        method: "POST",
        path: "/",
        query: "",
        form,
        body: b"",
    };
    crate::iam::actions::checks(&call, lookup).await
}

/// A context of string values.
pub fn strings(pairs: &[(&str, &str)]) -> Vec<(String, ContextValue)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), ContextValue::String(v.to_string())))
        .collect()
}

/// `aws:TagKeys` with these keys.
pub fn tag_keys(keys: &[&str]) -> (String, ContextValue) {
    (
        "aws:TagKeys".to_string(),
        ContextValue::StringList(keys.iter().map(|k| k.to_string()).collect()),
    )
}

pub fn check(
    action: &str,
    resource: &str,
    context: Vec<(String, ContextValue)>,
    on_behalf_of: Option<&str>,
) -> Check {
    Check {
        action: action.to_string(),
        resource: resource.to_string(),
        context,
        on_behalf_of: on_behalf_of.map(str::to_string),
    }
}
