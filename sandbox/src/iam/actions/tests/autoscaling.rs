//! The Auto Scaling entries, each from a request as the product's SDK sends
//! it. (StartInstanceRefresh's launch checks: `launch`'s tests.)

use crate::iam::actions::lookup::fake::*;
use crate::iam::actions::{GroupInfo, MapError};

const ARN: &str = "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:\
                   0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0:autoScalingGroupName/web-a";

fn fleet() -> Fake {
    let mut f = Fake::default();
    f.groups.insert(
        "web-a".into(),
        GroupInfo {
            arn: ARN.into(),
            tags: tags(&[("autosky:environment", "web")]),
            launch_templates: vec![],
        },
    );
    f
}

#[tokio::test]
async fn describe_actions_are_authorized_on_any_resource() {
    let f = fleet();
    for (action, param) in [
        (
            "DescribeAutoScalingGroups",
            ("AutoScalingGroupNames.member.1", "web-a"),
        ),
        (
            "DescribeInstanceRefreshes",
            ("AutoScalingGroupName", "web-a"),
        ),
        ("DescribeLaunchConfigurations", ("MaxRecords", "100")),
    ] {
        let form = form(&[("Action", action), ("Version", "2011-01-01"), param]);
        assert_eq!(
            map("autoscaling", action, &form, &f).await.unwrap(),
            vec![check(&format!("autoscaling:{action}"), "*", vec![], None)],
            "{action}"
        );
    }
}

#[tokio::test]
async fn group_actions_check_the_group_arn_with_its_tags() {
    let f = fleet();
    for (action, extra) in [
        (
            "SuspendProcesses",
            Some(("ScalingProcesses.member.1", "Launch")),
        ),
        ("ResumeProcesses", None),
        ("CancelInstanceRefresh", None),
        ("RollbackInstanceRefresh", None),
    ] {
        let mut pairs = vec![
            ("Action", action),
            ("Version", "2011-01-01"),
            ("AutoScalingGroupName", "web-a"),
        ];
        pairs.extend(extra);
        assert_eq!(
            map("autoscaling", action, &form(&pairs), &f).await.unwrap(),
            vec![check(
                &format!("autoscaling:{action}"),
                ARN,
                strings(&[
                    ("aws:ResourceTag/autosky:environment", "web"),
                    ("autoscaling:ResourceTag/autosky:environment", "web"),
                ]),
                None
            )],
            "{action}"
        );
    }
}

#[tokio::test]
async fn a_group_that_does_not_exist_is_not_found() {
    let form = form(&[
        ("Action", "ResumeProcesses"),
        ("AutoScalingGroupName", "nope"),
    ]);
    assert!(matches!(
        map("autoscaling", "ResumeProcesses", &form, &fleet()).await,
        Err(MapError::NotFound(m)) if m.contains("nope")
    ));
}

#[tokio::test]
async fn an_auto_scaling_action_without_an_entry_is_refused() {
    let form = form(&[("AutoScalingGroupName", "web-a")]);
    assert_eq!(
        map("autoscaling", "DeleteAutoScalingGroup", &form, &fleet()).await,
        Err(MapError::NoEntry(
            "autoscaling:DeleteAutoScalingGroup".into()
        ))
    );
}
