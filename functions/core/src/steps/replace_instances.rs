//! Step 5, "Replace instances": an instance refresh per group with instances,
//! pinned to the main model's version number, adopted again (never started
//! twice) on later calls; the ASL's wait loop calls it until every refresh is
//! terminal. RollbackSuccessful ends the deployment RolledBack.

use super::{Journal, Poll, StepInput};
use crate::deps::Deps;
use crate::domain::{StepName, StepStatus};
use crate::error::StepError;

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
    let groups = deps.asg.groups(&env.auto_scaling_groups).await?;
    let with_instances: Vec<_> = groups.iter().filter(|g| g.desired_capacity > 0).collect();
    if with_instances.is_empty() && j.dep.runtime.refreshes.is_empty() {
        return j
            .not_applicable("no group has instances (desired capacity 0)")
            .await;
    }
    j.start().await?;

    for g in &with_instances {
        if j.dep.runtime.refreshes.contains_key(&g.name) {
            continue;
        }
        let pinned = main.to_string();
        let ours = deps
            .asg
            .refreshes(&g.name)
            .await?
            .into_iter()
            .find(|r| r.desired_version.as_deref() == Some(pinned.as_str()));
        let id = match ours {
            Some(r) => {
                j.action(format!(
                    "Adopted instance refresh {} on group {} (version {main})",
                    r.id, g.name
                ))
                .await?;
                r.id
            }
            None => {
                let id = deps
                    .asg
                    .start_refresh(
                        &g.name,
                        &env.launch_template_id,
                        main,
                        &env.defaults.refresh_preferences,
                    )
                    .await?
                    .ok_or_else(|| {
                        StepError::RefreshInProgress(format!(
                            "another instance refresh is in progress on group {}",
                            g.name
                        ))
                    })?;
                j.action(format!(
                    "Started instance refresh {id} on group {} to launch template version {main} ({} instances)",
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
    for (group, id) in &refreshes {
        let r = deps
            .asg
            .refreshes(group)
            .await?
            .into_iter()
            .find(|r| &r.id == id)
            .ok_or_else(|| {
                StepError::RefreshFailed(format!(
                    "instance refresh {id} on group {group} not found"
                ))
            })?;
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
        let reason = r
            .status_reason
            .clone()
            .unwrap_or_else(|| "no reason given".into());
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
    Ok(Poll::again(
        input.replace.as_ref(),
        input.base_poll_seconds(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::DeploymentOptions;
    use crate::steps::testkit::{aws, input, Fixture, GROUP, LT};
    use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
    use aws_sdk_autoscaling::operation::describe_instance_refreshes::DescribeInstanceRefreshesOutput;
    use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshOutput;
    use aws_sdk_autoscaling::types::RefreshStrategy;
    use aws_smithy_mocks::{mock, Rule};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    type Asg = aws_sdk_autoscaling::Client;

    fn groups(desired: i32) -> Rule {
        mock!(Asg::describe_auto_scaling_groups).then_output(move || {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(aws::group(desired, "8", &[], LT))
                .build()
        })
    }

    /// The refresh's status over successive describes (empty first = none yet).
    fn refreshes(seq: &'static [(&'static str, i32)], reason: Option<&'static str>) -> Rule {
        let n = Arc::new(AtomicUsize::new(0));
        mock!(Asg::describe_instance_refreshes).then_output(move || {
            let i = n.fetch_add(1, Ordering::SeqCst).min(seq.len() - 1);
            let (status, pct) = seq[i];
            let mut b = DescribeInstanceRefreshesOutput::builder();
            if !status.is_empty() {
                b = b.instance_refreshes(aws::refresh("r-1", status, pct, "9", reason));
            }
            b.build()
        })
    }

    /// Matches only a rolling refresh pinned to version number 9 with the environment's preferences.
    fn start() -> Rule {
        mock!(Asg::start_instance_refresh)
            .match_requests(|r| {
                let lt = r.desired_configuration().and_then(|d| d.launch_template());
                let p = r.preferences();
                r.auto_scaling_group_name() == Some(GROUP)
                    && r.strategy() == Some(&RefreshStrategy::Rolling)
                    && lt.and_then(|l| l.version()) == Some("9")
                    && lt.and_then(|l| l.launch_template_id()) == Some(LT)
                    && p.and_then(|p| p.min_healthy_percentage()) == Some(90)
                    && p.and_then(|p| p.skip_matching()) == Some(true)
                    && p.and_then(|p| p.auto_rollback()) == Some(true)
            })
            .then_output(|| {
                StartInstanceRefreshOutput::builder()
                    .instance_refresh_id("r-1")
                    .build()
            })
    }

    async fn fixture() -> Fixture {
        let f = Fixture::new(DeploymentOptions::default()).await;
        f.update(|d| d.runtime.main_version = Some(9)).await;
        f
    }

    #[tokio::test]
    async fn starts_a_pinned_refresh_records_progress_and_ends_when_successful() {
        let f = fixture().await;
        let (g, r, s) = (
            groups(2),
            refreshes(
                &[
                    ("", 0),
                    ("Pending", 0),
                    ("InProgress", 50),
                    ("Successful", 100),
                ],
                None,
            ),
            start(),
        );
        let deps = f.deps(&[], &[&g, &r, &s], &[]);
        let mut i = input();
        for _ in 0..3 {
            let p = run(&deps, i.clone()).await.unwrap();
            if p.done {
                break;
            }
            i.replace = Some(p);
        }
        assert_eq!(s.num_calls(), 1);
        let d = f.deployment().await;
        let step = d.step(StepName::ReplaceInstances);
        assert_eq!(step.status, StepStatus::Succeeded);
        let log: Vec<_> = step.actions.iter().map(|a| a.message.as_str()).collect();
        assert!(
            log.contains(&"Group web-asg: 50% of instances replaced (InProgress)"),
            "{log:?}"
        );
        assert!(log.contains(&"All instances replaced"));
    }

    #[tokio::test]
    async fn adopts_a_refresh_already_started_for_this_version() {
        let f = fixture().await;
        let (g, r, s) = (groups(2), refreshes(&[("InProgress", 20)], None), start());
        assert!(
            !run(&f.deps(&[], &[&g, &r, &s], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!(s.num_calls(), 0);
        assert_eq!(f.deployment().await.runtime.refreshes[GROUP], "r-1");
    }

    #[tokio::test]
    async fn not_applicable_without_instances() {
        let f = fixture().await;
        let (g, r, s) = (groups(0), refreshes(&[("", 0)], None), start());
        assert!(
            run(&f.deps(&[], &[&g, &r, &s], &[]), input())
                .await
                .unwrap()
                .done
        );
        assert_eq!(s.num_calls(), 0);
        assert_eq!(
            f.deployment().await.step(StepName::ReplaceInstances).status,
            StepStatus::NotApplicable
        );
    }

    #[tokio::test]
    async fn a_failed_refresh_fails_with_its_reason() {
        let f = fixture().await;
        let (g, r, s) = (
            groups(2),
            refreshes(&[("", 0), ("Failed", 50)], Some("health checks failed")),
            start(),
        );
        let err = run(&f.deps(&[], &[&g, &r, &s], &[]), input())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "RefreshFailed");
        assert!(err.message().contains("health checks failed"));
    }

    #[tokio::test]
    async fn a_rolled_back_refresh_is_reported_as_such() {
        let f = fixture().await;
        let (g, r, s) = (
            groups(2),
            refreshes(&[("", 0), ("RollbackSuccessful", 100)], Some("alarm")),
            start(),
        );
        let err = run(&f.deps(&[], &[&g, &r, &s], &[]), input())
            .await
            .unwrap_err();
        assert_eq!(err.name(), "RefreshRolledBack");
    }
}
