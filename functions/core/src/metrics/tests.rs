//! The EMF documents checked against the specification's rules, and what a
//! deployment's documents say.

use super::*;
use crate::domain::{DeploymentOptions, DeploymentStatus, StepName, StepStatus};
use chrono::TimeZone;

/// The units CloudWatch accepts (the specification's schema).
const UNITS: &[&str] = &[
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

fn at(min: u32, sec: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 27, 9, min, sec).unwrap()
}

/// Started 09:00:00, Create image 09:00:10–09:03:10, Replace instances
/// 09:03:10–09:08:10 (failed), Finalization 09:08:10–09:08:15.
fn ended(status: DeploymentStatus) -> Deployment {
    let mut d = Deployment::new_running(
        "01JABCDEFGHJKMNPQRSTVWXYZ0".into(),
        "prod-web".into(),
        "alice@example.com".into(),
        DeploymentOptions::default(),
        at(0, 0),
    );
    for (name, status, from, to) in [
        (
            StepName::InitialValidation,
            StepStatus::Succeeded,
            at(0, 0),
            at(0, 10),
        ),
        (
            StepName::CreateImage,
            StepStatus::Succeeded,
            at(0, 10),
            at(3, 10),
        ),
        (
            StepName::ReplaceInstances,
            StepStatus::Failed,
            at(3, 10),
            at(8, 10),
        ),
        (
            StepName::Finalization,
            StepStatus::Succeeded,
            at(8, 10),
            at(8, 15),
        ),
    ] {
        let s = d.step_mut(name);
        s.status = status;
        s.started_at = Some(from);
        s.ended_at = Some(to);
        s.duration_ms = Some(crate::domain::millis_between(from, to));
    }
    // Not applicable: it only checked the option (and took a few ms).
    let s = d.step_mut(StepName::StopPreparationServer);
    s.status = StepStatus::NotApplicable;
    s.duration_ms = Some(14);
    d.status = status;
    d.ended_at = Some(at(8, 15));
    d.duration_ms = Some(495_000);
    d
}

/// Every rule of the specification a document can break: one JSON object
/// on one line; `_aws` with a millisecond `Timestamp` and directives, each
/// with a namespace, at most 30 dimension keys per set, each a string
/// member of the root (at most 1024 characters), and at most 100 metrics,
/// each a numeric member of the root with a CloudWatch unit.
fn check_spec(line: &str) -> Value {
    assert!(!line.contains('\n'), "one line: {line}");
    let doc: Value = serde_json::from_str(line).expect("a JSON document");
    let root = doc.as_object().expect("the root is an object");
    let aws = root["_aws"].as_object().expect("_aws is an object");
    let ts = aws["Timestamp"].as_i64().expect("Timestamp is an integer");
    assert!(ts > 1_700_000_000_000, "Timestamp in ms: {ts}");
    let directives = aws["CloudWatchMetrics"].as_array().expect("directives");
    assert!(!directives.is_empty());
    for d in directives {
        assert_eq!(d["Namespace"], NAMESPACE);
        let sets = d["Dimensions"].as_array().expect("Dimensions");
        assert!(!sets.is_empty());
        for set in sets {
            let keys = set.as_array().expect("a DimensionSet");
            assert!(keys.len() <= 30);
            for k in keys {
                let v = root[k.as_str().expect("a dimension key")]
                    .as_str()
                    .unwrap_or_else(|| panic!("dimension {k} is a string member"));
                assert!(!v.is_empty() && v.len() <= 1024 && v.is_ascii(), "{k}: {v}");
            }
        }
        let metrics = d["Metrics"].as_array().expect("Metrics");
        assert!(!metrics.is_empty() && metrics.len() <= 100);
        for m in metrics {
            let name = m["Name"].as_str().expect("Name");
            assert!(root[name].is_number(), "metric {name} is a numeric member");
            assert!(UNITS.contains(&m["Unit"].as_str().expect("Unit")), "{m}");
        }
    }
    doc
}

fn lines(d: &Deployment) -> Vec<Value> {
    let sink = Recorder::default();
    emit(&sink, d);
    sink.lines().iter().map(|l| check_spec(l)).collect()
}

#[test]
fn a_deployment_counts_once_by_environment_and_status_with_its_duration() {
    let docs = lines(&ended(DeploymentStatus::Failed));
    let dep = &docs[0];
    assert_eq!(dep["_aws"]["Timestamp"], at(8, 15).timestamp_millis());
    assert_eq!(
        dep["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Environment", "Status"], ["Status"]])
    );
    assert_eq!(
        (
            &dep["Environment"],
            &dep["Status"],
            &dep["Deployments"],
            &dep["DeploymentDuration"]
        ),
        (
            &json!("prod-web"),
            &json!("Failed"),
            &json!(1),
            &json!(495_000)
        )
    );
    assert_eq!(dep["DeploymentId"], "01JABCDEFGHJKMNPQRSTVWXYZ0");
}

#[test]
fn each_step_that_ran_and_applied_has_its_duration_and_no_other_does() {
    let docs = lines(&ended(DeploymentStatus::Succeeded));
    let steps: Vec<_> = docs[1..]
        .iter()
        .map(|d| {
            assert_eq!(
                d["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
                json!([["Environment", "Step"], ["Step"]])
            );
            assert_eq!(d["Environment"], "prod-web");
            (
                d["Step"].as_str().unwrap().to_string(),
                d["StepStatus"].as_str().unwrap().to_string(),
                d["StepDuration"].as_i64().unwrap(),
                d["_aws"]["Timestamp"].as_i64().unwrap(),
            )
        })
        .collect();
    let s = |n: &str, st: &str, ms: i64, end: DateTime<Utc>| {
        (n.to_string(), st.to_string(), ms, end.timestamp_millis())
    };
    assert_eq!(
        steps,
        vec![
            s("Initial validation", "Succeeded", 10_000, at(0, 10)),
            s("Create image", "Succeeded", 180_000, at(3, 10)),
            s("Replace instances", "Failed", 300_000, at(8, 10)),
            s("Finalization", "Succeeded", 5_000, at(8, 15)),
        ]
    );
}

#[test]
fn a_running_deployment_has_no_metrics() {
    let mut d = ended(DeploymentStatus::Succeeded);
    d.status = DeploymentStatus::Running;
    assert!(documents(&d).is_empty());
    d.status = DeploymentStatus::Scheduled;
    assert!(documents(&d).is_empty());
}

#[test]
fn a_deployment_that_never_started_counts_without_a_duration() {
    let mut d = ended(DeploymentStatus::Failed);
    d.started_at = None;
    d.duration_ms = Some(0);
    for s in &mut d.steps {
        *s = StepRecord::pending(s.name);
    }
    let docs = lines(&d);
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["Deployments"], 1);
    assert!(docs[0].get("DeploymentDuration").is_none());
    assert_eq!(
        docs[0]["_aws"]["CloudWatchMetrics"][0]["Metrics"],
        json!([{"Name": "Deployments", "Unit": "Count"}])
    );
}

#[test]
fn each_noticed_wait_has_its_detection_delay() {
    let mut d = ended(DeploymentStatus::Failed);
    let rt = &mut d.runtime;
    WaitNoticed::record(
        rt,
        WaitNoticed::FLEET_RESTORE,
        "web-asg",
        Some(at(8, 0)),
        at(8, 7),
    );
    // A later poll of the same wait changes nothing; no end time, no record.
    WaitNoticed::record(
        rt,
        WaitNoticed::FLEET_RESTORE,
        "web-asg",
        Some(at(8, 0)),
        at(8, 9),
    );
    WaitNoticed::record(rt, WaitNoticed::FLEET_RESTORE, "api-asg", None, at(8, 9));
    let docs = lines(&d);
    let waits: Vec<_> = docs.iter().filter(|m| m.get("Wait").is_some()).collect();
    assert_eq!(waits.len(), 1, "{waits:?}");
    let w = waits[0];
    assert_eq!(
        w["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
        json!([["Environment", "Wait"], ["Wait"]])
    );
    assert_eq!(
        (
            &w["Wait"],
            &w["Group"],
            &w["WaitDetectionDelay"],
            &w["_aws"]["Timestamp"]
        ),
        (
            &json!("Fleet restore"),
            &json!("web-asg"),
            &json!(7_000),
            &json!(at(8, 7).timestamp_millis())
        )
    );
}

#[test]
fn a_wait_noticed_before_its_reported_end_counts_zero() {
    let mut d = ended(DeploymentStatus::Succeeded);
    // Clocks differ: the poll's clock is behind AWS's.
    WaitNoticed::record(
        &mut d.runtime,
        WaitNoticed::REFRESH,
        "web-asg",
        Some(at(5, 1)),
        at(5, 0),
    );
    let docs = lines(&d);
    assert_eq!(docs.last().unwrap()["WaitDetectionDelay"], 0);
}
