//! Step 6, "Finalization": runs after success and (through Catch) after any
//! failure. It trusts only the deployment record: on failure it brings the
//! fleet back to its version before the deployment (`fleet`) and restores the
//! backup model — waiting, like the other polling steps, until the instances
//! are back —, resumes exactly what we suspended, restarts the preparation
//! server if we stopped it, releases the lock, writes the terminal status,
//! then sends the notification. Safe to call again.

mod fleet;

use super::{wake, Journal, Poll, StepInput};
use crate::aws::ec2::InstanceState;
use crate::deps::Deps;
use crate::domain::{
    millis_between, DeploymentError, DeploymentStatus, GeneratedVersion, StepName, StepStatus,
};
use crate::error::StepError;
use crate::store::Outcome;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FinalOutput {
    pub status: DeploymentStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated_version: Option<GeneratedVersion>,
    /// True when this execution does not own the deployment and left it alone
    /// (the ASL then ends in "Already handled").
    #[serde(default)]
    pub ignored: bool,
    /// `done: false` while the fleet is being rolled back or restored: the
    /// ASL's "Wait for fleet restore" runs Finalization again when woken.
    #[serde(flatten)]
    pub poll: Poll,
}

impl FinalOutput {
    fn done(status: DeploymentStatus, generated_version: Option<GeneratedVersion>) -> Self {
        Self {
            status,
            generated_version,
            ignored: false,
            poll: Poll::done(),
        }
    }

    /// True while Finalization waits for the fleet (call it again).
    pub fn waiting(&self) -> bool {
        !self.poll.done
    }
}

/// Finalization attempts (each retried by Step Functions) before a cleanup
/// action that keeps failing is left on record instead.
pub const MAX_CLEANUP_ATTEMPTS: u32 = 3;

/// Restores the rest of the environment once the fleet is back: resumes
/// what we suspended, restarts the preparation server if we stopped it.
/// Returns what failed.
async fn cleanup(
    deps: &Deps,
    j: &mut Journal<'_>,
    env: Option<&crate::domain::Environment>,
    rt: &crate::domain::Runtime,
) -> Result<Vec<String>, StepError> {
    let mut problems = Vec::new();
    let mut note = |what: String, e: StepError| problems.push(format!("{what}: {}", e.message()));

    for (group, processes) in &rt.suspended_by_us {
        if processes.is_empty() {
            continue;
        }
        match deps.asg.resume(group, processes).await {
            Ok(()) => {
                j.action(format!("Resumed {} on group {group}", processes.join(", ")))
                    .await?
            }
            Err(e) => note(format!("resume {} on {group}", processes.join(", ")), e),
        }
    }

    if rt.server_stopped_by_us
        && rt
            .prior_server_state
            .as_deref()
            .and_then(|s| s.parse::<InstanceState>().ok())
            .is_some_and(|s| s.is_up())
    {
        if let Some(env) = env {
            let server = &env.preparation_server_id;
            match deps.ec2.instance(server).await.map(|i| i.map(|i| i.state)) {
                Ok(Some(InstanceState::Stopped)) => match deps.ec2.start_instance(server).await {
                    Ok(()) => {
                        j.action(format!("Started preparation server {server} again"))
                            .await?
                    }
                    Err(e) => note(format!("start preparation server {server}"), e),
                },
                // Started by an earlier attempt of this step (or by someone else).
                Ok(Some(s)) if s.is_up() => {
                    j.action(format!("Preparation server {server} is {s}"))
                        .await?
                }
                Ok(Some(InstanceState::Stopping)) => note(
                    format!("start preparation server {server}"),
                    StepError::Retryable("it is still stopping".into()),
                ),
                Ok(other) => {
                    j.action(format!(
                        "Preparation server {server} could not be started again (state {})",
                        other.as_ref().map_or("unknown", InstanceState::as_str)
                    ))
                    .await?
                }
                Err(e) => note(format!("read preparation server {server}"), e),
            }
        }
    }
    Ok(problems)
}

/// The groups whose fleet Finalization may be waiting for: those the
/// deployment refreshed and those it started a restore refresh on.
fn fleet_groups(runtime: &crate::domain::Runtime) -> impl Iterator<Item = &str> {
    let restored = runtime
        .restore_refreshes
        .keys()
        .filter(|g| !runtime.refreshes.contains_key(*g));
    runtime.refreshes.keys().chain(restored).map(String::as_str)
}

/// The status a caught error name leads to.
pub fn status_for(error: Option<&str>) -> DeploymentStatus {
    match error {
        None => DeploymentStatus::Succeeded,
        Some("RefreshRolledBack") => DeploymentStatus::RolledBack,
        Some("Cancelled") => DeploymentStatus::Cancelled,
        Some(_) => DeploymentStatus::Failed,
    }
}

/// Finalization for `execution` (None: a direct invocation, trusted).
/// Another execution's deployment is never touched: the run is recorded
/// under `ignoredRuns` and the output says `ignored`.
pub async fn run(
    deps: &Deps,
    input: StepInput,
    execution: Option<&str>,
) -> Result<FinalOutput, StepError> {
    input.check()?;
    let status = status_for(input.error.as_ref().map(|e| e.error.as_str()));
    let Some(dep) = deps
        .store
        .deployment(&input.environment_id, &input.deployment_id)
        .await?
    else {
        // Validation refused before any record existed (unknown environment):
        // there is nothing to clean up and nothing to write.
        return Ok(FinalOutput::done(status, None));
    };
    if let (Some(me), Some(owner)) = (execution, dep.execution_arn.as_deref()) {
        // The owner, or a cleanup execution the safety net started for it
        // (recorded before it was started, and naming the owner).
        let cleanup = dep.runtime.cleanup_executions.iter().any(|a| a == me)
            && input.cleanup_of.as_deref() == Some(owner);
        if me != owner && !cleanup {
            let reason = format!(
                "Finalization of execution {me} skipped: deployment {} is run by execution {owner}",
                dep.deployment_id
            );
            tracing::warn!(%reason, "ignored");
            deps.store
                .record_ignored(
                    &dep.environment_id,
                    &dep.deployment_id,
                    &crate::domain::IgnoredRun {
                        execution_arn: Some(me.to_string()),
                        at: deps.clock.now(),
                        reason,
                    },
                )
                .await?;
            return Ok(FinalOutput {
                ignored: true,
                ..FinalOutput::done(dep.status, None)
            });
        }
    }
    if dep.status.is_terminal() && dep.step(StepName::Finalization).status == StepStatus::Succeeded
    {
        return Ok(FinalOutput::done(dep.status, dep.generated_version));
    }
    let mut j = Journal::from_record(deps, dep, StepName::Finalization);
    j.start().await?;

    // The failed step: the one running when the error was caught, or, when
    // it failed before it could even record its start, the first not yet run.
    let mut failed_step = None;
    if let Some(err) = &input.error {
        let steps = StepName::ALL
            .into_iter()
            .filter(|s| *s != StepName::Finalization);
        // Marked by an earlier call (Finalization waiting for the fleet).
        failed_step = steps
            .clone()
            .find(|s| j.dep.step(*s).status == StepStatus::Failed);
        let running = steps
            .clone()
            .find(|s| j.dep.step(*s).status == StepStatus::Running);
        let name = running.or_else(|| {
            steps
                .clone()
                .find(|s| j.dep.step(*s).status == StepStatus::Pending)
        });
        if let (None, Some(name)) = (failed_step, name) {
            failed_step = Some(name);
            let mut other = Journal::from_record(deps, j.dep.clone(), name);
            other
                .action(format!("Failed: {}: {}", err.error, err.message()))
                .await?;
            other.end(StepStatus::Failed).await?;
            j.dep.steps[name.index()] = other.dep.steps[name.index()].clone();
        }
    }

    let env = deps.store.environment(&j.dep.environment_id).await?;
    let rt = j.dep.runtime.clone();

    // Every cleanup action is attempted even when another fails; a failed one
    // is recorded, and the whole Finalization is retried (idempotently) a few
    // times before it gives up and finishes with the problem on record.
    let mut problems = Vec::new();
    if let (true, Some(env)) = (status != DeploymentStatus::Succeeded, env.as_ref()) {
        let pass = fleet::pass(deps, &mut j, env).await?;
        problems = pass.problems;
        if pass.waiting
            && !problems.is_empty()
            && j.dep.runtime.cleanup_attempts < MAX_CLEANUP_ATTEMPTS
        {
            // Retried before anything else is restored: the processes stay
            // suspended while instances are being replaced.
            j.dep.runtime.cleanup_attempts += 1;
            j.save_runtime().await?;
            return Err(StepError::Retryable(format!(
                "cleanup incomplete, retrying: {}",
                problems.join("; ")
            )));
        }
        if pass.waiting && problems.is_empty() {
            // Bounded like "Replace instances": by the refresh timeout,
            // counted from Finalization's start.
            let limit = env.defaults.refresh_timeout_seconds;
            if j.elapsed_seconds() <= limit as i64 {
                return Ok(FinalOutput {
                    // Woken when a rollback or restore refresh of a group ends.
                    poll: Poll::waiting_on(fleet_groups(&j.dep.runtime).map(wake::group)),
                    ..FinalOutput::done(status, None)
                });
            }
            let groups: Vec<&str> = j
                .dep
                .runtime
                .refreshes
                .keys()
                .filter(|g| !j.dep.runtime.fleet_versions.contains_key(*g))
                .map(String::as_str)
                .collect();
            j.action(format!(
                "Cleanup incomplete: the fleet of group {} was not back within {limit} s (the refresh timeout)",
                groups.join(", ")
            ))
            .await?;
        }
    }
    if let Some(env) = env.as_ref() {
        fleet::record_the_rest(deps, &mut j, env).await?;
    }
    problems.extend(cleanup(deps, &mut j, env.as_ref(), &rt).await?);
    if !problems.is_empty() {
        if j.dep.runtime.cleanup_attempts < MAX_CLEANUP_ATTEMPTS {
            j.dep.runtime.cleanup_attempts += 1;
            j.save_runtime().await?;
            return Err(StepError::Retryable(format!(
                "cleanup incomplete, retrying: {}",
                problems.join("; ")
            )));
        }
        j.action(format!(
            "Cleanup incomplete after {MAX_CLEANUP_ATTEMPTS} attempts: {}",
            problems.join("; ")
        ))
        .await?;
    }

    if deps
        .store
        .release_lock(&j.dep.environment_id, &j.dep.deployment_id)
        .await?
    {
        j.action("Environment lock released").await?;
    }

    let now = deps.clock.now();
    let generated_version = match (status, &env, rt.main_version, &rt.image_id) {
        (DeploymentStatus::Succeeded, Some(env), Some(v), Some(image)) => Some(GeneratedVersion {
            launch_template_id: env.launch_template_id.clone(),
            launch_template_version: v,
            image_id: image.clone(),
        }),
        _ => None,
    };
    let error = input.error.as_ref().map(|e| DeploymentError {
        step: failed_step,
        name: e.error.clone(),
        message: e.message(),
    });
    j.end(StepStatus::Succeeded).await?;
    let started = j.dep.started_at.unwrap_or(j.dep.created_at);
    let outcome = Outcome {
        status,
        ended_at: now,
        duration_ms: millis_between(started, now),
        generated_version: generated_version.clone(),
        error: error.clone(),
    };
    // Whether this call wrote the terminal status (a retry, or another
    // Finalization that got there first, finds it written).
    let wrote = if j.dep.status == DeploymentStatus::Scheduled {
        // Its execution failed before starting it: end it and drop its
        // pending-schedule entry in one write, so it blocks no later schedule.
        let end = crate::store::ScheduledEnd {
            status,
            at: now,
            cancelled_by: None,
            error: error.clone(),
        };
        deps.store
            .end_scheduled(&j.dep.environment_id, &j.dep.deployment_id, &end, None)
            .await?
            || deps
                .store
                .finish(&j.dep.environment_id, &j.dep.deployment_id, &outcome)
                .await?
    } else {
        deps.store
            .finish(&j.dep.environment_id, &j.dep.deployment_id, &outcome)
            .await?
    };
    j.dep.status = status;
    j.dep.ended_at = Some(now);
    j.dep.duration_ms = Some(outcome.duration_ms);
    j.dep.generated_version = generated_version.clone();
    j.dep.error = error;
    if wrote {
        // Once per deployment, with the write that ended it: a crash right
        // after it loses the metrics rather than counting the deployment twice.
        crate::metrics::emit(deps.metrics.as_ref(), &j.dep);
    }

    super::notify(deps, &mut j, env.as_ref(), super::Notice::Ended).await?;
    Ok(FinalOutput::done(status, generated_version))
}

#[cfg(test)]
mod tests;
