//! End-to-end: the real step code and the real state machine in the sandbox
//! (fakecloud + the Auto Scaling bridge + activity workers), one sandbox
//! process shared by all tests, each test on its own environment ids.

use autosky_core::domain::{DeploymentStatus, EnvironmentDefaults, StepName, StepStatus};
use autosky_core::store::Store;
use autosky_sandbox::harness;
use autosky_sandbox::{seed, Clients, Endpoints};
use serde_json::json;
use std::time::Duration;

fn sandbox() -> &'static Endpoints {
    harness::shared(env!("CARGO_BIN_EXE_autosky-sandbox"))
}

fn clients() -> Clients {
    Clients::new(sandbox())
}

/// The deployment's metric lines as the sandbox's stdout carried them (the
/// functions' own stdout sink), checked against its record: one deployment
/// document (counted once, even with the safety net's run of the ended
/// execution), its environment and status as dimensions, its duration the
/// record's, and one document per step that ran with the step's duration.
async fn check_metrics(d: &autosky_core::domain::Deployment) {
    let process = harness::shared_process(env!("CARGO_BIN_EXE_autosky-sandbox"));
    process
        .metric_documents(&d.deployment_id, Duration::from_secs(10))
        .unwrap();
    // Time for a second emission, were there one (the safety net's event
    // pump runs Finalization again for the ended execution).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let docs = process
        .metric_documents(&d.deployment_id, Duration::from_secs(1))
        .unwrap();
    let of = |member: &str| -> Vec<&serde_json::Value> {
        docs.iter().filter(|m| m.get(member).is_some()).collect()
    };
    let (deployment, steps, waits) = (of("Status"), of("Step"), of("Wait"));
    assert_eq!(deployment.len() + steps.len() + waits.len(), docs.len());
    assert_eq!(deployment.len(), 1, "once per deployment: {docs:#?}");
    let m = deployment[0];
    let directive = &m["_aws"]["CloudWatchMetrics"][0];
    assert_eq!(directive["Namespace"], "Autosky/Deployments");
    assert_eq!(
        directive["Dimensions"],
        json!([["Environment", "Status"], ["Status"]])
    );
    assert_eq!(m["Environment"], d.environment_id.as_str());
    assert_eq!(m["Status"], d.status.as_str());
    assert_eq!(m["Deployments"], 1);
    let total = m["DeploymentDuration"].as_i64().expect("a duration");
    assert_eq!(Some(total), d.duration_ms);
    assert!(total > 0 && total < 120_000, "{total} ms");
    assert_eq!(
        m["_aws"]["Timestamp"].as_i64(),
        d.ended_at.map(|t| t.timestamp_millis())
    );
    let ran: Vec<_> = d
        .steps
        .iter()
        .filter(|s| s.status != StepStatus::NotApplicable)
        .filter_map(|s| Some((s.name.to_string(), s.duration_ms?)))
        .collect();
    let emitted: Vec<_> = steps
        .iter()
        .map(|s| {
            assert_eq!(s["Environment"], d.environment_id.as_str());
            (
                s["Step"].as_str().unwrap().to_string(),
                s["StepDuration"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(emitted, ran);
    // The steps run one after another within the deployment.
    assert!(
        emitted.iter().map(|(_, ms)| ms).sum::<i64>() <= total,
        "{emitted:?} {total}"
    );
    // Each wait whose end the bridge dated (the refresh's EndTime), as the
    // record noticed it; a restore refresh Finalization followed is one.
    let noticed: Vec<_> = d
        .runtime
        .waits_noticed
        .iter()
        .map(|w| (w.wait.clone(), w.group.clone(), w.delay_ms()))
        .collect();
    let emitted: Vec<_> = waits
        .iter()
        .map(|w| {
            (
                w["Wait"].as_str().unwrap().to_string(),
                w["Group"].as_str().unwrap().to_string(),
                w["WaitDetectionDelay"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(emitted, noticed);
    for (_, _, ms) in &emitted {
        // Within a few polls (1 s apart in these tests, growing) of the end.
        assert!((0..30_000).contains(ms), "{emitted:?}");
    }
    for group in d.runtime.restore_refreshes.keys() {
        assert!(
            emitted
                .iter()
                .any(|(w, g, _)| w == "Fleet restore" && g == group),
            "the restore refresh of {group} was waited for: {emitted:?}"
        );
    }
}

fn defaults() -> EnvironmentDefaults {
    EnvironmentDefaults {
        notification_emails: vec!["ops@example.com".into()],
        ..Default::default()
    }
}

async fn image_tags(c: &Clients, image: &str) -> Vec<(String, String)> {
    let out = c
        .ec2
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .unwrap();
    out.images()
        .first()
        .map(|i| {
            i.tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().into(),
                        t.value().unwrap_or_default().into(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn emails_to(c: &Clients, address: &str) -> Vec<serde_json::Value> {
    harness::emails(c)
        .await
        .unwrap()
        .into_iter()
        .filter(|m| m.to_string().contains(address))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn full_deployment_produces_a_new_version_and_cleans_up() {
    let c = clients();
    let env = "e2e-full";
    let seeded = seed::environment(
        &c,
        env,
        2,
        EnvironmentDefaults {
            retention: 3,
            ..defaults()
        },
    )
    .await
    .unwrap();
    let e = &seeded.environment;
    let group = &e.auto_scaling_groups[0];
    // Versions 2..6 exist; the group uses version 2 (in use, must survive retention).
    for n in 2..=6 {
        c.ec2
            .create_launch_template_version()
            .launch_template_id(&e.launch_template_id)
            .source_version("1")
            .version_description(format!("v{n}"))
            .send()
            .await
            .unwrap();
    }
    c.asg
        .update_auto_scaling_group()
        .auto_scaling_group_name(group)
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(&e.launch_template_id)
                .version("2")
                .build(),
        )
        .send()
        .await
        .unwrap();

    let id = harness::start_deployment(
        &c,
        env,
        json!({"notificationEmails": ["dev@full.example.com"]}),
    )
    .await
    .unwrap();
    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    let d = record.expect("deployment record");
    assert_eq!(status, "SUCCEEDED", "{d:#?}");
    assert_eq!(d.status, DeploymentStatus::Succeeded);
    let statuses: Vec<_> = d.steps.iter().map(|s| (s.name, s.status)).collect();
    assert_eq!(
        statuses,
        vec![
            (StepName::InitialValidation, StepStatus::Succeeded),
            (StepName::StopPreparationServer, StepStatus::NotApplicable),
            (StepName::CreateImage, StepStatus::Succeeded),
            (StepName::CreateModels, StepStatus::Succeeded),
            (StepName::ReplaceInstances, StepStatus::Succeeded),
            (StepName::Finalization, StepStatus::Succeeded),
        ]
    );
    for s in &d.steps {
        assert!(
            s.started_at.is_some() && s.ended_at.is_some() && s.duration_ms.is_some(),
            "{s:?}"
        );
        assert!(!s.actions.is_empty(), "{s:?}");
    }
    assert_eq!(d.owner, "tester@example.com");
    assert!(d.ended_at.is_some() && d.duration_ms.is_some());
    check_metrics(&d).await;
    assert!(
        d.execution_arn.as_deref().is_some_and(|a| a.ends_with(&id)),
        "{:?}",
        d.execution_arn
    );

    // The AMI, tagged.
    let v = d.generated_version.clone().expect("generated version");
    let tags = image_tags(&c, &v.image_id).await;
    assert!(
        tags.contains(&("autosky:deployment-id".into(), id.clone())),
        "{tags:?}"
    );
    assert!(
        tags.contains(&("autosky:environment".into(), env.into())),
        "{tags:?}"
    );
    assert!(
        tags.iter()
            .any(|(k, v)| k == "Name" && v.starts_with("e2e-full-")),
        "{tags:?}"
    );

    // Models: new default 7, backup 1 (the previous default), 3 and 4 removed, 2 kept (was in use).
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        Some(7)
    );
    assert_eq!(v.launch_template_version, 7);
    assert_eq!(d.runtime.backup_version, Some(1));
    let versions = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&e.launch_template_id)
        .send()
        .await
        .unwrap();
    let mut numbers: Vec<i64> = versions
        .launch_template_versions()
        .iter()
        .filter_map(|v| v.version_number())
        .collect();
    numbers.sort();
    assert_eq!(numbers, vec![1, 2, 5, 6, 7]);

    // Every instance of the group runs the new AMI.
    let images = seed::group_instance_images(&c, group).await.unwrap();
    assert_eq!(images.len(), 2);
    assert!(
        images.iter().all(|(_, image)| image == &v.image_id),
        "{images:?}"
    );

    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);

    // The e-mail: both recipients, status, step table.
    let mails = emails_to(&c, "dev@full.example.com").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    let text = mails[0].to_string();
    assert!(text.contains("ops@example.com"), "{text}");
    assert!(
        text.contains("Succeeded") && text.contains("version 7"),
        "{text}"
    );
    for s in StepName::ALL {
        assert!(text.contains(s.as_str()), "{text}");
    }

    // History shows it.
    let page = c.store.history(env, 10, None, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].deployment_id, id);

    let transitions = harness::state_transitions(&c, &id).await.unwrap();
    println!("state transitions for a full deployment: {transitions}");
}

#[tokio::test(flavor = "multi_thread")]
async fn stop_preparation_server_and_lock_instances_restore_the_prior_state() {
    let c = clients();
    let env = "e2e-options";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let e = &seeded.environment;
    let group = e.auto_scaling_groups[0].clone();
    // Someone already suspended AlarmNotification: it must stay suspended after.
    c.asg
        .suspend_processes()
        .auto_scaling_group_name(&group)
        .scaling_processes("AlarmNotification")
        .send()
        .await
        .unwrap();

    let id = harness::start_deployment(
        &c,
        env,
        json!({"lockInstances": true, "stopPreparationServer": true}),
    )
    .await
    .unwrap();
    // While it runs, the fleet-changing processes are suspended.
    let mut seen_locked = false;
    for _ in 0..300 {
        if harness::suspended_processes(&c, &group).await
            == ["AZRebalance", "AlarmNotification", "ScheduledActions"]
        {
            seen_locked = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    let d = record.unwrap();
    assert_eq!(status, "SUCCEEDED", "{d:#?}");
    assert!(
        seen_locked,
        "processes were never seen suspended during the deployment"
    );
    assert_eq!(
        harness::suspended_processes(&c, &group).await,
        ["AlarmNotification"]
    );

    let stop = d.step(StepName::StopPreparationServer);
    assert_eq!(stop.status, StepStatus::Succeeded);
    assert_eq!(d.runtime.prior_server_state.as_deref(), Some("running"));
    assert!(
        stop.ended_at.unwrap() <= d.step(StepName::CreateImage).started_at.unwrap(),
        "stopped before imaging"
    );
    assert_eq!(
        harness::instance_state(&c, &e.preparation_server_id).await,
        "running"
    );
    let fin: Vec<_> = d
        .step(StepName::Finalization)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect();
    assert!(
        fin.iter()
            .any(|m| m == &format!("Resumed AZRebalance, ScheduledActions on group {group}")),
        "{fin:?}"
    );
    assert!(
        fin.iter()
            .any(|m| m.starts_with("Started preparation server")),
        "{fin:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_refresh_fails_cleans_up_and_notifies() {
    let c = clients();
    let env = "e2e-refresh-fails";
    let seeded = seed::environment(&c, env, 2, defaults()).await.unwrap();
    let e = &seeded.environment;
    harness::set_refresh_outcome(&c, &e.auto_scaling_groups[0], "Failed")
        .await
        .unwrap();
    let id = harness::start_deployment(
        &c,
        env,
        json!({"lockInstances": true, "notificationEmails": ["dev@fails.example.com"]}),
    )
    .await
    .unwrap();
    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    let d = record.unwrap();
    assert_eq!(status, "FAILED");
    assert_eq!(d.status, DeploymentStatus::Failed);
    let err = d.error.clone().unwrap();
    assert_eq!(
        (err.step, err.name.as_str()),
        (Some(StepName::ReplaceInstances), "RefreshFailed")
    );
    assert!(err.message.contains("health checks"), "{err:?}");
    assert_eq!(
        d.step(StepName::ReplaceInstances).status,
        StepStatus::Failed
    );
    check_metrics(&d).await;
    // Cleanup: backup model is the default again, processes resumed, lock released.
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        d.runtime.backup_version
    );
    assert!(harness::suspended_processes(&c, &e.auto_scaling_groups[0])
        .await
        .is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    let mails = emails_to(&c, "dev@fails.example.com").await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].to_string().contains("Failed") && mails[0].to_string().contains("RefreshFailed"),
        "{}",
        mails[0]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_refresh_ends_rolled_back() {
    let c = clients();
    let env = "e2e-rollback";
    // AWS rolls back only a group on a version number, and the product asks
    // for AutoRollback only then (the environment's option is on by default).
    let seeded = seed::environment_with(&c, env, seed::GroupSetup::Numbered, 1, defaults())
        .await
        .unwrap();
    harness::set_refresh_outcome(
        &c,
        &seeded.environment.auto_scaling_groups[0],
        "RollbackSuccessful",
    )
    .await
    .unwrap();
    let id = harness::start_deployment(&c, env, json!({})).await.unwrap();
    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    let d = record.unwrap();
    assert_eq!(status, "FAILED");
    assert_eq!(d.status, DeploymentStatus::RolledBack);
    check_metrics(&d).await;
    assert_eq!(d.error.unwrap().name, "RefreshRolledBack");
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_environment_fails_validation_and_creates_nothing() {
    let c = clients();
    let env = "e2e-nowhere";
    let id = harness::start_deployment(&c, env, json!({})).await.unwrap();
    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    assert_eq!(status, "FAILED");
    assert!(record.is_none(), "no record for an unknown environment");
    assert!(c
        .store
        .history(env, 10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    let history = c
        .sfn
        .get_execution_history()
        .execution_arn(harness::execution_arn(&c, &id))
        .send()
        .await
        .unwrap();
    // Debug output redacts causes: read the failed activity's cause itself.
    let text: String = history
        .events()
        .iter()
        .filter_map(|e| {
            e.activity_failed_event_details()
                .and_then(|d| d.cause())
                .or_else(|| e.task_failed_event_details().and_then(|d| d.cause()))
        })
        .collect();
    assert!(
        text.contains("environment 'e2e-nowhere' is not registered"),
        "{text}"
    );
    let images = harness::deployment_images(&c, &id).await;
    assert!(images.is_empty(), "no image for a refused deployment");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_deployments_at_once_one_runs_the_other_is_refused() {
    let c = clients();
    let env = "e2e-busy";
    seed::environment(&c, env, 1, defaults()).await.unwrap();
    let first = harness::start_deployment(&c, env, json!({})).await.unwrap();
    // Wait until the first holds the lock, then start the second.
    for _ in 0..200 {
        if c.store.lock_holder(env).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let second = harness::start_deployment(&c, env, json!({})).await.unwrap();
    let (s2, r2) = harness::finished(&c, env, &second).await.unwrap();
    let (s1, r1) = harness::finished(&c, env, &first).await.unwrap();
    assert_eq!(s1, "SUCCEEDED", "{r1:#?}");
    assert_eq!(s2, "FAILED");
    let refused = r2.unwrap();
    assert_eq!(refused.status, DeploymentStatus::Failed);
    let err = refused.error.unwrap();
    assert_eq!(err.name, "EnvironmentLocked");
    assert!(err.message.contains(&first), "{err:?}");
    assert_eq!(r1.unwrap().status, DeploymentStatus::Succeeded);
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}

/// The latest version of a launch template (straight from the emulator).
async fn latest_version(c: &Clients, lt: &str) -> Option<i64> {
    c.ec2
        .describe_launch_templates()
        .launch_template_ids(lt)
        .send()
        .await
        .unwrap()
        .launch_templates()
        .first()
        .and_then(|t| t.latest_version_number())
}

/// Stopped from the console while Create image waits for its image: as on
/// AWS no later state runs (the sandbox drops the tasks of an execution that
/// is no longer RUNNING), and the safety-net rule's event ("Step Functions
/// Execution Status Change", ABORTED, matched against the template's
/// pattern by the sandbox's event pump) makes Finalize clean up. The test
/// invokes nothing itself. It needs the gateway's EC2 timings (on by
/// default): with `SANDBOX_EC2_POLLS=0` Create image ends in the invocation
/// the stop lands in.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_stopped_from_the_console_is_cleaned_up_by_the_safety_net() {
    let c = clients();
    let env = "e2e-aborted";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let e = &seeded.environment;
    let group = &e.auto_scaling_groups[0];
    let versions = latest_version(&c, &e.launch_template_id).await;
    let id = harness::start_deployment(
        &c,
        env,
        json!({"lockInstances": true, "stopPreparationServer": true}),
    )
    .await
    .unwrap();
    // Stop it in "Wait for image", between two Create image polls (the
    // gateway keeps a new AMI invisible, then pending, for a few polls), so
    // no task is in flight: a result reported in the instant between a
    // worker's RUNNING check and its report would still reach the emulator,
    // which takes results for stopped executions (AWS closes their tokens).
    let arn = harness::execution_arn(&c, &id);
    let mut waiting = false;
    for _ in 0..600 {
        let d = c.store.deployment(env, &id).await.unwrap();
        let imaging = d.is_some_and(|d| {
            d.step(StepName::CreateImage).status == StepStatus::Running
                && d.runtime.image_id.is_some()
        });
        if imaging && harness::in_wait_state(&c, &arn, "Wait for image").await {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "never in \"Wait for image\"");
    let stopped_at = chrono::Utc::now().timestamp_millis();
    c.sfn
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        harness::wait_execution(&c, &id, Duration::from_secs(10))
            .await
            .unwrap(),
        "ABORTED"
    );

    // The safety net ends the record Cancelled.
    let mut d = None;
    for _ in 0..200 {
        let r = c.store.deployment(env, &id).await.unwrap().unwrap();
        if r.status == DeploymentStatus::Cancelled {
            d = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let d = d.expect("the safety net ended the deployment Cancelled");
    assert!(d.ended_at.is_some());
    check_metrics(&d).await;
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    assert!(harness::suspended_processes(&c, group).await.is_empty());
    // Restarted (the gateway shows it pending for a few polls; the emulator
    // has it running, or about to be).
    let mut state = String::new();
    for _ in 0..50 {
        state = harness::instance_state(&c, &e.preparation_server_id).await;
        if state == "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, "running");

    // The stop holds: several poll intervals later no later step has run:
    // no new launch template version (Create models), no refresh of the
    // group (Replace instances) among the gateway's calls, and Create image
    // never finished.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(latest_version(&c, &e.launch_template_id).await, versions);
    let calls = bridge_calls(&c).await;
    assert_eq!(calls.get(&format!("StartInstanceRefresh {group}")), None);
    // Nor did any task of the stopped execution report a result (on AWS its
    // task tokens are closed; the emulator would have taken the result and
    // moved on).
    let late: Vec<String> = harness::history(&c, &arn)
        .await
        .unwrap()
        .iter()
        .filter(|ev| ev.timestamp().to_millis().unwrap_or(0) > stopped_at)
        .map(|ev| ev.r#type().as_str().to_string())
        .filter(|t| {
            (t.starts_with("Task") || t.starts_with("Activity"))
                && (t.ends_with("Succeeded") || t.ends_with("Failed"))
        })
        .collect();
    assert!(late.is_empty(), "task results after the stop: {late:?}");
    let after = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_ne!(
        after.step(StepName::CreateImage).status,
        StepStatus::Succeeded
    );
    assert_eq!(after.ended_at, d.ended_at, "finalized once");

    // EventBridge delivers at least once: the same event again changes
    // nothing.
    let exec = c
        .sfn
        .describe_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    let event = autosky_sandbox::events::status_change_event(&exec);
    autosky_core::steps::run(
        StepName::Finalization,
        &harness::deps(&c, StepName::Finalization),
        event,
    )
    .await
    .unwrap();
    assert_eq!(
        c.store
            .deployment(env, &id)
            .await
            .unwrap()
            .unwrap()
            .ended_at,
        d.ended_at
    );
}

/// A group on a launch configuration cannot be deployed with a launch
/// template version: Initial validation refuses it, naming what to change,
/// and nothing is changed.
#[tokio::test(flavor = "multi_thread")]
async fn a_group_on_a_launch_configuration_is_refused_and_nothing_changes() {
    let c = clients();
    let env = "e2e-launch-config";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let mut e = seeded.environment.clone();
    let legacy = format!("{env}-legacy");
    c.asg
        .create_launch_configuration()
        .launch_configuration_name(format!("{env}-config"))
        .image_id(seed::BASE_IMAGE)
        .instance_type("t3.micro")
        .send()
        .await
        .unwrap();
    c.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name(&legacy)
        .launch_configuration_name(format!("{env}-config"))
        .min_size(0)
        .max_size(2)
        .desired_capacity(1)
        .availability_zones("us-east-1a")
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .resource_id(&legacy)
                .resource_type("auto-scaling-group")
                .key("autosky:environment")
                .value(env)
                .propagate_at_launch(false)
                .build(),
        )
        .send()
        .await
        .unwrap();
    e.auto_scaling_groups.push(legacy.clone());
    c.store.put_environment(&e, None).await.unwrap();
    let versions = latest_version(&c, &e.launch_template_id).await;
    let default = harness::default_version(&c, &e.launch_template_id).await;

    let id = harness::start_deployment(&c, env, json!({"lockInstances": true}))
        .await
        .unwrap();
    let (_, record) = harness::finished(&c, env, &id).await.unwrap();
    let d = record.unwrap();
    assert_eq!(d.status, DeploymentStatus::Failed);
    let step = d.step(StepName::InitialValidation);
    assert_eq!(step.status, StepStatus::Failed);
    let message = d
        .error
        .as_ref()
        .map(|e| e.message.clone())
        .unwrap_or_default();
    assert_eq!(
        message,
        format!(
            "Auto Scaling group {legacy} uses launch configuration {env}-config; switch it to \
             launch template {} (any version) to deploy with Autosky",
            e.launch_template_id
        )
    );
    assert_eq!(latest_version(&c, &e.launch_template_id).await, versions);
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        default
    );
    for g in &e.auto_scaling_groups {
        assert!(harness::suspended_processes(&c, g).await.is_empty(), "{g}");
    }
    assert!(harness::deployment_images(&c, &id).await.is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}

/// Every step invoked twice with the same input (a Step Functions retry, a
/// duplicate delivery) has the effect of once: one suspension, one AMI, one
/// model version, one refresh, one e-mail.
#[tokio::test(flavor = "multi_thread")]
async fn every_step_twice_has_the_effect_of_once() {
    use autosky_core::steps::run;
    let c = clients();
    let env = "e2e-twice";
    let seeded = seed::environment(&c, env, 1, defaults()).await.unwrap();
    let e = &seeded.environment;
    let group = &e.auto_scaling_groups[0];
    let deps = |step| harness::deps(&c, step);
    let id = autosky_core::domain::new_deployment_id();
    let state = json!({
        "deploymentId": id, "environmentId": env, "owner": "twice@example.com",
        "options": {"lockInstances": true, "stopPreparationServer": true, "notificationEmails": ["twice@example.com"]}
    });
    let validate = json!({"state": state, "executionArn": "arn:aws:states:us-east-1:123456789012:execution:sm:x"});
    let calls_before = bridge_calls(&c).await;
    for _ in 0..2 {
        run(
            StepName::InitialValidation,
            &deps(StepName::InitialValidation),
            validate.clone(),
        )
        .await
        .unwrap();
    }
    let key = format!("SuspendProcesses {group}");
    let suspends = bridge_calls(&c).await.get(&key).copied().unwrap_or(0)
        - calls_before.get(&key).copied().unwrap_or(0);
    assert_eq!(suspends, 1, "one SuspendProcesses");
    // The waiting steps: twice per round until done.
    for step in [StepName::StopPreparationServer, StepName::CreateImage] {
        let mut done = false;
        for _ in 0..20 {
            let a = run(step, &deps(step), state.clone()).await.unwrap();
            let b = run(step, &deps(step), state.clone()).await.unwrap();
            if a["done"] == true && b["done"] == true {
                done = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        assert!(done, "{step:?} never done");
    }
    let images = harness::deployment_images(&c, &id).await;
    assert_eq!(images.len(), 1, "one AMI");
    for _ in 0..2 {
        run(
            StepName::CreateModels,
            &deps(StepName::CreateModels),
            state.clone(),
        )
        .await
        .unwrap();
    }
    let versions = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(&e.launch_template_id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.launch_template_versions().len(),
        2,
        "one new model version"
    );
    let mut done = false;
    for _ in 0..40 {
        let a = run(
            StepName::ReplaceInstances,
            &deps(StepName::ReplaceInstances),
            state.clone(),
        )
        .await
        .unwrap();
        let b = run(
            StepName::ReplaceInstances,
            &deps(StepName::ReplaceInstances),
            state.clone(),
        )
        .await
        .unwrap();
        if a["done"] == true && b["done"] == true {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(done, "refresh never done");
    let refreshes = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshes.instance_refreshes().len(),
        1,
        "one instance refresh"
    );
    let metrics = std::sync::Arc::new(autosky_core::metrics::Recorder::default());
    for _ in 0..2 {
        let deps = autosky_core::Deps {
            metrics: metrics.clone(),
            ..deps(StepName::Finalization)
        };
        assert_eq!(
            run(StepName::Finalization, &deps, state.clone())
                .await
                .unwrap()["status"],
            "Succeeded"
        );
    }
    assert_eq!(
        emails_to(&c, "twice@example.com").await.len(),
        1,
        "one e-mail"
    );
    let counted: Vec<_> = metrics
        .lines()
        .iter()
        .filter_map(|l| harness::emf_document(l))
        .filter_map(|m| m["Status"].as_str().map(str::to_string))
        .collect();
    assert_eq!(counted, ["Succeeded"], "the deployment counted once");
    assert!(harness::suspended_processes(&c, group).await.is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
}

async fn bridge_calls(c: &Clients) -> std::collections::BTreeMap<String, u64> {
    let (_, body) =
        autosky_sandbox::http::get(&format!("{}/_sandbox/calls", c.endpoints.autoscaling))
            .await
            .unwrap();
    serde_json::from_slice(&body).unwrap()
}

/// The states an execution entered, in order.
async fn states_entered(c: &Clients, arn: &str) -> Vec<String> {
    harness::history(c, arn)
        .await
        .unwrap()
        .iter()
        .filter_map(|ev| {
            ev.state_entered_event_details()
                .map(|s| s.name().to_string())
        })
        .collect()
}

/// Stopped from the console while its refresh has replaced part of a
/// numbered group: the safety net must wait for AWS to roll the refresh
/// back, which an EventBridge-invoked handler cannot do, so it starts the
/// cleanup execution `cleanup-<id>` of the same state machine. That one goes
/// straight to Finalization ("Cleanup only?"), loops in "Fleet restored?"
/// until the fleet is back, then ends the deployment Cancelled with the
/// environment as it was; the execution itself then ends FAILED
/// ("Deployment failed"), as every execution whose deployment did not
/// succeed does. The test invokes nothing itself.
#[tokio::test(flavor = "multi_thread")]
async fn an_execution_stopped_mid_refresh_is_cleaned_up_by_a_cleanup_execution() {
    let c = clients();
    let env = "e2e-stopped-mid-refresh";
    // A group on a version number: AWS can roll its refresh back, and
    // Finalization then waits for that rollback.
    let seeded = seed::environment_with(&c, env, seed::GroupSetup::Numbered, 2, defaults())
        .await
        .unwrap();
    let e = &seeded.environment;
    let group = e.auto_scaling_groups[0].clone();
    // Suspended before the deployment: it must stay suspended after.
    c.asg
        .suspend_processes()
        .auto_scaling_group_name(&group)
        .scaling_processes("AlarmNotification")
        .send()
        .await
        .unwrap();
    let default_before = harness::default_version(&c, &e.launch_template_id).await;
    let server_before = harness::instance_state(&c, &e.preparation_server_id).await;
    assert_eq!(server_before, "running");
    harness::set_refresh_outcome(&c, &group, "Hold")
        .await
        .unwrap();
    let id = harness::start_deployment(
        &c,
        env,
        json!({
            "lockInstances": true,
            "stopPreparationServer": true,
            "notificationEmails": ["dev@stopped-mid-refresh.example.com"],
        }),
    )
    .await
    .unwrap();
    harness::wait_refresh_part_way(&c, &group, Duration::from_secs(90))
        .await
        .unwrap();
    let views = seed::group_views(&c.asg, std::slice::from_ref(&group))
        .await
        .unwrap();
    assert!(
        views[0]
            .instances
            .iter()
            .any(|(_, v)| v.as_deref() != Some("1")),
        "part-way: some instance already on the new version: {views:?}"
    );

    // Stopped in "Wait for instances", between two Replace instances polls,
    // so no task is in flight (see the Create image test above).
    let arn = harness::execution_arn(&c, &id);
    let mut waiting = false;
    for _ in 0..600 {
        if harness::in_wait_state(&c, &arn, "Wait for instances").await {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "never in \"Wait for instances\"");
    c.sfn
        .stop_execution()
        .execution_arn(&arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        harness::wait_execution(&c, &id, Duration::from_secs(10))
            .await
            .unwrap(),
        "ABORTED"
    );

    // The safety net starts the cleanup execution.
    let cleanup = autosky_core::domain::execution_arn(
        &c.endpoints.state_machine_arn,
        &format!("cleanup-{id}"),
    );
    let mut started = None;
    for _ in 0..300 {
        if let Ok(out) = c
            .sfn
            .describe_execution()
            .execution_arn(&cleanup)
            .send()
            .await
        {
            started = Some(out);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let started = started.expect("cleanup execution started by the safety net");
    let input: serde_json::Value = serde_json::from_str(started.input().unwrap_or("{}")).unwrap();
    assert_eq!(input["cleanupOf"], json!(arn), "{input}");
    assert_eq!(input["error"]["Error"], "Cancelled", "{input}");
    assert_eq!(input["deploymentId"], json!(id), "{input}");
    // Recorded before it was started: Finalization accepts only recorded
    // cleanup executions.
    let during = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(during.runtime.cleanup_executions, vec![cleanup.clone()]);

    let status = harness::wait_execution_arn(&c, &cleanup, Duration::from_secs(120))
        .await
        .unwrap();
    let entered = states_entered(&c, &cleanup).await;
    // It ran only Finalization, and waited in its loop for the fleet.
    assert_eq!(entered.first().map(String::as_str), Some("Cleanup only?"));
    assert_eq!(entered.get(1).map(String::as_str), Some("Finalization"));
    assert!(
        !entered
            .iter()
            .any(|s| s == "Initial validation" || s == "Replace instances" || s == "Create image"),
        "{entered:?}"
    );
    assert!(
        entered.iter().any(|s| s == "Wait for fleet restore"),
        "{entered:?}"
    );
    let d = c.store.deployment(env, &id).await.unwrap().unwrap();
    // Like every execution whose deployment did not succeed, it ends in the
    // "Deployment failed" Fail state, reached through "Deployment succeeded?"
    // after a Finalization that finished (not through Finalization's Catch,
    // which goes there straight).
    assert_eq!(status, "FAILED", "{entered:?}\n{d:#?}");
    assert_eq!(
        entered[entered.len().saturating_sub(3)..],
        [
            "Fleet restored?",
            "Deployment succeeded?",
            "Deployment failed"
        ],
        "{entered:?}"
    );
    let ended = c
        .sfn
        .describe_execution()
        .execution_arn(&cleanup)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.error(), Some("DeploymentFailed"));

    // The deployment ends Cancelled, attributed to Replace instances.
    assert_eq!(d.status, DeploymentStatus::Cancelled);
    check_metrics(&d).await;
    assert!(d.ended_at.is_some());
    let err = d.error.clone().unwrap();
    assert_eq!(
        (err.step, err.name.as_str()),
        (Some(StepName::ReplaceInstances), "Cancelled")
    );
    assert_eq!(
        d.step(StepName::ReplaceInstances).status,
        StepStatus::Failed
    );
    assert_eq!(d.step(StepName::Finalization).status, StepStatus::Succeeded);
    let fin: Vec<_> = d
        .step(StepName::Finalization)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect();
    assert!(
        fin.iter()
            .any(|m| m.starts_with("Rolling back instance refresh")),
        "{fin:?}"
    );
    assert!(
        fin.iter().any(|m| m.starts_with(&format!(
            "The fleet is still being restored: cleanup execution cleanup-{id}"
        ))),
        "{fin:?}"
    );
    // The lock was held until the fleet was back: released by the cleanup
    // execution's Finalization, after it was started.
    let at = |prefix: &str| fin.iter().position(|m| m.starts_with(prefix));
    assert!(
        matches!(
            (at("The fleet is still being restored"), at("Environment lock released")),
            (Some(started), Some(released)) if started < released
        ),
        "{fin:?}"
    );
    assert_eq!(
        d.runtime.fleet_versions.get(&group).map(String::as_str),
        Some("all 2 instances on version 1")
    );

    // The fleet is back: the group on version 1, every instance launched
    // from it and running the base image, the backup the default again.
    let views = seed::group_views(&c.asg, std::slice::from_ref(&group))
        .await
        .unwrap();
    assert_eq!(views[0].version.as_deref(), Some("1"), "{views:?}");
    assert_eq!(views[0].instances.len(), 2, "{views:?}");
    assert!(
        views[0]
            .instances
            .iter()
            .all(|(_, v)| v.as_deref() == Some("1")),
        "{views:?}"
    );
    let images = seed::group_instance_images(&c, &group).await.unwrap();
    assert_eq!(images.len(), 2, "{images:?}");
    assert!(
        images.iter().all(|(_, image)| image == seed::BASE_IMAGE),
        "{images:?}"
    );
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        default_before
    );
    let refresh = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(&group)
        .max_records(1)
        .send()
        .await
        .unwrap();
    assert_eq!(
        refresh.instance_refreshes()[0].status().map(|s| s.as_str()),
        Some("RollbackSuccessful")
    );

    // The rest of the environment as before.
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    assert_eq!(
        harness::suspended_processes(&c, &group).await,
        ["AlarmNotification"]
    );
    let mut state = String::new();
    for _ in 0..50 {
        state = harness::instance_state(&c, &e.preparation_server_id).await;
        if state == server_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(state, server_before);
    let mails = emails_to(&c, "dev@stopped-mid-refresh.example.com").await;
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].to_string().contains("Cancelled"), "{}", mails[0]);

    // The cleanup execution's own end reaches the safety net too, which
    // finds the deployment finished: no second cleanup execution.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(after.runtime.cleanup_executions, vec![cleanup.clone()]);
    assert_eq!(after.ended_at, d.ended_at, "finalized once");
    let second = autosky_core::domain::execution_arn(
        &c.endpoints.state_machine_arn,
        &format!("cleanup-{id}-2"),
    );
    assert!(c
        .sfn
        .describe_execution()
        .execution_arn(&second)
        .send()
        .await
        .is_err());
}

/// The snapshot ids of an image's block devices (the image must exist), as
/// the steps see them: through the gateway, which makes an image's
/// snapshots (the emulator makes none).
async fn image_snapshots(image: &str) -> Vec<String> {
    let e = sandbox();
    let gateway = aws_sdk_ec2::Client::from_conf(
        aws_sdk_ec2::config::Builder::from(&autosky_sandbox::sdk_config(&e.emulator))
            .endpoint_url(&e.autoscaling)
            .build(),
    );
    gateway
        .describe_images()
        .image_ids(image)
        .send()
        .await
        .unwrap_or_else(|e| panic!("DescribeImages {image}: {e:?}"))
        .images()
        .iter()
        .flat_map(|i| i.block_device_mappings())
        .filter_map(|m| Some(m.ebs()?.snapshot_id()?.to_string()))
        .collect()
}

/// DescribeImages / DescribeSnapshots by id: the error code, or "exists".
async fn image_exists(c: &Clients, image: &str) -> Result<bool, String> {
    match c.ec2.describe_images().image_ids(image).send().await {
        Ok(o) => Ok(!o.images().is_empty()),
        Err(e) => match aws_sdk_ec2::error::ProvideErrorMetadata::code(&e) {
            Some("InvalidAMIID.NotFound") => Ok(false),
            other => Err(format!("{other:?}")),
        },
    }
}

async fn snapshot_exists(c: &Clients, snapshot: &str) -> Result<bool, String> {
    match c
        .ec2
        .describe_snapshots()
        .snapshot_ids(snapshot)
        .send()
        .await
    {
        Ok(o) => Ok(!o.snapshots().is_empty()),
        Err(e) => match aws_sdk_ec2::error::ProvideErrorMetadata::code(&e) {
            Some("InvalidSnapshot.NotFound") => Ok(false),
            other => Err(format!("{other:?}")),
        },
    }
}

/// Images are models too: with retention 2, the third deployment in a row
/// removes the version of the first and deregisters its image and deletes
/// its snapshots; the images of the versions kept stay with theirs; the
/// record names the removal, and no call of Create models was denied.
#[tokio::test(flavor = "multi_thread")]
async fn old_images_are_deregistered_with_their_snapshots() {
    let c = clients();
    let env = "e2e-images";
    seed::environment(
        &c,
        env,
        1,
        EnvironmentDefaults {
            retention: 2,
            // Only the newest Succeeded deployment's model is kept for a
            // rollback: the first one's may go at the third deployment.
            kept_deployments: 1,
            ..defaults()
        },
    )
    .await
    .unwrap();
    let mut runs = vec![];
    for _ in 0..3 {
        let id = harness::start_deployment(&c, env, json!({})).await.unwrap();
        let (status, record) = harness::finished(&c, env, &id).await.unwrap();
        let d = record.expect("deployment record");
        assert_eq!(status, "SUCCEEDED", "{d:#?}");
        let image = d
            .generated_version
            .clone()
            .expect("generated version")
            .image_id;
        let snapshots = image_snapshots(&image).await;
        assert!(
            !snapshots.is_empty(),
            "{image} has the server's root snapshot"
        );
        runs.push((id, image, snapshots, d));
    }

    let (first_id, first_image, first_snapshots, _) = &runs[0];
    assert_eq!(image_exists(&c, first_image).await, Ok(false));
    for s in first_snapshots {
        assert_eq!(snapshot_exists(&c, s).await, Ok(false), "{s}");
    }
    for (_, image, snapshots, _) in &runs[1..] {
        assert_eq!(image_exists(&c, image).await, Ok(true), "{image}");
        for s in snapshots {
            assert_eq!(snapshot_exists(&c, s).await, Ok(true), "{s}");
        }
    }

    let actions = |d: &autosky_core::domain::Deployment| -> Vec<String> {
        d.step(StepName::CreateModels)
            .actions
            .iter()
            .map(|a| a.message.clone())
            .collect()
    };
    let removal = format!(
        "Removed image {first_image} and its snapshots {} (deployment {first_id})",
        first_snapshots.join(", ")
    );
    let third = actions(&runs[2].3);
    assert!(third.contains(&removal), "{third:?}");
    // The first two removed no image (the second kept the first's: its
    // version was kept).
    for (_, _, _, d) in &runs[..2] {
        let a = actions(d);
        assert!(!a.iter().any(|m| m.starts_with("Removed image")), "{a:?}");
    }

    let report = harness::iam_report(sandbox())
        .await
        .unwrap()
        .expect("IAM enforced");
    let denied: Vec<&String> = report
        .denials
        .iter()
        .filter(|l| l.contains("CreateModels"))
        .collect();
    assert!(denied.is_empty(), "{denied:?}");
    let exercised = report
        .exercised
        .get("CreateModelsFunction")
        .cloned()
        .unwrap_or_default();
    for action in [
        "ec2:describeimages",
        "ec2:deregisterimage",
        "ec2:deletesnapshot",
        "autoscaling:describelaunchconfigurations",
    ] {
        assert!(
            exercised.iter().any(|a| a.eq_ignore_ascii_case(action)),
            "{action}: {exercised:?}"
        );
    }
}

/// Safer rollouts: a refresh with a checkpoint at 50 % pauses there (the
/// details' Replace instances actions say so); the environment's CloudWatch
/// alarm going into ALARM during the pause has AWS roll the fleet back, and
/// the deployment ends RolledBack, its error and its e-mail naming the alarm,
/// every instance back on the previous version.
#[tokio::test(flavor = "multi_thread")]
async fn an_alarm_at_a_checkpoint_rolls_the_fleet_back() {
    let c = clients();
    let env = "e2e-checkpoint-alarm";
    let alarm = "e2e-checkpoint-alarm web 5xx";
    let mut d = defaults();
    let p = &mut d.refresh_preferences;
    p.checkpoint_percentages = vec![50];
    // Two hours: 24 refresh phases in the sandbox, long enough to act.
    p.checkpoint_delay_seconds = Some(7200);
    p.alarms = vec![alarm.into()];
    // AWS rolls back only a group on a version number.
    let seeded = seed::environment_with(&c, env, seed::GroupSetup::Numbered, 2, d)
        .await
        .unwrap();
    let e = &seeded.environment;
    let group = e.auto_scaling_groups[0].clone();
    let before = seed::group_views(&c.asg, std::slice::from_ref(&group))
        .await
        .unwrap();
    let id = harness::start_deployment(
        &c,
        env,
        json!({"notificationEmails": ["dev@checkpoint.example.com"]}),
    )
    .await
    .unwrap();
    let paused = harness::wait_action(
        &c,
        env,
        &id,
        StepName::ReplaceInstances,
        "checkpoint 50% reached",
        Duration::from_secs(180),
    )
    .await
    .unwrap();
    assert!(
        paused.contains("(1 of 1)") && paused.contains("7200 s") && paused.contains(alarm),
        "{paused}"
    );
    // Paused: half the fleet replaced, the refresh still in progress.
    let r = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(&group)
        .send()
        .await
        .unwrap();
    let r = &r.instance_refreshes()[0];
    assert_eq!(
        (r.status().map(|s| s.as_str()), r.percentage_complete()),
        (Some("InProgress"), Some(50))
    );
    harness::set_alarm_state(&c, alarm, "ALARM").await.unwrap();

    let (status, record) = harness::finished(&c, env, &id).await.unwrap();
    let dep = record.unwrap();
    assert_eq!(status, "FAILED");
    assert_eq!(dep.status, DeploymentStatus::RolledBack);
    let err = dep.error.clone().unwrap();
    assert_eq!(
        (err.step, err.name.as_str()),
        (Some(StepName::ReplaceInstances), "RefreshRolledBack")
    );
    assert!(
        err.message.contains(&format!(
            "CloudWatch alarm {alarm} went into the ALARM state"
        )),
        "{err:?}"
    );
    let log: Vec<_> = dep
        .step(StepName::ReplaceInstances)
        .actions
        .iter()
        .map(|a| a.message.clone())
        .collect();
    assert!(
        log.iter()
            .any(|l| l.contains("50% of instances replaced (InProgress)")),
        "{log:#?}"
    );
    let mails = emails_to(&c, "dev@checkpoint.example.com").await;
    assert_eq!(mails.len(), 1);
    let mail = mails[0].to_string();
    assert!(
        mail.contains("RolledBack") && mail.contains(alarm),
        "{mail}"
    );

    // The fleet is back: the group on its own version, every instance on
    // the base image, nothing left suspended, the lock released, the backup
    // the default again.
    let after = seed::group_views(&c.asg, std::slice::from_ref(&group))
        .await
        .unwrap();
    assert_eq!(after[0].version, before[0].version);
    assert_eq!(after[0].instances.len(), 2);
    for (i, image) in seed::group_instance_images(&c, &group).await.unwrap() {
        assert_eq!(image, seed::BASE_IMAGE, "instance {i}");
    }
    assert!(harness::suspended_processes(&c, &group).await.is_empty());
    assert_eq!(c.store.lock_holder(env).await.unwrap(), None);
    assert_eq!(
        harness::default_version(&c, &e.launch_template_id).await,
        dep.runtime.backup_version
    );
}
