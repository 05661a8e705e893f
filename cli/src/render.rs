//! Text output: tables for environments and history, a details block, and the
//! live progress of `--wait` (redrawn in place on a terminal, one line per
//! change otherwise, so logs stay readable).

use serde_json::Value;
use std::io::{IsTerminal, Write};

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}

pub fn duration(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) if ms < 60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        Some(ms) => {
            let secs = ms / 1000;
            if secs < 3600 {
                format!("{} min {} s", secs / 60, secs % 60)
            } else {
                format!("{} h {} min", secs / 3600, (secs % 3600) / 60)
            }
        }
    }
}

fn icon(status: &str) -> &'static str {
    match status {
        "Succeeded" => "✔",
        "Failed" => "✖",
        "RolledBack" => "↶",
        "Cancelled" => "⊘",
        "Running" => "⟳",
        "Scheduled" => "⏲",
        "NotApplicable" => "–",
        _ => "○",
    }
}

fn time(v: &Value) -> String {
    v.as_str()
        .map(|t| t.replace('T', " ").chars().take(19).collect())
        .unwrap_or_else(|| "-".into())
}

pub fn environments(v: &Value) -> String {
    let mut out = format!(
        "{:<24} {:<26} {:<22} {}\n",
        "ENVIRONMENT", "PREPARATION SERVER", "LAUNCH TEMPLATE", "GROUPS"
    );
    for e in v["items"].as_array().into_iter().flatten() {
        let groups: Vec<&str> = e["autoScalingGroups"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        out.push_str(&format!(
            "{:<24} {:<26} {:<22} {}\n",
            s(&e["environmentId"]),
            s(&e["preparationServerId"]),
            s(&e["launchTemplateId"]),
            groups.join(", ")
        ));
    }
    out
}

pub fn history(v: &Value) -> String {
    let mut out = format!(
        "{:<26} {:<12} {:<19} {:<10} {:<8} {:<6} {}\n",
        "DEPLOYMENT", "STATUS", "WHEN", "DURATION", "VERSION", "STEPS", "NOTE"
    );
    for d in v["items"].as_array().into_iter().flatten() {
        let when = if d["status"] == "Scheduled" {
            time(&d["scheduledFor"])
        } else {
            time(&d["startedAt"])
        };
        let steps: String = d["steps"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|st| icon(s(&st["status"])))
            .collect::<Vec<_>>()
            .join("");
        out.push_str(&format!(
            "{:<26} {:<12} {:<19} {:<10} {:<8} {:<6} {}\n",
            s(&d["deploymentId"]),
            format!("{} {}", icon(s(&d["status"])), s(&d["status"])),
            when,
            duration(d["durationMs"].as_i64()),
            d["generatedVersion"]["launchTemplateVersion"]
                .as_i64()
                .map(|v| format!("v{v}"))
                .unwrap_or_else(|| "-".into()),
            steps,
            note(d)
        ));
    }
    if let Some(t) = v["nextToken"].as_str() {
        out.push_str(&format!("(more: nextToken {t})\n"));
    }
    out.trim_end_matches(' ').to_string()
}

/// What the history says of a row beyond its status: a rollback and what it
/// restored, the version in service, a version a rollback can restore.
fn note(d: &Value) -> String {
    let mut notes = Vec::new();
    if let Some(n) = d["rollbackOf"]["launchTemplateVersion"].as_i64() {
        notes.push(format!(
            "Rollback to version {n} — deployment {}",
            s(&d["rollbackOf"]["deploymentId"])
        ));
    }
    if d["inService"] == true {
        notes.push("in service".into());
    }
    if d["canRollBack"] == true {
        notes.push("can roll back".into());
    }
    notes.join("; ")
}

/// The audit trail: when, who, what, and the values changed (a
/// registration, which lists every field, as their count).
pub fn audit(v: &Value) -> String {
    let mut out = format!(
        "{:<19} {:<20} {:<26} {:<26} {}\n",
        "WHEN", "ACTION", "CALLER", "DEPLOYMENT", "CHANGES"
    );
    for e in v["items"].as_array().into_iter().flatten() {
        let changes = e["changes"].as_array().cloned().unwrap_or_default();
        let mut what = if e["action"] == "RegisterEnvironment" {
            format!("{} fields", changes.len())
        } else {
            changes
                .iter()
                .map(|c| {
                    let value = |k: &str| c.get(k).map(Value::to_string);
                    match (value("before"), value("after")) {
                        (Some(b), Some(a)) => format!("{}: {b} → {a}", s(&c["field"])),
                        (None, Some(a)) => format!("{} = {a}", s(&c["field"])),
                        (Some(b), None) => format!("{}: {b} → (none)", s(&c["field"])),
                        (None, None) => s(&c["field"]).to_string(),
                    }
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        if let Some(note) = e["note"].as_str() {
            what.push_str(&format!(" ({note})"));
        }
        out.push_str(&format!(
            "{:<19} {:<20} {:<26} {:<26} {}\n",
            time(&e["at"]),
            s(&e["action"]),
            s(&e["caller"]),
            s(&e["deploymentId"]),
            what
        ));
    }
    if let Some(t) = v["nextToken"].as_str() {
        out.push_str(&format!("(more: nextToken {t})\n"));
    }
    out
}

pub fn details(d: &Value) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "Deployment {} of {}\n",
        s(&d["deploymentId"]),
        s(&d["environmentId"])
    ));
    out.push_str(&format!(
        "  Status:        {} {}\n",
        icon(s(&d["status"])),
        s(&d["status"])
    ));
    out.push_str(&format!("  Owner:         {}\n", s(&d["owner"])));
    if d["scheduledFor"].is_string() {
        out.push_str(&format!(
            "  Scheduled for: {} {} ({} UTC)\n",
            s(&d["schedule"]["at"]).replace('T', " "),
            s(&d["schedule"]["timezone"]),
            time(&d["scheduledFor"])
        ));
    }
    out.push_str(&format!(
        "  Model version: {}\n",
        d["modelVersion"]
            .as_i64()
            .map(|v| v.to_string())
            .unwrap_or_else(|| "-".into())
    ));
    if let Some(n) = d["rollbackOf"]["launchTemplateVersion"].as_i64() {
        out.push_str(&format!(
            "  Rollback to:   version {n} with image {} (deployment {})\n",
            s(&d["rollbackOf"]["imageId"]),
            s(&d["rollbackOf"]["deploymentId"])
        ));
    }
    if d["inService"] == true {
        out.push_str("  In service:    its version is the one in service\n");
    }
    if d["canRollBack"] == true {
        out.push_str(&format!(
            "  Rollback:      its version can be restored: autosky rollback {} {}\n",
            s(&d["environmentId"]),
            s(&d["deploymentId"])
        ));
    }
    out.push_str(&format!("  Start:         {}\n", time(&d["startedAt"])));
    out.push_str(&format!("  End:           {}\n", time(&d["endedAt"])));
    out.push_str(&format!(
        "  Duration:      {}\n",
        duration(d["durationMs"].as_i64())
    ));
    if let Some(url) = d["consoleUrl"].as_str() {
        out.push_str(&format!("  Execution:     {url}\n"));
    }
    if d["error"].is_object() {
        out.push_str(&format!(
            "  Error:         {} in {}: {}\n",
            s(&d["error"]["name"]),
            d["error"]["step"].as_str().unwrap_or("the workflow"),
            s(&d["error"]["message"])
        ));
    }
    for st in d["steps"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n{} {:<26} {:<14} {}\n",
            icon(s(&st["status"])),
            s(&st["name"]),
            s(&st["status"]),
            duration(st["durationMs"].as_i64())
        ));
        for a in st["actions"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "    {}  {}\n",
                time(&a["at"]).get(11..).unwrap_or("-"),
                s(&a["message"])
            ));
        }
    }
    out
}

/// The live view of `--wait`.
pub struct Progress {
    text: bool,
    tty: bool,
    drawn_lines: usize,
    last: Vec<(String, String)>,
}

impl Progress {
    pub fn new(text: bool) -> Self {
        Self {
            text,
            tty: std::io::stdout().is_terminal(),
            drawn_lines: 0,
            last: Vec::new(),
        }
    }

    fn bar(done: usize, total: usize) -> String {
        let width = 24;
        let filled = (done * width).checked_div(total).unwrap_or(0);
        format!(
            "[{}{}] {done}/{total}",
            "█".repeat(filled),
            "░".repeat(width - filled)
        )
    }

    pub fn draw(&mut self, d: &Value) {
        if !self.text {
            return;
        }
        let steps: Vec<&Value> = d["steps"].as_array().into_iter().flatten().collect();
        let now: Vec<(String, String)> = steps
            .iter()
            .map(|st| (s(&st["name"]).to_string(), s(&st["status"]).to_string()))
            .collect();
        let done = now
            .iter()
            .filter(|(_, st)| matches!(st.as_str(), "Succeeded" | "Failed" | "NotApplicable"))
            .count();
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn_lines > 0 {
                let _ = write!(out, "\x1b[{}A", self.drawn_lines);
            }
            let mut lines = 0;
            let _ = writeln!(
                out,
                "\x1b[2K{} {}",
                Self::bar(done, steps.len()),
                s(&d["status"])
            );
            lines += 1;
            for st in &steps {
                let _ = writeln!(
                    out,
                    "\x1b[2K  {} {:<26} {:<14} {}",
                    icon(s(&st["status"])),
                    s(&st["name"]),
                    s(&st["status"]),
                    duration(st["durationMs"].as_i64())
                );
                lines += 1;
            }
            self.drawn_lines = lines;
        } else {
            for (i, (name, status)) in now.iter().enumerate() {
                if self.last.get(i) != Some(&(name.clone(), status.clone())) && status != "Pending"
                {
                    let _ = writeln!(
                        out,
                        "{} {:<26} {:<14} {}  {}",
                        icon(status),
                        name,
                        status,
                        duration(steps[i]["durationMs"].as_i64()),
                        Self::bar(done, steps.len())
                    );
                }
            }
        }
        let _ = out.flush();
        self.last = now;
    }

    pub fn finish(&mut self, d: &Value) {
        if !self.text {
            return;
        }
        let status = s(&d["status"]);
        println!(
            "{} Deployment {} {status} in {}{}",
            icon(status),
            s(&d["deploymentId"]),
            duration(d["durationMs"].as_i64()),
            d["generatedVersion"]["launchTemplateVersion"]
                .as_i64()
                .map(|v| format!(": version {v} ({})", s(&d["generatedVersion"]["imageId"])))
                .unwrap_or_default()
        );
        if d["error"].is_object() {
            eprintln!(
                "error: {} in {}: {}",
                s(&d["error"]["name"]),
                d["error"]["step"].as_str().unwrap_or("the workflow"),
                s(&d["error"]["message"])
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_show_status_icons_and_versions() {
        let h = history(&json!({"items": [{
            "deploymentId": "01J", "status": "Succeeded", "startedAt": "2026-11-27T10:00:00Z",
            "durationMs": 61000, "generatedVersion": {"launchTemplateVersion": 7},
            "steps": [{"status": "Succeeded"}, {"status": "NotApplicable"}]
        }], "nextToken": null}));
        assert!(
            h.contains("✔ Succeeded")
                && h.contains("v7")
                && h.contains("1 min 1 s")
                && h.contains("✔–"),
            "{h}"
        );
        assert_eq!(duration(Some(1500)), "1.5 s");
        assert_eq!(
            Progress::bar(3, 6),
            format!("[{}{}] 3/6", "█".repeat(12), "░".repeat(12))
        );
    }

    #[test]
    fn the_audit_shows_who_what_and_each_change() {
        let a = audit(&json!({"items": [
            {"at": "2026-11-27T12:00:00Z", "action": "UpdateEnvironment", "caller": "alice",
             "changes": [{"field": "defaults.retention", "before": 5, "after": 3},
                         {"field": "defaults.refreshPreferences.instanceWarmupSeconds", "before": null, "after": 60}]},
            {"at": "2026-11-27T11:00:00Z", "action": "StartDeployment", "caller": "bob",
             "deploymentId": "01JDEP", "changes": [{"field": "status", "after": "Running"}]},
            {"at": "2026-11-27T10:00:00Z", "action": "RegisterEnvironment", "caller": "alice",
             "changes": [{"field": "a", "after": 1}, {"field": "b", "after": 2}]}
        ], "nextToken": "t1"}));
        let lines: Vec<&str> = a.lines().collect();
        assert!(
            lines[1].starts_with("2026-11-27 12:00:00 UpdateEnvironment"),
            "{a}"
        );
        assert!(
            lines[1].ends_with(
                "defaults.retention: 5 → 3; defaults.refreshPreferences.instanceWarmupSeconds: null → 60"
            ),
            "{a}"
        );
        assert!(
            lines[2].contains("bob")
                && lines[2].contains("01JDEP")
                && lines[2].ends_with("status = \"Running\""),
            "{a}"
        );
        assert!(lines[3].ends_with("2 fields"), "{a}");
        assert_eq!(lines[4], "(more: nextToken t1)");
    }
}
