//! Bringing the fleet back after a failed or cancelled deployment.
//!
//! Cancelling an instance refresh "does not roll back any changes that it
//! made": the instances it already replaced keep the new version while the
//! launch template's default goes back to the backup, a mixed fleet. So, per
//! group that had a refresh of ours:
//!
//! - the refresh is still active and the group names a version number: AWS
//!   rolls it back (RollbackInstanceRefresh), which restores the group "to the
//!   configuration that it was using before the start of the instance refresh";
//! - otherwise (a group on `$Default`/`$Latest`, which AWS cannot roll back; a
//!   refresh that already ended Failed or Cancelled; a refused rollback): the
//!   refresh is cancelled if active and waited for, the backup is the default
//!   again, for a `$Latest` group the version this deployment created is
//!   deleted (so `$Latest` is the version before it), and a restore refresh to
//!   the group's own setting replaces the instances that run the new version
//!   (SkipMatching; none are replaced when none differ). No instance on the
//!   new version: no restore refresh.
//!
//! Each call does what it can and reports whether it must be called again;
//! every decision is taken again from AWS's answers and the record, so a
//! retried or repeated call does nothing twice.

use crate::aws::autoscaling::{Rollback, VersionKind};
use crate::deps::Deps;
use crate::domain::Environment;
use crate::error::StepError;
use crate::steps::Journal;
use std::collections::{BTreeMap, BTreeSet};

/// The statuses in which AWS can still roll a refresh back ("You can roll
/// back an instance refresh that is still in progress").
fn rollbackable(status: &str) -> bool {
    matches!(status, "Pending" | "InProgress" | "Baking")
}

/// The outcome of one pass.
pub(super) struct Pass {
    /// Some group's rollback or restore is still running.
    pub waiting: bool,
    /// Failed AWS calls (the pass is retried).
    pub problems: Vec<String>,
}

/// One pass over the groups that had a refresh of ours. Restores the backup
/// as default too (before any restore refresh needs it).
pub(super) async fn pass(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: &Environment,
) -> Result<Pass, StepError> {
    let mut problems = Vec::new();
    let mut waiting = false;
    // Groups whose refresh has ended and were not rolled back by AWS: they
    // may need a restore refresh.
    let mut to_restore: Vec<String> = Vec::new();
    // Groups whose fleet is final: their versions are recorded below.
    let mut finished: Vec<String> = Vec::new();
    let rt = j.dep.runtime.clone();
    let main = rt.main_version;

    for (group, id) in &rt.refreshes {
        if rt.fleet_versions.contains_key(group) {
            continue;
        }
        // A rollback or restore refresh of ours: follow it to its end.
        let follow = rt
            .rollbacks
            .get(group)
            .map(|r| (r, "rollback", "RollbackSuccessful"))
            .or_else(|| {
                rt.restore_refreshes
                    .get(group)
                    .map(|r| (r, "restore refresh", "Successful"))
            });
        if let Some((rid, what, success)) = follow {
            match deps.asg.refresh(group, rid).await {
                Ok(Some(r)) if r.is_active() => {
                    waiting = true;
                }
                Ok(r) => {
                    // Saved with the group's fleet below.
                    crate::domain::WaitNoticed::record(
                        &mut j.dep.runtime,
                        crate::domain::WaitNoticed::FLEET_RESTORE,
                        group,
                        r.as_ref().and_then(|r| r.end_time),
                        deps.clock.now(),
                    );
                    let status = r.as_ref().map_or("unknown", |r| r.status.as_str());
                    if status != success {
                        let reason = r
                            .as_ref()
                            .and_then(|r| r.status_reason.as_deref())
                            .map(|s| format!(": {s}"))
                            .unwrap_or_default();
                        j.action(format!(
                            "Cleanup incomplete: the {what} of instance refresh {rid} on group {group} ended {status}{reason}"
                        ))
                        .await?;
                    }
                    finished.push(group.clone());
                }
                Err(e) => problems.push(format!("describe the {what} on {group}: {}", e.message())),
            }
            continue;
        }

        let refresh = match deps.asg.refresh(group, id).await {
            Ok(r) => r,
            Err(e) => {
                problems.push(format!("describe the refresh on {group}: {}", e.message()));
                continue;
            }
        };
        let status = refresh.as_ref().map_or("", |r| r.status.as_str());
        let prior = rt.prior_group_versions.get(group).map(String::as_str);
        if rollbackable(status) && VersionKind::of(prior) == VersionKind::Number {
            match deps.asg.rollback_refresh(group).await {
                Ok(Rollback::Started) => {
                    j.dep.runtime.rollbacks.insert(group.clone(), id.clone());
                    j.save_runtime().await?;
                    j.action(format!(
                        "Rolling back instance refresh {id} on group {group}: AWS replaces the instances it replaced, the group stays on version {}",
                        prior.unwrap_or_default()
                    ))
                    .await?;
                    waiting = true;
                    continue;
                }
                Ok(Rollback::Refused { code, message }) => {
                    j.action(format!(
                        "Instance refresh {id} on group {group} could not be rolled back ({code}: {message}): the fleet is restored with a new refresh"
                    ))
                    .await?;
                }
                Err(e) => {
                    problems.push(format!("roll back the refresh on {group}: {}", e.message()));
                    continue;
                }
            }
        }
        match status {
            s if rollbackable(s) => match deps.asg.cancel_refresh(group).await {
                Ok(true) => {
                    j.action(format!("Cancelled instance refresh {id} on group {group}"))
                        .await?;
                    waiting = true;
                }
                // It ended meanwhile: looked at again on the next pass.
                Ok(false) => waiting = true,
                Err(e) => problems.push(format!("cancel the refresh on {group}: {}", e.message())),
            },
            // Wait until no instance is being replaced any more.
            "Cancelling" | "RollbackInProgress" => waiting = true,
            "RollbackSuccessful" => {
                j.action(format!(
                    "Instance refresh {id} on group {group} was rolled back by AWS"
                ))
                .await?;
                finished.push(group.clone());
            }
            // Failed, Cancelled, RollbackFailed, Successful (the deployment
            // failed after it), or unknown to AWS: bring the instances back.
            _ => to_restore.push(group.clone()),
        }
    }

    let before = problems.len();
    restore_default(deps, j, env, &mut problems).await?;
    // A `$Default` restore refresh must not start while the default is
    // still the new version.
    let default_restored = problems.len() == before;

    // `$Latest` groups: once none of them has a refresh still running, the
    // main version goes, so that `$Latest` is the version before it again.
    let latest_groups: Vec<&String> = rt
        .prior_group_versions
        .iter()
        .filter(|(_, v)| VersionKind::of(Some(v)) == VersionKind::Latest)
        .map(|(g, _)| g)
        .collect();
    let latest_busy = latest_groups.iter().any(|g| {
        rt.refreshes.contains_key(*g)
            && !rt.fleet_versions.contains_key(*g)
            && !to_restore.contains(g)
            && !finished.contains(g)
    });
    if !latest_groups.is_empty() && !latest_busy && !j.dep.runtime.main_version_deleted {
        if let Some(main) = main {
            delete_main(deps, j, env, main, &latest_groups, &mut problems).await?;
        }
    }

    if !to_restore.is_empty() || !finished.is_empty() {
        let fleets = match Fleets::read(deps, env, to_restore.iter().chain(&finished)).await {
            Ok(f) => f,
            Err(e) => {
                problems.push(format!("describe the groups' instances: {}", e.message()));
                return Ok(Pass {
                    waiting: true,
                    problems,
                });
            }
        };
        for group in &to_restore {
            let prior = rt
                .prior_group_versions
                .get(group)
                .cloned()
                .unwrap_or_else(|| "$Default".into());
            let on_main = main.map_or(0, |m| fleets.count_on(group, &m.to_string()));
            let unknown = fleets.count_unknown(group);
            // A refresh that succeeded before the deployment failed moved a
            // numbered group's own setting to the new version: that needs the
            // restore refresh too, even with no instance (an empty group).
            let setting_moved = VersionKind::of(Some(&prior)) == VersionKind::Number
                && fleets
                    .numbered_setting(group)
                    .is_some_and(|now| now != prior);
            if on_main + unknown == 0 && !setting_moved {
                j.action(format!(
                    "No instance of group {group} runs version {}: no restore refresh needed",
                    main.map_or("?".into(), |m| m.to_string())
                ))
                .await?;
                finished.push(group.clone());
                continue;
            }
            if !default_restored
                || (VersionKind::of(Some(&prior)) == VersionKind::Latest
                    && !j.dep.runtime.main_version_deleted)
            {
                // `$Latest` would still be the new version; the deletion
                // failed above (a problem on record) or must be retried.
                waiting = true;
                continue;
            }
            match start_restore(deps, j, env, group, &prior, fleets.policy(group)).await {
                Ok(true) => {
                    j.action(format!(
                        "Started instance refresh {} on group {group} to bring its instances on version {} back to {prior} (skip matching: only those are replaced)",
                        j.dep.runtime.restore_refreshes.get(group).map_or("?", String::as_str),
                        main.map_or("?".into(), |m| m.to_string())
                    ))
                    .await?;
                    waiting = true;
                }
                Ok(false) => waiting = true,
                Err(e) => problems.push(format!(
                    "start the restore refresh on {group}: {}",
                    e.message()
                )),
            }
        }
        let mut recorded = false;
        for group in &finished {
            let line = fleets.describe(group);
            j.action(format!("Fleet of group {group}: {line}")).await?;
            j.dep.runtime.fleet_versions.insert(group.clone(), line);
            recorded = true;
        }
        if recorded {
            j.save_runtime().await?;
        }
    }
    Ok(Pass { waiting, problems })
}

/// The backup becomes the default version again (unless it already is).
async fn restore_default(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: &Environment,
    problems: &mut Vec<String>,
) -> Result<(), StepError> {
    let (Some(main), Some(backup)) = (j.dep.runtime.main_version, j.dep.runtime.backup_version)
    else {
        return Ok(());
    };
    match deps.ec2.launch_template(&env.launch_template_id).await {
        Ok(Some(t)) if t.default_version == main && main != backup => {
            match deps
                .ec2
                .set_default_version(&env.launch_template_id, backup)
                .await
            {
                Ok(()) => {
                    j.action(format!(
                        "Restored backup model: version {backup} is the default again"
                    ))
                    .await?
                }
                Err(e) => problems.push(format!(
                    "restore version {backup} as default: {}",
                    e.message()
                )),
            }
        }
        Ok(_) => {}
        Err(e) => problems.push(format!("read the launch template: {}", e.message())),
    }
    Ok(())
}

/// Deletes the main version so `$Latest` resolves to the version before it.
/// Only ours and only while it is the latest: a version someone created
/// after it is theirs, and then `$Latest` is not ours to restore.
async fn delete_main(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: &Environment,
    main: i64,
    groups: &[&String],
    problems: &mut Vec<String>,
) -> Result<(), StepError> {
    let lt = &env.launch_template_id;
    let names = groups
        .iter()
        .map(|g| g.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    match deps.ec2.launch_template(lt).await {
        // AWS refuses to delete the default version: restore_default must
        // have succeeded first.
        Ok(Some(t)) if t.default_version == main => problems.push(format!(
            "delete version {main}: it is still the default of launch template {lt}"
        )),
        Ok(Some(t)) if t.latest_version != main => {
            j.action(format!(
                "Version {main} was not deleted: the latest version of launch template {lt} is {}, not this deployment's, so $Latest (group {names}) stays on it",
                t.latest_version
            ))
            .await?;
            j.dep.runtime.main_version_deleted = true;
            j.save_runtime().await?;
        }
        Ok(Some(_)) => match deps.ec2.delete_template_versions(lt, &[main]).await {
            Ok((deleted, failed)) => {
                let gone = deleted.contains(&main)
                    || failed
                        .iter()
                        .any(|(v, why)| *v == main && why.contains("does not exist"));
                if gone {
                    j.dep.runtime.main_version_deleted = true;
                    j.save_runtime().await?;
                    j.action(format!(
                        "Deleted version {main} (this deployment's) so that $Latest is the version before it again for group {names}"
                    ))
                    .await?;
                } else {
                    let why = failed
                        .iter()
                        .map(|(_, w)| w.as_str())
                        .collect::<Vec<_>>()
                        .join("; ");
                    problems.push(format!("delete version {main}: {why}"));
                }
            }
            Err(e) => problems.push(format!("delete version {main}: {}", e.message())),
        },
        Ok(None) => problems.push(format!("launch template {lt} not found")),
        Err(e) => problems.push(format!("read the launch template: {}", e.message())),
    }
    Ok(())
}

/// Starts (or, after a lost answer, finds) the restore refresh of `group`.
/// `Ok(false)`: another refresh is in progress on the group; wait.
async fn start_restore(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: &Environment,
    group: &str,
    version: &str,
    mixed: Option<&aws_sdk_autoscaling::types::MixedInstancesPolicy>,
) -> Result<bool, StepError> {
    let since = match j.dep.runtime.restore_requested_at.get(group) {
        Some(t) => *t,
        None => {
            let now = deps.clock.now();
            j.dep
                .runtime
                .restore_requested_at
                .insert(group.to_string(), now);
            j.save_runtime().await?;
            now
        }
    };
    let started = deps
        .asg
        .start_restore_refresh(
            group,
            &env.launch_template_id,
            version,
            mixed,
            &env.defaults.refresh_preferences,
        )
        .await?;
    let id = match started {
        Some(id) => Some(id),
        // Ours, started by an earlier call whose answer was lost?
        None => deps
            .asg
            .refreshes_since(group, Some(since))
            .await?
            .into_iter()
            .find(|r| r.is_active() && r.desired_version.as_deref() == Some(version))
            .map(|r| r.id),
    };
    match id {
        Some(id) => {
            j.dep
                .runtime
                .restore_refreshes
                .insert(group.to_string(), id);
            j.save_runtime().await?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// The instances of some groups with the launch template version each was
/// launched from: EC2's `aws:ec2launchtemplate:version` tag (the version
/// number), else the group's own record when that is a number.
struct Fleets {
    groups: BTreeMap<
        String,
        (
            Vec<Option<String>>,
            Option<aws_sdk_autoscaling::types::MixedInstancesPolicy>,
        ),
    >,
    /// Each group's own launch template version setting now.
    settings: BTreeMap<String, Option<String>>,
}

impl Fleets {
    async fn read<'a>(
        deps: &Deps,
        env: &Environment,
        names: impl Iterator<Item = &'a String>,
    ) -> Result<Self, StepError> {
        let names: Vec<String> = names
            .cloned()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let groups = deps.asg.groups_with_policies(&names).await?;
        let tagged: BTreeMap<String, Option<String>> = deps
            .ec2
            .template_versions_on_instances(&env.launch_template_id)
            .await?
            .into_iter()
            .map(|i| (i.instance_id, i.version))
            .collect();
        let settings = groups
            .iter()
            .map(|(g, _)| (g.name.clone(), g.launch_template_version.clone()))
            .collect();
        let groups = groups
            .into_iter()
            .map(|(g, mixed)| {
                let versions = g
                    .instances
                    .iter()
                    .map(|i| {
                        tagged.get(&i.id).cloned().flatten().or_else(|| {
                            i.launch_template_version
                                .clone()
                                .filter(|v| v.parse::<i64>().is_ok())
                        })
                    })
                    .collect();
                (g.name, (versions, mixed))
            })
            .collect();
        Ok(Self { groups, settings })
    }

    /// The group's own setting now, when it is a version number.
    fn numbered_setting(&self, group: &str) -> Option<&str> {
        self.settings
            .get(group)
            .and_then(|v| v.as_deref())
            .filter(|v| VersionKind::of(Some(v)) == VersionKind::Number)
    }

    fn versions(&self, group: &str) -> &[Option<String>] {
        self.groups.get(group).map_or(&[], |(v, _)| v.as_slice())
    }

    fn policy(&self, group: &str) -> Option<&aws_sdk_autoscaling::types::MixedInstancesPolicy> {
        self.groups.get(group).and_then(|(_, m)| m.as_ref())
    }

    fn count_on(&self, group: &str, version: &str) -> usize {
        self.versions(group)
            .iter()
            .filter(|v| v.as_deref() == Some(version))
            .count()
    }

    /// Instances whose version could not be told: they may run the new one.
    fn count_unknown(&self, group: &str) -> usize {
        self.versions(group).iter().filter(|v| v.is_none()).count()
    }

    /// "all 2 instances on version 8", "1 instance on version 8, 1 on version 9".
    fn describe(&self, group: &str) -> String {
        let versions = self.versions(group);
        if versions.is_empty() {
            return "no instances".into();
        }
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for v in versions {
            *counts.entry(v.as_deref().unwrap_or("unknown")).or_default() += 1;
        }
        let noun = |n: usize| if n == 1 { "instance" } else { "instances" };
        if counts.len() == 1 {
            let (v, n) = counts.into_iter().next().unwrap_or_default();
            let all = if n == 1 { "its" } else { "all" };
            return format!("{all} {n} {} on version {v}", noun(n));
        }
        counts
            .into_iter()
            .enumerate()
            .map(|(i, (v, n))| {
                if i == 0 {
                    format!("{n} {} on version {v}", noun(n))
                } else {
                    format!("{n} on version {v}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Records, for every group of the environment whose fleet is not on record
/// yet, the versions its instances run at the end of the deployment (after a
/// success too): one action for them all. A failed read is noted, not
/// retried: the fleet is already as it will stay.
pub(super) async fn record_the_rest(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: &Environment,
) -> Result<(), StepError> {
    let rest: Vec<String> = env
        .auto_scaling_groups
        .iter()
        .filter(|g| !j.dep.runtime.fleet_versions.contains_key(*g))
        .cloned()
        .collect();
    if rest.is_empty() {
        return Ok(());
    }
    let fleets = match Fleets::read(deps, env, rest.iter()).await {
        Ok(f) => f,
        Err(e) => {
            return j
                .action(format!("Fleet versions not recorded: {}", e.message()))
                .await;
        }
    };
    let mut lines = Vec::new();
    for group in &rest {
        let line = fleets.describe(group);
        lines.push(format!("group {group}: {line}"));
        j.dep.runtime.fleet_versions.insert(group.clone(), line);
    }
    j.save_runtime().await?;
    j.action(format!("Fleet at the end: {}", lines.join("; ")))
        .await
}
