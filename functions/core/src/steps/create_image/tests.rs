//! Create image against mocked EC2 answers: the image taken once per deployment
//! (fixed name, reuse on a duplicate), with or without a reboot, and waited for.

use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{aws, input, strs, Fixture, DEP, ENV, SERVER};
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::create_image::{CreateImageError, CreateImageOutput};
use aws_sdk_ec2::operation::describe_images::{DescribeImagesError, DescribeImagesOutput};
use aws_sdk_ec2::types::{Image, ResourceType, Tag};
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

/// CreateImage refused: the name is already used by an image of the account.
fn duplicate() -> Rule {
    mock!(Ec2::create_image)
        .match_requests(|r| r.name() == Some(NAME))
        .then_error(|| {
            CreateImageError::generic(
                ErrorMetadata::builder()
                    .code("InvalidAMIName.Duplicate")
                    .message(format!("AMI name {NAME} is already in use by AMI ami-old"))
                    .build(),
            )
        })
}

fn not_found() -> DescribeImagesError {
    DescribeImagesError::generic(
        ErrorMetadata::builder()
            .code("InvalidAMIID.NotFound")
            .message("The image id '[ami-new]' does not exist")
            .build(),
    )
}

/// DescribeImages by name (owner self), answering an image tagged with `deployment`.
fn by_name(deployment: Option<&'static str>) -> Rule {
    mock!(Ec2::describe_images)
        .match_requests(|r| {
            strs(r.owners()) == ["self"]
                && r.filters()
                    .iter()
                    .any(|f| f.name() == Some("name") && f.values() == [NAME.to_string()])
        })
        .then_output(move || {
            let mut b = DescribeImagesOutput::builder();
            if let Some(dep) = deployment {
                b = b.images(
                    Image::builder()
                        .image_id("ami-old")
                        .name(NAME)
                        .state(aws_sdk_ec2::types::ImageState::Pending)
                        .tags(
                            Tag::builder()
                                .key("autosky:deployment-id")
                                .value(dep)
                                .build(),
                        )
                        .build(),
                );
            }
            b.build()
        })
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

#[tokio::test]
async fn the_name_is_fixed_by_the_deployment_start() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    // The step (or its retry) runs ten minutes after the deployment started.
    f.advance(600);
    let (t, c, a) = (by_tag(None), create(), by_id("pending", None));
    assert!(
        !run(&f.deps(&[&t, &c, &a], &[], &[]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!(c.num_calls(), 1);
    assert_eq!(
        f.deployment().await.runtime.image_name.as_deref(),
        Some(NAME)
    );
}

#[tokio::test]
async fn not_found_right_after_create_is_not_a_failure() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let (t, c) = (by_tag(None), create());
    let a = mock!(Ec2::describe_images)
        .match_requests(|r| strs(r.image_ids()) == ["ami-new"])
        .sequence()
        .error(not_found)
        .times(2)
        .output(|| {
            DescribeImagesOutput::builder()
                .images(aws::image("ami-new", "available", None))
                .build()
        })
        .build();
    let deps = f.deps(&[&t, &c, &a], &[], &[]);
    // Created, then not visible by id: on this call and on the next poll.
    assert!(!run(&deps, input()).await.unwrap().done);
    f.advance(30);
    assert!(!run(&deps, input()).await.unwrap().done);
    f.advance(30);
    assert!(run(&deps, input()).await.unwrap().done);
    assert_eq!(c.num_calls(), 1);
    assert_eq!(
        f.deployment().await.step(StepName::CreateImage).status,
        StepStatus::Succeeded
    );
}

#[tokio::test]
async fn an_image_that_never_shows_up_fails_after_the_grace() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let now = f.now();
    f.update(|d| {
        d.runtime.image_id = Some("ami-new".into());
        d.runtime.image_requested_at = Some(now);
    })
    .await;
    let a = mock!(Ec2::describe_images)
        .match_requests(|r| strs(r.image_ids()) == ["ami-new"])
        .then_error(not_found);
    let deps = f.deps(&[&a], &[], &[]);
    assert!(!run(&deps, input()).await.unwrap().done);
    f.advance(VISIBILITY_GRACE_SECONDS + 1);
    let err = run(&deps, input()).await.unwrap_err();
    assert_eq!(err.name(), "ImageFailed");
    assert!(err.message().contains("not visible"), "{}", err.message());
}

#[tokio::test]
async fn duplicate_name_reuses_the_ami() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let (t, c, n) = (by_tag(None), duplicate(), by_name(Some(DEP)));
    let out = run(&f.deps(&[&t, &c, &n], &[], &[]), input())
        .await
        .unwrap();
    assert!(!out.done, "ami-old is still pending");
    assert_eq!((c.num_calls(), n.num_calls()), (1, 1));
    let d = f.deployment().await;
    assert_eq!(d.runtime.image_id.as_deref(), Some("ami-old"));
    assert_eq!(d.runtime.image_name.as_deref(), Some(NAME));
}

#[tokio::test]
async fn duplicate_name_of_an_image_we_did_not_make_is_not_reused() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let (t, c, n) = (
        by_tag(None),
        duplicate(),
        by_name(Some("01JOTHER000000000000000000")),
    );
    let err = run(&f.deps(&[&t, &c, &n], &[], &[]), input())
        .await
        .unwrap_err();
    assert_eq!(err.name(), "ImageFailed");
    assert!(err.message().contains("ami-old"));
    assert_eq!(f.deployment().await.runtime.image_id, None);
}

#[tokio::test]
async fn duplicate_name_not_visible_yet_polls_again_then_gives_up() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let (t, c, n) = (by_tag(None), duplicate(), by_name(None));
    let deps = f.deps(&[&t, &c, &n], &[], &[]);
    assert!(!run(&deps, input()).await.unwrap().done);
    assert_eq!(f.deployment().await.runtime.image_id, None);
    f.advance(VISIBILITY_GRACE_SECONDS + 1);
    assert_eq!(run(&deps, input()).await.unwrap_err().name(), "ImageFailed");
}

/// A rollback takes no image: the restored deployment's, still available,
/// is recorded and the step is not applicable; CreateImage is never sent.
#[tokio::test]
async fn a_rollback_reuses_the_restored_image_when_it_is_still_available() {
    let f = Fixture::rollback(
        DeploymentOptions::default(),
        Some(crate::steps::testkit::rollback_of(5)),
    )
    .await;
    let found = mock!(Ec2::describe_images)
        .match_requests(|r| r.image_ids() == ["ami-5".to_string()])
        .then_output(|| {
            DescribeImagesOutput::builder()
                .images(aws::image("ami-5", "available", None))
                .build()
        });
    let c = create();
    assert!(
        run(&f.deps(&[&found, &c], &[], &[]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!((found.num_calls(), c.num_calls()), (1, 0));
    let d = f.deployment().await;
    assert_eq!(d.runtime.image_id.as_deref(), Some("ami-5"));
    let step = d.step(StepName::CreateImage);
    assert_eq!(step.status, StepStatus::NotApplicable);
    assert_eq!(
        step.actions[0].message,
        "Not applicable: a rollback reuses image ami-5 of deployment 01JR0000000000000000000000 (available)"
    );
}

#[tokio::test]
async fn a_rollback_whose_image_is_gone_fails_and_records_none() {
    let f = Fixture::rollback(
        DeploymentOptions::default(),
        Some(crate::steps::testkit::rollback_of(5)),
    )
    .await;
    let gone = mock!(Ec2::describe_images).then_error(|| {
        DescribeImagesError::generic(
            ErrorMetadata::builder()
                .code("InvalidAMIID.NotFound")
                .message("The image id '[ami-5]' does not exist")
                .build(),
        )
    });
    let err = run(&f.deps(&[&gone], &[], &[]), input()).await.unwrap_err();
    assert_eq!(err.name(), "ImageFailed");
    assert!(
        err.message()
            .contains("image ami-5 of deployment 01JR0000000000000000000000 no longer exists"),
        "{}",
        err.message()
    );
    assert_eq!(f.deployment().await.runtime.image_id, None);
}
