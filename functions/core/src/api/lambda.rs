//! API Gateway (HTTP API, payload v2) adapter: the caller's identity and
//! groups come from the request context — the IAM caller ARN, or the JWT's
//! `email` (else `sub`) claim and its groups claim — never from the request
//! itself (its headers included).

use super::{Api, ApiRequest, ApiResponse};
use crate::domain::{groups_of_claim, Caller};
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};

/// The authenticated identity of an API Gateway request, if any.
pub fn identity(req: &Request) -> Option<String> {
    let RequestContext::ApiGatewayV2(ctx) = req.request_context_ref()? else {
        return None;
    };
    let auth = ctx.authorizer.as_ref()?;
    if let Some(arn) = auth
        .iam
        .as_ref()
        .and_then(|i| i.user_arn.clone())
        .filter(|a| !a.is_empty())
    {
        return Some(arn);
    }
    let claims = &auth.jwt.as_ref()?.claims;
    claims
        .get("email")
        .or_else(|| claims.get("sub"))
        .filter(|v| !v.is_empty())
        .cloned()
}

/// How API Gateway authorized the request: IAM authorization already
/// allowed this route for the caller; a JWT authorizer only authenticated
/// it, so its role comes from its groups (`groups_claim`; no claim, no
/// group). Request headers are never read for this.
pub fn caller(req: &Request, groups_claim: &str) -> Caller {
    let jwt = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref())
        }
        _ => None,
    };
    match jwt {
        Some(jwt) => Caller::Groups(
            jwt.claims
                .get(groups_claim)
                .map(|c| groups_of_claim(c))
                .unwrap_or_default(),
        ),
        None => Caller::RouteAuthorized,
    }
}

pub fn to_api_request(req: &Request, groups_claim: &str) -> ApiRequest {
    ApiRequest {
        method: req.method().as_str().to_string(),
        path: req.raw_http_path().to_string(),
        query: req
            .query_string_parameters_ref()
            .map(|q| {
                q.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            })
            .unwrap_or_default(),
        body: req.body().to_vec(),
        identity: identity(req),
        caller: caller(req, groups_claim),
        content_type: req
            .headers()
            .get(lambda_http::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    }
}

pub fn to_response(r: ApiResponse) -> Response<Body> {
    let mut b = Response::builder().status(r.status);
    for (k, v) in &r.headers {
        b = b.header(k, v);
    }
    b.body(Body::from(r.body))
        .unwrap_or_else(|_| Response::new(Body::Empty))
}

/// The whole main() of an API function, around the handler of the routes it
/// serves (`api::handler::api` or `api::handler::schedules`).
pub async fn serve<H, Fut>(handler: H) -> Result<(), lambda_http::Error>
where
    H: Fn(&'static Api, ApiRequest) -> Fut,
    Fut: std::future::Future<Output = ApiResponse> + Send,
{
    crate::stage::mark("main");
    crate::lambda::init_logging();
    crate::stage::mark("logging");
    let api = Api::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        e
    })?;
    // One per cold start, for the process's life (as the step functions' Deps).
    let api: &'static Api = Box::leak(Box::new(api));
    lambda_http::run(lambda_http::service_fn(move |req: Request| {
        let response = handler(api, to_api_request(&req, &api.settings.access.groups_claim));
        async move { Ok::<_, std::convert::Infallible>(to_response(response.await)) }
    }))
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(authorizer: serde_json::Value) -> Request {
        let e = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/environments/prod/deployments",
            "rawQueryString": "limit=5",
            "headers": {"content-type": "application/json"},
            "queryStringParameters": {"limit": "5"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "api", "domainName": "x", "domainPrefix": "x",
                "http": {"method": "POST", "path": "/environments/prod/deployments", "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "t"},
                "requestId": "r", "routeKey": "$default", "stage": "$default", "time": "27/Nov/2026:09:00:00 +0000", "timeEpoch": 0,
                "authorizer": authorizer
            },
            "body": "{\"lockInstances\":true}",
            "isBase64Encoded": false
        });
        lambda_http::request::from_str(&e.to_string()).unwrap()
    }

    #[test]
    fn identity_is_the_iam_caller_or_the_jwt_email_then_sub() {
        let iam = event(
            serde_json::json!({"iam": {"userArn": "arn:aws:iam::1:user/alice", "accountId": "1"}}),
        );
        assert_eq!(identity(&iam).as_deref(), Some("arn:aws:iam::1:user/alice"));
        let jwt = event(
            serde_json::json!({"jwt": {"claims": {"email": "bob@example.com", "sub": "abc"}, "scopes": null}}),
        );
        assert_eq!(identity(&jwt).as_deref(), Some("bob@example.com"));
        let sub = event(serde_json::json!({"jwt": {"claims": {"sub": "abc"}, "scopes": null}}));
        assert_eq!(identity(&sub).as_deref(), Some("abc"));
        let none = event(serde_json::json!({}));
        assert_eq!(identity(&none), None);
    }

    #[test]
    fn iam_callers_are_route_authorized_and_jwt_callers_hold_their_groups() {
        let iam = event(serde_json::json!({"iam": {"userArn": "arn:aws:iam::1:user/a"}}));
        assert_eq!(caller(&iam, "cognito:groups"), Caller::RouteAuthorized);
        let jwt = event(serde_json::json!({"jwt": {"claims": {
            "sub": "abc", "cognito:groups": "[staging-deployers viewers]", "groups": "[other]"
        }, "scopes": null}}));
        assert_eq!(
            caller(&jwt, "cognito:groups"),
            Caller::Groups(vec!["staging-deployers".into(), "viewers".into()])
        );
        assert_eq!(caller(&jwt, "groups"), Caller::Groups(vec!["other".into()]));
        let none = event(serde_json::json!({"jwt": {"claims": {"sub": "abc"}, "scopes": null}}));
        assert_eq!(caller(&none, "cognito:groups"), Caller::Groups(vec![]));
    }

    #[test]
    fn the_sandbox_caller_headers_are_ignored() {
        let mut e = event(serde_json::json!({"jwt": {"claims": {"sub": "abc"}, "scopes": null}}));
        for (k, v) in [
            ("x-sandbox-caller", "admin@example.com"),
            ("x-sandbox-groups", "autosky-admins"),
        ] {
            e.headers_mut().insert(k, v.parse().unwrap());
        }
        let r = to_api_request(&e, "cognito:groups");
        assert_eq!(r.identity.as_deref(), Some("abc"));
        assert_eq!(r.caller, Caller::Groups(vec![]));
    }

    #[test]
    fn requests_convert_with_path_query_and_body() {
        let r = to_api_request(
            &event(serde_json::json!({"iam": {"userArn": "arn:x"}})),
            "cognito:groups",
        );
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", "/environments/prod/deployments")
        );
        assert_eq!(r.query, vec![("limit".to_string(), "5".to_string())]);
        assert_eq!(r.body, br#"{"lockInstances":true}"#);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
    }
}
