//! The journal: a step's view of its deployment record, writing each change
//! through to the store as it happens (start, every action, end, runtime).

use super::{Poll, StepInput};
use crate::deps::Deps;
use crate::domain::{
    mask_emails, millis_between, Action, Deployment, Environment, StepName, StepRecord, StepStatus,
};
use crate::error::StepError;

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

    fn record(&mut self) -> &mut StepRecord {
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
        tracing::info!(step = %self.step, deployment = %self.dep.deployment_id, message = %mask_emails(&message), "action");
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
