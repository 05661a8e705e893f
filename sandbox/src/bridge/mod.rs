//! The gateway in front of the emulator: every AWS call of the steps goes
//! through it (the workers' `AWS_ENDPOINT_URL` and
//! `AWS_ENDPOINT_URL_AUTO_SCALING`). It counts each call ([`calls`]), answers
//! with an injected fault when one is due ([`faults`]), serves the Auto
//! Scaling actions fakecloud lacks ([`autoscaling`], [`refresh`]), gives EC2
//! images and instances EC2's timings and refusals ([`ec2`]) and forwards
//! everything else to the emulator ([`forward`]). Its control routes, under
//! `/_sandbox/`:
//!
//! - `POST /_sandbox/refresh-outcome` (form `group`, `outcome` = Successful |
//!   Failed | RollbackSuccessful | RollbackFailed) makes a group's next
//!   refresh end that way (see `refresh::Bridge::set_outcome`);
//! - `POST /_sandbox/image-outcome` (form `instance`, `outcome` = failed |
//!   available, optional `message`) makes the next AMI of that instance end
//!   `failed` (see `ec2`);
//! - `POST /_sandbox/faults` with `{"service": "ec2", "action": "CreateImage",
//!   "nth": 1, "error": "Throttling" | "ServerError" | "AccessDenied"}` makes
//!   the nth call of that action from now answer that error, in the service's
//!   protocol; `GET /_sandbox/faults` lists them with whether they fired;
//! - `GET /_sandbox/calls` returns the number of calls per `service:Action`,
//!   and per Auto Scaling action (`Action`) and action and group
//!   (`Action group`);
//! - `PUT /_sandbox/alarms/{name}` with `{"state": "ALARM"}` (or `OK`,
//!   `INSUFFICIENT_DATA`) sets a CloudWatch alarm's state as the refreshes
//!   watching it see it; `GET` (no body) answers it;
//! - `GET /_sandbox/iam` returns what the IAM enforcement saw
//!   ([`crate::iam::Report`]);
//! - `PUT /_sandbox/events/delivery` with `{"drop": true}` (or `false`)
//!   switches the event bus's delivery off (on): events are still recorded,
//!   matching ones marked dropped ([`crate::aws_events`]);
//! - `POST /_sandbox/events` with one event (JSON) publishes it as if AWS
//!   sent it: recorded, matched, delivered unless dropped; the answer is its
//!   record;
//! - `GET /_sandbox/events` lists every event published so far
//!   (`[{"event", "publishedAt", "matched", "delivered", "dropped"}]`).
//!
//! The emulations publish the events AWS sends at each change they make
//! (EC2 instance and AMI states in [`ec2`], instance refreshes in
//! [`refresh`]) on that bus.
//!
//! A function's call (its access key says which: [`crate::iam::principals`])
//! is authorized against its policy first ([`crate::iam::Enforcer`]) and,
//! when denied, answered with the service's own denial and never forwarded.
//! The API functions' calls are authorized but neither counted nor faulted:
//! the counts and injected faults are the steps'.

mod autoscaling;
mod calls;
mod ec2;
mod faults;
mod forward;
mod refresh;
pub mod tokens;
pub mod xml;

pub use ec2::{MS_VAR as EC2_MS_VAR, POLLS_VAR as EC2_POLLS_VAR};
pub use faults::Fault;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything the gateway remembers, behind one lock.
#[derive(Default)]
struct State {
    /// Suspended processes per group.
    suspended: HashMap<String, BTreeSet<String>>,
    refreshes: refresh::Refreshes,
    calls: calls::Calls,
    faults: Vec<Fault>,
    ec2: ec2::Ec2State,
    /// CloudWatch alarm states by name, as set by `PUT /_sandbox/alarms/{name}`.
    alarms: HashMap<String, String>,
}

#[derive(Clone)]
pub struct Bridge {
    emulator: String,
    state: Arc<Mutex<State>>,
    /// The bridge's own Auto Scaling client, straight to the emulator.
    asg: aws_sdk_autoscaling::Client,
    /// How long each phase of an emulated refresh lasts.
    phase: Duration,
    /// Set once the stack is provisioned (the policies name its resources);
    /// unset, or enforcement off: nothing is authorized.
    iam: Arc<OnceLock<crate::iam::Enforcer>>,
    /// Where the EC2 and Auto Scaling events go.
    events: crate::aws_events::EventBus,
    /// Each task token's execution (noted by the workers), and a Step
    /// Functions client straight to the emulator to see whether it ended.
    tokens: tokens::Tokens,
    sfn: aws_sdk_sfn::Client,
}

/// Starts the bridge on `port` (loopback), publishing its events on
/// `events`; returns its URL and a handle.
pub async fn start(
    port: u16,
    emulator_url: String,
    config: &aws_config::SdkConfig,
    phase: Duration,
    events: crate::aws_events::EventBus,
) -> Result<(String, Bridge), String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("bridge port {port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The bridge's own calls go straight to the emulator.
    let asg_conf = aws_sdk_autoscaling::config::Builder::from(config)
        .endpoint_url(&emulator_url)
        .build();
    let ec2_conf = aws_sdk_ec2::config::Builder::from(config)
        .endpoint_url(&emulator_url)
        .build();
    let sfn = aws_sdk_sfn::Client::from_conf(
        aws_sdk_sfn::config::Builder::from(config)
            .endpoint_url(&emulator_url)
            .build(),
    );
    let bridge = Bridge {
        emulator: emulator_url,
        state: Arc::default(),
        asg: aws_sdk_autoscaling::Client::from_conf(asg_conf),
        phase,
        iam: Arc::default(),
        events,
        tokens: tokens::Tokens::default(),
        sfn,
    };
    {
        let mut st = bridge.lock();
        st.ec2.client = Some(aws_sdk_ec2::Client::from_conf(ec2_conf));
        st.ec2.timings = ec2::Timings::from_env();
    }
    let handle = bridge.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let bridge = bridge.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let bridge = bridge.clone();
                    async move { Ok::<_, hyper::Error>(bridge.handle(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((format!("http://{addr}"), handle))
}

/// A path segment with its `%XX` escapes decoded (alarm names may hold
/// spaces and slashes).
fn percent_decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// A fresh request id (also the id of an emulated refresh).
fn request_id() -> String {
    autosky_core::domain::new_deployment_id().to_lowercase()
}

/// The service a request is for, from its SigV4 credential scope
/// (`Credential=AKID/date/region/SERVICE/aws4_request`).
fn service_of(headers: &hyper::HeaderMap) -> String {
    headers
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(3))
        .unwrap_or("unknown")
        .to_string()
}

/// A control route's JSON answer.
fn json(body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

impl Bridge {
    /// What the IAM enforcement saw; None when it is off.
    pub fn iam_report(&self) -> Option<crate::iam::Report> {
        self.iam.get().map(crate::iam::Enforcer::report)
    }

    /// The task tokens the workers hand out, by execution.
    pub fn tokens(&self) -> tokens::Tokens {
        self.tokens.clone()
    }

    /// Authorizes every function's call from now on.
    pub fn enforce(&self, enforcer: crate::iam::Enforcer) {
        let _ = self.iam.set(enforcer);
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return xml::error(400, "InvalidRequest", &e.to_string()),
        };
        let path = parts.uri.path().to_string();
        if let Some(control) = path.strip_prefix("/_sandbox/") {
            return self.control(parts.method.as_str(), control, &body);
        }
        let service = service_of(&parts.headers);
        // JSON protocols (DynamoDB, Step Functions) name the action in X-Amz-Target,
        // query protocols (EC2, Auto Scaling, SES) in the form body.
        let target = parts
            .headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .map(|t| t.rsplit('.').next().unwrap_or(t).to_string());
        let form: HashMap<String, String> = match target {
            Some(_) => HashMap::new(),
            None => form_urlencoded::parse(&body).into_owned().collect(),
        };
        // REST-JSON services (Scheduler) name it by method and path.
        let action = target
            .or_else(|| form.get("Action").cloned())
            .or_else(|| crate::iam::actions::rest_action(&service, parts.method.as_str(), &path))
            .unwrap_or_default();
        let function = crate::iam::principals::access_key_of(&parts.headers)
            .and_then(crate::iam::principals::function_of);
        if let (Some(function), Some(enforcer)) = (&function, self.iam.get()) {
            let call = crate::iam::actions::Call {
                service: &service,
                action: &action,
                method: parts.method.as_str(),
                path: &path,
                query: parts.uri.query().unwrap_or(""),
                form: &form,
                body: &body,
            };
            if let Err(denial) = enforcer.authorize(function, &call).await {
                return faults::denial(&service, &action, &denial.message);
            }
        }
        let api = function
            .as_deref()
            .is_some_and(|f| ["ApiFunction", "SchedulesFunction"].contains(&f));
        let fault = if api {
            None
        } else {
            let mut st = self.lock();
            let group = form.get("AutoScalingGroupName").map(String::as_str);
            st.calls.count(&service, &action, group);
            faults::due(&mut st.faults, &service, &action)
        };
        if let Some(kind) = fault {
            return faults::response(&service, &action, &kind);
        }
        if service == "states" && matches!(action.as_str(), "SendTaskSuccess" | "SendTaskFailure") {
            if let Some(refused) = self.tokens.refusal(&self.sfn, &body).await {
                return refused;
            }
        }
        if service == "ec2" {
            return self.ec2(&action, &form, parts, body).await;
        }
        if service != "autoscaling" {
            return self.forward(parts, body).await;
        }
        self.autoscaling(&action, &form, parts, body).await
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("bridge state poisoned")
    }

    /// The bus the bridge publishes its events on.
    pub fn events(&self) -> &crate::aws_events::EventBus {
        &self.events
    }

    fn control(&self, method: &str, what: &str, body: &Bytes) -> Response<Full<Bytes>> {
        match what {
            "events" | "events/delivery" => self.events_control(method, what, body),
            "image-outcome" => {
                let form: HashMap<String, String> =
                    form_urlencoded::parse(body).into_owned().collect();
                self.set_image_outcome(&form)
            }
            "refresh-outcome" => {
                let form: HashMap<String, String> =
                    form_urlencoded::parse(body).into_owned().collect();
                self.set_outcome(&form)
            }
            _ if what.starts_with("alarms/") => {
                let name = what.trim_start_matches("alarms/");
                let name = percent_decode(name);
                self.alarm_control(&name, body)
            }
            "faults" if !body.is_empty() => faults::add(&mut self.lock().faults, body),
            "faults" => json(serde_json::to_string(&self.lock().faults).unwrap_or_default()),
            "calls" => json(self.lock().calls.to_json()),
            "iam" => json(
                serde_json::to_string(&self.iam.get().map(crate::iam::Enforcer::report))
                    .unwrap_or_default(),
            ),
            _ => xml::error(404, "NotFound", "unknown sandbox control"),
        }
    }

    /// The event bus's routes (see the module's comment).
    fn events_control(&self, method: &str, what: &str, body: &Bytes) -> Response<Full<Bytes>> {
        let bad = |message: &str| {
            let mut res = json(serde_json::json!({ "message": message }).to_string());
            *res.status_mut() = hyper::StatusCode::BAD_REQUEST;
            res
        };
        let parsed = || serde_json::from_slice::<serde_json::Value>(body).ok();
        match (method, what) {
            ("PUT", "events/delivery") => {
                match parsed().and_then(|v| v.get("drop").and_then(serde_json::Value::as_bool)) {
                    Some(drop) => {
                        self.events.set_drop(drop);
                        json(serde_json::json!({ "drop": drop }).to_string())
                    }
                    None => bad("the body must be {\"drop\": true | false}"),
                }
            }
            ("GET", "events/delivery") => {
                json(serde_json::json!({ "drop": self.events.dropping() }).to_string())
            }
            ("POST", "events") => match parsed() {
                Some(event)
                    if event.get("source").is_some_and(|s| s.is_string())
                        && event.get("detail-type").is_some_and(|s| s.is_string()) =>
                {
                    let record = self.events.publish(event);
                    json(serde_json::to_string(&record).unwrap_or_default())
                }
                _ => bad("the body must be one event: a JSON object with source and detail-type"),
            },
            ("GET", "events") => {
                json(serde_json::to_string(&self.events.events()).unwrap_or_default())
            }
            _ => {
                let mut res = json(
                    serde_json::json!({ "message": format!("{method} /_sandbox/{what} is not a route") })
                        .to_string(),
                );
                *res.status_mut() = hyper::StatusCode::METHOD_NOT_ALLOWED;
                res
            }
        }
    }
}
