//! What a StartInstanceRefresh is authorized for on the caller's behalf:
//! launching from each launch template version the refresh will launch
//! (`ec2:RunInstances` on the template and on every resource the launch
//! uses or creates), tagging what the version's tag specifications tag
//! (`ec2:CreateTags` naming RunInstances) and passing the roles of its
//! instance profile to EC2 (`iam:PassRole`). The versions are the request's
//! desired configuration, or, without one, the group's own.

use super::ec2::{self, request_tags, resource_tags, Context};
use super::{GroupInfo, Lookup, MapError, Tags};
use crate::iam::Check;
use iam_rs::ContextValue;
use std::collections::HashMap;

const DESIRED_TEMPLATE: &str = "DesiredConfiguration.LaunchTemplate.";
const MIXED_TEMPLATE: &str =
    "DesiredConfiguration.MixedInstancesPolicy.LaunchTemplate.LaunchTemplateSpecification.";
const OVERRIDES: &str =
    "DesiredConfiguration.MixedInstancesPolicy.LaunchTemplate.Overrides.member.";

/// The checks for every launch template version the refresh launches from.
pub async fn checks<L: Lookup>(
    form: &HashMap<String, String>,
    group: &GroupInfo,
    lookup: &L,
) -> Result<Vec<Check>, MapError> {
    let mut out = Vec::new();
    for (template, version) in templates(form, group) {
        out.extend(template_checks(&template, &version, lookup).await?);
    }
    Ok(out)
}

/// `(template id or name, version)` the refresh launches from, without
/// repeats: the request's desired configuration (its launch template, or its
/// mixed instances policy's template and overrides), else the group's own.
/// A specification without a version launches from the default version.
fn templates(form: &HashMap<String, String>, group: &GroupInfo) -> Vec<(String, String)> {
    let spec = |prefix: &str| -> Option<(String, String)> {
        let t = form
            .get(&format!("{prefix}LaunchTemplateId"))
            .or_else(|| form.get(&format!("{prefix}LaunchTemplateName")))?;
        let v = form
            .get(&format!("{prefix}Version"))
            .cloned()
            .unwrap_or_else(|| "$Default".to_string());
        Some((t.clone(), v))
    };
    let mut found: Vec<(String, String)> = [spec(DESIRED_TEMPLATE), spec(MIXED_TEMPLATE)]
        .into_iter()
        .flatten()
        .collect();
    let mut overrides: Vec<usize> = form
        .keys()
        .filter_map(|k| k.strip_prefix(OVERRIDES)?.split('.').next()?.parse().ok())
        .collect();
    overrides.sort();
    overrides.dedup();
    found.extend(
        overrides
            .into_iter()
            .filter_map(|n| spec(&format!("{OVERRIDES}{n}.LaunchTemplateSpecification."))),
    );
    // Without a desired configuration naming a template, the refresh
    // launches from the group's own.
    if found.is_empty() {
        found = group.launch_templates.clone();
    }
    let mut seen = Vec::new();
    found.retain(|t| {
        let new = !seen.contains(t);
        seen.push(t.clone());
        new
    });
    found
}

async fn template_checks<L: Lookup>(
    template: &str,
    version: &str,
    lookup: &L,
) -> Result<Vec<Check>, MapError> {
    let t = lookup
        .launch_template(template)
        .await
        .map_err(MapError::Invalid)?
        .ok_or_else(|| MapError::NotFound(format!("launch template {template}")))?;
    let v = lookup
        .template_version(&t.id, version)
        .await
        .map_err(MapError::Invalid)?
        .ok_or_else(|| MapError::NotFound(format!("launch template {} version {version}", t.id)))?;
    let on_behalf_of = format!(
        "autoscaling:StartInstanceRefresh with launch template {} version {version}",
        t.id
    );
    let lt_arn = ec2::arn("launch-template", &t.id);
    // Every RunInstances resource type supports both keys: the launch comes
    // from this template.
    let from_template: Context = vec![
        (
            "ec2:LaunchTemplate".to_string(),
            ContextValue::String(lt_arn.clone()),
        ),
        (
            "ec2:IsLaunchTemplateResource".to_string(),
            ContextValue::Boolean(true),
        ),
    ];
    let tags_of = |rt: &str| -> Tags {
        v.tag_specifications
            .iter()
            .filter(|(t, _)| t == rt)
            .flat_map(|(_, tags)| tags.clone())
            .collect()
    };
    let run = |resource: String, extra: Context| {
        let mut c = ec2::check(
            "RunInstances",
            &resource,
            [ec2::region(), from_template.clone(), extra].concat(),
        );
        c.on_behalf_of = Some(on_behalf_of.clone());
        c
    };

    let mut out = vec![run(lt_arn.clone(), resource_tags("ec2", &t.tags))];
    let image = v.image_id.as_deref().unwrap_or("*");
    out.push(run(ec2::global_arn("image", image), vec![]));
    // What the launch creates carries the version's tags for its type.
    for rt in ["instance", "volume", "network-interface"] {
        out.push(run(ec2::arn(rt, "*"), request_tags(&tags_of(rt))));
    }
    for (kind, ids) in [
        ("subnet", &v.subnet_ids),
        ("security-group", &v.security_group_ids),
    ] {
        if ids.is_empty() {
            out.push(run(ec2::arn(kind, "*"), vec![]));
        }
        for id in ids {
            out.push(run(ec2::arn(kind, id), vec![]));
        }
    }

    let mut tagged: Vec<&str> = Vec::new();
    for (rt, _) in &v.tag_specifications {
        if !tagged.contains(&rt.as_str()) {
            tagged.push(rt);
        }
    }
    for rt in tagged {
        out.push(ec2::create_tags(
            "RunInstances",
            &ec2::arn(rt, "*"),
            &tags_of(rt),
            on_behalf_of.clone(),
        ));
    }

    if let Some(profile) = &v.instance_profile {
        for role in lookup
            .instance_profile_roles(profile)
            .await
            .map_err(MapError::Invalid)?
        {
            out.push(Check {
                action: "iam:PassRole".to_string(),
                resource: role,
                context: vec![(
                    "iam:PassedToService".to_string(),
                    ContextValue::String("ec2.amazonaws.com".to_string()),
                )],
                on_behalf_of: Some(on_behalf_of.clone()),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "tests/launch.rs"]
mod tests;
