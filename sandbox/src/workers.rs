//! Activity workers: one polling loop per step that runs exactly the handler
//! the Lambda binary runs (`steps::run`) and reports a failure with the same
//! stable error name (`SendTaskFailure`), with the cause shaped like a Lambda
//! error (`{"errorType", "errorMessage"}`), so Retry/Catch behave as on AWS.
//! A waiting state's callback task gets the activity's token as its
//! `taskToken` (see `provision::callback_tasks_as_activities`).
//!
//! fakecloud only marks a stopped execution ABORTED and goes on interpreting
//! it; on AWS no further state runs and its task tokens are closed. So a task
//! whose execution is no longer RUNNING is dropped: not run, and not reported
//! if the execution ended while it ran.

use autosky_core::domain::StepName;
use autosky_core::steps;
use autosky_core::store::{DynamoStore, Store};
use autosky_core::Deps;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The sandbox's own look-ups for the RUNNING checks, straight to the
/// emulator: they have no counterpart on AWS, so the gateway does not count
/// them among the steps' calls.
#[derive(Clone)]
pub struct Control {
    pub sfn: aws_sdk_sfn::Client,
    pub store: DynamoStore,
    /// Where each task token's execution is noted for the gateway, which
    /// closes the tokens of ended executions as AWS does.
    pub tokens: crate::bridge::tokens::Tokens,
}

/// `sfn` polls and reports tasks (on AWS the Lambda service does that);
/// each step runs with `deps_of(step)`, its own function's clients.
pub fn spawn(
    deps_of: impl Fn(StepName) -> Arc<Deps>,
    sfn: aws_sdk_sfn::Client,
    control: Control,
    activities: Vec<(StepName, String)>,
) {
    for (step, arn) in activities {
        let (deps, sfn, control) = (deps_of(step), sfn.clone(), control.clone());
        tokio::spawn(async move {
            loop {
                match sfn
                    .get_activity_task()
                    .activity_arn(&arn)
                    .worker_name(step.function())
                    .send()
                    .await
                {
                    Ok(task) => match task.task_token() {
                        Some(token) if !token.is_empty() => {
                            let input = task.input().unwrap_or("{}").to_string();
                            let (deps, sfn, control, token) = (
                                deps.clone(),
                                sfn.clone(),
                                control.clone(),
                                token.to_string(),
                            );
                            tokio::spawn(async move {
                                work(step, &deps, &sfn, &control, token, input).await
                            });
                        }
                        _ => tokio::time::sleep(Duration::from_millis(50)).await,
                    },
                    Err(e) => {
                        tracing::debug!(error = ?e, "GetActivityTask");
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                }
            }
        });
    }
}

/// The execution a task belongs to: the ARN the state machine passes
/// (Initial validation and Finalization get `$$.Execution.Id`), else the one
/// the deployment's record names (Initial validation claimed it). None when
/// neither is known: the task then runs.
async fn execution_of(store: &DynamoStore, input: &Value) -> Option<String> {
    if let Some(arn) = input["executionArn"].as_str() {
        return Some(arn.to_string());
    }
    let state = if input["state"].is_object() {
        &input["state"]
    } else {
        input
    };
    let (env, id) = (
        state["environmentId"].as_str()?,
        state["deploymentId"].as_str()?,
    );
    store.deployment(env, id).await.ok()??.execution_arn
}

/// Whether the task's execution `arn` is still RUNNING (true when unknown).
async fn still_running(control: &Control, arn: Option<&str>) -> bool {
    let Some(arn) = arn else {
        return true;
    };
    match control
        .sfn
        .describe_execution()
        .execution_arn(arn)
        .send()
        .await
    {
        Ok(e) => e.status() == &aws_sdk_sfn::types::ExecutionStatus::Running,
        Err(_) => true,
    }
}

async fn work(
    step: StepName,
    deps: &Deps,
    sfn: &aws_sdk_sfn::Client,
    control: &Control,
    token: String,
    input: String,
) {
    let mut payload: Value = serde_json::from_str(&input).unwrap_or(Value::Null);
    let execution = execution_of(&control.store, &payload).await;
    if let Some(arn) = &execution {
        control.tokens.note(&token, arn);
    }
    if !still_running(control, execution.as_deref()).await {
        tracing::info!(step = step.function(), "task of an ended execution dropped");
        return;
    }
    // A waiting state's callback task: the activity's token is the one the
    // step registers and completes itself (or a wake-up or the timeout
    // does); only a failed invocation is reported here, as Step Functions
    // fails a callback task whose Lambda invocation fails.
    let callback = payload
        .as_object_mut()
        .and_then(|p| p.remove(crate::provision::ACTIVITY_TOKEN_MARK))
        .is_some();
    if callback {
        payload["taskToken"] = Value::String(token.clone());
    }
    let result = steps::run(step, deps, payload.clone()).await;
    if callback && result.is_ok() {
        return;
    }
    if !still_running(control, execution.as_deref()).await {
        // On AWS the token was closed when the execution ended: a report
        // would be refused (TaskTimedOut) and change nothing.
        tracing::info!(
            step = step.function(),
            "result of an ended execution not reported"
        );
        return;
    }
    let sent = match result {
        Ok(output) => sfn
            .send_task_success()
            .task_token(&token)
            .output(output.to_string())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{e:?}")),
        Err(e) => {
            let cause = serde_json::json!({"errorType": e.name(), "errorMessage": e.message()});
            sfn.send_task_failure()
                .task_token(&token)
                .error(e.name())
                .cause(cause.to_string())
                .send()
                .await
                .map(|_| ())
                .map_err(|e| format!("{e:?}"))
        }
    };
    if let Err(e) = sent {
        tracing::warn!(step = step.function(), error = %e, "could not report the task result");
    }
}
