//! The Auto Scaling actions the bridge serves itself or amends: fakecloud has
//! no SuspendProcesses / ResumeProcesses, so suspended processes are kept per
//! group here and added to its DescribeAutoScalingGroups answers (which also
//! show a refreshing group's own setting, see [`super::refresh`]); the
//! instance refresh actions go to [`super::refresh`]; the rest is forwarded.

use super::{xml, Bridge};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use std::collections::HashMap;

/// The processes a group has, all suspended when a request lists none.
const ALL_PROCESSES: [&str; 9] = [
    "Launch",
    "Terminate",
    "AddToLoadBalancer",
    "AlarmNotification",
    "AZRebalance",
    "HealthCheck",
    "InstanceRefresh",
    "ReplaceUnhealthy",
    "ScheduledActions",
];

/// A query-protocol list parameter: the values of `<prefix>1`, `<prefix>2`, …
/// in order.
pub(super) fn members(form: &HashMap<String, String>, prefix: &str) -> Vec<String> {
    let mut v: Vec<(usize, String)> = form
        .iter()
        .filter_map(|(k, val)| Some((k.strip_prefix(prefix)?.parse().ok()?, val.clone())))
        .collect();
    v.sort();
    v.into_iter().map(|(_, s)| s).collect()
}

impl Bridge {
    /// An Auto Scaling request that no fault answered.
    pub(super) async fn autoscaling(
        &self,
        action: &str,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match action {
            "SuspendProcesses" | "ResumeProcesses" => self.processes(action, form).await,
            "StartInstanceRefresh" => self.start_refresh(form).await,
            "DescribeInstanceRefreshes" => self.describe_refreshes(form),
            "CancelInstanceRefresh" => self.cancel_refresh(form),
            "RollbackInstanceRefresh" => self.rollback_refresh(form),
            "DescribeAutoScalingGroups" => {
                let res = self.forward(parts, body).await;
                self.with_overlays(res).await
            }
            _ => self.forward(parts, body).await,
        }
    }

    /// The group as the emulator describes it.
    pub(super) async fn group(
        &self,
        name: &str,
    ) -> Option<aws_sdk_autoscaling::types::AutoScalingGroup> {
        self.asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .ok()?
            .auto_scaling_groups()
            .first()
            .cloned()
    }

    async fn processes(
        &self,
        action: &str,
        form: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let Some(group) = form.get("AutoScalingGroupName") else {
            return xml::error(400, "ValidationError", "AutoScalingGroupName is required");
        };
        if self.group(group).await.is_none() {
            return xml::error(400, "ValidationError", "AutoScalingGroup name not found");
        }
        let mut listed = members(form, "ScalingProcesses.member.");
        if let Some(bad) = listed.iter().find(|p| !ALL_PROCESSES.contains(&p.as_str())) {
            return xml::error(
                400,
                "ValidationError",
                &format!("Invalid process name: {bad}"),
            );
        }
        if listed.is_empty() {
            listed = ALL_PROCESSES.iter().map(|s| s.to_string()).collect();
        }
        let mut st = self.lock();
        let set = st.suspended.entry(group.clone()).or_default();
        for p in listed {
            if action == "SuspendProcesses" {
                set.insert(p);
            } else {
                set.remove(&p);
            }
        }
        xml::ok_empty(action)
    }

    /// Edits the emulator's group descriptions: our SuspendedProcesses (of
    /// every group a process was ever suspended in: an empty list once all
    /// are resumed), and a refreshing group's setting as it was when its
    /// refresh started.
    async fn with_overlays(&self, res: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
        if res.status() != 200 {
            return res;
        }
        let (parts, body) = res.into_parts();
        // A Full body cannot fail to collect.
        let body = match body.collect().await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        let text = String::from_utf8_lossy(&body);
        let edits: HashMap<String, xml::Edit> = {
            let st = self.lock();
            let mut edits: HashMap<String, xml::Edit> = st
                .suspended
                .iter()
                .map(|(group, procs)| {
                    let edit = xml::Edit {
                        drop: vec!["SuspendedProcesses".into()],
                        append: xml::suspended_processes(procs),
                    };
                    (group.clone(), edit)
                })
                .collect();
            for (group, o) in st.refreshes.overlays() {
                let edit = match edits.remove(&group) {
                    Some(e) => e.and(o),
                    None => o,
                };
                edits.insert(group, edit);
            }
            edits
        };
        let body = match xml::edit_groups(&text, |group| edits.get(group).cloned()) {
            Ok(edited) => Bytes::from(edited),
            Err(e) => {
                tracing::warn!("bridge: DescribeAutoScalingGroups answer left as it was: {e}");
                body
            }
        };
        Response::from_parts(parts, Full::new(body))
    }
}
