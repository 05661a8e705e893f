//! Step 3, "Create image": one AMI per deployment. Its name is fixed by the
//! deployment (environment and deployment start time), and it is found again
//! by its deployment-id tag, by its id, or — when CreateImage answers that the
//! name is in use — by its name, so a retried or repeated call never creates
//! a second image. New AMIs may be invisible to DescribeImages for a while
//! (EC2 is eventually consistent): that is waited out for a bounded time.
//! With "stop preparation server" off the server keeps running and is imaged
//! without a reboot (`NoReboot`). Fails on `failed` with the reason.
//! A rollback takes no image: the step is not applicable and records the
//! restored deployment's image, checked to be still `available`.

use super::{wake, Journal, Poll, StepInput};
use crate::aws::ec2::{CreatedImage, ImageInfo, ImageState};
use crate::deps::Deps;
use crate::domain::{ImageTaken, RollbackOf, StepName, StepStatus};
use crate::error::StepError;
use chrono::{DateTime, Utc};

/// How long an image this deployment asked for may stay invisible to
/// DescribeImages before the step gives up (AWS advises describing again with
/// waits growing "up to a few minutes").
pub const VISIBILITY_GRACE_SECONDS: i64 = 300;

/// The image's name: the environment and the deployment's start (UTC), the
/// same on every call of the same deployment.
pub fn image_name(environment_id: &str, started: DateTime<Utc>) -> String {
    format!("{environment_id}-{}", started.format("%Y%m%dT%H%M%SZ"))
}

pub async fn run(deps: &Deps, input: StepInput) -> Result<Poll, StepError> {
    let mut j = Journal::load(deps, &input, StepName::CreateImage).await?;
    if j.status() == StepStatus::Succeeded {
        return Ok(Poll::done());
    }
    if let Some(r) = j.dep.rollback_of.clone() {
        return reuse_for_rollback(deps, &mut j, &r).await;
    }
    j.start().await?;
    let env = j.environment().await?;
    // Woken by the image's state change ("EC2 AMI State Change"); an image
    // found by name but not visible yet has no id to be woken by.
    let again =
        |id: Option<&str>| -> Result<Poll, StepError> { Ok(Poll::waiting_on(id.map(wake::image))) };

    let image = match j.dep.runtime.image_id.clone() {
        Some(id) => match deps.ec2.image(&id).await? {
            Some(image) => image,
            None => {
                not_visible_yet(deps, &j, &format!("image {id}"))?;
                return again(Some(&id));
            }
        },
        None => match deps.ec2.image_of_deployment(&j.dep.deployment_id).await? {
            Some(image) => {
                reuse(&mut j, &image, "already created for this deployment").await?;
                image
            }
            None => {
                let name = image_name(
                    &env.environment_id,
                    j.dep.started_at.unwrap_or(j.dep.created_at),
                );
                let taken = if j.dep.options.stop_preparation_server {
                    ImageTaken::FromStoppedServer
                } else {
                    ImageTaken::FromRunningServerNoReboot
                };
                // Saved before the call, so a retry after a crash still knows
                // when the image was asked for and how it was taken.
                if j.dep.runtime.image_requested_at.is_none() {
                    j.dep.runtime.image_requested_at = Some(deps.clock.now());
                    j.dep.runtime.image_taken = Some(taken);
                    j.save_runtime().await?;
                }
                let created = deps
                    .ec2
                    .create_image(
                        &env.preparation_server_id,
                        &name,
                        &env.environment_id,
                        &j.dep.deployment_id,
                        taken == ImageTaken::FromRunningServerNoReboot,
                    )
                    .await?;
                match created {
                    CreatedImage::Created(id) => {
                        j.dep.runtime.image_id = Some(id.clone());
                        j.dep.runtime.image_name = Some(name.clone());
                        j.save_runtime().await?;
                        j.action(format!(
                            "Creating image {name} ({id}) of preparation server {}: {taken}",
                            env.preparation_server_id
                        ))
                        .await?;
                        match deps.ec2.image(&id).await? {
                            Some(i) => i,
                            None => return again(Some(&id)),
                        }
                    }
                    CreatedImage::NameInUse => match found_by_name(deps, &mut j, &name).await? {
                        Some(image) => image,
                        None => return again(None),
                    },
                }
            }
        },
    };

    if image.state == ImageState::Available {
        j.action(format!("Image {} is available", image.id)).await?;
        j.end(StepStatus::Succeeded).await?;
        return Ok(Poll::done());
    }
    if image.state.is_failed() {
        return Err(StepError::ImageFailed(format!(
            "image {} is {}: {}",
            image.id,
            image.state,
            image.state_reason.as_deref().unwrap_or("no reason given")
        )));
    }
    if j.elapsed_seconds() > env.defaults.image_timeout_seconds as i64 {
        return Err(StepError::ImageTimeout(format!(
            "image {} still {} after {} s",
            image.id, image.state, env.defaults.image_timeout_seconds
        )));
    }
    again(Some(&image.id))
}

/// Records an image this deployment made earlier as its image.
async fn reuse(j: &mut Journal<'_>, image: &ImageInfo, why: &str) -> Result<(), StepError> {
    j.dep.runtime.image_id = Some(image.id.clone());
    j.dep.runtime.image_name = image.name.clone();
    j.save_runtime().await?;
    j.action(format!("Reusing image {} {why}", image.id)).await
}

/// CreateImage said the name is in use: the image is this deployment's own
/// (a call whose answer was lost) if it carries our deployment-id tag, and
/// is then reused. `None`: not visible yet, poll again.
async fn found_by_name(
    deps: &Deps,
    j: &mut Journal<'_>,
    name: &str,
) -> Result<Option<ImageInfo>, StepError> {
    match deps.ec2.image_by_name(name).await? {
        Some(image) if image.deployment_id.as_deref() == Some(j.dep.deployment_id.as_str()) => {
            reuse(
                j,
                &image,
                "already created for this deployment (found by its name)",
            )
            .await?;
            Ok(Some(image))
        }
        Some(image) => Err(StepError::ImageFailed(format!(
            "image name {name} is already used by {}, which this deployment did not create",
            image.id
        ))),
        None => {
            not_visible_yet(deps, j, &format!("the image named {name}"))?;
            j.action(format!(
                "Image name {name} is in use but its image is not visible yet; looking again"
            ))
            .await?;
            Ok(None)
        }
    }
}

/// An image this deployment asked for that DescribeImages does not show:
/// fine within the grace period after the request (eventual consistency),
/// a failure after it.
fn not_visible_yet(deps: &Deps, j: &Journal<'_>, what: &str) -> Result<(), StepError> {
    let asked = j
        .dep
        .runtime
        .image_requested_at
        .or(j.dep.step(StepName::CreateImage).started_at)
        .unwrap_or_else(|| deps.clock.now());
    let waited = (deps.clock.now() - asked).num_seconds();
    if waited > VISIBILITY_GRACE_SECONDS {
        return Err(StepError::ImageFailed(format!(
            "{what} is not visible to DescribeImages {waited} s after CreateImage"
        )));
    }
    Ok(())
}

/// A rollback's image is the restored deployment's: it must still be
/// `available` (deregistered, or any other state, fails the deployment before
/// Create models changes anything).
async fn reuse_for_rollback(
    deps: &Deps,
    j: &mut Journal<'_>,
    r: &RollbackOf,
) -> Result<Poll, StepError> {
    j.start().await?;
    let image = deps.ec2.image(&r.image_id).await?;
    match image.as_ref().map(|i| &i.state) {
        Some(ImageState::Available) => {}
        state => {
            return Err(StepError::ImageFailed(format!(
                "image {} of deployment {} {}: it cannot be restored",
                r.image_id,
                r.deployment_id,
                state.map_or("no longer exists".into(), |s| format!("is {s}"))
            )))
        }
    }
    if j.dep.runtime.image_id.as_deref() != Some(r.image_id.as_str()) {
        j.dep.runtime.image_id = Some(r.image_id.clone());
        j.save_runtime().await?;
    }
    let why = format!(
        "a rollback reuses image {} of deployment {} (available)",
        r.image_id, r.deployment_id
    );
    j.not_applicable(&why).await
}

#[cfg(test)]
mod tests;
