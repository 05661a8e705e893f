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
