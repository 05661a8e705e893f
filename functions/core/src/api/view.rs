//! Deployments as the API shows them to operators: no internal runtime
//! memory, a console link, steps under their console names.

use crate::domain::{
    Deployment, DeploymentError, DeploymentOptions, DeploymentStatus, GeneratedVersion, IgnoredRun,
    RollbackOf, ScheduleInfo, StepName, StepRecord,
};
use chrono::{DateTime, Utc};
use serde::Serialize;

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
    /// A rollback deployment: the earlier deployment whose model it restores.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<RollbackOf>,
    /// The newest Succeeded deployment: its model is the one in service
    /// (history and details).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub in_service: bool,
    /// A Succeeded deployment whose model is kept and not in service: a
    /// rollback can restore it (history and details).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub can_roll_back: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<DeploymentError>,
    /// Once Finalization ran: per group, the versions its instances ended on
    /// ("all 2 instances on version 8").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fleet_versions: Option<std::collections::BTreeMap<String, String>>,
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
            rollback_of: d.rollback_of.clone(),
            in_service: false,
            can_roll_back: false,
            error: d.error.clone(),
            fleet_versions: (!d.runtime.fleet_versions.is_empty())
                .then(|| d.runtime.fleet_versions.clone()),
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

/// Step names as the API shows them (the console names).
pub fn step_names() -> Vec<&'static str> {
    StepName::ALL.iter().map(|s| s.as_str()).collect()
}
