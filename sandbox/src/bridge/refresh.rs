//! The emulated instance refresh (fakecloud has none): StartInstanceRefresh
//! really replaces the group's instances in the emulator (the group moves to
//! the desired launch template version, capacity goes to 0 and back, so new
//! instances launch from that version), in phases of the bridge's `phase`;
//! DescribeInstanceRefreshes reports PercentageComplete and a terminal
//! status; one active refresh per group (`InstanceRefreshInProgress`);
//! CancelInstanceRefresh. `POST /_sandbox/refresh-outcome` makes a group's
//! next refresh end Failed or RollbackSuccessful instead.

use super::autoscaling::members;
use super::xml::{self, leaf};
use super::{request_id, Bridge};
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use std::collections::HashMap;

/// The outcomes a test can ask for.
const OUTCOMES: [&str; 3] = ["Successful", "Failed", "RollbackSuccessful"];

#[derive(Clone, Debug)]
pub struct Refresh {
    id: String,
    group: String,
    status: String,
    reason: Option<String>,
    percentage: i32,
    to_update: i32,
    start: chrono::DateTime<chrono::Utc>,
    end: Option<chrono::DateTime<chrono::Utc>>,
    lt_id: String,
    version: String,
    cancel_requested: bool,
}

/// The refreshes of each group, newest first, and the outcome asked for
/// each group's next one.
#[derive(Default)]
pub struct Refreshes {
    by_group: HashMap<String, Vec<Refresh>>,
    outcomes: HashMap<String, String>,
}

fn is_active(status: &str) -> bool {
    matches!(
        status,
        "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress"
    )
}

fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Bridge {
    /// `POST /_sandbox/refresh-outcome`.
    pub(super) fn set_outcome(&self, form: &HashMap<String, String>) -> Response<Full<Bytes>> {
        let (Some(group), Some(outcome)) = (form.get("group"), form.get("outcome")) else {
            return xml::error(400, "ValidationError", "group and outcome are required");
        };
        if !OUTCOMES.contains(&outcome.as_str()) {
            return xml::error(
                400,
                "ValidationError",
                "outcome must be Successful, Failed or RollbackSuccessful",
            );
        }
        self.lock()
            .refreshes
            .outcomes
            .insert(group.clone(), outcome.clone());
        xml::acknowledged()
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
        let current = group.launch_template().or_else(|| {
            group
                .mixed_instances_policy()
                .and_then(|m| m.launch_template())
                .and_then(|l| l.launch_template_specification())
        });
        if let Some(message) = auto_rollback_refusal(form, current.and_then(|l| l.version())) {
            return xml::error(400, "ValidationError", &message);
        }
        let lt_id = form
            .get("DesiredConfiguration.LaunchTemplate.LaunchTemplateId")
            .cloned()
            .or_else(|| {
                current
                    .and_then(|l| l.launch_template_id())
                    .map(str::to_string)
            })
            .unwrap_or_default();
        let version = form
            .get("DesiredConfiguration.LaunchTemplate.Version")
            .cloned()
            .or_else(|| current.and_then(|l| l.version()).map(str::to_string))
            .unwrap_or_else(|| "$Default".into());
        let refresh = {
            let mut st = self.lock();
            let list = st.refreshes.by_group.entry(group_name.clone()).or_default();
            if let Some(active) = list.iter().find(|r| is_active(&r.status)) {
                return xml::error(
                    400,
                    "InstanceRefreshInProgress",
                    &format!("An Instance Refresh is already in progress and blocks the execution of this Instance Refresh ({}).", active.id),
                );
            }
            let r = Refresh {
                id: request_id(),
                group: group_name.clone(),
                status: "Pending".into(),
                reason: None,
                percentage: 0,
                to_update: group.instances().len() as i32,
                start: chrono::Utc::now(),
                end: None,
                lt_id,
                version,
                cancel_requested: false,
            };
            list.insert(0, r.clone());
            r
        };
        let bridge = self.clone();
        let id = refresh.id.clone();
        tokio::spawn(async move { bridge.run_refresh(refresh).await });
        xml::ok("StartInstanceRefresh", |w| {
            leaf(w, "InstanceRefreshId", &id)
        })
    }

    /// Applies `f` to the refresh, unless a cancel was requested (it is
    /// cancelled then); false when it is gone or cancelled.
    fn update(&self, group: &str, id: &str, f: impl FnOnce(&mut Refresh)) -> bool {
        let mut st = self.lock();
        let Some(r) = st
            .refreshes
            .by_group
            .get_mut(group)
            .and_then(|l| l.iter_mut().find(|r| r.id == id))
        else {
            return false;
        };
        if r.cancel_requested && is_active(&r.status) {
            r.status = "Cancelled".into();
            r.reason = Some("Cancelled by request".into());
            r.end = Some(chrono::Utc::now());
            return false;
        }
        f(r);
        true
    }

    /// Ends the refresh with `status`; false when a cancel came first.
    fn finish(&self, r: &Refresh, status: &str, reason: Option<String>, pct: i32) -> bool {
        self.update(&r.group, &r.id, |x| {
            x.status = status.into();
            x.reason = reason;
            x.percentage = pct;
            x.end = Some(chrono::Utc::now());
        })
    }

    /// Emulates the refresh in phases of `self.phase`.
    async fn run_refresh(&self, r: Refresh) {
        tokio::time::sleep(self.phase).await;
        if !self.update(&r.group, &r.id, |x| x.status = "InProgress".into()) {
            return;
        }
        let outcome = self
            .lock()
            .refreshes
            .outcomes
            .remove(&r.group)
            .unwrap_or_else(|| "Successful".into());
        tokio::time::sleep(self.phase).await;
        match outcome.as_str() {
            "Failed" => {
                self.update(&r.group, &r.id, |x| x.percentage = 50);
                tokio::time::sleep(self.phase).await;
                self.finish(
                    &r,
                    "Failed",
                    Some(
                        "Sandbox: instances failed their health checks (requested outcome)".into(),
                    ),
                    50,
                );
            }
            "RollbackSuccessful" => {
                if !self.update(&r.group, &r.id, |x| {
                    x.status = "RollbackInProgress".into();
                    x.percentage = 50;
                    x.reason = Some(
                        "Sandbox: alarm in ALARM state, rolling back (requested outcome)".into(),
                    );
                }) {
                    return;
                }
                tokio::time::sleep(self.phase).await;
                self.finish(
                    &r,
                    "RollbackSuccessful",
                    Some(
                        "Sandbox: rolled back to the previous configuration (requested outcome)"
                            .into(),
                    ),
                    100,
                );
            }
            _ => {
                // Ends Successful itself; a cancel or failure is in the status.
                if let Err(e) = self.replace(&r).await {
                    self.finish(&r, "Failed", Some(format!("Sandbox: {e}")), 0);
                }
            }
        }
    }

    /// Replaces the group's instances: the emulator launches a group's
    /// instances from the group's own launch template, so the group is moved
    /// to the desired one while capacity goes to 0 and back. Unless the
    /// refresh ends Successful (cancelled, or an emulator call failed) the
    /// group's previous launch template setting is put back: AWS applies the
    /// desired configuration to the group only once the refresh succeeds.
    /// Ends the refresh Successful when done; `Err`: it has to end Failed.
    async fn replace(&self, r: &Refresh) -> Result<(), String> {
        let g = self.group(&r.group).await.ok_or("group disappeared")?;
        let (min, desired) = (g.min_size().unwrap_or(0), g.desired_capacity().unwrap_or(0));
        let before = g.launch_template().cloned();
        let done = self.replace_with_desired(r, min, desired).await;
        // A cancel may also arrive between the last phase and the end.
        let succeeded = matches!(done, Ok(true)) && self.finish(r, "Successful", None, 100);
        if !succeeded {
            self.restore(&r.group, before, min, desired).await;
        }
        done.map(drop)
    }

    /// `Ok(false)`: cancelled on the way.
    async fn replace_with_desired(
        &self,
        r: &Refresh,
        min: i32,
        desired: i32,
    ) -> Result<bool, String> {
        let spec = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
            .launch_template_id(&r.lt_id)
            .version(&r.version)
            .build();
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .launch_template(spec)
            .min_size(0)
            .send()
            .await
            .map_err(|e| format!("UpdateAutoScalingGroup: {e:?}"))?;
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&r.group)
            .desired_capacity(0)
            .send()
            .await
            .map_err(|e| format!("SetDesiredCapacity 0: {e:?}"))?;
        if !self.update(&r.group, &r.id, |x| x.percentage = 50) {
            return Ok(false);
        }
        tokio::time::sleep(self.phase).await;
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&r.group)
            .desired_capacity(desired)
            .send()
            .await
            .map_err(|e| format!("SetDesiredCapacity {desired}: {e:?}"))?;
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .min_size(min)
            .send()
            .await
            .map_err(|e| format!("UpdateAutoScalingGroup min: {e:?}"))?;
        Ok(true)
    }

    /// Puts the group's launch template setting and capacity back (best
    /// effort: a failure is logged, the refresh's status already says it did
    /// not succeed).
    async fn restore(
        &self,
        group: &str,
        spec: Option<aws_sdk_autoscaling::types::LaunchTemplateSpecification>,
        min: i32,
        desired: i32,
    ) {
        let res = self
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(group)
            .set_launch_template(spec)
            .min_size(min)
            .desired_capacity(desired)
            .send()
            .await;
        if let Err(e) = res {
            tracing::warn!("bridge: could not restore group {group}: {e:?}");
        }
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
    let to_update = if r.status == "Successful" {
        0
    } else {
        r.to_update
    };
    leaf(w, "InstancesToUpdate", &to_update.to_string())?;
    w.create_element("DesiredConfiguration")
        .write_inner_content(|w| {
            w.create_element("LaunchTemplate")
                .write_inner_content(|w| {
                    leaf(w, "LaunchTemplateId", &r.lt_id)?;
                    leaf(w, "Version", &r.version)
                })?;
            Ok(())
        })
        .map(drop)
}

#[cfg(test)]
mod tests;
