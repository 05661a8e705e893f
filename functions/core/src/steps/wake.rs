//! Event-driven waits. A waiting state of the state machine is a callback
//! task (`lambda:invoke.waitForTaskToken`) that runs its step again with the
//! task token ([`wait`]): the registration is saved first (on the record and
//! under each wake-up key), then the step checks AWS once more, so an event
//! that came before the registration is not lost: the check sees what it
//! announced. Done or failed, the step completes its own token; still
//! waiting, it leaves it open. [`resume`] (the resume function, invoked by
//! EventBridge) completes the token registered under the event's resource
//! with "not done", so the state machine runs the check again at once.
//!
//! A wake-up asserts nothing: the step reads AWS itself. A duplicate, late or
//! foreign event costs one check at most (a token is completed once; a key
//! names one resource); a lost one costs the waiting state's TimeoutSeconds,
//! after which the step checks anyway.

use super::StepInput;
use crate::deps::Deps;
use crate::domain::{StepName, Wait};
use crate::error::StepError;
use serde_json::{json, Value};
use std::future::Future;

/// The wake-up key of an EC2 instance (the preparation server).
pub fn instance(id: &str) -> String {
    format!("instance:{id}")
}

/// The wake-up key of an AMI.
pub fn image(id: &str) -> String {
    format!("image:{id}")
}

/// The wake-up key of an Auto Scaling group (its instance refreshes).
pub fn group(name: &str) -> String {
    format!("group:{name}")
}

const INSTANCE_STATE: &str = "EC2 Instance State-change Notification";
const AMI_STATE: &str = "EC2 AMI State Change";
const REFRESH_PREFIX: &str = "EC2 Auto Scaling Instance Refresh ";

/// The key an EC2 or Auto Scaling event names: the instance of an "EC2
/// Instance State-change Notification" (`detail.instance-id`), the image of
/// an "EC2 AMI State Change" (`detail.ImageId`), the group of an "EC2 Auto
/// Scaling Instance Refresh …" event (`detail.AutoScalingGroupName`).
pub fn key_of_event(event: &Value) -> Option<String> {
    let detail = &event["detail"];
    let field = |name: &str| detail[name].as_str().filter(|v| !v.is_empty());
    match (event["source"].as_str()?, event["detail-type"].as_str()?) {
        ("aws.ec2", INSTANCE_STATE) => field("instance-id").map(instance),
        ("aws.ec2", AMI_STATE) => field("ImageId").map(image),
        ("aws.autoscaling", t) if t.starts_with(REFRESH_PREFIX) => {
            field("AutoScalingGroupName").map(group)
        }
        _ => None,
    }
}

/// Whether a step's payload comes from a waiting state (it carries the token).
pub fn is_wait(payload: &Value) -> bool {
    payload.get("taskToken").is_some()
}

/// Runs `check` (the step) for its waiting state: the payload is
/// `{state, taskToken, wakeOn}` (Finalization's also `executionArn`); the
/// step gets the payload without the token and keys (`bare`: only the
/// state). Registers first, then checks; completes the token when the step
/// is done or failed. Returns what the log shows (the state machine reads
/// only the token's completion).
pub async fn wait<F, Fut>(
    step: StepName,
    deps: &Deps,
    mut payload: Value,
    bare: bool,
    check: F,
) -> Result<Value, StepError>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Result<Value, StepError>>,
{
    let fields = payload
        .as_object_mut()
        .ok_or_else(|| StepError::BadInput("a waiting state's payload must be an object".into()))?;
    let token = match fields.remove("taskToken") {
        Some(Value::String(t)) if !t.is_empty() => t,
        _ => {
            return Err(StepError::BadInput(
                "taskToken must be a non-empty string".into(),
            ))
        }
    };
    let on: Vec<String> = serde_json::from_value(fields.remove("wakeOn").unwrap_or(json!([])))
        .map_err(|e| StepError::BadInput(format!("wakeOn: {e}")))?;
    let state: StepInput = serde_json::from_value(payload["state"].clone())
        .map_err(|e| StepError::BadInput(format!("step input: {e}")))?;
    state.check()?;
    let wait = Wait {
        step,
        token,
        on,
        at: deps.clock.now(),
    };
    deps.store
        .save_wait(&state.environment_id, &state.deployment_id, &wait)
        .await?;
    let input = if bare {
        payload["state"].take()
    } else {
        payload
    };
    match check(input).await {
        Ok(out) if out["done"] == json!(false) => Ok(json!({"waitingOn": wait.on})),
        Ok(out) => {
            deps.tokens.succeed(&wait.token, &out).await?;
            Ok(out)
        }
        // Reported as the step's Lambda error would be: Retry/Catch match the
        // name, Finalization reads the message from the cause.
        Err(e) => {
            let cause = json!({"errorType": e.name(), "errorMessage": e.message()});
            deps.tokens
                .fail(&wait.token, e.name(), &cause.to_string())
                .await?;
            Ok(json!({"failed": e.name()}))
        }
    }
}

/// The resume function: wakes the wait registered under the event's
/// resource, if any. The output it gives the waiting state is "not done"
/// with the same keys, so the state machine checks again.
pub async fn resume(deps: &Deps, event: Value) -> Result<Value, StepError> {
    let key = key_of_event(&event).ok_or_else(|| {
        StepError::BadInput(format!(
            "not an event a wait is woken by: source {}, detail-type {}",
            event["source"], event["detail-type"]
        ))
    })?;
    let Some(waiting) = deps.store.waiting_on(&key).await? else {
        return Ok(json!({"key": key, "woke": null}));
    };
    let output = json!({"done": false, "wakeOn": waiting.wait.on, "wokenBy": key});
    let woke = deps.tokens.succeed(&waiting.wait.token, &output).await?;
    deps.store.clear_wait(&key, &waiting.wait.token).await?;
    tracing::info!(
        key,
        deployment = waiting.deployment_id,
        step = waiting.wait.step.function(),
        woke,
        "wake-up"
    );
    Ok(json!({"key": key, "woke": woke, "deploymentId": waiting.deployment_id}))
}

#[cfg(test)]
mod tests;
