//! The deployment routes: start one now (taking the environment lock, then
//! the execution), page through the history, read one, cancel one.

use super::input::{self, StartInput};
use super::problem::{step_err, store_err};
use super::query::Query;
use super::{Api, ApiResponse, ApiResult, DeploymentView, Problem};
use crate::domain::{valid_deployment_id, Deployment, DeploymentError, DeploymentStatus};
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
        let input: StartInput = if body.iter().all(u8::is_ascii_whitespace) {
            StartInput::default()
        } else {
            input::parse(body)?
        };
        input.check()?;
        let env = self.environment(env_id).await?;
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
        let options = input.options().resolve(&env.defaults);
        let mut dep = Deployment::new_running(
            id.clone(),
            env_id.into(),
            owner.into(),
            options.clone(),
            now,
        );
        dep.execution_arn = Some(self.execution_arn(&id));
        if let Err(e) = store.create_deployment(&dep).await {
            let _ = store.release_lock(env_id, &id).await;
            return Err(store_err(e));
        }
        let mut exec_input = json!({
            "deploymentId": id,
            "environmentId": env_id,
            "owner": owner,
            "options": options,
        });
        if let Some(p) = self.settings.poll_seconds {
            exec_input["pollSeconds"] = json!(p);
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
                let _ = store.finish(env_id, &id, &outcome).await;
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
        let limit = match q.get("limit") {
            None => 20,
            // Digits only: `parse` alone would also take a sign (`+5`).
            Some(v) => Some(v)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| Problem::bad_request("limit must be an integer from 1 to 100"))?,
        };
        let status = q
            .get("status")
            .map(|s| {
                serde_json::from_value::<DeploymentStatus>(json!(s)).map_err(|_| {
                    Problem::bad_request("status must be one of Scheduled, Running, Succeeded, Failed, RolledBack, Cancelled")
                })
            })
            .transpose()?;
        let token = q.get("nextToken");
        self.environment(env).await?;
        let page = self
            .deps
            .store
            .history(env, limit, token, status)
            .await
            .map_err(store_err)?;
        let items: Vec<DeploymentView> = page
            .items
            .iter()
            .map(|d| DeploymentView::new(d, &self.deps.settings.region, false))
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
        Ok(ApiResponse::json(
            200,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        ))
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
        if dep.status != DeploymentStatus::Running
            || !self
                .deps
                .store
                .request_cancel(env, id, by)
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
        Ok(ApiResponse::json(
            202,
            &DeploymentView::new(&dep, &self.deps.settings.region, true),
        ))
    }
}
