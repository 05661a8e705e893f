//! The `autosky` binary against the local sandbox: deploy with live progress,
//! a failing deployment's exit code, schedule and cancel, history/show/envs/audit,
//! JSON output and helpful errors.

use autosky_core::domain::EnvironmentDefaults;
use autosky_sandbox::{harness, seed, Clients, Endpoints};
use serde_json::Value;
use std::path::PathBuf;
use std::process::{Command, Output};

/// The sandbox binary sits next to ours in the target dir; build it if this
/// test binary was built alone.
fn sandbox() -> &'static Endpoints {
    static BIN: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let bin = BIN.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_BIN_EXE_autosky"))
            .parent()
            .unwrap()
            .to_path_buf();
        let bin = dir.join("autosky-sandbox");
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let ok = Command::new(cargo)
                .args(["build", "-q", "-p", "autosky-sandbox"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot build autosky-sandbox");
        }
        bin
    });
    harness::shared(bin.to_str().unwrap())
}

fn autosky(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_autosky"))
        .args(args)
        .env("AUTOSKY_API_URL", &sandbox().api)
        .env_remove("AUTOSKY_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

async fn environment(env: &str) -> seed::Seeded {
    let c = Clients::new(sandbox());
    seed::environment(&c, env, 1, EnvironmentDefaults::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn deploy_waits_with_progress_then_history_show_and_envs_agree() {
    environment("cli-run").await;
    let o = autosky(&[
        "deploy",
        "cli-run",
        "--lock-instances",
        "--notify",
        "cli@example.com",
        "--wait",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    // Not a terminal: one line per step change, each with the progress bar.
    for step in [
        "Initial validation",
        "Create image",
        "Create models",
        "Replace instances",
        "Finalization",
    ] {
        assert!(out.contains(step), "{step} missing:\n{out}");
    }
    assert!(out.contains("6/6"), "{out}");
    let id = out
        .lines()
        .find_map(|l| {
            l.strip_prefix("Deployment ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap()
        .to_string();
    assert!(out.contains(&format!("Deployment {id} Succeeded")), "{out}");

    let o = autosky(&["history", "cli-run", "-o", "json"]);
    let page: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(page["items"][0]["deploymentId"], id.as_str());
    assert_eq!(page["items"][0]["status"], "Succeeded");
    assert_eq!(page["items"][0]["options"]["lockInstances"], true);

    let (table, _) = text(&autosky(&["history", "cli-run"]));
    assert!(
        table.contains(&id) && table.contains("✔ Succeeded"),
        "{table}"
    );
    let (details, _) = text(&autosky(&["show", "cli-run", &id]));
    assert!(
        details.contains("Owner:") && details.contains("Model version:"),
        "{details}"
    );
    assert!(
        details.contains("Instances locked on group"),
        "actions are listed:\n{details}"
    );
    let (envs, _) = text(&autosky(&["envs"]));
    assert!(envs.lines().any(|l| l.starts_with("cli-run ")), "{envs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deployment_that_fails_exits_1_with_its_error() {
    let seeded = environment("cli-fail").await;
    let c = Clients::new(sandbox());
    harness::set_refresh_outcome(&c, &seeded.environment.auto_scaling_groups[0], "Failed")
        .await
        .unwrap();
    let o = autosky(&["deploy", "cli-fail", "--wait"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(out.contains("Failed"), "{out}");
    assert!(err.contains("RefreshFailed in Replace instances"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn schedule_then_cancel() {
    environment("cli-sched").await;
    let at = (chrono::Utc::now() + chrono::Duration::hours(2))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let o = autosky(&[
        "schedule",
        "cli-sched",
        "--at",
        &at,
        "--timezone",
        "UTC",
        "-o",
        "json",
    ]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let d: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(d["status"], "Scheduled");
    let id = d["deploymentId"].as_str().unwrap();
    let o = autosky(&["cancel", "cli-sched", id]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("Cancelled"), "{out}");
    let page: Value =
        serde_json::from_slice(&autosky(&["history", "cli-sched", "-o", "json"]).stdout).unwrap();
    assert_eq!(page["items"][0]["status"], "Cancelled");
    // Cancelling again is refused with the API's reason.
    let o = autosky(&["cancel", "cli-sched", id]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("HTTP 409"), "{}", text(&o).1);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_are_helpful_and_change_nothing() {
    environment("cli-bad").await;
    let o = autosky(&["deploy", "cli-bad", "--notify", "not-an-address"]);
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("notificationEmails") && err.contains("HTTP 400"),
        "{err}"
    );
    let o = autosky(&[
        "schedule",
        "cli-bad",
        "--at",
        "2026-01-01T00:00",
        "--timezone",
        "Mars/Base",
    ]);
    assert!(text(&o).1.contains("field timezone"), "{}", text(&o).1);
    let page: Value =
        serde_json::from_slice(&autosky(&["history", "cli-bad", "-o", "json"]).stdout).unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 0);
    // No URL, or nothing listening there.
    let o = Command::new(env!("CARGO_BIN_EXE_autosky"))
        .args(["envs"])
        .env_remove("AUTOSKY_API_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("no API URL"), "{}", text(&o).1);
    let o = Command::new(env!("CARGO_BIN_EXE_autosky"))
        .args(["--api", "http://127.0.0.1:9", "envs"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("cannot reach the API at http://127.0.0.1:9"),
        "{}",
        text(&o).1
    );
}

/// Run as `caller` of `groups` (through a forwarder naming them to the
/// sandbox, as a JWT authorizer would).
async fn autosky_as(groups: &[&str], args: &[&str]) -> Output {
    let url = autosky_sandbox::caller_proxy::start(&sandbox().api, "cli@example.com", groups)
        .await
        .unwrap();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_autosky"))
            .args(&args)
            .env("AUTOSKY_API_URL", &url)
            .env_remove("AUTOSKY_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_viewer_is_told_which_role_deploying_needs_and_a_stranger_sees_nothing() {
    use autosky_core::store::Store;
    let seeded = environment("cli-roles").await;
    let mut env = seeded.environment.clone();
    env.access = Some(autosky_core::domain::AccessMap {
        viewers: vec!["cli-viewers".into()],
        ..Default::default()
    });
    Clients::new(sandbox())
        .store
        .put_environment(&env, None)
        .await
        .unwrap();

    let o = autosky_as(&["cli-viewers"], &["deploy", "cli-roles"]).await;
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("starting a deployment on environment 'cli-roles' needs the deployer role; you are a viewer")
            && err.contains("HTTP 403"),
        "{err}"
    );
    let o = autosky_as(&["cli-viewers"], &["envs", "-o", "json"]).await;
    let list: Value = serde_json::from_slice(&o.stdout).unwrap();
    let ids: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environmentId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["cli-roles"], "a viewer lists only its environments");
    let page: Value = serde_json::from_slice(
        &autosky_as(&["cli-viewers"], &["history", "cli-roles", "-o", "json"])
            .await
            .stdout,
    )
    .unwrap();
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        0,
        "nothing was started"
    );

    let o = autosky_as(&["sales"], &["history", "cli-roles"]).await;
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o)
            .1
            .contains("environment 'cli-roles' is not registered")
            && text(&o).1.contains("HTTP 404"),
        "{}",
        text(&o).1
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn audit_lists_who_started_a_deployment() {
    environment("cli-audit").await;
    let o = autosky(&["deploy", "cli-audit", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let o = autosky(&["audit", "cli-audit"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[1].contains("StartDeployment")
            && lines[1].contains("local:developer")
            && lines[1].ends_with("status = \"Running\""),
        "{out}"
    );
    let o = autosky(&["audit", "cli-nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("not registered"), "{:?}", text(&o));
}

/// The id `autosky deploy` printed.
fn deployed_id(out: &str) -> String {
    out.lines()
        .find_map(|l| {
            l.strip_prefix("Deployment ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn rollback_restores_an_earlier_version_and_history_says_so() {
    environment("cli-rollback").await;
    let (first, _) = text(&autosky(&["deploy", "cli-rollback", "--wait"]));
    let first = deployed_id(&first);
    let o = autosky(&["deploy", "cli-rollback", "--wait"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let (table, _) = text(&autosky(&["history", "cli-rollback"]));
    let row = |table: &str, id: &str| {
        table
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_default()
            .to_string()
    };
    assert!(row(&table, &first).ends_with("can roll back"), "{table}");

    let o = autosky(&["rollback", "cli-rollback", &first, "--wait"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.starts_with("Rollback to version 2 "), "{out}");
    let id = out.split_whitespace().nth(4).unwrap().to_string();
    assert!(out.contains(&format!("Deployment {id} Succeeded")), "{out}");
    let (table, _) = text(&autosky(&["history", "cli-rollback"]));
    assert!(
        row(&table, &id).ends_with(&format!(
            "Rollback to version 2 — deployment {first}; in service"
        )),
        "{table}"
    );
    let (details, _) = text(&autosky(&["show", "cli-rollback", &id]));
    assert!(
        details.contains("Rollback to:   version 2 with image ami-"),
        "{details}"
    );

    // Its version is in service now: refused, with the API's reason.
    let o = autosky(&["rollback", "cli-rollback", &first]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(
        err.contains("409") && err.contains("is already in service"),
        "{err}"
    );
}
