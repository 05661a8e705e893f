//! A Lambda runtime API on loopback for one cold start: it serves one event
//! and reports when the function asked for it and when it answered.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// What the stub saw, in order.
#[derive(Debug)]
pub enum StubEvent {
    /// A `GET …/invocation/next` arrived.
    Next(Instant),
    /// The function posted its response (`ok`) or error for the invocation,
    /// or an init error.
    Done(Instant, bool, Bytes),
}

/// A Lambda runtime API on loopback serving exactly one invocation: the first
/// `GET …/next` gets `event`, later ones never get an answer (the function
/// idles as it would between invocations).
pub struct Stub {
    pub addr: std::net::SocketAddr,
    events: mpsc::UnboundedReceiver<StubEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    pub async fn start(event: Value) -> Result<Self, String> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("runtime API stub: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let (tx, events) = mpsc::unbounded_channel();
        let body = Bytes::from(event.to_string());
        let served = Arc::new(Mutex::new(false));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let (tx, body, served) = (tx.clone(), body.clone(), served.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(
                        move |req: hyper::Request<hyper::body::Incoming>| {
                            let (tx, body, served) = (tx.clone(), body.clone(), served.clone());
                            async move { stub_handle(req, &tx, body, &served).await }
                        },
                    );
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { addr, events, task })
    }

    /// The next thing the stub saw, or an error after `limit`.
    pub async fn next_event(&mut self, limit: Duration) -> Result<StubEvent, String> {
        match tokio::time::timeout(limit, self.events.recv()).await {
            Ok(Some(e)) => Ok(e),
            Ok(None) => Err("runtime API stub stopped".into()),
            Err(_) => Err(format!("no runtime API call within {limit:?}")),
        }
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn stub_handle(
    req: hyper::Request<hyper::body::Incoming>,
    tx: &mpsc::UnboundedSender<StubEvent>,
    event: Bytes,
    served: &Mutex<bool>,
) -> Result<hyper::Response<Full<Bytes>>, hyper::Error> {
    let at = Instant::now();
    let path = req.uri().path().to_string();
    let reply = |status: u16, body: Bytes| {
        hyper::Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .unwrap_or_default()
    };
    if req.method() == hyper::Method::GET && path.ends_with("/runtime/invocation/next") {
        let _ = tx.send(StubEvent::Next(at));
        let first = {
            let mut s = served.lock().unwrap_or_else(|e| e.into_inner());
            !std::mem::replace(&mut *s, true)
        };
        if !first {
            // The function is idle now; it is killed while it waits here.
            std::future::pending::<()>().await;
        }
        let deadline = chrono::Utc::now().timestamp_millis() + 60_000;
        return Ok(hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .header("lambda-runtime-aws-request-id", "bench-request-1")
            .header("lambda-runtime-deadline-ms", deadline.to_string())
            .header(
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:bench",
            )
            .header(
                "lambda-runtime-trace-id",
                "Root=1-00000000-000000000000000000000000",
            )
            .body(Full::new(event))
            .unwrap_or_default());
    }
    let ok = path.ends_with("/response");
    if req.method() == hyper::Method::POST
        && (ok || path.ends_with("/error") || path.ends_with("/init/error"))
    {
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let _ = tx.send(StubEvent::Done(at, ok, body));
        return Ok(reply(202, Bytes::from_static(b"{\"status\":\"OK\"}")));
    }
    Ok(reply(404, Bytes::from_static(b"{}")))
}
