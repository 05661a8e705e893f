//! The deployment routes: start one now (taking the environment lock, then
//! the execution; a rollback starts the same way, `rollback.rs`), page
//! through the history, read one, cancel one.

use super::input::StartInput;
use super::problem::{step_err, store_err};
use super::query::Query;
use super::rollback::Kept;
use super::{Api, ApiResponse, ApiResult, DeploymentView, Problem};
use crate::domain::{
    diff, valid_deployment_id, AuditAction, Deployment, DeploymentError, DeploymentStatus,
    RollbackOf,
};
use crate::store::{LockOutcome, Outcome};
use serde_json::json;

impl Api {
    /// `POST /environments/{env}/deployments`
    pub(super) async fn start(
        &self,
        env_id: &str,
        owner: &str,
        body: &[u8],
    ) -> ApiResult<ApiResponse> {
        let input = StartInput::from_body(body)?;
        let env = self.environment(env_id).await?;
        let options = input.options().resolve(&env.defaults);
        self.launch(env_id, owner, options, None).await
    }

    /// Starts a deployment now (a rollback when `rollback_of` names the
    /// model to restore): the lock, the record with its audit entry, then the
    /// execution; 202 with the record.
    pub(super) async fn launch(
        &self,
        env_id: &str,
        owner: &str,
        options: crate::domain::DeploymentOptions,
        rollback_of: Option<RollbackOf>,
    ) -> ApiResult<ApiResponse> {
        let store = &self.deps.store;
        let id = crate::domain::new_deployment_id();
        let now = self.deps.clock.now();
        // The lock is taken here, atomically, so concurrent starts get 409
        // rather than a second execution; Initial validation finds it ours.
        match store
            .acquire_lock(env_id, &id, now)
            .await
            .map_err(store_err)?
        {
            LockOutcome::Acquired => {}
            LockOutcome::HeldBy(other) => {
                return Err(Problem::new(
                    409,
                    "Environment busy",
                    &format!("deployment {other} is running on environment '{env_id}'"),
                )
                .with("runningDeploymentId", json!(other)))
            }
        }
        let mut dep = Deployment::new_running(
            id.clone(),
            env_id.into(),
            owner.into(),
            options.clone(),
            now,
        );
        dep.execution_arn = Some(self.execution_arn(&id));
        dep.rollback_of = rollback_of.clone();
        let action = match &rollback_of {
            Some(_) => AuditAction::RollbackDeployment,
            None => AuditAction::StartDeployment,
        };
        let audit = self.status_entry(&dep, owner, action, None, "Running");
        if let Err(e) = store.create_deployment(&dep, Some(&audit)).await {
            let _ = store.release_lock(env_id, &id).await;
            return Err(store_err(e));
        }
        let mut exec_input = json!({
            "deploymentId": id,
            "environmentId": env_id,
            "owner": owner,
            "options": options,
        });
        if let Some(r) = &rollback_of {
            // For the console reader; the steps read it from the record.
            exec_input["rollbackOf"] = json!(r);
        }
        match self.executions.start(&id, &exec_input.to_string()).await {
            Ok(arn) => dep.execution_arn = Some(arn),
            Err(e) => {
                // Nothing runs: the record says why and the environment is free again.
                let outcome = Outcome {
                    status: DeploymentStatus::Failed,
                    ended_at: now,
                    duration_ms: 0,
                    generated_version: None,
                    error: Some(DeploymentError {
                        step: None,
                        name: "StartFailed".into(),
                        message: e.message().into(),
                    }),
                };
                if let Ok(true) = store.finish(env_id, &id, &outcome).await {
                    // Failed without running: counted like any other end.
                    dep.status = outcome.status;
                    dep.ended_at = Some(outcome.ended_at);
                    dep.duration_ms = Some(outcome.duration_ms);
                    dep.error = outcome.error.clone();
                    crate::metrics::emit(self.deps.metrics.as_ref(), &dep);
                }
                let _ = store.release_lock(env_id, &id).await;
                return Err(step_err(e));
            }
        }
        let view = DeploymentView::new(&dep, &self.deps.settings.region, false);
        let mut res = ApiResponse::json(202, &view);
        res.headers.push((
            "location".into(),
            format!("/environments/{env_id}/deployments/{id}"),
        ));
        Ok(res)
    }

    fn execution_arn(&self, id: &str) -> String {
        crate::domain::execution_arn(&self.settings.state_machine_arn, id)
    }

    /// `GET /environments/{env}/deployments`: newest first, one page per call.
    pub(super) async fn history(&self, env: &str, q: &Query) -> ApiResult<ApiResponse> {
        let limit = q.limit()?;
        let status = q
            .get("status")
            .map(|s| {
                serde_json::from_value::<DeploymentStatus>(json!(s)).map_err(|_| {
                    Problem::bad_request("status must be one of Scheduled, Running, Succeeded, Failed, RolledBack, Cancelled")
                })
            })
            .transpose()?;
        let token = q.get("nextToken");
        let environment = self.environment(env).await?;
        let page = self
            .deps
            .store
            .history(env, limit, token, status)
            .await
            .map_err(store_err)?;
        // Which rows are rollback targets: only a page showing a Succeeded
        // deployment needs the kept ones, and a first page that shows enough
        // of them (or the whole history) holds them itself.
        let succeeded: Vec<&Deployment> = page
            .items
            .iter()
            .filter(|d| d.status == DeploymentStatus::Succeeded)
            .collect();
        let kept = if succeeded.is_empty() {
            None
        } else if token.is_none()
            && (succeeded.len() >= environment.defaults.kept_deployments.max(1) as usize
                || page.next_token.is_none())
        {
            Some(Kept::newest(&environment, succeeded))
        } else {
            Some(self.kept(&environment).await?)
        };
        let items: Vec<DeploymentView> = page
            .items
            .iter()
            .map(|d| {
                let mut v = DeploymentView::new(d, &self.deps.settings.region, false);
                if let Some(kept) = &kept {
                    kept.mark(&mut v, d);
                }
                v
            })
            .collect();
        Ok(ApiResponse::json(
            200,
            &json!({ "items": items, "nextToken": page.next_token }),
        ))
    }

    /// The deployment `id` of `env`: 400 for an id that is not a ULID, else 404.
    pub(super) async fn deployment(&self, env: &str, id: &str) -> ApiResult<Deployment> {
        if !valid_deployment_id(id) {
            return Err(Problem::bad_request(&format!(
                "deployment id '{}' is not a ULID",
                crate::domain::truncate(id, 80)
            )));
        }
        self.deps
            .store
            .deployment(env, id)
            .await
            .map_err(store_err)?
            .ok_or_else(|| {
                Problem::new(
                    404,
                    "Not found",
                    &format!("deployment {id} not found in environment '{env}'"),
                )
            })
    }

    /// `GET /environments/{env}/deployments/{id}`: with every step's actions.
    pub(super) async fn details(&self, env: &str, id: &str) -> ApiResult<ApiResponse> {
        let dep = self.deployment(env, id).await?;
        let mut view = DeploymentView::new(&dep, &self.deps.settings.region, true);
        if dep.status == DeploymentStatus::Succeeded {
            let environment = self.environment(env).await?;
            self.kept(&environment).await?.mark(&mut view, &dep);
        }
        Ok(ApiResponse::json(200, &view))
    }

    /// `POST /environments/{env}/deployments/{id}/cancel`: flags a running
    /// deployment: the next step (at most one poll interval away) stops with
    /// `Cancelled`, and Finalization cleans up and ends it Cancelled. A
    /// Scheduled one is unscheduled instead.
    pub(super) async fn cancel(&self, env: &str, id: &str, by: &str) -> ApiResult<ApiResponse> {
        let dep = self.deployment(env, id).await?;
        if dep.status == DeploymentStatus::Scheduled {
            return self.unschedule(env, id, by).await;
        }
        let audit = self
            .audit_entry(env, by, AuditAction::CancelDeployment)
            .deployment(id)
            .changes(diff(
                &json!({"cancelRequested": dep.cancel_requested, "cancelledBy": dep.cancelled_by}),
                &json!({"cancelRequested": true, "cancelledBy": by}),
            ));
        if dep.status != DeploymentStatus::Running
            || !self
                .deps
                .store
                .request_cancel(env, id, by, Some(&audit))
                .await
                .map_err(store_err)?
        {
            return Err(Problem::new(
                409,
                "Not running",
                &format!("deployment {id} is {}, not Running", dep.status),
            ));
        }
        let dep = self.deployment(env, id).await?;
        self.wake_for_cancel(&dep).await;
        Ok(ApiResponse::json(
            202,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        ))
    }

    /// A deployment in a waiting state sees the cancel only when woken:
    /// complete its token as a wake-up does, so the step checks now (and
    /// stops with `Cancelled`). A token already closed (the step is running,
    /// or moved on) needs nothing; a failed call leaves the cancel to the
    /// waiting state's timeout, so it does not fail the request.
    async fn wake_for_cancel(&self, dep: &crate::domain::Deployment) {
        let Some(w) = &dep.runtime.wait else { return };
        let output = json!({"done": false, "wakeOn": w.on, "wokenBy": "cancel"});
        if let Err(e) = self.deps.tokens.succeed(&w.token, &output).await {
            tracing::warn!(deployment = dep.deployment_id, error = %e.message(), "cancel could not wake the waiting step");
        }
    }
}
