//! What the API returns: deployments as operators see them (no internal
//! runtime memory; a console link), and RFC 9457 problem details.

use super::ApiResponse;
use crate::domain::{
    Deployment, DeploymentError, DeploymentOptions, DeploymentStatus, GeneratedVersion, IgnoredRun,
    ScheduleInfo, StepRecord,
};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Map, Value};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StepView {
    pub name: &'static str,
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actions: Option<Vec<crate::domain::Action>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentView {
    pub deployment_id: String,
    pub environment_id: String,
    pub status: DeploymentStatus,
    pub owner: String,
    pub options: DeploymentOptions,
    pub created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    /// The operator's local time and zone, and the schedule's name and group.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generated_version: Option<GeneratedVersion>,
    /// The main model's launch template version number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_version: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<DeploymentError>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_url: Option<String>,
    /// Who asked to cancel it, once someone has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    /// Executions that found this deployment already handled and ended
    /// without touching anything (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ignored_runs: Option<Vec<IgnoredRun>>,
    pub steps: Vec<StepView>,
}

impl DeploymentView {
    /// `details` adds each step's actions (history pages leave them out).
    pub fn new(d: &Deployment, region: &str, details: bool) -> Self {
        let step = |s: &StepRecord| StepView {
            name: s.name.as_str(),
            status: s.status.as_str(),
            started_at: s.started_at,
            ended_at: s.ended_at,
            duration_ms: s.duration_ms,
            actions: details.then(|| s.actions.clone()),
        };
        Self {
            deployment_id: d.deployment_id.clone(),
            environment_id: d.environment_id.clone(),
            status: d.status,
            owner: d.owner.clone(),
            options: d.options.clone(),
            created_at: d.created_at,
            scheduled_for: d.scheduled_for,
            schedule: d.schedule.clone(),
            started_at: d.started_at,
            ended_at: d.ended_at,
            duration_ms: d.duration_ms,
            generated_version: d.generated_version.clone(),
            model_version: d.runtime.main_version,
            error: d.error.clone(),
            execution_arn: d.execution_arn.clone(),
            console_url: d
                .execution_arn
                .as_deref()
                .map(|a| crate::email::console_url(region, a)),
            cancelled_by: d.cancelled_by.clone(),
            ignored_runs: (details && !d.ignored_runs.is_empty()).then(|| d.ignored_runs.clone()),
            steps: d.steps.iter().map(step).collect(),
        }
    }
}

/// An `application/problem+json` error.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    /// Extension members (rare; boxed to keep `Result<_, Problem>` small).
    pub extra: Option<Box<Map<String, Value>>>,
}

impl Problem {
    pub fn new(status: u16, title: &'static str, detail: &str) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            extra: None,
        }
    }

    pub fn bad_request(detail: &str) -> Self {
        Self::new(400, "Bad request", detail)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.into(), value);
        self
    }

    /// Names the offending input field (the page shows the error next to it).
    pub fn field(self, name: &str) -> Self {
        self.with("field", json!(name))
    }

    pub fn response(&self) -> ApiResponse {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if let (Value::Object(m), Some(extra)) = (&mut body, &self.extra) {
            m.extend(extra.as_ref().clone());
        }
        ApiResponse {
            status: self.status,
            headers: vec![("content-type".into(), "application/problem+json".into())],
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}
