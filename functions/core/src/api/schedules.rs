//! Scheduled deployments in the API: create (record first, then the
//! EventBridge Scheduler `at()` schedule), move, cancel. The record and its
//! pending-schedule entry change in one DynamoDB transaction guarded by the
//! environment's schedules version, so the one-per-hour rule holds under
//! concurrent requests.

use super::audit::schedule_fields;
use super::input::{self, RescheduleInput, ScheduleInput};
use super::problem::{step_err, store_err};
use super::{Api, ApiResponse, ApiResult, DeploymentView, Problem};
use crate::aws::OneTimeSchedule;
use crate::domain::{
    diff, Action, AuditAction, Deployment, DeploymentError, DeploymentStatus, ScheduleInfo,
    StepName,
};
use crate::schedule::{When, CONFLICT_WINDOW_MINUTES};
use crate::store::ScheduledEnd;
use serde_json::{json, Value};

/// Attempts when another request changed the environment's schedules meanwhile.
const VERSION_ATTEMPTS: usize = 3;

fn bad_when(e: crate::schedule::WhenError) -> Problem {
    Problem::bad_request(&e.message).field(e.field)
}

fn conflict(env: &str, other: &crate::schedule::ScheduleEntry) -> Problem {
    Problem::new(
        409,
        "Schedule conflict",
        &format!(
            "deployment {} is scheduled for {} on environment '{env}': schedules of one environment must be at least {CONFLICT_WINDOW_MINUTES} minutes apart",
            other.deployment_id,
            other.scheduled_for.format("%Y-%m-%d %H:%M:%S UTC")
        ),
    )
    .with("conflictingDeploymentId", json!(other.deployment_id))
    .field("at")
}

fn busy() -> Problem {
    Problem::new(
        409,
        "Schedules changed",
        "the environment's schedules changed while this request ran; try again",
    )
}

fn not_scheduled(dep: &Deployment) -> Problem {
    let what = match dep.status {
        DeploymentStatus::Running => "already started".to_string(),
        s => format!("is {s}"),
    };
    Problem::new(
        409,
        "Not scheduled",
        &format!(
            "deployment {} {what}; only a Scheduled deployment can be changed",
            dep.deployment_id
        ),
    )
    .with("deploymentStatus", json!(dep.status))
}

impl Api {
    fn one_time_schedule(&self, dep: &Deployment, when: &When) -> OneTimeSchedule {
        let input = json!({
            "deploymentId": dep.deployment_id,
            "environmentId": dep.environment_id,
            "owner": dep.owner,
            "options": dep.options,
        });
        let s = &self.settings.schedules;
        OneTimeSchedule {
            name: dep.deployment_id.clone(),
            group: s.group.clone(),
            expression: when.expression(),
            timezone: when.timezone.clone(),
            description: format!(
                "Autosky deployment {} of {}",
                dep.deployment_id, dep.environment_id
            ),
            target_arn: self.settings.state_machine_arn.clone(),
            role_arn: s.role_arn.clone(),
            input: input.to_string(),
            dead_letter_arn: s.dead_letter_arn.clone(),
        }
    }

    fn schedule_info(&self, id: &str, when: &When) -> ScheduleInfo {
        ScheduleInfo {
            at: when.local_string(),
            timezone: when.timezone.clone(),
            schedule_name: id.to_string(),
            schedule_group: self.settings.schedules.group.clone(),
        }
    }

    fn when(&self, at: Option<&str>, timezone: Option<&str>) -> ApiResult<When> {
        let at = at.ok_or_else(|| Problem::bad_request("at is required").field("at"))?;
        let when = When::parse(at, timezone).map_err(bad_when)?;
        when.check_window(
            self.deps.clock.now(),
            self.settings.schedules.min_lead_seconds,
        )
        .map_err(bad_when)?;
        Ok(when)
    }

    /// Records an API-side action (an e-mail sent or failed, a schedule that
    /// could not be deleted) under Initial validation, the step that starts
    /// the run; best effort: the answer does not depend on it.
    async fn note(&self, dep: &mut Deployment, message: String) {
        let now = self.deps.clock.now();
        let step = dep.step_mut(StepName::InitialValidation);
        step.actions.push(Action { at: now, message });
        let step = step.clone();
        if let Err(e) = self
            .deps
            .store
            .save_step(
                &dep.environment_id,
                &dep.deployment_id,
                StepName::InitialValidation.index(),
                &step,
            )
            .await
        {
            tracing::warn!(deployment = %dep.deployment_id, error = %e, "could not record an API action");
        }
    }

    /// E-mails the deployment's recipients about `dep` as it is now (the
    /// schedule confirmation, or its cancellation); failures become actions.
    async fn mail(&self, dep: &mut Deployment, what: &str) {
        let env = self
            .deps
            .store
            .environment(&dep.environment_id)
            .await
            .ok()
            .flatten();
        let recipients = dep.recipients(env.as_ref());
        if recipients.is_empty() {
            return;
        }
        let Some(sender) = self.deps.settings.sender_email.clone() else {
            self.note(
                dep,
                format!("{what} e-mail not sent: no sender address configured"),
            )
            .await;
            return;
        };
        let email = crate::email::render(dep, None);
        let message = match self.deps.mailer.send(&sender, &recipients, &email).await {
            Ok(_) => format!("{what} e-mail sent to {} recipient(s)", recipients.len()),
            Err(e) => format!("{what} e-mail failed: {}", e.message()),
        };
        self.note(dep, message).await;
    }

    /// `POST /environments/{env}/schedules`
    pub(super) async fn schedule(
        &self,
        env_id: &str,
        owner: &str,
        body: &[u8],
    ) -> ApiResult<ApiResponse> {
        let req = ScheduleInput::parse(body)?;
        let when = self.when(req.at.as_deref(), req.timezone.as_deref())?;
        let env = self.environment(env_id).await?;
        let id = crate::domain::new_deployment_id();
        let now = self.deps.clock.now();
        let mut dep = Deployment::new_scheduled(
            id.clone(),
            env_id.into(),
            owner.into(),
            req.options.options().resolve(&env.defaults),
            now,
            when.utc,
            self.schedule_info(&id, &when),
        );
        let mut created_fields = schedule_fields(&dep);
        created_fields["status"] = json!(DeploymentStatus::Scheduled);
        let audit = self
            .audit_entry(env_id, owner, AuditAction::ScheduleDeployment)
            .deployment(&id)
            .changes(diff(&Value::Null, &created_fields));
        let mut created = false;
        for _ in 0..VERSION_ATTEMPTS {
            let schedules = self.deps.store.schedules(env_id).await.map_err(store_err)?;
            if let Some(other) = schedules.conflict(when.utc, None) {
                return Err(conflict(env_id, other));
            }
            if self
                .deps
                .store
                .create_scheduled(&dep, schedules.version, Some(&audit))
                .await
                .map_err(store_err)?
            {
                created = true;
                break;
            }
        }
        if !created {
            return Err(busy());
        }
        // The record exists before the schedule, so a schedule never fires
        // for a deployment the history does not show.
        if let Err(e) = self
            .scheduler
            .create(&self.one_time_schedule(&dep, &when))
            .await
        {
            let end = ScheduledEnd {
                status: DeploymentStatus::Failed,
                at: now,
                cancelled_by: None,
                error: Some(DeploymentError {
                    step: None,
                    name: "ScheduleFailed".into(),
                    message: e.message().into(),
                }),
            };
            // Part of this request, whose entry stands: the record says why it failed.
            if let Ok(true) = self.deps.store.end_scheduled(env_id, &id, &end, None).await {
                // Failed without running: counted like any other end.
                let mut ended = dep.clone();
                ended.status = end.status;
                ended.ended_at = Some(end.at);
                ended.duration_ms = Some(0);
                ended.error = end.error.clone();
                crate::metrics::emit(self.deps.metrics.as_ref(), &ended);
            }
            return Err(step_err(e));
        }
        self.mail(&mut dep, "Schedule confirmation").await;
        let mut res = ApiResponse::json(
            201,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        );
        res.headers.push((
            "location".into(),
            format!("/environments/{env_id}/deployments/{id}"),
        ));
        Ok(res)
    }

    /// `PATCH /environments/{env}/schedules/{id}`: moves a Scheduled deployment.
    pub(super) async fn reschedule(
        &self,
        env_id: &str,
        id: &str,
        caller: &str,
        body: &[u8],
    ) -> ApiResult<ApiResponse> {
        let req: RescheduleInput = input::parse(body)?;
        let mut dep = self.deployment(env_id, id).await?;
        if dep.status != DeploymentStatus::Scheduled {
            return Err(not_scheduled(&dep));
        }
        // The zone stays the same unless a new one is given.
        let tz = req
            .timezone
            .clone()
            .or_else(|| dep.schedule.as_ref().map(|s| s.timezone.clone()));
        let when = self.when(req.at.as_deref(), tz.as_deref())?;
        let (old_info, old_at) = (dep.schedule.clone(), dep.scheduled_for);
        let info = self.schedule_info(id, &when);
        let mut moved_dep = dep.clone();
        moved_dep.scheduled_for = Some(when.utc);
        moved_dep.schedule = Some(info.clone());
        let (old_fields, new_fields) = (schedule_fields(&dep), schedule_fields(&moved_dep));
        let audit = self
            .audit_entry(env_id, caller, AuditAction::MoveSchedule)
            .deployment(id)
            .changes(diff(&old_fields, &new_fields));
        let mut moved = false;
        for _ in 0..VERSION_ATTEMPTS {
            let schedules = self.deps.store.schedules(env_id).await.map_err(store_err)?;
            if let Some(other) = schedules.conflict(when.utc, Some(id)) {
                return Err(conflict(env_id, other));
            }
            if self
                .deps
                .store
                .reschedule(env_id, id, when.utc, &info, schedules.version, Some(&audit))
                .await
                .map_err(store_err)?
            {
                moved = true;
                break;
            }
            let now = self.deployment(env_id, id).await?;
            if now.status != DeploymentStatus::Scheduled {
                return Err(not_scheduled(&now));
            }
        }
        if !moved {
            return Err(busy());
        }
        dep.scheduled_for = Some(when.utc);
        dep.schedule = Some(info);
        let schedule = self.one_time_schedule(&dep, &when);
        let result = match self.scheduler.update(&schedule).await {
            Ok(true) => Ok(()),
            // Gone: it fired (then the record is Running) or was deleted by hand.
            Ok(false) => {
                let now = self.deployment(env_id, id).await?;
                if now.status != DeploymentStatus::Scheduled {
                    return Err(not_scheduled(&now));
                }
                self.scheduler.create(&schedule).await.map(|_| ())
            }
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Put the record back at its old time (the schedule did not
            // move), audited too: the move's entry stands and must not be
            // the last word on the deployment's time.
            if let (Some(info), Some(at)) = (old_info, old_at) {
                let back = self
                    .audit_entry(env_id, caller, AuditAction::MoveSchedule)
                    .deployment(id)
                    .changes(diff(&new_fields, &old_fields))
                    .note(format!(
                        "put back: the schedule could not be moved ({})",
                        e.message()
                    ));
                if let Ok(s) = self.deps.store.schedules(env_id).await {
                    let _ = self
                        .deps
                        .store
                        .reschedule(env_id, id, at, &info, s.version, Some(&back))
                        .await;
                }
            }
            return Err(step_err(e));
        }
        Ok(ApiResponse::json(
            200,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        ))
    }

    /// `DELETE /environments/{env}/schedules/{id}` (and cancel of a Scheduled
    /// deployment): the record ends Cancelled first, then the schedule is
    /// deleted; if the delete fails and the schedule fires anyway, Initial
    /// validation finds the deployment Cancelled and ends without touching anything.
    pub(super) async fn unschedule(
        &self,
        env_id: &str,
        id: &str,
        by: &str,
    ) -> ApiResult<ApiResponse> {
        let dep = self.deployment(env_id, id).await?;
        if dep.status != DeploymentStatus::Scheduled {
            return Err(not_scheduled(&dep));
        }
        let end = ScheduledEnd {
            status: DeploymentStatus::Cancelled,
            at: self.deps.clock.now(),
            cancelled_by: Some(by.to_string()),
            error: None,
        };
        let audit = self.status_entry(
            &dep,
            by,
            AuditAction::CancelSchedule,
            Some(DeploymentStatus::Scheduled.as_str()),
            DeploymentStatus::Cancelled.as_str(),
        );
        if !self
            .deps
            .store
            .end_scheduled(env_id, id, &end, Some(&audit))
            .await
            .map_err(store_err)?
        {
            return Err(not_scheduled(&self.deployment(env_id, id).await?));
        }
        let mut dep = self.deployment(env_id, id).await?;
        // Cancelled before it ran: counted like any other end.
        crate::metrics::emit(self.deps.metrics.as_ref(), &dep);
        let (group, name) = dep
            .schedule
            .as_ref()
            .map(|s| (s.schedule_group.clone(), s.schedule_name.clone()))
            .unwrap_or_else(|| (self.settings.schedules.group.clone(), id.to_string()));
        match self.scheduler.delete(&group, &name).await {
            Ok(_) => {
                self.note(&mut dep, format!("Schedule {name} deleted"))
                    .await;
            }
            Err(e) => {
                self.note(
                    &mut dep,
                    format!(
                        "Schedule {name} could not be deleted ({}); if it fires, the run is ignored",
                        e.message()
                    ),
                )
                .await;
            }
        }
        self.mail(&mut dep, "Cancellation").await;
        Ok(ApiResponse::json(
            200,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        ))
    }
}
