//! Provisions the stack in the emulator from the project's own definitions:
//! the table, the SES sender identity, one activity per step, and the state
//! machine from `infra/statemachine/deployment.asl.json` — the same file SAM
//! deploys, with the Task resources substituted by the activity ARNs and the
//! waiting states' callback tasks run as their step's activity
//! ([`callback_tasks_as_activities`]).

use autosky_core::domain::StepName;
use std::collections::BTreeMap;

/// The ASL file, read at build time (one definition, never a copy).
pub const DEFINITION: &str = include_str!("../../infra/statemachine/deployment.asl.json");
pub const STATE_MACHINE: &str = "autosky-deployment";
pub const TABLE: &str = "autosky-deployments";
/// The stack name the template's `${AWS::StackName}` stands for.
pub const STACK: &str = "autosky-sandbox";
pub const SENDER: &str = "deployments@autosky.local";
/// The schedule group of scheduled deployments (template.yaml: DeploymentScheduleGroup).
pub const SCHEDULE_GROUP: &str = "autosky-sandbox";
/// The emulator does not check the role Scheduler assumes; the name follows template.yaml.
pub const SCHEDULER_ROLE: &str = "arn:aws:iam::000000000000:role/autosky-sandbox-scheduler";

#[derive(Debug, Clone)]
pub struct Stack {
    pub state_machine_arn: String,
    pub activities: Vec<(StepName, String)>,
}

/// Replaces every `${Key}` with its value; a placeholder without a value is an error.
pub fn substitute(definition: &str, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(definition.len());
    let mut rest = definition;
    while let Some(start) = rest.find("${") {
        let end = rest[start..]
            .find('}')
            .ok_or("unterminated ${ in the definition")?
            + start;
        let key = &rest[start + 2..end];
        let value = values
            .get(key)
            .ok_or_else(|| format!("no substitution for ${{{key}}}"))?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The callback integration the waiting states use.
const CALLBACK: &str = "arn:aws:states:::lambda:invoke.waitForTaskToken";
/// The parameter that tells the activity worker to put its task token where
/// the payload had `$$.Task.Token`.
pub const ACTIVITY_TOKEN_MARK: &str = "sandboxTaskToken";

/// The waiting states' TimeoutSeconds in the sandbox (300 s on AWS), scaled
/// down like the emulated EC2 and refresh timings:
/// `AUTOSKY_SANDBOX_WAIT_FALLBACK_SECONDS`, default 10.
pub fn wait_fallback_seconds() -> u64 {
    std::env::var("AUTOSKY_SANDBOX_WAIT_FALLBACK_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s| *s > 0)
        .unwrap_or(10)
}

/// fakecloud cannot invoke our functions, so each callback task
/// (`lambda:invoke.waitForTaskToken` of a step's function, already
/// substituted by that step's activity ARN) runs as that activity: an
/// activity task is itself a task token that only SendTaskSuccess,
/// SendTaskFailure or TimeoutSeconds ends, which is the callback's contract.
/// The Payload becomes the Parameters, `$$.Task.Token` the mark the worker
/// replaces with the activity's token, TimeoutSeconds the sandbox's
/// fallback. Anything else in the definition is left as it is.
pub fn callback_tasks_as_activities(definition: &str, fallback: u64) -> Result<String, String> {
    let mut asl: serde_json::Value =
        serde_json::from_str(definition).map_err(|e| format!("definition: {e}"))?;
    let states = asl["States"]
        .as_object_mut()
        .ok_or("definition without States")?;
    for (name, state) in states.iter_mut() {
        if state["Resource"] != CALLBACK {
            continue;
        }
        let params = &state["Parameters"];
        let function = params["FunctionName"]
            .as_str()
            .filter(|f| f.contains(":activity:"))
            .ok_or_else(|| format!("{name}: FunctionName is not a step's activity"))?
            .to_string();
        let mut payload = params["Payload"]
            .as_object()
            .cloned()
            .ok_or_else(|| format!("{name}: no Payload"))?;
        if payload.remove("taskToken.$") != Some("$$.Task.Token".into()) {
            return Err(format!(
                "{name}: the Payload does not pass $$.Task.Token as taskToken"
            ));
        }
        payload.insert(ACTIVITY_TOKEN_MARK.into(), true.into());
        state["Resource"] = function.into();
        state["Parameters"] = payload.into();
        state["TimeoutSeconds"] = fallback.into();
    }
    serde_json::to_string_pretty(&asl).map_err(|e| e.to_string())
}

pub async fn provision(config: &aws_config::SdkConfig) -> Result<Stack, String> {
    let ddb = aws_sdk_dynamodb::Client::new(config);
    use aws_sdk_dynamodb::types::{
        AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
    };
    let attr = |n: &str| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .expect("static")
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("static")
    };
    ddb.create_table()
        .table_name(TABLE)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("PK"))
        .attribute_definitions(attr("SK"))
        .key_schema(key("PK", KeyType::Hash))
        .key_schema(key("SK", KeyType::Range))
        .send()
        .await
        .map_err(|e| format!("CreateTable: {e:?}"))?;

    aws_sdk_ses::Client::new(config)
        .verify_email_identity()
        .email_address(SENDER)
        .send()
        .await
        .map_err(|e| format!("VerifyEmailIdentity: {e:?}"))?;

    aws_sdk_scheduler::Client::new(config)
        .create_schedule_group()
        .name(SCHEDULE_GROUP)
        .send()
        .await
        .map_err(|e| format!("CreateScheduleGroup: {e:?}"))?;

    let sfn = aws_sdk_sfn::Client::new(config);
    let mut activities = Vec::new();
    let mut values = BTreeMap::new();
    for step in StepName::ALL {
        let arn = sfn
            .create_activity()
            .name(format!("autosky-{}", step.function()))
            .send()
            .await
            .map_err(|e| format!("CreateActivity: {e:?}"))?
            .activity_arn()
            .to_string();
        values.insert(step.substitution_key(), arn.clone());
        activities.push((step, arn));
    }
    let definition =
        callback_tasks_as_activities(&substitute(DEFINITION, &values)?, wait_fallback_seconds())?;
    let state_machine_arn = sfn
        .create_state_machine()
        .name(STATE_MACHINE)
        .definition(definition)
        .role_arn("arn:aws:iam::000000000000:role/autosky-sandbox")
        .r#type(aws_sdk_sfn::types::StateMachineType::Standard)
        .send()
        .await
        .map_err(|e| format!("CreateStateMachine: {e:?}"))?
        .state_machine_arn()
        .to_string();
    Ok(Stack {
        state_machine_arn,
        activities,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_of_the_definition_gets_an_activity() {
        let values: BTreeMap<String, String> = StepName::ALL
            .iter()
            .map(|s| {
                (
                    s.substitution_key(),
                    format!("arn:activity:{}", s.function()),
                )
            })
            .collect();
        let out = substitute(DEFINITION, &values).unwrap();
        assert!(!out.contains("${"));
        let run = callback_tasks_as_activities(&out, 7).unwrap();
        let asl: serde_json::Value = serde_json::from_str(&run).unwrap();
        let wait = &asl["States"]["Wait for image"];
        assert_eq!(wait["Resource"], "arn:activity:create-image");
        assert_eq!(wait["TimeoutSeconds"], 7);
        assert_eq!(
            wait["Parameters"],
            serde_json::json!({"state.$": "$", "wakeOn.$": "$.image.wakeOn", ACTIVITY_TOKEN_MARK: true})
        );
        // The other Tasks and every waiting state's Retry/Catch are unchanged.
        let asl_in: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(wait["Catch"], asl_in["States"]["Wait for image"]["Catch"]);
        assert_eq!(
            asl["States"]["Create image"],
            asl_in["States"]["Create image"]
        );
        assert!(out.contains("\"Resource\": \"arn:activity:create-image\""));
        let mut missing = values.clone();
        missing.remove("FinalizeFunctionArn");
        assert!(substitute(DEFINITION, &missing)
            .unwrap_err()
            .contains("FinalizeFunctionArn"));
    }
}
