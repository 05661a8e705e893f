//! Step 4, "Create models": the main model (a new launch template version
//! from the current default with the new image, made default; for a rollback
//! the restored deployment's version, checked to exist), the backup
//! model (the previous default, recorded as the rollback target) and removal
//! of old models beyond the retention count — never one that is in use by any
//! group or instance of the account and Region, nor the model of one of the
//! environment's newest `keptDeployments` Succeeded deployments (what a
//! rollback restores) — and of the images no model or instance uses any more
//! (`images.rs`).

use super::{Journal, Poll, StepInput};
use crate::aws::autoscaling::{GroupTemplates, TemplateReference};
use crate::aws::ec2::{InstanceTemplateVersion, TemplateInfo};
use crate::deps::Deps;
use crate::domain::{Environment, RollbackOf, StepName, StepStatus};
use crate::error::StepError;
use std::collections::BTreeSet;

/// The version description that marks a version as this deployment's main model.
pub fn model_description(deployment_id: &str) -> String {
    format!("Autosky deployment {deployment_id}")
}

pub async fn run(deps: &Deps, input: StepInput) -> Result<Poll, StepError> {
    let mut j = Journal::load(deps, &input, StepName::CreateModels).await?;
    if j.status() == StepStatus::Succeeded {
        return Ok(Poll::done());
    }
    j.start().await?;
    j.action("Identifying compatible resources").await?;
    let env = j.environment().await?;
    let image_id =
        j.dep.runtime.image_id.clone().ok_or_else(|| {
            StepError::InvalidState("no image recorded for this deployment".into())
        })?;
    let lt_id = env.launch_template_id.clone();
    let template = deps
        .ec2
        .launch_template(&lt_id)
        .await?
        .ok_or_else(|| StepError::ModelsFailed(format!("launch template {lt_id} not found")))?;
    let description = model_description(&j.dep.deployment_id);
    let versions = deps.ec2.template_versions(&lt_id).await?;
    if let Some(r) = &j.dep.rollback_of {
        // The restored version must still exist: checked before the default
        // changes, so a refusal leaves the template as it was.
        if !versions
            .iter()
            .any(|v| v.number == r.launch_template_version)
        {
            return Err(StepError::ModelsFailed(format!(
                "version {} of launch template {lt_id} (deployment {}) no longer exists: it cannot be restored",
                r.launch_template_version, r.deployment_id
            )));
        }
    }
    // Found by description: CreateLaunchTemplateVersion's ClientToken is not
    // honoured everywhere (the emulator ignores it), the description always is.
    let existing = versions
        .iter()
        .filter(|v| v.description.as_deref() == Some(description.as_str()))
        .map(|v| v.number)
        .max();

    let backup = match j.dep.runtime.backup_version {
        Some(b) => b,
        None => {
            let b = template.default_version;
            j.dep.runtime.backup_version = Some(b);
            j.save_runtime().await?;
            j.action(format!(
                "Backup model: version {b} (the previous default) kept as rollback target"
            ))
            .await?;
            b
        }
    };

    let main = match (&j.dep.rollback_of, existing) {
        (Some(r), _) => r.launch_template_version,
        (None, Some(v)) => v,
        (None, None) => {
            deps.ec2
                .create_template_version(
                    &lt_id,
                    backup,
                    &image_id,
                    &description,
                    &j.dep.deployment_id,
                )
                .await?
        }
    };
    if j.dep.runtime.main_version != Some(main) {
        j.dep.runtime.main_version = Some(main);
        j.save_runtime().await?;
    }
    j.action(match &j.dep.rollback_of {
        Some(r) => format!(
            "Main model: version {main} of {lt_id} with image {image_id}, restored from deployment {}",
            r.deployment_id
        ),
        None => format!("Main model: version {main} of {lt_id} with image {image_id}"),
    })
    .await?;
    if template.default_version != main {
        deps.ec2.set_default_version(&lt_id, main).await?;
    }
    j.action(format!("Version {main} is now the default version"))
        .await?;

    // Remove old models, never one in use anywhere in the account and Region.
    let latest = versions
        .iter()
        .map(|v| v.number)
        .max()
        .unwrap_or(main)
        .max(main);
    let mut all: Vec<i64> = versions.iter().map(|v| v.number).chain([main]).collect();
    all.sort_unstable();
    all.dedup();
    let retention = env.defaults.retention;
    let kept = match kept_models(deps, &env).await {
        Ok(kept) => kept,
        Err(why) => {
            // Housekeeping never fails the deployment; nothing a rollback
            // may need is removed while the kept ones cannot be told.
            tracing::warn!(environment = %env.environment_id, "old models not removed: {why}");
            j.action(format!(
                "Old models and images not removed: {why}; a rollback may still need them"
            ))
            .await?;
            j.end(StepStatus::Succeeded).await?;
            return Ok(Poll::done());
        }
    };
    let kept_versions: BTreeSet<i64> = kept.iter().map(|m| m.launch_template_version).collect();
    let candidates = versions_to_remove(&all, retention, main, backup, &kept_versions);
    let remove = if candidates.is_empty() {
        Some(candidates)
    } else {
        // Main is the default now: `$Default` resolves to it.
        match versions_in_use_anywhere(deps, &template, main, latest).await {
            Ok(in_use) => {
                let spared = &in_use | &kept_versions;
                Some(versions_to_remove(&all, retention, main, backup, &spared))
            }
            Err(why) => {
                // DeleteLaunchTemplateVersions does not check use: when the use
                // of a version cannot be told, none is deleted. Housekeeping does
                // not fail the deployment; the next one removes them.
                tracing::warn!(launch_template = %lt_id, "old models not removed: {why}");
                j.action(format!(
                    "Old models not removed: {why}; no version is deleted while one in use could be among them"
                ))
                .await?;
                None
            }
        }
    };
    match remove {
        None => {}
        Some(remove) if remove.is_empty() => {
            j.action(format!(
                "No old models to remove ({} versions, retention {})",
                all.len(),
                retention.max(2)
            ))
            .await?;
        }
        Some(remove) => {
            let (deleted, failed) = deps.ec2.delete_template_versions(&lt_id, &remove).await?;
            if !deleted.is_empty() {
                j.action(format!("Removed old models: versions {}", join(&deleted)))
                    .await?;
            }
            for (v, reason) in failed {
                j.action(format!("Could not remove version {v}: {reason}"))
                    .await?;
            }
        }
    }
    let mut spared_images: BTreeSet<String> = kept.into_iter().map(|m| m.image_id).collect();
    spared_images.insert(image_id.clone());
    images::remove_unused_images(deps, &mut j, &env.environment_id, &spared_images, &lt_id).await?;
    j.end(StepStatus::Succeeded).await?;
    Ok(Poll::done())
}

/// The models of the environment's newest `keptDeployments` Succeeded
/// deployments on its launch template: a rollback can restore them, so
/// neither their versions nor their images are removed.
async fn kept_models(deps: &Deps, env: &Environment) -> Result<Vec<RollbackOf>, String> {
    let newest = deps
        .store
        .newest_succeeded(&env.environment_id, env.defaults.kept_deployments.max(1))
        .await
        .map_err(|e| format!("could not read the kept deployments ({e})"))?;
    Ok(newest
        .iter()
        .filter_map(RollbackOf::of)
        .filter(|m| m.launch_template_id == env.launch_template_id)
        .collect())
}

/// The versions of `template` in use anywhere in the account and Region: by
/// any group (not only the environment's) and by any instance launched from
/// it that is not terminated. `Err` says why that cannot be told.
async fn versions_in_use_anywhere(
    deps: &Deps,
    template: &TemplateInfo,
    default: i64,
    latest: i64,
) -> Result<BTreeSet<i64>, String> {
    let groups = deps
        .asg
        .all_groups()
        .await
        .map_err(|e| format!("could not list the Auto Scaling groups ({e})"))?;
    let instances = deps
        .ec2
        .template_versions_on_instances(&template.id)
        .await
        .map_err(|e| {
            format!(
                "could not list the instances launched from {} ({e})",
                template.id
            )
        })?;
    versions_in_use(&groups, &instances, template, default, latest)
}

/// Version numbers of `template` that any group refers to (its launch
/// template, its mixed instances policy's template and overrides, its
/// instances; `$Latest` and `$Default` resolved, a missing version being
/// `$Default`) or any instance was launched from, which retention must never
/// delete. `Err` names a reference whose version cannot be told.
pub fn versions_in_use(
    groups: &[GroupTemplates],
    instances: &[InstanceTemplateVersion],
    template: &TemplateInfo,
    default: i64,
    latest: i64,
) -> Result<BTreeSet<i64>, String> {
    // A reference names the template by id, or (where only a name is given)
    // by its name, unique in the Region.
    let ours = |r: &TemplateReference| match &r.launch_template_id {
        Some(id) => *id == template.id,
        None => r.launch_template_name.is_some() && r.launch_template_name == template.name,
    };
    let mut in_use = BTreeSet::new();
    for g in groups {
        for r in g.references.iter().filter(|r| ours(r)) {
            let v = match r.version.as_deref().unwrap_or("$Default") {
                "$Default" => Some(default),
                "$Latest" => Some(latest),
                n => n.parse().ok(),
            };
            in_use.insert(v.ok_or_else(|| {
                format!(
                    "group {} refers to version {:?} of {}",
                    g.name,
                    r.version.as_deref().unwrap_or_default(),
                    template.id
                )
            })?);
        }
    }
    for i in instances {
        // EC2 tags an instance with the number it was launched from.
        let v = i.version.as_deref().and_then(|v| v.parse().ok());
        in_use.insert(v.ok_or_else(|| {
            format!(
                "instance {} has no launch template version number ({:?})",
                i.instance_id,
                i.version.as_deref().unwrap_or_default()
            )
        })?);
    }
    Ok(in_use)
}

/// The versions beyond the newest `retention` (at least 2: main and backup),
/// oldest first, sparing the main model, the backup and every version in use.
pub fn versions_to_remove(
    all: &[i64],
    retention: u32,
    main: i64,
    backup: i64,
    in_use: &BTreeSet<i64>,
) -> Vec<i64> {
    let keep_newest = retention.max(2) as usize;
    let mut sorted = all.to_vec();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    let mut remove: Vec<i64> = sorted
        .into_iter()
        .skip(keep_newest)
        .filter(|v| *v != main && *v != backup && !in_use.contains(v))
        .collect();
    remove.sort_unstable();
    remove
}

fn join(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

mod images;

#[cfg(test)]
mod tests;
