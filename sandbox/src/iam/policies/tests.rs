use super::*;

const STACK: &str = "autosky-sandbox";
const MACHINE: &str = "arn:aws:states:us-east-1:000000000000:stateMachine:autosky-deployment";
const INSTANCE_ROLE: &str = "arn:aws:iam::000000000000:role/autosky-instance";
const STEPS: [&str; 6] = [
    "ValidateFunction",
    "StopPreparationServerFunction",
    "CreateImageFunction",
    "CreateModelsFunction",
    "ReplaceInstancesFunction",
    "FinalizeFunction",
];

fn names() -> Names {
    Names {
        stack: STACK.into(),
        sender: "deployments@autosky.local".into(),
        table: "autosky-deployments".into(),
        state_machine_arn: MACHINE.into(),
        schedule_group: "autosky-sandbox".into(),
        scheduler_role_arn: "arn:aws:iam::000000000000:role/autosky-sandbox-scheduler".into(),
        instance_role_arns: vec![INSTANCE_ROLE.into()],
    }
}

fn policies() -> Policies {
    Policies::load(&names()).unwrap()
}

fn check(action: &str, resource: &str, context: &[(&str, ContextValue)]) -> Check {
    Check {
        action: action.into(),
        resource: resource.into(),
        context: context
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        on_behalf_of: None,
    }
}

fn s(v: &str) -> ContextValue {
    ContextValue::String(v.into())
}

fn allowed(v: &Verdict) -> bool {
    matches!(v, Verdict::Allowed { .. })
}

fn reason(v: Verdict) -> String {
    match v {
        Verdict::Denied { reason } => reason,
        other => panic!("expected a denial, got {other:?}"),
    }
}

fn function_arn(name: &str) -> String {
    format!("arn:aws:lambda:us-east-1:000000000000:function:{STACK}-{name}")
}

#[test]
fn every_function_and_role_of_the_template_has_its_policies_resolved() {
    let p = policies();
    let owners: BTreeSet<&str> = p.owners().collect();
    let mut expected: BTreeSet<&str> = STEPS.into_iter().collect();
    expected.extend([
        "ApiFunction",
        "SchedulesFunction",
        "ResumeFunction",
        "SchedulerRole",
        "DeploymentStateMachine",
    ]);
    assert_eq!(owners, expected);
    for owner in owners {
        for doc in p.documents(owner) {
            let text = doc.to_json().unwrap();
            assert!(!text.contains("${"), "{owner}: unresolved !Sub in {text}");
            assert!(!text.contains("!"), "{owner}: unresolved tag in {text}");
            assert!(!doc.statement.is_empty(), "{owner}: empty document");
        }
    }
}

#[test]
fn count_is_the_number_of_policy_documents_the_template_holds() {
    // Counted from the raw template: each entry of a SAM Policies list and of
    // a role's Policies is one document, each AWS::IAM::Policy one per role.
    let t: Y = serde_yaml::from_str(TEMPLATE).unwrap();
    let mut raw = 0;
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        raw += match r["Type"].as_str().unwrap() {
            "AWS::Serverless::Function" | "AWS::Serverless::StateMachine" | "AWS::IAM::Role" => r
                ["Properties"]["Policies"]
                .as_sequence()
                .map_or(0, Vec::len),
            "AWS::IAM::Policy" => r["Properties"]["Roles"].as_sequence().unwrap().len(),
            _ => 0,
        };
    }
    assert_eq!(policies().count(), raw);
    // 9 functions, 6 LambdaInvokePolicy + 1 inline on the state machine,
    // SchedulerRole's one, FinalizeStartCleanupPolicy.
    assert_eq!(raw, 18);
}

#[test]
fn the_state_machine_may_invoke_each_step_function_and_no_other() {
    let p = policies();
    for step in STEPS {
        let arn = function_arn(step);
        for resource in [arn.clone(), format!("{arn}:$LATEST")] {
            let v = p.evaluate(
                "DeploymentStateMachine",
                &check("lambda:InvokeFunction", &resource, &[]),
            );
            assert!(allowed(&v), "{resource}: {v:?}");
        }
    }
    for other in [
        function_arn("ApiFunction"),
        "arn:aws:lambda:us-east-1:000000000000:function:other-stack-ValidateFunction".into(),
    ] {
        let r = reason(p.evaluate(
            "DeploymentStateMachine",
            &check("lambda:InvokeFunction", &other, &[]),
        ));
        assert_eq!(
            r,
            format!("no statement allows lambda:InvokeFunction on {other}")
        );
    }
}

#[test]
fn the_scheduler_role_may_start_only_the_state_machine_and_dead_letter_to_its_queue() {
    let p = policies();
    let start = |m: &str| p.evaluate("SchedulerRole", &check("states:StartExecution", m, &[]));
    assert_eq!(
        start(MACHINE),
        Verdict::Allowed {
            sid: Some("StartDeployments".into())
        }
    );
    assert!(!allowed(&start(
        &MACHINE.replace("autosky-deployment", "other")
    )));
    let queue = |name: &str| format!("arn:aws:sqs:us-east-1:000000000000:{STACK}-{name}");
    let send = |q: &str| p.evaluate("SchedulerRole", &check("sqs:SendMessage", q, &[]));
    assert_eq!(
        send(&queue("ScheduleDeadLetterQueue")),
        Verdict::Allowed {
            sid: Some("DeadLetter".into())
        }
    );
    assert!(!allowed(&send(&queue("FinalizeFailureQueue"))));
}

#[test]
fn a_policy_attached_to_a_generated_role_counts_for_its_function() {
    let p = policies();
    let v = p.evaluate(
        "FinalizeFunction",
        &check("states:StartExecution", MACHINE, &[]),
    );
    assert_eq!(
        v,
        Verdict::Allowed {
            sid: Some("StartCleanupExecution".into())
        }
    );
    assert!(!allowed(&p.evaluate(
        "ValidateFunction",
        &check("states:StartExecution", MACHINE, &[])
    )));
}

#[test]
fn a_request_without_resource_level_permissions_needs_a_resource_star_statement() {
    let p = policies();
    let v = p.evaluate(
        "ValidateFunction",
        &check("ec2:DescribeInstances", "*", &[]),
    );
    assert_eq!(
        v,
        Verdict::Allowed {
            sid: Some("Describe".into())
        }
    );
    // SuspendProcesses is granted only on group ARNs: `*` as the request's
    // resource matches none of them.
    let r = reason(p.evaluate(
        "ValidateFunction",
        &check(
            "autoscaling:SuspendProcesses",
            "*",
            &[("aws:ResourceTag/autosky:environment", s("web"))],
        ),
    ));
    assert_eq!(r, "no statement allows autoscaling:SuspendProcesses on *");
}

#[test]
fn a_resource_star_statement_matches_a_concrete_arn() {
    let v = policies().evaluate(
        "ValidateFunction",
        &check(
            "ec2:DescribeInstances",
            "arn:aws:ec2:us-east-1:000000000000:instance/i-1",
            &[],
        ),
    );
    assert!(allowed(&v), "{v:?}");
}

#[test]
fn a_missing_tag_is_denied_naming_the_statement_and_its_condition() {
    let p = policies();
    let instance = "arn:aws:ec2:us-east-1:000000000000:instance/i-1";
    let r = reason(p.evaluate(
        "StopPreparationServerFunction",
        &check("ec2:StopInstances", instance, &[]),
    ));
    assert_eq!(
        r,
        "statement StopTaggedInstances: condition Null aws:ResourceTag/autosky:environment not met (no aws:ResourceTag/autosky:environment)"
    );
    let v = p.evaluate(
        "StopPreparationServerFunction",
        &check(
            "ec2:StopInstances",
            instance,
            &[("aws:ResourceTag/autosky:environment", s("web"))],
        ),
    );
    assert_eq!(
        v,
        Verdict::Allowed {
            sid: Some("StopTaggedInstances".into())
        }
    );
}

#[test]
fn a_wrong_condition_value_is_denied_with_the_value_the_request_had() {
    let r = reason(policies().evaluate(
        "CreateImageFunction",
        &check(
            "ec2:CreateTags",
            "arn:aws:ec2:us-east-1::image/ami-1",
            &[("ec2:CreateAction", s("RunInstances"))],
        ),
    ));
    assert_eq!(
        r,
        "statement TagOnCreateImage: condition StringEquals ec2:CreateAction not met (request has ec2:CreateAction=RunInstances)"
    );
}

#[test]
fn a_role_is_passed_to_ec2_only() {
    let p = policies();
    let pass = |service: &str| {
        p.evaluate(
            "ReplaceInstancesFunction",
            &check(
                "iam:PassRole",
                INSTANCE_ROLE,
                &[("iam:PassedToService", s(service))],
            ),
        )
    };
    assert!(allowed(&pass("ec2.amazonaws.com")));
    assert_eq!(
        reason(pass("scheduler.amazonaws.com")),
        "statement PassInstanceProfileRoles: condition StringEquals iam:PassedToService not met (request has iam:PassedToService=scheduler.amazonaws.com)"
    );
}

const MINI: &str = r#"
Parameters:
  InstanceRoleArns:
    Type: CommaDelimitedList
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        - Statement:
            - Sid: Pass
              Effect: Allow
              Action: iam:PassRole
              Resource: !Ref InstanceRoleArns
            - Sid: Everything
              Effect: Allow
              Action: ec2:*
              Resource: "*"
            - Sid: NoStop
              Effect: Deny
              Action: ec2:StopInstances
              Resource: "*"
"#;

#[test]
fn instance_role_arns_is_the_list_of_the_sandbox_roles() {
    let p = Policies::from_yaml(MINI, &names()).unwrap();
    assert!(allowed(
        &p.evaluate("F", &check("iam:PassRole", INSTANCE_ROLE, &[]))
    ));
    let other = "arn:aws:iam::000000000000:role/admin";
    assert!(!allowed(
        &p.evaluate("F", &check("iam:PassRole", other, &[]))
    ));
}

#[test]
fn an_explicit_deny_wins_and_is_named() {
    let p = Policies::from_yaml(MINI, &names()).unwrap();
    let instance = "arn:aws:ec2:us-east-1:000000000000:instance/i-1";
    assert!(allowed(
        &p.evaluate("F", &check("ec2:StartInstances", instance, &[]))
    ));
    assert_eq!(
        reason(p.evaluate("F", &check("ec2:StopInstances", instance, &[]))),
        "explicitly denied by NoStop"
    );
}

#[test]
fn an_unknown_function_has_no_policy() {
    assert_eq!(
        reason(policies().evaluate("Nope", &check("ec2:DescribeInstances", "*", &[]))),
        "no policy for Nope"
    );
}

#[test]
fn granted_actions_are_the_allowed_actions_as_named() {
    let got = policies().granted_actions("ValidateFunction");
    let want: BTreeSet<String> = [
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:UpdateItem",
        "dynamodb:DeleteItem",
        "ses:SendEmail",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplates",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeInstanceRefreshes",
        "autoscaling:SuspendProcesses",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(got, want);
}

#[test]
fn without_statement_removes_exactly_that_grant() {
    let p = policies();
    let less = p
        .without_statement("StopPreparationServerFunction", "StopTaggedInstances")
        .unwrap();
    let stop = check(
        "ec2:StopInstances",
        "arn:aws:ec2:us-east-1:000000000000:instance/i-1",
        &[("aws:ResourceTag/autosky:environment", s("web"))],
    );
    assert!(allowed(&p.evaluate("StopPreparationServerFunction", &stop)));
    assert!(
        reason(less.evaluate("StopPreparationServerFunction", &stop))
            .starts_with("no statement allows ec2:StopInstances")
    );
    assert!(!less
        .granted_actions("StopPreparationServerFunction")
        .contains("ec2:StopInstances"));
    assert_eq!(less.count(), p.count());
    assert!(p
        .without_statement("StopPreparationServerFunction", "Nope")
        .is_err());
    assert!(p.without_statement("Nope", "Table").is_err());
}

#[test]
fn the_session_is_the_function_in_its_generated_role() {
    assert_eq!(
        policies().principal_arn("ValidateFunction"),
        "arn:aws:sts::000000000000:assumed-role/autosky-sandbox-ValidateFunctionRole/autosky-sandbox-ValidateFunction"
    );
}

#[test]
fn unknown_policy_forms_are_refused_by_name() {
    let with = |policy: &str| {
        let yaml = format!(
            "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Policies:\n        - {policy}\n"
        );
        Policies::from_yaml(&yaml, &names()).unwrap_err()
    };
    assert!(with("DynamoDBCrudPolicy: {TableName: t}").contains("DynamoDBCrudPolicy"));
    assert!(with("AmazonEC2FullAccess").contains("AmazonEC2FullAccess"));
    let e = with("Statement: [{Effect: Allow, Action: ec2:X, Resource: !If [C, a, b]}]");
    assert!(e.contains("If"), "{e}");
}

/// Every statement of every owner, with where it is.
fn all_statements(p: &Policies) -> Vec<(String, IAMStatement)> {
    p.owners()
        .flat_map(|o| {
            p.documents(o).iter().flat_map(move |d| {
                d.statement.iter().map(move |s| {
                    let sid = sid_of(s.sid.as_deref());
                    (format!("{o} statement {sid}"), s.clone())
                })
            })
        })
        .collect()
}

#[test]
fn no_resource_pattern_wildcards_the_service() {
    // AWS allows wildcards in any ARN segment; iam-rs never matches a
    // pattern whose service has one, so such a grant would be denied here
    // and allowed on AWS.
    for (at, s) in all_statements(&policies()) {
        let patterns = match &s.resource {
            Some(iam_rs::IAMResource::Single(r)) => vec![r.clone()],
            Some(iam_rs::IAMResource::Multiple(r)) => r.clone(),
            None => vec![],
        };
        for p in patterns.iter().filter(|p| *p != "*") {
            let service = p.split(':').nth(2).unwrap_or_default();
            assert!(
                !service.contains(['*', '?']),
                "{at}: {p} has a wildcard in its service"
            );
        }
    }
}

#[test]
fn arn_like_values_wildcard_only_the_resource_part() {
    // AWS's ArnLike compares each of the six colon-separated parts on its
    // own; iam-rs globs the whole string. They agree while the first five
    // parts are literal, which this keeps true for the template.
    for (at, s) in all_statements(&policies()) {
        let Some(block) = &s.condition else { continue };
        for (op, keys) in &block.conditions {
            if !op.as_str().contains("ArnLike") && !op.as_str().contains("ArnNotLike") {
                continue;
            }
            for (key, value) in keys {
                let values = match value.to_json_value() {
                    Value::Array(a) => a,
                    v => vec![v],
                };
                for v in values {
                    let v = v.as_str().unwrap_or_default().to_string();
                    let head: Vec<&str> = v.splitn(6, ':').take(5).collect();
                    assert!(
                        head.iter().all(|part| !part.contains(['*', '?'])),
                        "{at}: {op} {key} {v} has a wildcard before the resource part"
                    );
                }
            }
        }
    }
}

#[test]
fn a_policy_may_attach_to_a_role_of_the_template_or_a_generated_one() {
    let yaml = r#"
Resources:
  F:
    Type: AWS::Serverless::Function
    Properties:
      Policies:
        Statement:
          - {Sid: One, Effect: Allow, Action: sqs:SendMessage, Resource: "*"}
  R:
    Type: AWS::IAM::Role
    Properties: {}
  P:
    Type: AWS::IAM::Policy
    Properties:
      Roles: [!Ref FRole, !Ref R]
      PolicyDocument:
        Statement:
          - {Sid: Two, Effect: Allow, Action: sqs:ReceiveMessage, Resource: "*"}
"#;
    let p = Policies::from_yaml(yaml, &names()).unwrap();
    assert_eq!(p.count(), 3);
    let receive = check("sqs:ReceiveMessage", "*", &[]);
    assert!(allowed(&p.evaluate("F", &receive)));
    assert!(allowed(&p.evaluate("R", &receive)));
    let bad = yaml.replace("!Ref FRole", "!Ref GRole");
    assert!(Policies::from_yaml(&bad, &names())
        .unwrap_err()
        .contains("GRole"));
}

#[test]
fn a_function_with_a_role_of_its_own_is_refused() {
    let yaml = "Resources:\n  F:\n    Type: AWS::Serverless::Function\n    Properties:\n      Role: arn:aws:iam::000000000000:role/x\n";
    assert!(Policies::from_yaml(yaml, &names())
        .unwrap_err()
        .contains("Role"));
}

#[test]
fn instances_are_launched_only_from_a_launch_template_of_the_account() {
    let p = policies();
    let run = |context: &[(&str, ContextValue)]| {
        p.evaluate(
            "ReplaceInstancesFunction",
            &check(
                "ec2:RunInstances",
                "arn:aws:ec2:us-east-1:000000000000:instance/*",
                context,
            ),
        )
    };
    let ours = "arn:aws:ec2:us-east-1:000000000000:launch-template/lt-1";
    assert!(allowed(&run(&[("ec2:LaunchTemplate", s(ours))])));
    let r = reason(run(&[]));
    assert!(
        r.contains("RunOnlyFromLaunchTemplates") && r.contains("no ec2:LaunchTemplate"),
        "{r}"
    );
    let elsewhere = "arn:aws:ec2:us-east-1:111111111111:launch-template/lt-1";
    let r = reason(run(&[("ec2:LaunchTemplate", s(elsewhere))]));
    assert!(
        r.contains(&format!("ec2:LaunchTemplate={elsewhere}")),
        "{r}"
    );
}
