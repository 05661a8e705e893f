//! The six pipeline steps: their shared input/output shapes, the journal that
//! records a step's progress in the store, and the dispatcher the Lambda
//! binaries and the sandbox's activity workers both call.

pub mod cleanup;
pub mod create_image;
pub mod create_models;
pub mod finalize;
pub mod replace_instances;
pub mod stop_server;
pub mod validate;

use crate::deps::Deps;
use crate::domain::{
    millis_between, valid_deployment_id, valid_environment_id, Action, Deployment, Environment,
    RequestedOptions, StepName, StepStatus,
};
use crate::error::StepError;
use serde::{Deserialize, Serialize};

/// The execution state as Step Functions passes it to every Task: the start
/// input plus the results of earlier Tasks (each under its own ResultPath).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepInput {
    pub deployment_id: String,
    pub environment_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<RequestedOptions>,
    /// Base poll interval of the wait loops (production 15 s; local runs 1 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Poll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Poll>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace: Option<Poll>,
    /// Set by the ASL's Catch (`ResultPath: $.error`) when a step failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<CaughtError>,
}

impl StepInput {
    fn check(&self) -> Result<(), StepError> {
        if !valid_environment_id(&self.environment_id) {
            return Err(StepError::BadInput(format!(
                "environmentId '{}' is not a valid environment id ([a-z0-9-]{{1,64}})",
                crate::domain::truncate(&self.environment_id, 80)
            )));
        }
        if !valid_deployment_id(&self.deployment_id) {
            return Err(StepError::BadInput(format!(
                "deploymentId '{}' is not a ULID",
                crate::domain::truncate(&self.deployment_id, 80)
            )));
        }
        Ok(())
    }

    pub fn base_poll_seconds(&self) -> u64 {
        self.poll_seconds.unwrap_or(15).clamp(1, 300)
    }
}

/// Initial validation's and Finalization's input: the state plus the
/// execution ARN, which the ASL adds from the context object
/// (`$$.Execution.Id`): for the console link, and so a step can tell whether
/// its execution owns the deployment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ValidateEvent {
    pub state: StepInput,
    #[serde(default)]
    pub execution_arn: Option<String>,
}

/// What Catch puts in `$.error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CaughtError {
    #[serde(rename = "Error", default)]
    pub error: String,
    #[serde(rename = "Cause", default)]
    pub cause: Option<String>,
}

impl CaughtError {
    /// The human message: Lambda wraps it as JSON `{"errorMessage": ...}`,
    /// activities and States.* errors give plain text.
    pub fn message(&self) -> String {
        let cause = self.cause.as_deref().unwrap_or("");
        serde_json::from_str::<serde_json::Value>(cause)
            .ok()
            .and_then(|v| {
                v.get("errorMessage")
                    .and_then(|m| m.as_str())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| cause.to_string())
    }
}

/// A step's result. Waiting steps return `done: false` and the ASL waits
/// `waitSeconds` before calling the same step again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Poll {
    pub done: bool,
    #[serde(default)]
    pub wait_seconds: u64,
    #[serde(default)]
    pub attempt: u32,
}

impl Poll {
    pub fn done() -> Self {
        Self {
            done: true,
            wait_seconds: 0,
            attempt: 0,
        }
    }

    /// The next wait after `previous`: the base interval for the first three
    /// polls, then twice, then four times the base (short first, capped).
    pub fn again(previous: Option<&Poll>, base: u64) -> Self {
        let attempt = previous.map(|p| p.attempt + 1).unwrap_or(0);
        let factor = match attempt {
            0..=2 => 1,
            3..=5 => 2,
            _ => 4,
        };
        Self {
            done: false,
            wait_seconds: base * factor,
            attempt,
        }
    }
}

/// The deployment record of one step, with helpers that write each change
/// through to the store as it happens (start, each action, end).
pub struct Journal<'a> {
    deps: &'a Deps,
    pub step: StepName,
    pub dep: Deployment,
}

impl<'a> Journal<'a> {
    pub async fn load(
        deps: &'a Deps,
        input: &StepInput,
        step: StepName,
    ) -> Result<Journal<'a>, StepError> {
        input.check()?;
        let dep = deps
            .store
            .deployment(&input.environment_id, &input.deployment_id)
            .await?
            .ok_or_else(|| {
                StepError::InvalidState(format!(
                    "deployment {} of environment {} has no record",
                    input.deployment_id, input.environment_id
                ))
            })?;
        if dep.status.is_terminal() && step != StepName::Finalization {
            return Err(StepError::InvalidState(format!(
                "deployment {} already ended ({})",
                dep.deployment_id, dep.status
            )));
        }
        check_cancel(&dep)?;
        Ok(Journal { deps, step, dep })
    }

    pub fn from_record(deps: &'a Deps, dep: Deployment, step: StepName) -> Self {
        Journal { deps, step, dep }
    }

    fn record(&mut self) -> &mut crate::domain::StepRecord {
        self.dep.step_mut(self.step)
    }

    pub fn status(&self) -> StepStatus {
        self.dep.step(self.step).status
    }

    async fn save(&self) -> Result<(), StepError> {
        let s = self.step;
        self.deps
            .store
            .save_step(
                &self.dep.environment_id,
                &self.dep.deployment_id,
                s.index(),
                self.dep.step(s),
            )
            .await?;
        Ok(())
    }

    /// Pending → Running (a retried or looping call leaves it Running).
    pub async fn start(&mut self) -> Result<(), StepError> {
        if self.status() == StepStatus::Pending {
            let now = self.deps.clock.now();
            let r = self.record();
            r.status = StepStatus::Running;
            r.started_at = Some(now);
            self.save().await?;
        }
        Ok(())
    }

    /// Appends an action unless the step already has the very same message
    /// (a retried call must not duplicate its log lines).
    pub async fn action(&mut self, message: impl Into<String>) -> Result<(), StepError> {
        let message = message.into();
        if self
            .dep
            .step(self.step)
            .actions
            .iter()
            .any(|a| a.message == message)
        {
            return Ok(());
        }
        let at = self.deps.clock.now();
        tracing::info!(step = %self.step, deployment = %self.dep.deployment_id, message = %crate::domain::mask_emails(&message), "action");
        self.record().actions.push(Action { at, message });
        self.save().await
    }

    pub async fn end(&mut self, status: StepStatus) -> Result<(), StepError> {
        let now = self.deps.clock.now();
        let r = self.record();
        if matches!(
            r.status,
            StepStatus::Succeeded | StepStatus::Failed | StepStatus::NotApplicable
        ) {
            return Ok(());
        }
        let started = *r.started_at.get_or_insert(now);
        r.status = status;
        r.ended_at = Some(now);
        r.duration_ms = Some(millis_between(started, now));
        self.save().await
    }

    /// Marks the step not applicable with the reason as its only action.
    pub async fn not_applicable(&mut self, reason: &str) -> Result<Poll, StepError> {
        self.start().await?;
        self.action(format!("Not applicable: {reason}")).await?;
        self.end(StepStatus::NotApplicable).await?;
        Ok(Poll::done())
    }

    pub async fn save_runtime(&self) -> Result<(), StepError> {
        self.deps
            .store
            .save_runtime(
                &self.dep.environment_id,
                &self.dep.deployment_id,
                &self.dep.runtime,
            )
            .await?;
        Ok(())
    }

    /// Seconds since this step started (for its timeout).
    pub fn elapsed_seconds(&self) -> i64 {
        let start = self
            .dep
            .step(self.step)
            .started_at
            .unwrap_or_else(|| self.deps.clock.now());
        millis_between(start, self.deps.clock.now()) / 1000
    }

    pub async fn environment(&self) -> Result<Environment, StepError> {
        self.deps
            .store
            .environment(&self.dep.environment_id)
            .await?
            .ok_or_else(|| {
                StepError::ValidationFailed(format!(
                    "environment '{}' is not registered",
                    self.dep.environment_id
                ))
            })
    }
}

/// Which notification e-mail a step sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// "Started" (optional, sent by Initial validation).
    Started,
    /// The outcome (sent by Finalization).
    Ended,
}

/// Sends a notification at most once per kind; a sending failure is recorded
/// as an action and never changes the deployment's status.
pub(crate) async fn notify(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: Option<&Environment>,
    notice: Notice,
) -> Result<(), StepError> {
    let claimed = match notice {
        Notice::Started => j.dep.runtime.notified_start,
        Notice::Ended => j.dep.runtime.notified,
    };
    if claimed {
        return Ok(());
    }
    let recipients = j.dep.recipients(env);
    if recipients.is_empty() {
        return Ok(());
    }
    let Some(sender) = deps.settings.sender_email.clone() else {
        return j
            .action("Notification not sent: no sender address configured")
            .await;
    };
    // Claim before sending: a retry after a crash skips rather than duplicates.
    match notice {
        Notice::Started => j.dep.runtime.notified_start = true,
        Notice::Ended => j.dep.runtime.notified = true,
    }
    j.save_runtime().await?;
    let console = j
        .dep
        .execution_arn
        .as_deref()
        .map(|arn| crate::email::console_url(&deps.settings.region, arn));
    let email = crate::email::render(&j.dep, console.as_deref());
    let what = match notice {
        Notice::Started => "\"Started\" e-mail",
        Notice::Ended => "Notification e-mail",
    };
    match deps.mailer.send(&sender, &recipients, &email).await {
        Ok(_) => {
            j.action(format!("{what} sent to {} recipient(s)", recipients.len()))
                .await
        }
        Err(e) => j.action(format!("{what} failed: {}", e.message())).await,
    }
}

/// A step never starts work on a deployment an operator cancelled.
pub(crate) fn check_cancel(dep: &Deployment) -> Result<(), StepError> {
    if dep.cancel_requested {
        return Err(StepError::Cancelled(format!(
            "cancelled by {}",
            dep.cancelled_by.as_deref().unwrap_or("an operator")
        )));
    }
    Ok(())
}

/// Which step a binary or worker runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Validate,
    StopPreparationServer,
    CreateImage,
    CreateModels,
    ReplaceInstances,
    Finalize,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Self::Validate,
        Self::StopPreparationServer,
        Self::CreateImage,
        Self::CreateModels,
        Self::ReplaceInstances,
        Self::Finalize,
    ];

    /// The function's name: crate under `functions/`, and the key used in
    /// `DefinitionSubstitutions` (`${<Key>FunctionArn}`).
    pub fn function(self) -> &'static str {
        match self {
            Self::Validate => "validate",
            Self::StopPreparationServer => "stop-preparation-server",
            Self::CreateImage => "create-image",
            Self::CreateModels => "create-models",
            Self::ReplaceInstances => "replace-instances",
            Self::Finalize => "finalize",
        }
    }

    pub fn substitution_key(self) -> &'static str {
        match self {
            Self::Validate => "ValidateFunctionArn",
            Self::StopPreparationServer => "StopPreparationServerFunctionArn",
            Self::CreateImage => "CreateImageFunctionArn",
            Self::CreateModels => "CreateModelsFunctionArn",
            Self::ReplaceInstances => "ReplaceInstancesFunctionArn",
            Self::Finalize => "FinalizeFunctionArn",
        }
    }

    pub fn name(self) -> StepName {
        StepName::ALL[Self::ALL.iter().position(|s| *s == self).unwrap_or(0)]
    }
}

fn parse<T: serde::de::DeserializeOwned>(payload: serde_json::Value) -> Result<T, StepError> {
    serde_json::from_value(payload).map_err(|e| StepError::BadInput(format!("step input: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<serde_json::Value, StepError> {
    serde_json::to_value(v).map_err(|e| StepError::BadInput(format!("step output: {e}")))
}

/// Runs one step on a JSON payload: the entry point of the sandbox's activity
/// workers, which serve all six steps from one process. A Lambda binary
/// serves one step and passes that step's function from [`handler`] to
/// `lambda::serve` instead, so the other five steps' code (and the SDK
/// operations only they call) is never linked into it.
pub async fn run(
    step: Step,
    deps: &Deps,
    payload: serde_json::Value,
) -> Result<serde_json::Value, StepError> {
    match step {
        Step::Validate => handler::validate(deps, payload).await,
        Step::StopPreparationServer => handler::stop_preparation_server(deps, payload).await,
        Step::CreateImage => handler::create_image(deps, payload).await,
        Step::CreateModels => handler::create_models(deps, payload).await,
        Step::ReplaceInstances => handler::replace_instances(deps, payload).await,
        Step::Finalize => handler::finalize(deps, payload).await,
    }
}

/// One JSON-in, JSON-out handler per step (what `steps::run` dispatches to
/// and what each step binary serves): parses the input, runs the step,
/// serializes the output, logs a failure with its stable name.
pub mod handler {
    use super::*;

    fn logged(
        step: Step,
        result: Result<serde_json::Value, StepError>,
    ) -> Result<serde_json::Value, StepError> {
        if let Err(e) = &result {
            tracing::warn!(step = step.function(), error = e.name(), message = %crate::domain::mask_emails(e.message()), "step failed");
        }
        result
    }

    pub async fn validate(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            validate::run(deps, parse(payload)?)
                .await
                .and_then(|o| json(&o))
        };
        logged(Step::Validate, r.await)
    }

    pub async fn stop_preparation_server(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            stop_server::run(deps, parse(payload)?)
                .await
                .and_then(|o| json(&o))
        };
        logged(Step::StopPreparationServer, r.await)
    }

    pub async fn create_image(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            create_image::run(deps, parse(payload)?)
                .await
                .and_then(|o| json(&o))
        };
        logged(Step::CreateImage, r.await)
    }

    pub async fn create_models(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            create_models::run(deps, parse(payload)?)
                .await
                .and_then(|o| json(&o))
        };
        logged(Step::CreateModels, r.await)
    }

    pub async fn replace_instances(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            replace_instances::run(deps, parse(payload)?)
                .await
                .and_then(|o| json(&o))
        };
        logged(Step::ReplaceInstances, r.await)
    }

    pub async fn finalize(
        deps: &Deps,
        payload: serde_json::Value,
    ) -> Result<serde_json::Value, StepError> {
        let r = async {
            // The safety net's EventBridge event also comes to the finalize function.
            if cleanup::is_status_change(&payload) {
                cleanup::run(deps, parse(payload)?)
                    .await
                    .and_then(|o| json(&o))
            } else if payload.get("state").is_some() {
                // From the ASL: the state plus this execution's ARN (Parameters).
                let event: ValidateEvent = parse(payload)?;
                finalize::run(deps, event.state, event.execution_arn.as_deref())
                    .await
                    .and_then(|o| json(&o))
            } else {
                // A bare state (a sample event, a manual invocation).
                finalize::run(deps, parse(payload)?, None)
                    .await
                    .and_then(|o| json(&o))
            }
        };
        logged(Step::Finalize, r.await)
    }
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_grows_and_caps() {
        let mut p = Poll::again(None, 15);
        let mut seen = vec![p.wait_seconds];
        for _ in 0..8 {
            p = Poll::again(Some(&p), 15);
            seen.push(p.wait_seconds);
        }
        assert_eq!(seen, vec![15, 15, 15, 30, 30, 30, 60, 60, 60]);
    }

    #[test]
    fn caught_error_reads_lambda_and_plain_causes() {
        let lambda = CaughtError {
            error: "ImageFailed".into(),
            cause: Some(
                r#"{"errorType":"ImageFailed","errorMessage":"image ami-1 failed: disk"}"#.into(),
            ),
        };
        assert_eq!(lambda.message(), "image ami-1 failed: disk");
        let plain = CaughtError {
            error: "States.Timeout".into(),
            cause: Some("timed out".into()),
        };
        assert_eq!(plain.message(), "timed out");
    }

    #[test]
    fn step_input_rejects_bad_ids() {
        let i = StepInput {
            deployment_id: "x".into(),
            environment_id: "ok".into(),
            ..Default::default()
        };
        assert_eq!(i.check().unwrap_err().name(), "BadInput");
    }
}

#[cfg(test)]
mod cancel_tests {
    use super::testkit::{input, Fixture};
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::store::Store;

    #[tokio::test]
    async fn a_cancelled_deployment_stops_at_the_next_step_without_aws_calls() {
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.store
            .request_cancel(testkit::ENV, testkit::DEP, "bob")
            .await
            .unwrap();
        // No rules: any AWS call would fail the test with a different error.
        let deps = f.deps(&[], &[], &[]);
        for step in [
            Step::StopPreparationServer,
            Step::CreateImage,
            Step::CreateModels,
            Step::ReplaceInstances,
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
        let v = ValidateEvent {
            state: input(),
            execution_arn: None,
        };
        assert_eq!(
            run(Step::Validate, &deps, serde_json::to_value(v).unwrap())
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
