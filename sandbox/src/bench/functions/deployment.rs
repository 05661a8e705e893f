//! One deployment through the state machine, measured: AWS calls per
//! `service:Action` as the gateway counted them, states entered, tasks,
//! polls, wall time against the waits the steps asked for, and how long after
//! the instance refresh ended the step noticed.

use crate::{harness, Clients};
use autosky_core::domain::StepName;
use autosky_core::store::Store;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct DeploymentRun {
    pub calls: BTreeMap<String, u64>,
    pub transitions: usize,
    pub tasks: usize,
    pub polls: usize,
    pub wall_s: f64,
    pub waits_s: f64,
    pub detection_s: Option<f64>,
}

async fn gateway_calls(c: &Clients) -> Result<BTreeMap<String, u64>, String> {
    let (status, body) =
        crate::http::get(&format!("{}/_sandbox/calls", c.endpoints.autoscaling)).await?;
    if status != 200 {
        return Err(format!("gateway calls: HTTP {status}"));
    }
    serde_json::from_slice(&body).map_err(|e| e.to_string())
}

/// One deployment through the state machine, measured.
pub async fn measure(c: &Clients, env: &str, group: &str) -> Result<DeploymentRun, String> {
    let before = gateway_calls(c).await?;
    let id = harness::start_deployment(
        c,
        env,
        json!({"lockInstances": true, "stopPreparationServer": true, "notificationEmails": ["ops@example.com"]}),
    )
    .await?;
    // Wall time seen from here, polling every 20 ms (the emulator's
    // execution dates have whole-second resolution).
    let t0 = Instant::now();
    let arn = harness::execution_arn(c, &id);
    let status = loop {
        let out = c
            .sfn
            .describe_execution()
            .execution_arn(&arn)
            .send()
            .await
            .map_err(|e| format!("DescribeExecution: {e:?}"))?;
        if out.status().as_str() != "RUNNING" {
            break out.status().as_str().to_string();
        }
        if t0.elapsed() > Duration::from_secs(300) {
            return Err(format!("deployment {id} still running after 300 s"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let wall_s = t0.elapsed().as_secs_f64();
    if status != "SUCCEEDED" {
        return Err(format!("deployment {id} ended {status}"));
    }
    let after = gateway_calls(c).await?;
    let calls = after
        .iter()
        // `service:Action` keys only (the gateway also counts Auto Scaling
        // actions per group, without a service prefix).
        .filter(|(k, _)| k.contains(':'))
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect();

    let mut run = DeploymentRun {
        calls,
        wall_s,
        ..Default::default()
    };
    let mut token = None;
    loop {
        let out = c
            .sfn
            .get_execution_history()
            .execution_arn(&arn)
            .set_next_token(token)
            .send()
            .await
            .map_err(|e| format!("GetExecutionHistory: {e:?}"))?;
        for e in out.events() {
            let t = e.r#type().as_str();
            if t.ends_with("StateEntered") {
                run.transitions += 1;
            }
            if matches!(
                t,
                "TaskScheduled" | "ActivityScheduled" | "LambdaFunctionScheduled"
            ) {
                run.tasks += 1;
            }
            // A poll is now a waiting state's fallback: its TimeoutSeconds
            // ran out before a wake-up (on AWS TaskTimedOut; fakecloud runs
            // the callback tasks as activities).
            if matches!(t, "TaskTimedOut" | "ActivityTimedOut") {
                run.polls += 1;
            }
        }
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            break;
        }
    }

    // Detection delay: the refresh's end (as the gateway reports it) to the
    // end of the step that noticed it.
    let record = c
        .store
        .deployment(env, &id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no deployment record")?;
    let step_end = record.step(StepName::ReplaceInstances).ended_at;
    let refreshes = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(|e| format!("DescribeInstanceRefreshes: {e:?}"))?;
    let refresh_end = refreshes
        .instance_refreshes()
        .iter()
        .filter_map(|r| Some((r.start_time()?.as_nanos(), r.end_time()?.as_nanos())))
        .max()
        .map(|(_, end)| end);
    if let (Some(step_end), Some(end)) = (step_end, refresh_end) {
        let step_ns = step_end.timestamp_nanos_opt().unwrap_or(0) as i128;
        run.detection_s = Some((step_ns - end) as f64 / 1e9);
    }
    Ok(run)
}
