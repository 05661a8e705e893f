//! Deployment records: options, step records and actions, the generated
//! version, the error, and the runtime memory later steps and cleanup rely on.

use super::{DeploymentStatus, Environment, EnvironmentDefaults, StepName, StepStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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

/// What a rollback deployment restores: the model (launch template version
/// and AMI) an earlier Succeeded deployment of the same environment put in
/// service. No image is taken and no version created: the version becomes the
/// default again and the fleet is refreshed to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RollbackOf {
    /// The deployment whose model is restored.
    pub deployment_id: String,
    pub launch_template_id: String,
    pub launch_template_version: i64,
    pub image_id: String,
}

impl RollbackOf {
    /// The model `deployment` put in service, if it has one.
    pub fn of(deployment: &Deployment) -> Option<Self> {
        deployment.generated_version.as_ref().map(|v| Self {
            deployment_id: deployment.deployment_id.clone(),
            launch_template_id: v.launch_template_id.clone(),
            launch_template_version: v.launch_template_version,
            image_id: v.image_id.clone(),
        })
    }
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
    /// When CreateImage was first asked for (saved before the call): new AMIs
    /// may stay invisible to DescribeImages for a while, and the wait for them
    /// to show up is measured from here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_requested_at: Option<DateTime<Utc>>,
    /// How the image was taken (saved with `image_requested_at`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_taken: Option<ImageTaken>,
    /// Default version before the deployment: the backup model.
    pub backup_version: Option<i64>,
    /// The new version: the main model.
    pub main_version: Option<i64>,
    /// Instance refresh id per group.
    pub refreshes: BTreeMap<String, String>,
    /// Each group's launch template version as the group named it before its
    /// refresh (a number, `$Default` or `$Latest`): the kind it keeps, and
    /// whether AWS could roll the refresh back.
    pub prior_group_versions: BTreeMap<String, String>,
    /// When we were about to send StartInstanceRefresh per group (written
    /// before the call): a refresh we started but whose id was never saved is
    /// one with our desired configuration that started after this.
    pub refresh_requested_at: BTreeMap<String, DateTime<Utc>>,
    /// Last progress recorded per group, so progress actions are only written on change.
    pub refresh_progress: BTreeMap<String, i32>,
    /// The highest checkpoint (percent) recorded as reached per group.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub refresh_checkpoints: BTreeMap<String, i32>,
    /// The refresh's last status and status reason recorded per group
    /// ("Baking", "InProgress: <reason>"), so they are written on change only.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub refresh_states: BTreeMap<String, String>,
    /// Set (before sending) when the notification e-mail has been claimed, so a
    /// retried Finalization never sends twice.
    pub notified: bool,
    /// Finalization runs that found a cleanup action failing.
    pub cleanup_attempts: u32,
    /// Set (before sending) when the "started" e-mail has been claimed.
    pub notified_start: bool,
    /// Groups whose refresh Finalization had AWS roll back
    /// (RollbackInstanceRefresh accepted), by that refresh's id.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rollbacks: BTreeMap<String, String>,
    /// The refresh Finalization started per group to bring its instances
    /// back to the group's own setting before the deployment.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub restore_refreshes: BTreeMap<String, String>,
    /// When Finalization was about to send that restore refresh (written
    /// before the call): one started whose id was never saved is found by it.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub restore_requested_at: BTreeMap<String, DateTime<Utc>>,
    /// After a failed or cancelled deployment: the versions each group's
    /// instances ended on, e.g. "all 2 instances on version 8".
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub fleet_versions: BTreeMap<String, String>,
    /// The main version was deleted so that `$Latest` is the version before
    /// the deployment again (for groups on `$Latest`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub main_version_deleted: bool,
    /// ARNs of the cleanup executions the safety net started for this
    /// deployment: each may run its Finalization.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cleanup_executions: Vec<String>,
    /// Images Create models is removing, with their snapshots (written before
    /// DeregisterImage): once deregistered, an image no longer shows which
    /// snapshots were its, so a retry finishes them from here.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub removing_images: BTreeMap<String, ImageRemoval>,
    /// Waits whose end AWS dates, as a step noticed them: for the metrics'
    /// detection delay (how long after the end the step saw it).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub waits_noticed: Vec<WaitNoticed>,
    /// The waiting state registered last (its task token): the cancel route
    /// completes it so the step sees the cancel at once. Never shown by the API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
}

/// A waiting state's registration: the task token Step Functions gave it and
/// the keys a wake-up finds it by (`steps::wake`: "instance:<id>",
/// "image:<id>", "group:<name>").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Wait {
    pub step: StepName,
    pub token: String,
    pub on: Vec<String>,
    pub at: DateTime<Utc>,
}

/// A wait that ended at a moment AWS reports, and when the step noticed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WaitNoticed {
    /// Which wait: [`WaitNoticed::REFRESH`] or [`WaitNoticed::FLEET_RESTORE`].
    pub wait: String,
    pub group: String,
    /// The moment AWS reports (an instance refresh's EndTime).
    pub ended_at: DateTime<Utc>,
    /// The poll that first saw it ended.
    pub noticed_at: DateTime<Utc>,
}

impl WaitNoticed {
    /// "Replace instances" waiting for the deployment's instance refresh.
    pub const REFRESH: &'static str = "Instance refresh";
    /// Finalization waiting for a rollback or restore refresh to bring the fleet back.
    pub const FLEET_RESTORE: &'static str = "Fleet restore";

    /// Records the first sighting of a wait's end (a later poll of the same
    /// wait and group changes nothing); nothing when AWS gives no end time.
    pub fn record(
        runtime: &mut Runtime,
        wait: &str,
        group: &str,
        ended_at: Option<DateTime<Utc>>,
        noticed_at: DateTime<Utc>,
    ) {
        let Some(ended_at) = ended_at else { return };
        if runtime
            .waits_noticed
            .iter()
            .any(|w| w.wait == wait && w.group == group)
        {
            return;
        }
        runtime.waits_noticed.push(Self {
            wait: wait.into(),
            group: group.into(),
            ended_at,
            noticed_at,
        });
    }

    /// Milliseconds from the end to its sighting (0 when clocks disagree
    /// and the end looks later than the sighting).
    pub fn delay_ms(&self) -> i64 {
        super::millis_between(self.ended_at, self.noticed_at)
    }
}

/// An image being removed: the deployment that made it and its snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ImageRemoval {
    pub deployment_id: Option<String>,
    pub snapshot_ids: Vec<String>,
}

/// How the image was taken from the preparation server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "camelCase")]
pub enum ImageTaken {
    /// The server was stopped by "Stop preparation server" (or already was).
    #[strum(serialize = "the server is stopped")]
    FromStoppedServer,
    /// The server kept running and was not rebooted (CreateImage `NoReboot`):
    /// its snapshots are crash-consistent.
    #[strum(
        serialize = "the server keeps running and is not rebooted (NoReboot: crash-consistent snapshots)"
    )]
    FromRunningServerNoReboot,
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
    /// Set on a rollback deployment: the earlier deployment's model it restores.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<RollbackOf>,
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
            rollback_of: None,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::new_deployment_id;

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
            access: None,
        };
        assert_eq!(
            d.recipients(Some(&env)),
            vec!["A@x.io", "b@x.io", "ops@x.io"]
        );
    }
}
