//! A minimal plain-HTTP client for loopback calls (health checks, the
//! emulator's e-mail log, tests, and the bridge's forwarding).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::OnceLock;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Pooled: for the sandbox process's own hot path (one runtime for its life).
pub fn pooled() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

/// Unpooled: a pooled connection belongs to the runtime that opened it, and
/// tests run one runtime each, so callers that may live on several runtimes
/// get a fresh connection every time.
fn unpooled() -> HttpClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build_http()
}

pub async fn get(url: &str) -> Result<(u16, Bytes), String> {
    let req = hyper::Request::get(url)
        .body(Full::new(Bytes::new()))
        .map_err(|e| e.to_string())?;
    send(req).await.map(|(s, _, b)| (s, b))
}

pub async fn send(
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
    send_with(&unpooled(), req).await
}

pub async fn send_with(
    client: &HttpClient,
    req: hyper::Request<Full<Bytes>>,
) -> Result<(u16, hyper::HeaderMap, Bytes), String> {
    let res = client.request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = res
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    Ok((status, headers, body))
}
