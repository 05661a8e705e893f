//! Step 3, "Create image": one AMI per deployment, found again by its
//! deployment-id tag on every later call (the wait loop and retries), so a
//! deployment never creates a second image. With "stop preparation server"
//! off the server keeps running and is imaged without a reboot (`NoReboot`).
//! Fails on `failed` with the reason.

use super::{Journal, Poll, StepInput};
use crate::aws::ec2::ImageState;
use crate::deps::Deps;
use crate::domain::{ImageTaken, StepName, StepStatus};
use crate::error::StepError;

pub async fn run(deps: &Deps, input: StepInput) -> Result<Poll, StepError> {
    let mut j = Journal::load(deps, &input, StepName::CreateImage).await?;
    if j.status() == StepStatus::Succeeded {
        return Ok(Poll::done());
    }
    j.start().await?;
    let env = j.environment().await?;

    let known = match &j.dep.runtime.image_id {
        Some(id) => deps.ec2.image(id).await?,
        None => deps.ec2.image_of_deployment(&j.dep.deployment_id).await?,
    };
    let image = match known {
        Some(image) => {
            if j.dep.runtime.image_id.is_none() {
                j.dep.runtime.image_id = Some(image.id.clone());
                j.dep.runtime.image_name = image.name.clone();
                j.save_runtime().await?;
                j.action(format!(
                    "Reusing image {} already created for this deployment",
                    image.id
                ))
                .await?;
            }
            image
        }
        None if j.dep.runtime.image_id.is_some() => {
            return Err(StepError::ImageFailed(format!(
                "image {} disappeared",
                j.dep.runtime.image_id.as_deref().unwrap_or_default()
            )))
        }
        None => {
            let name = format!(
                "{}-{}",
                env.environment_id,
                deps.clock.now().format("%Y%m%dT%H%M%SZ")
            );
            let taken = if j.dep.options.stop_preparation_server {
                ImageTaken::FromStoppedServer
            } else {
                ImageTaken::FromRunningServerNoReboot
            };
            // Saved before the call, so the record says how the image was
            // taken even if the answer is lost.
            j.dep.runtime.image_taken = Some(taken);
            j.save_runtime().await?;
            let id = deps
                .ec2
                .create_image(
                    &env.preparation_server_id,
                    &name,
                    &env.environment_id,
                    &j.dep.deployment_id,
                    taken == ImageTaken::FromRunningServerNoReboot,
                )
                .await?;
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
                None => return Ok(Poll::again(input.image.as_ref(), input.base_poll_seconds())),
            }
        }
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
    Ok(Poll::again(input.image.as_ref(), input.base_poll_seconds()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{aws, input, Fixture, DEP, ENV, SERVER};
    use aws_sdk_ec2::operation::create_image::CreateImageOutput;
    use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
    use aws_sdk_ec2::types::ResourceType;
    use aws_smithy_mocks::{mock, Rule};

    type Ec2 = aws_sdk_ec2::Client;

    fn by_tag(found: Option<&'static str>) -> Rule {
        mock!(Ec2::describe_images)
            .match_requests(|r| {
                r.filters().iter().any(|f| {
                    f.name() == Some("tag:autosky:deployment-id") && f.values() == [DEP.to_string()]
                })
            })
            .then_output(move || {
                let mut b = DescribeImagesOutput::builder();
                if let Some(id) = found {
                    b = b.images(aws::image(id, "pending", None));
                }
                b.build()
            })
    }

    fn by_id(state: &'static str, reason: Option<&'static str>) -> Rule {
        mock!(Ec2::describe_images)
            .match_requests(|r| !r.image_ids().is_empty())
            .then_output(move || {
                DescribeImagesOutput::builder()
                    .images(aws::image("ami-new", state, reason))
                    .build()
            })
    }

    /// Matches only a request that tags image and snapshots with Name, environment and deployment id.
    fn create() -> Rule {
        mock!(Ec2::create_image)
            .match_requests(|r| {
                let tagged = |rt: ResourceType| {
                    r.tag_specifications().iter().any(|s| {
                        s.resource_type() == Some(&rt)
                            && [
                                ("Name", "prod-web-20261127T090000Z"),
                                ("autosky:environment", ENV),
                                ("autosky:deployment-id", DEP),
                            ]
                            .iter()
                            .all(|(k, v)| {
                                s.tags()
                                    .iter()
                                    .any(|t| t.key() == Some(k) && t.value() == Some(v))
                            })
                    })
                };
                r.instance_id() == Some(SERVER)
                    && r.name() == Some("prod-web-20261127T090000Z")
                    && tagged(ResourceType::Image)
                    && tagged(ResourceType::Snapshot)
            })
            .then_output(|| CreateImageOutput::builder().image_id("ami-new").build())
    }

    #[tokio::test]
    async fn creates_a_tagged_image_and_finishes_when_available() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let (t, c, a) = (by_tag(None), create(), by_id("available", None));
        let out = run(&f.deps(&[&t, &c, &a], &[], &[]), input())
            .await
            .unwrap();
        assert!(out.done);
        assert_eq!(c.num_calls(), 1);
        let d = f.deployment().await;
        assert_eq!(d.runtime.image_id.as_deref(), Some("ami-new"));
        assert_eq!(d.step(StepName::CreateImage).status, StepStatus::Succeeded);
    }

    #[tokio::test]
    async fn a_retry_reuses_the_image_tagged_with_the_deployment() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let (t, c, a) = (by_tag(Some("ami-new")), create(), by_id("pending", None));
        let out = run(&f.deps(&[&t, &c, &a], &[], &[]), input())
            .await
            .unwrap();
        assert!(!out.done);
        assert_eq!(c.num_calls(), 0);
        assert_eq!(
            f.deployment().await.runtime.image_id.as_deref(),
            Some("ami-new")
        );
    }

    #[tokio::test]
    async fn a_failed_image_fails_with_the_state_reason() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.update(|d| d.runtime.image_id = Some("ami-new".into()))
            .await;
        let a = by_id("failed", Some("Client.SnapshotLimitExceeded"));
        let err = run(&f.deps(&[&a], &[], &[]), input()).await.unwrap_err();
        assert_eq!(err.name(), "ImageFailed");
        assert!(err.message().contains("Client.SnapshotLimitExceeded"));
    }

    #[tokio::test]
    async fn a_pending_image_times_out() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let (t, c, a) = (by_tag(None), create(), by_id("pending", None));
        let deps = f.deps(&[&t, &c, &a], &[], &[]);
        assert!(!run(&deps, input()).await.unwrap().done);
        f.advance(3601);
        assert_eq!(
            run(&deps, input()).await.unwrap_err().name(),
            "ImageTimeout"
        );
        assert_eq!(c.num_calls(), 1);
    }

    const NAME: &str = "prod-web-20261127T090000Z";

    fn no_reboot_is(expected: bool) -> Rule {
        mock!(Ec2::create_image)
            .match_requests(move |r| r.name() == Some(NAME) && r.no_reboot() == Some(expected))
            .then_output(|| CreateImageOutput::builder().image_id("ami-new").build())
    }

    fn actions(d: &crate::domain::Deployment) -> Vec<String> {
        d.step(StepName::CreateImage)
            .actions
            .iter()
            .map(|a| a.message.clone())
            .collect()
    }

    #[tokio::test]
    async fn running_server_is_imaged_without_reboot() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        let (t, c, a) = (by_tag(None), no_reboot_is(true), by_id("available", None));
        assert!(
            run(&f.deps(&[&t, &c, &a], &[], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!(c.num_calls(), 1);
        let d = f.deployment().await;
        assert_eq!(
            d.runtime.image_taken,
            Some(ImageTaken::FromRunningServerNoReboot)
        );
        assert!(
            actions(&d).iter().any(|m| m.contains("is not rebooted")),
            "{:?}",
            actions(&d)
        );
    }

    #[tokio::test]
    async fn stopped_server_is_imaged_with_ec2s_default() {
        let f = Fixture::new(DeploymentOptions {
            stop_preparation_server: true,
            ..Default::default()
        })
        .await;
        let (t, c, a) = (by_tag(None), no_reboot_is(false), by_id("available", None));
        assert!(
            run(&f.deps(&[&t, &c, &a], &[], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!(c.num_calls(), 1);
        let d = f.deployment().await;
        assert_eq!(d.runtime.image_taken, Some(ImageTaken::FromStoppedServer));
    }
}
