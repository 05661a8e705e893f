//! `autosky`: the Deployments command line. Every command is one or a few
//! calls to the public API (the same routes the page uses); `--output json`
//! prints the API's JSON. Exit codes: 0 success, 1 the deployment did not
//! succeed (with `--wait`), 2 bad usage or an API / connection error.

mod client;
mod render;

use clap::{Parser, Subcommand, ValueEnum};
use client::{ApiClient, ApiError};
use serde_json::{json, Value};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "autosky",
    version,
    about = "Deploy a preparation server as the new version of an Auto Scaling fleet, through the Autosky Deployments API",
    after_help = "The API URL comes from --api or AUTOSKY_API_URL (the sandbox prints it: `make sandbox` → \"API: http://127.0.0.1:PORT\"). https URLs are SigV4-signed with your AWS credentials unless --token (JWT) is given."
)]
struct Cli {
    /// Base URL of the Deployments API.
    #[arg(long, env = "AUTOSKY_API_URL", global = true)]
    api: Option<String>,
    /// Bearer token for an API behind the JWT authorizer.
    #[arg(long, env = "AUTOSKY_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// AWS region for SigV4 (default: from the execute-api URL).
    #[arg(long, global = true)]
    region: Option<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = Output::Text, global = true)]
    output: Output,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Text,
    Json,
}

#[derive(clap::Args, Debug, Clone)]
struct Options {
    /// Suspend the group's AZ rebalancing, alarm and scheduled scaling meanwhile.
    #[arg(long)]
    lock_instances: bool,
    /// Stop the preparation server while the image is created.
    #[arg(long)]
    stop_preparation_server: bool,
    /// E-mail address to notify (repeat for several).
    #[arg(long = "notify", value_name = "EMAIL")]
    notify: Vec<String>,
    /// Also e-mail when the deployment starts.
    #[arg(long)]
    notify_on_start: bool,
}

impl Options {
    fn body(&self) -> Value {
        let mut b = json!({});
        // Only what was asked for: the rest takes the environment's defaults.
        if self.lock_instances {
            b["lockInstances"] = json!(true);
        }
        if self.stop_preparation_server {
            b["stopPreparationServer"] = json!(true);
        }
        if !self.notify.is_empty() {
            b["notificationEmails"] = json!(self.notify);
        }
        if self.notify_on_start {
            b["notifyOnStart"] = json!(true);
        }
        b
    }
}

/// A rollback's options: it takes no image, so it never stops the server.
#[derive(clap::Args, Debug, Clone)]
struct RollbackOptions {
    /// Suspend the group's AZ rebalancing, alarm and scheduled scaling meanwhile.
    #[arg(long)]
    lock_instances: bool,
    /// E-mail address to notify (repeat for several).
    #[arg(long = "notify", value_name = "EMAIL")]
    notify: Vec<String>,
    /// Also e-mail when the rollback starts.
    #[arg(long)]
    notify_on_start: bool,
}

impl RollbackOptions {
    fn body(&self) -> Value {
        Options {
            lock_instances: self.lock_instances,
            stop_preparation_server: false,
            notify: self.notify.clone(),
            notify_on_start: self.notify_on_start,
        }
        .body()
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start a deployment now.
    Deploy {
        env: String,
        #[command(flatten)]
        options: Options,
        /// Follow it step by step until it ends; exit 1 unless it succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Schedule a deployment at a local date and time.
    Schedule {
        env: String,
        /// Local date-time, e.g. 2026-12-01T22:00 (in --timezone).
        #[arg(long)]
        at: String,
        /// IANA time zone, e.g. Europe/Paris (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        #[command(flatten)]
        options: Options,
    },
    /// Put an earlier Succeeded deployment's version (launch template
    /// version and AMI) back in service: a rollback deployment.
    Rollback {
        env: String,
        /// The deployment whose version to restore (see `history`: "can roll back").
        id: String,
        #[command(flatten)]
        options: RollbackOptions,
        /// Follow it step by step until it ends; exit 1 unless it succeeds.
        #[arg(long)]
        wait: bool,
    },
    /// Cancel a running or scheduled deployment.
    Cancel { env: String, id: String },
    /// Deployment history, newest first.
    History {
        env: String,
        /// At most this many (1-100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
        /// Only deployments in this status.
        #[arg(long)]
        status: Option<String>,
    },
    /// One deployment in detail: steps and their actions.
    Show {
        env: String,
        id: String,
        /// Follow it until it ends (like deploy --wait).
        #[arg(long)]
        wait: bool,
    },
    /// Registered environments.
    Envs,
    /// Who changed what on an environment, newest first.
    Audit {
        env: String,
        /// At most this many (1-100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
}

fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn print(output: Output, value: &Value, text: impl FnOnce(&Value) -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Text => print!("{}", text(value)),
    }
}

async fn run(cli: Cli) -> Result<ExitCode, String> {
    let base = cli.api.clone().ok_or(
        "no API URL: pass --api URL or set AUTOSKY_API_URL (the sandbox prints it as \"API: http://127.0.0.1:PORT\")",
    )?;
    let auth = ApiClient::auth_for(&base, cli.token.clone(), cli.region.clone());
    let api = ApiClient::new(&base, auth)?;
    let out = cli.output;
    // With --output json an API error is printed as the API's problem JSON.
    let fail = |e: ApiError| match (&e, out) {
        (ApiError::Problem { body, .. }, Output::Json) if body.is_object() => body.to_string(),
        _ => e.to_string(),
    };
    match cli.command {
        Command::Envs => {
            let v = api.get("/environments").await.map_err(fail)?;
            print(out, &v, render::environments);
        }
        Command::History { env, limit, status } => {
            let mut q = format!("?limit={limit}");
            if let Some(s) = status {
                q.push_str(&format!("&status={}", path_segment(&s)));
            }
            let v = api
                .get(&format!(
                    "/environments/{}/deployments{q}",
                    path_segment(&env)
                ))
                .await
                .map_err(fail)?;
            print(out, &v, render::history);
        }
        Command::Audit { env, limit } => {
            let v = api
                .get(&format!(
                    "/environments/{}/audit?limit={limit}",
                    path_segment(&env)
                ))
                .await
                .map_err(fail)?;
            print(out, &v, render::audit);
        }
        Command::Show { env, id, wait } => {
            let path = format!(
                "/environments/{}/deployments/{}",
                path_segment(&env),
                path_segment(&id)
            );
            if wait {
                return follow(&api, &path, out).await;
            }
            let v = api.get(&path).await.map_err(fail)?;
            print(out, &v, render::details);
        }
        Command::Deploy { env, options, wait } => {
            let v = api
                .call(
                    "POST",
                    &format!("/environments/{}/deployments", path_segment(&env)),
                    Some(&options.body()),
                )
                .await
                .map_err(fail)?;
            return started(&api, &env, v, wait, out).await;
        }
        Command::Rollback {
            env,
            id,
            options,
            wait,
        } => {
            let v = api
                .call(
                    "POST",
                    &format!(
                        "/environments/{}/deployments/{}/rollback",
                        path_segment(&env),
                        path_segment(&id)
                    ),
                    Some(&options.body()),
                )
                .await
                .map_err(fail)?;
            return started(&api, &env, v, wait, out).await;
        }
        Command::Schedule {
            env,
            at,
            timezone,
            options,
        } => {
            let mut body = options.body();
            body["at"] = json!(at);
            if let Some(tz) = timezone {
                body["timezone"] = json!(tz);
            }
            let v = api
                .call(
                    "POST",
                    &format!("/environments/{}/schedules", path_segment(&env)),
                    Some(&body),
                )
                .await
                .map_err(fail)?;
            print(out, &v, |v| {
                format!(
                    "Deployment {} scheduled on {env} for {} {} ({})\n",
                    v["deploymentId"].as_str().unwrap_or("?"),
                    v["schedule"]["at"]
                        .as_str()
                        .unwrap_or("?")
                        .replace('T', " "),
                    v["schedule"]["timezone"].as_str().unwrap_or("UTC"),
                    v["scheduledFor"].as_str().unwrap_or("?"),
                )
            });
        }
        Command::Cancel { env, id } => {
            let v = api
                .call(
                    "POST",
                    &format!(
                        "/environments/{}/deployments/{}/cancel",
                        path_segment(&env),
                        path_segment(&id)
                    ),
                    None,
                )
                .await
                .map_err(fail)?;
            print(out, &v, |v| match v["status"].as_str() {
                Some("Running") => {
                    format!("Deployment {id}: cancellation requested; Finalization will clean up\n")
                }
                Some(s) => format!("Deployment {id}: {s}\n"),
                None => String::new(),
            });
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A deployment (or rollback) the API accepted: followed with `--wait`,
/// else its id and status.
async fn started(
    api: &ApiClient,
    env: &str,
    v: Value,
    wait: bool,
    out: Output,
) -> Result<ExitCode, String> {
    let id = v["deploymentId"].as_str().unwrap_or_default().to_string();
    let what = match v["rollbackOf"]["launchTemplateVersion"].as_i64() {
        Some(n) => format!("Rollback to version {n}"),
        None => "Deployment".to_string(),
    };
    if wait {
        if out == Output::Text {
            println!("{what} {id} started on {env}");
        }
        return follow(
            api,
            &format!("/environments/{}/deployments/{id}", path_segment(env)),
            out,
        )
        .await;
    }
    print(out, &v, |v| {
        format!(
            "{what} {id} started on {env} ({})\n",
            v["status"].as_str().unwrap_or("?")
        )
    });
    Ok(ExitCode::SUCCESS)
}

/// Polls the deployment until it ends, drawing the steps as they progress.
async fn follow(api: &ApiClient, path: &str, out: Output) -> Result<ExitCode, String> {
    let mut view = render::Progress::new(out == Output::Text);
    loop {
        let d = api.get(path).await.map_err(|e| e.to_string())?;
        let status = d["status"].as_str().unwrap_or("").to_string();
        view.draw(&d);
        if !matches!(status.as_str(), "Running" | "Scheduled") {
            view.finish(&d);
            if out == Output::Json {
                println!("{}", serde_json::to_string_pretty(&d).unwrap_or_default());
            }
            return Ok(if status == "Succeeded" {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        tokio::time::sleep(Duration::from_millis(if status == "Scheduled" {
            5000
        } else {
            1000
        }))
        .await;
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("autosky: {e}");
            ExitCode::from(2)
        }
    }
}
