//! The Deployments HTTP API: one framework-free router. In AWS two Lambda
//! functions (lambda_http, API Gateway payload v2) serve it, each its own
//! routes ([`handler::api`], [`handler::schedules`]); on loopback the sandbox
//! serves them all (`Api::handle`). Routes are listed once in [`ROUTES`],
//! with the function serving each, which the router dispatches on, the
//! OpenAPI test compares with `infra/openapi.yaml` and the template test
//! with the functions' events.

mod input;
#[cfg(feature = "http")]
pub mod lambda;
pub mod page;
mod schedules;
mod view;

pub use input::{valid_email, EnvironmentInput, RescheduleInput, ScheduleInput, StartInput};
pub use view::{DeploymentView, Problem};

use crate::aws::{AutoScaling, Ec2, Mailer, Scheduler};
use crate::deps::Clock;
use crate::domain::{
    valid_deployment_id, valid_environment_id, Deployment, DeploymentError, DeploymentStatus,
    StepName,
};
use crate::error::StepError;
use crate::store::{LockOutcome, Outcome, Store, StoreError};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

/// The Lambda function that serves a route in AWS. The scheduling routes
/// have their own, so that neither bootstrap links the other's code and
/// clients: together, the Scheduler client, the time-zone database and the
/// scheduling code put one function over the size budget (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `api`: environments, deployments (start, history, details, cancel) and the page.
    Api,
    /// `schedules`: scheduled deployments (create, move, cancel).
    Schedules,
}

impl Function {
    /// The binary (and crate under functions/) of the function.
    pub fn binary(self) -> &'static str {
        match self {
            Function::Api => "api",
            Function::Schedules => "schedules",
        }
    }
}

/// Every route: (method, path template, the function serving it). The router
/// matches these; the spec and template tests compare them.
pub const ROUTES: [(&str, &str, Function); 10] = [
    ("GET", "/environments", Function::Api),
    ("GET", "/environments/{env}", Function::Api),
    ("PUT", "/environments/{env}", Function::Api),
    ("POST", "/environments/{env}/deployments", Function::Api),
    ("GET", "/environments/{env}/deployments", Function::Api),
    ("GET", "/environments/{env}/deployments/{id}", Function::Api),
    (
        "POST",
        "/environments/{env}/deployments/{id}/cancel",
        Function::Api,
    ),
    ("POST", "/environments/{env}/schedules", Function::Schedules),
    (
        "PATCH",
        "/environments/{env}/schedules/{id}",
        Function::Schedules,
    ),
    (
        "DELETE",
        "/environments/{env}/schedules/{id}",
        Function::Schedules,
    ),
];

/// The route (method, path template, function) of `method path`, if any.
pub fn route_of(method: &str, path: &str) -> Option<(&'static str, &'static str, Function)> {
    ROUTES
        .into_iter()
        .find(|(m, t, _)| *m == method && matches(t, path).is_some())
}

/// A request matched to its route, authenticated and checked for what every
/// route shares (environment id, body size, query parameters).
struct Matched {
    route: usize,
    params: Vec<String>,
    owner: String,
    query: Query,
}

/// A request as the router needs it, whatever served it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The authenticated caller (IAM ARN, or JWT email/sub); never from the body.
    pub identity: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    fn json<T: Serialize>(status: u16, body: &T) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// Starts Step Functions executions (a capability, so handlers test without AWS).
#[async_trait]
pub trait Executions: Send + Sync {
    /// Starts the execution `name` with `input`; returns its ARN.
    async fn start(&self, name: &str, input: &str) -> Result<String, StepError>;
}

pub struct SfnExecutions {
    pub client: crate::aws::LazyClient<aws_sdk_sfn::Client>,
    pub state_machine_arn: String,
}

#[async_trait]
impl Executions for SfnExecutions {
    async fn start(&self, name: &str, input: &str) -> Result<String, StepError> {
        self.client
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input)
            .send()
            .await
            .map(|o| o.execution_arn().to_string())
            .map_err(|e| crate::error::classify_sdk_error("StartExecution", &e))
    }
}

#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    pub state_machine_arn: String,
    pub region: String,
    /// Base poll interval put in execution inputs (None: the steps' default).
    pub poll_seconds: Option<u64>,
    /// SES sender of the schedule confirmation and cancellation e-mails.
    pub sender_email: Option<String>,
    pub schedules: ScheduleSettings,
}

/// Where scheduled deployments' schedules go and how they start the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    /// The project's EventBridge Scheduler schedule group (`SCHEDULE_GROUP`).
    pub group: String,
    /// The role Scheduler assumes to start the state machine (`SCHEDULER_ROLE_ARN`).
    pub role_arn: String,
    /// The schedules' dead-letter queue (`SCHEDULE_DLQ_ARN`).
    pub dead_letter_arn: Option<String>,
    /// `SCHEDULE_MIN_LEAD_SECONDS` (default 60).
    pub min_lead_seconds: i64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            group: "autosky".into(),
            role_arn: String::new(),
            dead_letter_arn: None,
            min_lead_seconds: crate::schedule::DEFAULT_MIN_LEAD_SECONDS,
        }
    }
}

impl ScheduleSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let min_lead_seconds = match get("SCHEDULE_MIN_LEAD_SECONDS") {
            None => crate::schedule::DEFAULT_MIN_LEAD_SECONDS,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=86_400).contains(n))
                .ok_or("SCHEDULE_MIN_LEAD_SECONDS must be a number of seconds from 0 to 86400")?,
        };
        Ok(Self {
            group: get("SCHEDULE_GROUP")
                .ok_or("SCHEDULE_GROUP is not set: it must name the EventBridge Scheduler group")?,
            role_arn: get("SCHEDULER_ROLE_ARN").ok_or(
                "SCHEDULER_ROLE_ARN is not set: it must name the role Scheduler uses to start the state machine",
            )?,
            dead_letter_arn: get("SCHEDULE_DLQ_ARN"),
            min_lead_seconds,
        })
    }
}

pub struct Api {
    pub store: Arc<dyn Store>,
    pub executions: Arc<dyn Executions>,
    pub ec2: Ec2,
    pub asg: AutoScaling,
    pub scheduler: Scheduler,
    pub mailer: Mailer,
    pub clock: Arc<dyn Clock>,
    pub settings: ApiSettings,
}

type ApiResult<T> = std::result::Result<T, Problem>;

fn store_err(e: StoreError) -> Problem {
    match e {
        StoreError::InvalidToken => {
            Problem::bad_request("nextToken is not a token this API issued for this environment")
        }
        StoreError::Transient(m) => {
            Problem::new(503, "Service unavailable", &format!("try again: {m}"))
        }
        other => Problem::new(500, "Internal error", &other.to_string()),
    }
}

fn step_err(e: StepError) -> Problem {
    if e.is_retryable() {
        Problem::new(503, "Service unavailable", e.message())
    } else {
        Problem::new(502, "AWS error", e.message())
    }
}

/// Matches `path` against a template; returns the `{…}` segments in order.
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/')
        .collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
            params.push(percent_decode(b)?);
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The entry point of each API function: `api::lambda::serve` takes one of
/// these rather than a `Function` value, which would keep every route's code
/// (and client) in both bootstraps.
pub mod handler {
    use super::{Api, ApiRequest, ApiResponse};

    /// The `api` function: the page and the environment and deployment routes.
    pub async fn api(api: &Api, req: ApiRequest) -> ApiResponse {
        api.handle_api(req).await
    }

    /// The `schedules` function: the scheduled-deployment routes.
    pub async fn schedules(api: &Api, req: ApiRequest) -> ApiResponse {
        api.handle_schedules(req).await
    }
}

impl Api {
    /// Routes one request to any route (the sandbox's loopback API, the
    /// tests); every error is an `application/problem+json` answer.
    pub async fn handle(&self, req: ApiRequest) -> ApiResponse {
        if let Some(asset) = page::serve(&req.method, &req.path) {
            return asset;
        }
        let result = async {
            let m = self.matched(&req)?;
            match ROUTES[m.route].2 {
                Function::Api => self.api_route(&req, m).await,
                Function::Schedules => self.schedule_route(&req, m).await,
            }
        };
        result.await.unwrap_or_else(|p| p.response())
    }

    /// The `api` function's routes and the page.
    pub async fn handle_api(&self, req: ApiRequest) -> ApiResponse {
        if let Some(asset) = page::serve(&req.method, &req.path) {
            return asset;
        }
        let result = async { self.api_route(&req, self.matched(&req)?).await };
        result.await.unwrap_or_else(|p| p.response())
    }

    /// The `schedules` function's routes.
    pub async fn handle_schedules(&self, req: ApiRequest) -> ApiResponse {
        let result = async { self.schedule_route(&req, self.matched(&req)?).await };
        result.await.unwrap_or_else(|p| p.response())
    }

    /// The route of `req`, after what every route checks first.
    fn matched(&self, req: &ApiRequest) -> ApiResult<Matched> {
        let mut path_known = false;
        for (i, (method, template, _)) in ROUTES.iter().enumerate() {
            let Some(params) = matches(template, &req.path) else {
                continue;
            };
            path_known = true;
            if *method != req.method {
                continue;
            }
            // Authentication first: nothing is read or written for an anonymous caller.
            let owner = req
                .identity
                .clone()
                .filter(|i| !i.trim().is_empty())
                .ok_or_else(|| {
                    Problem::new(
                        401,
                        "Unauthorized",
                        "the request carries no authenticated identity",
                    )
                })?;
            if let Some(env) = params.first() {
                if !valid_environment_id(env) {
                    return Err(Problem::bad_request(&format!(
                        "environment id '{}' must match [a-z0-9-]{{1,64}}",
                        crate::domain::truncate(env, 80)
                    )));
                }
            }
            if req.body.len() > MAX_BODY {
                return Err(Problem::new(
                    413,
                    "Payload too large",
                    &format!("the body exceeds {MAX_BODY} bytes"),
                ));
            }
            let query = Query::new(&req.query, allowed_query(i))?;
            return Ok(Matched {
                route: i,
                params,
                owner,
                query,
            });
        }
        Err(if path_known {
            Problem::new(
                405,
                "Method not allowed",
                &format!("{} is not allowed on {}", req.method, req.path),
            )
        } else {
            Problem::new(
                404,
                "Not found",
                &format!("no route for {}", crate::domain::truncate(&req.path, 200)),
            )
        })
    }

    async fn api_route(&self, req: &ApiRequest, m: Matched) -> ApiResult<ApiResponse> {
        let Matched {
            route,
            params,
            owner,
            query,
        } = m;
        match route {
            0 => self.list_environments().await,
            1 => self.get_environment(&params[0]).await,
            2 => self.put_environment(&params[0], &req.body).await,
            3 => self.start(&params[0], &owner, &req.body).await,
            4 => self.history(&params[0], &query).await,
            5 => self.details(&params[0], &params[1]).await,
            6 => self.cancel(&params[0], &params[1], &owner).await,
            other => Err(misrouted(other, Function::Api)),
        }
    }

    async fn schedule_route(&self, req: &ApiRequest, m: Matched) -> ApiResult<ApiResponse> {
        let Matched {
            route,
            params,
            owner,
            ..
        } = m;
        match route {
            7 => self.schedule(&params[0], &owner, &req.body).await,
            8 => self.reschedule(&params[0], &params[1], &req.body).await,
            9 => self.unschedule(&params[0], &params[1], &owner).await,
            other => Err(misrouted(other, Function::Schedules)),
        }
    }

    async fn list_environments(&self) -> ApiResult<ApiResponse> {
        let items = self.store.list_environments().await.map_err(store_err)?;
        Ok(ApiResponse::json(200, &json!({ "items": items })))
    }

    async fn environment(&self, env: &str) -> ApiResult<crate::domain::Environment> {
        self.store
            .environment(env)
            .await
            .map_err(store_err)?
            .ok_or_else(|| {
                Problem::new(
                    404,
                    "Not found",
                    &format!("environment '{env}' is not registered"),
                )
            })
    }

    async fn get_environment(&self, env: &str) -> ApiResult<ApiResponse> {
        Ok(ApiResponse::json(200, &self.environment(env).await?))
    }

    async fn put_environment(&self, env: &str, body: &[u8]) -> ApiResult<ApiResponse> {
        let input: EnvironmentInput = input::parse(body)?;
        input.check()?;
        self.check_resources(&input).await?;
        let existed = self
            .store
            .environment(env)
            .await
            .map_err(store_err)?
            .is_some();
        let environment = input.into_environment(env);
        self.store
            .put_environment(&environment)
            .await
            .map_err(store_err)?;
        Ok(ApiResponse::json(
            if existed { 200 } else { 201 },
            &environment,
        ))
    }

    /// The preparation server, the launch template and every group exist,
    /// and every group uses that launch template.
    async fn check_resources(&self, input: &EnvironmentInput) -> ApiResult<()> {
        let unprocessable = |d: String| Problem::new(422, "Unprocessable environment", &d);
        match self
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
            Some(i) if matches!(i.state.as_str(), "terminated" | "shutting-down") => {
                return Err(unprocessable(format!(
                    "preparation server {} is {}",
                    i.id, i.state
                )))
            }
            Some(_) => {}
        }
        if self
            .ec2
            .launch_template(&input.launch_template_id)
            .await
            .map_err(step_err)?
            .is_none()
        {
            return Err(unprocessable(format!(
                "launch template {} not found",
                input.launch_template_id
            )));
        }
        let groups = self
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
        }
        Ok(())
    }

    async fn start(&self, env_id: &str, owner: &str, body: &[u8]) -> ApiResult<ApiResponse> {
        let input: StartInput = if body.iter().all(u8::is_ascii_whitespace) {
            StartInput::default()
        } else {
            input::parse(body)?
        };
        input.check()?;
        let env = self.environment(env_id).await?;
        let id = crate::domain::new_deployment_id();
        let now = self.clock.now();
        // The lock is taken here, atomically, so concurrent starts get 409
        // rather than a second execution; Initial validation finds it ours.
        match self
            .store
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
        if let Err(e) = self.store.create_deployment(&dep).await {
            let _ = self.store.release_lock(env_id, &id).await;
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
                let _ = self.store.finish(env_id, &id, &outcome).await;
                let _ = self.store.release_lock(env_id, &id).await;
                return Err(step_err(e));
            }
        }
        let view = DeploymentView::new(&dep, &self.settings.region, false);
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

    async fn history(&self, env: &str, q: &Query) -> ApiResult<ApiResponse> {
        let limit = match q.get("limit") {
            None => 20,
            Some(v) => v
                .parse::<u32>()
                .ok()
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
            .store
            .history(env, limit, token, status)
            .await
            .map_err(store_err)?;
        let items: Vec<DeploymentView> = page
            .items
            .iter()
            .map(|d| DeploymentView::new(d, &self.settings.region, false))
            .collect();
        Ok(ApiResponse::json(
            200,
            &json!({ "items": items, "nextToken": page.next_token }),
        ))
    }

    async fn deployment(&self, env: &str, id: &str) -> ApiResult<Deployment> {
        if !valid_deployment_id(id) {
            return Err(Problem::bad_request(&format!(
                "deployment id '{}' is not a ULID",
                crate::domain::truncate(id, 80)
            )));
        }
        self.store
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

    async fn details(&self, env: &str, id: &str) -> ApiResult<ApiResponse> {
        let dep = self.deployment(env, id).await?;
        Ok(ApiResponse::json(
            200,
            &DeploymentView::new(&dep, &self.settings.region, true),
        ))
    }

    /// Flags a running deployment: the next step (at most one poll interval
    /// away) stops with `Cancelled`, and Finalization cleans up and ends it Cancelled.
    async fn cancel(&self, env: &str, id: &str, by: &str) -> ApiResult<ApiResponse> {
        let dep = self.deployment(env, id).await?;
        if dep.status == DeploymentStatus::Scheduled {
            return self.unschedule(env, id, by).await;
        }
        if dep.status != DeploymentStatus::Running
            || !self
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
            &DeploymentView::new(&dep, &self.settings.region, true),
        ))
    }
}

/// Query parameters: each allowed at most once, unknown ones refused.
struct Query(Vec<(String, String)>);

impl Query {
    fn new(raw: &[(String, String)], allowed: &[&str]) -> ApiResult<Self> {
        for (i, (k, _)) in raw.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(Problem::bad_request(&format!(
                    "unknown query parameter '{}'",
                    crate::domain::truncate(k, 40)
                )));
            }
            if raw[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(Problem::bad_request(&format!(
                    "query parameter '{k}' is repeated"
                )));
            }
        }
        Ok(Self(raw.to_vec()))
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }
}

/// A route that reached a function that does not serve it: the HTTP API's
/// integrations disagree with [`ROUTES`] (a deployment fault, not the caller's).
fn misrouted(route: usize, this: Function) -> Problem {
    let (method, path, function) = ROUTES[route];
    Problem::new(
        500,
        "Internal error",
        &format!(
            "{method} {path} is served by the {} function, and reached the {} function: \
             the HTTP API's integrations do not match the router",
            function.binary(),
            this.binary()
        ),
    )
}

fn allowed_query(route: usize) -> &'static [&'static str] {
    match route {
        4 => &["limit", "nextToken", "status"],
        _ => &[],
    }
}

/// Step names as the API shows them (the console names).
pub fn step_names() -> Vec<&'static str> {
    StepName::ALL.iter().map(|s| s.as_str()).collect()
}

#[cfg(test)]
mod spec;
#[cfg(test)]
mod tests;
