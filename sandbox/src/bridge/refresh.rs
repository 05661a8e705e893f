//! The emulated instance refresh (fakecloud has none): StartInstanceRefresh
//! really replaces the group's instances in the emulator, in batches
//! ([`run`]), and the group's own setting changes only when the refresh
//! succeeds (until then DescribeAutoScalingGroups shows the setting recorded
//! when it started); DescribeInstanceRefreshes (paged, by id);
//! CancelInstanceRefresh; RollbackInstanceRefresh and auto rollback;
//! Preferences.BakeTime (`Baking`), SkipMatching, AutoRollback,
//! CheckpointPercentages and CheckpointDelay (pauses), AlarmSpecification (a
//! watched alarm in ALARM rolls back or fails the refresh).
//! `POST /_sandbox/refresh-outcome` chooses how a group's next refresh ends;
//! `PUT /_sandbox/alarms/{name}` sets a CloudWatch alarm's state. Each
//! status change publishes the event Auto Scaling sends for it
//! ([`crate::aws_events::RefreshChange`]) at that moment.

mod run;
pub mod setting;

use super::autoscaling::members;
use super::xml::{self, leaf};
use super::{request_id, Bridge};
use crate::aws_events::{RefreshChange, RefreshRef};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use setting::Setting;
use std::collections::HashMap;

/// The outcomes a test can ask for (see `set_outcome`).
const OUTCOMES: [&str; 5] = [
    "Successful",
    "Failed",
    "RollbackSuccessful",
    "RollbackFailed",
    "Hold",
];

/// RefreshPreferences.BakeTime: "Valid Range: Minimum value of 0. Maximum
/// value of 172800." CheckpointDelay has the same range in the API's model.
const MAX_BAKE_TIME: i64 = 172_800;
const MAX_CHECKPOINT_DELAY: i64 = 172_800;
/// CheckpointDelay: "If you specify a value for CheckpointPercentages and not
/// for CheckpointDelay, the CheckpointDelay defaults to 3600 (1 hour)."
const DEFAULT_CHECKPOINT_DELAY: i64 = 3600;
/// AlarmSpecification.Alarms: "You can specify up to 10 alarms." / "Length
/// Constraints: Minimum length of 1. Maximum length of 255."
const MAX_ALARMS: usize = 10;

/// The preferences the emulation follows (the API's defaults when absent).
#[derive(Clone, Debug, PartialEq)]
pub struct Prefs {
    pub min_healthy: i32,
    pub skip_matching: bool,
    pub auto_rollback: bool,
    pub bake_time: i64,
    /// CheckpointPercentages, ascending and unique (checked).
    pub checkpoints: Vec<i32>,
    pub checkpoint_delay: i64,
    /// AlarmSpecification.Alarms.
    pub alarms: Vec<String>,
}

impl Default for Prefs {
    fn default() -> Self {
        Self {
            min_healthy: 90,
            skip_matching: false,
            auto_rollback: false,
            bake_time: 0,
            checkpoints: Vec::new(),
            checkpoint_delay: DEFAULT_CHECKPOINT_DELAY,
            alarms: Vec::new(),
        }
    }
}

/// RollbackDetails of DescribeInstanceRefreshes.
#[derive(Clone, Debug)]
pub struct Rollback {
    reason: String,
    start: chrono::DateTime<chrono::Utc>,
    percentage: i32,
    to_update: i32,
}

#[derive(Clone, Debug)]
pub struct Refresh {
    id: String,
    group: String,
    /// The group's ARN (the resource of the refresh's events).
    arn: String,
    status: String,
    reason: Option<String>,
    percentage: i32,
    to_update: i32,
    start: chrono::DateTime<chrono::Utc>,
    end: Option<chrono::DateTime<chrono::Utc>>,
    /// The request's DesiredConfiguration, if it had one.
    desired: Option<Setting>,
    /// The group's own setting when the refresh started.
    before: Option<Setting>,
    prefs: Prefs,
    /// The outcome asked for this refresh (see `set_outcome`).
    outcome: String,
    cancel_requested: bool,
    rollback_requested: bool,
    rollback: Option<Rollback>,
}

impl Refresh {
    /// What the refresh's events name.
    fn event_ref(&self) -> RefreshRef<'_> {
        RefreshRef {
            id: &self.id,
            group: &self.group,
            group_arn: &self.arn,
        }
    }

    fn new(id: String, group: String) -> Self {
        Self {
            id,
            group,
            arn: String::new(),
            status: "Pending".into(),
            reason: None,
            percentage: 0,
            to_update: 0,
            start: chrono::Utc::now(),
            end: None,
            desired: None,
            before: None,
            prefs: Prefs::default(),
            outcome: "Successful".into(),
            cancel_requested: false,
            rollback_requested: false,
            rollback: None,
        }
    }
}

/// The refreshes of each group, newest first, the outcome asked for each
/// group's next one, and what DescribeAutoScalingGroups shows of a group
/// while its refresh runs.
#[derive(Default)]
pub struct Refreshes {
    by_group: HashMap<String, Vec<Refresh>>,
    outcomes: HashMap<String, String>,
    overlays: HashMap<String, xml::Edit>,
}

impl Refreshes {
    /// The edit of each refreshing group's description.
    pub fn overlays(&self) -> Vec<(String, xml::Edit)> {
        self.overlays
            .iter()
            .map(|(g, e)| (g.clone(), e.clone()))
            .collect()
    }
}

/// Pending, InProgress, Baking, Cancelling and RollbackInProgress: the
/// statuses during which another StartInstanceRefresh is refused.
fn is_active(status: &str) -> bool {
    matches!(
        status,
        "Pending" | "InProgress" | "Baking" | "Cancelling" | "RollbackInProgress"
    )
}

/// What RollbackInstanceRefresh can roll back (assumed: not Cancelling, not
/// a rollback already running).
fn can_roll_back(status: &str) -> bool {
    matches!(status, "Pending" | "InProgress" | "Baking")
}

/// What DescribeAutoScalingGroups shows of a group while its refresh runs:
/// its own setting, minimum size and desired capacity as they were when the
/// refresh started (the emulation changes them in the emulator to replace
/// instances). "Once the instance refresh succeeds, Amazon EC2 Auto Scaling
/// updates the settings of the Auto Scaling group to reflect the new desired
/// configuration."
fn overlay(before: &Setting, g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> xml::Edit {
    let append = xml::fragment(|w| {
        before.write(w)?;
        leaf(w, "MinSize", &g.min_size().unwrap_or(0).to_string())?;
        leaf(
            w,
            "DesiredCapacity",
            &g.desired_capacity().unwrap_or(0).to_string(),
        )
    });
    xml::Edit {
        drop: [
            "LaunchTemplate",
            "LaunchConfigurationName",
            "MixedInstancesPolicy",
            "MinSize",
            "DesiredCapacity",
        ]
        .map(String::from)
        .to_vec(),
        append,
    }
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The request's preferences; `Err`: a ValidationError message.
fn prefs(form: &HashMap<String, String>) -> Result<Prefs, String> {
    let flag = |k: &str| form.get(k).map(String::as_str) == Some("true");
    let number = |k: &str, default: i64, max: i64| -> Result<i64, String> {
        match form.get(k) {
            None => Ok(default),
            Some(v) => match v.parse::<i64>() {
                Ok(n) if (0..=max).contains(&n) => Ok(n),
                _ => Err(format!(
                    "1 validation error detected: Value '{v}' at 'preferences.{}' failed to satisfy \
                     constraint: Member must have value between 0 and {max}",
                    k.trim_start_matches("Preferences.")
                )),
            },
        }
    };
    let checkpoints = checkpoints(form)?;
    if form.contains_key("Preferences.CheckpointDelay") && checkpoints.is_empty() {
        // "if you specify a value for it, you must also specify a value for
        // CheckpointPercentages" (AWS's wording of the refusal is not
        // documented).
        return Err(
            "Sandbox: CheckpointDelay was given without CheckpointPercentages; if you specify a \
             value for CheckpointDelay, you must also specify a value for CheckpointPercentages."
                .into(),
        );
    }
    let alarms = members(form, "Preferences.AlarmSpecification.Alarms.member.");
    if alarms.len() > MAX_ALARMS {
        return Err(format!(
            "1 validation error detected: Value '{alarms:?}' at 'preferences.alarmSpecification.alarms' \
             failed to satisfy constraint: Member must have length less than or equal to {MAX_ALARMS}"
        ));
    }
    if let Some(a) = alarms
        .iter()
        .find(|a| !(1..=255).contains(&a.chars().count()))
    {
        return Err(format!(
            "1 validation error detected: Value '{a}' at 'preferences.alarmSpecification.alarms' \
             failed to satisfy constraint: Member must have length between 1 and 255"
        ));
    }
    Ok(Prefs {
        min_healthy: number("Preferences.MinHealthyPercentage", 90, 100)? as i32,
        skip_matching: flag("Preferences.SkipMatching"),
        auto_rollback: flag("Preferences.AutoRollback"),
        bake_time: number("Preferences.BakeTime", 0, MAX_BAKE_TIME)?,
        checkpoints,
        checkpoint_delay: number(
            "Preferences.CheckpointDelay",
            DEFAULT_CHECKPOINT_DELAY,
            MAX_CHECKPOINT_DELAY,
        )?,
        alarms,
    })
}

/// Preferences.CheckpointPercentages: each 1 to 100 (the API's
/// NonZeroIntPercent), "Threshold values for each checkpoint in ascending
/// order. Each number must be unique." A last value below 100 is a partial
/// refresh, which AWS accepts.
fn checkpoints(form: &HashMap<String, String>) -> Result<Vec<i32>, String> {
    let raw = members(form, "Preferences.CheckpointPercentages.member.");
    let mut out = Vec::new();
    for v in &raw {
        match v.parse::<i32>() {
            Ok(n) if (1..=100).contains(&n) => out.push(n),
            _ => {
                return Err(format!(
                "1 validation error detected: Value '{v}' at 'preferences.checkpointPercentages' \
                     failed to satisfy constraint: Member must have value between 1 and 100"
            ))
            }
        }
    }
    if out.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!(
            "Sandbox: CheckpointPercentages {out:?} must be unique and in ascending order."
        ));
    }
    Ok(out)
}

impl Bridge {
    /// `POST /_sandbox/refresh-outcome` (form `group`, `outcome`): how the
    /// group's next refresh ends. `Successful` (the default): it runs to the
    /// end. `Failed`: it fails after its first batch (the instances replaced
    /// so far stay), and rolls back by itself when started with
    /// AutoRollback. `RollbackSuccessful`: the same, stating that the test
    /// expects the auto rollback; without AutoRollback it ends Failed, as on
    /// AWS. `RollbackFailed`: a rollback of the refresh (automatic: the
    /// refresh then fails after its first batch; or RollbackInstanceRefresh)
    /// fails after its first batch. `Hold`: a long refresh — after its first
    /// batch it stays InProgress until cancelled or rolled back (for at most
    /// [`run::HOLD_LIMIT`], then it goes on), so a test can act part-way.
    pub(super) fn set_outcome(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let (Some(group), Some(outcome)) = (form.get("group"), form.get("outcome")) else {
            return xml::error(400, "ValidationError", "group and outcome are required");
        };
        if !OUTCOMES.contains(&outcome.as_str()) {
            return xml::error(
                400,
                "ValidationError",
                "outcome must be Successful, Failed, RollbackSuccessful, RollbackFailed or Hold",
            );
        }
        self.lock()
            .refreshes
            .outcomes
            .insert(group.clone(), outcome.clone());
        xml::acknowledged()
    }

    /// `PUT /_sandbox/alarms/{name}` with `{"state": "ALARM" | "OK" |
    /// "INSUFFICIENT_DATA"}`: the CloudWatch alarm's state as a refresh
    /// watching it sees it (an alarm never set is OK); an empty body answers
    /// `{"state": …}`.
    pub(super) fn alarm_control(&self, name: &str, body: &Bytes) -> Response<Full<Bytes>> {
        if name.is_empty() {
            return xml::error(400, "ValidationError", "the alarm name is required");
        }
        if body.is_empty() {
            let state = self.lock().alarms.get(name).cloned();
            let state = state.unwrap_or_else(|| "OK".into());
            return super::json(serde_json::json!({ "state": state }).to_string());
        }
        let state = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v.get("state").and_then(|s| s.as_str()).map(str::to_string));
        match state {
            Some(s) if ["ALARM", "OK", "INSUFFICIENT_DATA"].contains(&s.as_str()) => {
                self.lock().alarms.insert(name.to_string(), s.clone());
                super::json(serde_json::json!({ "state": s }).to_string())
            }
            _ => xml::error(
                400,
                "ValidationError",
                "the body must be {\"state\": \"ALARM\" | \"OK\" | \"INSUFFICIENT_DATA\"}",
            ),
        }
    }

    /// The first alarm the refresh watches that is in ALARM, if any.
    fn alarm_firing(&self, r: &Refresh) -> Option<String> {
        let st = self.lock();
        r.prefs
            .alarms
            .iter()
            .find(|a| st.alarms.get(*a).map(String::as_str) == Some("ALARM"))
            .cloned()
    }

    pub(super) async fn start_refresh(
        &self,
        form: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let Some(group_name) = form.get("AutoScalingGroupName").cloned() else {
            return xml::error(400, "ValidationError", "AutoScalingGroupName is required");
        };
        let Some(group) = self.group(&group_name).await else {
            return xml::error(
                400,
                "ValidationError",
                &format!("AutoScalingGroup {group_name} not found"),
            );
        };
        let before = Setting::of_group(&group);
        let current = before.as_ref().and_then(Setting::template);
        if let Some(message) = auto_rollback_refusal(form, current.and_then(|l| l.version())) {
            return xml::error(400, "ValidationError", &message);
        }
        let desired = match setting::desired(form) {
            Ok(d) => d,
            Err(message) => return xml::error(400, "ValidationError", &message),
        };
        let prefs = match prefs(form) {
            Ok(p) => p,
            Err(message) => return xml::error(400, "ValidationError", &message),
        };
        let mut r = Refresh::new(request_id(), group_name.clone());
        r.arn = group
            .auto_scaling_group_arn()
            .unwrap_or_default()
            .to_string();
        r.desired = desired;
        r.prefs = prefs;
        r.before = before.clone();
        // What it replaces is known before the answer, as InstancesToUpdate.
        let fleet = match self.prepare(&r).await {
            Ok(f) => f,
            Err(e) => return xml::error(500, "InternalFailure", &format!("Sandbox: {e}")),
        };
        r.to_update = fleet.to_replace() as i32;
        let refresh = {
            let mut guard = self.lock();
            let st = &mut *guard;
            let list = st.refreshes.by_group.entry(group_name.clone()).or_default();
            if let Some(active) = list.iter().find(|r| is_active(&r.status)) {
                return xml::error(
                    400,
                    "InstanceRefreshInProgress",
                    &format!("An Instance Refresh is already in progress and blocks the execution of this Instance Refresh ({}).", active.id),
                );
            }
            if let Some(o) = st.refreshes.outcomes.remove(&group_name) {
                r.outcome = o;
            }
            if let Some(b) = &before {
                st.refreshes
                    .overlays
                    .insert(group_name.clone(), overlay(b, &group));
            }
            st.refreshes
                .by_group
                .entry(group_name.clone())
                .or_default()
                .insert(0, r.clone());
            r
        };
        let bridge = self.clone();
        let id = refresh.id.clone();
        tokio::spawn(async move { bridge.run_refresh(refresh, fleet).await });
        xml::ok("StartInstanceRefresh", |w| {
            leaf(w, "InstanceRefreshId", &id)
        })
    }

    /// DescribeInstanceRefreshes: the group's refreshes newest first,
    /// filtered by `InstanceRefreshIds`, `MaxRecords` at a time (default 50,
    /// at most 100) with a `NextToken` while more remain.
    pub(super) fn describe_refreshes(
        &self,
        form: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let group = form
            .get("AutoScalingGroupName")
            .cloned()
            .unwrap_or_default();
        let ids = members(form, "InstanceRefreshIds.member.");
        let list: Vec<Refresh> = self
            .lock()
            .refreshes
            .by_group
            .get(&group)
            .map(|l| {
                l.iter()
                    .filter(|r| ids.is_empty() || ids.contains(&r.id))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let (page, next) = match page(&list, form) {
            Ok(p) => (p.items, p.next),
            Err((code, message)) => return xml::error(400, code, &message),
        };
        xml::ok("DescribeInstanceRefreshes", |w| {
            w.create_element("InstanceRefreshes")
                .write_inner_content(|w| {
                    for r in page {
                        w.create_element("member")
                            .write_inner_content(|w| write_refresh(w, r))?;
                    }
                    Ok(())
                })?;
            if let Some(next) = next {
                leaf(w, "NextToken", &next)?;
            }
            Ok(())
        })
    }

    /// CancelInstanceRefresh: "Cancels an instance refresh or rollback that
    /// is in progress." The run notices it at its next step.
    pub(super) fn cancel_refresh(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let group = form
            .get("AutoScalingGroupName")
            .cloned()
            .unwrap_or_default();
        let mut st = self.lock();
        let active = st
            .refreshes
            .by_group
            .get_mut(&group)
            .and_then(|l| l.iter_mut().find(|r| is_active(&r.status)));
        match active {
            Some(r) => {
                r.cancel_requested = true;
                r.status = "Cancelling".into();
                xml::ok("CancelInstanceRefresh", |w| {
                    leaf(w, "InstanceRefreshId", &r.id)
                })
            }
            None => xml::error(
                400,
                "ActiveInstanceRefreshNotFound",
                "No in progress or pending Instance Refresh found",
            ),
        }
    }

    /// RollbackInstanceRefresh: the active refresh goes RollbackInProgress at
    /// once ("When you receive a successful response from this operation,
    /// Amazon EC2 Auto Scaling immediately begins replacing instances"); its
    /// run replaces the instances it replaced with the pre-refresh setting.
    /// Refused with `IrreversibleInstanceRefresh` when the refresh had no
    /// desired configuration or the group is on `$Default`/`$Latest` (or a
    /// launch configuration: there is no numbered version to go back to).
    pub(super) fn rollback_refresh(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let group = form
            .get("AutoScalingGroupName")
            .cloned()
            .unwrap_or_default();
        let mut st = self.lock();
        let active = st
            .refreshes
            .by_group
            .get_mut(&group)
            .and_then(|l| l.iter_mut().find(|r| is_active(&r.status)))
            .filter(|r| can_roll_back(&r.status) && !r.cancel_requested);
        let Some(r) = active else {
            return xml::error(
                400,
                "ActiveInstanceRefreshNotFound",
                "The request failed because an active instance refresh or rollback for the \
                 specified Auto Scaling group was not found.",
            );
        };
        if r.desired.is_none() || !r.before.as_ref().is_some_and(Setting::is_reversible) {
            return xml::error(
                400,
                "IrreversibleInstanceRefresh",
                "The request failed because a desired configuration was not found or an \
                 incompatible launch template (uses a Systems Manager parameter instead of an AMI \
                 ID) or launch template version ($Latest or $Default) is present on the Auto \
                 Scaling group.",
            );
        }
        r.rollback_requested = true;
        r.status = "RollbackInProgress".into();
        r.rollback = Some(Rollback {
            reason: "Sandbox: rollback started by RollbackInstanceRefresh".into(),
            start: chrono::Utc::now(),
            percentage: r.percentage,
            to_update: r.to_update,
        });
        self.events
            .refresh(RefreshChange::RollbackStarted, &r.event_ref());
        xml::ok("RollbackInstanceRefresh", |w| {
            leaf(w, "InstanceRefreshId", &r.id)
        })
    }
}

/// DescribeInstanceRefreshes' MaxRecords: "The default value is 50 and the
/// maximum value is 100."
const DEFAULT_RECORDS: usize = 50;
const MAX_RECORDS: usize = 100;

/// A page of refreshes and the token of the next one.
struct Page<'a> {
    items: &'a [Refresh],
    next: Option<String>,
}

/// The page of `list` the request asks for (an error: its code and message).
/// The token is the id of the next page's first refresh (new refreshes are
/// added in front, so it stays valid); one that names no listed refresh is
/// `InvalidNextToken`.
fn page<'a>(
    list: &'a [Refresh],
    form: &HashMap<String, String>,
) -> Result<Page<'a>, (&'static str, String)> {
    let max = match form.get("MaxRecords") {
        None => DEFAULT_RECORDS,
        Some(v) => match v.parse::<usize>() {
            Ok(n) if (1..=MAX_RECORDS).contains(&n) => n,
            _ => {
                return Err((
                    "ValidationError",
                    format!(
                        "1 validation error detected: Value '{v}' at 'maxRecords' failed to satisfy constraint: \
                         Member must have value between 1 and {MAX_RECORDS}"
                    ),
                ))
            }
        },
    };
    let from = match form.get("NextToken").filter(|t| !t.is_empty()) {
        None => 0,
        Some(t) => match list.iter().position(|r| format!("next-{}", r.id) == *t) {
            Some(i) => i,
            None => {
                return Err((
                    "InvalidNextToken",
                    "The token is not valid (sandbox: it names no refresh of this listing)".into(),
                ))
            }
        },
    };
    let to = (from + max).min(list.len());
    let next = list.get(to).map(|r| format!("next-{}", r.id));
    Ok(Page {
        items: &list[from..to],
        next,
    })
}

/// Why StartInstanceRefresh refuses `Preferences.AutoRollback=true`, if it
/// does: AWS rolls back only with a desired configuration, and only to a
/// numbered launch template version. `current` is the group's own version
/// (none = `$Default`, the API's default). The first message is the one AWS
/// answers; the code and text for a `$Default`/`$Latest` group are not
/// documented, so that message is ours, with the same code.
fn auto_rollback_refusal(form: &HashMap<String, String>, current: Option<&str>) -> Option<String> {
    if form.get("Preferences.AutoRollback").map(String::as_str) != Some("true") {
        return None;
    }
    if !form.keys().any(|k| k.starts_with("DesiredConfiguration.")) {
        return Some(
            "The request isn't valid. The AutoRollback parameter cannot be set to true when the \
             DesiredConfiguration parameter is empty. Set AutoRollback to false or specify a desired \
             configuration and try again."
                .into(),
        );
    }
    let current = current.unwrap_or("$Default");
    matches!(current, "$Default" | "$Latest").then(|| {
        format!(
            "Sandbox: the rollback option is not available if the Auto Scaling group is configured to use \
             the $Latest or $Default launch template version (this group uses {current}). Set \
             AutoRollback to false or set the group to a version number."
        )
    })
}

/// One refresh as DescribeInstanceRefreshes lists it.
fn write_refresh(w: &mut xml::XmlWriter, r: &Refresh) -> std::io::Result<()> {
    leaf(w, "InstanceRefreshId", &r.id)?;
    leaf(w, "AutoScalingGroupName", &r.group)?;
    leaf(w, "Status", &r.status)?;
    if let Some(reason) = &r.reason {
        leaf(w, "StatusReason", reason)?;
    }
    leaf(w, "StartTime", &time(r.start))?;
    if let Some(end) = r.end {
        leaf(w, "EndTime", &time(end))?;
    }
    leaf(w, "PercentageComplete", &r.percentage.to_string())?;
    leaf(w, "InstancesToUpdate", &r.to_update.to_string())?;
    if let Some(d) = &r.desired {
        w.create_element("DesiredConfiguration")
            .write_inner_content(|w| match d {
                Setting::Template(s) => setting::write_spec(w, "LaunchTemplate", s),
                other => other.write(w),
            })?;
    }
    if let Some(rb) = &r.rollback {
        w.create_element("RollbackDetails")
            .write_inner_content(|w| {
                leaf(w, "RollbackReason", &rb.reason)?;
                leaf(w, "RollbackStartTime", &time(rb.start))?;
                leaf(
                    w,
                    "PercentageCompleteOnRollback",
                    &rb.percentage.to_string(),
                )?;
                leaf(w, "InstancesToUpdateOnRollback", &rb.to_update.to_string())
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
