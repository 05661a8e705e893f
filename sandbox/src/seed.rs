//! Seeds a scaling environment in the emulator: a preparation server, a
//! launch template, an Auto Scaling group with instances, and the
//! environment's record in the table.

use crate::Clients;
use autosky_core::domain::{Environment, EnvironmentDefaults};
use autosky_core::store::Store;
use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_ec2::types::{
    InstanceType, RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};

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
        .tags(
            Tag::builder()
                .key("autosky:environment")
                .value(env_id)
                .build(),
        )
        .build()
}

/// Creates the environment `env_id` with `instances` in its group and
/// registers it with `defaults`.
pub async fn environment(
    c: &Clients,
    env_id: &str,
    instances: i32,
    defaults: EnvironmentDefaults,
) -> Result<Seeded, String> {
    let run = c
        .ec2
        .run_instances()
        .image_id(BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
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

    let lt = c
        .ec2
        .create_launch_template()
        .launch_template_name(format!("{env_id}-template"))
        .version_description("initial")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(BASE_IMAGE)
                .instance_type(InstanceType::T3Micro)
                .build(),
        )
        .tag_specifications(tags(
            ResourceType::LaunchTemplate,
            env_id,
            &format!("{env_id}-template"),
        ))
        .send()
        .await
        .map_err(|e| format!("CreateLaunchTemplate: {e:?}"))?;
    let lt_id = lt
        .launch_template()
        .and_then(|t| t.launch_template_id())
        .ok_or("CreateLaunchTemplate returned no id")?
        .to_string();

    let group = format!("{env_id}-asg");
    c.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(&group)
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&lt_id)
                .version("$Default")
                .build(),
        )
        .min_size(0)
        .max_size(instances.max(1) * 2)
        .desired_capacity(instances)
        .availability_zones("us-east-1a")
        .send()
        .await
        .map_err(|e| format!("CreateAutoScalingGroup: {e:?}"))?;

    let environment = Environment {
        environment_id: env_id.into(),
        preparation_server_id: server,
        auto_scaling_groups: vec![group],
        launch_template_id: lt_id,
        defaults,
    };
    c.store
        .put_environment(&environment)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Seeded { environment })
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
