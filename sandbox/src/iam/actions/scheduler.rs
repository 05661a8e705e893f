//! EventBridge Scheduler's map entries (REST-JSON: the action from the
//! method and route, the schedule's name from the path). A schedule is
//! authorized on its ARN in its group (`default` when none is named);
//! creating or updating one also passes its target's execution role to
//! Scheduler, which AWS authorizes as iam:PassRole on that role.

use super::{Call, MapError};
use crate::iam::{Check, ACCOUNT, REGION};
use iam_rs::ContextValue;
use serde_json::Value;

/// The service a schedule's execution role is passed to.
const SCHEDULER_PRINCIPAL: &str = "scheduler.amazonaws.com";

/// The action of a Scheduler request from its method and path (the API's
/// routes); None for other services and unknown routes.
pub fn rest_action(service: &str, method: &str, path: &str) -> Option<String> {
    if service != "scheduler" {
        return None;
    }
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let action = match (method, segments.as_slice()) {
        ("GET", ["schedules"]) => "ListSchedules",
        ("POST", ["schedules", name]) if !name.is_empty() => "CreateSchedule",
        ("PUT", ["schedules", name]) if !name.is_empty() => "UpdateSchedule",
        ("DELETE", ["schedules", name]) if !name.is_empty() => "DeleteSchedule",
        ("GET", ["schedules", name]) if !name.is_empty() => "GetSchedule",
        ("GET", ["schedule-groups"]) => "ListScheduleGroups",
        ("POST", ["schedule-groups", name]) if !name.is_empty() => "CreateScheduleGroup",
        ("DELETE", ["schedule-groups", name]) if !name.is_empty() => "DeleteScheduleGroup",
        ("GET", ["schedule-groups", name]) if !name.is_empty() => "GetScheduleGroup",
        ("GET", ["tags", arn]) if !arn.is_empty() => "ListTagsForResource",
        ("POST", ["tags", arn]) if !arn.is_empty() => "TagResource",
        ("DELETE", ["tags", arn]) if !arn.is_empty() => "UntagResource",
        _ => return None,
    };
    Some(action.to_string())
}

pub fn checks(call: &Call<'_>) -> Result<Vec<Check>, MapError> {
    match call.action {
        "CreateSchedule" | "UpdateSchedule" => {
            let body: Value = serde_json::from_slice(call.body)
                .map_err(|e| MapError::Invalid(format!("scheduler:{} body: {e}", call.action)))?;
            let group = body.get("GroupName").and_then(Value::as_str);
            let role = body
                .pointer("/Target/RoleArn")
                .and_then(Value::as_str)
                .ok_or_else(|| MapError::Invalid("schedule without Target.RoleArn".into()))?;
            Ok(vec![
                check(call.action, schedule_arn(group, &name(call)?)),
                pass_role(call.action, role),
            ])
        }
        "DeleteSchedule" | "GetSchedule" => {
            let group = form_urlencoded::parse(call.query.as_bytes())
                .find(|(k, _)| k == "groupName")
                .map(|(_, v)| v.into_owned());
            Ok(vec![check(
                call.action,
                schedule_arn(group.as_deref(), &name(call)?),
            )])
        }
        // The reference names no resource type for ListSchedules.
        "ListSchedules" => Ok(vec![check("ListSchedules", "*".into())]),
        other => Err(MapError::NoEntry(format!("scheduler:{other}"))),
    }
}

fn check(action: &str, resource: String) -> Check {
    Check {
        action: format!("scheduler:{action}"),
        resource,
        context: Vec::new(),
        on_behalf_of: None,
    }
}

/// The execution role the schedule's target runs with, passed to Scheduler.
fn pass_role(action: &str, role: &str) -> Check {
    Check {
        action: "iam:PassRole".into(),
        resource: role.to_string(),
        context: vec![(
            "iam:PassedToService".to_string(),
            ContextValue::String(SCHEDULER_PRINCIPAL.into()),
        )],
        on_behalf_of: Some(format!("scheduler:{action} with Target.RoleArn {role}")),
    }
}

fn schedule_arn(group: Option<&str>, name: &str) -> String {
    let group = group.filter(|g| !g.is_empty()).unwrap_or("default");
    format!("arn:aws:scheduler:{REGION}:{ACCOUNT}:schedule/{group}/{name}")
}

/// The schedule's name: the path's `{Name}` label, percent-decoded (the SDK
/// percent-encodes labels).
fn name(call: &Call<'_>) -> Result<String, MapError> {
    let path = call.path.split('?').next().unwrap_or_default();
    let label = path
        .trim_start_matches('/')
        .strip_prefix("schedules/")
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| MapError::Invalid(format!("no schedule name in {}", call.path)))?;
    percent_encoding::percent_decode_str(label)
        .decode_utf8()
        .map(|n| n.into_owned())
        .map_err(|e| MapError::Invalid(format!("schedule name {label}: {e}")))
}

#[cfg(test)]
#[path = "tests/scheduler.rs"]
mod tests;
