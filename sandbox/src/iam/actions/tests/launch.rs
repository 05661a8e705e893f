//! What StartInstanceRefresh authorizes on the caller's behalf for each
//! launch template version it launches from.

use crate::iam::actions::lookup::fake::*;
use crate::iam::actions::{GroupInfo, MapError, TemplateInfo, VersionInfo};
use crate::iam::Check;
use iam_rs::ContextValue;

const GROUP: &str = "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:\
                     0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:autoScalingGroupName/web-a";
const LT1: &str = "arn:aws:ec2:us-east-1:000000000000:launch-template/lt-1";
const ROLE: &str = "arn:aws:iam::000000000000:role/web-instance";
const PROFILE: &str = "arn:aws:iam::000000000000:instance-profile/web-instance";

fn fleet() -> Fake {
    let mut f = Fake::default();
    f.groups.insert(
        "web-a".into(),
        GroupInfo {
            arn: GROUP.into(),
            tags: tags(&[("autosky:environment", "web")]),
            launch_templates: vec![("lt-1".into(), "$Latest".into())],
        },
    );
    for (id, name) in [("lt-1", "web-lt"), ("lt-2", "web-spot")] {
        f.templates.push(TemplateInfo {
            id: id.into(),
            name: name.into(),
            tags: tags(&[("autosky:environment", "web")]),
            default_version: 3,
            latest_version: 5,
        });
    }
    f.versions.insert(
        ("lt-1".into(), 5),
        VersionInfo {
            image_id: Some("ami-5".into()),
            instance_profile: Some(PROFILE.into()),
            tag_specifications: vec![
                ("instance".into(), tags(&[("app", "web")])),
                ("volume".into(), tags(&[("app", "web"), ("disk", "root")])),
            ],
            subnet_ids: vec![],
            security_group_ids: vec![],
        },
    );
    f.versions.insert(
        ("lt-1".into(), 3),
        VersionInfo {
            image_id: Some("ami-3".into()),
            subnet_ids: vec!["subnet-1".into()],
            security_group_ids: vec!["sg-1".into(), "sg-2".into()],
            ..Default::default()
        },
    );
    f.versions.insert(
        ("lt-2".into(), 5),
        VersionInfo {
            image_id: Some("ami-5".into()),
            ..Default::default()
        },
    );
    f.profiles.insert(PROFILE.into(), vec![ROLE.into()]);
    f
}

fn refresh(desired: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    let mut pairs = vec![
        ("Action", "StartInstanceRefresh"),
        ("Version", "2011-01-01"),
        ("AutoScalingGroupName", "web-a"),
        ("Strategy", "Rolling"),
        ("Preferences.MinHealthyPercentage", "90"),
        ("Preferences.SkipMatching", "false"),
        ("Preferences.AutoRollback", "true"),
    ];
    pairs.extend(desired);
    form(&pairs)
}

async fn checks(desired: &[(&str, &str)]) -> Vec<Check> {
    map(
        "autoscaling",
        "StartInstanceRefresh",
        &refresh(desired),
        &fleet(),
    )
    .await
    .unwrap()
}

/// (action, resource, on behalf of) of each check.
fn summary(checks: &[Check]) -> Vec<(String, String, Option<String>)> {
    checks
        .iter()
        .map(|c| (c.action.clone(), c.resource.clone(), c.on_behalf_of.clone()))
        .collect()
}

#[tokio::test]
async fn refresh_to_a_launch_template_checks_launching_tagging_and_passing_its_role() {
    let got = checks(&[
        (
            "DesiredConfiguration.LaunchTemplate.LaunchTemplateId",
            "lt-1",
        ),
        ("DesiredConfiguration.LaunchTemplate.Version", "5"),
    ])
    .await;
    let by = "autoscaling:StartInstanceRefresh with launch template lt-1 version 5";
    let launch = |extra: Vec<(String, ContextValue)>| {
        let mut c = strings(&[("ec2:Region", "us-east-1"), ("ec2:LaunchTemplate", LT1)]);
        c.push((
            "ec2:IsLaunchTemplateResource".into(),
            ContextValue::Boolean(true),
        ));
        c.extend(extra);
        c
    };
    let run = |resource: &str, extra| check("ec2:RunInstances", resource, launch(extra), Some(by));
    let ec2 = |kind: &str| format!("arn:aws:ec2:us-east-1:000000000000:{kind}/*");
    let app = strings(&[("aws:RequestTag/app", "web")]);
    let mut volume_tags = strings(&[
        ("aws:RequestTag/app", "web"),
        ("aws:RequestTag/disk", "root"),
    ]);
    volume_tags.push(tag_keys(&["app", "disk"]));
    let mut instance_tags = app.clone();
    instance_tags.push(tag_keys(&["app"]));
    let tag = |kind: &str, request: Vec<(String, ContextValue)>| {
        let mut c = strings(&[
            ("ec2:Region", "us-east-1"),
            ("ec2:CreateAction", "RunInstances"),
        ]);
        c.extend(request);
        check("ec2:CreateTags", &ec2(kind), c, Some(by))
    };
    assert_eq!(
        got,
        vec![
            check(
                "autoscaling:StartInstanceRefresh",
                GROUP,
                strings(&[
                    ("aws:ResourceTag/autosky:environment", "web"),
                    ("autoscaling:ResourceTag/autosky:environment", "web"),
                ]),
                None
            ),
            run(
                LT1,
                strings(&[
                    ("aws:ResourceTag/autosky:environment", "web"),
                    ("ec2:ResourceTag/autosky:environment", "web"),
                ])
            ),
            run("arn:aws:ec2:us-east-1::image/ami-5", vec![]),
            run(&ec2("instance"), instance_tags.clone()),
            run(&ec2("volume"), volume_tags.clone()),
            run(&ec2("network-interface"), vec![]),
            run(&ec2("subnet"), vec![]),
            run(&ec2("security-group"), vec![]),
            tag("instance", instance_tags),
            tag("volume", volume_tags),
            check(
                "iam:PassRole",
                ROLE,
                strings(&[("iam:PassedToService", "ec2.amazonaws.com")]),
                Some(by)
            ),
        ]
    );
}

#[tokio::test]
async fn refresh_to_a_mixed_instances_policy_checks_each_template_once() {
    let p = "DesiredConfiguration.MixedInstancesPolicy.LaunchTemplate.";
    let keys: Vec<(String, &str)> = vec![
        (
            format!("{p}LaunchTemplateSpecification.LaunchTemplateId"),
            "lt-1",
        ),
        (format!("{p}LaunchTemplateSpecification.Version"), "5"),
        (format!("{p}Overrides.member.1.InstanceType"), "t3.micro"),
        (format!("{p}Overrides.member.2.InstanceType"), "t3.small"),
        (
            format!("{p}Overrides.member.2.LaunchTemplateSpecification.LaunchTemplateName"),
            "web-spot",
        ),
        (
            format!("{p}Overrides.member.2.LaunchTemplateSpecification.Version"),
            "$Latest",
        ),
        (
            format!("{p}Overrides.member.3.LaunchTemplateSpecification.LaunchTemplateId"),
            "lt-1",
        ),
        (
            format!("{p}Overrides.member.3.LaunchTemplateSpecification.Version"),
            "5",
        ),
        (
            "DesiredConfiguration.MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity"
                .into(),
            "1",
        ),
    ];
    let desired: Vec<(&str, &str)> = keys.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let got = checks(&desired).await;
    let templates: Vec<_> = summary(&got)
        .into_iter()
        .filter(|(a, r, _)| a == "ec2:RunInstances" && r.contains(":launch-template/"))
        .collect();
    assert_eq!(
        templates,
        vec![
            (
                "ec2:RunInstances".into(),
                LT1.into(),
                Some("autoscaling:StartInstanceRefresh with launch template lt-1 version 5".into())
            ),
            (
                "ec2:RunInstances".into(),
                "arn:aws:ec2:us-east-1:000000000000:launch-template/lt-2".into(),
                Some(
                    "autoscaling:StartInstanceRefresh with launch template lt-2 version $Latest"
                        .into()
                )
            ),
        ]
    );
    // lt-2's version has no tags and no instance profile.
    let lt2 = |c: &&Check| {
        c.on_behalf_of
            .as_deref()
            .is_some_and(|b| b.contains("lt-2"))
    };
    assert!(got
        .iter()
        .filter(lt2)
        .all(|c| c.action == "ec2:RunInstances"));
}

#[tokio::test]
async fn refresh_without_a_desired_configuration_launches_from_the_groups_own_version() {
    let got = checks(&[]).await;
    // The group's `$Latest` is version 5: its image, profile and tags.
    let s = summary(&got);
    assert!(s.contains(&(
        "ec2:RunInstances".into(),
        "arn:aws:ec2:us-east-1::image/ami-5".into(),
        Some("autoscaling:StartInstanceRefresh with launch template lt-1 version $Latest".into())
    )));
    assert_eq!(s.iter().filter(|(a, _, _)| a == "iam:PassRole").count(), 1);
    assert_eq!(
        s.iter().filter(|(a, _, _)| a == "ec2:CreateTags").count(),
        2
    );
    // A desired configuration that names no template launches the same.
    let distribution_only = checks(&[(
        "DesiredConfiguration.MixedInstancesPolicy.InstancesDistribution.OnDemandBaseCapacity",
        "1",
    )])
    .await;
    assert_eq!(distribution_only, got);
}

#[tokio::test]
async fn a_version_naming_subnets_and_security_groups_is_checked_on_each() {
    let got = checks(&[
        (
            "DesiredConfiguration.LaunchTemplate.LaunchTemplateName",
            "web-lt",
        ),
        ("DesiredConfiguration.LaunchTemplate.Version", "$Default"),
    ])
    .await;
    let resources: Vec<String> = got
        .iter()
        .filter(|c| c.action == "ec2:RunInstances")
        .map(|c| c.resource.clone())
        .collect();
    let ec2 = |r: &str| format!("arn:aws:ec2:us-east-1:000000000000:{r}");
    assert_eq!(
        resources,
        vec![
            LT1.to_string(),
            "arn:aws:ec2:us-east-1::image/ami-3".into(),
            ec2("instance/*"),
            ec2("volume/*"),
            ec2("network-interface/*"),
            ec2("subnet/subnet-1"),
            ec2("security-group/sg-1"),
            ec2("security-group/sg-2"),
        ]
    );
    // Version 3 tags nothing and has no instance profile.
    assert!(got
        .iter()
        .all(|c| c.action != "ec2:CreateTags" && c.action != "iam:PassRole"));
}

#[tokio::test]
async fn refresh_to_a_missing_template_version_is_not_found() {
    let f = fleet();
    let form = refresh(&[
        (
            "DesiredConfiguration.LaunchTemplate.LaunchTemplateId",
            "lt-1",
        ),
        ("DesiredConfiguration.LaunchTemplate.Version", "9"),
    ]);
    assert!(matches!(
        map("autoscaling", "StartInstanceRefresh", &form, &f).await,
        Err(MapError::NotFound(m)) if m.contains("version 9")
    ));
}
