//! Images are models too: after the old versions are gone, Create models
//! deregisters the environment's images that nothing uses any more and
//! deletes their snapshots. Candidates are the images the product made for
//! the environment (both Autosky tags), a failed or cancelled deployment's
//! included; never the current deployment's image nor a kept deployment's
//! (what a rollback restores), one a version of any
//! launch template of the Region uses (the versions retention keeps among
//! them), nor one a launch configuration names, nor one an instance that is
//! not terminated runs.

use super::super::Journal;
use crate::aws::ec2::{ImageUses, OwnedImage, SnapshotDeletion};
use crate::deps::Deps;
use crate::domain::ImageRemoval;
use crate::error::StepError;
use std::collections::BTreeSet;

/// Image states in which an image is still being made: not removed yet.
const IN_PROGRESS: [&str; 2] = ["pending", "transient"];

pub async fn remove_unused_images(
    deps: &Deps,
    j: &mut Journal<'_>,
    environment_id: &str,
    spared: &BTreeSet<String>,
    launch_template_id: &str,
) -> Result<(), StepError> {
    // A removal a previous attempt began: its image may already be
    // deregistered and no longer show its snapshots.
    for (image, removal) in j.dep.runtime.removing_images.clone() {
        finish(deps, j, &image, &removal).await?;
    }
    let images = match deps.ec2.environment_images(environment_id).await {
        Ok(i) => i,
        Err(e) => return not_removed(j, format!("could not list the images ({e})")).await,
    };
    let candidates = candidates(&images, spared);
    if candidates.is_empty() {
        return Ok(());
    }
    let ids: BTreeSet<String> = candidates.iter().map(|i| i.id.clone()).collect();
    let uses = match in_use(deps, &ids).await {
        Ok(u) => u,
        Err(why) => return not_removed(j, why).await,
    };
    for image in candidates {
        match uses.get(&image.id) {
            Some(by) => {
                // Kept by a version of the environment's own template is
                // retention at work; any other use is worth knowing.
                let own = format!(" of {launch_template_id}");
                if !by.iter().any(|u| u.ends_with(&own)) {
                    j.action(format!(
                        "Kept image {} ({}): in use by {}",
                        image.id,
                        deployment(image.deployment_id.as_deref()),
                        by.join(", ")
                    ))
                    .await?;
                }
            }
            None => {
                let removal = ImageRemoval {
                    deployment_id: image.deployment_id.clone(),
                    snapshot_ids: image.snapshot_ids.clone(),
                };
                j.dep
                    .runtime
                    .removing_images
                    .insert(image.id.clone(), removal.clone());
                j.save_runtime().await?;
                finish(deps, j, &image.id, &removal).await?;
            }
        }
    }
    Ok(())
}

/// The images that may go: made by the product for the environment (both
/// tags), not `spared` (the current deployment's, the kept deployments'), and
/// not still being made.
pub fn candidates<'a>(images: &'a [OwnedImage], spared: &BTreeSet<String>) -> Vec<&'a OwnedImage> {
    images
        .iter()
        .filter(|i| i.deployment_id.is_some())
        .filter(|i| !spared.contains(&i.id))
        .filter(|i| !IN_PROGRESS.contains(&i.state.as_str()))
        .collect()
}

/// Where each of `images` is used: versions of any launch template of the
/// Region, instances of the Region, launch configurations of the Region (which
/// groups launch from). `Err` says why that cannot be told.
async fn in_use(deps: &Deps, images: &BTreeSet<String>) -> Result<ImageUses, String> {
    let mut uses = deps
        .ec2
        .images_in_launch_templates(images)
        .await
        .map_err(|e| format!("could not list the launch template versions ({e})"))?;
    let on_instances = deps
        .ec2
        .images_on_instances(images)
        .await
        .map_err(|e| format!("could not list the instances ({e})"))?;
    let in_launch_configurations = deps
        .asg
        .images_in_launch_configurations(images)
        .await
        .map_err(|e| format!("could not list the launch configurations ({e})"))?;
    for (image, by) in on_instances.into_iter().chain(in_launch_configurations) {
        uses.entry(image).or_default().extend(by);
    }
    Ok(uses)
}

/// Deregisters the image and deletes its snapshots (what is already gone
/// counts as done; a snapshot another image uses is kept), records it, and
/// forgets the removal.
async fn finish(
    deps: &Deps,
    j: &mut Journal<'_>,
    image: &str,
    removal: &ImageRemoval,
) -> Result<(), StepError> {
    let who = deployment(removal.deployment_id.as_deref());
    let outcome = remove(deps, image, &removal.snapshot_ids).await;
    j.dep.runtime.removing_images.remove(image);
    j.save_runtime().await?;
    match outcome {
        Err(e) => {
            // Housekeeping does not fail the deployment; the next one retries.
            j.action(format!("Could not remove image {image} ({who}): {e}"))
                .await
        }
        Ok((deleted, kept)) => {
            j.action(if deleted.is_empty() {
                format!("Removed image {image} ({who})")
            } else {
                format!(
                    "Removed image {image} and its snapshots {} ({who})",
                    deleted.join(", ")
                )
            })
            .await?;
            for (snapshot, why) in kept {
                j.action(format!(
                    "Kept snapshot {snapshot} of removed image {image}: {why}"
                ))
                .await?;
            }
            Ok(())
        }
    }
}

/// Deleted snapshots, and those kept with the reason.
type Snapshots = (Vec<String>, Vec<(String, String)>);

async fn remove(deps: &Deps, image: &str, snapshots: &[String]) -> Result<Snapshots, StepError> {
    // A snapshot cannot go while a registered image uses it.
    deps.ec2.deregister_image(image).await?;
    let (mut deleted, mut kept) = (Vec::new(), Vec::new());
    for s in snapshots {
        match deps.ec2.delete_snapshot(s).await {
            Ok(SnapshotDeletion::Deleted | SnapshotDeletion::AlreadyGone) => {
                deleted.push(s.clone())
            }
            Ok(SnapshotDeletion::InUse(why)) => kept.push((s.clone(), why)),
            Err(e) => kept.push((s.clone(), e.to_string())),
        }
    }
    Ok((deleted, kept))
}

fn deployment(id: Option<&str>) -> String {
    format!("deployment {}", id.unwrap_or("unknown"))
}

async fn not_removed(j: &mut Journal<'_>, why: String) -> Result<(), StepError> {
    tracing::warn!("old images not removed: {why}");
    j.action(format!(
        "Old images not removed: {why}; no image is deregistered while one in use could be among them"
    ))
    .await
}
