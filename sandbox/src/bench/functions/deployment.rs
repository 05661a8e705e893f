//! One deployment through the state machine, measured: AWS calls per
//! `service:Action` as the gateway counted them, states entered, tasks,
//! polls (waiting states that fell back to their timeout), wall time, and for
//! each wait how long after AWS announced its end (the sandbox publishing the
//! event) the step noticed it (the step's end).

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
    /// Waiting states whose timeout fired (a check without a wake-up).
    pub polls: usize,
    pub wall_s: f64,
    /// Per wait ([`WAITS`]), event published → the step's end, seconds.
    pub detection_s: BTreeMap<&'static str, f64>,
}

/// The waits of a deployment that stops its server: the step that waits,
/// and the event that announces the end (detail-type, the detail field that
/// names the resource).
pub const WAITS: [(&str, StepName, &str, &str); 3] = [
    (
        "preparation server stopped",
        StepName::StopPreparationServer,
        "EC2 Instance State-change Notification",
        "instance-id",
    ),
    (
        "image available",
        StepName::CreateImage,
        "EC2 AMI State Change",
        "ImageId",
    ),
    (
        "instance refresh ended",
        StepName::ReplaceInstances,
        "EC2 Auto Scaling Instance Refresh Succeeded",
        "AutoScalingGroupName",
    ),
];

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
    run.polls = harness::fallbacks(c, &arn).await?.values().sum();
    for e in harness::history(c, &arn).await? {
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
    }

    // Detection delay per wait: the event's publication (the moment AWS
    // announces it) to the end of the step that noticed it.
    let record = c
        .store
        .deployment(env, &id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no deployment record")?;
    let server = c
        .store
        .environment(env)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no environment")?
        .preparation_server_id;
    let image = record.runtime.image_id.clone().unwrap_or_default();
    let events = c.endpoints.events().await?;
    for (wait, step, detail_type, field) in WAITS {
        let resource = match step {
            StepName::StopPreparationServer => server.as_str(),
            StepName::CreateImage => image.as_str(),
            _ => group,
        };
        let Some(end) = record.step(step).ended_at else {
            continue;
        };
        let published = events
            .iter()
            .filter(|p| {
                p.event["detail-type"] == detail_type && p.event["detail"][field] == resource
            })
            .filter(|p| {
                p.event["detail"]["state"]
                    .as_str()
                    .is_none_or(|s| s == "stopped")
            })
            .filter_map(|p| chrono::DateTime::parse_from_rfc3339(&p.published_at).ok())
            .filter(|at| *at <= end + chrono::Duration::seconds(1))
            .max();
        if let Some(at) = published {
            let ms = (end - at.with_timezone(&chrono::Utc)).num_milliseconds();
            run.detection_s.insert(wait, ms as f64 / 1e3);
        }
    }
    Ok(run)
}
