//! `autosky-sandbox`: the Autosky pipeline on a local AWS emulator.
//!   up [--no-seed] [--ready-line] [--refresh-phase-ms N] [--ec2-ms N] [--iam off]
//!                                              start with the demo environment (unless
//!                                              --no-seed) and keep running (Ctrl-C stops);
//!                                              --iam off: no IAM enforcement (also AUTOSKY_IAM=off)
//!                                              --ec2-ms: how long a new AMI stays pending (and
//!                                              invisible half that), an instance stopping or
//!                                              pending (default 1000, also SANDBOX_EC2_MS; 0: at
//!                                              once; --ec2-polls N / SANDBOX_EC2_POLLS: N × 1000)
//!                                              AUTOSKY_SANDBOX_DROP_EVENTS=1: EC2 and Auto Scaling
//!                                              events recorded, not delivered
//!   demo                                       one deployment end to end, then stop
//!   iam-summary FILE                           the IAM figures of a `make test` run (fails on a denial)
//!   bench-api                                  API latency and DynamoDB calls per request
//!   bench [--runs N] [--bootstraps DIR] [--out FILE] [--functions-only]
//!                                              functions' size, cold start, memory; per-deployment
//!                                              calls and transitions; budgets; BENCHMARKS.md

use autosky_sandbox::{demo, harness, Clients, Ports, Sandbox};
use std::process::ExitCode;
use std::time::{Duration, Instant};

const USAGE: &str =
    "usage: autosky-sandbox up [--no-seed] [--ready-line] [--refresh-phase-ms N] [--ec2-ms N] [--iam off] | demo | iam-summary FILE | bench-api \
                     | bench [--runs N] [--bootstraps DIR] [--out FILE] [--functions-only]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first().cloned() else {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    };
    if command == "iam-summary" {
        return iam_summary(args.get(1));
    }
    let ready_line = args.iter().any(|a| a == "--ready-line");
    let seed = !args.iter().any(|a| a == "--no-seed");
    let phase_ms = args
        .iter()
        .position(|a| a == "--refresh-phase-ms")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        // bench: short refresh phases, so the replace step's polls are few.
        .unwrap_or(if command == "bench" { 200 } else { 500 });
    let bench = match command.as_str() {
        "bench" => match autosky_sandbox::bench::functions::Options::from_args(&args) {
            Ok(o) => Some(o),
            Err(e) => {
                eprintln!("sandbox: {e}\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => None,
    };
    if !matches!(command.as_str(), "up" | "demo" | "bench-api" | "bench") {
        eprintln!("{USAGE}");
        return ExitCode::from(2);
    }
    let ports = match Ports::pick() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Before the runtime starts any thread: the workers read this environment
    // exactly as a Lambda function reads its configuration.
    ports.export_env();
    for (flag, var) in [
        ("--ec2-ms", autosky_sandbox::bridge::EC2_MS_VAR),
        ("--ec2-polls", autosky_sandbox::bridge::EC2_POLLS_VAR),
    ] {
        if let Some(n) = args
            .iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse::<u64>().ok())
        {
            // SAFETY (edition 2024 wording): no thread exists yet.
            std::env::set_var(var, n.to_string());
        }
    }
    if args.windows(2).any(|w| w[0] == "--iam" && w[1] == "off") {
        // SAFETY (edition 2024 wording): no thread exists yet.
        std::env::set_var(autosky_sandbox::iam::MODE_VAR, "off");
    }
    if std::env::var_os("RUST_LOG").is_some() {
        lambda_runtime::tracing::init_default_subscriber();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sandbox: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        let t0 = Instant::now();
        eprintln!("sandbox: starting the local AWS emulator (fakecloud), the Auto Scaling bridge and the step workers");
        let sandbox = Sandbox::start(&ports, Duration::from_millis(phase_ms)).await?;
        let e = sandbox.endpoints.clone();
        eprintln!("sandbox: up in {:.1} s", t0.elapsed().as_secs_f64());
        match sandbox.iam {
            Some(n) => eprintln!("IAM: enforced ({n} policies)"),
            None => eprintln!("IAM: off (--iam off / {}=off)", autosky_sandbox::iam::MODE_VAR),
        }
        let result = match command.as_str() {
            "demo" => demo::run(&Clients::new(&e)).await,
            "bench-api" => autosky_sandbox::bench::api::run(&Clients::new(&e)).await,
            "bench" => match &bench {
                Some(o) => autosky_sandbox::bench::functions::run(&Clients::new(&e), o).await,
                None => Ok(()),
            },
            _ => {
                if seed {
                    eprintln!("sandbox: seeding the demo environment '{}' (a preparation server, a launch template, a group with 2 instances)", demo::ENVIRONMENT);
                    if let Err(err) = demo::seed(&Clients::new(&e)).await {
                        sandbox.stop().await;
                        return Err(err);
                    }
                    println!("Page: {}", e.page_url(demo::ENVIRONMENT));
                    println!(
                        "CLI: cargo run -q -p autosky -- --api {} deploy {} --wait",
                        e.api,
                        demo::ENVIRONMENT
                    );
                }
                println!("API: {}", e.api);
                println!("Emulator: {}", e.emulator);
                println!("Auto Scaling bridge: {}", e.autoscaling);
                println!("State machine: {}", e.state_machine_arn);
                println!("Table: {}", e.table);
                if ready_line {
                    println!("{}{}", harness::READY, serde_json::to_string(&e).unwrap_or_default());
                }
                wait_for_stop(ready_line).await;
                Ok(())
            }
        };
        sandbox.stop().await;
        result
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sandbox: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints the IAM enforcement's summed figures of a `make test` run; fails
/// when a call was denied (no test expects a denial from the template's own
/// policies) or a sandbox wrote no report.
fn iam_summary(path: Option<&String>) -> ExitCode {
    use autosky_sandbox::iam::figures;
    let Some(path) = path else {
        eprintln!("usage: autosky-sandbox iam-summary FILE");
        return ExitCode::from(2);
    };
    match figures::summarize(path, Duration::from_secs(15)) {
        Ok(figures::Summary {
            report,
            denied_on_purpose,
        }) => {
            println!("{}", report.summary());
            for d in &report.denials {
                println!("  {d}");
            }
            if denied_on_purpose > 0 {
                println!(
                    "IAM: and {denied_on_purpose} calls denied on purpose (tests/iam.rs: untagged resources, another role, weakened policies)"
                );
            }
            if report.denied == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("iam-summary: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Ctrl-C, SIGTERM, or (for a parent process) our stdin closing.
async fn wait_for_stop(watch_stdin: bool) {
    use tokio::io::AsyncReadExt;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let stdin_closed = async {
        if watch_stdin {
            let mut buf = [0u8; 64];
            let mut stdin = tokio::io::stdin();
            while matches!(stdin.read(&mut buf).await, Ok(n) if n > 0) {}
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {},
        _ = stdin_closed => {},
    }
}
