//! Image cleanup against mocked EC2 answers: which images go (with their
//! snapshots), which stay and why, and retries that find things gone.
//!
//! The world: versions 1..=8 of `LT`, version 9 made with `ami-new`;
//! retention 2 and the environment's group on version 2, so 1 and 3..=7 are
//! deleted and 2, 8 and 9 remain (using `ami-2`, `ami-8`, `ami-new`).

use super::*;
use crate::domain::ImageRemoval;
use aws_sdk_ec2::operation::delete_snapshot::{DeleteSnapshotError, DeleteSnapshotOutput};
use aws_sdk_ec2::operation::deregister_image::{DeregisterImageError, DeregisterImageOutput};
use aws_sdk_ec2::operation::describe_images::DescribeImagesOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesError;
use aws_sdk_ec2::types as ec2;

const OTHER_LT: &str = "lt-0other";

/// An image tagged with the environment and (if given) a deployment, with
/// `state` and `snapshots` in its block device mappings.
fn image(id: &str, deployment: Option<&str>, state: &str, snapshots: &[&str]) -> ec2::Image {
    let tag = |k: &str, v: &str| ec2::Tag::builder().key(k).value(v).build();
    let mut b = ec2::Image::builder()
        .image_id(id)
        .state(ec2::ImageState::from(state))
        .tags(tag(
            crate::aws::ec2::TAG_ENVIRONMENT,
            crate::steps::testkit::ENV,
        ));
    if let Some(d) = deployment {
        b = b.tags(tag(crate::aws::ec2::TAG_DEPLOYMENT, d));
    }
    for s in snapshots {
        b = b.block_device_mappings(
            ec2::BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(ec2::EbsBlockDevice::builder().snapshot_id(*s).build())
                .build(),
        );
    }
    b.build()
}

/// The environment's images: one per case.
fn environment_images() -> Vec<ec2::Image> {
    vec![
        // Version 1's image: its version is deleted now.
        image("ami-1", Some("dep-1"), "available", &["snap-1a", "snap-1b"]),
        // Version 2's: the version remains.
        image("ami-2", Some("dep-2"), "available", &["snap-2"]),
        // Used by a version of another template.
        image("ami-3", Some("dep-3"), "available", &["snap-3"]),
        // Run by an instance.
        image("ami-4", Some("dep-4"), "available", &["snap-4"]),
        // Named by a launch configuration.
        image("ami-5", Some("dep-5"), "available", &["snap-5"]),
        // A failed deployment's image that never became a version.
        image("ami-failed", Some("dep-f"), "failed", &["snap-f"]),
        // Version 8's, and this deployment's own.
        image("ami-8", Some("dep-8"), "available", &["snap-8"]),
        image("ami-new", Some(DEP), "available", &["snap-new"]),
        // Not made by the product (no deployment tag), still being made.
        image("ami-manual", None, "available", &["snap-m"]),
        image("ami-pending", Some("dep-p"), "pending", &[]),
    ]
}

fn tagged_environment(r: &aws_sdk_ec2::operation::describe_images::DescribeImagesInput) -> bool {
    strs(r.owners()) == ["self"]
        && r.filters().iter().any(|f| {
            f.name() == Some(&format!("tag:{}", crate::aws::ec2::TAG_ENVIRONMENT))
                && strs(f.values()) == [crate::steps::testkit::ENV]
        })
}

/// The values of the request's `name` filter.
fn filter_values<'a>(filters: &'a [ec2::Filter], name: &str) -> Vec<&'a str> {
    filters
        .iter()
        .find(|f| f.name() == Some(name))
        .map(|f| strs(f.values()))
        .unwrap_or_default()
}

struct Images {
    world: World,
    images: Rule,
    templates: Rule,
    versions: Rule,
    instances: Rule,
    deregister: Rule,
    delete: Rule,
}

/// The answers for the environment's images: every template of the Region
/// (`LT` and `OTHER_LT`, version 4 of which uses `ami-3`), the remaining
/// versions by `image-id` filter, instance `i-standalone` running `ami-4`,
/// launch configuration `legacy-lc` naming `ami-5`.
/// DeregisterImage and DeleteSnapshot succeed.
fn images_world(images: Vec<ec2::Image>) -> Images {
    let mut world = world_with(
        false,
        vec![aws::group(2, "2", &[], LT)],
        vec![],
        &["1", "3", "4", "5", "6", "7"],
    );
    world.launch_configurations = mock!(Asg::describe_launch_configurations)
        .match_requests(|r| r.launch_configuration_names().is_empty())
        .then_output(|| {
            aws_sdk_autoscaling::operation::describe_launch_configurations::DescribeLaunchConfigurationsOutput::builder()
                .launch_configurations(
                    asg::LaunchConfiguration::builder()
                        .launch_configuration_name("legacy-lc")
                        .image_id("ami-5")
                        .build(),
                )
                .build()
        });
    Images {
        world,
        images: mock!(Ec2::describe_images)
            .match_requests(tagged_environment)
            .then_output(move || {
                DescribeImagesOutput::builder()
                    .set_images(Some(images.clone()))
                    .build()
            }),
        templates: mock!(Ec2::describe_launch_templates)
            .match_requests(|r| r.launch_template_ids().is_empty())
            .then_output(|| {
                let t = |id: &str| {
                    ec2::LaunchTemplate::builder()
                        .launch_template_id(id)
                        .build()
                };
                DescribeLaunchTemplatesOutput::builder()
                    .launch_templates(t(LT))
                    .launch_templates(t(OTHER_LT))
                    .build()
            }),
        versions: mock!(Ec2::describe_launch_template_versions)
            .match_requests(|r| !filter_values(r.filters(), "image-id").is_empty())
            .then_compute_output(|r| {
                let wanted = filter_values(r.filters(), "image-id");
                let versions: &[(i64, &str)] = match r.launch_template_id() {
                    Some(LT) => &[(2, "ami-2"), (8, "ami-8"), (9, "ami-new")],
                    Some(OTHER_LT) => &[(4, "ami-3")],
                    _ => &[],
                };
                DescribeLaunchTemplateVersionsOutput::builder()
                    .set_launch_template_versions(Some(
                        versions
                            .iter()
                            .filter(|(_, i)| wanted.contains(i))
                            .map(|(n, i)| {
                                ec2::LaunchTemplateVersion::builder()
                                    .version_number(*n)
                                    .launch_template_data(
                                        ec2::ResponseLaunchTemplateData::builder()
                                            .image_id(*i)
                                            .build(),
                                    )
                                    .build()
                            })
                            .collect(),
                    ))
                    .build()
            }),
        instances: mock!(Ec2::describe_instances)
            .match_requests(|r| {
                !filter_values(r.filters(), "image-id").is_empty()
                    && filter_values(r.filters(), "instance-state-name")
                        == ["pending", "running", "stopping", "stopped"]
            })
            .then_compute_output(|r| {
                let wanted = filter_values(r.filters(), "image-id");
                let mut out = DescribeInstancesOutput::builder();
                if wanted.contains(&"ami-4") {
                    out = out.reservations(
                        ec2::Reservation::builder()
                            .instances(
                                ec2::Instance::builder()
                                    .instance_id("i-standalone")
                                    .image_id("ami-4")
                                    .build(),
                            )
                            .build(),
                    );
                }
                out.build()
            }),
        deregister: mock!(Ec2::deregister_image)
            .match_requests(|r| matches!(r.image_id(), Some("ami-1" | "ami-failed")))
            .then_output(|| DeregisterImageOutput::builder().r#return(true).build()),
        delete: mock!(Ec2::delete_snapshot)
            .match_requests(|r| matches!(r.snapshot_id(), Some("snap-1a" | "snap-1b" | "snap-f")))
            .then_output(|| DeleteSnapshotOutput::builder().build()),
    }
}

impl Images {
    fn deps(&self, f: &Fixture) -> Deps {
        self.world.deps_with(
            f,
            &[
                &self.images,
                &self.templates,
                &self.versions,
                &self.instances,
                &self.deregister,
                &self.delete,
            ],
        )
    }
}

fn ec2_error(code: &str) -> ErrorMetadata {
    ErrorMetadata::builder()
        .code(code)
        .message(format!("{code} (mocked)"))
        .build()
}

#[tokio::test]
async fn removes_unused_images_with_their_snapshots_and_keeps_those_in_use() {
    let f = fixture(2).await;
    let w = images_world(environment_images());
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.deregister.num_calls(), 2);
    assert_eq!(w.delete.num_calls(), 3);
    // Every template of the Region was asked about the candidates.
    assert_eq!(w.versions.num_calls(), 2);
    let d = f.deployment().await;
    let log = log(&d);
    for expected in [
        "Removed image ami-1 and its snapshots snap-1a, snap-1b (deployment dep-1)",
        "Removed image ami-failed and its snapshots snap-f (deployment dep-f)",
        "Kept image ami-3 (deployment dep-3): in use by version 4 of lt-0other",
        "Kept image ami-4 (deployment dep-4): in use by instance i-standalone",
        "Kept image ami-5 (deployment dep-5): in use by launch configuration legacy-lc",
    ] {
        assert!(log.contains(&expected.to_string()), "{expected}: {log:?}");
    }
    // Retention's own versions, the current image, an image the product did
    // not make and one still being made are not even mentioned.
    let image_actions: Vec<&String> = log
        .iter()
        .filter(|a| a.contains(" image ") && !a.starts_with("Main model"))
        .collect();
    assert_eq!(image_actions.len(), 5, "{log:?}");
    for quiet in ["ami-2", "ami-8", "ami-new", "ami-manual", "ami-pending"] {
        assert!(
            !image_actions.iter().any(|a| a.contains(quiet)),
            "{quiet}: {log:?}"
        );
    }
    assert!(d.runtime.removing_images.is_empty());
    assert_eq!(d.step(StepName::CreateModels).status, StepStatus::Succeeded);
}

/// A retried step: EC2 no longer knows the image or the snapshots. Both
/// count as done.
#[tokio::test]
async fn what_is_already_gone_counts_as_removed() {
    let f = fixture(2).await;
    let w = images_world(environment_images());
    let not_found = mock!(Ec2::deregister_image)
        .match_requests(|r| r.image_id() == Some("ami-1"))
        .then_error(|| DeregisterImageError::generic(ec2_error("InvalidAMIID.NotFound")));
    let unavailable = mock!(Ec2::deregister_image)
        .match_requests(|r| r.image_id() == Some("ami-failed"))
        .then_error(|| DeregisterImageError::generic(ec2_error("InvalidAMIID.Unavailable")));
    let snapshots_gone = mock!(Ec2::delete_snapshot)
        .then_error(|| DeleteSnapshotError::generic(ec2_error("InvalidSnapshot.NotFound")));
    let deps = w.world.deps_with(
        &f,
        &[
            &not_found,
            &unavailable,
            &snapshots_gone,
            &w.images,
            &w.templates,
            &w.versions,
            &w.instances,
        ],
    );
    assert!(run(&deps, input()).await.unwrap().done);
    assert_eq!(
        (
            not_found.num_calls(),
            unavailable.num_calls(),
            snapshots_gone.num_calls()
        ),
        (1, 1, 3)
    );
    let log = log(&f.deployment().await);
    assert!(log.contains(
        &"Removed image ami-1 and its snapshots snap-1a, snap-1b (deployment dep-1)".to_string()
    ));
    assert!(log.contains(
        &"Removed image ami-failed and its snapshots snap-f (deployment dep-f)".to_string()
    ));
}

/// A snapshot another image still uses: EC2 refuses with
/// `InvalidSnapshot.InUse`; it is kept and the record says so.
#[tokio::test]
async fn a_snapshot_in_use_is_kept() {
    let f = fixture(2).await;
    let mut w = images_world(environment_images());
    w.delete = mock!(Ec2::delete_snapshot).then_compute_output(|r| {
        assert_ne!(
            r.snapshot_id(),
            Some("snap-1b"),
            "answered by the InUse rule"
        );
        DeleteSnapshotOutput::builder().build()
    });
    let in_use = mock!(Ec2::delete_snapshot)
        .match_requests(|r| r.snapshot_id() == Some("snap-1b"))
        .then_error(|| DeleteSnapshotError::generic(ec2_error("InvalidSnapshot.InUse")));
    let deps = w.world.deps_with(
        &f,
        &[
            &in_use,
            &w.images,
            &w.templates,
            &w.versions,
            &w.instances,
            &w.deregister,
            &w.delete,
        ],
    );
    assert!(run(&deps, input()).await.unwrap().done);
    assert_eq!(in_use.num_calls(), 1);
    let log = log(&f.deployment().await);
    assert!(
        log.contains(
            &"Removed image ami-1 and its snapshots snap-1a (deployment dep-1)".to_string()
        ),
        "{log:?}"
    );
    assert!(log.contains(
        &"Kept snapshot snap-1b of removed image ami-1: InvalidSnapshot.InUse (mocked)".to_string()
    ));
}

/// A removal begun by an earlier attempt (recorded before DeregisterImage)
/// is finished although DescribeImages no longer shows the image.
#[tokio::test]
async fn a_retry_finishes_a_recorded_removal() {
    let f = fixture(2).await;
    f.update(|d| {
        d.runtime.removing_images.insert(
            "ami-0".into(),
            ImageRemoval {
                deployment_id: Some("dep-0".into()),
                snapshot_ids: vec!["snap-0".into()],
            },
        );
    })
    .await;
    let w = images_world(vec![]);
    let gone = mock!(Ec2::deregister_image)
        .match_requests(|r| r.image_id() == Some("ami-0"))
        .then_error(|| DeregisterImageError::generic(ec2_error("InvalidAMIID.NotFound")));
    let snapshot = mock!(Ec2::delete_snapshot)
        .match_requests(|r| r.snapshot_id() == Some("snap-0"))
        .then_output(|| DeleteSnapshotOutput::builder().build());
    let deps = w.world.deps_with(&f, &[&gone, &snapshot, &w.images]);
    assert!(run(&deps, input()).await.unwrap().done);
    assert_eq!((gone.num_calls(), snapshot.num_calls()), (1, 1));
    let d = f.deployment().await;
    assert!(log(&d)
        .contains(&"Removed image ami-0 and its snapshots snap-0 (deployment dep-0)".to_string()));
    assert!(d.runtime.removing_images.is_empty());
}

/// When the use of the images cannot be told, none is deregistered; the
/// step still succeeds and the record says why.
#[tokio::test]
async fn removes_no_image_when_use_cannot_be_told() {
    let f = fixture(2).await;
    let mut w = images_world(environment_images());
    w.instances = mock!(Ec2::describe_instances)
        .match_requests(|r| !filter_values(r.filters(), "image-id").is_empty())
        .then_error(|| DescribeInstancesError::generic(ec2_error("UnauthorizedOperation")));
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.deregister.num_calls(), 0);
    let d = f.deployment().await;
    assert_eq!(d.step(StepName::CreateModels).status, StepStatus::Succeeded);
    assert!(
        log(&d).iter().any(|a| a
            .starts_with("Old images not removed: could not list the instances")
            && a.contains("UnauthorizedOperation")),
        "{:?}",
        log(&d)
    );
}
