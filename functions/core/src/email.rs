//! Notification e-mail rendering: subject, text and HTML bodies with the
//! status, owner, times, step table, error and console link. Every value that
//! can come from users is HTML-escaped, and CR/LF never reach the subject.

use crate::aws::Email;
use crate::domain::{human_duration, Deployment};

pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The Step Functions console page of an execution.
pub fn console_url(region: &str, execution_arn: &str) -> String {
    format!("https://{region}.console.aws.amazon.com/states/home?region={region}#/v2/executions/details/{execution_arn}")
}

pub fn render(dep: &Deployment, console: Option<&str>) -> Email {
    let version = dep
        .generated_version
        .as_ref()
        .map(|v| format!("version {}", v.launch_template_version))
        .unwrap_or_else(|| {
            if dep.status.is_terminal() {
                "no new version".into()
            } else {
                "new version pending".into()
            }
        });
    // Scheduled: when, in the operator's zone and in UTC.
    let scheduled = match (&dep.schedule, dep.scheduled_for) {
        (Some(s), Some(utc)) if s.timezone != "UTC" => Some(format!(
            "{} {} ({})",
            s.at.replace('T', " "),
            s.timezone,
            utc.format("%Y-%m-%d %H:%M:%S UTC")
        )),
        (None, Some(utc)) => Some(utc.format("%Y-%m-%d %H:%M:%S UTC").to_string()),
        _ => None,
    };
    let status_text = match dep.status {
        crate::domain::DeploymentStatus::Running => "Started".to_string(),
        crate::domain::DeploymentStatus::Scheduled => format!(
            "Scheduled for {}",
            dep.schedule
                .as_ref()
                .map(|s| format!("{} {}", s.at.replace('T', " "), s.timezone))
                .unwrap_or_default()
        ),
        other => other.to_string(),
    };
    // A rollback says so, and which deployment's version it restores.
    let kind = if dep.rollback_of.is_some() {
        "rollback"
    } else {
        "deployment"
    };
    let restores = dep.rollback_of.as_ref().map(|r| {
        format!(
            "version {} with image {} (deployment {})",
            r.launch_template_version, r.image_id, r.deployment_id
        )
    });
    let subject = one_line(&format!(
        "[Autosky] {}: {kind} {} ({})",
        dep.environment_id,
        status_text.trim_end(),
        version
    ));
    let fmt_time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "-".into())
    };
    let duration = dep
        .duration_ms
        .map(human_duration)
        .unwrap_or_else(|| "-".into());
    let model = dep
        .generated_version
        .as_ref()
        .map(|v| {
            format!(
                "{} version {} ({})",
                v.launch_template_id, v.launch_template_version, v.image_id
            )
        })
        .unwrap_or_else(|| "-".into());

    let mut text = String::new();
    text.push_str(&format!(
        "Deployment {} of {}: {}\n\n",
        dep.deployment_id,
        dep.environment_id,
        status_text.trim_end()
    ));
    text.push_str(&format!("Owner:    {}\n", one_line(&dep.owner)));
    if let Some(r) = &restores {
        text.push_str(&format!("Restores: {r}\n"));
    }
    if let Some(when) = &scheduled {
        text.push_str(&format!("Scheduled: {}\n", one_line(when)));
    }
    text.push_str(&format!("Version:  {model}\n"));
    text.push_str(&format!("Started:  {}\n", fmt_time(dep.started_at)));
    text.push_str(&format!("Ended:    {}\n", fmt_time(dep.ended_at)));
    text.push_str(&format!("Duration: {duration}\n\nSteps:\n"));
    for s in &dep.steps {
        text.push_str(&format!(
            "  {:<26} {:<14} {}\n",
            s.name.as_str(),
            s.status.as_str(),
            s.duration_ms
                .map(human_duration)
                .unwrap_or_else(|| "-".into())
        ));
    }
    if let Some(e) = &dep.error {
        text.push_str(&format!(
            "\nError in {}: {}: {}\n",
            e.step.map(|s| s.as_str()).unwrap_or("the workflow"),
            e.name,
            one_line(&e.message)
        ));
    }
    if let Some(url) = console {
        text.push_str(&format!("\nExecution: {url}\n"));
    }

    let mut rows = String::new();
    for s in &dep.steps {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape_html(s.name.as_str()),
            escape_html(s.status.as_str()),
            escape_html(
                &s.duration_ms
                    .map(human_duration)
                    .unwrap_or_else(|| "-".into())
            )
        ));
    }
    let error_html = dep
        .error
        .as_ref()
        .map(|e| {
            format!(
                "<p><strong>Error in {}:</strong> {}: {}</p>",
                escape_html(e.step.map(|s| s.as_str()).unwrap_or("the workflow")),
                escape_html(&e.name),
                escape_html(&e.message)
            )
        })
        .unwrap_or_default();
    let link = console
        .map(|u| {
            format!(
                "<p><a href=\"{}\">Open the execution in the Step Functions console</a></p>",
                escape_html(u)
            )
        })
        .unwrap_or_default();
    let html = format!(
        "<!doctype html><html><body><h1>{env}: {kind} {status}</h1>\
         <table><tr><th>Deployment</th><td>{id}</td></tr><tr><th>Owner</th><td>{owner}</td></tr>{restores_row}{scheduled_row}\
         <tr><th>Version</th><td>{model}</td></tr><tr><th>Started</th><td>{start}</td></tr>\
         <tr><th>Ended</th><td>{end}</td></tr><tr><th>Duration</th><td>{duration}</td></tr></table>\
         <h2>Steps</h2><table><tr><th>Step</th><th>Status</th><th>Time</th></tr>{rows}</table>{error_html}{link}</body></html>",
        env = escape_html(&dep.environment_id),
        status = escape_html(status_text.trim_end()),
        id = escape_html(&dep.deployment_id),
        owner = escape_html(&dep.owner),
        restores_row = restores
            .as_deref()
            .map(|r| format!("<tr><th>Restores</th><td>{}</td></tr>", escape_html(r)))
            .unwrap_or_default(),
        scheduled_row = scheduled
            .as_deref()
            .map(|w| format!("<tr><th>Scheduled</th><td>{}</td></tr>", escape_html(w)))
            .unwrap_or_default(),
        model = escape_html(&model),
        start = escape_html(&fmt_time(dep.started_at)),
        end = escape_html(&fmt_time(dep.ended_at)),
        duration = escape_html(&duration),
    );
    Email {
        subject,
        text,
        html,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{DeploymentError, DeploymentOptions, DeploymentStatus, StepName};

    #[test]
    fn user_values_are_escaped_and_subject_is_one_line() {
        let mut d = Deployment::new_running(
            crate::domain::new_deployment_id(),
            "prod".into(),
            "<script>alert(1)</script>\r\nBcc: x@y".into(),
            DeploymentOptions::default(),
            chrono::Utc::now(),
        );
        d.status = DeploymentStatus::Failed;
        d.error = Some(DeploymentError {
            step: Some(StepName::CreateImage),
            name: "ImageFailed".into(),
            message: "<b>disk</b>".into(),
        });
        let e = render(&d, Some("https://x/?a=1&b=2"));
        assert!(!e.html.contains("<script>"));
        assert!(e.html.contains("&lt;script&gt;"));
        assert!(e.html.contains("&lt;b&gt;disk&lt;/b&gt;"));
        assert!(e.html.contains("a=1&amp;b=2"));
        assert!(!e.subject.contains('\n'));
        assert!(!e.text.contains("\r\nBcc"));
        assert!(e.subject.contains("prod") && e.subject.contains("Failed"));
        assert!(e.text.contains("Error in Create image: ImageFailed"));
    }

    #[test]
    fn a_rollback_says_so_and_names_what_it_restores() {
        let mut d = Deployment::new_running(
            crate::domain::new_deployment_id(),
            "prod".into(),
            "ops@example.com".into(),
            DeploymentOptions::default(),
            chrono::Utc::now(),
        );
        d.status = DeploymentStatus::Succeeded;
        d.rollback_of = Some(crate::domain::RollbackOf {
            deployment_id: "01JR0000000000000000000000".into(),
            launch_template_id: "lt-1".into(),
            launch_template_version: 7,
            image_id: "ami-7".into(),
        });
        d.generated_version = Some(crate::domain::GeneratedVersion {
            launch_template_id: "lt-1".into(),
            launch_template_version: 7,
            image_id: "ami-7".into(),
        });
        let e = render(&d, None);
        assert_eq!(e.subject, "[Autosky] prod: rollback Succeeded (version 7)");
        let restores = "version 7 with image ami-7 (deployment 01JR0000000000000000000000)";
        assert!(
            e.text.contains(&format!("Restores: {restores}")),
            "{}",
            e.text
        );
        assert!(e
            .html
            .contains(&format!("<tr><th>Restores</th><td>{restores}</td></tr>")));
        assert!(e.html.contains("<h1>prod: rollback Succeeded</h1>"));
    }

    #[test]
    fn a_schedule_confirmation_names_the_time_in_its_zone_and_in_utc() {
        let t: chrono::DateTime<chrono::Utc> = "2026-12-01T13:30:00Z".parse().unwrap();
        let d = Deployment::new_scheduled(
            crate::domain::new_deployment_id(),
            "prod".into(),
            "ops@example.com".into(),
            DeploymentOptions::default(),
            chrono::Utc::now(),
            t,
            crate::domain::ScheduleInfo {
                at: "2026-12-01T14:30:00".into(),
                timezone: "Europe/Paris".into(),
                schedule_name: "x".into(),
                schedule_group: "g".into(),
            },
        );
        let e = render(&d, None);
        assert_eq!(
            e.subject,
            "[Autosky] prod: deployment Scheduled for 2026-12-01 14:30:00 Europe/Paris (new version pending)"
        );
        assert!(e
            .text
            .contains("Scheduled: 2026-12-01 14:30:00 Europe/Paris (2026-12-01 13:30:00 UTC)"));
        assert!(e.html.contains("<th>Scheduled</th>"));
        assert!(e.text.contains("Initial validation"));
    }
}
