//! The state machine definition agrees with the code and with template.yaml:
//! every Task is one of our steps under its console name (or a waiting state
//! running its step with a task token), every error name the code can return
//! is retried (Retryable) or caught into Finalization, waiting states pass
//! their own step's result and fall back to checking on their timeout, and
//! every substitution is a function of template.yaml built from the matching
//! crate.

use autosky_core::domain::StepName;
use autosky_core::StepError;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The waiting states' integration: the step's function, with a task token.
const CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";

fn asl() -> Value {
    let text =
        std::fs::read_to_string(root().join("infra/statemachine/deployment.asl.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn states(asl: &Value) -> &serde_json::Map<String, Value> {
    asl["States"].as_object().unwrap()
}

fn error_lists(state: &Value, field: &str) -> Vec<(Vec<String>, Option<String>)> {
    state[field]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| {
                    let names = r["ErrorEquals"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| e.as_str().unwrap().to_string())
                        .collect();
                    (names, r["Next"].as_str().map(str::to_string))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn every_task_is_a_step_under_its_console_name() {
    let asl = asl();
    let tasks: Vec<(&String, &Value)> = states(&asl)
        .iter()
        .filter(|(_, s)| s["Type"] == "Task" && s["Resource"] != CALLBACK)
        .collect();
    assert_eq!(tasks.len(), 6, "exactly the six steps are Tasks");
    for step in StepName::ALL {
        let (name, _) = tasks
            .iter()
            .find(|(_, s)| s["Resource"] == format!("${{{}}}", step.substitution_key()))
            .unwrap_or_else(|| panic!("no Task uses ${{{}}}", step.substitution_key()));
        assert_eq!(name.as_str(), step.as_str());
    }
    // Every execution starts with the steps, except a cleanup execution
    // (started by the safety net), which goes straight to Finalization.
    let start = &states(&asl)[asl["StartAt"].as_str().unwrap()];
    assert_eq!(start["Type"], "Choice");
    assert_eq!(start["Default"], "Initial validation");
    let choices = start["Choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(choices[0]["Variable"], "$.cleanupOf");
    assert_eq!(choices[0]["IsPresent"], true);
    assert_eq!(choices[0]["Next"], "Finalization");
}

/// Finalization waits while the fleet is rolled back or restored: its
/// result's `done: false` leads to "Wait for fleet restore" (Finalization
/// again, with a task token) and back to the check; any other result goes
/// on to the end states. The field names are the ones Finalization's output
/// serializes.
#[test]
fn finalization_waits_for_the_fleet_in_a_loop() {
    let asl = asl();
    let all = states(&asl);
    let fin = &all["Finalization"];
    let check_name = fin["Next"].as_str().unwrap();
    let check = &all[check_name];
    assert_eq!(check["Type"], "Choice");
    let choices = check["Choices"].as_array().unwrap();
    assert_eq!(choices.len(), 1);
    assert_eq!(
        choices[0]["Variable"],
        format!("{}.done", fin["ResultPath"].as_str().unwrap())
    );
    assert_eq!(choices[0]["BooleanEquals"], false);
    assert_eq!(choices[0]["Next"], "Wait for fleet restore");
    let wait = &all["Wait for fleet restore"];
    assert_eq!(wait["Resource"], CALLBACK);
    assert_eq!(wait["Parameters"]["FunctionName"], "${FinalizeFunctionArn}");
    assert_eq!(wait["Next"], check_name);
    assert_eq!(check["Default"], "Deployment succeeded?");
    let out = autosky_core::steps::finalize::FinalOutput {
        status: autosky_core::domain::DeploymentStatus::Failed,
        generated_version: None,
        ignored: false,
        poll: autosky_core::steps::Poll::waiting_on(["group:web".to_string()]),
    };
    let v = serde_json::to_value(&out).unwrap();
    assert_eq!(
        (v["done"].clone(), v["wakeOn"].clone()),
        (false.into(), serde_json::json!(["group:web"]))
    );
    // What the next call reads back from `$.result`.
    let input: autosky_core::steps::StepInput = serde_json::from_value(serde_json::json!({
        "deploymentId": "01JABCDEFGHJKMNPQRSTVWXYZ0", "environmentId": "e", "result": v
    }))
    .unwrap();
    assert_eq!(
        input.result.map(|p| p.wake_on),
        Some(vec!["group:web".into()])
    );
}

#[test]
fn every_error_name_is_retried_or_caught_into_finalization() {
    let asl = asl();
    let all = states(&asl);
    for (name, state) in all.iter().filter(|(_, s)| s["Type"] == "Task") {
        let retried: BTreeSet<String> = error_lists(state, "Retry")
            .into_iter()
            .flat_map(|(n, _)| n)
            .collect();
        assert!(
            retried.contains("Retryable"),
            "{name} does not retry Retryable"
        );
        assert!(
            state["TimeoutSeconds"].as_u64().is_some(),
            "{name} has no TimeoutSeconds"
        );
        // A waiting state's first Catch is its fallback (checked by
        // `transitions_exist_and_waiting_states_run_their_step_with_a_token`).
        let fallback = usize::from(state["Resource"] == CALLBACK);
        let catches = error_lists(state, "Catch").split_off(fallback);
        assert_eq!(
            catches.last().map(|(n, _)| n.clone()),
            Some(vec!["States.ALL".to_string()]),
            "{name}: last Catch must be States.ALL"
        );
        if name == "Finalization" || state["Parameters"]["FunctionName"] == "${FinalizeFunctionArn}"
        {
            continue;
        }
        // AlreadyHandled (only Initial validation returns it) means "not this
        // execution's deployment": it must end the execution, never reach Finalization.
        let handled = catches
            .iter()
            .find(|(names, _)| names.iter().any(|n| n == "AlreadyHandled"));
        if name == "Initial validation" {
            let next = handled.and_then(|(_, n)| n.clone()).unwrap_or_default();
            assert_eq!(
                all[next.as_str()]["Type"],
                "Succeed",
                "Initial validation must catch AlreadyHandled into a Succeed state"
            );
        } else {
            assert!(handled.is_none(), "{name} catches AlreadyHandled");
        }
        for err in StepError::NAMES
            .iter()
            .filter(|n| !matches!(**n, "Retryable" | "AlreadyHandled"))
        {
            assert!(
                !retried.contains(*err),
                "{name} retries the permanent error {err}"
            );
            let caught = catches.iter().any(|(names, next)| {
                names.iter().any(|n| n == err) && next.as_deref() == Some("Finalization")
            });
            assert!(
                caught,
                "{name} does not catch {err} into Finalization by name"
            );
        }
        for (names, next) in &catches {
            if names.iter().any(|n| n == "AlreadyHandled") {
                continue;
            }
            assert_eq!(
                next.as_deref(),
                Some("Finalization"),
                "{name}: every other Catch goes to Finalization"
            );
        }
        assert!(
            catches.iter().all(|(_, _)| true)
                && state["Catch"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .skip(fallback)
                    .all(|c| c["ResultPath"] == "$.error"),
            "{name}: Catch must keep the input and put the error at $.error"
        );
    }
}

#[test]
fn transitions_exist_and_waiting_states_run_their_step_with_a_token() {
    let asl = asl();
    let all = states(&asl);
    let mut waiting = vec![];
    for (name, state) in all {
        let mut targets: Vec<&str> = vec![];
        targets.extend(state["Next"].as_str());
        targets.extend(state["Default"].as_str());
        for field in ["Choices", "Catch"] {
            if let Some(a) = state[field].as_array() {
                targets.extend(a.iter().filter_map(|c| c["Next"].as_str()));
            }
        }
        for t in targets {
            assert!(all.contains_key(t), "{name} goes to missing state {t}");
        }
        assert_ne!(
            state["Type"], "Wait",
            "{name}: waits are callback tasks now"
        );
        if state["Resource"] != CALLBACK {
            continue;
        }
        waiting.push(name.as_str());
        // The Choice it returns to reads the result of the step it runs.
        let check = &all[state["Next"].as_str().unwrap()];
        let variable = check["Choices"][0]["Variable"].as_str().unwrap();
        let result = state["ResultPath"].as_str().unwrap();
        assert_eq!(variable, format!("{result}.done"), "{name}");
        let step = all
            .values()
            .find(|s| s["Resource"] == state["Parameters"]["FunctionName"])
            .unwrap_or_else(|| panic!("{name} runs no step's function"));
        assert_eq!(step["ResultPath"], result, "{name}");
        let payload = &state["Parameters"]["Payload"];
        assert_eq!(payload["state.$"], "$", "{name}");
        assert_eq!(payload["taskToken.$"], "$$.Task.Token", "{name}");
        assert_eq!(payload["wakeOn.$"], format!("{result}.wakeOn"), "{name}");
        // The timeout is the fallback: never retried, caught back into
        // the same state (it registers and checks again).
        assert!(state["TimeoutSeconds"].as_u64().is_some_and(|s| s >= 60));
        assert_eq!(
            state["Retry"][0]["ErrorEquals"],
            serde_json::json!(["States.Timeout"])
        );
        assert_eq!(state["Retry"][0]["MaxAttempts"], 0);
        assert_eq!(
            state["Catch"][0]["ErrorEquals"],
            serde_json::json!(["States.Timeout"])
        );
        assert_eq!(state["Catch"][0]["Next"], name.as_str());
        assert_ne!(
            state["Catch"][0]["ResultPath"], "$.error",
            "Finalization reads $.error"
        );
    }
    waiting.sort();
    assert_eq!(
        waiting,
        [
            "Wait for fleet restore",
            "Wait for image",
            "Wait for instances",
            "Wait for preparation server"
        ],
        "the seed's console names"
    );
}

#[test]
fn template_defines_each_substituted_function_from_its_crate() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    // CloudFormation short tags (!Ref, !GetAtt, !Sub) parse as tagged values.
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let resources = &t["Resources"];
    let (_, sm) = resources
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, r)| r["Type"] == "AWS::Serverless::StateMachine")
        .expect("a state machine");
    assert_eq!(
        sm["Properties"]["DefinitionUri"],
        "infra/statemachine/deployment.asl.json"
    );
    assert_eq!(sm["Properties"]["Type"], "STANDARD");
    let subs = &sm["Properties"]["DefinitionSubstitutions"];
    for step in StepName::ALL {
        let value = &subs[step.substitution_key().as_str()];
        let target = match value {
            serde_yaml::Value::Tagged(tag) if tag.tag == "!GetAtt" => {
                tag.value.as_str().unwrap().to_string()
            }
            other => panic!(
                "{} must be !GetAtt <Function>.Arn, got {other:?}",
                step.substitution_key()
            ),
        };
        let logical = target.strip_suffix(".Arn").expect("a function ARN");
        let f = &resources[logical];
        assert_eq!(f["Type"], "AWS::Serverless::Function", "{logical}");
        assert_eq!(
            f["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{logical}"
        );
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"],
            step.function(),
            "{logical}"
        );
        assert!(root()
            .join("functions")
            .join(step.function())
            .join("Cargo.toml")
            .exists());
    }
}

/// Every API route is an event of the function its `Route` names (the
/// page's files of the api function) and a path of the HTTP API with a
/// `security` requirement (an event without it would be an open route), and
/// nothing else is.
#[test]
fn template_routes_match_the_router_and_are_all_protected() {
    use autosky_core::api::{Function, Route};
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let resources = &t["Resources"];
    let events_of = |resource: &str, binary: &str| {
        let f = &resources[resource];
        assert_eq!(f["Metadata"]["BuildProperties"]["Binary"], binary);
        assert!(root()
            .join("functions")
            .join(binary)
            .join("Cargo.toml")
            .exists());
        let mut events = BTreeSet::new();
        for (_, e) in f["Properties"]["Events"].as_mapping().unwrap() {
            assert_eq!(e["Type"], "HttpApi");
            assert_eq!(e["Properties"]["PayloadFormatVersion"], "2.0");
            events.insert((
                e["Properties"]["Method"].as_str().unwrap().to_uppercase(),
                e["Properties"]["Path"].as_str().unwrap().to_string(),
            ));
        }
        events
    };
    let routes_of = |function: Function| -> BTreeSet<(String, String)> {
        Route::ALL
            .iter()
            .filter(|r| r.function() == function)
            .map(|r| (r.method().to_string(), r.template().to_string()))
            .collect()
    };
    let page: BTreeSet<(String, String)> = autosky_core::api::page::PAGE_ROUTES
        .iter()
        .map(|(m, p, _, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(
        events_of("ApiFunction", Function::Api.binary()),
        routes_of(Function::Api).union(&page).cloned().collect(),
        "api function events: its routes and the page's files"
    );
    assert_eq!(
        events_of("SchedulesFunction", Function::Schedules.binary()),
        routes_of(Function::Schedules),
        "schedules function events: its routes"
    );
    let router: BTreeSet<(String, String)> = Route::ALL
        .iter()
        .map(|r| (r.method().to_string(), r.template().to_string()))
        .collect();
    let mut secured = BTreeSet::new();
    for (path, item) in resources["DeploymentsApi"]["Properties"]["DefinitionBody"]["paths"]
        .as_mapping()
        .unwrap()
    {
        for (method, op) in item.as_mapping().unwrap() {
            assert!(
                !op["security"].is_null(),
                "{method:?} {path:?} has no security requirement"
            );
            secured.insert((
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_string(),
            ));
        }
    }
    // Only the page's static files are open (they hold no data).
    assert_eq!(secured, router, "HTTP API paths with security");
}

/// The logical id `!GetAtt <id>.<attribute>` names, if `value` is one.
fn get_att<'a>(value: &'a serde_yaml::Value, attribute: &str) -> Option<&'a str> {
    match value {
        serde_yaml::Value::Tagged(tag) if tag.tag == "!GetAtt" => {
            tag.value.as_str()?.strip_suffix(&format!(".{attribute}"))
        }
        _ => None,
    }
}

/// The safety net (the EventBridge rule on the state machine's execution
/// status change, invoking Finalization's function asynchronously) keeps what
/// it cannot handle: an event Finalize still fails on after Lambda's retries
/// goes to the function's OnFailure destination (Lambda discards it
/// otherwise), an event EventBridge cannot deliver to the rule's dead-letter
/// queue (which lets only that rule send); each queue is a standard one
/// (Lambda destinations refuse FIFO) and is alarmed as soon as it holds a
/// message. Every other function invoked asynchronously keeps its failures too.
#[test]
fn safety_net_keeps_failed_events_and_alarms_on_them() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let resources = t["Resources"].as_mapping().unwrap();
    let resource = |id: &str| &t["Resources"][id];
    let standard_queue = |id: &str, what: &str| {
        assert_eq!(resource(id)["Type"], "AWS::SQS::Queue", "{what}: {id}");
        assert_ne!(
            resource(id)["Properties"]["FifoQueue"],
            serde_yaml::Value::Bool(true),
            "{what}: {id} must be a standard queue"
        );
    };
    let alarmed = |queue: &str| {
        resources.values().any(|r| {
            let p = &r["Properties"];
            r["Type"] == "AWS::CloudWatch::Alarm"
                && p["Namespace"] == "AWS/SQS"
                && p["MetricName"] == "ApproximateNumberOfMessagesVisible"
                && p["ComparisonOperator"] == "GreaterThanThreshold"
                && p["Threshold"].as_i64() == Some(0)
                && !p["AlarmActions"].is_null()
                && p["Dimensions"].as_sequence().is_some_and(|d| {
                    d.iter().any(|d| {
                        d["Name"] == "QueueName" && get_att(&d["Value"], "QueueName") == Some(queue)
                    })
                })
        })
    };

    // The rule: Finalization's function, on the state machine's status change.
    let finalize = resources
        .iter()
        .find(|(_, r)| {
            r["Metadata"]["BuildProperties"]["Binary"] == StepName::Finalization.function()
        })
        .map(|(id, _)| id.as_str().unwrap())
        .expect("Finalization's function");
    let (event, rule) = resource(finalize)["Properties"]["Events"]
        .as_mapping()
        .unwrap()
        .iter()
        .find(|(_, e)| {
            e["Type"] == "EventBridgeRule"
                && e["Properties"]["Pattern"]["source"][0] == "aws.states"
                && e["Properties"]["Pattern"]["detail-type"][0]
                    == "Step Functions Execution Status Change"
        })
        .expect("the safety-net rule on FinalizeFunction");
    let event = event.as_str().unwrap();

    // Failures inside Finalize (after Lambda's retries).
    let on_failure =
        &resource(finalize)["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
    assert_eq!(
        on_failure["Type"], "SQS",
        "{finalize}: OnFailure destination"
    );
    let destination =
        get_att(&on_failure["Destination"], "Arn").expect("OnFailure: !GetAtt <queue>.Arn");
    standard_queue(destination, "OnFailure destination");
    assert!(alarmed(destination), "no alarm on {destination}");

    // Events EventBridge could not deliver, with the queue's permission for
    // this rule alone (SAM names the rule <function><event>).
    let dlq = get_att(&rule["Properties"]["DeadLetterConfig"]["Arn"], "Arn")
        .expect("the safety-net rule needs DeadLetterConfig.Arn: !GetAtt <queue>.Arn");
    standard_queue(dlq, "rule dead-letter queue");
    assert!(alarmed(dlq), "no alarm on {dlq}");
    let rule_id = format!("{finalize}{event}");
    let allowed = resources.values().any(|r| {
        r["Type"] == "AWS::SQS::QueuePolicy"
            && r["Properties"]["Queues"]
                .as_sequence()
                .is_some_and(|q| q.iter().any(|q| matches!(q, serde_yaml::Value::Tagged(t) if t.tag == "!Ref" && t.value == dlq)))
            && r["Properties"]["PolicyDocument"]["Statement"]
                .as_sequence()
                .is_some_and(|s| {
                    s.iter().any(|s| {
                        s["Effect"] == "Allow"
                            && s["Principal"]["Service"] == "events.amazonaws.com"
                            && s["Action"] == "sqs:SendMessage"
                            && get_att(&s["Condition"]["ArnEquals"]["aws:SourceArn"], "Arn")
                                == Some(rule_id.as_str())
                    })
                })
    });
    assert!(
        allowed,
        "{dlq} needs a queue policy letting events.amazonaws.com sqs:SendMessage with aws:SourceArn = !GetAtt {rule_id}.Arn"
    );

    // Any function with an asynchronous event source keeps failed events.
    const ASYNC_SOURCES: [&str; 6] = [
        "EventBridgeRule",
        "CloudWatchEvent",
        "Schedule",
        "ScheduleV2",
        "SNS",
        "S3",
    ];
    for (id, r) in resources {
        let events = r["Properties"]["Events"].as_mapping();
        let asynchronous = events.is_some_and(|e| {
            e.values()
                .any(|e| ASYNC_SOURCES.iter().any(|s| e["Type"] == *s))
        });
        if r["Type"] == "AWS::Serverless::Function" && asynchronous {
            let on_failure =
                &r["Properties"]["EventInvokeConfig"]["DestinationConfig"]["OnFailure"];
            assert!(
                !on_failure["Destination"].is_null(),
                "{id:?} is invoked asynchronously: it needs EventInvokeConfig.DestinationConfig.OnFailure"
            );
        }
    }
}

/// Finalization's function may do what bringing the fleet back calls for:
/// roll a refresh back, start a restore refresh, read the groups' instances,
/// delete the deployment's version, and (the safety net) start a cleanup
/// execution of the deployment state machine — the last through a policy of
/// its own on the function's role, as the state machine refers to the
/// function (naming the machine in the function's Policies is a cycle).
#[test]
fn finalize_may_roll_back_restore_and_start_a_cleanup_execution() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let resources = t["Resources"].as_mapping().unwrap();
    let (id, function) = resources
        .iter()
        .find(|(_, r)| {
            r["Metadata"]["BuildProperties"]["Binary"] == StepName::Finalization.function()
        })
        .map(|(id, r)| (id.as_str().unwrap(), r))
        .unwrap();
    let actions = policy_actions(function);
    for needed in [
        "autoscaling:RollbackInstanceRefresh",
        "autoscaling:StartInstanceRefresh",
        "autoscaling:CancelInstanceRefresh",
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeInstanceRefreshes",
        "ec2:DescribeInstances",
        "ec2:DeleteLaunchTemplateVersions",
        "ec2:RunInstances",
    ] {
        assert!(actions.contains(needed), "{id} lacks {needed}");
    }
    let role = format!("{id}Role");
    let start = resources
        .values()
        .find(|r| {
            r["Type"] == "AWS::IAM::Policy"
                && r["Properties"]["Roles"]
                    .as_sequence()
                    .is_some_and(|roles| roles.iter().any(|v| is_ref(v, &role)))
        })
        .unwrap_or_else(|| panic!("no AWS::IAM::Policy on {role}"));
    let statements = start["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert!(statements.iter().any(|s| {
        s["Action"]
            .as_sequence()
            .is_some_and(|a| a.iter().any(|a| a == "states:StartExecution"))
            && is_ref(&s["Resource"], "DeploymentStateMachine")
    }));
}

/// True when `value` is `!Ref <id>`.
fn is_ref(value: &serde_yaml::Value, id: &str) -> bool {
    matches!(value, serde_yaml::Value::Tagged(tag) if tag.tag == "!Ref" && tag.value.as_str() == Some(id))
}

/// Replace instances reads the launch template (DescribeLaunchTemplates) to
/// check that `$Latest` is the main model before refreshing a `$Latest`
/// group: without the grant AWS answers UnauthorizedOperation for every such
/// group.
#[test]
fn replace_instances_may_read_the_launch_template() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let function = t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| {
            r["Metadata"]["BuildProperties"]["Binary"] == StepName::ReplaceInstances.function()
        })
        .unwrap();
    let actions = policy_actions(function);
    assert!(
        actions.contains("ec2:DescribeLaunchTemplates"),
        "{actions:?}"
    );
}

/// Every action a function's inline `Policies` statements name.
fn policy_actions(function: &serde_yaml::Value) -> BTreeSet<String> {
    function["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .flat_map(|s| s["Action"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect()
}

/// Every inline policy statement of the function.
fn policy_statements(function: &serde_yaml::Value) -> Vec<serde_yaml::Value> {
    function["Properties"]["Policies"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|p| p["Statement"].as_sequence().cloned().unwrap_or_default())
        .collect()
}

/// The template's function built from `binary`.
fn function_of(t: &serde_yaml::Value, binary: &str) -> serde_yaml::Value {
    t["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .find(|r| r["Metadata"]["BuildProperties"]["Binary"] == binary)
        .cloned()
        .unwrap_or_else(|| panic!("no function built from {binary}"))
}

/// Launching from a launch template passes the role of its instance profile
/// to EC2: the refresh functions (Replace instances, Finalization) may pass
/// only the roles the stack is given (InstanceRoleArns, no default, so every
/// stack names them), and no function passes any other role to EC2.
#[test]
fn roles_are_passed_to_ec2_only_from_instance_role_arns() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let parameter = &t["Parameters"]["InstanceRoleArns"];
    assert_eq!(parameter["Type"], "CommaDelimitedList");
    assert!(parameter.get("Default").is_none(), "{parameter:?}");
    assert!(
        parameter["AllowedPattern"]
            .as_str()
            .is_some_and(|p| p.contains(":role/")),
        "{parameter:?}"
    );
    let passes_role = |s: &serde_yaml::Value| {
        s["Action"]
            .as_sequence()
            .is_some_and(|a| a.iter().any(|a| a == "iam:PassRole"))
    };
    let to_ec2 = |s: &serde_yaml::Value| {
        matches!(
            &s["Condition"]["StringEquals"]["iam:PassedToService"],
            serde_yaml::Value::Tagged(tag) if tag.tag == "!Sub"
                && tag.value.as_str() == Some("ec2.${AWS::URLSuffix}")
        )
    };
    for step in [StepName::ReplaceInstances, StepName::Finalization] {
        let function = function_of(&t, step.function());
        let statements: Vec<_> = policy_statements(&function)
            .into_iter()
            .filter(|s| passes_role(s))
            .collect();
        assert_eq!(statements.len(), 1, "{}: {statements:?}", step.function());
        assert!(to_ec2(&statements[0]), "{statements:?}");
        assert!(
            is_ref(&statements[0]["Resource"], "InstanceRoleArns"),
            "{}: {:?}",
            step.function(),
            statements[0]["Resource"]
        );
    }
    for (id, resource) in t["Resources"].as_mapping().unwrap() {
        if resource["Properties"]["Policies"].as_sequence().is_none() {
            continue;
        }
        for s in policy_statements(resource) {
            if passes_role(&s) && to_ec2(&s) {
                assert!(is_ref(&s["Resource"], "InstanceRoleArns"), "{id:?}: {s:?}");
            }
        }
    }
}

/// Create image only calls DescribeImages and CreateImage (and tags at
/// creation): it is not granted DescribeInstances.
#[test]
fn create_image_reads_images_only() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let actions = policy_actions(&function_of(&t, StepName::CreateImage.function()));
    let ec2: BTreeSet<&str> = actions
        .iter()
        .map(String::as_str)
        .filter(|a| a.starts_with("ec2:"))
        .collect();
    assert_eq!(
        ec2,
        BTreeSet::from(["ec2:CreateImage", "ec2:CreateTags", "ec2:DescribeImages"])
    );
}

/// The alarm on failed deployments and the dashboard watch the metrics
/// Finalization writes (`autosky_core::metrics`), by the names and
/// dimensions it writes them with; the alarm notifies the optional topic.
#[test]
fn the_deployment_alarm_and_dashboard_watch_the_metrics_as_written() {
    use autosky_core::domain::DeploymentStatus;
    use autosky_core::metrics;
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let alarm = &t["Resources"]["DeploymentFailedAlarm"];
    assert_eq!(alarm["Type"], "AWS::CloudWatch::Alarm");
    let p = &alarm["Properties"];
    let watched: BTreeSet<String> = p["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|m| !m["MetricStat"].is_null())
        .map(|m| {
            let metric = &m["MetricStat"]["Metric"];
            assert_eq!(metric["Namespace"], metrics::NAMESPACE);
            assert_eq!(metric["MetricName"], metrics::DEPLOYMENTS);
            assert_eq!(m["MetricStat"]["Stat"], "Sum");
            let dims = metric["Dimensions"].as_sequence().unwrap();
            // {Status} alone: one of the dimension sets each document has.
            assert_eq!(dims.len(), 1, "{dims:?}");
            assert_eq!(dims[0]["Name"], metrics::STATUS);
            dims[0]["Value"].as_str().unwrap().to_string()
        })
        .collect();
    let expected: BTreeSet<String> = [DeploymentStatus::Failed, DeploymentStatus::RolledBack]
        .iter()
        .map(|s| s.as_str().to_string())
        .collect();
    assert_eq!(watched, expected);
    assert_eq!(p["ComparisonOperator"], "GreaterThanThreshold");
    assert_eq!(p["Threshold"].as_i64(), Some(0));
    assert_eq!(p["TreatMissingData"], "notBreaching");
    let actions = format!("{:?}", p["AlarmActions"]);
    assert!(
        actions.contains("HasAlarmTopic") && actions.contains("AlarmTopicArn"),
        "{actions}"
    );

    let dashboard = &t["Resources"]["DeploymentsDashboard"];
    assert_eq!(dashboard["Type"], "AWS::CloudWatch::Dashboard");
    let body = match &dashboard["Properties"]["DashboardBody"] {
        serde_yaml::Value::Tagged(tag) if tag.tag == "!Sub" => tag.value.as_str().unwrap(),
        other => panic!("DashboardBody is a !Sub: {other:?}"),
    };
    let body: Value = serde_json::from_str(
        &body
            .replace("${AWS::Region}", "us-east-1")
            .replace("${DeploymentFailedAlarm.Arn}", "arn:aws:cloudwatch:::alarm"),
    )
    .expect("the dashboard body is JSON");
    let searches: Vec<String> = body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| {
            w["properties"]["metrics"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|m| m[0]["expression"].as_str().unwrap().to_string())
        .collect();
    for (dims, name) in [
        (vec![metrics::STATUS], metrics::DEPLOYMENTS),
        (
            vec![metrics::ENVIRONMENT, metrics::STATUS],
            metrics::DEPLOYMENTS,
        ),
        (vec![metrics::STATUS], metrics::DEPLOYMENT_DURATION),
        (vec![metrics::STEP], metrics::STEP_DURATION),
        (vec![metrics::WAIT], metrics::WAIT_DETECTION_DELAY),
    ] {
        let schema = format!(
            "{{{},{}}} MetricName=\"{name}\"",
            metrics::NAMESPACE,
            dims.join(",")
        );
        assert!(
            searches.iter().any(|s| s.contains(&schema)),
            "{schema} in {searches:?}"
        );
    }
}

/// The waits' grants: each step a waiting state runs may register its wait
/// (dynamodb:PutItem) and complete its own token; the resume function only
/// reads and removes a registration and completes its token; the API
/// completes a token to wake a cancelled deployment. Nothing else.
#[test]
fn waiting_steps_and_the_resume_function_hold_only_what_the_waits_need() {
    let text = std::fs::read_to_string(root().join("template.yaml")).unwrap();
    let t: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let asl = asl();
    let waiting: BTreeSet<String> = states(&asl)
        .values()
        .filter(|s| s["Resource"] == CALLBACK)
        .map(|s| {
            s["Parameters"]["FunctionName"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    for step in StepName::ALL {
        let actions = policy_actions(&function_of(&t, step.function()));
        let waits = waiting.contains(&format!("${{{}}}", step.substitution_key()));
        for action in [
            "states:SendTaskSuccess",
            "states:SendTaskFailure",
            "dynamodb:PutItem",
        ] {
            if action == "dynamodb:PutItem" && !waits {
                continue; // other steps may put items of their own
            }
            assert_eq!(
                actions.contains(action),
                waits,
                "{}: {action}",
                step.function()
            );
        }
    }
    let resume = function_of(&t, "resume");
    assert_eq!(
        policy_actions(&resume),
        BTreeSet::from(
            [
                "dynamodb:GetItem",
                "dynamodb:DeleteItem",
                "states:SendTaskSuccess"
            ]
            .map(String::from)
        )
    );
    let api = policy_actions(&function_of(&t, "api"));
    assert!(api.contains("states:SendTaskSuccess") && !api.contains("states:SendTaskFailure"));
    // The rules deliver only the moments a wait ends or reports progress.
    let events = resume["Properties"]["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 3);
    for (_, e) in events {
        assert_eq!(e["Type"], "EventBridgeRule");
        assert!(e["Properties"]["Pattern"]["detail-type"].is_sequence());
        assert!(matches!(
            e["Properties"]["DeadLetterConfig"]["Arn"],
            serde_yaml::Value::Tagged(_)
        ));
    }
    let crate_dir = root().join("functions/resume");
    assert!(crate_dir.join("src/main.rs").exists());
}
