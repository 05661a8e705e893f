//! Step 1, "Initial validation": the environment and its resources exist and
//! belong together, no refresh is running, the environment lock is ours; with
//! "lock instances" the fleet-changing processes are suspended.

use super::{Journal, Poll, StateWithExecution};
use crate::aws::autoscaling::{GroupInfo, GroupSetup, TemplatePlace, TemplateReference};
use crate::deps::Deps;
use crate::domain::{
    ownership_refusal, template_label, Deployment, DeploymentStatus, IgnoredRun, StepName,
    StepStatus, LOCK_PROCESSES,
};
use crate::error::StepError;
use crate::store::LockOutcome;

/// Makes the record this execution's: a Scheduled one moves to Running with
/// our execution ARN (atomically, so of two deliveries of one schedule only
/// one wins); a Running one is ours if it names us or names no execution yet.
/// `Err(reason)`: another execution owns it, or it was cancelled or ended.
async fn claim(
    deps: &Deps,
    dep: Deployment,
    me: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Result<Deployment, String>, StepError> {
    async fn reread(deps: &Deps, dep: Deployment) -> Result<Deployment, StepError> {
        Ok(deps
            .store
            .deployment(&dep.environment_id, &dep.deployment_id)
            .await?
            .unwrap_or(dep))
    }
    let mut dep = dep;
    if dep.status == DeploymentStatus::Scheduled {
        let started = deps
            .store
            .start_scheduled(&dep.environment_id, &dep.deployment_id, now, me)
            .await?;
        dep = reread(deps, dep).await?;
        if started {
            return Ok(Ok(dep));
        }
    }
    Ok(match dep.status {
        DeploymentStatus::Scheduled => Err(format!(
            "deployment {} is still Scheduled but could not be started",
            dep.deployment_id
        )),
        DeploymentStatus::Cancelled if dep.started_at.is_none() => Err(format!(
            "scheduled deployment {} was cancelled{} before it started",
            dep.deployment_id,
            dep.cancelled_by
                .as_deref()
                .map(|b| format!(" by {b}"))
                .unwrap_or_default()
        )),
        s if s.is_terminal() => Err(format!(
            "deployment {} already ended ({s})",
            dep.deployment_id
        )),
        _ => match me {
            None => Ok(dep),
            Some(arn) => {
                if deps
                    .store
                    .claim_execution(&dep.environment_id, &dep.deployment_id, arn)
                    .await?
                {
                    Ok(reread(deps, dep).await?)
                } else {
                    Err(format!(
                        "deployment {} is run by execution {}",
                        dep.deployment_id,
                        dep.execution_arn.as_deref().unwrap_or("another execution")
                    ))
                }
            }
        },
    })
}

pub async fn run(deps: &Deps, event: StateWithExecution) -> Result<Poll, StepError> {
    let input = event.state;
    input.check()?;
    let env_id = &input.environment_id;
    let env = deps.store.environment(env_id).await?.ok_or_else(|| {
        StepError::ValidationFailed(format!("environment '{env_id}' is not registered"))
    })?;

    // The record: created here for direct starts, Scheduled → Running for
    // scheduled ones, reused when the API (or a retry) created it. It is ours
    // only if it names this execution (or names none yet, and we claim it).
    let now = deps.clock.now();
    let me = event.execution_arn.as_deref();
    let dep = match deps.store.deployment(env_id, &input.deployment_id).await? {
        Some(d) => d,
        None => {
            let options = input
                .options
                .clone()
                .unwrap_or_default()
                .resolve(&env.defaults);
            let owner = input
                .owner
                .clone()
                .filter(|o| !o.trim().is_empty())
                .unwrap_or_else(|| "unknown".into());
            let mut d = Deployment::new_running(
                input.deployment_id.clone(),
                env_id.clone(),
                owner,
                options,
                now,
            );
            d.execution_arn = me.map(str::to_string);
            deps.store.create_deployment(&d, None).await?;
            deps.store
                .deployment(env_id, &input.deployment_id)
                .await?
                .unwrap_or(d)
        }
    };
    let dep = match claim(deps, dep, me, now).await? {
        Ok(dep) => dep,
        Err(reason) => {
            // Recorded on the deployment, then the execution ends (the ASL
            // sends AlreadyHandled to a Succeed state, never to Finalization).
            tracing::warn!(deployment = %input.deployment_id, execution = ?me, %reason, "ignored");
            deps.store
                .record_ignored(
                    env_id,
                    &input.deployment_id,
                    &IgnoredRun {
                        execution_arn: me.map(str::to_string),
                        at: now,
                        reason: reason.clone(),
                    },
                )
                .await?;
            return Err(StepError::AlreadyHandled(reason));
        }
    };

    super::check_cancel(&dep)?;
    let mut j = Journal::from_record(deps, dep, StepName::InitialValidation);
    j.start().await?;

    match deps
        .store
        .acquire_lock(env_id, &input.deployment_id, now)
        .await?
    {
        LockOutcome::Acquired => j.action("Environment locked for this deployment").await?,
        LockOutcome::HeldBy(other) => {
            return Err(StepError::EnvironmentLocked(format!(
                "environment '{env_id}' is busy: deployment {other} is running"
            )))
        }
    }

    let server = deps
        .ec2
        .instance(&env.preparation_server_id)
        .await?
        .ok_or_else(|| {
            StepError::ValidationFailed(format!(
                "preparation server {} not found",
                env.preparation_server_id
            ))
        })?;
    if server.state.is_gone() {
        return Err(StepError::ValidationFailed(format!(
            "preparation server {} is {}",
            server.id, server.state
        )));
    }
    // Each resource must still be tagged with this environment's own id (as
    // registration required): the IAM policies only require the tag to be
    // there, whichever environment it names.
    owned(
        format!("preparation server {}", server.id),
        server.environment_tag.as_deref(),
        env_id,
    )?;
    j.action(format!(
        "Preparation server {}{}: state {}, private IP {}, platform {}",
        server.id,
        server
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        server.state,
        server.private_ip.as_deref().unwrap_or("none"),
        server.platform.as_deref().unwrap_or("unknown"),
    ))
    .await?;

    let template = deps
        .ec2
        .launch_template(&env.launch_template_id)
        .await?
        .ok_or_else(|| {
            StepError::ValidationFailed(format!(
                "launch template {} not found",
                env.launch_template_id
            ))
        })?;
    owned(
        template_label(&template.id, template.name.as_deref()),
        template.environment_tag.as_deref(),
        env_id,
    )?;
    j.action(format!(
        "Launch template {}{}: default version {}, latest version {}",
        template.id,
        template
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default(),
        template.default_version,
        template.latest_version
    ))
    .await?;

    if env.auto_scaling_groups.is_empty() {
        return Err(StepError::ValidationFailed(format!(
            "environment '{env_id}' has no Auto Scaling group"
        )));
    }
    let described = deps
        .asg
        .groups_with_setups(&env.auto_scaling_groups)
        .await?;
    // Every group is checked before anything is changed: a refusal leaves
    // the groups as they were.
    for name in &env.auto_scaling_groups {
        let (g, setup) = described
            .iter()
            .find(|(g, _)| &g.name == name)
            .ok_or_else(|| {
                StepError::ValidationFailed(format!("Auto Scaling group {name} not found"))
            })?;
        if let Some(refusal) = setup_refusal(
            name,
            setup,
            &env.launch_template_id,
            template.name.as_deref(),
        ) {
            return Err(StepError::ValidationFailed(refusal));
        }
        owned(
            format!("Auto Scaling group {name}"),
            g.environment_tag.as_deref(),
            env_id,
        )?;
    }
    let groups: Vec<GroupInfo> = described.into_iter().map(|(g, _)| g).collect();
    if let Some(r) = &j.dep.rollback_of {
        // `$Latest` is always the newest version: it cannot be made to
        // resolve to an older one, so such a group would stay on the newest.
        if let Some(g) = groups
            .iter()
            .find(|g| g.launch_template_version.as_deref() == Some("$Latest"))
        {
            return Err(StepError::ValidationFailed(format!(
                "Auto Scaling group {} uses $Latest, which always resolves to the newest version of {}: \
                 a rollback to version {} cannot apply to it; set the group to $Default or a version number",
                g.name, env.launch_template_id, r.launch_template_version
            )));
        }
        j.action(format!(
            "Rollback to version {} of {} with image {} (deployment {})",
            r.launch_template_version, r.launch_template_id, r.image_id, r.deployment_id
        ))
        .await?;
    }
    for name in &env.auto_scaling_groups {
        let g = groups.iter().find(|g| &g.name == name).ok_or_else(|| {
            StepError::ValidationFailed(format!("Auto Scaling group {name} not found"))
        })?;
        j.action(format!(
            "Auto Scaling group {name}: {} instances, desired capacity {}, launch template version {}",
            g.instances.len(),
            g.desired_capacity,
            g.launch_template_version.as_deref().unwrap_or("$Default")
        ))
        .await?;
        if let Some(r) = deps
            .asg
            .refreshes(name)
            .await?
            .into_iter()
            .find(|r| r.is_active())
        {
            return Err(StepError::RefreshInProgress(format!(
                "instance refresh {} is {} on group {name}; wait for it to end",
                r.id, r.status
            )));
        }
    }

    // Each group's own launch template setting, before anything changes:
    // should the deployment fail after Create models made the new version
    // (before Replace instances ran), Finalization still knows which groups
    // are on `$Latest` and must not be left resolving to it.
    let mut recorded = false;
    for g in &groups {
        if !j.dep.runtime.prior_group_versions.contains_key(&g.name) {
            let v = g
                .launch_template_version
                .clone()
                .unwrap_or_else(|| "$Default".into());
            j.dep.runtime.prior_group_versions.insert(g.name.clone(), v);
            recorded = true;
        }
    }
    if recorded {
        j.save_runtime().await?;
    }

    if j.dep.options.lock_instances {
        for g in &groups {
            if j.dep.runtime.prior_suspended.contains_key(&g.name) {
                continue; // already done by an earlier attempt
            }
            let to_suspend: Vec<String> = LOCK_PROCESSES
                .iter()
                .filter(|p| !g.suspended.iter().any(|s| s == *p))
                .map(|p| p.to_string())
                .collect();
            // Remember before acting: Finalization resumes exactly this set
            // even if this call dies right after SuspendProcesses.
            j.dep
                .runtime
                .prior_suspended
                .insert(g.name.clone(), g.suspended.clone());
            j.dep
                .runtime
                .suspended_by_us
                .insert(g.name.clone(), to_suspend.clone());
            j.save_runtime().await?;
            if !to_suspend.is_empty() {
                deps.asg.suspend(&g.name, &to_suspend).await?;
            }
            j.action(format!(
                "Instances locked on group {}: suspended {} (already suspended: {})",
                g.name,
                list_or_none(&to_suspend),
                list_or_none(&g.suspended)
            ))
            .await?;
        }
    }

    j.end(StepStatus::Succeeded).await?;
    if j.dep.options.notify_on_start {
        super::notify(deps, &mut j, Some(&env), super::Notice::Started).await?;
    }
    Ok(Poll::done())
}

/// `ValidationFailed` naming `resource` when its `autosky:environment` tag
/// (`tag`) is missing or names another environment than `env`.
fn owned(resource: String, tag: Option<&str>, env: &str) -> Result<(), StepError> {
    match ownership_refusal(&resource, tag, env) {
        Some(refusal) => Err(StepError::ValidationFailed(refusal)),
        None => Ok(()),
    }
}

/// Why a group cannot be deployed with the environment's launch template
/// `lt_id` (named `lt_name`), if it cannot: it launches from a launch
/// configuration, or names another launch template anywhere (its own, its
/// mixed instances policy's, an override's). A refresh would move only the
/// references to our template, so any other one would keep launching
/// instances without the new image.
fn setup_refusal(
    group: &str,
    setup: &GroupSetup,
    lt_id: &str,
    lt_name: Option<&str>,
) -> Option<String> {
    let fix = format!("switch it to launch template {lt_id} (any version) to deploy with Autosky");
    if let Some(lc) = &setup.launch_configuration {
        return Some(format!(
            "Auto Scaling group {group} uses launch configuration {lc}; {fix}"
        ));
    }
    let ours = |r: &TemplateReference| match (&r.launch_template_id, &r.launch_template_name) {
        (Some(id), _) => id == lt_id,
        (None, Some(name)) => Some(name.as_str()) == lt_name,
        (None, None) => false,
    };
    let shown = |r: &TemplateReference| match (&r.launch_template_id, &r.launch_template_name) {
        (Some(id), Some(name)) => format!("{id} ({name})"),
        (Some(s), None) | (None, Some(s)) => s.clone(),
        (None, None) => "without an id or name".into(),
    };
    if let Some((place, r)) = setup.templates.iter().find(|(_, r)| !ours(r)) {
        let where_ = match place {
            TemplatePlace::Group => String::new(),
            TemplatePlace::MixedPolicy => " in its mixed instances policy".into(),
            TemplatePlace::Override(t) => format!(
                " in its mixed instances policy's override{}",
                t.as_deref()
                    .map(|t| format!(" for {t}"))
                    .unwrap_or_default()
            ),
        };
        return Some(format!(
            "Auto Scaling group {group} uses launch template {}{where_}, not {lt_id}; {fix}",
            shown(r)
        ));
    }
    if setup.templates.is_empty() {
        return Some(format!(
            "Auto Scaling group {group} names no launch template; {fix}"
        ));
    }
    None
}

pub(crate) fn list_or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

#[cfg(test)]
mod tests;
