//! The demo environment (`make demo`, `make sandbox`), and `autosky-sandbox
//! demo`: seeds it and runs one deployment
//! end to end, printing each step as it finishes, then the result: version,
//! AMI, the group's launch template setting before and after, its instances
//! on the new image, and the e-mail that was sent.

use crate::harness;
use crate::seed;
use crate::Clients;
use autosky_core::domain::{human_duration, EnvironmentDefaults, StepStatus};
use autosky_core::store::Store;
use serde_json::json;
use std::time::{Duration, Instant};

/// The environment `make demo` deploys to and `make sandbox` starts with.
pub const ENVIRONMENT: &str = "demo";

/// Seeds [`ENVIRONMENT`]: a preparation server, a launch template and an
/// Auto Scaling group with 2 instances, registered with a notification address.
pub async fn seed(c: &Clients) -> Result<seed::Seeded, String> {
    seed::environment(
        c,
        ENVIRONMENT,
        2,
        EnvironmentDefaults {
            notification_emails: vec!["ops@demo.example.com".into()],
            ..Default::default()
        },
    )
    .await
}

pub async fn run(c: &Clients) -> Result<(), String> {
    let started = Instant::now();
    let env_id = ENVIRONMENT;
    println!("Seeding scaling environment '{env_id}': a preparation server, a launch template, an Auto Scaling group with 2 instances");
    let seeded = seed(c).await?;
    let env = &seeded.environment;
    let group = &env.auto_scaling_groups[0];
    let before = seed::group_instance_images(c, group).await?;
    println!(
        "  preparation server {}, launch template {}, group {} ({} instances on {})",
        env.preparation_server_id,
        env.launch_template_id,
        group,
        before.len(),
        seed::BASE_IMAGE
    );
    let setting_before = setting(c, group).await?;
    println!("  group {group} is configured with {setting_before}\n");

    let id = harness::start_deployment(
        c,
        env_id,
        json!({"lockInstances": true, "stopPreparationServer": true, "notificationEmails": ["you@demo.example.com"]}),
    )
    .await?;
    println!(
        "Deployment {id} started (execution {})",
        harness::execution_arn(c, &id)
    );

    let mut printed = 0;
    let deadline = Instant::now() + Duration::from_secs(120);
    let record = loop {
        let d = c
            .store
            .deployment(env_id, &id)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(d) = &d {
            while printed < d.steps.len()
                && matches!(
                    d.steps[printed].status,
                    StepStatus::Succeeded | StepStatus::Failed | StepStatus::NotApplicable
                )
            {
                let s = &d.steps[printed];
                let mark = match s.status {
                    StepStatus::Succeeded => "✔",
                    StepStatus::Failed => "✘",
                    _ => "–",
                };
                println!(
                    "{mark} {:<26} {:<14} {}",
                    s.name.as_str(),
                    s.status.as_str(),
                    s.duration_ms.map(human_duration).unwrap_or_default()
                );
                for a in &s.actions {
                    println!("      {}  {}", a.at.format("%H:%M:%S%.3f"), a.message);
                }
                printed += 1;
            }
            if d.status.is_terminal() && printed == d.steps.len() {
                break d.clone();
            }
        }
        if Instant::now() > deadline {
            return Err(format!("deployment {id} did not finish in 120 s"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let execution = harness::wait_execution(c, &id, Duration::from_secs(30)).await?;

    println!(
        "\nDeployment {}: {} in {} (execution {execution})",
        id,
        record.status,
        record.duration_ms.map(human_duration).unwrap_or_default()
    );
    if let Some(v) = &record.generated_version {
        println!(
            "Generated version: launch template {} version {}, image {}",
            v.launch_template_id, v.launch_template_version, v.image_id
        );
    }
    if let Some(e) = &record.error {
        println!("Error: {} in {:?}: {}", e.name, e.step, e.message);
    }
    // The operator's choice of version kind survives the deployment.
    println!(
        "Group {group} is configured with {} (before: {setting_before})",
        setting(c, group).await?
    );
    println!("Group {group} instances now:");
    for (instance, image) in seed::group_instance_images(c, group).await? {
        println!("  {instance}  {image}");
    }
    for mail in harness::emails(c).await? {
        let text = |k: &str| {
            mail.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string()
        };
        let to: Vec<&str> = mail["to"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        println!("\nNotification e-mail (captured by the emulator):");
        println!("  From:    {}", text("from"));
        println!("  To:      {}", to.join(", "));
        println!("  Subject: {}", text("subject"));
        for line in text("textBody").lines() {
            println!("  | {line}");
        }
    }
    println!(
        "\nState transitions: {}",
        harness::state_transitions(c, &id).await?
    );
    if let Some(iam) = harness::iam_report(&c.endpoints).await? {
        println!(
            "IAM: {} calls authorized, {} denied (each function's calls against its own policy from template.yaml)",
            iam.authorized, iam.denied
        );
    }
    println!(
        "Demo wall time (after the sandbox was up): {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if record.status.as_str() != "Succeeded" {
        return Err(format!("the demo deployment ended {}", record.status));
    }
    Ok(())
}

/// How the group names its launch template, as an operator reads it, e.g.
/// "launch template lt-… version $Default (resolves to 2)".
async fn setting(c: &Clients, group: &str) -> Result<String, String> {
    let view = seed::group_views(&c.asg, &[group.to_string()])
        .await?
        .remove(0);
    let (Some(lt), Some(version)) = (view.launch_template_id, view.version) else {
        return Ok(view
            .launch_configuration
            .map_or("no launch template".into(), |lc| {
                format!("launch configuration {lc}")
            }));
    };
    let default = harness::default_version(c, &lt).await;
    Ok(match (version.as_str(), default) {
        ("$Default", Some(d)) => format!("launch template {lt} version $Default (resolves to {d})"),
        _ => format!("launch template {lt} version {version}"),
    })
}
