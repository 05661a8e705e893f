//! Auto Scaling capability: groups, scaling processes and instance refreshes.

use crate::domain::RefreshPreferences;
use crate::error::{classify_sdk_error, StepError};
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{
    DesiredConfiguration, LaunchTemplateSpecification, RefreshStrategy,
};
use aws_sdk_autoscaling::Client;

#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub name: String,
    pub desired_capacity: i32,
    pub launch_template_id: Option<String>,
    /// As the group references it: a number, `$Default` or `$Latest`.
    pub launch_template_version: Option<String>,
    pub suspended: Vec<String>,
    pub instances: Vec<GroupInstance>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupInstance {
    pub id: String,
    pub launch_template_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RefreshInfo {
    pub id: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub percentage_complete: i32,
    /// The pinned launch template version the refresh moves to, if any.
    pub desired_version: Option<String>,
}

impl RefreshInfo {
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking"
        )
    }
}

/// Auto Scaling as the steps and the API use it.
pub type AutoScaling = super::Capability<Client>;

impl AutoScaling {
    /// The named groups that exist (missing ones are simply absent).
    pub async fn groups(&self, names: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeAutoScalingGroups", &e))?;
        Ok(out
            .auto_scaling_groups()
            .iter()
            .map(|g| {
                let spec = g.launch_template().or_else(|| {
                    g.mixed_instances_policy()
                        .and_then(|m| m.launch_template())
                        .and_then(|l| l.launch_template_specification())
                });
                GroupInfo {
                    name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    desired_capacity: g.desired_capacity().unwrap_or(0),
                    launch_template_id: spec
                        .and_then(|s| s.launch_template_id())
                        .map(str::to_string),
                    launch_template_version: spec.and_then(|s| s.version()).map(str::to_string),
                    suspended: g
                        .suspended_processes()
                        .iter()
                        .filter_map(|p| p.process_name())
                        .map(str::to_string)
                        .collect(),
                    instances: g
                        .instances()
                        .iter()
                        .map(|i| GroupInstance {
                            id: i.instance_id().unwrap_or_default().to_string(),
                            launch_template_version: i
                                .launch_template()
                                .and_then(|l| l.version())
                                .map(str::to_string),
                        })
                        .collect(),
                }
            })
            .collect())
    }

    pub async fn suspend(&self, group: &str, processes: &[String]) -> Result<(), StepError> {
        self.client
            .suspend_processes()
            .auto_scaling_group_name(group)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error("SuspendProcesses", &e))
    }

    pub async fn resume(&self, group: &str, processes: &[String]) -> Result<(), StepError> {
        self.client
            .resume_processes()
            .auto_scaling_group_name(group)
            .set_scaling_processes(Some(processes.to_vec()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify_sdk_error("ResumeProcesses", &e))
    }

    /// The group's refreshes, newest first (as the API returns them).
    pub async fn refreshes(&self, group: &str) -> Result<Vec<RefreshInfo>, StepError> {
        let out = self
            .client
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeInstanceRefreshes", &e))?;
        Ok(out
            .instance_refreshes()
            .iter()
            .map(|r| RefreshInfo {
                id: r.instance_refresh_id().unwrap_or_default().to_string(),
                status: r
                    .status()
                    .map(|s| s.as_str().to_string())
                    .unwrap_or_default(),
                status_reason: r.status_reason().map(str::to_string),
                percentage_complete: r.percentage_complete().unwrap_or(0),
                desired_version: r
                    .desired_configuration()
                    .and_then(|d| d.launch_template())
                    .and_then(|l| l.version())
                    .map(str::to_string),
            })
            .collect())
    }

    /// Starts a rolling refresh pinned to `version` (a number, never `$Latest`).
    /// `Ok(None)` means another refresh is already in progress on the group.
    pub async fn start_refresh(
        &self,
        group: &str,
        launch_template_id: &str,
        version: i64,
        prefs: &RefreshPreferences,
    ) -> Result<Option<String>, StepError> {
        let mut p = aws_sdk_autoscaling::types::RefreshPreferences::builder()
            .min_healthy_percentage(prefs.min_healthy_percentage)
            .skip_matching(prefs.skip_matching)
            .auto_rollback(prefs.auto_rollback);
        if let Some(w) = prefs.instance_warmup_seconds {
            p = p.instance_warmup(w);
        }
        let res = self
            .client
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .strategy(RefreshStrategy::Rolling)
            .desired_configuration(
                DesiredConfiguration::builder()
                    .launch_template(
                        LaunchTemplateSpecification::builder()
                            .launch_template_id(launch_template_id)
                            .version(version.to_string())
                            .build(),
                    )
                    .build(),
            )
            .preferences(p.build())
            .send()
            .await;
        match res {
            Ok(out) => Ok(out.instance_refresh_id().map(str::to_string)),
            Err(e) if e.code() == Some("InstanceRefreshInProgress") => Ok(None),
            Err(e) => Err(classify_sdk_error("StartInstanceRefresh", &e)),
        }
    }

    /// Cancels the group's active refresh; `false` when none was active.
    pub async fn cancel_refresh(&self, group: &str) -> Result<bool, StepError> {
        match self
            .client
            .cancel_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if e.code() == Some("ActiveInstanceRefreshNotFound") => Ok(false),
            Err(e) => Err(classify_sdk_error("CancelInstanceRefresh", &e)),
        }
    }
}

/// A launch template as a group (or one of its instances) refers to it.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateReference {
    pub launch_template_id: Option<String>,
    pub launch_template_name: Option<String>,
    /// As written: a number, `$Default` or `$Latest`; `None` when left out,
    /// which AWS reads as `$Default`.
    pub version: Option<String>,
}

/// Every launch template reference of one group: its launch template, its
/// mixed instances policy's template and each override's, and each instance's.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTemplates {
    pub name: String,
    pub references: Vec<TemplateReference>,
}

impl AutoScaling {
    /// Every group of the account in this Region (not only an environment's),
    /// with every launch template reference it holds, all pages.
    pub async fn all_groups(&self) -> Result<Vec<GroupTemplates>, StepError> {
        let reference = |s: &LaunchTemplateSpecification| TemplateReference {
            launch_template_id: s.launch_template_id().map(str::to_string),
            launch_template_name: s.launch_template_name().map(str::to_string),
            version: s.version().map(str::to_string),
        };
        let mut groups = Vec::new();
        let mut token: Option<String> = None;
        loop {
            // No names: every group is described, up to MaxRecords (at most
            // 100) per page; a page may hold fewer while NextToken says more.
            let out = self
                .client
                .describe_auto_scaling_groups()
                .max_records(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeAutoScalingGroups", &e))?;
            groups.extend(out.auto_scaling_groups().iter().map(|g| {
                let mixed = g.mixed_instances_policy().and_then(|m| m.launch_template());
                let references = g
                    .launch_template()
                    .into_iter()
                    .chain(mixed.and_then(|l| l.launch_template_specification()))
                    .chain(
                        mixed
                            .map(|l| l.overrides())
                            .unwrap_or_default()
                            .iter()
                            .filter_map(|o| o.launch_template_specification()),
                    )
                    .chain(g.instances().iter().filter_map(|i| i.launch_template()))
                    .map(reference)
                    .collect();
                GroupTemplates {
                    name: g.auto_scaling_group_name().unwrap_or_default().to_string(),
                    references,
                }
            }));
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(groups)
    }
}
