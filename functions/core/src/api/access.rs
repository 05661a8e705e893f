//! The router's authorization: a caller's role on the environment a route
//! names, against the role the route needs ([`Route::role`]). An
//! environment the caller holds no role on answers as if it did not exist
//! (404), so its existence is not disclosed; a role too low answers 403
//! naming the role needed. Nothing is read beyond the environment, and
//! nothing is written, before this passes.

use super::problem::store_err;
use super::{Api, ApiResult, Problem, Route};
use crate::domain::{Caller, Environment, Role};

impl Api {
    /// Whether `caller` may use `route` on `env` (None: a route without an
    /// environment, `GET /environments`, which filters its own answer).
    /// IAM-authorized callers and the stack's administrators pass without a
    /// read; others cost one read of the environment.
    pub(super) async fn authorize(
        &self,
        caller: &Caller,
        route: Route,
        env: Option<&str>,
    ) -> ApiResult<()> {
        let admins = &self.settings.access.admin_groups;
        let Some(env) = env else { return Ok(()) };
        if caller.is_stack_administrator(admins) {
            return Ok(());
        }
        let environment = self.deps.store.environment(env).await.map_err(store_err)?;
        let role = environment
            .as_ref()
            .and_then(|e| caller.role(admins, e.access.as_ref()));
        let needed = route.role();
        match role {
            Some(role) if role >= needed => Ok(()),
            Some(role) => Err(Problem::new(
                403,
                "Forbidden",
                &format!(
                    "{} on environment '{env}' needs the {needed} role; you are a {role}",
                    action(route)
                ),
            )
            .with("requiredRole", serde_json::json!(needed))),
            // Registering answers the same whether the environment exists
            // or not, so a refusal discloses nothing either way.
            None if route == Route::PutEnvironment => Err(Problem::new(
                403,
                "Forbidden",
                &format!(
                    "registering or updating environment '{env}' needs the administrator \
                     role on it (a new environment: one of the stack's administrators' groups)"
                ),
            )
            .with("requiredRole", serde_json::json!(Role::Administrator))),
            None => Err(super::environments::not_registered(env)),
        }
    }

    /// The caller's role on `environment` (what the page may offer).
    pub(super) fn role_on(&self, caller: &Caller, environment: &Environment) -> Option<Role> {
        caller.role(
            &self.settings.access.admin_groups,
            environment.access.as_ref(),
        )
    }
}

/// What a route does, as a refusal names it.
fn action(route: Route) -> &'static str {
    match route {
        Route::ListEnvironments => "listing environments",
        Route::GetEnvironment => "reading the environment",
        Route::PutEnvironment => "updating the environment",
        Route::StartDeployment => "starting a deployment",
        Route::ListDeployments => "reading the history",
        Route::GetDeployment => "reading a deployment",
        Route::GetAudit => "reading the audit trail",
        Route::CancelDeployment => "cancelling a deployment",
        Route::RollbackDeployment => "rolling back to a deployment",
        Route::CreateSchedule => "scheduling a deployment",
        Route::MoveSchedule => "moving a scheduled deployment",
        Route::CancelSchedule => "cancelling a scheduled deployment",
    }
}
