use super::*;
use std::collections::HashMap;

const SM: &str = "arn:aws:states:us-east-1:000000000000:stateMachine:autosky-deployment";

fn map(action: &str, body: &str) -> Result<Vec<Check>, MapError> {
    let form = HashMap::new();
    checks(&Call {
        service: "states",
        action,
        method: "POST",
        path: "/",
        query: "",
        form: &form,
        body: body.as_bytes(),
    })
}

#[test]
fn start_execution_is_authorized_on_the_state_machine() {
    let body = format!(
        r#"{{"stateMachineArn":"{SM}","name":"01JDEPLOY-cleanup","input":"{{\"deploymentId\":\"01JDEPLOY\"}}"}}"#
    );
    assert_eq!(
        map("StartExecution", &body).unwrap(),
        vec![Check {
            action: "states:StartExecution".into(),
            resource: SM.into(),
            context: vec![],
            on_behalf_of: None,
        }]
    );
}

#[test]
fn start_execution_of_an_alias_carries_the_qualifier() {
    let body = format!(r#"{{"stateMachineArn":"{SM}:live"}}"#);
    let got = map("StartExecution", &body).unwrap();
    assert_eq!(got[0].resource, format!("{SM}:live"));
    assert_eq!(
        got[0].context,
        vec![(
            "states:StateMachineQualifier".to_string(),
            ContextValue::StringList(vec!["live".into()])
        )]
    );
}

#[test]
fn start_execution_of_something_else_than_a_state_machine_is_invalid() {
    let body = r#"{"stateMachineArn":"arn:aws:states:us-east-1:000000000000:activity:a"}"#;
    assert!(matches!(
        map("StartExecution", body),
        Err(MapError::Invalid(_))
    ));
}

#[test]
fn task_token_completions_are_authorized_on_all_resources() {
    for action in ["SendTaskSuccess", "SendTaskFailure"] {
        assert_eq!(
            map(action, r#"{"taskToken":"AQB-token","output":"{}"}"#).unwrap(),
            vec![Check {
                action: format!("states:{action}"),
                resource: "*".into(),
                context: vec![],
                on_behalf_of: None,
            }]
        );
        assert!(matches!(map(action, "{}"), Err(MapError::Invalid(_))));
    }
}

#[test]
fn actions_without_an_entry_are_refused() {
    assert_eq!(
        map("DescribeExecution", "{}"),
        Err(MapError::NoEntry("states:DescribeExecution".into()))
    );
}
