//! The look-ups against a real emulator: each one probed once, so a test
//! fails if fakecloud does not answer with the tags, ARNs, launch template
//! data and instance profile roles the map relies on.

use super::*;
use aws_sdk_autoscaling::types::{LaunchTemplateSpecification, Tag as GroupTag};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateIamInstanceProfileSpecificationRequest,
    LaunchTemplateTagSpecificationRequest, RequestLaunchTemplateData, ResourceType, Tag,
    TagSpecification,
};

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

#[tokio::test]
async fn emulator_lookups_return_tags_arns_versions_and_profile_roles() {
    let port = crate::emulator::free_port().unwrap();
    let emulator = crate::emulator::Emulator::start(port).await.unwrap();
    let url = emulator.url();
    let config = crate::sdk_config(&url);
    let lookup = EmulatorLookup::new(&url, &config);
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let asg = aws_sdk_autoscaling::Client::new(&config);

    // An instance with tags.
    let instance = ec2
        .run_instances()
        .image_id(crate::seed::BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::Instance)
                .tags(tag("autosky:environment", "web"))
                .build(),
        )
        .send()
        .await
        .unwrap()
        .instances()[0]
        .instance_id()
        .unwrap()
        .to_string();
    assert_eq!(
        lookup.instance_tags(&instance).await.unwrap(),
        Some(Tags::from([(
            "autosky:environment".to_string(),
            "web".to_string()
        )]))
    );
    assert_eq!(lookup.instance_tags("i-0123456789abcdef0").await, Ok(None));

    // A role in an instance profile.
    for (action, params) in [
        (
            "CreateRole",
            vec![
                ("RoleName", "probe-role"),
                (
                    "AssumeRolePolicyDocument",
                    r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#,
                ),
            ],
        ),
        (
            "CreateInstanceProfile",
            vec![("InstanceProfileName", "probe-profile")],
        ),
        (
            "AddRoleToInstanceProfile",
            vec![
                ("InstanceProfileName", "probe-profile"),
                ("RoleName", "probe-role"),
            ],
        ),
    ] {
        let (status, body) = crate::emulator::iam(&url, action, &params).await.unwrap();
        assert_eq!(status, 200, "{action}: {body}");
    }
    let role = "arn:aws:iam::000000000000:role/probe-role".to_string();
    let profile_arn = "arn:aws:iam::000000000000:instance-profile/probe-profile";
    assert_eq!(
        lookup.instance_profile_roles("probe-profile").await,
        Ok(vec![role.clone()])
    );
    assert_eq!(
        lookup.instance_profile_roles(profile_arn).await,
        Ok(vec![role])
    );
    assert!(lookup
        .instance_profile_roles("no-such-profile")
        .await
        .is_err());

    // A tagged launch template: version 1 (default) launches with the
    // profile and tags, version 2 (latest) only changes the image.
    let lt = ec2
        .create_launch_template()
        .launch_template_name("probe-lt")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id(crate::seed::BASE_IMAGE)
                .iam_instance_profile(
                    LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                        .arn(profile_arn)
                        .build(),
                )
                .security_group_ids("sg-12345678")
                .tag_specifications(
                    LaunchTemplateTagSpecificationRequest::builder()
                        .resource_type(ResourceType::Instance)
                        .tags(tag("app", "web"))
                        .build(),
                )
                .build(),
        )
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .tags(tag("autosky:environment", "web"))
                .build(),
        )
        .send()
        .await
        .unwrap();
    let lt_id = lt
        .launch_template()
        .unwrap()
        .launch_template_id()
        .unwrap()
        .to_string();
    ec2.create_launch_template_version()
        .launch_template_id(&lt_id)
        .source_version("1")
        .launch_template_data(
            RequestLaunchTemplateData::builder()
                .image_id("ami-0fedcba987654321")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let info = TemplateInfo {
        id: lt_id.clone(),
        name: "probe-lt".into(),
        tags: Tags::from([("autosky:environment".to_string(), "web".to_string())]),
        default_version: 1,
        latest_version: 2,
    };
    assert_eq!(lookup.launch_template(&lt_id).await, Ok(Some(info.clone())));
    assert_eq!(lookup.launch_template("probe-lt").await, Ok(Some(info)));
    assert_eq!(
        lookup.launch_template("lt-0123456789abcdef0").await,
        Ok(None)
    );
    assert_eq!(lookup.launch_template("no-such-template").await, Ok(None));
    let v1 = VersionInfo {
        image_id: Some(crate::seed::BASE_IMAGE.to_string()),
        instance_profile: Some(profile_arn.to_string()),
        tag_specifications: vec![(
            "instance".to_string(),
            Tags::from([("app".to_string(), "web".to_string())]),
        )],
        subnet_ids: vec![],
        security_group_ids: vec!["sg-12345678".to_string()],
    };
    assert_eq!(
        lookup.template_version(&lt_id, "1").await,
        Ok(Some(v1.clone()))
    );
    assert_eq!(
        lookup.template_version(&lt_id, "$Default").await,
        Ok(Some(v1.clone()))
    );
    let latest = lookup
        .template_version(&lt_id, "$Latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.image_id.as_deref(), Some("ami-0fedcba987654321"));
    // Created from version 1: its data carries over.
    assert_eq!(latest.instance_profile, v1.instance_profile);
    assert_eq!(lookup.template_version(&lt_id, "9").await, Ok(None));

    // A tagged group on the template's latest version.
    asg.create_auto_scaling_group()
        .auto_scaling_group_name("probe-asg")
        .min_size(0)
        .max_size(1)
        .desired_capacity(0)
        .availability_zones("us-east-1a")
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_id(&lt_id)
                .version("$Latest")
                .build(),
        )
        .tags(
            GroupTag::builder()
                .key("autosky:environment")
                .value("web")
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let group = lookup.group("probe-asg").await.unwrap().unwrap();
    assert!(
        group
            .arn
            .starts_with("arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:")
            && group.arn.ends_with(":autoScalingGroupName/probe-asg"),
        "{}",
        group.arn
    );
    assert_eq!(
        group.tags,
        Tags::from([("autosky:environment".to_string(), "web".to_string())])
    );
    assert_eq!(group.launch_templates, vec![(lt_id, "$Latest".to_string())]);
    assert_eq!(lookup.group("no-such-group").await, Ok(None));

    // SES: an address is verified once asked for, another one is not.
    aws_sdk_ses::Client::new(&config)
        .verify_email_identity()
        .email_address("probe@example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(
        lookup.ses_identity_verified("probe@example.com").await,
        Ok(true)
    );
    assert_eq!(
        lookup.ses_identity_verified("other@example.com").await,
        Ok(false)
    );
    emulator.stop().await;
}
