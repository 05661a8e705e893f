//! The numbers operators watch in CloudWatch: each finished deployment's
//! metrics in CloudWatch's embedded metric format (EMF), as log lines — no
//! CloudWatch API call and no IAM permission of its own; CloudWatch Logs
//! extracts the metrics from the function's log group.
//!
//! Rendering is pure ([`documents`]); writing goes through a [`MetricSink`]
//! (stdout in the functions, a recorder in tests). Each document is one JSON
//! object on one line with nothing before or after it, written straight to
//! stdout rather than through the tracing formatter: a formatter's prefix
//! (text) or wrapping into its own object (JSON) would make the line no EMF
//! document, whichever log format the function has.
//!
//! Written once per deployment, with the write that ends it: by
//! Finalization, or by the API for a deployment that ends without running
//! (its execution or schedule could not be started, a schedule cancelled).
//!
//! Namespace [`NAMESPACE`]; per deployment one document:
//! - `Deployments` (Count, 1) and `DeploymentDuration` (Milliseconds, from
//!   the start of its execution to its end; only when a step ran), dimensions
//!   `{Environment, Status}` and `{Status}`;
//!
//! and per step that ran (it has a duration and did apply) one document:
//! - `StepDuration` (Milliseconds), dimensions `{Environment, Step}` and
//!   `{Step}` (`Step` as the record names it: "Create image").
//!
//! and per wait whose end AWS dates and a step noticed
//! (`runtime.waitsNoticed`: Replace instances following its refresh,
//! "Instance refresh"; Finalization following a rollback or restore refresh,
//! "Fleet restore") one document:
//! - `WaitDetectionDelay` (Milliseconds: from the refresh's EndTime to the
//!   poll that saw it ended), dimensions `{Environment, Wait}` and `{Wait}`.
//!
//! `DeploymentId` (and a step's `StepStatus`, a wait's `Group`) ride along
//! as plain members: searchable in the logs, not dimensions (one metric per
//! deployment would be a custom metric each).

use crate::domain::{Deployment, StepRecord, StepStatus, WaitNoticed};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use std::sync::Mutex;

/// The CloudWatch namespace of every metric below.
pub const NAMESPACE: &str = "Autosky/Deployments";
/// Count of deployments that ended (always 1 per document).
pub const DEPLOYMENTS: &str = "Deployments";
/// Milliseconds from the deployment's start to its end.
pub const DEPLOYMENT_DURATION: &str = "DeploymentDuration";
/// Milliseconds a step ran (from its first start to its end, waits included).
pub const STEP_DURATION: &str = "StepDuration";
/// Milliseconds from the end AWS reports for a wait to the poll that saw it.
pub const WAIT_DETECTION_DELAY: &str = "WaitDetectionDelay";
/// Dimension: which wait ("Instance refresh", "Fleet restore").
pub const WAIT: &str = "Wait";
/// Dimension: the environment id.
pub const ENVIRONMENT: &str = "Environment";
/// Dimension: the deployment's terminal status (Succeeded, Failed, RolledBack, Cancelled).
pub const STATUS: &str = "Status";
/// Dimension: the step's name as the record has it.
pub const STEP: &str = "Step";

/// Where the metric lines go.
pub trait MetricSink: Send + Sync {
    /// Writes one EMF document (one line, no newline in it).
    fn write(&self, line: &str);
}

/// The functions' sink: each document as its own line on stdout, which
/// Lambda sends to the function's log group.
pub struct Stdout;

impl MetricSink for Stdout {
    fn write(&self, line: &str) {
        use std::io::Write;
        // One locked write of the whole line: no other output can land inside it.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// Keeps the lines (tests).
#[derive(Default)]
pub struct Recorder(Mutex<Vec<String>>);

impl Recorder {
    pub fn lines(&self) -> Vec<String> {
        self.0.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl MetricSink for Recorder {
    fn write(&self, line: &str) {
        if let Ok(mut l) = self.0.lock() {
            l.push(line.to_string());
        }
    }
}

/// The documents of a deployment that has ended (empty while it has not).
pub fn documents(dep: &Deployment) -> Vec<Value> {
    if !dep.status.is_terminal() {
        return Vec::new();
    }
    let ended = dep.ended_at.unwrap_or(dep.created_at);
    let mut docs = vec![deployment_document(dep, ended)];
    docs.extend(
        dep.steps
            .iter()
            .filter_map(|s| step_document(dep, s, ended)),
    );
    docs.extend(
        dep.runtime
            .waits_noticed
            .iter()
            .map(|w| wait_document(dep, w)),
    );
    docs
}

/// Writes the deployment's documents to `sink`, one line each.
pub fn emit(sink: &dyn MetricSink, dep: &Deployment) {
    for doc in documents(dep) {
        sink.write(&doc.to_string());
    }
}

fn metadata(at: DateTime<Utc>, dimensions: Value, metrics: Value) -> Value {
    json!({
        "Timestamp": at.timestamp_millis(),
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": dimensions,
            "Metrics": metrics,
        }],
    })
}

fn deployment_document(dep: &Deployment, ended: DateTime<Utc>) -> Value {
    let mut doc = json!({
        "_aws": metadata(
            ended,
            json!([[ENVIRONMENT, STATUS], [STATUS]]),
            json!([{"Name": DEPLOYMENTS, "Unit": "Count"}]),
        ),
        ENVIRONMENT: dep.environment_id,
        STATUS: dep.status.as_str(),
        "DeploymentId": dep.deployment_id,
        DEPLOYMENTS: 1,
    });
    // Only a deployment that ran has a duration: one that never ran a step
    // (its execution or schedule could not be started, a schedule
    // cancelled) would pull the averages down with a zero.
    let ran = dep.started_at.is_some() && dep.steps.iter().any(|s| s.started_at.is_some());
    if let (Some(ms), true) = (dep.duration_ms, ran) {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array_mut()
            .expect("Metrics is an array")
            .push(json!({"Name": DEPLOYMENT_DURATION, "Unit": "Milliseconds"}));
        doc[DEPLOYMENT_DURATION] = json!(ms);
    }
    doc
}

fn step_document(dep: &Deployment, step: &StepRecord, ended: DateTime<Utc>) -> Option<Value> {
    // A step that did not apply (e.g. the server is not to be stopped)
    // only checked that: its few milliseconds would pull the step's
    // average down.
    if step.status == StepStatus::NotApplicable {
        return None;
    }
    let ms = step.duration_ms?;
    let status: &'static str = step.status.into();
    Some(json!({
        "_aws": metadata(
            step.ended_at.unwrap_or(ended),
            json!([[ENVIRONMENT, STEP], [STEP]]),
            json!([{"Name": STEP_DURATION, "Unit": "Milliseconds"}]),
        ),
        ENVIRONMENT: dep.environment_id,
        STEP: step.name.to_string(),
        "StepStatus": status,
        "DeploymentId": dep.deployment_id,
        STEP_DURATION: ms,
    }))
}

fn wait_document(dep: &Deployment, wait: &WaitNoticed) -> Value {
    json!({
        "_aws": metadata(
            wait.noticed_at,
            json!([[ENVIRONMENT, WAIT], [WAIT]]),
            json!([{"Name": WAIT_DETECTION_DELAY, "Unit": "Milliseconds"}]),
        ),
        ENVIRONMENT: dep.environment_id,
        WAIT: wait.wait,
        "Group": wait.group,
        "DeploymentId": dep.deployment_id,
        WAIT_DETECTION_DELAY: wait.delay_ms(),
    })
}

#[cfg(test)]
mod tests;
