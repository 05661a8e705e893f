//! The EC2 entries of the per-action map: which resources each EC2 call the
//! product makes is authorized on (instances, launch templates, the image and
//! snapshots CreateImage makes, the image and snapshot image cleanup removes)
//! and the condition keys EC2 sets, including
//! the tag-on-create `ec2:CreateTags` authorization CreateImage makes when
//! it is asked to tag. Also the EC2 ARNs, tag context and query-protocol
//! list parsing that the Auto Scaling entries share.

use super::{Call, Lookup, MapError, Tags};
use crate::iam::{Check, ACCOUNT, REGION};
use iam_rs::ContextValue;
use std::collections::HashMap;

pub type Context = Vec<(String, ContextValue)>;

pub async fn checks<L: Lookup>(call: &Call<'_>, lookup: &L) -> Result<Vec<Check>, MapError> {
    let form = call.form;
    match call.action {
        // List actions: no resource-level permissions, so `*`.
        "DescribeInstances"
        | "DescribeImages"
        | "DescribeLaunchTemplates"
        | "DescribeLaunchTemplateVersions" => Ok(vec![check(call.action, "*", region())]),
        "StopInstances" | "StartInstances" => {
            let ids = members(form, "InstanceId.");
            if ids.is_empty() {
                return Err(MapError::Invalid(format!("{}: no InstanceId", call.action)));
            }
            let mut out = Vec::new();
            for id in ids {
                let tags = instance_tags(lookup, &id).await?;
                out.push(check(
                    call.action,
                    &arn("instance", &id),
                    [region(), resource_tags("ec2", &tags)].concat(),
                ));
            }
            Ok(out)
        }
        "CreateImage" => create_image(form, lookup).await,
        // On the image or snapshot itself, with its tags.
        "DeregisterImage" | "DeleteSnapshot" => {
            let image = call.action == "DeregisterImage";
            let (param, kind) = if image {
                ("ImageId", "image")
            } else {
                ("SnapshotId", "snapshot")
            };
            let id = required(call.action, form, param)?;
            let tags = if image {
                lookup.image_tags(id).await
            } else {
                lookup.snapshot_tags(id).await
            };
            let tags = tags
                .map_err(MapError::Invalid)?
                .ok_or_else(|| MapError::NotFound(format!("{kind} {id}")))?;
            Ok(vec![check(
                call.action,
                &global_arn(kind, id),
                [region(), resource_tags("ec2", &tags)].concat(),
            )])
        }
        "CreateLaunchTemplateVersion" | "ModifyLaunchTemplate" | "DeleteLaunchTemplateVersions" => {
            let template = form
                .get("LaunchTemplateId")
                .or_else(|| form.get("LaunchTemplateName"))
                .ok_or_else(|| {
                    MapError::Invalid(format!(
                        "{}: no LaunchTemplateId or LaunchTemplateName",
                        call.action
                    ))
                })?;
            let t = lookup
                .launch_template(template)
                .await
                .map_err(MapError::Invalid)?
                .ok_or_else(|| MapError::NotFound(format!("launch template {template}")))?;
            Ok(vec![check(
                call.action,
                &arn("launch-template", &t.id),
                [region(), resource_tags("ec2", &t.tags)].concat(),
            )])
        }
        other => Err(MapError::NoEntry(format!("ec2:{other}"))),
    }
}

/// CreateImage is authorized on the instance, the new image and its new
/// snapshots (all three required); the image and snapshots carry the
/// request's tags for their type. Tags asked for make EC2 also authorize
/// `ec2:CreateTags` on each tagged type, naming CreateImage.
async fn create_image<L: Lookup>(
    form: &HashMap<String, String>,
    lookup: &L,
) -> Result<Vec<Check>, MapError> {
    let instance = form
        .get("InstanceId")
        .ok_or_else(|| MapError::Invalid("CreateImage: no InstanceId".into()))?;
    let instance_tags = instance_tags(lookup, instance).await?;
    let specs = tag_specifications(form);
    let tags_of = |rt: &str| -> Tags {
        specs
            .iter()
            .filter(|(t, _)| t == rt)
            .flat_map(|(_, tags)| tags.clone())
            .collect()
    };
    if let Some((rt, _)) = specs
        .iter()
        .find(|(rt, _)| rt != "image" && rt != "snapshot")
    {
        return Err(MapError::Invalid(format!(
            "CreateImage: tag specification for resource type {rt:?}"
        )));
    }
    let (image_tags, snapshot_tags) = (tags_of("image"), tags_of("snapshot"));
    let mut out = vec![
        check(
            "CreateImage",
            &global_arn("image", "*"),
            [region(), request_tags(&image_tags)].concat(),
        ),
        check(
            "CreateImage",
            &arn("instance", instance),
            [region(), resource_tags("ec2", &instance_tags)].concat(),
        ),
        check(
            "CreateImage",
            &global_arn("snapshot", "*"),
            [region(), request_tags(&snapshot_tags)].concat(),
        ),
    ];
    for (rt, tags) in [("image", image_tags), ("snapshot", snapshot_tags)] {
        if !tags.is_empty() {
            out.push(create_tags(
                "CreateImage",
                &global_arn(rt, "*"),
                &tags,
                format!("ec2:CreateImage of instance {instance}"),
            ));
        }
    }
    Ok(out)
}

/// The tag-on-create authorization a resource-creating action makes on the
/// caller's behalf: `ec2:CreateTags` naming the creating action.
pub(super) fn create_tags(
    creating_action: &str,
    resource: &str,
    tags: &Tags,
    on_behalf_of: String,
) -> Check {
    let mut c = check(
        "CreateTags",
        resource,
        [
            region(),
            vec![(
                "ec2:CreateAction".to_string(),
                ContextValue::String(creating_action.to_string()),
            )],
            request_tags(tags),
        ]
        .concat(),
    );
    c.on_behalf_of = Some(on_behalf_of);
    c
}

/// A request parameter the action cannot do without.
fn required<'a>(
    action: &str,
    form: &'a HashMap<String, String>,
    name: &str,
) -> Result<&'a String, MapError> {
    form.get(name)
        .ok_or_else(|| MapError::Invalid(format!("{action}: no {name}")))
}

async fn instance_tags<L: Lookup>(lookup: &L, id: &str) -> Result<Tags, MapError> {
    lookup
        .instance_tags(id)
        .await
        .map_err(MapError::Invalid)?
        .ok_or_else(|| MapError::NotFound(format!("instance {id}")))
}

/// An EC2 check (`ec2:<action>`), made by the caller itself.
pub(super) fn check(action: &str, resource: &str, context: Context) -> Check {
    Check {
        action: format!("ec2:{action}"),
        resource: resource.to_string(),
        context,
        on_behalf_of: None,
    }
}

/// `ec2:Region`, which EC2 sets on every action.
pub(super) fn region() -> Context {
    vec![(
        "ec2:Region".to_string(),
        ContextValue::String(REGION.to_string()),
    )]
}

/// The ARN of an account's EC2 resource (`instance`, `launch-template`, …).
pub(super) fn arn(kind: &str, id: &str) -> String {
    format!("arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{id}")
}

/// The ARN of an image or snapshot, which carries no account.
pub(super) fn global_arn(kind: &str, id: &str) -> String {
    format!("arn:aws:ec2:{REGION}::{kind}/{id}")
}

/// A resource's tags as `aws:ResourceTag/<k>` and `<service>:ResourceTag/<k>`.
pub(super) fn resource_tags(service: &str, tags: &Tags) -> Context {
    tags.iter()
        .flat_map(|(k, v)| {
            [
                (
                    format!("aws:ResourceTag/{k}"),
                    ContextValue::String(v.clone()),
                ),
                (
                    format!("{service}:ResourceTag/{k}"),
                    ContextValue::String(v.clone()),
                ),
            ]
        })
        .collect()
}

/// A request's tags as `aws:RequestTag/<k>` and `aws:TagKeys`; none when the
/// request asks for no tags.
pub(super) fn request_tags(tags: &Tags) -> Context {
    if tags.is_empty() {
        return vec![];
    }
    let mut c: Context = tags
        .iter()
        .map(|(k, v)| {
            (
                format!("aws:RequestTag/{k}"),
                ContextValue::String(v.clone()),
            )
        })
        .collect();
    c.push((
        "aws:TagKeys".to_string(),
        ContextValue::StringList(tags.keys().cloned().collect()),
    ));
    c
}

/// A query-protocol list: the values of `<prefix>1`, `<prefix>2`, … in order.
pub(super) fn members(form: &HashMap<String, String>, prefix: &str) -> Vec<String> {
    let mut v: Vec<(usize, &String)> = form
        .iter()
        .filter_map(|(k, val)| Some((k.strip_prefix(prefix)?.parse().ok()?, val)))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s.clone()).collect()
}

/// `TagSpecification.N.ResourceType` with its `TagSpecification.N.Tag.M.Key`
/// / `.Value`, in order.
fn tag_specifications(form: &HashMap<String, String>) -> Vec<(String, Tags)> {
    let mut indexes: Vec<usize> = form
        .keys()
        .filter_map(|k| {
            k.strip_prefix("TagSpecification.")?
                .split('.')
                .next()?
                .parse()
                .ok()
        })
        .collect();
    indexes.sort();
    indexes.dedup();
    indexes
        .into_iter()
        .map(|n| {
            let p = format!("TagSpecification.{n}.");
            let mut tags = Tags::new();
            let mut m = 1;
            while let Some(k) = form.get(&format!("{p}Tag.{m}.Key")) {
                let v = form
                    .get(&format!("{p}Tag.{m}.Value"))
                    .cloned()
                    .unwrap_or_default();
                tags.insert(k.clone(), v);
                m += 1;
            }
            let rt = form
                .get(&format!("{p}ResourceType"))
                .cloned()
                .unwrap_or_default();
            (rt, tags)
        })
        .collect()
}

#[cfg(test)]
#[path = "tests/ec2.rs"]
mod tests;
