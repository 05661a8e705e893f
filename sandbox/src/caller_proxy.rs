//! Test support: a loopback forwarder to the sandbox's API that names one
//! caller and its groups on every request (`X-Sandbox-Caller`,
//! `X-Sandbox-Groups`), so a client that knows nothing of those headers
//! (the CLI) can be run as a viewer, a deployer or a stranger.

use crate::api_server::{CALLER_HEADER, GROUPS_HEADER};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// Starts the forwarder to `api` (`http://127.0.0.1:PORT`); returns its URL.
/// It serves until the process ends.
pub async fn start(api: &str, caller: &str, groups: &[&str]) -> Result<String, String> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| e.to_string())?;
    let url = format!(
        "http://{}",
        listener.local_addr().map_err(|e| e.to_string())?
    );
    let (api, caller, groups) = (api.to_string(), caller.to_string(), groups.join(","));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (api, caller, groups, client) =
                (api.clone(), caller.clone(), groups.clone(), client.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let (api, caller, groups, client) =
                            (api.clone(), caller.clone(), groups.clone(), client.clone());
                        async move {
                            Ok::<_, hyper::Error>(
                                forward(&client, &api, &caller, &groups, req).await,
                            )
                        }
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(url)
}

async fn forward(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    api: &str,
    caller: &str,
    groups: &str,
    req: hyper::Request<hyper::body::Incoming>,
) -> hyper::Response<Full<Bytes>> {
    let (mut parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let failed = |e: String| {
        hyper::Response::builder()
            .status(502)
            .body(Full::new(Bytes::from(e)))
            .unwrap_or_default()
    };
    parts.uri = match format!("{api}{path}").parse() {
        Ok(u) => u,
        Err(e) => return failed(format!("{e}")),
    };
    parts.headers.remove(hyper::header::HOST);
    for (name, value) in [(CALLER_HEADER, caller), (GROUPS_HEADER, groups)] {
        if let Ok(v) = value.parse() {
            parts.headers.insert(name, v);
        }
    }
    let res = match client
        .request(hyper::Request::from_parts(parts, Full::new(body)))
        .await
    {
        Ok(r) => r,
        Err(e) => return failed(e.to_string()),
    };
    let (parts, body) = res.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    hyper::Response::from_parts(parts, Full::new(body))
}
