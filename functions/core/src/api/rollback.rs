//! Rolling back: `POST /environments/{env}/deployments/{id}/rollback` starts
//! a deployment that restores the model of an earlier Succeeded deployment,
//! and which deployments the history offers as rollback targets. Both read the
//! environment's newest Succeeded deployments ([`Kept`]): their models are the
//! ones Create models never removes, and the newest is the one in service.

use super::input::StartInput;
use super::problem::store_err;
use super::{Api, ApiResponse, ApiResult, DeploymentView, Problem};
use crate::domain::{Deployment, DeploymentStatus, Environment, RollbackOf};

/// The environment's newest `keptDeployments` Succeeded deployments' models,
/// newest first: the first is in service.
pub(super) struct Kept {
    models: Vec<RollbackOf>,
    count: u32,
    launch_template_id: String,
}

impl Kept {
    /// The kept set of `env` from its Succeeded deployments `newest` first
    /// (at least `keptDeployments` of them, or all it has).
    pub(super) fn newest<'a>(
        env: &Environment,
        newest: impl IntoIterator<Item = &'a Deployment>,
    ) -> Self {
        let count = env.defaults.kept_deployments.max(1);
        Self {
            models: newest
                .into_iter()
                .take(count as usize)
                .filter_map(RollbackOf::of)
                .collect(),
            count,
            launch_template_id: env.launch_template_id.clone(),
        }
    }

    /// The model a rollback to `d` restores, or why there is none (409).
    fn target(&self, d: &Deployment) -> Result<RollbackOf, String> {
        let id = &d.deployment_id;
        if d.status != DeploymentStatus::Succeeded {
            return Err(format!(
                "deployment {id} is {}: only a Succeeded deployment's model can be restored",
                d.status
            ));
        }
        let model = RollbackOf::of(d).ok_or_else(|| {
            format!("deployment {id} recorded no launch template version to restore")
        })?;
        let (version, image) = (model.launch_template_version, &model.image_id);
        if model.launch_template_id != self.launch_template_id {
            return Err(format!(
                "deployment {id} put version {version} of launch template {} in service; the environment now uses {}",
                model.launch_template_id, self.launch_template_id
            ));
        }
        if let Some(current) = self.models.first().filter(|m| same_model(m, &model)) {
            return Err(format!(
                "version {version} (image {image}) is already in service (deployment {})",
                current.deployment_id
            ));
        }
        if !self.models.iter().any(|m| m.deployment_id == *id) {
            return Err(format!(
                "deployment {id} is older than the environment's {} newest Succeeded deployments, whose models alone are kept: \
                 version {version} and image {image} may have been removed",
                self.count
            ));
        }
        Ok(model)
    }

    /// The history's view of `d`: whether its model is the one in service
    /// (the newest Succeeded deployment), whether it can be rolled back to.
    pub(super) fn mark(&self, view: &mut DeploymentView, d: &Deployment) {
        view.in_service = self
            .models
            .first()
            .is_some_and(|m| m.deployment_id == d.deployment_id);
        view.can_roll_back = self.target(d).is_ok();
    }
}

/// Two models are the same when they name the same version of the same
/// template (a rollback deployment's model is its target's).
fn same_model(a: &RollbackOf, b: &RollbackOf) -> bool {
    a.launch_template_id == b.launch_template_id
        && a.launch_template_version == b.launch_template_version
}

impl Api {
    /// The models kept for `env`: its newest `keptDeployments` Succeeded deployments'.
    pub(super) async fn kept(&self, env: &Environment) -> ApiResult<Kept> {
        let newest = self
            .deps
            .store
            .newest_succeeded(&env.environment_id, env.defaults.kept_deployments.max(1))
            .await
            .map_err(store_err)?;
        Ok(Kept::newest(env, &newest))
    }

    /// `POST /environments/{env}/deployments/{id}/rollback`: the same
    /// options as a start; refused (nothing changed) unless `id` is one of the
    /// kept Succeeded deployments and its model is not the one in service.
    pub(super) async fn rollback(
        &self,
        env_id: &str,
        id: &str,
        owner: &str,
        body: &[u8],
    ) -> ApiResult<ApiResponse> {
        let input = StartInput::from_body(body)?;
        let env = self.environment(env_id).await?;
        let target = self.deployment(env_id, id).await?;
        let kept = self.kept(&env).await?;
        let model = kept
            .target(&target)
            .map_err(|why| Problem::new(409, "Cannot roll back", &why))?;
        let options = input.options().resolve(&env.defaults);
        self.launch(env_id, owner, options, Some(model)).await
    }
}
