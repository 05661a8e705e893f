//! Seeds a scaling environment in the emulator: a preparation server, a
//! launch template (naming the sandbox's instance profile), an Auto Scaling
//! group with instances, each tagged `autosky:environment=<env>`, and the
//! environment's record in the table.

pub mod instance_profile;

use crate::Clients;
use autosky_core::aws::ec2::TAG_ENVIRONMENT;
use autosky_core::domain::{Environment, EnvironmentDefaults};
use autosky_core::store::Store;
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, InstanceType,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};

pub use instance_profile::{INSTANCE_PROFILE_ARN, INSTANCE_PROFILE_NAME, INSTANCE_ROLE_ARN};

/// Creates (once per emulator) the IAM role [`INSTANCE_ROLE_ARN`] and the
/// instance profile [`INSTANCE_PROFILE_ARN`] holding it, which every seeded
/// launch template names.
pub async fn instance_profile(emulator: &str) -> Result<(), String> {
    instance_profile::ensure(emulator).await
}

/// The image the seeded servers and template start from.
pub const BASE_IMAGE: &str = "ami-0a1b2c3d4e5f60718";

#[derive(Debug, Clone)]
pub struct Seeded {
    pub environment: Environment,
}

fn tags(rt: ResourceType, env_id: &str, name: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("Name").value(name).build())
        .tags(environment_tag(env_id))
        .build()
}

fn environment_tag(env_id: &str) -> Tag {
    Tag::builder().key(TAG_ENVIRONMENT).value(env_id).build()
}

/// Creates the environment `env_id` with `instances` in its group (on the
/// template's `$Default` version) and registers it with `defaults`.
pub async fn environment(
    c: &Clients,
    env_id: &str,
    instances: i32,
    defaults: EnvironmentDefaults,
) -> Result<Seeded, String> {
    environment_with(c, env_id, GroupSetup::Default, instances, defaults).await
}

/// The groups an environment is seeded with (the environment's launch
/// template, `{env}-template`, has one version, 1, its default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupSetup {
    /// `{env}-asg` on version `1` (AWS can roll it back).
    Numbered,
    /// `{env}-asg` on `$Default`.
    Default,
    /// `{env}-asg` on `$Latest`.
    Latest,
    /// `{env}-asg` with a mixed instances policy: the template at version
    /// `1`, overrides t3.micro and t3.small, OnDemandBaseCapacity 1,
    /// OnDemandPercentageAboveBaseCapacity 100.
    Mixed,
    /// `{env}-asg` on version `1` with the instances, and `{env}-asg-empty`
    /// on version `1` with none (desired capacity 0).
    TwoGroupsOneEmpty,
    /// `{env}-asg` on the launch configuration `{env}-lc` (same image and
    /// type as the template).
    LaunchConfiguration,
    /// `{env}-asg` on version `1` of another template, `{env}-other-template`.
    OtherTemplate,
}

/// Creates the environment `env_id`: the preparation server, the launch
/// template and the group(s) of `setup` with `instances` instances, and
/// registers it with `defaults`.
pub async fn environment_with(
    c: &Clients,
    env_id: &str,
    setup: GroupSetup,
    instances: i32,
    defaults: EnvironmentDefaults,
) -> Result<Seeded, String> {
    let environment = resources_with(c, env_id, setup, instances, defaults).await?;
    c.store
        .put_environment(&environment, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Seeded { environment })
}

/// The resources of [`environment`] (one group on `$Default`), not
/// registered: the environment record they would make.
pub async fn resources(
    c: &Clients,
    env_id: &str,
    instances: i32,
    defaults: EnvironmentDefaults,
) -> Result<Environment, String> {
    resources_with(c, env_id, GroupSetup::Default, instances, defaults).await
}

/// The resources of [`environment_with`], not registered: the environment
/// record they would make.
pub async fn resources_with(
    c: &Clients,
    env_id: &str,
    setup: GroupSetup,
    instances: i32,
    defaults: EnvironmentDefaults,
) -> Result<Environment, String> {
    instance_profile(&c.endpoints.emulator).await?;
    let run = c
        .ec2
        .run_instances()
        .image_id(BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        // An EBS-backed server has its root volume (the emulator makes
        // volumes only for the mappings it is given): what CreateImage
        // snapshots.
        .block_device_mappings(
            BlockDeviceMapping::builder()
                .device_name("/dev/xvda")
                .ebs(
                    EbsBlockDevice::builder()
                        .volume_size(8)
                        .volume_type(aws_sdk_ec2::types::VolumeType::Gp3)
                        .delete_on_termination(true)
                        .build(),
                )
                .build(),
        )
        .tag_specifications(tags(
            ResourceType::Instance,
            env_id,
            &format!("{env_id}-preparation"),
        ))
        .send()
        .await
        .map_err(|e| format!("RunInstances: {e:?}"))?;
    let server = run
        .instances()
        .first()
        .and_then(|i| i.instance_id())
        .ok_or("RunInstances returned no instance")?
        .to_string();
    let lt_id = template(&c.ec2, env_id, &format!("{env_id}-template")).await?;
    let group = format!("{env_id}-asg");
    let on = |version: &str| GroupSource::Template {
        launch_template_id: lt_id.clone(),
        version: version.into(),
    };
    let mut groups = vec![group.clone()];
    let create = |name: String, source: GroupSource, instances: i32| async move {
        create_group(&c.asg, env_id, &name, source, instances).await
    };
    match setup {
        GroupSetup::Numbered => create(group.clone(), on("1"), instances).await?,
        GroupSetup::Default => create(group.clone(), on("$Default"), instances).await?,
        GroupSetup::Latest => create(group.clone(), on("$Latest"), instances).await?,
        GroupSetup::Mixed => {
            let source = GroupSource::Mixed {
                launch_template_id: lt_id.clone(),
                version: "1".into(),
                instance_types: vec!["t3.micro".into(), "t3.small".into()],
                on_demand_base_capacity: 1,
                on_demand_percentage_above_base_capacity: 100,
            };
            create(group.clone(), source, instances).await?
        }
        GroupSetup::TwoGroupsOneEmpty => {
            let empty = format!("{env_id}-asg-empty");
            create(group.clone(), on("1"), instances).await?;
            create(empty.clone(), on("1"), 0).await?;
            groups.push(empty);
        }
        GroupSetup::LaunchConfiguration => {
            let lc = format!("{env_id}-lc");
            c.asg
                .create_launch_configuration()
                .launch_configuration_name(&lc)
                .image_id(BASE_IMAGE)
                .instance_type("t3.micro")
                .send()
                .await
                .map_err(|e| format!("CreateLaunchConfiguration: {e:?}"))?;
            create(group.clone(), GroupSource::Configuration(lc), instances).await?
        }
        GroupSetup::OtherTemplate => {
            let other = template(&c.ec2, env_id, &format!("{env_id}-other-template")).await?;
            let source = GroupSource::Template {
                launch_template_id: other,
                version: "1".into(),
            };
            create(group.clone(), source, instances).await?
        }
    }

    Ok(Environment {
        environment_id: env_id.into(),
        preparation_server_id: server,
        auto_scaling_groups: groups,
        launch_template_id: lt_id,
        defaults,
        access: None,
    })
}

/// Creates the launch template `name` tagged with the environment; returns
/// its id. Version 1: the base image, t3.micro, the instance profile
/// [`INSTANCE_PROFILE_ARN`] (see [`instance_profile`]), and the environment's
/// tag on the instances and volumes it launches — so launching from it, as
/// a refresh does, passes the profile's role (iam:PassRole) and tags at
/// launch (ec2:CreateTags), as on AWS.
pub async fn template(
    ec2: &aws_sdk_ec2::Client,
    env_id: &str,
    name: &str,
) -> Result<String, String> {
    let lt = ec2
        .create_launch_template()
        .launch_template_name(name)
        .version_description("initial")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(BASE_IMAGE)
                .instance_type(InstanceType::T3Micro)
                .iam_instance_profile(
                    LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                        .arn(INSTANCE_PROFILE_ARN)
                        .build(),
                )
                .tag_specifications(launch_tags(ResourceType::Instance, env_id))
                .tag_specifications(launch_tags(ResourceType::Volume, env_id))
                .build(),
        )
        .tag_specifications(tags(ResourceType::LaunchTemplate, env_id, name))
        .send()
        .await
        .map_err(|e| format!("CreateLaunchTemplate: {e:?}"))?;
    lt.launch_template()
        .and_then(|t| t.launch_template_id())
        .map(str::to_string)
        .ok_or_else(|| "CreateLaunchTemplate returned no id".to_string())
}

/// The environment's tag on what a launch from the template creates.
fn launch_tags(rt: ResourceType, env_id: &str) -> LaunchTemplateTagSpecificationRequest {
    LaunchTemplateTagSpecificationRequest::builder()
        .resource_type(rt)
        .tags(environment_tag(env_id))
        .build()
}

/// What a seeded group launches from.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupSource {
    Template {
        launch_template_id: String,
        version: String,
    },
    Mixed {
        launch_template_id: String,
        version: String,
        instance_types: Vec<String>,
        on_demand_base_capacity: i32,
        on_demand_percentage_above_base_capacity: i32,
    },
    Configuration(String),
}

/// Creates the group `name` (one availability zone, minimum 0, maximum
/// twice the instances) with `instances` instances, tagged
/// `autosky:environment=<env_id>`.
pub async fn create_group(
    asg: &aws_sdk_autoscaling::Client,
    env_id: &str,
    name: &str,
    source: GroupSource,
    instances: i32,
) -> Result<(), String> {
    use aws_sdk_autoscaling::types::{
        InstancesDistribution, LaunchTemplate, LaunchTemplateOverrides, MixedInstancesPolicy,
    };
    let spec = |id: &str, version: &str| {
        LaunchTemplateSpecification::builder()
            .launch_template_id(id)
            .version(version)
            .build()
    };
    let mut req = asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(name)
        .min_size(0)
        .max_size(instances.max(1) * 2)
        .desired_capacity(instances)
        .availability_zones("us-east-1a")
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(name)
                .resource_type("auto-scaling-group")
                .key(TAG_ENVIRONMENT)
                .value(env_id)
                .propagate_at_launch(false)
                .build(),
        );
    req = match source {
        GroupSource::Template {
            launch_template_id,
            version,
        } => req.launch_template(spec(&launch_template_id, &version)),
        GroupSource::Mixed {
            launch_template_id,
            version,
            instance_types,
            on_demand_base_capacity,
            on_demand_percentage_above_base_capacity,
        } => {
            let mut lt = LaunchTemplate::builder()
                .launch_template_specification(spec(&launch_template_id, &version));
            for t in instance_types {
                lt = lt.overrides(LaunchTemplateOverrides::builder().instance_type(t).build());
            }
            req.mixed_instances_policy(
                MixedInstancesPolicy::builder()
                    .launch_template(lt.build())
                    .instances_distribution(
                        InstancesDistribution::builder()
                            .on_demand_base_capacity(on_demand_base_capacity)
                            .on_demand_percentage_above_base_capacity(
                                on_demand_percentage_above_base_capacity,
                            )
                            .build(),
                    )
                    .build(),
            )
        }
        GroupSource::Configuration(lc) => req.launch_configuration_name(lc),
    };
    req.send()
        .await
        .map(drop)
        .map_err(|e| format!("CreateAutoScalingGroup {name}: {e:?}"))
}

/// A group as the emulator (through the bridge) describes it: what it
/// launches from and the launch template version of each instance.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupView {
    pub name: String,
    /// The group's launch template (or its mixed policy's): id and version
    /// as the group names it (a number, `$Default` or `$Latest`).
    pub launch_template_id: Option<String>,
    pub version: Option<String>,
    pub launch_configuration: Option<String>,
    pub mixed: bool,
    /// Each instance (launch order) and the launch template version it was
    /// launched from (a number; none for a launch configuration's).
    pub instances: Vec<(String, Option<String>)>,
}

/// Each named group's [`GroupView`], in the order asked.
pub async fn group_views(
    asg: &aws_sdk_autoscaling::Client,
    groups: &[String],
) -> Result<Vec<GroupView>, String> {
    let out = asg
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(groups.to_vec()))
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
    let mut views = Vec::new();
    for name in groups {
        let Some(g) = out
            .auto_scaling_groups()
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name.as_str()))
        else {
            return Err(format!("group {name} not found"));
        };
        let mixed = g
            .mixed_instances_policy()
            .and_then(|m| m.launch_template())
            .and_then(|l| l.launch_template_specification());
        let spec = g.launch_template().or(mixed);
        views.push(GroupView {
            name: name.clone(),
            launch_template_id: spec
                .and_then(|s| s.launch_template_id())
                .map(str::to_string),
            version: spec.and_then(|s| s.version()).map(str::to_string),
            launch_configuration: g.launch_configuration_name().map(str::to_string),
            mixed: g.mixed_instances_policy().is_some(),
            instances: g
                .instances()
                .iter()
                .map(|i| {
                    (
                        i.instance_id().unwrap_or_default().to_string(),
                        i.launch_template()
                            .and_then(|l| l.version())
                            .map(str::to_string),
                    )
                })
                .collect(),
        });
    }
    Ok(views)
}

/// The image id each of the group's instances runs.
pub async fn group_instance_images(
    c: &Clients,
    group: &str,
) -> Result<Vec<(String, String)>, String> {
    let groups = c
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .map_err(|e| format!("DescribeAutoScalingGroups: {e:?}"))?;
    let ids: Vec<String> = groups
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.instances())
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    if ids.is_empty() {
        return Ok(vec![]);
    }
    let out = c
        .ec2
        .describe_instances()
        .set_instance_ids(Some(ids))
        .send()
        .await
        .map_err(|e| format!("DescribeInstances: {e:?}"))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .map(|i| {
            (
                i.instance_id().unwrap_or_default().to_string(),
                i.image_id().unwrap_or_default().to_string(),
            )
        })
        .collect())
}
