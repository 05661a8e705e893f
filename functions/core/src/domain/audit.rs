//! The audit trail: one entry per state-changing API request — who, when,
//! what, and which values changed. The store writes an entry in the same
//! atomic write as the change it records and never rewrites it; entries are
//! kept, like the history, for as long as the table.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Mutex;
use strum::IntoStaticStr;

/// What a request did. The name is the same in the API and the table.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, IntoStaticStr, strum::Display,
)]
pub enum AuditAction {
    RegisterEnvironment,
    UpdateEnvironment,
    StartDeployment,
    /// A deployment started that restores an earlier deployment's model.
    RollbackDeployment,
    /// A Running deployment flagged for cancellation.
    CancelDeployment,
    ScheduleDeployment,
    MoveSchedule,
    /// A Scheduled deployment ended Cancelled (by either cancel route).
    CancelSchedule,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// One changed value: `field` is a dotted path into the record
/// (`defaults.refreshPreferences.minHealthyPercentage`). `before` is absent
/// when the field did not exist (a registration, a new deployment), `after`
/// when it no longer does; JSON `null` is a value (e.g. an unset warm-up).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditChange {
    pub field: String,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub before: Option<Value>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub after: Option<Value>,
}

/// A field that is present is `Some`, even when it holds `null` (serde's
/// `Option` would read `null` as absent).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl AuditChange {
    pub fn new(field: &str, before: Option<Value>, after: Option<Value>) -> Self {
        Self {
            field: field.to_string(),
            before,
            after,
        }
    }
}

/// Who did what to an environment, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    pub environment_id: String,
    /// A ULID: entries sort by it, newest last.
    pub audit_id: String,
    pub at: DateTime<Utc>,
    /// The request's authenticated identity.
    pub caller: String,
    pub action: AuditAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployment_id: Option<String>,
    #[serde(default)]
    pub changes: Vec<AuditChange>,
    /// Why the API itself made the change, when it did so on the caller's
    /// behalf (e.g. a move put back because the schedule could not move).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl AuditEntry {
    pub fn new(environment_id: &str, caller: &str, action: AuditAction, at: DateTime<Utc>) -> Self {
        Self {
            environment_id: environment_id.to_string(),
            audit_id: new_audit_id(),
            at,
            caller: caller.to_string(),
            action,
            deployment_id: None,
            changes: Vec::new(),
            note: None,
        }
    }

    pub fn deployment(mut self, deployment_id: &str) -> Self {
        self.deployment_id = Some(deployment_id.to_string());
        self
    }

    pub fn changes(mut self, changes: Vec<AuditChange>) -> Self {
        self.changes = changes;
        self
    }

    pub fn note(mut self, note: String) -> Self {
        self.note = Some(note);
        self
    }
}

/// A new audit id: a ULID, strictly increasing within the process (two
/// requests in one millisecond still list in the order they were made).
pub fn new_audit_id() -> String {
    static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());
    let next = GENERATOR.lock().ok().and_then(|mut g| g.generate().ok());
    // Overflow of the random part within one millisecond (2^80 ids) or a
    // poisoned lock: a plain ULID, still time-ordered to the millisecond.
    match next {
        Some(id) => id,
        // (`Ulid::default()` is the nil id, not a new one.)
        None => ulid::Ulid::new(),
    }
    .to_string()
}

/// The fields whose values differ between two JSON records, by dotted path,
/// in path order. Objects are compared field by field; arrays and scalars
/// as whole values. `Value::Null` as `before` stands for "no record" (every
/// field of `after` is then listed, with `after` only).
pub fn diff(before: &Value, after: &Value) -> Vec<AuditChange> {
    let (mut old, mut new) = (BTreeMap::new(), BTreeMap::new());
    if !before.is_null() {
        flatten("", before, &mut old);
    }
    if !after.is_null() {
        flatten("", after, &mut new);
    }
    let mut fields: Vec<&String> = old.keys().chain(new.keys()).collect();
    fields.sort();
    fields.dedup();
    fields
        .into_iter()
        .filter(|f| old.get(*f) != new.get(*f))
        .map(|f| AuditChange::new(f, old.get(f).cloned(), new.get(f).cloned()))
        .collect()
}

fn flatten(prefix: &str, v: &Value, out: &mut BTreeMap<String, Value>) {
    match v {
        Value::Object(map) if !map.is_empty() || prefix.is_empty() => {
            for (k, x) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, x, out);
            }
        }
        // An empty object is a value of its own (an empty map was set).
        Value::Object(_) => {
            out.insert(prefix.to_string(), Value::Object(Map::new()));
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_lists_only_changed_leaves_by_dotted_path() {
        let before = json!({"a": 1, "d": {"r": {"m": 90, "w": null}, "e": ["x"]}, "same": true});
        let after = json!({"a": 1, "d": {"r": {"m": 50, "w": 60}, "e": ["x", "y"]}, "same": true});
        assert_eq!(
            diff(&before, &after),
            vec![
                AuditChange::new("d.e", Some(json!(["x"])), Some(json!(["x", "y"]))),
                AuditChange::new("d.r.m", Some(json!(90)), Some(json!(50))),
                AuditChange::new("d.r.w", Some(Value::Null), Some(json!(60))),
            ]
        );
        assert!(diff(&after, &after).is_empty());
    }

    #[test]
    fn diff_from_nothing_lists_every_field_after_only() {
        let got = diff(
            &Value::Null,
            &json!({"id": "prod", "d": {"m": 90}, "x": {}}),
        );
        assert_eq!(
            got,
            vec![
                AuditChange::new("d.m", None, Some(json!(90))),
                AuditChange::new("id", None, Some(json!("prod"))),
                AuditChange::new("x", None, Some(json!({}))),
            ]
        );
    }

    #[test]
    fn a_field_that_appears_or_disappears_has_one_side() {
        let got = diff(
            &json!({"a": {"g1": "Viewer"}}),
            &json!({"a": {"g2": "Viewer"}}),
        );
        assert_eq!(
            got,
            vec![
                AuditChange::new("a.g1", Some(json!("Viewer")), None),
                AuditChange::new("a.g2", None, Some(json!("Viewer"))),
            ]
        );
    }

    #[test]
    fn a_null_before_survives_the_round_trip_and_an_absent_one_stays_absent() {
        let e = AuditEntry::new("prod", "alice", AuditAction::UpdateEnvironment, Utc::now())
            .changes(vec![
                AuditChange::new("w", Some(Value::Null), Some(json!(60))),
                AuditChange::new("n", None, Some(json!("x"))),
            ]);
        let text = serde_json::to_value(&e).unwrap();
        assert_eq!(
            text["changes"][0],
            json!({"field": "w", "before": null, "after": 60})
        );
        assert_eq!(text["changes"][1], json!({"field": "n", "after": "x"}));
        assert_eq!(text["action"], "UpdateEnvironment");
        let back: AuditEntry = serde_json::from_value(text).unwrap();
        assert_eq!(back, e);
        let item: std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue> =
            serde_dynamo::to_item(&e).unwrap();
        let back: AuditEntry = serde_dynamo::from_item(item).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn audit_ids_increase_strictly_and_are_ulids() {
        let ids: Vec<String> = (0..100).map(|_| new_audit_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| crate::domain::valid_deployment_id(id)));
    }
}
