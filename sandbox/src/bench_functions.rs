//! `autosky-sandbox bench` (`make bench`): the functions' size, cold start and
//! memory, and what one deployment costs in AWS calls and state transitions,
//! measured against the sandbox, checked against the budgets of issue 6, and
//! written to BENCHMARKS.md. A benchmark, not a test: it fails (non-zero exit)
//! when a median exceeds a budget, and the machine's noise is in its numbers.
//!
//! Per function (the release bootstraps of `make build`):
//! - size of `target/lambda/<fn>/bootstrap` (already stripped by the release
//!   profile) and of the zip Lambda would receive (deflate level 9, like
//!   `scripts/build-lambdas.sh`);
//! - spawn→ready: from spawning the bootstrap with `AWS_LAMBDA_RUNTIME_API`
//!   pointed at a runtime-API stub on loopback (below) until its first
//!   `GET …/invocation/next`; spawn→response: until it posts the response to
//!   a sample event from events/ (ids rewritten to a deployment seeded for
//!   this run; for the API's two functions an HTTP API request: the history
//!   page, a new schedule), its AWS calls going to the sandbox's gateway;
//! - peak RSS of the process over init and that one invocation (`VmHWM`
//!   read while it idles in its next `GET …/next`, then it is killed);
//! - the same spawn→ready for `python3` importing boto3 and creating an EC2
//!   client before its first `GET …/next` (the usual Python Lambda init).
//!
//! The six step functions run one deployment between them per round, in
//! pipeline order, so each meets the state its sample event expects; a step
//! that answers "not done yet" is driven to completion in-process
//! (`steps::run`, not measured) before the next one runs.
//!
//! Per deployment (state machine + activity workers, `pollSeconds` 1): AWS
//! calls by `service:Action` as counted by the gateway (the workers'
//! activity plumbing — GetActivityTask, SendTask* — stands in for Lambda's
//! invoke and is left out), states entered, tasks scheduled, polls (Wait
//! states entered), wall time minus the waits the steps asked for, and how
//! long after the instance refresh ended the step noticed (detection delay).

use crate::{harness, seed, Clients};
use autosky_core::domain::{
    new_deployment_id, Deployment, DeploymentOptions, EnvironmentDefaults, StepName,
};
use autosky_core::steps::{self, Poll, Step};
use autosky_core::store::Store;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// The eight functions of `make build`, in pipeline order, then the API's two.
pub const FUNCTIONS: [&str; 8] = [
    "validate",
    "stop-preparation-server",
    "create-image",
    "create-models",
    "replace-instances",
    "finalize",
    "api",
    "schedules",
];

/// The budgets of issue 6 (decimal megabytes: the stricter reading).
pub const MAX_STRIPPED_BYTES: u64 = 8_000_000;
pub const MAX_ZIPPED_BYTES: u64 = 3_000_000;
pub const MAX_SPAWN_TO_READY_MS: f64 = 15.0;
pub const MAX_PEAK_RSS_BYTES: u64 = 24_000_000;
pub const MAX_TRANSITIONS_BEYOND_POLLS: f64 = 30.0;
pub const TRANSITIONS_PER_POLL: f64 = 3.0;

/// Production's base poll interval (`StepInput::base_poll_seconds` default).
const PRODUCTION_POLL_SECONDS: u64 = 15;

/// The sample events' deployment id, replaced by the seeded one.
const SAMPLE_DEPLOYMENT_ID: &str = "01JDXK2Q8V5W3N7R4T6Y9ZABCD";

pub struct Options {
    pub runs: usize,
    /// Where the bootstraps are: `<dir>/<fn>/bootstrap` or `<dir>/<fn>`.
    pub bootstraps: PathBuf,
    /// The Markdown report (BENCHMARKS.md), rewritten between its markers.
    pub out: PathBuf,
    /// The events/ folder.
    pub events: PathBuf,
    /// Only the per-function figures (quicker, for trying a change); the
    /// report is printed, not written, and budgets are not checked.
    pub functions_only: bool,
}

impl Options {
    pub fn from_args(args: &[String]) -> Result<Self, String> {
        let root = workspace_root();
        let value = |flag: &str| {
            args.iter()
                .position(|a| a == flag)
                .and_then(|i| args.get(i + 1))
                .cloned()
        };
        let runs = match value("--runs") {
            Some(v) => v.parse().map_err(|_| format!("--runs {v}: not a number"))?,
            None => 10,
        };
        if runs < 1 {
            return Err("--runs must be at least 1".into());
        }
        Ok(Self {
            runs,
            bootstraps: value("--bootstraps")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target/lambda")),
            out: value("--out")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("BENCHMARKS.md")),
            events: root.join("events"),
            functions_only: args.iter().any(|a| a == "--functions-only"),
        })
    }

    fn bootstrap(&self, function: &str) -> PathBuf {
        let nested = self.bootstraps.join(function).join("bootstrap");
        if nested.is_file() {
            nested
        } else {
            self.bootstraps.join(function)
        }
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Median, min and max of a sample.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    pub fn of(values: &[f64]) -> Self {
        if values.is_empty() {
            return Self::default();
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Self {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    fn show(&self, decimals: usize) -> String {
        format!(
            "{:.d$} ({:.d$}–{:.d$})",
            self.median,
            self.min,
            self.max,
            d = decimals
        )
    }
}

// ---------------------------------------------------------------------------
// Runtime API stub

/// What the stub saw, in order.
#[derive(Debug)]
enum StubEvent {
    /// A `GET …/invocation/next` arrived.
    Next(Instant),
    /// The function posted its response (`ok`) or error for the invocation,
    /// or an init error.
    Done(Instant, bool, Bytes),
}

/// A Lambda runtime API on loopback serving exactly one invocation: the first
/// `GET …/next` gets `event`, later ones never get an answer (the function
/// idles as it would between invocations).
struct Stub {
    addr: std::net::SocketAddr,
    events: mpsc::UnboundedReceiver<StubEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Stub {
    async fn start(event: Value) -> Result<Self, String> {
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
    async fn next_event(&mut self, limit: Duration) -> Result<StubEvent, String> {
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

// ---------------------------------------------------------------------------
// One cold start

/// One cold start: spawn→ready, spawn→response (when there was an event to
/// answer), the response, the peak RSS in bytes.
#[derive(Debug)]
struct ColdStart {
    ready_ms: f64,
    response_ms: Option<f64>,
    output: Option<Result<Value, String>>,
    peak_rss: u64,
}

/// The process's peak resident set (`VmHWM`, of its own address space
/// since exec). Not `ru_maxrss` from `wait4`: Linux carries the forking
/// parent's peak over exec into it, so a child of this (large) process
/// would report ours.
fn peak_rss(pid: u32) -> Result<u64, String> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .map_err(|e| format!("/proc/{pid}/status: {e}"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
        .ok_or_else(|| format!("process {pid} exited early (BENCH_VERBOSE=1 shows its log)"))
}

/// Reads the child's peak RSS, then kills and reaps it.
async fn kill_and_reap(mut child: std::process::Child) -> Result<u64, String> {
    let peak = peak_rss(child.id());
    let _ = child.kill();
    tokio::task::spawn_blocking(move || child.wait())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    peak
}

/// Spawns `cmd` with the runtime API pointed at a fresh stub; when `event`
/// is given, serves it once and waits for the answer.
async fn cold_start(
    mut cmd: std::process::Command,
    function: &str,
    event: Option<Value>,
) -> Result<ColdStart, String> {
    let has_event = event.is_some();
    let mut stub = Stub::start(event.unwrap_or(Value::Null)).await?;
    cmd.env("AWS_LAMBDA_RUNTIME_API", stub.addr.to_string())
        .env("AWS_LAMBDA_FUNCTION_NAME", function)
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env(
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{function}"),
        )
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        // BENCH_VERBOSE=1 shows the functions' own logs (diagnosis).
        .stderr(if std::env::var_os("BENCH_VERBOSE").is_some() {
            std::process::Stdio::inherit()
        } else {
            std::process::Stdio::null()
        });
    let t0 = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {function}: {e}"))?;
    let ms = |t: Instant| t.duration_since(t0).as_secs_f64() * 1000.0;
    let outcome = async {
        let ready_ms = match stub
            .next_event(Duration::from_secs(30))
            .await
            .map_err(|e| format!("{function}: {e} (BENCH_VERBOSE=1 shows its log)"))?
        {
            StubEvent::Next(t) => ms(t),
            StubEvent::Done(_, _, body) => {
                return Err(format!(
                    "{function} failed to start: {}",
                    String::from_utf8_lossy(&body)
                ))
            }
        };
        if !has_event {
            return Ok((ready_ms, None, None));
        }
        loop {
            match stub.next_event(Duration::from_secs(60)).await? {
                StubEvent::Done(t, ok, body) => {
                    let output = if ok {
                        serde_json::from_slice(&body).map_err(|e| e.to_string())
                    } else {
                        Err(String::from_utf8_lossy(&body).into_owned())
                    };
                    // Let it get back to waiting for the next event (all the
                    // work of the invocation is then in its peak RSS).
                    let _ = stub.next_event(Duration::from_secs(5)).await;
                    return Ok((ready_ms, Some(ms(t)), Some(output)));
                }
                StubEvent::Next(_) => continue,
            }
        }
    }
    .await;
    let peak_rss = kill_and_reap(child).await?;
    let (ready_ms, response_ms, output) = outcome?;
    Ok(ColdStart {
        ready_ms,
        response_ms,
        output,
        peak_rss,
    })
}

/// Python's equivalent init: boto3 imported, an EC2 client created, then the
/// first `GET …/next` (urllib, as a minimal runtime loop would).
fn python_reference() -> std::process::Command {
    let mut cmd = std::process::Command::new("python3");
    // botocore reads the region from AWS_DEFAULT_REGION (the Lambda runtime sets both).
    cmd.env("AWS_DEFAULT_REGION", "us-east-1").args([
        "-c",
        "import os, urllib.request, boto3\n\
         boto3.client('ec2')\n\
         urllib.request.urlopen('http://' + os.environ['AWS_LAMBDA_RUNTIME_API'] + '/2018-06-01/runtime/invocation/next').read()\n",
    ]);
    cmd
}

// ---------------------------------------------------------------------------
// Sizes

fn zipped_size(path: &Path) -> Result<u64, String> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import io, sys, zipfile\n\
             buf = io.BytesIO()\n\
             with zipfile.ZipFile(buf, 'w', zipfile.ZIP_DEFLATED, compresslevel=9) as z:\n\
             \x20   z.write(sys.argv[1], 'bootstrap')\n\
             print(len(buf.getvalue()))\n",
        ])
        .arg(path)
        .output()
        .map_err(|e| format!("python3 (zip size): {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| {
            format!(
                "zip size of {}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

// ---------------------------------------------------------------------------
// Sample events against a seeded deployment

/// The sample event of a function, rewritten for deployment `id` of
/// environment `env` (1 s polls).
fn sample_event(events: &Path, function: &str, env: &str, id: &str) -> Result<Value, String> {
    let file = match function {
        "finalize" => "finalize-succeeded.json".to_string(),
        f => format!("{f}.json"),
    };
    let path = events.join(&file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v: Value = serde_json::from_str(&text.replace(SAMPLE_DEPLOYMENT_ID, id))
        .map_err(|e| format!("{file}: {e}"))?;
    let state = if v.get("state").is_some() {
        &mut v["state"]
    } else {
        &mut v
    };
    state["environmentId"] = json!(env);
    state["pollSeconds"] = json!(1);
    Ok(v)
}

/// Where Step Functions puts each waiting step's result (its ResultPath).
fn result_key(step: Step) -> Option<&'static str> {
    match step {
        Step::StopPreparationServer => Some("stop"),
        Step::CreateImage => Some("image"),
        Step::ReplaceInstances => Some("replace"),
        _ => None,
    }
}

/// Drives a step that answered "not done" to its end in-process, as the
/// state machine would (polling without the waits: the emulator is instant,
/// the refresh emulation takes a few phases).
async fn finish_in_process(
    deps: &autosky_core::Deps,
    step: Step,
    mut event: Value,
    mut output: Value,
) -> Result<(), String> {
    let Some(key) = result_key(step) else {
        return Ok(());
    };
    for _ in 0..600 {
        let poll: Poll = serde_json::from_value(output.clone()).map_err(|e| e.to_string())?;
        if poll.done {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        event[key] = output;
        output = steps::run(step, deps, event.clone())
            .await
            .map_err(|e| format!("{}: {}", e.name(), e.message()))?;
    }
    Err(format!("{} did not finish", step.function()))
}

/// A Running deployment record the sample events can act on (the API's
/// part of a start: the record, with the options of the sample events).
async fn seed_deployment(c: &Clients, env: &str) -> Result<String, String> {
    let id = new_deployment_id();
    let options = DeploymentOptions {
        lock_instances: true,
        stop_preparation_server: true,
        notification_emails: vec!["ops@example.com".into()],
        ..Default::default()
    };
    let d = Deployment::new_running(
        id.clone(),
        env.into(),
        "bench".into(),
        options,
        chrono::Utc::now(),
    );
    c.store
        .create_deployment(&d)
        .await
        .map_err(|e| e.to_string())?;
    Ok(id)
}

// ---------------------------------------------------------------------------
// Results

#[derive(Debug, Default)]
struct FunctionResult {
    stripped: u64,
    zipped: u64,
    ready_ms: Vec<f64>,
    response_ms: Vec<f64>,
    peak_rss: Vec<f64>,
    errors: Vec<String>,
}

impl FunctionResult {
    /// One cold start's figures; its output is left for the caller to judge.
    fn record(&mut self, cs: &ColdStart) {
        self.ready_ms.push(cs.ready_ms);
        self.peak_rss.push(cs.peak_rss as f64);
        if let Some(ms) = cs.response_ms {
            self.response_ms.push(ms);
        }
    }
}

#[derive(Debug, Default)]
struct DeploymentRun {
    calls: BTreeMap<String, u64>,
    transitions: usize,
    tasks: usize,
    polls: usize,
    wall_s: f64,
    waits_s: f64,
    detection_s: Option<f64>,
}

/// The whole report, then the budget check.
pub async fn run(c: &Clients, opts: &Options) -> Result<(), String> {
    let started = Instant::now();
    println!(
        "bench: {} runs; bootstraps from {}",
        opts.runs,
        opts.bootstraps.display()
    );

    // Sizes.
    let mut functions: BTreeMap<&str, FunctionResult> = BTreeMap::new();
    for f in FUNCTIONS {
        let path = opts.bootstrap(f);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e} (run `make build` first)", path.display()))?;
        functions.insert(
            f,
            FunctionResult {
                stripped: meta.len(),
                zipped: zipped_size(&path)?,
                ..Default::default()
            },
        );
    }

    // Cold starts: one seeded deployment per round, the six steps in order.
    let env = "bench-functions";
    seed::environment(
        c,
        env,
        1,
        EnvironmentDefaults {
            notification_emails: vec!["ops@example.com".into()],
            ..Default::default()
        },
    )
    .await?;
    let deps = harness::deps(c);
    for round in 0..opts.runs {
        let id = seed_deployment(c, env).await?;
        for (i, step) in Step::ALL.iter().enumerate() {
            let f = FUNCTIONS[i];
            let event = sample_event(&opts.events, f, env, &id)?;
            let cs = cold_start(
                std::process::Command::new(opts.bootstrap(f)),
                f,
                Some(event.clone()),
            )
            .await?;
            let r = functions.get_mut(f).ok_or("unknown function")?;
            r.record(&cs);
            match cs.output {
                Some(Ok(output)) => finish_in_process(&deps, *step, event, output).await?,
                Some(Err(e)) => {
                    r.errors.push(format!("round {round}: {e}"));
                    return Err(format!("{f} answered an error to its sample event: {e}"));
                }
                None => {}
            }
        }
        eprint!("\rbench: cold starts, round {}/{}", round + 1, opts.runs);
    }
    eprintln!();

    // The API functions: their sample HTTP API (payload v2) requests, the
    // history page for `api` and a new schedule for `schedules`.
    for run in 0..opts.runs {
        for (f, file, expected) in [
            ("api", "api-history.json", 200),
            ("schedules", "schedules-create.json", 201),
        ] {
            let event = http_sample_event(&opts.events, file, env, run)?;
            let mut cmd = std::process::Command::new(opts.bootstrap(f));
            // The API functions' own configuration (template.yaml sets it on AWS).
            cmd.env("STATE_MACHINE_ARN", &c.endpoints.state_machine_arn)
                .env("SCHEDULE_GROUP", crate::provision::SCHEDULE_GROUP)
                .env("SCHEDULER_ROLE_ARN", crate::provision::SCHEDULER_ROLE);
            let cs = cold_start(cmd, f, Some(event)).await?;
            functions.get_mut(f).ok_or("unknown function")?.record(&cs);
            match cs.output {
                Some(Ok(v)) if v.get("statusCode") == Some(&json!(expected)) => {}
                other => return Err(format!("{f} answered {other:?} to its request")),
            }
        }
    }

    // Python reference.
    let mut python = Vec::new();
    for _ in 0..opts.runs {
        python.push(
            cold_start(python_reference(), "python-boto3", None)
                .await?
                .ready_ms,
        );
    }

    if opts.functions_only {
        let report = Report {
            runs: opts.runs,
            functions,
            python: Stats::of(&python),
            deployments: vec![],
            history_calls: BTreeMap::new(),
        };
        println!("{}", report.render().0);
        return Ok(());
    }

    // Deployments through the state machine.
    let deploy_env = "bench-deployments";
    seed::environment(c, deploy_env, 1, EnvironmentDefaults::default()).await?;
    let group = format!("{deploy_env}-asg");
    let mut deployments = Vec::new();
    for i in 0..opts.runs {
        deployments.push(deployment(c, deploy_env, &group).await?);
        eprint!("\rbench: deployments {}/{}", i + 1, opts.runs);
    }
    eprintln!();

    // The API's history page (make bench-api measures its latency).
    let api_bench = crate::bench::setup(c).await?;
    let history_calls = crate::bench::calls_per_request(&api_bench, &api_bench.history, 20).await?;

    let report = Report {
        runs: opts.runs,
        functions,
        python: Stats::of(&python),
        deployments,
        history_calls,
    };
    let (markdown, failures) = report.render();
    println!("{markdown}");
    write_report(&opts.out, &markdown)?;
    println!(
        "bench: wrote {} ({:.0} s)",
        opts.out.display(),
        started.elapsed().as_secs_f64()
    );
    if failures.is_empty() {
        println!("bench: every budget met");
        Ok(())
    } else {
        let mut msg = String::from("BUDGET EXCEEDED:\n");
        for f in &failures {
            let _ = writeln!(msg, "  ✘ {f}");
        }
        eprintln!("\n{msg}");
        Err(format!("{} budget(s) exceeded", failures.len()))
    }
}

/// An API function's sample HTTP API request from events/ (`<fn>-*.json`),
/// for environment `env` (the file's is `demo`); a schedule's `at` becomes
/// `run + 1` days from now in UTC (an environment's schedules are an hour
/// apart at least, and must be ahead).
fn http_sample_event(events: &Path, file: &str, env: &str, run: usize) -> Result<Value, String> {
    let path = events.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut v: Value = serde_json::from_str(
        &text.replace("/environments/demo/", &format!("/environments/{env}/")),
    )
    .map_err(|e| format!("{file}: {e}"))?;
    v["pathParameters"]["env"] = json!(env);
    if let Some(body) = v["body"].as_str() {
        let mut body: Value =
            serde_json::from_str(body).map_err(|e| format!("{file} body: {e}"))?;
        if body.get("at").is_some() {
            let at = chrono::Utc::now() + chrono::Duration::days(run as i64 + 1);
            body["at"] = json!(at.format("%Y-%m-%dT%H:%M:%S").to_string());
            body["timezone"] = json!("UTC");
        }
        v["body"] = json!(body.to_string());
    }
    Ok(v)
}

async fn gateway_calls(c: &Clients) -> Result<BTreeMap<String, u64>, String> {
    let (status, body) =
        crate::http::get(&format!("{}/_sandbox/calls", c.endpoints.autoscaling)).await?;
    if status != 200 {
        return Err(format!("gateway calls: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// The activity workers' own plumbing, which on AWS is Lambda's invoke.
fn is_worker_plumbing(key: &str) -> bool {
    matches!(
        key,
        "states:GetActivityTask" | "states:SendTaskSuccess" | "states:SendTaskFailure"
    )
}

/// One deployment through the state machine, measured.
async fn deployment(c: &Clients, env: &str, group: &str) -> Result<DeploymentRun, String> {
    let before = gateway_calls(c).await?;
    let id = harness::start_deployment(
        c,
        env,
        json!({"lockInstances": true, "stopPreparationServer": true, "notificationEmails": ["ops@example.com"]}),
    )
    .await?;
    // Wall time seen from here, polling every 20 ms (the emulator's
    // execution dates have whole-second resolution).
    let t0 = Instant::now();
    let arn = harness::execution_arn(c, &id);
    let status = loop {
        let out = c
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(|e| format!("DescribeExecution: {e:?}"))?;
        if out.status().as_str() != "RUNNING" {
            break out.status().as_str().to_string();
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(format!("deployment {id} still running after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall_s = t0.elapsed().as_secs_f64();
    if status != "SUCCEEDED" {
        return Err(format!("deployment {id} ended {status}"));
    }
    let after = gateway_calls(c).await?;
    let calls = after
        .iter()
        // `service:Action` keys only (the gateway also counts Auto Scaling
        // actions per group, without a service prefix).
        .filter(|(k, _)| k.contains(':') && !is_worker_plumbing(k))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();

    let mut run = DeploymentRun {
        calls,
        wall_s,
        ..Default::default()
    };
    let mut token = None;
    loop {
        let out = c
            .sfn
            .get_execution_history()
            .execution_arn(&arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("GetExecutionHistory: {e:?}"))?;
        for e in out.events() {
            let t = e.r#type().as_str();
            if t.ends_with("StateEntered") {
                run.transitions += 1;
            }
            if matches!(
                t,
                "TaskScheduled" | "ActivityScheduled" | "LambdaFunctionScheduled"
            ) {
                run.tasks += 1;
            }
            if t == "WaitStateEntered" {
                run.polls += 1;
                // The wait the step asked for: its result's waitSeconds (the
                // Wait state's SecondsPath) in the state entering the Wait.
                if let Some(d) = e.state_entered_event_details() {
                    let key = match d.name() {
                        "Wait for preparation server" => "stop",
                        "Wait for image" => "image",
                        _ => "replace",
                    };
                    let input: Value = d
                        .input()
                        .and_then(|i| serde_json::from_str(i).ok())
                        .unwrap_or(Value::Null);
                    run.waits_s += input[key]["waitSeconds"].as_f64().unwrap_or(0.0);
                }
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }

    // Detection delay: the refresh's end (as the gateway reports it) to the
    // end of the step that noticed it.
    let record = c
        .store
        .deployment(env, &id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no deployment record")?;
    let step_end = record.step(StepName::ReplaceInstances).ended_at;
    let refreshes = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(|e| format!("DescribeInstanceRefreshes: {e:?}"))?;
    let refresh_end = refreshes
        .instance_refreshes()
        .iter()
        .filter_map(|r| Some((r.start_time()?.as_nanos(), r.end_time()?.as_nanos())))
        .max()
        .map(|(_, end)| end);
    if let (Some(step_end), Some(end)) = (step_end, refresh_end) {
        let step_ns = step_end.timestamp_nanos_opt().unwrap_or(0) as i128;
        run.detection_s = Some((step_ns - end) as f64 / 1e9);
    }
    Ok(run)
}

/// Poll schedule of the adaptive wait (`Poll::again`) with base `base`: for
/// a job that ends at a uniformly random moment within `horizon` seconds,
/// the mean and worst delay until the next poll sees it, and the polls it
/// takes to see a job of `horizon` seconds.
fn poll_schedule(base: u64, horizon: u64) -> (f64, u64, usize) {
    let mut checks = vec![];
    let mut t = 0;
    let mut p = Poll::again(None, base);
    while t < horizon {
        t += p.wait_seconds;
        checks.push(t);
        p = Poll::again(Some(&p), base);
    }
    let (mut sum, mut worst) = (0u64, 0u64);
    for end in 1..=horizon {
        let seen = checks.iter().copied().find(|c| *c >= end).unwrap_or(end);
        sum += seen - end;
        worst = worst.max(seen - end);
    }
    (sum as f64 / horizon as f64, worst, checks.len())
}

struct Report {
    runs: usize,
    functions: BTreeMap<&'static str, FunctionResult>,
    python: Stats,
    deployments: Vec<DeploymentRun>,
    history_calls: BTreeMap<String, f64>,
}

const BEGIN: &str =
    "<!-- bench:begin (generated by `make bench`; edits between these markers are overwritten) -->";
const END: &str = "<!-- bench:end -->";

fn mb(bytes: f64) -> String {
    format!("{:.2}", bytes / 1e6)
}

impl Report {
    /// Markdown tables, and the budgets that failed.
    fn render(&self) -> (String, Vec<String>) {
        let mut out = String::new();
        let mut failures = vec![];
        let host = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|s| s.trim().to_string())
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "Measured {} UTC on {} ({} CPUs), x86_64 release bootstraps; medians of {} runs, (min–max).\n",
            chrono::Utc::now().format("%Y-%m-%d %H:%M"),
            host,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            self.runs
        );
        let _ = writeln!(out, "### Functions\n");
        let _ = writeln!(
            out,
            "| function | stripped B | zipped B | spawn→ready ms | boto3 ÷ Rust | spawn→response ms | peak RSS MB |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for f in FUNCTIONS {
            let r = &self.functions[f];
            let ready = Stats::of(&r.ready_ms);
            let response = Stats::of(&r.response_ms);
            let rss = Stats::of(&r.peak_rss);
            let _ = writeln!(
                out,
                "| {f} | {} | {} | {} | {:.0}× | {} | {} ({}–{}) |",
                r.stripped,
                r.zipped,
                ready.show(2),
                self.python.median / ready.median.max(1e-9),
                response.show(1),
                mb(rss.median),
                mb(rss.min),
                mb(rss.max),
            );
            if r.stripped > MAX_STRIPPED_BYTES {
                failures.push(format!(
                    "{f}: bootstrap {} B stripped > {MAX_STRIPPED_BYTES} B",
                    r.stripped
                ));
            }
            if r.zipped > MAX_ZIPPED_BYTES {
                failures.push(format!(
                    "{f}: bootstrap {} B zipped > {MAX_ZIPPED_BYTES} B",
                    r.zipped
                ));
            }
            if ready.median > MAX_SPAWN_TO_READY_MS {
                failures.push(format!(
                    "{f}: spawn→ready median {:.2} ms > {MAX_SPAWN_TO_READY_MS} ms",
                    ready.median
                ));
            }
            if rss.median > MAX_PEAK_RSS_BYTES as f64 {
                failures.push(format!(
                    "{f}: peak RSS median {} MB > {} MB",
                    mb(rss.median),
                    mb(MAX_PEAK_RSS_BYTES as f64)
                ));
            }
        }
        let _ = writeln!(
            out,
            "| python3 + boto3 (reference) | | | {} | 1× | | |\n",
            self.python.show(1)
        );
        let _ = writeln!(
            out,
            "spawn→ready: spawn of the bootstrap to its first `GET /2018-06-01/runtime/invocation/next` on a loopback runtime-API stub; \
             spawn→response: to its response to the sample event from events/ (AWS calls to the sandbox's emulator through its gateway); \
             peak RSS: `VmHWM` over init and that invocation. The reference runs `import boto3; boto3.client(\"ec2\")` then the same `GET`.\n"
        );

        // `--functions-only` measured no deployments: nothing to show or check.
        if !self.deployments.is_empty() {
            self.render_deployments(&mut out, &mut failures);
        }

        // Adaptive poll.
        let _ = writeln!(out, "### Adaptive poll (`Poll::again`, production base {PRODUCTION_POLL_SECONDS} s: 3 × base, 3 × 2·base, then 4·base)\n");
        let _ = writeln!(out, "| job ends within | polls to see it | mean detection delay s | worst s |\n|---|---:|---:|---:|");
        for minutes in [1u64, 5, 15, 30, 60] {
            let (mean, worst, n) = poll_schedule(PRODUCTION_POLL_SECONDS, minutes * 60);
            let _ = writeln!(out, "| {minutes} min | {n} | {mean:.1} | {worst} |");
        }
        let _ = writeln!(out);

        // Budgets.
        let _ = writeln!(out, "### Budgets\n");
        let _ = writeln!(
            out,
            "bootstrap ≤ {} MB stripped, ≤ {} MB zipped; spawn→ready ≤ {MAX_SPAWN_TO_READY_MS} ms; peak RSS ≤ {} MB; \
             state transitions ≤ {MAX_TRANSITIONS_BEYOND_POLLS} + {TRANSITIONS_PER_POLL} per poll; no Scan; the history page is one Query \
             (medians; MB = 10⁶ B).\n",
            mb(MAX_STRIPPED_BYTES as f64),
            mb(MAX_ZIPPED_BYTES as f64),
            mb(MAX_PEAK_RSS_BYTES as f64),
        );
        if failures.is_empty() {
            let _ = writeln!(out, "All met.");
        } else {
            let _ = writeln!(out, "**Exceeded:**\n");
            for f in &failures {
                let _ = writeln!(out, "- {f}");
            }
        }
        (out, failures)
    }

    /// The per-deployment tables and the API history page, with their budgets.
    fn render_deployments(&self, out: &mut String, failures: &mut Vec<String>) {
        // Deployments.
        let d = &self.deployments;
        let col =
            |f: &dyn Fn(&DeploymentRun) -> f64| Stats::of(&d.iter().map(f).collect::<Vec<_>>());
        let transitions = col(&|r| r.transitions as f64);
        let polls = col(&|r| r.polls as f64);
        let beyond = col(&|r| r.transitions as f64 - TRANSITIONS_PER_POLL * r.polls as f64);
        let tasks = col(&|r| r.tasks as f64);
        let wall = col(&|r| r.wall_s);
        let waits = col(&|r| r.waits_s);
        let overhead = col(&|r| r.wall_s - r.waits_s);
        let detection: Vec<f64> = d.iter().filter_map(|r| r.detection_s).collect();
        let _ = writeln!(out, "### One deployment (state machine in the sandbox, `pollSeconds` 1, lock instances + stop server)\n");
        let _ = writeln!(out, "| measure | median (min–max) |\n|---|---:|");
        let _ = writeln!(
            out,
            "| state transitions (states entered) | {} |",
            transitions.show(0)
        );
        let _ = writeln!(out, "| polls (Wait states entered) | {} |", polls.show(0));
        let _ = writeln!(
            out,
            "| transitions − {TRANSITIONS_PER_POLL:.0} × polls (budget ≤ {MAX_TRANSITIONS_BEYOND_POLLS:.0}) | {} |",
            beyond.show(0)
        );
        let _ = writeln!(out, "| task invocations | {} |", tasks.show(0));
        let _ = writeln!(out, "| wall time s | {} |", wall.show(2));
        let _ = writeln!(
            out,
            "| configured waits s (the steps' `waitSeconds`) | {} |",
            waits.show(0)
        );
        let _ = writeln!(
            out,
            "| orchestration overhead s (wall − waits) | {} |",
            overhead.show(2)
        );
        let _ = writeln!(
            out,
            "| detection delay s (refresh end → step end, 1 s base poll) | {} |\n",
            Stats::of(&detection).show(2)
        );
        if beyond.median > MAX_TRANSITIONS_BEYOND_POLLS {
            failures.push(format!(
                "state transitions: median {:.0} beyond 3 per poll > {MAX_TRANSITIONS_BEYOND_POLLS}",
                beyond.median
            ));
        }

        let mut actions: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for r in d {
            for k in r.calls.keys() {
                actions.entry(k).or_default();
            }
        }
        for (k, v) in actions.iter_mut() {
            *v = d
                .iter()
                .map(|r| r.calls.get(*k).copied().unwrap_or(0) as f64)
                .collect();
        }
        let total = col(&|r| r.calls.values().sum::<u64>() as f64);
        let _ = writeln!(out, "AWS API calls per deployment, by action (through the gateway; the activity workers' GetActivityTask/SendTask* stand for Lambda's invoke and are left out):\n");
        let _ = writeln!(out, "| service:Action | median (min–max) |\n|---|---:|");
        for (k, v) in &actions {
            let _ = writeln!(out, "| {k} | {} |", Stats::of(v).show(0));
        }
        let _ = writeln!(out, "| **total** | {} |\n", total.show(0));
        let scans: u64 = d
            .iter()
            .map(|r| r.calls.get("dynamodb:Scan").copied().unwrap_or(0))
            .sum::<u64>()
            + self
                .history_calls
                .get("Scan")
                .map(|v| (*v * 1000.0) as u64)
                .unwrap_or(0);
        if scans > 0 {
            failures.push(format!("{scans} DynamoDB Scan call(s)"));
        }

        // API history page.
        let calls: Vec<String> = self
            .history_calls
            .iter()
            .map(|(k, v)| format!("{k} {v:.2}"))
            .collect();
        let _ = writeln!(
            out,
            "API history page (`GET /environments/{{env}}/deployments?limit=20`, 250 deployments): DynamoDB calls per request: {}\n",
            calls.join(", ")
        );
        // The budget is about the page itself: one Query, never a Scan (other
        // single-item reads, such as the environment's existence check, are
        // shown above and not budgeted).
        let one_query = self
            .history_calls
            .get("Query")
            .is_some_and(|v| (*v - 1.0).abs() < 1e-9);
        if !one_query {
            failures.push(format!(
                "history page is not one Query: {}",
                calls.join(", ")
            ));
        }
    }
}

/// Replaces the generated part of the report (between the markers), keeping
/// what is written around it; a new file gets a title and the markers.
fn write_report(path: &Path, generated: &str) -> Result<(), String> {
    let existing = std::fs::read_to_string(path).unwrap_or_default();
    let block = format!("{BEGIN}\n{generated}\n{END}");
    let text = match (existing.find(BEGIN), existing.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!("{}{}{}", &existing[..b], block, &existing[e + END.len()..])
        }
        _ if existing.trim().is_empty() => format!("# Benchmarks\n\n{block}\n"),
        _ => format!("{}\n\n{block}\n", existing.trim_end()),
    };
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_median_min_max() {
        let s = Stats::of(&[3.0, 1.0, 2.0, 10.0]);
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(Stats::of(&[4.0, 1.0, 9.0]).median, 4.0);
    }

    #[test]
    fn poll_schedule_follows_poll_again() {
        // Base 15: checks at 15, 30, 45, 75, 105, 135, 195 …
        let (_, worst, n) = poll_schedule(15, 45);
        assert_eq!((worst, n), (14, 3));
        let (_, worst, _) = poll_schedule(15, 135);
        assert_eq!(worst, 29);
    }

    #[test]
    fn report_markers_keep_the_rest() {
        let dir = std::env::temp_dir().join(format!("bench-md-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("B.md");
        std::fs::write(
            &p,
            format!("# T\n\nintro\n\n{BEGIN}\nold\n{END}\n\nafter\n"),
        )
        .unwrap();
        write_report(&p, "new").unwrap();
        let s = std::fs::read_to_string(&p).unwrap();
        assert!(s.contains("intro") && s.contains("after") && s.contains("\nnew\n"));
        assert!(!s.contains("old"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
