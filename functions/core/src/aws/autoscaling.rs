//! Auto Scaling capability: groups, scaling processes and instance refreshes,
//! and the images launch configurations name.

use crate::domain::RefreshPreferences;
use crate::error::{classify_sdk_error, StepError};
use aws_sdk_autoscaling::error::ProvideErrorMetadata;
use aws_sdk_autoscaling::types::{
    AlarmSpecification, AutoScalingGroup, DesiredConfiguration, LaunchTemplateSpecification,
    MixedInstancesPolicy, RefreshStrategy,
};
use aws_sdk_autoscaling::Client;
use chrono::{DateTime, Utc};

/// The most refreshes one DescribeInstanceRefreshes page may hold (the
/// API's maximum; its default is 50).
const REFRESH_PAGE: i32 = 100;

#[derive(Debug, Clone, PartialEq)]
pub struct GroupInfo {
    pub name: String,
    pub desired_capacity: i32,
    pub launch_template_id: Option<String>,
    /// As the group references it: a number, `$Default` or `$Latest`.
    pub launch_template_version: Option<String>,
    pub suspended: Vec<String>,
    pub instances: Vec<GroupInstance>,
    /// The value of its `autosky:environment` tag, if it has one.
    pub environment_tag: Option<String>,
}

/// How a group names its launch template version. The group's own setting
/// decides whether AWS can roll a refresh back, and a deployment keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionKind {
    Number,
    Default,
    Latest,
}

impl VersionKind {
    /// The kind of a version as a group references it; none means `$Default`
    /// (the API's default for a launch template specification).
    pub fn of(version: Option<&str>) -> Self {
        match version {
            Some("$Latest") => Self::Latest,
            Some(v) if v.parse::<i64>().is_ok() => Self::Number,
            _ => Self::Default,
        }
    }

    /// The desired configuration's version that moves a group of this kind to
    /// `main` and leaves it of the same kind once the refresh succeeds
    /// (`main` is the default and the latest version when the refresh starts).
    pub fn desired_version(self, main: i64) -> String {
        match self {
            Self::Number => main.to_string(),
            Self::Default => "$Default".into(),
            Self::Latest => "$Latest".into(),
        }
    }
}

impl GroupInfo {
    pub fn version_kind(&self) -> VersionKind {
        VersionKind::of(self.launch_template_version.as_deref())
    }
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
    /// RollbackDetails.RollbackReason, when the refresh was rolled back.
    pub rollback_reason: Option<String>,
    pub percentage_complete: i32,
    /// The launch template the refresh's desired configuration names, if any.
    pub desired_launch_template_id: Option<String>,
    /// The desired configuration's version as sent: a number, `$Default` or `$Latest`.
    pub desired_version: Option<String>,
    pub start_time: Option<DateTime<Utc>>,
    /// EndTime: when the refresh ended (none while it runs).
    pub end_time: Option<DateTime<Utc>>,
}

impl RefreshInfo {
    pub fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "Pending" | "InProgress" | "Cancelling" | "RollbackInProgress" | "Baking"
        )
    }
}

/// A group as DescribeAutoScalingGroups describes it.
pub fn group_info(g: &AutoScalingGroup) -> GroupInfo {
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
        environment_tag: g
            .tags()
            .iter()
            .find(|t| t.key() == Some(crate::aws::ec2::TAG_ENVIRONMENT))
            .and_then(|t| t.value())
            .map(str::to_string),
    }
}

/// The desired configuration moving a group to `version` of
/// `launch_template_id`: for a group with a mixed instances policy, the whole
/// policy (overrides, instances distribution) with the template's version
/// replaced wherever it names this template; otherwise the launch template.
pub fn desired_configuration(
    launch_template_id: &str,
    version: &str,
    mixed: Option<&MixedInstancesPolicy>,
) -> DesiredConfiguration {
    let spec = || {
        LaunchTemplateSpecification::builder()
            .launch_template_id(launch_template_id)
            .version(version)
            .build()
    };
    let Some(policy) = mixed else {
        return DesiredConfiguration::builder()
            .launch_template(spec())
            .build();
    };
    let mut policy = policy.clone();
    if let Some(lt) = policy.launch_template.as_mut() {
        // The policy may name the template by name: ours by id replaces it.
        lt.launch_template_specification = Some(spec());
        for o in lt.overrides.iter_mut().flatten() {
            if let Some(s) = o.launch_template_specification.as_mut() {
                if s.launch_template_id.as_deref() == Some(launch_template_id) {
                    s.version = Some(version.to_string());
                }
            }
        }
    }
    DesiredConfiguration::builder()
        .mixed_instances_policy(policy)
        .build()
}

fn refresh_info(r: &aws_sdk_autoscaling::types::InstanceRefresh) -> RefreshInfo {
    let lt = r.desired_configuration().and_then(|d| {
        d.launch_template().or_else(|| {
            d.mixed_instances_policy()
                .and_then(|m| m.launch_template())
                .and_then(|l| l.launch_template_specification())
        })
    });
    RefreshInfo {
        id: r.instance_refresh_id().unwrap_or_default().to_string(),
        status: r
            .status()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        status_reason: r.status_reason().map(str::to_string),
        rollback_reason: r
            .rollback_details()
            .and_then(|d| d.rollback_reason())
            .map(str::to_string),
        percentage_complete: r.percentage_complete().unwrap_or(0),
        desired_launch_template_id: lt.and_then(|l| l.launch_template_id()).map(str::to_string),
        desired_version: lt.and_then(|l| l.version()).map(str::to_string),
        start_time: r
            .start_time()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
        end_time: r
            .end_time()
            .and_then(|t| DateTime::from_timestamp(t.secs(), t.subsec_nanos())),
    }
}

/// Auto Scaling as the steps and the API use it.
pub type AutoScaling = super::Capability<Client>;

impl AutoScaling {
    /// The named groups that exist (missing ones are simply absent).
    pub async fn groups(&self, names: &[String]) -> Result<Vec<GroupInfo>, StepError> {
        Ok(self
            .groups_with_policies(names)
            .await?
            .into_iter()
            .map(|(g, _)| g)
            .collect())
    }

    /// The named groups, each with its whole mixed instances policy if it
    /// has one: a refresh must send the policy whole (fields left out are
    /// reset to their defaults).
    pub async fn groups_with_policies(
        &self,
        names: &[String],
    ) -> Result<Vec<(GroupInfo, Option<MixedInstancesPolicy>)>, StepError> {
        self.named_groups(names, |g| {
            (group_info(g), g.mixed_instances_policy().cloned())
        })
        .await
    }

    /// The named groups that exist, each as `read` makes it (one call).
    async fn named_groups<T>(
        &self,
        names: &[String],
        read: impl Fn(&aws_sdk_autoscaling::types::AutoScalingGroup) -> T,
    ) -> Result<Vec<T>, StepError> {
        let out = self
            .client
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.to_vec()))
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeAutoScalingGroups", &e))?;
        Ok(out.auto_scaling_groups().iter().map(read).collect())
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

    /// Our refresh, asked for by its id (`None`: AWS does not know it).
    pub async fn refresh(&self, group: &str, id: &str) -> Result<Option<RefreshInfo>, StepError> {
        let out = self
            .client
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .instance_refresh_ids(id)
            .send()
            .await
            .map_err(|e| classify_sdk_error("DescribeInstanceRefreshes", &e))?;
        Ok(out
            .instance_refreshes()
            .iter()
            .map(refresh_info)
            .find(|r| r.id == id))
    }

    /// The group's refreshes, newest first (as the API sorts them), every page.
    pub async fn refreshes(&self, group: &str) -> Result<Vec<RefreshInfo>, StepError> {
        self.refreshes_since(group, None).await
    }

    /// The group's refreshes started at or after `since` (all when `None`),
    /// newest first: pages are followed until one reaches an older refresh.
    pub async fn refreshes_since(
        &self,
        group: &str,
        since: Option<DateTime<Utc>>,
    ) -> Result<Vec<RefreshInfo>, StepError> {
        let mut all = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_instance_refreshes()
                .auto_scaling_group_name(group)
                .max_records(REFRESH_PAGE)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeInstanceRefreshes", &e))?;
            for r in out.instance_refreshes().iter().map(refresh_info) {
                if let (Some(since), Some(start)) = (since, r.start_time) {
                    if start < since {
                        return Ok(all);
                    }
                }
                all.push(r);
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => return Ok(all),
            }
        }
    }

    /// Starts a rolling refresh to `version` of the launch template (a number,
    /// `$Default` or `$Latest`, see [`VersionKind::desired_version`]); a group
    /// with a mixed instances policy passes it (see [`desired_configuration`]).
    /// `auto_rollback` is sent as given: the caller allows it only where AWS
    /// does (a group on a numbered version). `Ok(None)` means another refresh
    /// is already in progress on the group.
    pub async fn start_refresh(
        &self,
        group: &str,
        launch_template_id: &str,
        version: &str,
        mixed: Option<&MixedInstancesPolicy>,
        prefs: &RefreshPreferences,
        auto_rollback: bool,
    ) -> Result<Option<String>, StepError> {
        let mut p = aws_sdk_autoscaling::types::RefreshPreferences::builder()
            .min_healthy_percentage(prefs.min_healthy_percentage)
            .skip_matching(prefs.skip_matching)
            .auto_rollback(auto_rollback);
        if let Some(w) = prefs.instance_warmup_seconds {
            p = p.instance_warmup(w);
        }
        let checkpoints = prefs.checkpoints_sent();
        if !checkpoints.is_empty() {
            p = p
                .set_checkpoint_percentages(Some(checkpoints))
                .set_checkpoint_delay(prefs.checkpoint_delay_seconds);
        }
        if let Some(b) = prefs.bake_time_seconds {
            p = p.bake_time(b);
        }
        if !prefs.alarms.is_empty() {
            p = p.alarm_specification(
                AlarmSpecification::builder()
                    .set_alarms(Some(prefs.alarms.clone()))
                    .build(),
            );
        }
        let res = self
            .client
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .strategy(RefreshStrategy::Rolling)
            .desired_configuration(desired_configuration(launch_template_id, version, mixed))
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

/// What RollbackInstanceRefresh answered.
#[derive(Debug, Clone, PartialEq)]
pub enum Rollback {
    /// AWS accepted: it now replaces the instances the refresh replaced and
    /// keeps the group on the configuration it had before the refresh.
    Started,
    /// AWS refused for good (no active refresh, an irreversible one — a group
    /// on `$Latest`/`$Default` or a refresh without a desired configuration —,
    /// or an endpoint that does not know the action): the caller restores the
    /// fleet another way.
    Refused { code: String, message: String },
}

impl AutoScaling {
    /// Rolls back the group's active refresh. Transient failures are errors
    /// (to retry); every other refusal is [`Rollback::Refused`].
    pub async fn rollback_refresh(&self, group: &str) -> Result<Rollback, StepError> {
        match self
            .client
            .rollback_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await
        {
            Ok(_) => Ok(Rollback::Started),
            Err(e) => match classify_sdk_error("RollbackInstanceRefresh", &e) {
                retry @ StepError::Retryable(_) => Err(retry),
                other => Ok(Rollback::Refused {
                    code: e.code().unwrap_or("unknown").to_string(),
                    message: other.message().to_string(),
                }),
            },
        }
    }

    /// Starts the refresh that brings a group's instances back to `version`
    /// (the group's own setting before the deployment): only the instances
    /// that do not match it are replaced (SkipMatching), and it is never
    /// rolled back itself (there is nothing older to go back to).
    /// `Ok(None)` means another refresh is in progress on the group.
    pub async fn start_restore_refresh(
        &self,
        group: &str,
        launch_template_id: &str,
        version: &str,
        mixed: Option<&MixedInstancesPolicy>,
        prefs: &RefreshPreferences,
    ) -> Result<Option<String>, StepError> {
        // No pause and no alarm: the fleet goes back at once, and an alarm
        // still in ALARM (the reason it comes back) must not stop it.
        let prefs = RefreshPreferences {
            skip_matching: true,
            auto_rollback: false,
            checkpoint_percentages: Vec::new(),
            checkpoint_delay_seconds: None,
            bake_time_seconds: None,
            alarms: Vec::new(),
            ..prefs.clone()
        };
        self.start_refresh(group, launch_template_id, version, mixed, &prefs, false)
            .await
    }
}

/// Where a group names a launch template.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplatePlace {
    /// The group's own launch template.
    Group,
    /// Its mixed instances policy's launch template.
    MixedPolicy,
    /// An override of the mixed instances policy, with its instance type.
    Override(Option<String>),
}

/// What a group launches from, as Initial validation checks it: a launch
/// configuration, and every launch template the group names (its own, its
/// mixed instances policy's and each override's).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupSetup {
    pub launch_configuration: Option<String>,
    pub templates: Vec<(TemplatePlace, TemplateReference)>,
}

/// A group's setup as DescribeAutoScalingGroups describes it.
pub fn group_setup(g: &AutoScalingGroup) -> GroupSetup {
    let reference = |s: &LaunchTemplateSpecification| TemplateReference {
        launch_template_id: s.launch_template_id().map(str::to_string),
        launch_template_name: s.launch_template_name().map(str::to_string),
        version: s.version().map(str::to_string),
    };
    let mut templates = Vec::new();
    if let Some(s) = g.launch_template() {
        templates.push((TemplatePlace::Group, reference(s)));
    }
    if let Some(l) = g.mixed_instances_policy().and_then(|m| m.launch_template()) {
        if let Some(s) = l.launch_template_specification() {
            templates.push((TemplatePlace::MixedPolicy, reference(s)));
        }
        for o in l.overrides() {
            if let Some(s) = o.launch_template_specification() {
                let instance_type = o.instance_type().map(str::to_string);
                templates.push((TemplatePlace::Override(instance_type), reference(s)));
            }
        }
    }
    GroupSetup {
        launch_configuration: g.launch_configuration_name().map(str::to_string),
        templates,
    }
}

impl AutoScaling {
    /// The named groups that exist, each with its setup (one call).
    pub async fn groups_with_setups(
        &self,
        names: &[String],
    ) -> Result<Vec<(GroupInfo, GroupSetup)>, StepError> {
        self.named_groups(names, |g| (group_info(g), group_setup(g)))
            .await
    }
}

impl AutoScaling {
    /// Which of `images` a launch configuration of the Region names
    /// ("launch configuration web-lc"): a group may launch from it at any
    /// time. All pages.
    pub async fn images_in_launch_configurations(
        &self,
        images: &std::collections::BTreeSet<String>,
    ) -> Result<crate::aws::ec2::ImageUses, StepError> {
        let mut uses = crate::aws::ec2::ImageUses::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .describe_launch_configurations()
                .max_records(100)
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| classify_sdk_error("DescribeLaunchConfigurations", &e))?;
            for lc in out.launch_configurations() {
                if let Some(image) = lc.image_id().filter(|i| images.contains(*i)) {
                    uses.entry(image.to_string()).or_default().push(format!(
                        "launch configuration {}",
                        lc.launch_configuration_name().unwrap_or_default()
                    ));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(uses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

    /// The restore refresh brings the fleet back at once: no checkpoint, no
    /// bake, no alarm (one still in ALARM must not stop it), no rollback.
    #[tokio::test]
    async fn a_restore_refresh_has_no_pause_and_watches_no_alarm() {
        let rule = mock!(Client::start_instance_refresh)
            .match_requests(|r| {
                let p = r.preferences().unwrap();
                p.checkpoint_percentages().is_empty()
                    && p.checkpoint_delay().is_none()
                    && p.bake_time().is_none()
                    && p.alarm_specification().is_none()
                    && p.auto_rollback() == Some(false)
                    && p.skip_matching() == Some(true)
                    && p.min_healthy_percentage() == Some(80)
            })
            .then_output(|| {
                StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-restore")
                    .build()
            });
        let asg = AutoScaling::new(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&rule]
        ));
        let prefs = RefreshPreferences {
            min_healthy_percentage: 80,
            checkpoint_percentages: vec![10, 50],
            checkpoint_delay_seconds: Some(600),
            bake_time_seconds: Some(300),
            alarms: vec!["web-5xx".into()],
            ..RefreshPreferences::default()
        };
        let id = asg
            .start_restore_refresh("web", "lt-0abc", "8", None, &prefs)
            .await
            .unwrap();
        assert_eq!(id.as_deref(), Some("r-restore"));
        assert_eq!(rule.num_calls(), 1);
    }
}
