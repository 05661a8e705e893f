//! Test support: runs `autosky-sandbox up` as a child process (its own
//! emulator, bridge and workers), reads its endpoints, and offers the calls
//! end-to-end tests and the demo share: start a deployment, wait for its end,
//! read the captured e-mails, choose a refresh outcome (or a failed AMI), set a CloudWatch
//! alarm's state, wait for a step's action; and the event bus's control
//! routes ([`Endpoints::drop_events`], [`Endpoints::publish_event`],
//! [`Endpoints::events`]).

use crate::{Clients, Endpoints};
use autosky_core::domain::Deployment;
use autosky_core::store::Store;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The control routes' body types.
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";

pub const READY: &str = "SANDBOX_READY ";

/// A sandbox child process. Plain std (no async runtime owns it), so tests
/// running on many runtimes can share one.
pub struct SandboxProcess {
    child: std::process::Child,
    pub endpoints: Endpoints,
    /// Every line of its stdout that is an embedded-metric-format document
    /// (one JSON object with `_aws`, nothing around it): what CloudWatch
    /// Logs would turn into metrics, as the functions' own sink wrote it.
    metrics: std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
}

impl SandboxProcess {
    /// Starts `bin up --ready-line`, with the demo environment as `make
    /// sandbox` has it when `seeded`, empty otherwise (tests seed their own);
    /// the child exits when our end of its stdin closes (when this process
    /// ends, however it ends), so it never outlives us.
    pub fn spawn(bin: &str, seeded: bool) -> Result<Self, String> {
        Self::spawn_with(bin, seeded, &[])
    }

    /// As [`SandboxProcess::spawn`], with more environment variables (a
    /// test's weakened policy: `AUTOSKY_IAM_DROP`).
    pub fn spawn_with(bin: &str, seeded: bool, vars: &[(&str, &str)]) -> Result<Self, String> {
        use std::io::BufRead;
        let mut child = std::process::Command::new(bin)
            .args(["up", "--ready-line", "--refresh-phase-ms", "300"])
            .args((!seeded).then_some("--no-seed"))
            .envs(vars.iter().copied())
            // Tests schedule deployments a few seconds ahead.
            .env("SCHEDULE_MIN_LEAD_SECONDS", "2")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {bin}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        let metrics = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let kept = metrics.clone();
        // Reads the ready line, keeps the metric lines, and keeps draining so
        // the child never blocks.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let (false, Some(json)) = (sent, line.strip_prefix(READY)) {
                    sent = tx.send(json.to_string()).is_ok();
                } else if let Some(doc) = emf_document(&line) {
                    if let Ok(mut m) = kept.lock() {
                        m.push(doc);
                    }
                }
            }
        });
        let json = rx
            .recv_timeout(Duration::from_secs(180))
            .map_err(|_| "sandbox not ready after 180 s (or it exited)".to_string())?;
        let endpoints = serde_json::from_str(&json).map_err(|e| e.to_string())?;
        Ok(Self {
            child,
            endpoints,
            metrics,
        })
    }

    /// The metric documents of deployment `id`, once its deployment document
    /// (the one with `Status`) has been written; an error after `limit`.
    pub fn metric_documents(&self, id: &str, limit: Duration) -> Result<Vec<Value>, String> {
        let deadline = Instant::now() + limit;
        loop {
            let docs: Vec<Value> = self
                .metrics
                .lock()
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|d| d["DeploymentId"] == id)
                .cloned()
                .collect();
            if docs.iter().any(|d| d.get("Status").is_some()) {
                return Ok(docs);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no metric line for deployment {id} after {limit:?} (have {docs:?})"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Closes the child's stdin, so it stops as it does when we end (and
    /// writes its IAM report); killed if it has not within 10 s.
    pub fn stop(mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The sandbox shared by the tests of one test binary (started on first use),
/// without the demo environment.
pub fn shared(bin: &str) -> &'static Endpoints {
    &shared_process(bin).endpoints
}

/// The process behind [`shared`] (its metric lines).
pub fn shared_process(bin: &str) -> &'static SandboxProcess {
    static SANDBOX: std::sync::OnceLock<SandboxProcess> = std::sync::OnceLock::new();
    SANDBOX.get_or_init(|| SandboxProcess::spawn(bin, false).expect("sandbox starts"))
}

/// The line as CloudWatch Logs reads an embedded-metric-format log event:
/// the whole line one JSON object with an `_aws` member (anything before or
/// after it, like a log formatter's prefix, and it is no metric).
pub fn emf_document(line: &str) -> Option<Value> {
    serde_json::from_str::<Value>(line)
        .ok()
        .filter(|v| v.get("_aws").is_some_and(Value::is_object))
}

/// Starts an execution named by a new deployment id; returns the id.
pub async fn start_deployment(c: &Clients, env_id: &str, options: Value) -> Result<String, String> {
    let id = autosky_core::domain::new_deployment_id();
    let input = json!({
        "deploymentId": id,
        "environmentId": env_id,
        "owner": "tester@example.com",
        "options": options,
    });
    c.sfn
        .start_execution()
        .state_machine_arn(&c.endpoints.state_machine_arn)
        .name(&id)
        .input(input.to_string())
        .send()
        .await
        .map_err(|e| format!("StartExecution: {e:?}"))?;
    Ok(id)
}

pub fn execution_arn(c: &Clients, id: &str) -> String {
    autosky_core::domain::execution_arn(&c.endpoints.state_machine_arn, id)
}

/// Waits until the execution has ended; returns its status.
pub async fn wait_execution(c: &Clients, id: &str, limit: Duration) -> Result<String, String> {
    wait_execution_arn(c, &execution_arn(c, id), limit).await
}

/// Waits until the execution `arn` has ended; returns its status.
pub async fn wait_execution_arn(c: &Clients, arn: &str, limit: Duration) -> Result<String, String> {
    let id = arn.rsplit(':').next().unwrap_or(arn);
    let deadline = Instant::now() + limit;
    loop {
        let out = c
            .sfn
            .describe_execution()
            .execution_arn(arn)
            .send()
            .await
            .map_err(|e| format!("DescribeExecution: {e:?}"))?;
        let status = out.status().as_str().to_string();
        if status != "RUNNING" {
            return Ok(status);
        }
        if Instant::now() > deadline {
            return Err(format!("execution {id} still RUNNING after {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for the execution to end, then returns the deployment record.
pub async fn finished(
    c: &Clients,
    env_id: &str,
    id: &str,
) -> Result<(String, Option<Deployment>), String> {
    let status = wait_execution(c, id, Duration::from_secs(120)).await?;
    let record = c
        .store
        .deployment(env_id, id)
        .await
        .map_err(|e| e.to_string())?;
    Ok((status, record))
}

/// Every event of execution `arn`'s history, oldest first (all pages).
pub async fn history(
    c: &Clients,
    arn: &str,
) -> Result<Vec<aws_sdk_sfn::types::HistoryEvent>, String> {
    let (mut events, mut token) = (vec![], None);
    loop {
        let page = c
            .sfn
            .get_execution_history()
            .execution_arn(arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("GetExecutionHistory: {e:?}"))?;
        events.extend_from_slice(page.events());
        token = page.next_token().map(str::to_string);
        if token.is_none() {
            return Ok(events);
        }
    }
}

/// Number of states entered in the execution (its state transitions).
pub async fn state_transitions(c: &Clients, id: &str) -> Result<usize, String> {
    Ok(history(c, &execution_arn(c, id))
        .await?
        .iter()
        .filter(|e| e.r#type().as_str().ends_with("StateEntered"))
        .count())
}

/// E-mails captured by the emulator.
pub async fn emails(c: &Clients) -> Result<Vec<Value>, String> {
    let (status, body) =
        crate::http::get(&format!("{}/_fakecloud/ses/emails", c.endpoints.emulator)).await?;
    if status != 200 {
        return Err(format!("emails: HTTP {status}"));
    }
    let v: Value = serde_json::from_slice(&body).map_err(|e| e.to_string())?;
    Ok(match v {
        Value::Array(a) => a,
        Value::Object(mut o) => match o.remove("emails") {
            Some(Value::Array(a)) => a,
            _ => vec![],
        },
        _ => vec![],
    })
}

/// Makes the group's next instance refresh end with `outcome`.
pub async fn set_refresh_outcome(c: &Clients, group: &str, outcome: &str) -> Result<(), String> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("group", group)
        .append_pair("outcome", outcome)
        .finish();
    c.endpoints
        .control("POST", "refresh-outcome", FORM, body)
        .await
        .map(drop)
}

/// Makes the next AMI made of `instance` end `failed` (with `message` as
/// its error; None: the sandbox's) instead of `available`.
pub async fn set_image_failed(
    c: &Clients,
    instance: &str,
    message: Option<&str>,
) -> Result<(), String> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("instance", instance)
        .append_pair("outcome", "failed");
    if let Some(m) = message {
        form.append_pair("message", m);
    }
    c.endpoints
        .control("POST", "image-outcome", FORM, form.finish())
        .await
        .map(drop)
}

/// Sets the CloudWatch alarm `name` to `state` (`ALARM`, `OK`,
/// `INSUFFICIENT_DATA`) as the emulated refreshes watching it see it.
pub async fn set_alarm_state(c: &Clients, name: &str, state: &str) -> Result<(), String> {
    // A path segment: every byte but the unreserved ones as %XX.
    let segment: String = name
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    c.endpoints
        .control(
            "PUT",
            &format!("alarms/{segment}"),
            JSON,
            serde_json::json!({ "state": state }).to_string(),
        )
        .await
        .map(drop)
}

/// Waits until one of the deployment's `step` actions contains `text`;
/// returns that action's message.
pub async fn wait_action(
    c: &Clients,
    env_id: &str,
    deployment_id: &str,
    step: autosky_core::domain::StepName,
    text: &str,
    limit: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let d = c
            .store
            .deployment(env_id, deployment_id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(d) = &d {
            if let Some(a) = d
                .step(step)
                .actions
                .iter()
                .find(|a| a.message.contains(text))
            {
                return Ok(a.message.clone());
            }
            if d.status.is_terminal() {
                return Err(format!("deployment ended {} before {text:?}", d.status));
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no {step:?} action with {text:?} in {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// An SDK config that signs as `function` (a logical id of template.yaml),
/// every service through the gateway: its calls are authorized against that
/// function's policy.
pub fn config_as(e: &Endpoints, function: &str) -> aws_config::SdkConfig {
    crate::iam::principals::config_as(&crate::sdk_config(&e.autoscaling), function)
}

/// Whether the execution is waiting in the waiting state `state` with
/// nothing in flight: the state's callback task was started (its step
/// registered the wait and checked) and no event followed for a second (the
/// check, a few milliseconds, left the token open). A stop there interrupts
/// nothing half done.
pub async fn in_wait_state(c: &Clients, arn: &str, state: &str) -> bool {
    let newest = |c: &Clients| {
        let sfn = c.sfn.clone();
        let arn = arn.to_string();
        async move {
            sfn.get_execution_history()
                .execution_arn(arn)
                .reverse_order(true)
                .max_results(6)
                .send()
                .await
                .ok()
                .map(|h| h.events().to_vec())
        }
    };
    let Some(events) = newest(c).await else {
        return false;
    };
    let started = events
        .first()
        .is_some_and(|ev| matches!(ev.r#type().as_str(), "ActivityStarted" | "TaskStarted"));
    let entered = events
        .iter()
        .find(|ev| ev.r#type().as_str() == "TaskStateEntered")
        .and_then(|ev| ev.state_entered_event_details())
        .is_some_and(|s| s.name() == state);
    if !(started && entered) {
        return false;
    }
    let id = events[0].id();
    tokio::time::sleep(Duration::from_secs(1)).await;
    newest(c)
        .await
        .and_then(|e| e.first().map(|ev| ev.id()))
        .is_some_and(|now| now == id)
}

/// How often each waiting state's timeout (the fallback) fired in
/// execution `arn`, by state name. AWS records a Task's timeout as
/// `TaskTimedOut` (`ActivityTimedOut` for an activity); fakecloud as
/// `TaskFailed` with the error `States.Timeout`: all three count.
pub async fn fallbacks(
    c: &Clients,
    arn: &str,
) -> Result<std::collections::BTreeMap<String, usize>, String> {
    let (mut out, mut state) = (std::collections::BTreeMap::new(), String::new());
    for ev in history(c, arn).await? {
        if let Some(d) = ev.state_entered_event_details() {
            state = d.name().to_string();
        }
        let timed_out = match ev.r#type().as_str() {
            "TaskTimedOut" | "ActivityTimedOut" => true,
            "TaskFailed" => ev
                .task_failed_event_details()
                .and_then(|d| d.error())
                .is_some_and(|e| e == "States.Timeout"),
            _ => false,
        };
        if timed_out {
            *out.entry(state.clone()).or_default() += 1;
        }
    }
    Ok(out)
}

/// What the sandbox's IAM enforcement saw so far (None: enforcement off).
pub async fn iam_report(e: &Endpoints) -> Result<Option<crate::iam::Report>, String> {
    let (status, body) = crate::http::get(&format!("{}/_sandbox/iam", e.autoscaling)).await?;
    if status != 200 {
        return Err(format!("/_sandbox/iam: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// A step's dependencies aimed at the sandbox, as its worker has them (every
/// call through the gateway, signed as the step's function, so authorized
/// against its policy), for tests that invoke a handler directly with an
/// event the emulator cannot emit. Its metric lines are kept in memory (set
/// `metrics` to a recorder of the test's to read them): in a test process
/// stdout is the test runner's.
pub fn deps(c: &Clients, step: autosky_core::domain::StepName) -> autosky_core::Deps {
    let gateway = crate::sdk_config(&c.endpoints.autoscaling);
    let config =
        crate::iam::principals::config_as(&gateway, &crate::iam::principals::of_step(step));
    autosky_core::Deps {
        metrics: std::sync::Arc::new(autosky_core::metrics::Recorder::default()),
        ..autosky_core::Deps::from_config(
            &config,
            autosky_core::deps::Settings {
                table_name: c.endpoints.table.clone(),
                sender_email: Some(c.endpoints.sender.clone()),
                region: "us-east-1".into(),
            },
        )
    }
}

/// The group's suspended processes, sorted.
pub async fn suspended_processes(c: &Clients, group: &str) -> Vec<String> {
    let out = c
        .asg
        .describe_auto_scaling_groups()
        .auto_scaling_group_names(group)
        .send()
        .await
        .expect("DescribeAutoScalingGroups");
    let mut v: Vec<String> = out
        .auto_scaling_groups()
        .iter()
        .flat_map(|g| g.suspended_processes())
        .filter_map(|p| p.process_name().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// An instance's state name (`running`, `stopped`, …).
pub async fn instance_state(c: &Clients, id: &str) -> String {
    let out = c
        .ec2
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| {
            i.state()
                .and_then(|s| s.name())
                .map(|n| n.as_str().to_string())
        })
        .unwrap_or_default()
}

/// The launch template's default version number.
pub async fn default_version(c: &Clients, launch_template_id: &str) -> Option<i64> {
    let out = c
        .ec2
        .describe_launch_templates()
        .launch_template_ids(launch_template_id)
        .send()
        .await
        .expect("DescribeLaunchTemplates");
    out.launch_templates()
        .first()
        .and_then(|t| t.default_version_number())
}

/// The images tagged with this deployment id.
pub async fn deployment_images(c: &Clients, deployment_id: &str) -> Vec<aws_sdk_ec2::types::Image> {
    c.ec2
        .describe_images()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("tag:autosky:deployment-id")
                .values(deployment_id)
                .build(),
        )
        .send()
        .await
        .expect("DescribeImages")
        .images()
        .to_vec()
}

/// A figure a test reports (matrix totals, call counts): printed, and, when
/// `AUTOSKY_FIGURES` names a file, appended to it. cargo test shows a passing
/// test's output only on request, so `make tests` prints that file after the
/// run: the figures reach the terminal without un-capturing every test.
pub fn figure(line: &str) {
    println!("{line}");
    if let Some(path) = std::env::var_os("AUTOSKY_FIGURES") {
        use std::io::Write;
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| writeln!(f, "{line}"));
        if let Err(e) = written {
            eprintln!(
                "could not write the figure to {}: {e}",
                path.to_string_lossy()
            );
        }
    }
}

/// Waits until the group's newest instance refresh is in progress with some
/// of its instances replaced (PercentageComplete above 0).
pub async fn wait_refresh_part_way(
    c: &Clients,
    group: &str,
    limit: Duration,
) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let out = c
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .max_records(1)
            .send()
            .await
            .map_err(|e| format!("DescribeInstanceRefreshes: {e:?}"))?;
        if let Some(r) = out.instance_refreshes().first() {
            let in_progress = r.status().map(|s| s.as_str()) == Some("InProgress");
            if in_progress && r.percentage_complete().unwrap_or(0) > 0 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no refresh of {group} got part-way in {limit:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The gateway's event bus (see [`crate::aws_events`]), through its control
/// routes.
impl Endpoints {
    /// Switches the delivery of matching events off (`true`) or on.
    pub async fn drop_events(&self, drop: bool) -> Result<(), String> {
        let body = json!({ "drop": drop }).to_string();
        self.events_call("PUT", "events/delivery", body)
            .await
            .map(|_| ())
    }

    /// Publishes `event` as if AWS sent it (matched, delivered unless
    /// dropped); returns its record.
    pub async fn publish_event(
        &self,
        event: Value,
    ) -> Result<crate::aws_events::PublishedEvent, String> {
        let body = self
            .events_call("POST", "events", event.to_string())
            .await?;
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    /// Every event published so far, oldest first.
    pub async fn events(&self) -> Result<Vec<crate::aws_events::PublishedEvent>, String> {
        let body = self.events_call("GET", "events", String::new()).await?;
        serde_json::from_value(body).map_err(|e| e.to_string())
    }

    async fn events_call(&self, method: &str, route: &str, body: String) -> Result<Value, String> {
        let body = self.control(method, route, JSON, body).await?;
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    }

    /// A control route of the gateway (`/_sandbox/<route>`): its body when
    /// it answers 200, else an error naming the route and the answer.
    pub async fn control(
        &self,
        method: &str,
        route: &str,
        content_type: &str,
        body: String,
    ) -> Result<bytes::Bytes, String> {
        let req = hyper::Request::builder()
            .method(method)
            .uri(format!("{}/_sandbox/{route}", self.autoscaling))
            .header("content-type", content_type)
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        match crate::http::send(req).await? {
            (200, _, b) => Ok(b),
            (s, _, b) => Err(format!(
                "{method} /_sandbox/{route}: HTTP {s}: {}",
                String::from_utf8_lossy(&b)
            )),
        }
    }
}
