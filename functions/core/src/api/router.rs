//! The router: a request is matched to its [`Route`] after the checks every
//! route shares (identity, environment id, body size, query parameters), the
//! caller's role on the route's environment is checked, then it is
//! dispatched by the function serving it. Each function's dispatch is its
//! own `match`, so a binary serving [`handler::api`] or
//! [`handler::schedules`] links only its routes' handlers; a route reaching
//! the other function answers 500 (the integrations are wrong, not the request).

use super::query::Query;
use super::routes::{Function, Route};
use super::{page, Api, ApiRequest, ApiResponse, ApiResult, Problem, MAX_BODY};
use crate::domain::valid_environment_id;

/// A request matched to its route, authenticated and checked for what every
/// route shares (environment id, body size, query parameters).
struct Matched {
    route: Route,
    params: Vec<String>,
    owner: String,
    query: Query,
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
            let m = self.authorized(&req).await?;
            match m.route.function() {
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
        let result = async { self.api_route(&req, self.authorized(&req).await?).await };
        result.await.unwrap_or_else(|p| p.response())
    }

    /// The `schedules` function's routes.
    pub async fn handle_schedules(&self, req: ApiRequest) -> ApiResponse {
        let result = async {
            self.schedule_route(&req, self.authorized(&req).await?)
                .await
        };
        result.await.unwrap_or_else(|p| p.response())
    }

    /// The route of `req`, once the checks every route shares pass and the
    /// caller may use it on its environment.
    async fn authorized(&self, req: &ApiRequest) -> ApiResult<Matched> {
        let m = self.matched(req)?;
        self.authorize(&req.caller, m.route, m.params.first().map(String::as_str))
            .await?;
        Ok(m)
    }

    /// The route of `req`, after what every route checks first.
    fn matched(&self, req: &ApiRequest) -> ApiResult<Matched> {
        let mut allowed: Vec<&'static str> = Vec::new();
        for route in Route::ALL {
            let Some(params) = route.params(&req.path) else {
                continue;
            };
            if route.method() != req.method {
                allowed.push(route.method());
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
            if route.takes_body() && !req.body.is_empty() && !is_json(req.content_type.as_deref()) {
                return Err(Problem::new(
                    415,
                    "Unsupported media type",
                    &format!(
                        "the body must be application/json, not {}",
                        req.content_type
                            .as_deref()
                            .map(|t| crate::domain::truncate(t, 100))
                            .unwrap_or_else(|| "a body without Content-Type".into())
                    ),
                ));
            }
            let query = Query::new(&req.query, route.allowed_query())?;
            return Ok(Matched {
                route,
                params,
                owner,
                query,
            });
        }
        Err(if !allowed.is_empty() {
            Problem::method_not_allowed(&req.method, &req.path, &allowed)
        } else {
            Problem::new(
                404,
                "Not found",
                &format!("no route for {}", crate::domain::truncate(&req.path, 200)),
            )
        })
    }

    /// The `api` function's dispatch.
    async fn api_route(&self, req: &ApiRequest, m: Matched) -> ApiResult<ApiResponse> {
        let Matched {
            route,
            params,
            owner,
            query,
        } = m;
        match route {
            Route::ListEnvironments => self.list_environments(&req.caller).await,
            Route::GetEnvironment => self.get_environment(&params[0], &req.caller).await,
            Route::PutEnvironment => self.put_environment(&params[0], &owner, &req.body).await,
            Route::StartDeployment => self.start(&params[0], &owner, &req.body).await,
            Route::ListDeployments => self.history(&params[0], &query).await,
            Route::GetDeployment => self.details(&params[0], &params[1]).await,
            Route::CancelDeployment => self.cancel(&params[0], &params[1], &owner).await,
            Route::RollbackDeployment => {
                self.rollback(&params[0], &params[1], &owner, &req.body)
                    .await
            }
            Route::GetAudit => self.audit_trail(&params[0], &query).await,
            Route::CreateSchedule | Route::MoveSchedule | Route::CancelSchedule => {
                Err(misrouted(route, Function::Api))
            }
        }
    }

    /// The `schedules` function's dispatch.
    async fn schedule_route(&self, req: &ApiRequest, m: Matched) -> ApiResult<ApiResponse> {
        let Matched {
            route,
            params,
            owner,
            ..
        } = m;
        match route {
            Route::CreateSchedule => self.schedule(&params[0], &owner, &req.body).await,
            Route::MoveSchedule => {
                self.reschedule(&params[0], &params[1], &owner, &req.body)
                    .await
            }
            Route::CancelSchedule => self.unschedule(&params[0], &params[1], &owner).await,
            Route::ListEnvironments
            | Route::GetEnvironment
            | Route::PutEnvironment
            | Route::StartDeployment
            | Route::ListDeployments
            | Route::GetDeployment
            | Route::CancelDeployment
            | Route::RollbackDeployment
            | Route::GetAudit => Err(misrouted(route, Function::Schedules)),
        }
    }
}

/// A route that reached a function that does not serve it: the HTTP API's
/// integrations disagree with [`Route::function`] (a deployment fault, not the caller's).
fn misrouted(route: Route, this: Function) -> Problem {
    Problem::new(
        500,
        "Internal error",
        &format!(
            "{} {} is served by the {} function, and reached the {} function: \
             the HTTP API's integrations do not match the router",
            route.method(),
            route.template(),
            route.function().binary(),
            this.binary()
        ),
    )
}

/// Whether a `Content-Type` names JSON (`application/json`, parameters such
/// as `charset` allowed; media types are case-insensitive).
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}
