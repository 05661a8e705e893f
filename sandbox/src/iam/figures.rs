//! The enforcement's figures across test binaries: each sandbox process that
//! enforces appends a start line and, when it stops, its [`Report`] to one
//! file (`$AUTOSKY_FIGURES.iam`); `autosky-sandbox iam-summary FILE` sums
//! them after `cargo test` into the line `make test` prints. The denials of
//! a sandbox whose tests provoke them on purpose are counted apart.

use super::Report;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::{Duration, Instant};

/// The file next to the figures file, when `AUTOSKY_FIGURES` names one.
pub fn path() -> Option<String> {
    std::env::var("AUTOSKY_FIGURES")
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| format!("{p}.iam"))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Line {
    pid: u32,
    report: Option<Report>,
    #[serde(default)]
    on_purpose: bool,
}

/// The summed reports: the suites' (whose denials fail `make test`) and the
/// denials provoked on purpose.
#[derive(Debug, Default)]
pub struct Summary {
    pub report: Report,
    pub denied_on_purpose: u64,
}

fn append(path: &str, line: &Line) -> Result<(), String> {
    let json = serde_json::to_string(line).map_err(|e| e.to_string())?;
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| writeln!(f, "{json}"))
        .map_err(|e| format!("{path}: {e}"))
}

/// This process enforces from now on: its report is owed.
pub fn started(path: &str) -> Result<(), String> {
    append(
        path,
        &Line {
            pid: std::process::id(),
            report: None,
            on_purpose: false,
        },
    )
}

/// This process's report, as it stops.
pub fn stopped(path: &str, report: &Report, on_purpose: bool) -> Result<(), String> {
    append(
        path,
        &Line {
            pid: std::process::id(),
            report: Some(report.clone()),
            on_purpose,
        },
    )
}

/// The summed report of every process that started; waits up to `patience`
/// for the reports of processes that are still stopping.
pub fn summarize(path: &str, patience: Duration) -> Result<Summary, String> {
    let deadline = Instant::now() + patience;
    loop {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
        let mut started = BTreeSet::new();
        let mut reports = BTreeMap::new();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let line: Line = serde_json::from_str(line).map_err(|e| format!("{path}: {e}"))?;
            match line.report {
                None => started.insert(line.pid),
                Some(r) => reports.insert(line.pid, (r, line.on_purpose)).is_none(),
            };
        }
        let missing: Vec<u32> = started
            .difference(&reports.keys().copied().collect())
            .copied()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            let mut total = Summary::default();
            for (r, on_purpose) in reports.values() {
                if *on_purpose {
                    total.denied_on_purpose += r.denied;
                    let r = Report {
                        denied: 0,
                        denials: vec![],
                        ..r.clone()
                    };
                    total.report.merge(&r);
                } else {
                    total.report.merge(r);
                }
            }
            if !missing.is_empty() {
                return Err(format!(
                    "sandbox processes {missing:?} wrote no IAM report (killed before they stopped?)"
                ));
            }
            return Ok(total);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_reports_and_names_a_missing_one() {
        let dir = std::env::temp_dir().join(format!("iam-figures-{}", std::process::id()));
        let path = dir.to_string_lossy().to_string();
        let _ = std::fs::remove_file(&path);
        let report = |n, action: &str| Report {
            authorized: n,
            granted: BTreeMap::from([("F".into(), BTreeSet::from(["a".into(), "b".into()]))]),
            exercised: BTreeMap::from([("F".into(), BTreeSet::from([action.to_string()]))]),
            ..Report::default()
        };
        let line = |pid, report, on_purpose| Line {
            pid,
            report,
            on_purpose,
        };
        let mut provoked = report(1, "a");
        provoked.denied = 4;
        for (pid, r, on_purpose) in [
            (1, report(2, "a"), false),
            (2, report(3, "b"), false),
            (3, provoked, true),
        ] {
            append(&path, &line(pid, None, false)).unwrap();
            append(&path, &line(pid, Some(r), on_purpose)).unwrap();
        }
        let total = summarize(&path, Duration::ZERO).unwrap();
        assert_eq!(
            total.report.summary(),
            "IAM: 6 calls authorized, 0 denied; unused grants: none"
        );
        assert_eq!(total.denied_on_purpose, 4);
        append(&path, &line(4, None, false)).unwrap();
        let err = summarize(&path, Duration::ZERO).unwrap_err();
        assert!(err.contains("[4]"), "{err}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn names_each_unused_grant() {
        let r = Report {
            granted: BTreeMap::from([(
                "CreateImageFunction".into(),
                BTreeSet::from(["ec2:createimage".into(), "ec2:describeinstances".into()]),
            )]),
            exercised: BTreeMap::from([(
                "CreateImageFunction".into(),
                BTreeSet::from(["ec2:createimage".into()]),
            )]),
            authorized: 7,
            ..Report::default()
        };
        assert_eq!(
            r.summary(),
            "IAM: 7 calls authorized, 0 denied; unused grants: CreateImageFunction: ec2:describeinstances"
        );
    }
}
