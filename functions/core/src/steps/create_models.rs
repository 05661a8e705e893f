//! Step 4, "Create models": the main model (a new launch template version
//! from the current default with the new image, made default), the backup
//! model (the previous default, recorded as the rollback target) and removal
//! of old models beyond the retention count — never one that is in use.

use super::{Journal, Poll, StepInput};
use crate::aws::autoscaling::GroupInfo;
use crate::deps::Deps;
use crate::domain::{StepName, StepStatus};
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

    let main = match existing {
        Some(v) => v,
        None => {
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
    j.action(format!(
        "Main model: version {main} of {lt_id} with image {image_id}"
    ))
    .await?;
    if template.default_version != main {
        deps.ec2.set_default_version(&lt_id, main).await?;
    }
    j.action(format!("Version {main} is now the default version"))
        .await?;

    // Remove old models.
    let groups = deps.asg.groups(&env.auto_scaling_groups).await?;
    let latest = versions
        .iter()
        .map(|v| v.number)
        .max()
        .unwrap_or(main)
        .max(main);
    let in_use = versions_in_use(&groups, &lt_id, main, latest);
    let mut all: Vec<i64> = versions.iter().map(|v| v.number).chain([main]).collect();
    all.sort_unstable();
    all.dedup();
    let remove = versions_to_remove(&all, env.defaults.retention, main, backup, &in_use);
    if remove.is_empty() {
        j.action(format!(
            "No old models to remove ({} versions, retention {})",
            all.len(),
            env.defaults.retention.max(2)
        ))
        .await?;
    } else {
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
    j.end(StepStatus::Succeeded).await?;
    Ok(Poll::done())
}

/// Version numbers any group or group instance references (`$Latest` and
/// `$Default` resolved), which retention must never delete.
pub fn versions_in_use(
    groups: &[GroupInfo],
    lt_id: &str,
    default: i64,
    latest: i64,
) -> BTreeSet<i64> {
    let resolve = |v: &str| match v {
        "$Latest" => Some(latest),
        "$Default" => Some(default),
        n => n.parse().ok(),
    };
    groups
        .iter()
        .filter(|g| g.launch_template_id.as_deref() == Some(lt_id))
        .flat_map(|g| {
            std::iter::once(g.launch_template_version.as_deref().unwrap_or("$Default")).chain(
                g.instances
                    .iter()
                    .filter_map(|i| i.launch_template_version.as_deref()),
            )
        })
        .filter_map(resolve)
        .collect()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::autoscaling::GroupInstance;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{aws, input, strs, Fixture, DEP, LT};
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_ec2::operation::create_launch_template_version::CreateLaunchTemplateVersionOutput;
    use aws_sdk_ec2::operation::delete_launch_template_versions::DeleteLaunchTemplateVersionsOutput;
    use aws_sdk_ec2::operation::describe_launch_template_versions::DescribeLaunchTemplateVersionsOutput;
    use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
    use aws_sdk_ec2::operation::modify_launch_template::ModifyLaunchTemplateOutput;
    use aws_sdk_ec2::types::{
        DeleteLaunchTemplateVersionsResponseSuccessItem, LaunchTemplateVersion,
    };
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
    }

    /// Versions 1..=8 exist, default 8; the group pins version 2.
    fn world(ours: bool) -> World {
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
            // Retention 5 keeps 9..5; backup 8 is among them; 2 is in use: remove 1, 3, 4.
            delete: mock!(Ec2::delete_launch_template_versions)
                .match_requests(|r| strs(r.versions()) == ["1", "3", "4"])
                .then_output(|| {
                    let ok = |n| {
                        DeleteLaunchTemplateVersionsResponseSuccessItem::builder()
                            .version_number(n)
                            .build()
                    };
                    DeleteLaunchTemplateVersionsOutput::builder()
                        .successfully_deleted_launch_template_versions(ok(1))
                        .successfully_deleted_launch_template_versions(ok(3))
                        .successfully_deleted_launch_template_versions(ok(4))
                        .build()
                }),
            groups: mock!(Asg::describe_auto_scaling_groups).then_output(|| {
                DescribeAutoScalingGroupsOutput::builder()
                    .auto_scaling_groups(aws::group(2, "2", &[], LT))
                    .build()
            }),
        }
    }

    impl World {
        fn deps(&self, f: &Fixture) -> Deps {
            f.deps(
                &[
                    &self.template,
                    &self.versions,
                    &self.create,
                    &self.modify,
                    &self.delete,
                ],
                &[&self.groups],
                &[],
            )
        }
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
        let log: Vec<_> = d
            .step(StepName::CreateModels)
            .actions
            .iter()
            .map(|a| a.message.clone())
            .collect();
        assert_eq!(log[0], "Identifying compatible resources");
        assert!(log.contains(&"Removed old models: versions 1, 3, 4".to_string()));
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

    fn group(version: Option<&str>, instance_versions: &[&str]) -> GroupInfo {
        GroupInfo {
            name: "g".into(),
            desired_capacity: 2,
            launch_template_id: Some("lt-1".into()),
            launch_template_version: version.map(str::to_string),
            suspended: vec![],
            instances: instance_versions
                .iter()
                .map(|v| GroupInstance {
                    id: "i".into(),
                    launch_template_version: Some(v.to_string()),
                })
                .collect(),
        }
    }

    #[test]
    fn retention_keeps_newest_main_backup_and_in_use() {
        let all: Vec<i64> = (1..=10).collect();
        let in_use = versions_in_use(&[group(Some("2"), &["3"])], "lt-1", 10, 10);
        assert_eq!(in_use, BTreeSet::from([2, 3]));
        // newest 5 = 10..6; backup 4 kept; 2 and 3 in use.
        assert_eq!(versions_to_remove(&all, 5, 10, 4, &in_use), vec![1, 5]);
    }

    #[test]
    fn retention_never_below_two_and_resolves_aliases() {
        let in_use = versions_in_use(
            &[group(Some("$Default"), &[]), group(Some("$Latest"), &[])],
            "lt-1",
            7,
            9,
        );
        assert_eq!(in_use, BTreeSet::from([7, 9]));
        assert_eq!(
            versions_to_remove(&[1, 2, 3], 0, 3, 2, &BTreeSet::new()),
            vec![1]
        );
    }

    #[test]
    fn other_templates_are_not_in_use() {
        let mut g = group(Some("1"), &[]);
        g.launch_template_id = Some("lt-other".into());
        assert!(versions_in_use(&[g], "lt-1", 5, 5).is_empty());
    }
}
