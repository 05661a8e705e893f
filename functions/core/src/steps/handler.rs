//! The steps' JSON entry points: one generic body (parse the input, run the
//! step, serialize its output, log a failure with its stable name) and one
//! function per step that instantiates it, which is what each step binary
//! serves (a waiting step also for its waiting state, `wake::wait`); [`run`]
//! dispatches to them for the sandbox's activity workers; [`resume`] is the
//! resume function's.

use super::{
    cleanup, create_image, create_models, finalize, replace_instances, stop_server, validate, wake,
    StateWithExecution,
};
use crate::deps::Deps;
use crate::domain::{mask_emails, StepName};
use crate::error::StepError;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::future::Future;

/// Runs one step on a JSON payload: the entry point of the sandbox's activity
/// workers, which serve all six steps from one process. A Lambda binary
/// serves one step and passes that step's function from this module to
/// `lambda::serve` instead, so the other five steps' code (and the SDK
/// operations only they call) is never linked into it.
pub async fn run(step: StepName, deps: &Deps, payload: Value) -> Result<Value, StepError> {
    match step {
        StepName::InitialValidation => self::validate(deps, payload).await,
        StepName::StopPreparationServer => stop_preparation_server(deps, payload).await,
        StepName::CreateImage => self::create_image(deps, payload).await,
        StepName::CreateModels => self::create_models(deps, payload).await,
        StepName::ReplaceInstances => self::replace_instances(deps, payload).await,
        StepName::Finalization => self::finalize(deps, payload).await,
    }
}

pub async fn validate(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    handle(StepName::InitialValidation, deps, payload, validate::run).await
}

pub async fn stop_preparation_server(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    let step = StepName::StopPreparationServer;
    check_or_wait(step, deps, payload, true, |p| {
        handle(step, deps, p, stop_server::run)
    })
    .await
}

pub async fn create_image(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    let step = StepName::CreateImage;
    check_or_wait(step, deps, payload, true, |p| {
        handle(step, deps, p, create_image::run)
    })
    .await
}

pub async fn create_models(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    handle(StepName::CreateModels, deps, payload, create_models::run).await
}

pub async fn replace_instances(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    let step = StepName::ReplaceInstances;
    check_or_wait(step, deps, payload, true, |p| {
        handle(step, deps, p, replace_instances::run)
    })
    .await
}

pub async fn finalize(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    let step = StepName::Finalization;
    check_or_wait(step, deps, payload, false, |p| {
        handle(step, deps, p, finalize_any)
    })
    .await
}

/// The resume function's handler: an EC2 or Auto Scaling event wakes the
/// wait registered under its resource.
pub async fn resume(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    let result = wake::resume(deps, payload).await;
    if let Err(e) = &result {
        tracing::warn!(error = e.name(), message = %e.message(), "wake-up failed");
    }
    result
}

/// A waiting step's entry: its Task's check, or its waiting state's
/// registration and check (the payload carries a task token). `bare`: the
/// step takes the state alone (Finalization takes it with the execution ARN).
async fn check_or_wait<F, Fut>(
    step: StepName,
    deps: &Deps,
    payload: Value,
    bare: bool,
    check: F,
) -> Result<Value, StepError>
where
    F: FnOnce(Value) -> Fut,
    Fut: Future<Output = Result<Value, StepError>>,
{
    if wake::is_wait(&payload) {
        wake::wait(step, deps, payload, bare, check).await
    } else {
        check(payload).await
    }
}

/// Finalization's three inputs: the safety net's EventBridge event, the
/// ASL's state plus this execution's ARN (`Parameters`), or a bare state (a
/// sample event, a manual invocation).
async fn finalize_any(deps: &Deps, payload: Value) -> Result<Value, StepError> {
    if cleanup::is_status_change(&payload) {
        // Step Functions only for the safety net, from the config of the
        // function's other clients (built only when a wait is needed).
        let sfn = deps.config.clone().map(crate::aws::StepFunctions::lazy);
        json(&cleanup::run(deps, sfn.as_ref(), parse(payload)?).await?)
    } else if payload.get("state").is_some() {
        let event: StateWithExecution = parse(payload)?;
        json(&finalize::run(deps, event.state, event.execution_arn.as_deref()).await?)
    } else {
        json(&finalize::run(deps, parse(payload)?, None).await?)
    }
}

/// The one body of every step's handler.
async fn handle<'d, I, O, F, Fut>(
    step: StepName,
    deps: &'d Deps,
    payload: Value,
    run: F,
) -> Result<Value, StepError>
where
    I: DeserializeOwned,
    O: Serialize,
    F: FnOnce(&'d Deps, I) -> Fut,
    Fut: Future<Output = Result<O, StepError>>,
{
    let result = match parse(payload) {
        Ok(input) => run(deps, input).await.and_then(|o| json(&o)),
        Err(e) => Err(e),
    };
    if let Err(e) = &result {
        tracing::warn!(step = step.function(), error = e.name(), message = %mask_emails(e.message()), "step failed");
    }
    result
}

fn parse<T: DeserializeOwned>(payload: Value) -> Result<T, StepError> {
    serde_json::from_value(payload).map_err(|e| StepError::BadInput(format!("step input: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<Value, StepError> {
    serde_json::to_value(v).map_err(|e| StepError::BadInput(format!("step output: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{self, input, Fixture};
    use crate::steps::StateWithExecution;
    use crate::store::Store;

    #[tokio::test]
    async fn a_cancelled_deployment_stops_at_the_next_step_without_aws_calls() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.store
            .request_cancel(testkit::ENV, testkit::DEP, "bob", None)
            .await
            .unwrap();
        // No rules: any AWS call would fail the test with a different error.
        let deps = f.deps(&[], &[], &[]);
        for step in [
            StepName::StopPreparationServer,
            StepName::CreateImage,
            StepName::CreateModels,
            StepName::ReplaceInstances,
        ] {
            let err = run(step, &deps, serde_json::to_value(input()).unwrap())
                .await
                .unwrap_err();
            assert_eq!(
                err,
                StepError::Cancelled("cancelled by bob".into()),
                "{step:?}"
            );
        }
        let v = StateWithExecution {
            state: input(),
            execution_arn: None,
        };
        assert_eq!(
            run(
                StepName::InitialValidation,
                &deps,
                serde_json::to_value(v).unwrap()
            )
            .await
            .unwrap_err()
            .name(),
            "Cancelled"
        );
    }

    #[test]
    fn cancelled_ends_cancelled() {
        assert_eq!(
            finalize::status_for(Some("Cancelled")),
            crate::domain::DeploymentStatus::Cancelled
        );
    }
}
