//! `autosky-sandbox bench` (`make bench`): the functions' size, cold start and
//! memory, and what one deployment costs in AWS calls and state transitions,
//! measured against the sandbox, checked against the budgets ([`report`]),
//! and written to BENCHMARKS.md. A benchmark, not a test: it fails (non-zero exit)
//! when a median exceeds a budget, and the machine's noise is in its numbers.
//!
//! Per function (the release bootstraps of `make build`):
//! - size of `target/lambda/<fn>/bootstrap` (already stripped by the release
//!   profile) and of the zip Lambda would receive (deflate level 9, like
//!   `scripts/build-lambdas.sh`);
//! - spawn→ready: from spawning the bootstrap with `AWS_LAMBDA_RUNTIME_API`
//!   pointed at a runtime-API stub on loopback ([`stub`]) until its first
//!   `GET …/invocation/next`; spawn→response: until it posts the response to
//!   a sample event from events/ (ids rewritten to a deployment seeded for
//!   this run; for the API's two functions an HTTP API request: the history
//!   page, a new schedule), its AWS calls going to the sandbox's gateway;
//! - peak RSS of the process over init and that one invocation (`VmHWM`
//!   read while it idles in its next `GET …/next`, then it is killed);
//! - the same for the floor (`sandbox/floor`: a `lambda_runtime` function
//!   that echoes its event, same profile), each function's spawn→ready and
//!   peak RSS read as a ratio to it;
//! - the same spawn→ready for `python3` importing boto3 and creating an EC2
//!   client before its first `GET …/next` (the usual Python Lambda init).
//!
//! The six step functions run one deployment between them per round, in
//! pipeline order, so each meets the state its sample event expects; a step
//! that answers "not done yet" is driven to completion in-process
//! (`steps::run`, not measured) before the next one runs.
//!
//! Per deployment (state machine + activity workers), with the EC2 and Auto
//! Scaling events delivered and then dropped: AWS calls by `service:Action`
//! as counted by the gateway (the functions' calls; the workers' activity
//! plumbing, which stands in for Lambda's invoke, goes straight to the
//! emulator), states entered, tasks scheduled, polls (waiting states that
//! fell back to their timeout), wall time, and per wait how long after its
//! event the step noticed its end (detection delay).

mod cold_start;
mod deployment;
mod poll;
mod report;
mod rounds;
mod samples;
mod size;
mod stats;
mod stub;

pub use report::{
    MAX_PEAK_RSS_BYTES, MAX_SPAWN_TO_READY_MS, MAX_STRIPPED_BYTES, MAX_TRANSITIONS_BEYOND_POLLS,
    MAX_ZIPPED_BYTES, TRANSITIONS_PER_POLL,
};
pub use stats::Stats;

use crate::{seed, Clients};
use autosky_core::domain::EnvironmentDefaults;
use cold_start::ColdStart;
use report::{write_report, Report};
use size::zipped_size;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The nine functions of `make build`: the six steps in pipeline order
/// (first: the cold-start rounds index them by step), the resume function,
/// then the API's two.
pub const FUNCTIONS: [&str; 9] = [
    "validate",
    "stop-preparation-server",
    "create-image",
    "create-models",
    "replace-instances",
    "finalize",
    "resume",
    "api",
    "schedules",
];

/// Deployments measured with the events dropped (each takes the fallback
/// once per wait).
const DROPPED_RUNS: usize = 3;

/// The cold-start floor's binary (`sandbox/floor`, built by `make build`).
pub const FLOOR: &str = "floor";

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
    rounds::steps(c, opts, env, &mut functions).await?;
    rounds::api_functions(c, opts, env, &mut functions).await?;
    let python = rounds::python(opts.runs).await?;
    let floor = {
        let path = opts.bootstrap(FLOOR);
        let meta = std::fs::metadata(&path)
            .map_err(|e| format!("{}: {e} (run `make build` first)", path.display()))?;
        FunctionResult {
            stripped: meta.len(),
            zipped: zipped_size(&path)?,
            ..rounds::floor(opts).await?
        }
    };

    let stages = rounds::stages(c, opts).await?;

    if opts.functions_only {
        let report = Report {
            runs: opts.runs,
            functions,
            floor,
            stages,
            python: Stats::of(&python),
            deployments: vec![],
            dropped: vec![],
            fallback_s: crate::provision::wait_fallback_seconds(),
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
        deployments.push(deployment::measure(c, deploy_env, &group).await?);
        eprint!("\rbench: deployments {}/{}", i + 1, opts.runs);
    }
    eprintln!();
    // With the events dropped each wait takes the fallback: fewer runs.
    let mut dropped = Vec::new();
    c.endpoints.drop_events(true).await?;
    for i in 0..opts.runs.min(DROPPED_RUNS) {
        let run = deployment::measure(c, deploy_env, &group).await;
        eprint!(
            "\rbench: deployments with events dropped {}/{}",
            i + 1,
            opts.runs.min(DROPPED_RUNS)
        );
        match run {
            Ok(r) => dropped.push(r),
            Err(e) => {
                c.endpoints.drop_events(false).await?;
                return Err(e);
            }
        }
    }
    c.endpoints.drop_events(false).await?;
    eprintln!();

    // The API's history page (make bench-api measures its latency).
    let api_bench = crate::bench::api::setup(c).await?;
    let history_calls =
        crate::bench::api::calls_per_request(&api_bench, &api_bench.history, 20).await?;

    let report = Report {
        runs: opts.runs,
        functions,
        floor,
        stages,
        python: Stats::of(&python),
        deployments,
        dropped,
        fallback_s: crate::provision::wait_fallback_seconds(),
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
