//! The EC2 entries, each from a request as the product's SDK sends it.

use crate::iam::actions::lookup::fake::*;
use crate::iam::actions::{MapError, TemplateInfo};

const INSTANCE: &str = "arn:aws:ec2:us-east-1:000000000000:instance";

fn fleet() -> Fake {
    let mut f = Fake::default();
    f.instances.insert(
        "i-1".into(),
        tags(&[("autosky:environment", "web"), ("Name", "prep")]),
    );
    f.instances.insert("i-2".into(), tags(&[]));
    f.templates.push(TemplateInfo {
        id: "lt-1".into(),
        name: "web-lt".into(),
        tags: tags(&[("autosky:environment", "web")]),
        default_version: 3,
        latest_version: 4,
    });
    f
}

#[tokio::test]
async fn describe_actions_are_authorized_on_any_resource() {
    let f = fleet();
    for (action, param) in [
        ("DescribeInstances", ("InstanceId.1", "i-1")),
        ("DescribeImages", ("ImageId.1", "ami-1")),
        ("DescribeLaunchTemplates", ("LaunchTemplateId.1", "lt-1")),
        (
            "DescribeLaunchTemplateVersions",
            ("LaunchTemplateId", "lt-1"),
        ),
    ] {
        let form = form(&[("Action", action), ("Version", "2016-11-15"), param]);
        assert_eq!(
            map("ec2", action, &form, &f).await.unwrap(),
            vec![check(
                &format!("ec2:{action}"),
                "*",
                strings(&[("ec2:Region", "us-east-1")]),
                None
            )],
            "{action}"
        );
    }
}

#[tokio::test]
async fn stop_and_start_instances_check_each_instance_with_its_tags() {
    let f = fleet();
    for action in ["StopInstances", "StartInstances"] {
        let form = form(&[
            ("Action", action),
            ("Version", "2016-11-15"),
            ("InstanceId.1", "i-1"),
            ("InstanceId.2", "i-2"),
        ]);
        assert_eq!(
            map("ec2", action, &form, &f).await.unwrap(),
            vec![
                check(
                    &format!("ec2:{action}"),
                    &format!("{INSTANCE}/i-1"),
                    strings(&[
                        ("ec2:Region", "us-east-1"),
                        ("aws:ResourceTag/Name", "prep"),
                        ("ec2:ResourceTag/Name", "prep"),
                        ("aws:ResourceTag/autosky:environment", "web"),
                        ("ec2:ResourceTag/autosky:environment", "web"),
                    ]),
                    None
                ),
                check(
                    &format!("ec2:{action}"),
                    &format!("{INSTANCE}/i-2"),
                    strings(&[("ec2:Region", "us-east-1")]),
                    None
                ),
            ],
            "{action}"
        );
    }
}

#[tokio::test]
async fn stopping_an_instance_that_does_not_exist_is_not_found() {
    let form = form(&[("Action", "StopInstances"), ("InstanceId.1", "i-404")]);
    assert!(matches!(
        map("ec2", "StopInstances", &form, &fleet()).await,
        Err(MapError::NotFound(m)) if m.contains("i-404")
    ));
}

#[tokio::test]
async fn create_image_checks_image_instance_snapshot_and_tags_on_create() {
    let mut pairs = vec![
        ("Action", "CreateImage"),
        ("Version", "2016-11-15"),
        ("InstanceId", "i-1"),
        ("Name", "autosky-web-d1"),
        ("Description", "Autosky deployment d1 of web"),
        ("NoReboot", "true"),
    ];
    for (n, rt) in [("1", "image"), ("2", "snapshot")] {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        pairs.extend([
            (leak(format!("TagSpecification.{n}.ResourceType")), rt),
            (leak(format!("TagSpecification.{n}.Tag.1.Key")), "Name"),
            (
                leak(format!("TagSpecification.{n}.Tag.1.Value")),
                "autosky-web-d1",
            ),
            (
                leak(format!("TagSpecification.{n}.Tag.2.Key")),
                "autosky:environment",
            ),
            (leak(format!("TagSpecification.{n}.Tag.2.Value")), "web"),
        ]);
    }
    let request = [
        ("aws:RequestTag/Name", "autosky-web-d1"),
        ("aws:RequestTag/autosky:environment", "web"),
    ];
    let keys = tag_keys(&["Name", "autosky:environment"]);
    let with = |mut c: Vec<_>, extra: Vec<_>| {
        c.extend(extra);
        c
    };
    let region = || strings(&[("ec2:Region", "us-east-1")]);
    let created = |rt: &str| {
        check(
            "ec2:CreateImage",
            &format!("arn:aws:ec2:us-east-1::{rt}/*"),
            with(with(region(), strings(&request)), vec![keys.clone()]),
            None,
        )
    };
    let tagged = |rt: &str| {
        check(
            "ec2:CreateTags",
            &format!("arn:aws:ec2:us-east-1::{rt}/*"),
            with(
                with(
                    with(region(), strings(&[("ec2:CreateAction", "CreateImage")])),
                    strings(&request),
                ),
                vec![keys.clone()],
            ),
            Some("ec2:CreateImage of instance i-1"),
        )
    };
    assert_eq!(
        map("ec2", "CreateImage", &form(&pairs), &fleet())
            .await
            .unwrap(),
        vec![
            created("image"),
            check(
                "ec2:CreateImage",
                &format!("{INSTANCE}/i-1"),
                with(
                    region(),
                    strings(&[
                        ("aws:ResourceTag/Name", "prep"),
                        ("ec2:ResourceTag/Name", "prep"),
                        ("aws:ResourceTag/autosky:environment", "web"),
                        ("ec2:ResourceTag/autosky:environment", "web"),
                    ])
                ),
                None
            ),
            created("snapshot"),
            tagged("image"),
            tagged("snapshot"),
        ]
    );
}

#[tokio::test]
async fn create_image_without_tags_makes_no_tag_on_create_check() {
    let form = form(&[
        ("Action", "CreateImage"),
        ("InstanceId", "i-2"),
        ("Name", "x"),
    ]);
    let checks = map("ec2", "CreateImage", &form, &fleet()).await.unwrap();
    let got: Vec<(&str, &str, usize)> = checks
        .iter()
        .map(|c| (c.action.as_str(), c.resource.as_str(), c.context.len()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("ec2:CreateImage", "arn:aws:ec2:us-east-1::image/*", 1),
            (
                "ec2:CreateImage",
                "arn:aws:ec2:us-east-1:000000000000:instance/i-2",
                1
            ),
            ("ec2:CreateImage", "arn:aws:ec2:us-east-1::snapshot/*", 1),
        ]
    );
}

#[tokio::test]
async fn launch_template_actions_check_the_template_by_id_or_name() {
    let f = fleet();
    let expected = |action: &str| {
        vec![check(
            &format!("ec2:{action}"),
            "arn:aws:ec2:us-east-1:000000000000:launch-template/lt-1",
            strings(&[
                ("ec2:Region", "us-east-1"),
                ("aws:ResourceTag/autosky:environment", "web"),
                ("ec2:ResourceTag/autosky:environment", "web"),
            ]),
            None,
        )]
    };
    let requests = [
        (
            "CreateLaunchTemplateVersion",
            vec![
                ("LaunchTemplateId", "lt-1"),
                ("SourceVersion", "3"),
                ("VersionDescription", "Autosky deployment d1"),
                ("ClientToken", "d1-web"),
                ("LaunchTemplateData.ImageId", "ami-9"),
            ],
        ),
        (
            "ModifyLaunchTemplate",
            vec![("LaunchTemplateId", "lt-1"), ("SetDefaultVersion", "5")],
        ),
        (
            "DeleteLaunchTemplateVersions",
            vec![
                ("LaunchTemplateId", "lt-1"),
                ("LaunchTemplateVersion.1", "2"),
                ("LaunchTemplateVersion.2", "4"),
            ],
        ),
        // By name: resolved to the template's id.
        (
            "ModifyLaunchTemplate",
            vec![("LaunchTemplateName", "web-lt"), ("SetDefaultVersion", "5")],
        ),
    ];
    for (action, params) in requests {
        let form = form(&params);
        assert_eq!(
            map("ec2", action, &form, &f).await.unwrap(),
            expected(action),
            "{action} {params:?}"
        );
    }
    let form = form(&[("LaunchTemplateId", "lt-404")]);
    assert!(matches!(
        map("ec2", "ModifyLaunchTemplate", &form, &f).await,
        Err(MapError::NotFound(_))
    ));
}

#[tokio::test]
async fn an_ec2_action_without_an_entry_is_refused() {
    let form = form(&[("Action", "TerminateInstances"), ("InstanceId.1", "i-1")]);
    assert_eq!(
        map("ec2", "TerminateInstances", &form, &fleet()).await,
        Err(MapError::NoEntry("ec2:TerminateInstances".into()))
    );
}

/// Image cleanup: DeregisterImage on the image, DeleteSnapshot on the
/// snapshot, each ARN without an account and with the resource's tags.
#[tokio::test]
async fn deregister_image_and_delete_snapshot_check_the_resource_with_its_tags() {
    let mut f = fleet();
    let env = tags(&[("autosky:environment", "web")]);
    f.images.insert("ami-1".into(), env.clone());
    f.snapshots.insert("snap-1".into(), env);
    let tagged = strings(&[
        ("ec2:Region", "us-east-1"),
        ("aws:ResourceTag/autosky:environment", "web"),
        ("ec2:ResourceTag/autosky:environment", "web"),
    ]);
    for (action, param, arn) in [
        (
            "DeregisterImage",
            ("ImageId", "ami-1"),
            "arn:aws:ec2:us-east-1::image/ami-1",
        ),
        (
            "DeleteSnapshot",
            ("SnapshotId", "snap-1"),
            "arn:aws:ec2:us-east-1::snapshot/snap-1",
        ),
    ] {
        let form = form(&[("Action", action), ("Version", "2016-11-15"), param]);
        assert_eq!(
            map("ec2", action, &form, &f).await.unwrap(),
            vec![check(&format!("ec2:{action}"), arn, tagged.clone(), None)],
            "{action}"
        );
    }
}

/// An image or snapshot already gone is not authorized here: EC2 answers
/// its own not-found error (which image cleanup counts as done).
#[tokio::test]
async fn removing_an_image_or_snapshot_that_does_not_exist_is_not_found() {
    let f = fleet();
    for (action, param) in [
        ("DeregisterImage", ("ImageId", "ami-404")),
        ("DeleteSnapshot", ("SnapshotId", "snap-404")),
    ] {
        let form = form(&[("Action", action), param]);
        assert!(
            matches!(
                map("ec2", action, &form, &f).await,
                Err(MapError::NotFound(m)) if m.contains("404")
            ),
            "{action}"
        );
        assert!(matches!(
            map("ec2", action, &form_without_id(action), &f).await,
            Err(MapError::Invalid(_))
        ));
    }
}

fn form_without_id(action: &str) -> std::collections::HashMap<String, String> {
    form(&[("Action", action)])
}
