//! Step 5, "Replace instances": an instance refresh per group with instances
//! (or on a version number),
//! to the main model in the group's own kind of version (a number → the main
//! model's number, with AutoRollback if the environment asks for it;
//! `$Default`/`$Latest` → the same, which resolve to the main model and which
//! AWS cannot roll back), adopted again (never started twice) on later calls; the ASL's wait loop calls it until every refresh is
//! terminal. RollbackSuccessful ends the deployment RolledBack.

use super::{wake, Journal, Poll, StepInput};
use crate::aws::autoscaling::VersionKind;
use crate::deps::Deps;
use crate::domain::{Deployment, StepName, StepStatus};
use crate::error::StepError;
use chrono::{DateTime, Duration, Utc};

/// How far AWS's clock may be behind ours when we compare a refresh's
/// StartTime with the time we recorded before starting it.
const CLOCK_SKEW_MINUTES: i64 = 5;

/// Where to look for a refresh we may have started without saving its id (a
/// crash between StartInstanceRefresh and the save): `None` = do not look,
/// `Some(since)` = the group's refreshes started after `since` (all: `None`).
/// A numbered desired version is the main model, created by this deployment,
/// so a refresh to it is ours whenever it started. `$Default`/`$Latest` are
/// everyone's, so only a refresh started after we recorded that we were about
/// to send ours (no record: we never sent it) is ours.
fn adoption_bound(
    dep: &Deployment,
    group: &str,
    kind: VersionKind,
) -> Option<Option<DateTime<Utc>>> {
    let skew = Duration::minutes(CLOCK_SKEW_MINUTES);
    match (dep.runtime.refresh_requested_at.get(group), kind) {
        (Some(at), _) => Some(Some(*at - skew)),
        // A rollback's numbered version is an earlier deployment's, not unique
        // to this one: only a refresh we recorded asking for is ours.
        (None, VersionKind::Number) if dep.rollback_of.is_none() => {
            Some(dep.started_at.map(|t| t - skew))
        }
        (None, _) => None,
    }
}

pub async fn run(deps: &Deps, input: StepInput) -> Result<Poll, StepError> {
    let mut j = Journal::load(deps, &input, StepName::ReplaceInstances).await?;
    if matches!(
        j.status(),
        StepStatus::Succeeded | StepStatus::NotApplicable
    ) {
        return Ok(Poll::done());
    }
    let env = j.environment().await?;
    if !env.defaults.replace_instances {
        return j
            .not_applicable(
                "instance replacement is off for this environment; new instances use the new model",
            )
            .await;
    }
    let main = j.dep.runtime.main_version.ok_or_else(|| {
        StepError::InvalidState("no main model recorded for this deployment".into())
    })?;
    let groups = deps
        .asg
        .groups_with_policies(&env.auto_scaling_groups)
        .await?;
    // A group with instances is refreshed. So is an empty group on a version
    // number: its setting must name the main model once the deployment
    // succeeds, or its next scale-out would launch the previous one; the
    // refresh applies it (on success only) and replaces nothing. An empty
    // `$Default`/`$Latest` group already resolves to the main model.
    let to_refresh: Vec<_> = groups
        .iter()
        .filter(|(g, _)| {
            g.desired_capacity > 0
                || j.dep.runtime.refreshes.contains_key(&g.name)
                || g.version_kind() == VersionKind::Number
        })
        .collect();
    if to_refresh.is_empty() {
        return j
            .not_applicable(
                "no group has instances (desired capacity 0), and none names a version number",
            )
            .await;
    }
    j.start().await?;

    for (g, mixed) in &to_refresh {
        if j.dep.runtime.refreshes.contains_key(&g.name) {
            continue;
        }
        // The group's setting before its refresh, recorded once: after a
        // successful refresh the group names the same kind of version again.
        let prior = match j.dep.runtime.prior_group_versions.get(&g.name) {
            Some(v) => v.clone(),
            None => {
                let v = g
                    .launch_template_version
                    .clone()
                    .unwrap_or_else(|| "$Default".into());
                j.dep
                    .runtime
                    .prior_group_versions
                    .insert(g.name.clone(), v.clone());
                j.save_runtime().await?;
                v
            }
        };
        let kind = VersionKind::of(Some(&prior));
        let desired = kind.desired_version(main);
        if kind == VersionKind::Latest {
            // `$Latest` must resolve to the main model, not to a version
            // someone created after it.
            let latest = deps
                .ec2
                .launch_template(&env.launch_template_id)
                .await?
                .map(|t| t.latest_version);
            if latest != Some(main) {
                return Err(StepError::InvalidState(format!(
                    "group {} uses $Latest, but the latest version of launch template {} is {} rather than the main model {main}; \
                     deploy again or set the group to a version number",
                    g.name,
                    env.launch_template_id,
                    latest.map_or("unknown".into(), |v| v.to_string())
                )));
            }
        }
        let ours = match adoption_bound(&j.dep, &g.name, kind) {
            Some(since) => deps
                .asg
                .refreshes_since(&g.name, since)
                .await?
                .into_iter()
                .find(|r| {
                    r.desired_version.as_deref() == Some(desired.as_str())
                        && r.desired_launch_template_id
                            .as_deref()
                            .is_none_or(|l| l == env.launch_template_id)
                }),
            None => None,
        };
        let shown = match kind {
            VersionKind::Number => main.to_string(),
            _ => format!("{desired} (version {main})"),
        };
        let id = match ours {
            Some(r) => {
                j.action(format!(
                    "Adopted instance refresh {} on group {} (version {shown})",
                    r.id, g.name
                ))
                .await?;
                r.id
            }
            None => {
                let prefs = &env.defaults.refresh_preferences;
                // AWS refuses AutoRollback for a group on $Default or $Latest:
                // it can only roll back to a numbered version.
                let auto_rollback = prefs.auto_rollback && kind == VersionKind::Number;
                j.dep
                    .runtime
                    .refresh_requested_at
                    .insert(g.name.clone(), deps.clock.now());
                j.save_runtime().await?;
                let id = deps
                    .asg
                    .start_refresh(
                        &g.name,
                        &env.launch_template_id,
                        &desired,
                        mixed.as_ref(),
                        prefs,
                        auto_rollback,
                    )
                    .await?
                    .ok_or_else(|| {
                        StepError::RefreshInProgress(format!(
                            "another instance refresh is in progress on group {}",
                            g.name
                        ))
                    })?;
                if prefs.auto_rollback && !auto_rollback {
                    j.action(format!(
                        "Auto rollback is not available for group {}: it uses the {prior} launch template version, \
                         and AWS rolls back only groups on a version number; the refresh runs without it",
                        g.name
                    ))
                    .await?;
                }
                j.action(format!(
                    "Started instance refresh {id} on group {} to launch template version {shown} ({} instances)",
                    g.name,
                    g.instances.len()
                ))
                .await?;
                id
            }
        };
        j.dep.runtime.refreshes.insert(g.name.clone(), id);
        j.save_runtime().await?;
    }

    let mut all_done = true;
    let mut rolled_back = Vec::new();
    let mut failed = Vec::new();
    let refreshes = j.dep.runtime.refreshes.clone();
    let prefs = &env.defaults.refresh_preferences;
    for (group, id) in &refreshes {
        let r = deps.asg.refresh(group, id).await?.ok_or_else(|| {
            StepError::RefreshFailed(format!("instance refresh {id} on group {group} not found"))
        })?;
        if !r.is_active() {
            // When the wait first saw the refresh's end (its EndTime): the
            // detection delay Finalization's metrics report. Saved before a
            // failed or rolled back refresh ends the step.
            let before = j.dep.runtime.waits_noticed.len();
            crate::domain::WaitNoticed::record(
                &mut j.dep.runtime,
                crate::domain::WaitNoticed::REFRESH,
                group,
                r.end_time,
                deps.clock.now(),
            );
            if j.dep.runtime.waits_noticed.len() != before {
                j.save_runtime().await?;
            }
        }
        if j.dep.runtime.refresh_progress.get(group) != Some(&r.percentage_complete) {
            j.dep
                .runtime
                .refresh_progress
                .insert(group.clone(), r.percentage_complete);
            j.save_runtime().await?;
            j.action(format!(
                "Group {group}: {}% of instances replaced ({})",
                r.percentage_complete, r.status
            ))
            .await?;
        }
        record_pauses(&mut j, deps, group, &r, prefs).await?;
        // AWS explains an auto rollback (an alarm, a failure) in the
        // refresh's status reason or its RollbackDetails.
        let mut reason = r
            .status_reason
            .clone()
            .or_else(|| r.rollback_reason.clone())
            .unwrap_or_else(|| "no reason given".into());
        if let Some(watched) = prefs.alarms_watched() {
            reason.push_str(&format!(" ({watched})"));
        }
        match r.status.as_str() {
            "Successful" => {}
            "RollbackSuccessful" => {
                rolled_back.push(format!("group {group} rolled back: {reason}"))
            }
            "Failed" | "Cancelled" | "RollbackFailed" => failed.push(format!(
                "instance refresh {id} on group {group} {}: {reason}",
                r.status
            )),
            _ => all_done = false,
        }
    }
    if !failed.is_empty() {
        return Err(StepError::RefreshFailed(failed.join("; ")));
    }
    if all_done && !rolled_back.is_empty() {
        return Err(StepError::RefreshRolledBack(rolled_back.join("; ")));
    }
    if all_done {
        j.action("All instances replaced").await?;
        j.end(StepStatus::Succeeded).await?;
        return Ok(Poll::done());
    }
    if j.elapsed_seconds() > env.defaults.refresh_timeout_seconds as i64 {
        return Err(StepError::RefreshFailed(format!(
            "instance refresh not finished after {} s",
            env.defaults.refresh_timeout_seconds
        )));
    }
    // Woken by any of the groups' refresh events (a checkpoint, baking, the end).
    Ok(Poll::waiting_on(
        j.dep.runtime.refreshes.keys().map(|g| wake::group(g)),
    ))
}

/// The highest checkpoint below 100 that `percentage` has reached, if any:
/// "A checkpoint is reached when the number of instances replaced reaches
/// the percentage threshold"; one passed over on the way is not paused at.
fn checkpoint_reached(checkpoints: &[i32], percentage: i32) -> Option<i32> {
    checkpoints
        .iter()
        .copied()
        .filter(|c| *c < 100 && *c <= percentage)
        .max()
}

/// "until about 10:15:00 UTC": `seconds` from now. AWS reached the pause at
/// or before the poll that saw it, so the time is an upper bound.
fn until(deps: &Deps, seconds: i32) -> String {
    (deps.clock.now() + Duration::seconds(seconds.into()))
        .format("%H:%M:%S UTC")
        .to_string()
}

/// Records, on change only, where the refresh pauses: a checkpoint reached
/// (with its delay and when it ends at the latest), `Baking` (with the bake
/// time left), and any status reason AWS gives.
async fn record_pauses(
    j: &mut Journal<'_>,
    deps: &Deps,
    group: &str,
    r: &crate::aws::autoscaling::RefreshInfo,
    prefs: &crate::domain::RefreshPreferences,
) -> Result<(), StepError> {
    let watched = prefs
        .alarms_watched()
        .map(|w| format!("; {w}"))
        .unwrap_or_default();
    if r.status == "InProgress" {
        let reached = checkpoint_reached(&prefs.checkpoint_percentages, r.percentage_complete);
        let recorded = j.dep.runtime.refresh_checkpoints.get(group).copied();
        if let Some(c) = reached.filter(|c| recorded.is_none_or(|x| x < *c)) {
            j.dep
                .runtime
                .refresh_checkpoints
                .insert(group.to_string(), c);
            j.save_runtime().await?;
            let delay = prefs.effective_checkpoint_delay();
            let stops: Vec<_> = prefs
                .checkpoint_percentages
                .iter()
                .filter(|c| **c < 100)
                .collect();
            let n = stops.iter().filter(|x| ***x <= c).count();
            j.action(format!(
                "Group {group}: checkpoint {c}% reached ({n} of {}); AWS waits {delay} s \
                 (checkpoint delay) before replacing more instances: at most {delay} s left, \
                 until about {}{watched}",
                stops.len(),
                until(deps, delay)
            ))
            .await?;
        }
    }
    let state = match &r.status_reason {
        Some(reason) => format!("{}: {reason}", r.status),
        None => r.status.clone(),
    };
    if j.dep.runtime.refresh_states.get(group) == Some(&state) {
        return Ok(());
    }
    j.dep
        .runtime
        .refresh_states
        .insert(group.to_string(), state.clone());
    j.save_runtime().await?;
    if r.status == "Baking" {
        let left = match prefs.bake_time_seconds {
            Some(bake) => format!(
                " for {bake} s (bake time): at most {bake} s left, until about {}",
                until(deps, bake)
            ),
            None => String::new(),
        };
        j.action(format!(
            "Group {group}: every instance replaced; AWS bakes{left} before the refresh \
             succeeds{watched}"
        ))
        .await?;
    } else if let Some(reason) = &r.status_reason {
        j.action(format!("Group {group}: {}: {reason}", r.status))
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
