//! The Deployments API on loopback: the same router as the API's two Lambda
//! functions (`Api::handle` serves the routes of both), with a fixed local identity in place of API Gateway's
//! authorizer, or the caller and groups a request names in `X-Sandbox-Caller` / `X-Sandbox-Groups`. Each route runs as the function that serves it on AWS, with
//! that function's credentials, so its calls pass the gateway's IAM check
//! against that function's policy. `GET /_sandbox/dynamodb-calls` returns the DynamoDB calls the
//! API has made, per operation (tests check "one Query per history page").

use autosky_core::api::{
    route_of, AccessSettings, Api, ApiRequest, ApiSettings, Function, ScheduleSettings,
};
use autosky_core::deps::Settings;
use autosky_core::domain::{groups_of_claim, Caller};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_types::config_bag::ConfigBag;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The identity of every local API call (`AUTOSKY_LOCAL_IDENTITY` overrides it).
pub const LOCAL_IDENTITY: &str = "local:developer";
/// Names the caller of one request (sandbox only).
pub const CALLER_HEADER: &str = "x-sandbox-caller";
/// Names the groups of one request's caller, comma-separated (sandbox only).
pub const GROUPS_HEADER: &str = "x-sandbox-groups";
/// The sandbox stack's administrators' group (`ADMIN_GROUPS`).
pub const ADMIN_GROUP: &str = "autosky-admins";

/// Counts SDK calls per operation name.
#[derive(Debug, Clone, Default)]
pub struct CallCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl CallCounter {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_execution(
        &self,
        ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        use aws_sdk_dynamodb::operation as op;
        // The operation, told by its input type (the metadata in the config
        // bag is not readable from this hook).
        let input = ctx.input();
        let name = if input.downcast_ref::<op::query::QueryInput>().is_some() {
            "Query"
        } else if input.downcast_ref::<op::scan::ScanInput>().is_some() {
            "Scan"
        } else if input.downcast_ref::<op::get_item::GetItemInput>().is_some() {
            "GetItem"
        } else if input.downcast_ref::<op::put_item::PutItemInput>().is_some() {
            "PutItem"
        } else if input
            .downcast_ref::<op::update_item::UpdateItemInput>()
            .is_some()
        {
            "UpdateItem"
        } else if input
            .downcast_ref::<op::delete_item::DeleteItemInput>()
            .is_some()
        {
            "DeleteItem"
        } else if input
            .downcast_ref::<op::transact_write_items::TransactWriteItemsInput>()
            .is_some()
        {
            "TransactWriteItems"
        } else {
            "Other"
        };
        if let Ok(mut calls) = self.0.lock() {
            *calls.entry(name.to_string()).or_default() += 1;
        }
        Ok(())
    }
}

/// Starts the API on `port`; returns its URL.
pub async fn start(
    port: u16,
    config: &aws_config::SdkConfig,
    state_machine_arn: String,
) -> Result<String, String> {
    let settings = Settings::from_env()?;
    let counter = CallCounter::default();
    // Scheduled deployments: the provisioned group; the lead time from
    // SCHEDULE_MIN_LEAD_SECONDS as in the Lambda (tests lower it). No dead-letter
    // queue here: the emulator's schedules start the state machine directly.
    let defaults = ScheduleSettings::default();
    let schedules = ScheduleSettings {
        group: crate::provision::SCHEDULE_GROUP.into(),
        role_arn: crate::provision::SCHEDULER_ROLE.into(),
        dead_letter_arn: None,
        min_lead_seconds: std::env::var("SCHEDULE_MIN_LEAD_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(defaults.min_lead_seconds),
    };
    let api_as = |function: Function| {
        let config =
            crate::iam::principals::config_as(config, &crate::iam::principals::of_route(function));
        let mut api = Api::from_config(
            &config,
            settings.clone(),
            ApiSettings {
                state_machine_arn: state_machine_arn.clone(),
                schedules: schedules.clone(),
                access: AccessSettings {
                    admin_groups: vec![ADMIN_GROUP.into()],
                    ..AccessSettings::default()
                },
            },
        );
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(counter.clone())
                .build(),
        );
        api.deps.store = Arc::new(autosky_core::store::DynamoStore::new(
            ddb,
            settings.table_name.clone(),
        ));
        api
    };
    let apis = Arc::new(Apis {
        api: api_as(Function::Api),
        schedules: api_as(Function::Schedules),
    });
    let identity =
        std::env::var("AUTOSKY_LOCAL_IDENTITY").unwrap_or_else(|_| LOCAL_IDENTITY.into());
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("API port {port}: {e}"))?;
    let api = apis;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (api, identity, counter) = (api.clone(), identity.clone(), counter.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (api, identity, counter) =
                            (api.clone(), identity.clone(), counter.clone());
                        async move { Ok::<_, hyper::Error>(serve(&api, &identity, &counter, req).await) }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(format!("http://127.0.0.1:{port}"))
}

/// One `Api` per function, each signing as that function.
struct Apis {
    api: Api,
    schedules: Api,
}

async fn serve(
    apis: &Apis,
    identity: &str,
    counter: &CallCounter,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    if parts.uri.path() == "/_sandbox/dynamodb-calls" {
        let body = serde_json::to_vec(&counter.snapshot()).unwrap_or_default();
        return hyper::Response::new(Full::new(Bytes::from(body)));
    }
    // Read at most one byte past the limit: the router answers 413 for more.
    let limited = http_body_util::Limited::new(body, autosky_core::api::MAX_BODY + 1);
    let body = match limited.collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => vec![b' '; autosky_core::api::MAX_BODY + 1],
    };
    let query = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    // The page and unknown paths: the api function's (it serves the page
    // and answers 404/405 for the router).
    let api = match route_of(parts.method.as_str(), parts.uri.path()).map(|r| r.function()) {
        Some(Function::Schedules) => &apis.schedules,
        _ => &apis.api,
    };
    let (identity, caller) = caller_of(&parts.headers, identity);
    let res = api
        .handle(ApiRequest {
            method: parts.method.as_str().to_string(),
            path: parts.uri.path().to_string(),
            query,
            body,
            identity: Some(identity),
            caller,
            content_type: parts
                .headers
                .get(hyper::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        })
        .await;
    let mut b = hyper::Response::builder().status(res.status);
    for (k, v) in &res.headers {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::from(res.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

/// The caller a request names with `X-Sandbox-Caller` (its identity) and
/// `X-Sandbox-Groups` (comma-separated), as a JWT authorizer would hand it to
/// the function; either header makes it a caller of those groups only (none
/// when only the caller is named). Without them, the local identity with
/// every right, as an IAM-authorized caller. Only the sandbox reads these
/// headers: the Lambda adapter takes the caller from API Gateway's
/// authorizer context alone.
fn caller_of(headers: &hyper::HeaderMap, local: &str) -> (String, Caller) {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (caller, groups) = (header(CALLER_HEADER), header(GROUPS_HEADER));
    if caller.is_none() && groups.is_none() {
        return (local.to_string(), Caller::RouteAuthorized);
    }
    let identity = caller.filter(|c| !c.trim().is_empty()).unwrap_or(local);
    let groups = groups.map(groups_of_claim).unwrap_or_default();
    (identity.to_string(), Caller::Groups(groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn counts_calls_per_operation() {
        let counter = CallCounter::default();
        let config = crate::sdk_config("http://127.0.0.1:9");
        let ddb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(counter.clone())
                .retry_config(aws_config::retry::RetryConfig::disabled())
                .build(),
        );
        let _ = ddb.query().table_name("t").send().await;
        assert_eq!(
            counter.snapshot().get("Query"),
            Some(&1),
            "{:?}",
            counter.snapshot()
        );
    }
}
