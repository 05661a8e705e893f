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
#[path = "tests/states.rs"]
mod tests;
