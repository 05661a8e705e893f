//! The functions' sample events from events/, rewritten to act on a
//! deployment seeded for the run, and driving a step that answered "not
//! done yet" to its end in-process.

use crate::Clients;
use autosky_core::domain::StepName;
use autosky_core::domain::{new_deployment_id, Deployment, DeploymentOptions};
use autosky_core::steps::{self, Poll};
use autosky_core::store::Store;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Duration;

/// The sample events' deployment id, replaced by the seeded one.
const SAMPLE_DEPLOYMENT_ID: &str = "01JDXK2Q8V5W3N7R4T6Y9ZABCD";

/// The sample event of a function, rewritten for deployment `id` of
/// environment `env`.
pub fn sample_event(events: &Path, function: &str, env: &str, id: &str) -> Result<Value, String> {
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
    Ok(v)
}

/// The resume function's sample event (an instance stopped).
pub fn resume_sample_event(events: &Path) -> Result<Value, String> {
    let path = events.join("resume-instance-stopped.json");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Where Step Functions puts each waiting step's result (its ResultPath).
fn result_key(step: StepName) -> Option<&'static str> {
    match step {
        StepName::StopPreparationServer => Some("stop"),
        StepName::CreateImage => Some("image"),
        StepName::ReplaceInstances => Some("replace"),
        _ => None,
    }
}

/// Drives a step that answered "not done" to its end in-process, as the
/// state machine would (polling without the waits: the emulator is instant,
/// the refresh emulation takes a few phases).
pub async fn finish_in_process(
    deps: &autosky_core::Deps,
    step: StepName,
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
pub async fn seed_deployment(c: &Clients, env: &str) -> Result<String, String> {
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
        .create_deployment(&d, None)
        .await
        .map_err(|e| e.to_string())?;
    Ok(id)
}

/// An API function's sample HTTP API request from events/ (`<fn>-*.json`),
/// for environment `env` (the file's is `demo`); a schedule's `at` becomes
/// `run + 1` days from now in UTC (an environment's schedules are an hour
/// apart at least, and must be ahead).
pub fn http_sample_event(
    events: &Path,
    file: &str,
    env: &str,
    run: usize,
) -> Result<Value, String> {
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
