//! The environment routes: list and read (each with the caller's role on
//! it), and register or replace one after checking its AWS resources exist
//! and fit together.

use super::input::{self, EnvironmentInput};
use super::problem::{step_err, store_err};
use super::{Api, ApiResponse, ApiResult, Problem};
use crate::domain::{ownership_refusal, template_label, Caller, Environment, Role};
use serde_json::{json, Value};

impl Api {
    /// `GET /environments`: those the caller holds a role on, each with
    /// that role.
    pub(super) async fn list_environments(&self, caller: &Caller) -> ApiResult<ApiResponse> {
        let items: Vec<Value> = self
            .deps
            .store
            .list_environments()
            .await
            .map_err(store_err)?
            .into_iter()
            .filter_map(|e| Some(with_role(&e, self.role_on(caller, &e)?)))
            .collect();
        Ok(ApiResponse::json(200, &json!({ "items": items })))
    }

    /// The registered environment `env`, or 404.
    pub(super) async fn environment(&self, env: &str) -> ApiResult<Environment> {
        self.deps
            .store
            .environment(env)
            .await
            .map_err(store_err)?
            .ok_or_else(|| not_registered(env))
    }

    /// `GET /environments/{env}`, with the caller's role on it.
    pub(super) async fn get_environment(
        &self,
        env: &str,
        caller: &Caller,
    ) -> ApiResult<ApiResponse> {
        let environment = self.environment(env).await?;
        let role = self
            .role_on(caller, &environment)
            .ok_or_else(|| not_registered(env))?;
        Ok(ApiResponse::json(200, &with_role(&environment, role)))
    }

    /// `PUT /environments/{env}`: 201 when new, 200 when replaced; audited
    /// with the fields that changed. 409 when another request registered
    /// (or, in between, replaced) it meanwhile.
    pub(super) async fn put_environment(
        &self,
        env: &str,
        caller: &str,
        body: &[u8],
    ) -> ApiResult<ApiResponse> {
        let input: EnvironmentInput = input::parse(body)?;
        input.check()?;
        self.check_resources(env, &input).await?;
        let existing = self.deps.store.environment(env).await.map_err(store_err)?;
        let environment = input.into_environment(env);
        let audit = self.environment_entry(caller, existing.as_ref(), &environment)?;
        if !self
            .deps
            .store
            .put_environment(&environment, Some(&audit))
            .await
            .map_err(store_err)?
        {
            return Err(Problem::new(
                409,
                "Environment changed",
                &format!("environment '{env}' was registered by another request meanwhile; read it and try again"),
            ));
        }
        Ok(ApiResponse::json(
            if existing.is_some() { 200 } else { 201 },
            &environment,
        ))
    }

    /// The preparation server, the launch template and every group exist,
    /// every group uses that launch template, and each of them is tagged
    /// `autosky:environment=<env>` (the tags come with the descriptions, so
    /// this needs no other permission). Nothing is written on a refusal.
    async fn check_resources(&self, env: &str, input: &EnvironmentInput) -> ApiResult<()> {
        let unprocessable = |d: String| Problem::new(422, "Unprocessable environment", &d);
        let owned =
            |resource: String, tag: Option<&str>| match ownership_refusal(&resource, tag, env) {
                Some(refusal) => Err(unprocessable(refusal)),
                None => Ok(()),
            };
        match self
            .deps
            .ec2
            .instance(&input.preparation_server_id)
            .await
            .map_err(step_err)?
        {
            None => {
                return Err(unprocessable(format!(
                    "preparation server {} not found",
                    input.preparation_server_id
                )))
            }
            Some(i) if i.state.is_gone() => {
                return Err(unprocessable(format!(
                    "preparation server {} is {}",
                    i.id, i.state
                )))
            }
            Some(i) => owned(
                format!("preparation server {}", i.id),
                i.environment_tag.as_deref(),
            )?,
        }
        let template = self
            .deps
            .ec2
            .launch_template(&input.launch_template_id)
            .await
            .map_err(step_err)?
            .ok_or_else(|| {
                unprocessable(format!(
                    "launch template {} not found",
                    input.launch_template_id
                ))
            })?;
        owned(
            template_label(&template.id, template.name.as_deref()),
            template.environment_tag.as_deref(),
        )?;
        let groups = self
            .deps
            .asg
            .groups(&input.auto_scaling_groups)
            .await
            .map_err(step_err)?;
        for name in &input.auto_scaling_groups {
            let g = groups
                .iter()
                .find(|g| &g.name == name)
                .ok_or_else(|| unprocessable(format!("Auto Scaling group {name} not found")))?;
            if g.launch_template_id.as_deref() != Some(input.launch_template_id.as_str()) {
                return Err(unprocessable(format!(
                    "Auto Scaling group {name} uses launch template {}, not {}",
                    g.launch_template_id.as_deref().unwrap_or("none"),
                    input.launch_template_id
                )));
            }
            owned(
                format!("Auto Scaling group {name}"),
                g.environment_tag.as_deref(),
            )?;
        }
        Ok(())
    }
}

/// 404 for an environment that is not registered, or that the caller holds
/// no role on (the same answer, so that one is not told from the other).
pub(super) fn not_registered(env: &str) -> Problem {
    Problem::new(
        404,
        "Not found",
        &format!("environment '{env}' is not registered"),
    )
}

/// An environment as the API shows it: its record and the caller's role on it.
fn with_role(environment: &Environment, role: Role) -> Value {
    let mut v = serde_json::to_value(environment).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("role".into(), json!(role));
    }
    v
}
