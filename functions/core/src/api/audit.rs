//! The audit trail in the API: the entries the state-changing routes hand
//! to the store with their change (who, when, which values changed), and
//! `GET /environments/{env}/audit`, paged like the history.

use super::problem::store_err;
use super::query::Query;
use super::{Api, ApiResponse, ApiResult, Problem};
use crate::domain::{diff, AuditAction, AuditChange, AuditEntry, Deployment, Environment};
use serde_json::{json, Value};

impl Api {
    /// A new entry by `caller`, at the API's clock.
    pub(super) fn audit_entry(&self, env: &str, caller: &str, action: AuditAction) -> AuditEntry {
        AuditEntry::new(env, caller, action, self.deps.clock.now())
    }

    /// Registration (`before` None: every field, after only) or update
    /// (the fields whose values differ, before and after).
    pub(super) fn environment_entry(
        &self,
        caller: &str,
        before: Option<&Environment>,
        after: &Environment,
    ) -> ApiResult<AuditEntry> {
        let action = match before {
            None => AuditAction::RegisterEnvironment,
            Some(_) => AuditAction::UpdateEnvironment,
        };
        let before = before.map(to_json).transpose()?.unwrap_or(Value::Null);
        Ok(self
            .audit_entry(&after.environment_id, caller, action)
            .changes(diff(&before, &to_json(after)?)))
    }

    /// A deployment's status set by `caller` (a start, a schedule's cancel).
    pub(super) fn status_entry(
        &self,
        dep: &Deployment,
        caller: &str,
        action: AuditAction,
        before: Option<&str>,
        after: &str,
    ) -> AuditEntry {
        self.audit_entry(&dep.environment_id, caller, action)
            .deployment(&dep.deployment_id)
            .changes(vec![AuditChange::new(
                "status",
                before.map(|b| json!(b)),
                Some(json!(after)),
            )])
    }

    /// `GET /environments/{env}/audit`: newest first, one page per call.
    pub(super) async fn audit_trail(&self, env: &str, q: &Query) -> ApiResult<ApiResponse> {
        let limit = q.limit()?;
        let token = q.get("nextToken");
        self.environment(env).await?;
        let page = self
            .deps
            .store
            .audit(env, limit, token)
            .await
            .map_err(store_err)?;
        Ok(ApiResponse::json(
            200,
            &json!({ "items": page.items, "nextToken": page.next_token }),
        ))
    }
}

/// When (and where) a scheduled deployment runs, as the audit compares it:
/// the instant and the operator's local time and zone.
pub(super) fn schedule_fields(dep: &Deployment) -> Value {
    json!({
        "scheduledFor": dep.scheduled_for,
        "schedule": {
            "at": dep.schedule.as_ref().map(|s| s.at.clone()),
            "timezone": dep.schedule.as_ref().map(|s| s.timezone.clone()),
        },
    })
}

fn to_json(e: &Environment) -> ApiResult<Value> {
    serde_json::to_value(e).map_err(|e| Problem::new(500, "Internal error", &e.to_string()))
}
