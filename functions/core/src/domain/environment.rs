//! Scaling environments: the preparation server, the fleet it feeds, and the
//! per-environment defaults and limits of its deployments.

use serde::{Deserialize, Serialize};

/// Default number of launch template versions kept by "remove old models".
pub const DEFAULT_RETENTION: u32 = 5;
/// Default number of Succeeded deployments whose models (launch template
/// version and AMI) are kept for a rollback.
pub const DEFAULT_KEPT_DEPLOYMENTS: u32 = 3;
/// Scaling processes that change the fleet on their own and are suspended by
/// "lock instances". Launch/Terminate stay active: an instance refresh needs them.
pub const LOCK_PROCESSES: [&str; 3] = ["AZRebalance", "AlarmNotification", "ScheduledActions"];

/// Instance refresh preferences applied by "Replace instances".
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RefreshPreferences {
    pub min_healthy_percentage: i32,
    pub instance_warmup_seconds: Option<i32>,
    pub skip_matching: bool,
    pub auto_rollback: bool,
    /// Where the refresh pauses, in percent of the instances replaced,
    /// ascending (none: no pause). 100 is sent after the last one when it is
    /// missing, so the whole fleet is always replaced.
    pub checkpoint_percentages: Vec<i32>,
    /// How long each checkpoint pauses (AWS's default, 3600 s, when absent).
    pub checkpoint_delay_seconds: Option<i32>,
    /// How long AWS waits (`Baking`) once every instance is replaced before
    /// the refresh succeeds; the alarms are watched until then.
    pub bake_time_seconds: Option<i32>,
    /// CloudWatch alarms AWS watches during the refresh: one in ALARM rolls
    /// the fleet back (with auto rollback) or fails the refresh.
    pub alarms: Vec<String>,
}

/// Most CloudWatch alarms one refresh may watch (AlarmSpecification).
pub const MAX_REFRESH_ALARMS: usize = 10;
/// Longest CheckpointDelay and BakeTime AWS accepts, in seconds (2 days).
pub const MAX_REFRESH_PAUSE_SECONDS: i32 = 172_800;

impl Default for RefreshPreferences {
    fn default() -> Self {
        Self {
            min_healthy_percentage: 90,
            instance_warmup_seconds: None,
            skip_matching: true,
            auto_rollback: true,
            checkpoint_percentages: Vec::new(),
            checkpoint_delay_seconds: None,
            bake_time_seconds: None,
            alarms: Vec::new(),
        }
    }
}

impl RefreshPreferences {
    /// The checkpoints as sent to AWS: ours, ending at 100 (none when there
    /// are none).
    pub fn checkpoints_sent(&self) -> Vec<i32> {
        let mut c = self.checkpoint_percentages.clone();
        if c.last().is_some_and(|l| *l != 100) {
            c.push(100);
        }
        c
    }

    /// The pause at each checkpoint as AWS applies it: "If you specify a
    /// value for CheckpointPercentages and not for CheckpointDelay, the
    /// CheckpointDelay defaults to 3600 (1 hour)."
    pub fn effective_checkpoint_delay(&self) -> i32 {
        self.checkpoint_delay_seconds.unwrap_or(3600)
    }

    /// "CloudWatch alarms watched: a, b", for the records and errors that
    /// name them; None without alarms.
    pub fn alarms_watched(&self) -> Option<String> {
        (!self.alarms.is_empty())
            .then(|| format!("CloudWatch alarms watched: {}", self.alarms.join(", ")))
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
    /// The newest Succeeded deployments whose models Create models never
    /// removes: the ones a rollback can restore.
    pub kept_deployments: u32,
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
            kept_deployments: DEFAULT_KEPT_DEPLOYMENTS,
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
    /// Which caller groups hold which role on it (JWT authorization); none:
    /// the stack's administrators' groups only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access: Option<super::AccessMap>,
}

/// Why `resource` (e.g. "launch template lt-0123 (web)") may not serve the
/// environment `env`, if it may not: its `autosky:environment` tag (`tag`)
/// is missing or names another environment. One IAM role serves every
/// environment and its policies only require the tag to be there, so this
/// is where an environment is kept to the resources tagged with its own id.
pub fn ownership_refusal(resource: &str, tag: Option<&str>, env: &str) -> Option<String> {
    let key = crate::aws::ec2::TAG_ENVIRONMENT;
    match tag {
        Some(t) if t == env => None,
        Some(other) => Some(format!(
            "{resource} is tagged {key}={other}, not {env}: an environment may only use \
             resources tagged with its own id"
        )),
        None => Some(format!(
            "{resource} has no {key} tag: tag it {key}={env} (the functions' IAM policies \
             refuse untagged resources)"
        )),
    }
}

/// "launch template <id> (<name>)", as refusals name it.
pub fn template_label(id: &str, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("launch template {id} ({n})"),
        None => format!("launch template {id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::ownership_refusal;

    #[test]
    fn a_resource_tagged_with_the_environment_is_accepted() {
        assert_eq!(
            ownership_refusal("Auto Scaling group web", Some("prod"), "prod"),
            None
        );
    }

    #[test]
    fn a_resource_tagged_with_another_environment_is_refused_naming_both() {
        assert_eq!(
            ownership_refusal("Auto Scaling group web", Some("staging"), "prod").as_deref(),
            Some(
                "Auto Scaling group web is tagged autosky:environment=staging, not prod: an \
                 environment may only use resources tagged with its own id"
            )
        );
    }

    #[test]
    fn an_untagged_resource_is_refused_naming_the_tag_to_add() {
        assert_eq!(
            ownership_refusal("preparation server i-0abc", None, "prod").as_deref(),
            Some(
                "preparation server i-0abc has no autosky:environment tag: tag it \
                 autosky:environment=prod (the functions' IAM policies refuse untagged resources)"
            )
        );
    }

    #[test]
    fn the_value_is_compared_exactly() {
        assert!(ownership_refusal("x", Some("Prod"), "prod").is_some());
        assert!(ownership_refusal("x", Some("prod "), "prod").is_some());
        assert!(ownership_refusal("x", Some(""), "prod").is_some());
    }
}
