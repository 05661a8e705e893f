//! Create models against mocked EC2 and Auto Scaling answers: the main and backup
//! models, and retention sparing every version in use.

use super::*;
use crate::domain::DeploymentOptions;
use crate::steps::testkit::{aws, environment, input, strs, Fixture, DEP, GROUP, LT};
use crate::store::Store;
use aws_sdk_autoscaling::error::ErrorMetadata;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::{
    DescribeAutoScalingGroupsError, DescribeAutoScalingGroupsOutput,
};
use aws_sdk_autoscaling::types as asg;
use aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput;
use aws_sdk_ec2::operation::delete_launch_template_versions::DeleteLaunchTemplateVersionsOutput;
use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
use aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput;
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_sdk_ec2::operation::modify_launch_template::ModifyLaunchTemplateOutput;
use aws_sdk_ec2::types::{DeleteLaunchTemplateVersionsResponseSuccessItem, LaunchTemplateVersion};
use aws_smithy_mocks::{mock, Rule};

type Ec2 = aws_sdk_ec2::Client;
type Asg = aws_sdk_autoscaling::Client;

struct World {
    template: Rule,
    versions: Rule,
    create: Rule,
    modify: Rule,
    delete: Rule,
    groups: Rule,
    instances: Rule,
    /// The environment's images: none, unless a test says otherwise.
    images: Rule,
    /// The Region's launch configurations: none, unless a test says otherwise.
    launch_configurations: Rule,
}

/// Versions 1..=8 exist, default 8; the environment's group pins version 2.
fn world(ours: bool) -> World {
    world_with(
        ours,
        vec![aws::group(2, "2", &[], LT)],
        vec![],
        &["1", "3", "4"],
    )
}

/// Versions 1..=8 exist, default 8. DescribeAutoScalingGroups answers as
/// AWS does: the named groups, or without names every group of the
/// Region (one per page here, so paging is exercised);
/// DescribeInstances (one per page too) answers `instances` (id,
/// version tag) to the launch template filter. The delete request must
/// name exactly `delete`.
fn world_with(
    ours: bool,
    groups: Vec<asg::AutoScalingGroup>,
    instances: Vec<(&'static str, Option<&'static str>)>,
    delete: &'static [&'static str],
) -> World {
    World {
        template: mock!(Ec2::describe_launch_templates).then_output(move || {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::template(if ours { 9 } else { 8 }, 8))
                .build()
        }),
        versions: mock!(Ec2::describe_launch_template_versions).then_output(move || {
            let mut v: Vec<LaunchTemplateVersion> =
                (1..=8).map(|n| aws::version(n, None)).collect();
            if ours {
                v.push(aws::version(9, Some(&model_description(DEP))));
            }
            DescribeLaunchTemplateVersionsOutput::builder()
                .set_launch_template_versions(Some(v))
                .build()
        }),
        create: mock!(Ec2::create_launch_template_version)
            .match_requests(|r| {
                r.launch_template_id() == Some(LT)
                    && r.source_version() == Some("8")
                    && r.launch_template_data().and_then(|d| d.image_id()) == Some("ami-new")
                    && r.version_description() == Some(model_description(DEP).as_str())
                    && r.client_token() == Some(DEP)
            })
            .then_output(|| {
                CreateLaunchTemplateVersionOutput::builder()
                    .launch_template_version(aws::version(9, None))
                    .build()
            }),
        modify: mock!(Ec2::modify_launch_template)
            .match_requests(|r| r.default_version() == Some("9"))
            .then_output(|| ModifyLaunchTemplateOutput::builder().build()),
        delete: mock!(Ec2::delete_launch_template_versions)
            .match_requests(move |r| strs(r.versions()) == delete)
            .then_compute_output(|r| {
                r.versions()
                    .iter()
                    .fold(DeleteLaunchTemplateVersionsOutput::builder(), |b, v| {
                        b.successfully_deleted_launch_template_versions(
                            DeleteLaunchTemplateVersionsResponseSuccessItem::builder()
                                .version_number(v.parse().unwrap())
                                .build(),
                        )
                    })
                    .build()
            }),
        groups: mock!(Asg::describe_auto_scaling_groups).then_compute_output(move |r| {
            let names = r.auto_scaling_group_names();
            if !names.is_empty() {
                return DescribeAutoScalingGroupsOutput::builder()
                    .set_auto_scaling_groups(Some(
                        groups
                            .iter()
                            .filter(|g| {
                                names
                                    .iter()
                                    .any(|n| Some(n.as_str()) == g.auto_scaling_group_name())
                            })
                            .cloned()
                            .collect(),
                    ))
                    .build();
            }
            assert!(
                r.max_records().is_some_and(|m| m <= 100),
                "MaxRecords is at most 100"
            );
            let (g, next) = page(&groups, r.next_token());
            DescribeAutoScalingGroupsOutput::builder()
                .set_auto_scaling_groups(Some(g.into_iter().cloned().collect()))
                .set_next_token(next)
                .build()
        }),
        instances: mock!(Ec2::describe_instances)
            .match_requests(|r| {
                let filter = |name: &str| {
                    r.filters()
                        .iter()
                        .find(|f| f.name() == Some(name))
                        .map(|f| strs(f.values()))
                };
                filter("tag:aws:ec2launchtemplate:id") == Some(vec![LT])
                    && filter("instance-state-name")
                        == Some(vec!["pending", "running", "stopping", "stopped"])
                    && r.instance_ids().is_empty()
            })
            .then_compute_output(move |r| {
                let (item, next) = page(&instances, r.next_token());
                let reservations = item.map(|(id, v)| {
                    let tag = |k: &str, v: &str| {
                        aws_sdk_ec2::types::Tag::builder().key(k).value(v).build()
                    };
                    let mut i = aws_sdk_ec2::types::Instance::builder()
                        .instance_id(*id)
                        .tags(tag("aws:ec2launchtemplate:id", LT));
                    if let Some(v) = v {
                        i = i.tags(tag("aws:ec2launchtemplate:version", v));
                    }
                    aws_sdk_ec2::types::Reservation::builder()
                        .instances(i.build())
                        .build()
                });
                DescribeInstancesOutput::builder()
                    .set_reservations(Some(reservations.into_iter().collect()))
                    .set_next_token(next)
                    .build()
            }),
        launch_configurations: mock!(Asg::describe_launch_configurations).then_output(|| {
            aws_sdk_autoscaling::operation::describe_launch_configurations::DescribeLaunchConfigurationsOutput::builder().build()
        }),
        images: mock!(Ec2::describe_images).then_output(|| {
            aws_sdk_ec2::operation::describe_images::DescribeImagesOutput::builder().build()
        }),
    }
}

/// A page of one item: the item at `token` (an index; none = 0), and
/// the next index as NextToken while items remain.
fn page<'a, T>(items: &'a [T], token: Option<&str>) -> (Option<&'a T>, Option<String>) {
    let at: usize = token.map_or(0, |t| t.parse().unwrap());
    (
        items.get(at),
        (at + 1 < items.len()).then(|| (at + 1).to_string()),
    )
}

impl World {
    fn deps(&self, f: &Fixture) -> Deps {
        self.deps_with(f, &[])
    }

    /// With `first` tried before the world's own EC2 rules.
    fn deps_with(&self, f: &Fixture, first: &[&Rule]) -> Deps {
        let ours = [
            &self.template,
            &self.versions,
            &self.create,
            &self.modify,
            &self.delete,
            &self.instances,
            &self.images,
        ];
        let ec2: Vec<&Rule> = first.iter().copied().chain(ours).collect();
        f.deps(&ec2, &[&self.groups, &self.launch_configurations], &[])
    }
}

fn log(d: &crate::domain::Deployment) -> Vec<String> {
    d.step(StepName::CreateModels)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect()
}

/// A fixture whose environment keeps `retention` versions, with the image made.
async fn fixture(retention: u32) -> Fixture {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let mut env = environment();
    env.defaults.retention = retention;
    f.store.put_environment(&env, None).await.unwrap();
    f.update(|d| d.runtime.image_id = Some("ami-new".into()))
        .await;
    f
}

fn other_group(name: &str, version: &str) -> asg::AutoScalingGroup {
    let mut g = aws::group(0, version, &[], LT);
    g.auto_scaling_group_name = Some(name.into());
    g
}

#[tokio::test]
async fn main_model_backup_and_retention() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    f.update(|d| d.runtime.image_id = Some("ami-new".into()))
        .await;
    let w = world(false);
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(
        (
            w.create.num_calls(),
            w.modify.num_calls(),
            w.delete.num_calls()
        ),
        (1, 1, 1)
    );
    let d = f.deployment().await;
    assert_eq!(
        (d.runtime.main_version, d.runtime.backup_version),
        (Some(9), Some(8))
    );
    let log = log(&d);
    assert_eq!(log[0], "Identifying compatible resources");
    assert!(log.contains(&"Removed old models: versions 1, 3, 4".to_string()));
}

/// Retention 2 keeps 9 and 8 (main, backup); the environment's group
/// pins 2. Another group of the Region (not the environment's) pins 5,
/// and instances launched from the template run 6 and 3 (each list on
/// two pages): only 1, 4 and 7 may go.
#[tokio::test]
async fn keeps_versions_used_by_other_groups_and_instances() {
    let f = fixture(2).await;
    let w = world_with(
        false,
        vec![aws::group(2, "2", &[], LT), other_group("other", "5")],
        vec![("i-standalone", Some("6")), ("i-old", Some("3"))],
        &["1", "4", "7"],
    );
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.delete.num_calls(), 1);
    assert_eq!((w.groups.num_calls(), w.instances.num_calls()), (2, 2));
    assert!(
        log(&f.deployment().await).contains(&"Removed old models: versions 1, 4, 7".to_string())
    );
}

/// A group with a mixed instances policy uses its policy's template
/// version and every override's that names the template; an override
/// on another template keeps nothing of ours.
#[tokio::test]
async fn keeps_versions_of_mixed_instances_policies_and_their_overrides() {
    let f = fixture(2).await;
    let spec = |lt: &str, v: &str| {
        asg::LaunchTemplateSpecification::builder()
            .launch_template_id(lt)
            .version(v)
            .build()
    };
    let mixed = asg::AutoScalingGroup::builder()
        .auto_scaling_group_name("mixed")
        .mixed_instances_policy(
            asg::MixedInstancesPolicy::builder()
                .launch_template(
                    asg::LaunchTemplate::builder()
                        .launch_template_specification(spec(LT, "4"))
                        .overrides(
                            asg::LaunchTemplateOverrides::builder()
                                .instance_type("c5.large")
                                .launch_template_specification(spec(LT, "3"))
                                .build(),
                        )
                        .overrides(
                            asg::LaunchTemplateOverrides::builder()
                                .instance_type("m6g.large")
                                .launch_template_specification(spec("lt-other", "7"))
                                .build(),
                        )
                        .overrides(
                            asg::LaunchTemplateOverrides::builder()
                                .instance_type("m5.large")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .build();
    let w = world_with(
        false,
        vec![aws::group(2, "2", &[], LT), mixed],
        vec![],
        &["1", "5", "6", "7"],
    );
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.delete.num_calls(), 1);
}

/// When which versions are in use cannot be told (a describe call
/// fails, an instance without a version number), nothing is deleted and
/// the record says why; the step itself succeeds.
#[tokio::test]
async fn deletes_nothing_when_use_cannot_be_told() {
    // DescribeAutoScalingGroups refused.
    let f = fixture(2).await;
    let mut w = world(false);
    w.groups = mock!(Asg::describe_auto_scaling_groups).then_error(|| {
        DescribeAutoScalingGroupsError::generic(
            ErrorMetadata::builder()
                .code("AccessDenied")
                .message("not authorized to perform: autoscaling:DescribeAutoScalingGroups")
                .build(),
        )
    });
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.delete.num_calls(), 0);
    let d = f.deployment().await;
    assert_eq!(d.step(StepName::CreateModels).status, StepStatus::Succeeded);
    assert!(
        log(&d).iter().any(|a| a
            .starts_with("Old models not removed: could not list the Auto Scaling groups")
            && a.contains("AccessDenied")),
        "{:?}",
        log(&d)
    );

    // An instance whose launch template version is not a number.
    let f = fixture(2).await;
    let w = world_with(
        false,
        vec![aws::group(2, "2", &[], LT)],
        vec![("i-odd", None)],
        &[],
    );
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.delete.num_calls(), 0);
    assert!(log(&f.deployment().await)
        .iter()
        .any(|a| a.starts_with("Old models not removed: instance i-odd")),);
}

#[tokio::test]
async fn a_retry_finds_its_version_by_description_and_creates_no_second_one() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    f.update(|d| {
        d.runtime.image_id = Some("ami-new".into());
        d.runtime.backup_version = Some(8);
    })
    .await;
    let w = world(true);
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!((w.create.num_calls(), w.modify.num_calls()), (0, 0));
    assert_eq!(f.deployment().await.runtime.main_version, Some(9));
}

#[tokio::test]
async fn without_an_image_it_refuses() {
    let f = Fixture::new(DeploymentOptions::default()).await;
    let w = world(false);
    assert_eq!(
        run(&w.deps(&f), input()).await.unwrap_err().name(),
        "InvalidState"
    );
    assert_eq!(w.create.num_calls(), 0);
}

fn template() -> TemplateInfo {
    TemplateInfo {
        id: "lt-1".into(),
        name: Some("web".into()),
        default_version: 10,
        latest_version: 10,
        environment_tag: Some("prod".into()),
    }
}

fn reference(id: Option<&str>, name: Option<&str>, version: Option<&str>) -> TemplateReference {
    TemplateReference {
        launch_template_id: id.map(str::to_string),
        launch_template_name: name.map(str::to_string),
        version: version.map(str::to_string),
    }
}

/// A group on `lt-1` at `version` whose instances run `instance_versions`.
fn group(version: Option<&str>, instance_versions: &[&str]) -> GroupTemplates {
    GroupTemplates {
        name: GROUP.into(),
        references: std::iter::once(reference(Some("lt-1"), Some("web"), version))
            .chain(
                instance_versions
                    .iter()
                    .map(|v| reference(Some("lt-1"), Some("web"), Some(v))),
            )
            .collect(),
    }
}

#[test]
fn retention_keeps_newest_main_backup_and_in_use() {
    let all: Vec<i64> = (1..=10).collect();
    let in_use = versions_in_use(&[group(Some("2"), &["3"])], &[], &template(), 10, 10).unwrap();
    assert_eq!(in_use, BTreeSet::from([2, 3]));
    // newest 5 = 10..6; backup 4 kept; 2 and 3 in use.
    assert_eq!(versions_to_remove(&all, 5, 10, 4, &in_use), vec![1, 5]);
}

#[test]
fn retention_never_below_two_and_resolves_aliases() {
    let in_use = versions_in_use(
        &[
            group(Some("$Default"), &[]),
            group(Some("$Latest"), &[]),
            group(None, &[]),
        ],
        &[],
        &template(),
        7,
        9,
    )
    .unwrap();
    assert_eq!(in_use, BTreeSet::from([7, 9]));
    assert_eq!(
        versions_to_remove(&[1, 2, 3], 0, 3, 2, &BTreeSet::new()),
        vec![1]
    );
}

#[test]
fn other_templates_are_not_in_use() {
    let mut g = group(Some("1"), &[]);
    g.references[0].launch_template_id = Some("lt-other".into());
    assert!(versions_in_use(&[g], &[], &template(), 5, 5)
        .unwrap()
        .is_empty());
}

#[test]
fn a_reference_by_name_alone_is_matched_by_name() {
    let g = GroupTemplates {
        name: "by-name".into(),
        references: vec![
            reference(None, Some("web"), Some("3")),
            reference(None, Some("api"), Some("4")),
        ],
    };
    let instances = [InstanceTemplateVersion {
        instance_id: "i-1".into(),
        version: Some("6".into()),
    }];
    assert_eq!(
        versions_in_use(&[g], &instances, &template(), 5, 5).unwrap(),
        BTreeSet::from([3, 6])
    );
}

#[test]
fn a_version_that_cannot_be_told_is_an_error() {
    let g = GroupTemplates {
        name: "odd".into(),
        references: vec![reference(Some("lt-1"), None, Some("latest"))],
    };
    assert_eq!(
        versions_in_use(&[g], &[], &template(), 5, 5).unwrap_err(),
        "group odd refers to version \"latest\" of lt-1"
    );
    let i = InstanceTemplateVersion {
        instance_id: "i-1".into(),
        version: Some("$Default".into()),
    };
    assert!(versions_in_use(&[], &[i], &template(), 5, 5).is_err());
}

mod images;

/// A rollback to version 5: no version is created, 5 becomes the default,
/// the previous default (8) is the backup; retention spares 5 as the main model.
#[tokio::test]
async fn a_rollback_makes_the_restored_version_the_default_and_creates_none() {
    let f = Fixture::rollback(
        DeploymentOptions::default(),
        Some(crate::steps::testkit::rollback_of(5)),
    )
    .await;
    let mut env = environment();
    env.defaults.retention = 2;
    f.store.put_environment(&env, None).await.unwrap();
    f.update(|d| d.runtime.image_id = Some("ami-5".into()))
        .await;
    let w = world_with(
        false,
        vec![aws::group(2, "2", &[], LT)],
        vec![],
        &["1", "3", "4", "6"],
    );
    let modify5 = mock!(Ec2::modify_launch_template)
        .match_requests(|r| r.default_version() == Some("5"))
        .then_output(|| ModifyLaunchTemplateOutput::builder().build());
    assert!(
        run(&w.deps_with(&f, &[&modify5]), input())
            .await
            .unwrap()
            .done
    );
    assert_eq!(
        (
            w.create.num_calls(),
            modify5.num_calls(),
            w.modify.num_calls(),
            w.delete.num_calls()
        ),
        (0, 1, 0, 1)
    );
    let d = f.deployment().await;
    assert_eq!(
        (d.runtime.main_version, d.runtime.backup_version),
        (Some(5), Some(8))
    );
    assert!(log(&d).contains(
        &"Main model: version 5 of lt-0abc with image ami-5, restored from deployment 01JR0000000000000000000000"
            .to_string()
    ));
}

#[tokio::test]
async fn a_rollback_to_a_version_that_no_longer_exists_fails_before_changing_the_default() {
    let f = Fixture::rollback(
        DeploymentOptions::default(),
        Some(crate::steps::testkit::rollback_of(12)),
    )
    .await;
    f.update(|d| d.runtime.image_id = Some("ami-12".into()))
        .await;
    let w = world(false);
    let err = run(&w.deps(&f), input()).await.unwrap_err();
    assert_eq!(err.name(), "ModelsFailed");
    assert!(err
        .message()
        .contains("version 12 of launch template lt-0abc (deployment 01JR0000000000000000000000) no longer exists"));
    assert_eq!(
        (
            w.create.num_calls(),
            w.modify.num_calls(),
            w.delete.num_calls()
        ),
        (0, 0, 0)
    );
    assert_eq!(f.deployment().await.runtime.main_version, None);
}

/// The models of the newest `keptDeployments` Succeeded deployments (3 and
/// 4 here) are what a rollback restores: retention never removes them.
#[tokio::test]
async fn retention_spares_the_kept_deployments_models() {
    let f = fixture(2).await;
    for (id, version) in [
        ("01JD0000000000000000000003", 3),
        ("01JD0000000000000000000004", 4),
    ] {
        let d = crate::domain::Deployment::new_running(
            id.into(),
            crate::steps::testkit::ENV.into(),
            "o".into(),
            DeploymentOptions::default(),
            f.now(),
        );
        f.store.create_deployment(&d, None).await.unwrap();
        let outcome = crate::store::Outcome {
            status: crate::domain::DeploymentStatus::Succeeded,
            ended_at: f.now(),
            duration_ms: 1,
            generated_version: Some(crate::domain::GeneratedVersion {
                launch_template_id: LT.into(),
                launch_template_version: version,
                image_id: format!("ami-{version}"),
            }),
            error: None,
        };
        f.store
            .finish(crate::steps::testkit::ENV, id, &outcome)
            .await
            .unwrap();
    }
    let w = world_with(
        false,
        vec![aws::group(2, "2", &[], LT)],
        vec![],
        &["1", "5", "6", "7"],
    );
    assert!(run(&w.deps(&f), input()).await.unwrap().done);
    assert_eq!(w.delete.num_calls(), 1);
    assert!(
        log(&f.deployment().await).contains(&"Removed old models: versions 1, 5, 6, 7".to_string())
    );
}
