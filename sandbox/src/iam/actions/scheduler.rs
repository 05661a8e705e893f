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
mod tests {
    use super::*;
    use std::collections::HashMap;

    const ROLE: &str = "arn:aws:iam::000000000000:role/autosky-SchedulerRole";

    fn map(method: &str, path: &str, query: &str, body: &str) -> Result<Vec<Check>, MapError> {
        let form = HashMap::new();
        let action = rest_action("scheduler", method, path).expect("a Scheduler route");
        checks(&Call {
            service: "scheduler",
            action: &action,
            method,
            path,
            query,
            form: &form,
            body: body.as_bytes(),
        })
    }

    /// The body the SDK sends for the product's one-time schedule.
    fn definition(group: Option<&str>) -> String {
        let group = group
            .map(|g| format!(r#""GroupName":"{g}","#))
            .unwrap_or_default();
        format!(
            r#"{{"ActionAfterCompletion":"DELETE","ClientToken":"01JDEPLOY","Description":"d","FlexibleTimeWindow":{{"Mode":"OFF"}},{group}"ScheduleExpression":"at(2026-12-01T14:30:00)","ScheduleExpressionTimezone":"Europe/Paris","Target":{{"Arn":"arn:aws:states:us-east-1:000000000000:stateMachine:sm","DeadLetterConfig":{{"Arn":"arn:aws:sqs:us-east-1:000000000000:dlq"}},"Input":"{{}}","RetryPolicy":{{"MaximumEventAgeInSeconds":1800,"MaximumRetryAttempts":10}},"RoleArn":"{ROLE}"}}}}"#
        )
    }

    fn schedule(action: &str, resource: &str) -> Check {
        Check {
            action: action.into(),
            resource: resource.into(),
            context: vec![],
            on_behalf_of: None,
        }
    }

    fn passed(action: &str) -> Check {
        Check {
            action: "iam:PassRole".into(),
            resource: ROLE.into(),
            context: vec![(
                "iam:PassedToService".into(),
                ContextValue::String("scheduler.amazonaws.com".into()),
            )],
            on_behalf_of: Some(format!("scheduler:{action} with Target.RoleArn {ROLE}")),
        }
    }

    #[test]
    fn the_routes_name_the_actions() {
        let cases = [
            ("POST", "/schedules/s1", Some("CreateSchedule")),
            ("PUT", "/schedules/s1", Some("UpdateSchedule")),
            ("DELETE", "/schedules/s1", Some("DeleteSchedule")),
            ("GET", "/schedules/s1", Some("GetSchedule")),
            ("GET", "/schedules", Some("ListSchedules")),
            ("POST", "/schedule-groups/g", Some("CreateScheduleGroup")),
            (
                "GET",
                "/tags/arn%3Aaws%3Ascheduler",
                Some("ListTagsForResource"),
            ),
            ("PATCH", "/schedules/s1", None),
            ("POST", "/schedules", None),
            ("GET", "/schedules/s1/x", None),
            ("GET", "/", None),
        ];
        for (method, path, want) in cases {
            assert_eq!(
                rest_action("scheduler", method, path).as_deref(),
                want,
                "{method} {path}"
            );
        }
        assert_eq!(rest_action("states", "GET", "/schedules"), None);
    }

    #[test]
    fn create_schedule_is_authorized_on_the_schedule_in_its_group_and_passes_the_role() {
        let got = map(
            "POST",
            "/schedules/01JDEPLOY",
            "",
            &definition(Some("autosky")),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                schedule(
                    "scheduler:CreateSchedule",
                    "arn:aws:scheduler:us-east-1:000000000000:schedule/autosky/01JDEPLOY"
                ),
                passed("CreateSchedule"),
            ]
        );
    }

    #[test]
    fn update_schedule_is_authorized_on_the_schedule_and_passes_the_role() {
        let got = map(
            "PUT",
            "/schedules/01JDEPLOY",
            "",
            &definition(Some("autosky")),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                schedule(
                    "scheduler:UpdateSchedule",
                    "arn:aws:scheduler:us-east-1:000000000000:schedule/autosky/01JDEPLOY"
                ),
                passed("UpdateSchedule"),
            ]
        );
    }

    #[test]
    fn a_schedule_without_a_group_is_in_the_default_group() {
        let got = map("POST", "/schedules/01JDEPLOY", "", &definition(None)).unwrap();
        assert_eq!(
            got[0].resource,
            "arn:aws:scheduler:us-east-1:000000000000:schedule/default/01JDEPLOY"
        );
    }

    #[test]
    fn a_schedule_without_an_execution_role_is_invalid() {
        let body = r#"{"ScheduleExpression":"at(2026-12-01T14:30:00)","Target":{"Arn":"a"}}"#;
        assert!(matches!(
            map("POST", "/schedules/s", "", body),
            Err(MapError::Invalid(_))
        ));
    }

    #[test]
    fn delete_schedule_is_authorized_on_the_schedule_named_by_path_and_query() {
        let got = map(
            "DELETE",
            "/schedules/01J%2Dx",
            "groupName=autosky%2Dprod&clientToken=delete-01J-x",
            "",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![schedule(
                "scheduler:DeleteSchedule",
                "arn:aws:scheduler:us-east-1:000000000000:schedule/autosky-prod/01J-x"
            )]
        );
    }

    #[test]
    fn get_schedule_is_authorized_on_the_schedule() {
        let got = map("GET", "/schedules/s1", "", "").unwrap();
        assert_eq!(
            got,
            vec![schedule(
                "scheduler:GetSchedule",
                "arn:aws:scheduler:us-east-1:000000000000:schedule/default/s1"
            )]
        );
    }

    #[test]
    fn list_schedules_is_authorized_on_all_resources() {
        let got = map("GET", "/schedules", "ScheduleGroup=autosky", "").unwrap();
        assert_eq!(got, vec![schedule("scheduler:ListSchedules", "*")]);
    }

    #[test]
    fn actions_without_an_entry_are_refused() {
        assert_eq!(
            map("POST", "/schedule-groups/g", "", "{}"),
            Err(MapError::NoEntry("scheduler:CreateScheduleGroup".into()))
        );
    }
}
