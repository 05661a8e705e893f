//! Step Functions' map entries (JSON protocol, `X-Amz-Target:
//! AWSStepFunctions.<Action>`). The product calls only StartExecution,
//! authorized on the state machine the body's `stateMachineArn` names.

use super::{Call, MapError};
use crate::iam::Check;
use iam_rs::ContextValue;
use serde_json::Value;

pub fn checks(call: &Call<'_>) -> Result<Vec<Check>, MapError> {
    match call.action {
        "StartExecution" => {
            let body: Value = serde_json::from_slice(call.body)
                .map_err(|e| MapError::Invalid(format!("states:StartExecution body: {e}")))?;
            let arn = body
                .get("stateMachineArn")
                .and_then(Value::as_str)
                .ok_or_else(|| MapError::Invalid("no stateMachineArn".into()))?;
            Ok(vec![start_execution(arn)?])
        }
        other => Err(MapError::NoEntry(format!("states:{other}"))),
    }
}

/// `arn:aws:states:REGION:ACCOUNT:stateMachine:NAME[:QUALIFIER]`: a version
/// or alias ARN carries a qualifier, which AWS sets as
/// `states:StateMachineQualifier`.
fn start_execution(arn: &str) -> Result<Check, MapError> {
    let parts: Vec<&str> = arn.split(':').collect();
    if parts.len() < 7 || parts.len() > 8 || parts[2] != "states" || parts[5] != "stateMachine" {
        return Err(MapError::Invalid(format!(
            "{arn} is not a state machine ARN"
        )));
    }
    let context = parts
        .get(7)
        .map(|q| {
            vec![(
                "states:StateMachineQualifier".to_string(),
                ContextValue::StringList(vec![q.to_string()]),
            )]
        })
        .unwrap_or_default();
    Ok(Check {
        action: "states:StartExecution".into(),
        resource: arn.to_string(),
        context,
        on_behalf_of: None,
    })
}

#[cfg(test)]
mod tests {
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
    fn actions_without_an_entry_are_refused() {
        assert_eq!(
            map("DescribeExecution", "{}"),
            Err(MapError::NoEntry("states:DescribeExecution".into()))
        );
    }
}
