//! Test support — the Auto Scaling bridge and fault-injecting gateway. fakecloud lacks SuspendProcesses,
//! ResumeProcesses and the instance refresh actions; our code reaches Auto
//! Scaling through this bridge (`AWS_ENDPOINT_URL_AUTO_SCALING`), which serves
//! those actions itself and forwards every other request to the emulator:
//!
//! - suspended processes are kept per group and shown in DescribeAutoScalingGroups;
//! - an instance refresh really replaces the group's instances in the emulator
//!   (the group moves to the desired launch template version, capacity goes to
//!   0 and back, so new instances launch from that version), reporting
//!   PercentageComplete and a terminal status; one active refresh per group
//!   (`InstanceRefreshInProgress`);
//! - `POST /_sandbox/refresh-outcome` (form `group`, `outcome` = Successful |
//!   Failed | RollbackSuccessful) makes a group's next refresh end that way;
//! - it also stands in front of the emulator for every other service (the
//!   workers' `AWS_ENDPOINT_URL`), forwarding, counting calls per
//!   `service:Action`, and injecting faults: `POST /_sandbox/faults` with
//!   `{"service": "ec2", "action": "CreateImage", "nth": 1, "error":
//!   "Throttling" | "ServerError" | "AccessDenied"}` makes the nth call of that
//!   action from now answer that error, in the service's protocol;
//!   `GET /_sandbox/faults` lists them with whether they fired;
//! - `GET /_sandbox/calls` returns the number of calls per Auto Scaling action
//!   (`Action`) and per action and group (`Action group`).

use crate::http;
use autosky_core::email::escape_html as esc;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;

const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
const ALL_PROCESSES: [&str; 9] = [
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
];

#[derive(Clone, Debug)]
struct Refresh {
    id: String,
    group: String,
    status: String,
    reason: Option<String>,
    percentage: i32,
    to_update: i32,
    start: chrono::DateTime<chrono::Utc>,
    end: Option<chrono::DateTime<chrono::Utc>>,
    lt_id: String,
    version: String,
    cancel_requested: bool,
}

#[derive(Default)]
struct State {
    suspended: HashMap<String, BTreeSet<String>>,
    refreshes: HashMap<String, Vec<Refresh>>,
    outcomes: HashMap<String, String>,
    calls: BTreeMap<String, u64>,
    faults: Vec<Fault>,
}

/// "Make the `nth` call of `service`:`action` from now fail with `error`."
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    pub service: String,
    pub action: String,
    #[serde(default = "one")]
    pub nth: u32,
    /// Throttling, ServerError or AccessDenied.
    pub error: String,
    #[serde(default)]
    pub seen: u32,
    #[serde(default)]
    pub fired: bool,
}

fn one() -> u32 {
    1
}

impl Fault {
    fn hit(&mut self, service: &str, action: &str) -> Option<String> {
        if self.fired || self.service != service || self.action != action {
            return None;
        }
        self.seen += 1;
        (self.seen == self.nth).then(|| {
            self.fired = true;
            self.error.clone()
        })
    }
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

/// An injected error, in the protocol and with the codes the service uses.
fn fault_response(service: &str, action: &str, kind: &str) -> Response<Full<Bytes>> {
    let message = format!("Sandbox fault injected into {service}:{action}");
    match service {
        "dynamodb" | "states" => {
            let (status, code) = match kind {
                "Throttling" => (400, "ThrottlingException"),
                "ServerError" => (500, "InternalServerError"),
                _ => (400, "AccessDeniedException"),
            };
            let prefix = if service == "dynamodb" {
                "com.amazonaws.dynamodb.v20120810#"
            } else {
                ""
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-errortype", code)
                .body(Full::new(Bytes::from(
                    serde_json::json!({"__type": format!("{prefix}{code}"), "message": message})
                        .to_string(),
                )))
                .expect("static response parts")
        }
        "ec2" => {
            let (status, code) = match kind {
                "Throttling" => (503, "RequestLimitExceeded"),
                "ServerError" => (500, "InternalError"),
                _ => (403, "UnauthorizedOperation"),
            };
            xml(
                status,
                format!(
                    "<Response><Errors><Error><Code>{code}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
                    esc(&message),
                    request_id()
                ),
            )
        }
        _ => {
            let (status, code) = match kind {
                "Throttling" => (400, "Throttling"),
                "ServerError" => (500, "InternalFailure"),
                _ => (403, "AccessDenied"),
            };
            error(status, code, &message)
        }
    }
}

#[derive(Clone)]
pub struct Bridge {
    emulator: String,
    state: Arc<Mutex<State>>,
    asg: aws_sdk_autoscaling::Client,
    /// How long each phase of an emulated refresh lasts.
    phase: Duration,
}

/// Starts the bridge on a free loopback port; returns its URL.
pub async fn start(
    port: u16,
    emulator_url: String,
    config: &aws_config::SdkConfig,
    phase: Duration,
) -> Result<String, String> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("bridge port {port}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // The bridge's own calls go straight to the emulator.
    let asg_conf = aws_sdk_autoscaling::config::Builder::from(config)
        .endpoint_url(&emulator_url)
        .build();
    let bridge = Bridge {
        emulator: emulator_url,
        state: Arc::default(),
        asg: aws_sdk_autoscaling::Client::from_conf(asg_conf),
        phase,
    };
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
    Ok(format!("http://{addr}"))
}

fn xml(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

fn ok_response(action: &str, result: &str) -> Response<Full<Bytes>> {
    let result = if result.is_empty() {
        String::new()
    } else {
        format!("<{action}Result>{result}</{action}Result>")
    };
    xml(
        200,
        format!(
            "<{action}Response xmlns=\"{XMLNS}\">{result}<ResponseMetadata><RequestId>{}</RequestId></ResponseMetadata></{action}Response>",
            request_id()
        ),
    )
}

fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{XMLNS}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{}</Message></Error><RequestId>{}</RequestId></ErrorResponse>",
            esc(message),
            request_id()
        ),
    )
}

fn request_id() -> String {
    autosky_core::domain::new_deployment_id().to_lowercase()
}

fn members(form: &HashMap<String, String>, prefix: &str) -> Vec<String> {
    let mut v: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, val)| Some((k.strip_prefix(prefix)?.parse().ok()?, val.clone())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

impl Bridge {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return error(400, "InvalidRequest", &e.to_string()),
        };
        let path = parts.uri.path().to_string();
        if let Some(control) = path.strip_prefix("/_sandbox/") {
            return self.control(control, &body);
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
        let action = target.unwrap_or_else(|| form.get("Action").cloned().unwrap_or_default());
        let fault = {
            // Per action, per service and action, and per Auto Scaling action and group.
            let mut st = self.lock();
            *st.calls.entry(format!("{service}:{action}")).or_default() += 1;
            if service == "autoscaling" {
                *st.calls.entry(action.clone()).or_default() += 1;
                if let Some(g) = form.get("AutoScalingGroupName") {
                    *st.calls.entry(format!("{action} {g}")).or_default() += 1;
                }
            }
            st.faults.iter_mut().find_map(|f| f.hit(&service, &action))
        };
        if let Some(kind) = fault {
            return fault_response(&service, &action, &kind);
        }
        if service != "autoscaling" {
            return self.forward(parts, body).await;
        }
        match action.as_str() {
            "SuspendProcesses" | "ResumeProcesses" => self.processes(&action, &form).await,
            "StartInstanceRefresh" => self.start_refresh(&form).await,
            "DescribeInstanceRefreshes" => self.describe_refreshes(&form),
            "CancelInstanceRefresh" => self.cancel_refresh(&form),
            "DescribeAutoScalingGroups" => {
                let res = self.forward(parts, body).await;
                self.with_suspended(res).await
            }
            _ => self.forward(parts, body).await,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("bridge state poisoned")
    }

    fn control(&self, what: &str, body: &Bytes) -> Response<Full<Bytes>> {
        let form: HashMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
        match what {
            "refresh-outcome" => {
                let (Some(group), Some(outcome)) = (form.get("group"), form.get("outcome")) else {
                    return error(400, "ValidationError", "group and outcome are required");
                };
                if !["Successful", "Failed", "RollbackSuccessful"].contains(&outcome.as_str()) {
                    return error(
                        400,
                        "ValidationError",
                        "outcome must be Successful, Failed or RollbackSuccessful",
                    );
                }
                self.lock().outcomes.insert(group.clone(), outcome.clone());
                xml(200, "<ok/>".into())
            }
            "faults" if !body.is_empty() => match serde_json::from_slice::<Fault>(body) {
                Ok(f) if ["Throttling", "ServerError", "AccessDenied"].contains(&f.error.as_str()) && f.nth > 0 => {
                    self.lock().faults.push(Fault { seen: 0, fired: false, ..f });
                    xml(200, "<ok/>".into())
                }
                _ => error(400, "ValidationError", "fault: {service, action, nth >= 1, error: Throttling|ServerError|AccessDenied}"),
            },
            "faults" => {
                let faults = serde_json::to_string(&self.lock().faults).unwrap_or_default();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(faults)))
                    .expect("static response parts")
            }
            "calls" => {
                let calls = serde_json::to_string(&self.lock().calls).unwrap_or_default();
                Response::builder()
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(calls)))
                    .expect("static response parts")
            }
            _ => error(404, "NotFound", "unknown sandbox control"),
        }
    }

    async fn forward(
        &self,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let uri = format!(
            "{}{}",
            self.emulator,
            parts
                .uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
        );
        let mut req = Request::builder().method(parts.method).uri(uri);
        for (k, v) in parts
            .headers
            .iter()
            .filter(|(k, _)| *k != hyper::header::HOST)
        {
            req = req.header(k, v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return error(500, "InternalFailure", "bridge could not build the request");
        };
        match http::send_with(http::pooled(), req).await {
            Ok((status, headers, body)) => {
                let mut res = Response::builder().status(status);
                // All but hop-by-hop headers: JSON protocols carry the error
                // type in x-amzn-errortype.
                for (k, v) in headers.iter().filter(|(k, _)| {
                    !matches!(
                        k.as_str(),
                        "connection" | "transfer-encoding" | "content-length" | "keep-alive"
                    )
                }) {
                    res = res.header(k, v);
                }
                res.body(Full::new(body)).expect("copied response parts")
            }
            Err(e) => error(
                502,
                "ServiceUnavailable",
                &format!("emulator unreachable: {e}"),
            ),
        }
    }

    async fn group(&self, name: &str) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
        self.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .ok()?
            .auto_scaling_groups()
            .first()
            .cloned()
    }

    async fn processes(
        &self,
        action: &str,
        form: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let Some(group) = form.get("AutoScalingGroupName") else {
            return error(400, "ValidationError", "AutoScalingGroupName is required");
        };
        if self.group(group).await.is_none() {
            return error(400, "ValidationError", "AutoScalingGroup name not found");
        }
        let mut listed = members(form, "ScalingProcesses.member.");
        if let Some(bad) = listed.iter().find(|p| !ALL_PROCESSES.contains(&p.as_str())) {
            return error(
                400,
                "ValidationError",
                &format!("Invalid process name: {bad}"),
            );
        }
        if listed.is_empty() {
            listed = ALL_PROCESSES.iter().map(|s| s.to_string()).collect();
        }
        let mut st = self.lock();
        let set = st.suspended.entry(group.clone()).or_default();
        for p in listed {
            if action == "SuspendProcesses" {
                set.insert(p);
            } else {
                set.remove(&p);
            }
        }
        ok_response(action, "")
    }

    /// Adds our SuspendedProcesses to the emulator's group descriptions.
    async fn with_suspended(&self, res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
        if res.status() != 200 {
            return res;
        }
        let (parts, body) = res.into_parts();
        // A Full body cannot fail to collect.
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        let mut text = String::from_utf8_lossy(&body).to_string();
        let suspended = self.lock().suspended.clone();
        for (group, procs) in suspended {
            let list: String = procs
                .iter()
                .map(|p| {
                    format!(
                        "<member><ProcessName>{}</ProcessName><SuspensionReason>User suspended</SuspensionReason></member>",
                        esc(p)
                    )
                })
                .collect();
            text = inject_suspended(
                &text,
                &group,
                &format!("<SuspendedProcesses>{list}</SuspendedProcesses>"),
            );
        }
        Response::from_parts(parts, Full::new(Bytes::from(text)))
    }

    async fn start_refresh(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let Some(group_name) = form.get("AutoScalingGroupName").cloned() else {
            return error(400, "ValidationError", "AutoScalingGroupName is required");
        };
        let Some(group) = self.group(&group_name).await else {
            return error(
                400,
                "ValidationError",
                &format!("AutoScalingGroup {group_name} not found"),
            );
        };
        let current = group.launch_template();
        let lt_id = form
            .get("DesiredConfiguration.LaunchTemplate.LaunchTemplateId")
            .cloned()
            .or_else(|| {
                current
                    .and_then(|l| l.launch_template_id())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let version = form
            .get("DesiredConfiguration.LaunchTemplate.Version")
            .cloned()
            .or_else(|| current.and_then(|l| l.version()).map(str::to_string))
            .unwrap_or_else(|| "$Default".into());
        let refresh = {
            let mut st = self.lock();
            let list = st.refreshes.entry(group_name.clone()).or_default();
            if let Some(active) = list.iter().find(|r| is_active(&r.status)) {
                return error(
                    400,
                    "InstanceRefreshInProgress",
                    &format!("An Instance Refresh is already in progress and blocks the execution of this Instance Refresh ({}).", active.id),
                );
            }
            let r = Refresh {
                id: request_id(),
                group: group_name.clone(),
                status: "Pending".into(),
                reason: None,
                percentage: 0,
                to_update: group.instances().len() as i32,
                start: chrono::Utc::now(),
                end: None,
                lt_id,
                version,
                cancel_requested: false,
            };
            list.insert(0, r.clone());
            r
        };
        let bridge = self.clone();
        let id = refresh.id.clone();
        tokio::spawn(async move { bridge.run_refresh(refresh).await });
        ok_response(
            "StartInstanceRefresh",
            &format!("<InstanceRefreshId>{id}</InstanceRefreshId>"),
        )
    }

    fn update(&self, group: &str, id: &str, f: impl FnOnce(&mut Refresh)) -> bool {
        let mut st = self.lock();
        let Some(r) = st
            .refreshes
            .get_mut(group)
            .and_then(|l| l.iter_mut().find(|r| r.id == id))
        else {
            return false;
        };
        if r.cancel_requested && is_active(&r.status) {
            r.status = "Cancelled".into();
            r.reason = Some("Cancelled by request".into());
            r.end = Some(chrono::Utc::now());
            return false;
        }
        f(r);
        true
    }

    fn finish(&self, r: &Refresh, status: &str, reason: Option<String>, pct: i32) {
        self.update(&r.group, &r.id, |x| {
            x.status = status.into();
            x.reason = reason;
            x.percentage = pct;
            x.end = Some(chrono::Utc::now());
        });
    }

    /// Emulates the refresh in phases of `self.phase`.
    async fn run_refresh(&self, r: Refresh) {
        tokio::time::sleep(self.phase).await;
        if !self.update(&r.group, &r.id, |x| x.status = "InProgress".into()) {
            return;
        }
        let outcome = self
            .lock()
            .outcomes
            .remove(&r.group)
            .unwrap_or_else(|| "Successful".into());
        tokio::time::sleep(self.phase).await;
        match outcome.as_str() {
            "Failed" => {
                self.update(&r.group, &r.id, |x| x.percentage = 50);
                tokio::time::sleep(self.phase).await;
                self.finish(
                    &r,
                    "Failed",
                    Some(
                        "Sandbox: instances failed their health checks (requested outcome)".into(),
                    ),
                    50,
                );
            }
            "RollbackSuccessful" => {
                if !self.update(&r.group, &r.id, |x| {
                    x.status = "RollbackInProgress".into();
                    x.percentage = 50;
                    x.reason = Some(
                        "Sandbox: alarm in ALARM state, rolling back (requested outcome)".into(),
                    );
                }) {
                    return;
                }
                tokio::time::sleep(self.phase).await;
                self.finish(
                    &r,
                    "RollbackSuccessful",
                    Some(
                        "Sandbox: rolled back to the previous configuration (requested outcome)"
                            .into(),
                    ),
                    100,
                );
            }
            _ => match self.replace(&r).await {
                Ok(()) => self.finish(&r, "Successful", None, 100),
                Err(e) => self.finish(&r, "Failed", Some(format!("Sandbox: {e}")), 0),
            },
        }
    }

    /// Moves the group to the desired version, then takes capacity to 0 and
    /// back: the emulator launches the new instances from that version.
    async fn replace(&self, r: &Refresh) -> Result<(), String> {
        let g = self.group(&r.group).await.ok_or("group disappeared")?;
        let (min, desired) = (g.min_size().unwrap_or(0), g.desired_capacity().unwrap_or(0));
        let spec = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
            .launch_template_id(&r.lt_id)
            .version(&r.version)
            .build();
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .launch_template(spec)
            .min_size(0)
            .send()
            .await
            .map_err(|e| format!("UpdateAutoScalingGroup: {e:?}"))?;
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&r.group)
            .desired_capacity(0)
            .send()
            .await
            .map_err(|e| format!("SetDesiredCapacity 0: {e:?}"))?;
        if !self.update(&r.group, &r.id, |x| x.percentage = 50) {
            return Ok(());
        }
        tokio::time::sleep(self.phase).await;
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&r.group)
            .desired_capacity(desired)
            .send()
            .await
            .map_err(|e| format!("SetDesiredCapacity {desired}: {e:?}"))?;
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .min_size(min)
            .send()
            .await
            .map_err(|e| format!("UpdateAutoScalingGroup min: {e:?}"))?;
        Ok(())
    }

    fn describe_refreshes(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let group = form
            .get("AutoScalingGroupName")
            .cloned()
            .unwrap_or_default();
        let ids = members(form, "InstanceRefreshIds.member.");
        let list = self
            .lock()
            .refreshes
            .get(&group)
            .cloned()
            .unwrap_or_default();
        let body: String = list
            .iter()
            .filter(|r| ids.is_empty() || ids.contains(&r.id))
            .map(|r| {
                format!(
                    "<member><InstanceRefreshId>{}</InstanceRefreshId><AutoScalingGroupName>{}</AutoScalingGroupName>\
                     <Status>{}</Status>{}<StartTime>{}</StartTime>{}<PercentageComplete>{}</PercentageComplete>\
                     <InstancesToUpdate>{}</InstancesToUpdate><DesiredConfiguration><LaunchTemplate>\
                     <LaunchTemplateId>{}</LaunchTemplateId><Version>{}</Version></LaunchTemplate></DesiredConfiguration></member>",
                    esc(&r.id),
                    esc(&r.group),
                    esc(&r.status),
                    r.reason.as_deref().map(|s| format!("<StatusReason>{}</StatusReason>", esc(s))).unwrap_or_default(),
                    r.start.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                    r.end
                        .map(|e| format!("<EndTime>{}</EndTime>", e.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)))
                        .unwrap_or_default(),
                    r.percentage,
                    if r.status == "Successful" { 0 } else { r.to_update },
                    esc(&r.lt_id),
                    esc(&r.version),
                )
            })
            .collect();
        ok_response(
            "DescribeInstanceRefreshes",
            &format!("<InstanceRefreshes>{body}</InstanceRefreshes>"),
        )
    }

    fn cancel_refresh(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let group = form
            .get("AutoScalingGroupName")
            .cloned()
            .unwrap_or_default();
        let mut st = self.lock();
        let active = st
            .refreshes
            .get_mut(&group)
            .and_then(|l| l.iter_mut().find(|r| is_active(&r.status)));
        match active {
            Some(r) => {
                r.cancel_requested = true;
                r.status = "Cancelling".into();
                ok_response(
                    "CancelInstanceRefresh",
                    &format!("<InstanceRefreshId>{}</InstanceRefreshId>", r.id),
                )
            }
            None => error(
                400,
                "ActiveInstanceRefreshNotFound",
                "No in progress or pending Instance Refresh found",
            ),
        }
    }
}

fn is_active(status: &str) -> bool {
    matches!(
        status,
        "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress"
    )
}

/// Puts `replacement` as the SuspendedProcesses of the group named `group`
/// in a DescribeAutoScalingGroups answer: within that group's `<member>`,
/// replacing the (empty) element the emulator wrote, or adding one.
pub fn inject_suspended(xml: &str, group: &str, replacement: &str) -> String {
    let name_tag = format!(
        "<AutoScalingGroupName>{}</AutoScalingGroupName>",
        esc(group)
    );
    let Some(name_at) = xml.find(&name_tag) else {
        return xml.to_string();
    };
    // The group's member: from the last unclosed <member> before the name to its close.
    let start = enclosing_member_start(xml, name_at);
    let end = member_end(xml, start);
    let (head, member, tail) = (&xml[..start], &xml[start..end], &xml[end..]);
    let member = remove_top_level(member, "SuspendedProcesses");
    let close = member.rfind("</member>").unwrap_or(member.len());
    format!(
        "{head}{}{replacement}{}{tail}",
        &member[..close],
        &member[close..]
    )
}

fn enclosing_member_start(xml: &str, at: usize) -> usize {
    let mut depth = 0i32;
    let mut pos = at;
    while let Some(i) = xml[..pos].rfind("member>") {
        let tag_start = xml[..i].rfind('<').unwrap_or(i);
        let is_close = xml[tag_start..].starts_with("</");
        if is_close {
            depth += 1;
        } else if depth == 0 {
            return tag_start;
        } else {
            depth -= 1;
        }
        pos = tag_start;
    }
    0
}

fn member_end(xml: &str, start: usize) -> usize {
    let mut depth = 0i32;
    let mut pos = start;
    while let Some(i) = xml[pos..].find("member>") {
        let abs = pos + i;
        let tag_start = xml[..abs].rfind('<').unwrap_or(abs);
        if xml[tag_start..].starts_with("</") {
            depth -= 1;
            if depth == 0 {
                return abs + "member>".len();
            }
        } else {
            depth += 1;
        }
        pos = abs + "member>".len();
    }
    xml.len()
}

/// Removes `<tag/>` or `<tag>…</tag>` (first occurrence) from a fragment.
fn remove_top_level(fragment: &str, tag: &str) -> String {
    let empty = format!("<{tag}/>");
    if let Some(i) = fragment.find(&empty) {
        return format!("{}{}", &fragment[..i], &fragment[i + empty.len()..]);
    }
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    match (fragment.find(&open), fragment.find(&close)) {
        (Some(a), Some(b)) if b > a => {
            format!("{}{}", &fragment[..a], &fragment[b + close.len()..])
        }
        _ => fragment.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_into_the_right_group_only() {
        let xml = "<R><AutoScalingGroups>\
            <member><AutoScalingGroupName>a</AutoScalingGroupName><Instances><member><InstanceId>i-1</InstanceId></member></Instances><SuspendedProcesses/></member>\
            <member><AutoScalingGroupName>b</AutoScalingGroupName><SuspendedProcesses/></member>\
            </AutoScalingGroups></R>";
        let out = inject_suspended(xml, "b", "<SuspendedProcesses><member><ProcessName>AZRebalance</ProcessName></member></SuspendedProcesses>");
        assert_eq!(
            out,
            "<R><AutoScalingGroups>\
            <member><AutoScalingGroupName>a</AutoScalingGroupName><Instances><member><InstanceId>i-1</InstanceId></member></Instances><SuspendedProcesses/></member>\
            <member><AutoScalingGroupName>b</AutoScalingGroupName><SuspendedProcesses><member><ProcessName>AZRebalance</ProcessName></member></SuspendedProcesses></member>\
            </AutoScalingGroups></R>"
        );
        let out_a = inject_suspended(xml, "a", "<SuspendedProcesses>X</SuspendedProcesses>");
        assert!(out_a.contains("</Instances><SuspendedProcesses>X</SuspendedProcesses></member><member><AutoScalingGroupName>b"));
    }
}
