//! Step Functions' map entries (JSON protocol, `X-Amz-Target:
//! AWSStepFunctions.<Action>`). StartExecution is authorized on the state
//! machine the body's `stateMachineArn` names; SendTaskSuccess and
//! SendTaskFailure (the waiting states' tokens) on "*": the Service
//! Authorization Reference lists no resource type for them.

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
        "SendTaskSuccess" | "SendTaskFailure" => {
            let body: Value = serde_json::from_slice(call.body)
                .map_err(|e| MapError::Invalid(format!("states:{} body: {e}", call.action)))?;
            if !body.get("taskToken").is_some_and(Value::is_string) {
                return Err(MapError::Invalid("no taskToken".into()));
            }
            Ok(vec![Check {
                action: format!("states:{}", call.action),
                resource: "*".into(),
                context: vec![],
                on_behalf_of: None,
            }])
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
#[path = "tests/states.rs"]
mod tests;
