//! Domain types: scaling environments, deployments, their steps and actions.
//! These are the records the store persists and the API shows, so field names
//! (camelCase in JSON and DynamoDB) are part of the public contract.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Default number of launch template versions kept by "remove old models".
pub const DEFAULT_RETENTION: u32 = 5;
/// Scaling processes that change the fleet on their own and are suspended by
/// "lock instances". Launch/Terminate stay active: an instance refresh needs them.
pub const LOCK_PROCESSES: [&str; 3] = ["AZRebalance", "AlarmNotification", "ScheduledActions"];

/// Checks an environment id: `[a-z0-9-]{1,64}`, the same rule as the API.
pub fn valid_environment_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a deployment id: a canonical (upper-case Crockford) ULID.
pub fn valid_deployment_id(id: &str) -> bool {
    id.len() == 26 && ulid::Ulid::from_string(id).is_ok_and(|u| u.to_string() == id)
}

/// A new deployment id (ULID): sortable by creation time, so history is newest first.
pub fn new_deployment_id() -> String {
    ulid::Ulid::new().to_string()
}

/// Instance refresh preferences applied by "Replace instances".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RefreshPreferences {
    pub min_healthy_percentage: i32,
    pub instance_warmup_seconds: Option<i32>,
    pub skip_matching: bool,
    pub auto_rollback: bool,
}

impl Default for RefreshPreferences {
    fn default() -> Self {
        Self {
            min_healthy_percentage: 90,
            instance_warmup_seconds: None,
            skip_matching: true,
            auto_rollback: true,
        }
    }
}

/// Per-environment defaults and limits ("configuration of deployment methods").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct EnvironmentDefaults {
    pub lock_instances: bool,
    pub stop_preparation_server: bool,
    pub notification_emails: Vec<String>,
    /// Launch template versions kept by "remove old models".
    pub retention: u32,
    /// When false, "Replace instances" is not applicable (new launches use the new model).
    pub replace_instances: bool,
    pub refresh_preferences: RefreshPreferences,
    pub image_timeout_seconds: u64,
    pub stop_timeout_seconds: u64,
    pub refresh_timeout_seconds: u64,
    /// Also e-mail when a deployment starts (not only when it ends).
    pub notify_on_start: bool,
}

impl Default for EnvironmentDefaults {
    fn default() -> Self {
        Self {
            lock_instances: false,
            stop_preparation_server: false,
            notification_emails: Vec::new(),
            retention: DEFAULT_RETENTION,
            replace_instances: true,
            refresh_preferences: RefreshPreferences::default(),
            image_timeout_seconds: 3600,
            stop_timeout_seconds: 900,
            refresh_timeout_seconds: 7200,
            notify_on_start: false,
        }
    }
}

/// A scaling environment: the preparation server and the fleet it feeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub environment_id: String,
    pub preparation_server_id: String,
    pub auto_scaling_groups: Vec<String>,
    pub launch_template_id: String,
    #[serde(default)]
    pub defaults: EnvironmentDefaults,
}

/// Options chosen for one deployment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentOptions {
    pub lock_instances: bool,
    pub stop_preparation_server: bool,
    #[serde(default)]
    pub notification_emails: Vec<String>,
    /// E-mail the recipients when the deployment starts, too.
    #[serde(default)]
    pub notify_on_start: bool,
}

/// Options as requested; missing values fall back to the environment defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestedOptions {
    #[serde(default)]
    pub lock_instances: Option<bool>,
    #[serde(default)]
    pub stop_preparation_server: Option<bool>,
    #[serde(default)]
    pub notification_emails: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify_on_start: Option<bool>,
}

impl RequestedOptions {
    pub fn resolve(&self, defaults: &EnvironmentDefaults) -> DeploymentOptions {
        DeploymentOptions {
            lock_instances: self.lock_instances.unwrap_or(defaults.lock_instances),
            stop_preparation_server: self
                .stop_preparation_server
                .unwrap_or(defaults.stop_preparation_server),
            notification_emails: self.notification_emails.clone().unwrap_or_default(),
            notify_on_start: self.notify_on_start.unwrap_or(defaults.notify_on_start),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeploymentStatus {
    Scheduled,
    Running,
    Succeeded,
    Failed,
    RolledBack,
    Cancelled,
}

impl DeploymentStatus {
    pub fn is_terminal(self) -> bool {
        !matches!(self, Self::Scheduled | Self::Running)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "Scheduled",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::RolledBack => "RolledBack",
            Self::Cancelled => "Cancelled",
        }
    }
}

impl fmt::Display for DeploymentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum StepStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    NotApplicable,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Running => "Running",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::NotApplicable => "NotApplicable",
        }
    }
}

/// The six steps, in order. The name is the state name in the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StepName {
    #[serde(rename = "Initial validation")]
    InitialValidation,
    #[serde(rename = "Stop preparation server")]
    StopPreparationServer,
    #[serde(rename = "Create image")]
    CreateImage,
    #[serde(rename = "Create models")]
    CreateModels,
    #[serde(rename = "Replace instances")]
    ReplaceInstances,
    #[serde(rename = "Finalization")]
    Finalization,
}

impl StepName {
    pub const ALL: [StepName; 6] = [
        Self::InitialValidation,
        Self::StopPreparationServer,
        Self::CreateImage,
        Self::CreateModels,
        Self::ReplaceInstances,
        Self::Finalization,
    ];

    pub fn index(self) -> usize {
        Self::ALL.iter().position(|s| *s == self).unwrap_or(0)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InitialValidation => "Initial validation",
            Self::StopPreparationServer => "Stop preparation server",
            Self::CreateImage => "Create image",
            Self::CreateModels => "Create models",
            Self::ReplaceInstances => "Replace instances",
            Self::Finalization => "Finalization",
        }
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timestamped line in a step's log, shown in the details view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    pub at: DateTime<Utc>,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepRecord {
    pub name: StepName,
    pub status: StepStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default)]
    pub actions: Vec<Action>,
}

impl StepRecord {
    pub fn pending(name: StepName) -> Self {
        Self {
            name,
            status: StepStatus::Pending,
            started_at: None,
            ended_at: None,
            duration_ms: None,
            actions: Vec::new(),
        }
    }
}

/// The version a deployment produced: launch template version + AMI.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GeneratedVersion {
    pub launch_template_id: String,
    pub launch_template_version: i64,
    pub image_id: String,
}

/// Why a deployment did not succeed: which step, the stable error name, the message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentError {
    pub step: Option<StepName>,
    pub name: String,
    pub message: String,
}

/// What steps remember for later steps and for cleanup. Finalization trusts only
/// this (never the Step Functions state), so cleanup also works from a bare input.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Runtime {
    /// Processes suspended before we touched each group.
    pub prior_suspended: BTreeMap<String, Vec<String>>,
    /// Processes we suspended per group (and so must resume).
    pub suspended_by_us: BTreeMap<String, Vec<String>>,
    /// Preparation server state when "Stop preparation server" first looked.
    pub prior_server_state: Option<String>,
    /// True once we asked EC2 to stop the server.
    pub server_stopped_by_us: bool,
    pub image_id: Option<String>,
    pub image_name: Option<String>,
    /// Default version before the deployment: the backup model.
    pub backup_version: Option<i64>,
    /// The new version: the main model.
    pub main_version: Option<i64>,
    /// Instance refresh id per group.
    pub refreshes: BTreeMap<String, String>,
    /// Last progress recorded per group, so progress actions are only written on change.
    pub refresh_progress: BTreeMap<String, i32>,
    /// Set (before sending) when the notification e-mail has been claimed, so a
    /// retried Finalization never sends twice.
    pub notified: bool,
    /// Finalization runs that found a cleanup action failing.
    pub cleanup_attempts: u32,
    /// Set (before sending) when the "started" e-mail has been claimed.
    pub notified_start: bool,
}

/// Where and when a scheduled deployment runs: the operator's local time and
/// zone (what EventBridge Scheduler is given) and the schedule's name and group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    /// Local date-time, `yyyy-mm-ddThh:mm:ss`, in `timezone`.
    pub at: String,
    /// IANA time zone name.
    pub timezone: String,
    pub schedule_name: String,
    pub schedule_group: String,
}

/// An execution that found the deployment already handled and ended without
/// touching anything (duplicate delivery, fired after cancel, stale start).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IgnoredRun {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    pub at: DateTime<Utc>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub deployment_id: String,
    pub environment_id: String,
    pub status: DeploymentStatus,
    pub owner: String,
    pub options: DeploymentOptions,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_for: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_arn: Option<String>,
    pub steps: Vec<StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_version: Option<GeneratedVersion>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<DeploymentError>,
    /// Set by the API's cancel; every step checks it and stops with `Cancelled`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cancel_requested: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_by: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignored_runs: Vec<IgnoredRun>,
    #[serde(default)]
    pub runtime: Runtime,
}

impl Deployment {
    /// A deployment that starts now.
    pub fn new_running(
        deployment_id: String,
        environment_id: String,
        owner: String,
        options: DeploymentOptions,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            deployment_id,
            environment_id,
            status: DeploymentStatus::Running,
            owner,
            options,
            created_at: now,
            scheduled_for: None,
            schedule: None,
            started_at: Some(now),
            ended_at: None,
            duration_ms: None,
            execution_arn: None,
            steps: StepName::ALL
                .iter()
                .map(|s| StepRecord::pending(*s))
                .collect(),
            generated_version: None,
            error: None,
            cancel_requested: false,
            cancelled_by: None,
            ignored_runs: Vec::new(),
            runtime: Runtime::default(),
        }
    }

    /// A deployment that EventBridge Scheduler starts at `scheduled_for`.
    pub fn new_scheduled(
        deployment_id: String,
        environment_id: String,
        owner: String,
        options: DeploymentOptions,
        now: DateTime<Utc>,
        scheduled_for: DateTime<Utc>,
        schedule: ScheduleInfo,
    ) -> Self {
        let mut d = Self::new_running(deployment_id, environment_id, owner, options, now);
        d.status = DeploymentStatus::Scheduled;
        d.started_at = None;
        d.scheduled_for = Some(scheduled_for);
        d.schedule = Some(schedule);
        d
    }

    pub fn step(&self, name: StepName) -> &StepRecord {
        &self.steps[name.index()]
    }

    pub fn step_mut(&mut self, name: StepName) -> &mut StepRecord {
        &mut self.steps[name.index()]
    }

    /// The e-mail recipients: the deployment's plus the environment's defaults,
    /// de-duplicated case-insensitively, in first-seen order.
    pub fn recipients(&self, env: Option<&Environment>) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.options
            .notification_emails
            .iter()
            .chain(
                env.iter()
                    .flat_map(|e| e.defaults.notification_emails.iter()),
            )
            .filter(|e| seen.insert(e.to_ascii_lowercase()))
            .cloned()
            .collect()
    }
}

/// The ARN of the execution named `deployment_id` of a state machine.
pub fn execution_arn(state_machine_arn: &str, deployment_id: &str) -> String {
    format!(
        "{}:{deployment_id}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

/// At most `max` characters of untrusted text, for error messages.
pub fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Masks e-mail addresses for logs (`ops@example.com` → `o***@example.com`):
/// addresses never reach CloudWatch, though the deployment record keeps them.
pub fn mask_emails(s: &str) -> String {
    let is_sep = |c: char| c.is_whitespace() || "<>()[],;:\"'".contains(c);
    let mut out = String::with_capacity(s.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        match token.split_once('@') {
            Some((local, domain)) if !local.is_empty() && domain.contains('.') => {
                out.push_str(&local.chars().take(1).collect::<String>());
                out.push_str("***@");
                out.push_str(domain);
            }
            _ => out.push_str(token),
        }
        token.clear();
    };
    for c in s.chars() {
        if is_sep(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// Milliseconds between two instants (never negative).
pub fn millis_between(start: DateTime<Utc>, end: DateTime<Utc>) -> i64 {
    (end - start).num_milliseconds().max(0)
}

/// "1m 05s" style duration for actions and e-mails.
pub fn human_duration(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        0 => format!("{ms} ms"),
        1..=59 => format!("{s}s"),
        60..=3599 => format!("{}m {:02}s", s / 60, s % 60),
        _ => format!("{}h {:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_ids_follow_the_api_rule() {
        assert!(valid_environment_id("prod-web-1"));
        assert!(!valid_environment_id(""));
        assert!(!valid_environment_id("Prod"));
        assert!(!valid_environment_id("a_b"));
        assert!(!valid_environment_id(&"a".repeat(65)));
    }

    #[test]
    fn deployment_ids_are_canonical_ulids() {
        let id = new_deployment_id();
        assert!(valid_deployment_id(&id));
        assert!(!valid_deployment_id(&id.to_lowercase()));
        assert!(!valid_deployment_id("not-a-ulid"));
    }

    #[test]
    fn recipients_merge_and_deduplicate() {
        let now = Utc::now();
        let mut d = Deployment::new_running(
            new_deployment_id(),
            "e".into(),
            "o".into(),
            DeploymentOptions::default(),
            now,
        );
        d.options.notification_emails = vec!["A@x.io".into(), "b@x.io".into()];
        let env = Environment {
            environment_id: "e".into(),
            preparation_server_id: "i-1".into(),
            auto_scaling_groups: vec!["g".into()],
            launch_template_id: "lt-1".into(),
            defaults: EnvironmentDefaults {
                notification_emails: vec!["a@x.io".into(), "ops@x.io".into()],
                ..Default::default()
            },
        };
        assert_eq!(
            d.recipients(Some(&env)),
            vec!["A@x.io", "b@x.io", "ops@x.io"]
        );
    }

    #[test]
    fn logs_never_show_a_whole_address() {
        assert_eq!(
            mask_emails("rejected: ops@example.com, <dev@x.io> and 'me@y.org'"),
            "rejected: o***@example.com, <d***@x.io> and 'm***@y.org'"
        );
        assert_eq!(mask_emails("no address @ here"), "no address @ here");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(450), "450 ms");
        assert_eq!(human_duration(5_000), "5s");
        assert_eq!(human_duration(65_000), "1m 05s");
        assert_eq!(human_duration(3_660_000), "1h 01m");
    }
}
