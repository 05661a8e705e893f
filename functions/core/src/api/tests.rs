//! Handler tests: every route and its errors, with an in-memory store, a
//! recording execution starter and mocked EC2/Auto Scaling.

use super::*;
use crate::aws::{AutoScaling, Ec2, Mailer, Scheduler};
use crate::domain::{Environment, EnvironmentDefaults};
use crate::steps::testkit::{aws, environment, TestClock, ENV, GROUP, LT, SERVER};
use crate::store::MemoryStore;
use crate::store::Store;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::describe_instances::{DescribeInstancesError, DescribeInstancesOutput};
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::Value;
use std::sync::Mutex;

/// Every response in these tests must match infra/openapi.yaml.
async fn call(api: &Api, r: ApiRequest) -> ApiResponse {
    let template = route_of(&r.method, &r.path).map(|(_, t, _)| t);
    let what = format!("{} {}", r.method, r.path);
    let res = api.handle(r).await;
    let ct = res.header("content-type").unwrap_or_default().to_string();
    spec::Spec::load()
        .check_response(
            &what[..what.find(' ').unwrap()],
            template,
            res.status,
            &ct,
            &res.json_body(),
        )
        .unwrap_or_else(|e| {
            panic!(
                "{what} -> {}: response does not match the spec: {e}",
                res.status
            )
        });
    res
}

#[test]
fn router_and_spec_have_the_same_routes() {
    let spec = spec::Spec::load().routes();
    let router: std::collections::BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p, _)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(router, spec);
}

#[test]
fn the_schema_check_can_fail() {
    let spec = spec::Spec::load();
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400, "detail": "d"}),
            "$"
        )
        .is_ok());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": "400", "detail": "d"}),
            "$"
        )
        .is_err());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400}),
            "$"
        )
        .is_err());
    assert!(spec
        .check(
            &problem,
            &json!({"type": "about:blank", "title": "t", "status": 400, "detail": "d", "x": 1}),
            "$"
        )
        .is_err());
}

const ME: &str = "arn:aws:iam::123456789012:user/alice";

#[derive(Default)]
struct Recorder {
    started: Mutex<Vec<(String, Value)>>,
    fail: bool,
}

#[async_trait]
impl Executions for Recorder {
    async fn start(&self, name: &str, input: &str) -> std::result::Result<String, StepError> {
        if self.fail {
            return Err(StepError::AwsError("StartExecution: AccessDenied".into()));
        }
        self.started
            .lock()
            .unwrap()
            .push((name.into(), serde_json::from_str(input).unwrap()));
        Ok(format!("arn:aws:states:us-east-1:1:execution:sm:{name}"))
    }
}

struct World {
    store: Arc<MemoryStore>,
    recorder: Arc<Recorder>,
    api: Api,
    sched: SchedulerRules,
    mail: Rule,
}

/// The mocked EventBridge Scheduler calls (each counted).
struct SchedulerRules {
    create: Rule,
    update: Rule,
    delete: Rule,
}

fn scheduler_rules(fail_create: bool) -> SchedulerRules {
    use aws_sdk_scheduler::operation::create_schedule::{
        CreateScheduleError, CreateScheduleOutput,
    };
    use aws_sdk_scheduler::operation::delete_schedule::DeleteScheduleOutput;
    use aws_sdk_scheduler::operation::update_schedule::UpdateScheduleOutput;
    let create = if fail_create {
        mock!(aws_sdk_scheduler::Client::create_schedule).then_error(|| {
            CreateScheduleError::generic(
                aws_sdk_scheduler::error::ErrorMetadata::builder()
                    .code("AccessDeniedException")
                    .message("not allowed")
                    .build(),
            )
        })
    } else {
        mock!(aws_sdk_scheduler::Client::create_schedule).then_compute_output(|r| {
            CreateScheduleOutput::builder()
                .schedule_arn(format!(
                    "arn:aws:scheduler:us-east-1:1:schedule/autosky/{}",
                    r.name().unwrap_or("")
                ))
                .build()
                .unwrap()
        })
    };
    SchedulerRules {
        create,
        update: mock!(aws_sdk_scheduler::Client::update_schedule).then_output(|| {
            UpdateScheduleOutput::builder()
                .schedule_arn("arn:s")
                .build()
                .unwrap()
        }),
        delete: mock!(aws_sdk_scheduler::Client::delete_schedule)
            .then_output(|| DeleteScheduleOutput::builder().build()),
    }
}

fn ec2_rules(server_found: bool) -> Vec<Rule> {
    vec![
        if server_found {
            mock!(aws_sdk_ec2::Client::describe_instances).then_compute_output(|r| {
                let id = r
                    .instance_ids()
                    .first()
                    .map(String::as_str)
                    .unwrap_or(SERVER);
                DescribeInstancesOutput::builder()
                    .reservations(aws::instance(id, "running"))
                    .build()
            })
        } else {
            mock!(aws_sdk_ec2::Client::describe_instances).then_error(|| {
                DescribeInstancesError::generic(
                    ErrorMetadata::builder()
                        .code("InvalidInstanceID.NotFound")
                        .build(),
                )
            })
        },
        mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(|| {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::template(1, 1))
                .build()
        }),
    ]
}

fn world_with(server_found: bool, fail_start: bool) -> World {
    world_full(server_found, fail_start, false)
}

fn world_full(server_found: bool, fail_start: bool, fail_schedule: bool) -> World {
    let store = Arc::new(MemoryStore::new());
    let recorder = Arc::new(Recorder {
        fail: fail_start,
        ..Default::default()
    });
    let ec2 = ec2_rules(server_found);
    let groups =
        mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(|| {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(aws::group(2, "1", &[], API_LT))
                .build()
        });
    let sched = scheduler_rules(fail_schedule);
    let mail = mock!(aws_sdk_ses::Client::send_email).then_output(|| {
        aws_sdk_ses::operation::send_email::SendEmailOutput::builder()
            .message_id("m-1")
            .build()
            .unwrap()
    });
    let api = Api {
        store: store.clone(),
        executions: recorder.clone(),
        ec2: Ec2::new(mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &ec2)),
        asg: AutoScaling::new(mock_client!(
            aws_sdk_autoscaling,
            RuleMode::MatchAny,
            [&groups]
        )),
        scheduler: Scheduler::new(mock_client!(
            aws_sdk_scheduler,
            RuleMode::MatchAny,
            [&sched.create, &sched.update, &sched.delete]
        )),
        mailer: Mailer::new(mock_client!(aws_sdk_ses, RuleMode::MatchAny, [&mail])),
        clock: Arc::new(TestClock(Mutex::new(NOW.parse().unwrap()))),
        settings: ApiSettings {
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:sm".into(),
            region: "us-east-1".into(),
            poll_seconds: Some(1),
            sender_email: Some("autosky@example.com".into()),
            schedules: ScheduleSettings {
                group: "autosky".into(),
                role_arn: "arn:aws:iam::1:role/scheduler".into(),
                dead_letter_arn: Some("arn:aws:sqs:us-east-1:1:dlq".into()),
                min_lead_seconds: 60,
            },
        },
    };
    World {
        store,
        recorder,
        api,
        sched,
        mail,
    }
}

/// The API's clock in these tests.
const NOW: &str = "2026-11-27T12:00:00Z";

async fn world() -> World {
    let w = world_with(true, false);
    w.store.put_environment(&environment()).await.unwrap();
    w
}

fn req(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        query: vec![],
        body: body.as_bytes().to_vec(),
        identity: Some(ME.into()),
    }
}

fn with_query(mut r: ApiRequest, q: &[(&str, &str)]) -> ApiRequest {
    r.query = q
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    r
}

fn env_body(lt: &str) -> String {
    json!({"preparationServerId": SERVER_ID, "autoScalingGroups": [GROUP], "launchTemplateId": lt})
        .to_string()
}

// The API insists on AWS id shapes (the testkit's ids are short placeholders).
const SERVER_ID: &str = "i-0123456789abcdef0";
const API_LT: &str = "lt-0abc12345";

#[tokio::test]
async fn start_takes_the_lock_records_the_owner_and_starts_the_execution() {
    let w = world().await;
    let r = w
        .api
        .handle(req(
            "POST",
            "/environments/prod-web/deployments",
            r#"{"lockInstances":true,"notificationEmails":["dev@example.com"]}"#,
        ))
        .await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json_body();
    let id = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(
        r.header("location"),
        Some(format!("/environments/prod-web/deployments/{id}").as_str())
    );
    assert_eq!(body["owner"], ME);
    assert_eq!(body["status"], "Running");
    assert!(body["executionArn"].as_str().unwrap().ends_with(&id));
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), Some(id.clone()));
    let started = w.recorder.started.lock().unwrap().clone();
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].0, id);
    assert_eq!(started[0].1["owner"], ME);
    assert_eq!(started[0].1["options"]["lockInstances"], true);
    assert_eq!(
        started[0].1["options"]["notificationEmails"],
        json!(["dev@example.com"])
    );
    assert_eq!(started[0].1["pollSeconds"], 1);
}

#[tokio::test]
async fn a_busy_environment_answers_409_with_the_running_deployment() {
    let w = world().await;
    w.store
        .acquire_lock(ENV, "01JOTHER000000000000000000", chrono::Utc::now())
        .await
        .unwrap();
    let r = call(
        &w.api,
        req("POST", "/environments/prod-web/deployments", "{}"),
    )
    .await;
    assert_eq!(r.status, 409);
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    assert_eq!(
        r.json_body()["runningDeploymentId"],
        "01JOTHER000000000000000000"
    );
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert!(w
        .store
        .history(ENV, 10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn a_failed_start_frees_the_environment_and_says_why() {
    let w = world_with(true, true);
    w.store.put_environment(&environment()).await.unwrap();
    let r = call(
        &w.api,
        req("POST", "/environments/prod-web/deployments", ""),
    )
    .await;
    assert_eq!(r.status, 502);
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    let page = w.store.history(ENV, 10, None, None).await.unwrap();
    assert_eq!(page.items[0].status, DeploymentStatus::Failed);
    assert_eq!(page.items[0].error.as_ref().unwrap().name, "StartFailed");
}

#[tokio::test]
async fn no_identity_is_401_and_nothing_happens() {
    let w = world().await;
    let mut r = req("POST", "/environments/prod-web/deployments", "{}");
    r.identity = None;
    assert_eq!(call(&w.api, r).await.status, 401);
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
}

#[tokio::test]
async fn bad_inputs_get_the_right_4xx_and_change_nothing() {
    let w = world().await;
    let long_email = format!("{}@example.com", "a".repeat(65));
    let many: Vec<String> = (0..21).map(|i| format!("u{i}@example.com")).collect();
    let cases: Vec<(ApiRequest, u16)> = vec![
        (req("POST", "/environments/Prod/deployments", "{}"), 400),
        (req("POST", "/environments/prod_web/deployments", "{}"), 400),
        (
            req(
                "POST",
                &format!("/environments/{}/deployments", "a".repeat(65)),
                "{}",
            ),
            400,
        ),
        (req("POST", "/environments/prod-web/deployments", "{"), 400),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"owner":"mallory"}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"lockInstances":"yes"}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"notificationEmails":["x"]}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                r#"{"notificationEmails":["a@example.com\r\nBcc: b@example.com"]}"#,
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &json!({"notificationEmails": [long_email]}).to_string(),
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &json!({"notificationEmails": many}).to_string(),
            ),
            400,
        ),
        (
            req(
                "POST",
                "/environments/prod-web/deployments",
                &format!(r#"{{"x":"{}"}}"#, "a".repeat(17_000)),
            ),
            413,
        ),
        (req("POST", "/environments/nowhere/deployments", "{}"), 404),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "0")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "101")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "ten")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("nextToken", "forged")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("status", "Exploded")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("sort", "asc")],
            ),
            400,
        ),
        (
            with_query(
                req("GET", "/environments/prod-web/deployments", ""),
                &[("limit", "5"), ("limit", "6")],
            ),
            400,
        ),
        (
            req("GET", "/environments/prod-web/deployments/not-a-ulid", ""),
            400,
        ),
        (
            req(
                "GET",
                "/environments/prod-web/deployments/01JABCDEFGHJKMNPQRSTVWXYZ9",
                "",
            ),
            404,
        ),
        (req("GET", "/environments/nowhere", ""), 404),
        (req("DELETE", "/environments/prod-web", ""), 405),
        (req("GET", "/nothing/here", ""), 404),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"server-1","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345"}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":[],"launchTemplateId":"lt-0abc12345"}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345","defaults":{"retention":1}}"#,
            ),
            400,
        ),
        (
            req(
                "PUT",
                "/environments/new-env",
                r#"{"preparationServerId":"i-0123456789abcdef0","autoScalingGroups":["g"],"launchTemplateId":"lt-0abc12345","extra":1}"#,
            ),
            400,
        ),
    ];
    assert!(cases.len() >= 25);
    for (r, status) in cases {
        let what = format!("{} {} {:?}", r.method, r.path, r.query);
        let res = call(&w.api, r).await;
        assert_eq!(
            res.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&res.body)
        );
        assert_eq!(
            res.header("content-type"),
            Some("application/problem+json"),
            "{what}"
        );
        let p = res.json_body();
        assert_eq!(p["status"], status, "{what}");
        assert!(
            p["title"].is_string() && p["detail"].is_string() && p["type"].is_string(),
            "{what}"
        );
    }
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    assert!(w.store.environment("new-env").await.unwrap().is_none());
    assert!(w
        .store
        .history(ENV, 10, None, None)
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn put_environment_checks_resources_then_registers_and_lists() {
    let w = world().await;
    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body("lt-0fff00000")),
    )
    .await;
    assert_eq!(r.status, 422, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(
        r.json_body()["detail"],
        format!("Auto Scaling group {GROUP} uses launch template {API_LT}, not lt-0fff00000")
    );
    assert!(w.store.environment("new-env").await.unwrap().is_none());

    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["defaults"]["retention"], 5);
    let again = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(again.status, 200);
    assert_eq!(
        w.store
            .environment("new-env")
            .await
            .unwrap()
            .unwrap()
            .launch_template_id,
        API_LT
    );
}

#[tokio::test]
async fn put_environment_names_a_missing_server() {
    let w = world_with(false, false);
    let r = call(
        &w.api,
        req("PUT", "/environments/new-env", &env_body(API_LT)),
    )
    .await;
    assert_eq!(r.status, 422);
    assert_eq!(
        r.json_body()["detail"],
        format!("preparation server {SERVER_ID} not found")
    );
}

#[tokio::test]
async fn history_pages_newest_first_without_gap_or_duplicate() {
    let w = world().await;
    let mut ids = Vec::new();
    for _ in 0..7 {
        let d = Deployment::new_running(
            crate::domain::new_deployment_id(),
            ENV.into(),
            ME.into(),
            Default::default(),
            chrono::Utc::now(),
        );
        ids.push(d.deployment_id.clone());
        w.store.create_deployment(&d).await.unwrap();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    ids.reverse();
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("limit", "3")];
        if let Some(t) = &token {
            q.push(("nextToken", t));
        }
        let r = call(
            &w.api,
            with_query(req("GET", "/environments/prod-web/deployments", ""), &q),
        )
        .await;
        assert_eq!(r.status, 200);
        let b = r.json_body();
        for item in b["items"].as_array().unwrap() {
            assert!(
                item["steps"][0].get("actions").is_none(),
                "history items carry no actions"
            );
            seen.push(item["deploymentId"].as_str().unwrap().to_string());
        }
        match b["nextToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

#[tokio::test]
async fn details_show_actions_owner_and_console_link() {
    let w = world().await;
    let mut d = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        ME.into(),
        Default::default(),
        chrono::Utc::now(),
    );
    d.execution_arn = Some("arn:aws:states:us-east-1:1:execution:sm:x".into());
    d.steps[0].actions.push(crate::domain::Action {
        at: chrono::Utc::now(),
        message: "Environment locked".into(),
    });
    d.runtime.main_version = Some(7);
    w.store.create_deployment(&d).await.unwrap();
    let r = call(
        &w.api,
        req(
            "GET",
            &format!("/environments/prod-web/deployments/{}", d.deployment_id),
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 200);
    let b = r.json_body();
    assert_eq!(b["owner"], ME);
    assert_eq!(b["modelVersion"], 7);
    assert_eq!(b["steps"][0]["name"], "Initial validation");
    assert_eq!(b["steps"][0]["actions"][0]["message"], "Environment locked");
    assert!(b["consoleUrl"]
        .as_str()
        .unwrap()
        .contains("states/home?region=us-east-1"));
    assert!(b.get("runtime").is_none(), "internal memory stays internal");
}

#[tokio::test]
async fn environments_are_listed_and_read() {
    let w = world().await;
    let other = Environment {
        environment_id: "other".into(),
        defaults: EnvironmentDefaults::default(),
        ..environment()
    };
    w.store.put_environment(&other).await.unwrap();
    let r = call(&w.api, req("GET", "/environments", "")).await;
    assert_eq!(r.status, 200);
    let ids: Vec<_> = r.json_body()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["environmentId"].clone())
        .collect();
    assert_eq!(ids, vec![json!("other"), json!("prod-web")]);
    let r = call(&w.api, req("GET", "/environments/prod-web", "")).await;
    assert_eq!(r.json_body()["launchTemplateId"], LT);
}

#[tokio::test]
async fn cancel_flags_a_running_deployment_and_refuses_an_ended_one() {
    let w = world().await;
    let d = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        ME.into(),
        Default::default(),
        chrono::Utc::now(),
    );
    w.store.create_deployment(&d).await.unwrap();
    let path = format!(
        "/environments/prod-web/deployments/{}/cancel",
        d.deployment_id
    );
    let r = call(&w.api, req("POST", &path, "")).await;
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json_body()["cancelledBy"], ME);
    let stored = w
        .store
        .deployment(ENV, &d.deployment_id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.cancel_requested);

    let outcome = crate::store::Outcome {
        status: DeploymentStatus::Succeeded,
        ended_at: chrono::Utc::now(),
        duration_ms: 1,
        generated_version: None,
        error: None,
    };
    let done = Deployment::new_running(
        crate::domain::new_deployment_id(),
        ENV.into(),
        ME.into(),
        Default::default(),
        chrono::Utc::now(),
    );
    w.store.create_deployment(&done).await.unwrap();
    w.store
        .finish(ENV, &done.deployment_id, &outcome)
        .await
        .unwrap();
    let r = call(
        &w.api,
        req(
            "POST",
            &format!(
                "/environments/prod-web/deployments/{}/cancel",
                done.deployment_id
            ),
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 409);
    assert!(
        !w.store
            .deployment(ENV, &done.deployment_id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/deployments/01JABCDEFGHJKMNPQRSTVWXYZ9/cancel",
            "",
        ),
    )
    .await;
    assert_eq!(r.status, 404);
}

// ---- scheduled deployments ----

fn sched_body(at: &str, tz: Option<&str>) -> String {
    let mut b = json!({"at": at, "notificationEmails": ["dev@example.com"], "lockInstances": true});
    if let Some(tz) = tz {
        b["timezone"] = json!(tz);
    }
    b.to_string()
}

#[tokio::test]
async fn scheduling_records_a_scheduled_deployment_creates_the_schedule_and_confirms_by_mail() {
    let w = world().await;
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-27T15:30", Some("Europe/Paris")),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let body = r.json_body();
    let id = body["deploymentId"].as_str().unwrap().to_string();
    assert_eq!(body["status"], "Scheduled");
    assert_eq!(body["scheduledFor"], "2026-11-27T14:30:00Z");
    assert_eq!(body["schedule"]["timezone"], "Europe/Paris");
    assert_eq!(body["owner"], ME);
    assert_eq!(w.sched.create.num_calls(), 1);
    assert_eq!(w.mail.num_calls(), 1);
    // Nothing started, nothing locked; history shows it.
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    let h = call(&w.api, req("GET", "/environments/prod-web/deployments", "")).await;
    assert_eq!(h.json_body()["items"][0]["deploymentId"], id.as_str());
    assert_eq!(
        h.json_body()["items"][0]["scheduledFor"],
        "2026-11-27T14:30:00Z"
    );
    let d = w.store.deployment(ENV, &id).await.unwrap().unwrap();
    assert!(
        d.step(StepName::InitialValidation).actions[0]
            .message
            .starts_with("Schedule confirmation e-mail sent to"),
        "{:?}",
        d.step(StepName::InitialValidation).actions
    );
    assert_eq!(w.store.schedules(ENV).await.unwrap().entries.len(), 1);
}

#[tokio::test]
async fn every_bad_schedule_is_refused_and_creates_nothing() {
    let w = world().await;
    let ok = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(ok.status, 201);
    let first = ok.json_body()["deploymentId"].as_str().unwrap().to_string();
    let cases: Vec<(String, u16, &str)> = vec![
        (sched_body("2026-11-27T12:00:30", None), 400, "at"), // 30 s ahead < 60 s lead
        (sched_body("2026-11-27T11:00:00", None), 400, "at"), // past
        (sched_body("2027-11-28T12:00:00", None), 400, "at"), // > 1 year
        (
            sched_body("2026-11-29T10:00:00", Some("Mars/Base")),
            400,
            "timezone",
        ),
        (sched_body("2026-11-29T10:00:00+01:00", None), 400, "at"),
        (
            sched_body("2027-03-28T02:30:00", Some("Europe/Paris")),
            400,
            "at",
        ), // does not exist
        (json!({"timezone": "UTC"}).to_string(), 400, "at"),
        (
            json!({"at": "2026-11-29T10:00:00", "notificationEmails": ["x@y"]}).to_string(),
            400,
            "notificationEmails",
        ),
        (
            json!({"at": "2026-11-29T10:00:00", "when": "now"}).to_string(),
            400,
            "",
        ),
        (sched_body("2026-11-28T10:59:59", None), 409, "at"), // same hour as the first
        (
            sched_body("2026-11-28T11:30:00", Some("Europe/Paris")),
            409,
            "at",
        ), // 10:30 UTC
    ];
    for (body, status, field) in &cases {
        let r = call(
            &w.api,
            req("POST", "/environments/prod-web/schedules", body),
        )
        .await;
        assert_eq!(
            r.status,
            *status,
            "{body}: {}",
            String::from_utf8_lossy(&r.body)
        );
        if !field.is_empty() {
            assert_eq!(r.json_body()["field"], *field, "{body}");
        }
        if r.status == 409 {
            assert_eq!(r.json_body()["conflictingDeploymentId"], first.as_str());
        }
    }
    let unknown = call(
        &w.api,
        req(
            "POST",
            "/environments/nowhere/schedules",
            &sched_body("2026-11-29T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_eq!(w.sched.create.num_calls(), 1);
    assert_eq!(
        w.store
            .history(ENV, 100, None, None)
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    // An hour later is fine.
    let later = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T11:00:00", None),
        ),
    )
    .await;
    assert_eq!(later.status, 201);
}

#[tokio::test]
async fn cancel_and_move_a_schedule_only_while_it_is_scheduled() {
    let w = world().await;
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", Some("Europe/Paris")),
        ),
    )
    .await;
    let id = r.json_body()["deploymentId"].as_str().unwrap().to_string();
    let path = format!("/environments/prod-web/schedules/{id}");

    // Move: the zone is kept unless given.
    let m = call(
        &w.api,
        req("PATCH", &path, r#"{"at":"2026-11-28T18:00:00"}"#),
    )
    .await;
    assert_eq!(m.status, 200, "{}", String::from_utf8_lossy(&m.body));
    assert_eq!(m.json_body()["scheduledFor"], "2026-11-28T17:00:00Z");
    assert_eq!(w.sched.update.num_calls(), 1);
    let bad = call(
        &w.api,
        req("PATCH", &path, r#"{"at":"2026-11-27T11:00:00"}"#),
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        w.store
            .deployment(ENV, &id)
            .await
            .unwrap()
            .unwrap()
            .scheduled_for,
        Some("2026-11-28T17:00:00Z".parse().unwrap())
    );

    let d = call(&w.api, req("DELETE", &path, "")).await;
    assert_eq!(d.status, 200, "{}", String::from_utf8_lossy(&d.body));
    assert_eq!(d.json_body()["status"], "Cancelled");
    assert_eq!(d.json_body()["cancelledBy"], ME);
    assert_eq!(w.sched.delete.num_calls(), 1);
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    // Confirmation + cancellation e-mails.
    assert_eq!(w.mail.num_calls(), 2);

    for (method, body) in [("DELETE", ""), ("PATCH", r#"{"at":"2026-11-29T10:00:00"}"#)] {
        let again = call(&w.api, req(method, &path, body)).await;
        assert_eq!(again.status, 409, "{method}");
    }
    assert_eq!(w.sched.delete.num_calls(), 1);
    assert_eq!(w.sched.update.num_calls(), 1);

    // The deployments cancel route cancels a scheduled deployment too.
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-29T10:00:00", None),
        ),
    )
    .await;
    let id2 = r.json_body()["deploymentId"].as_str().unwrap().to_string();
    let c = call(
        &w.api,
        req(
            "POST",
            &format!("/environments/prod-web/deployments/{id2}/cancel"),
            "",
        ),
    )
    .await;
    assert_eq!(c.status, 200);
    assert_eq!(c.json_body()["status"], "Cancelled");
}

#[tokio::test]
async fn a_schedule_that_cannot_be_created_leaves_a_failed_record_not_a_scheduled_one() {
    let w = world_full(true, false, true);
    w.store.put_environment(&environment()).await.unwrap();
    let r = call(
        &w.api,
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-28T10:00:00", None),
        ),
    )
    .await;
    assert_eq!(r.status, 502);
    let items = w.store.history(ENV, 10, None, None).await.unwrap().items;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0].status, DeploymentStatus::Failed);
    assert_eq!(items[0].error.as_ref().unwrap().name, "ScheduleFailed");
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    assert_eq!(w.mail.num_calls(), 0);
}

// ---- one Lambda function per route group ----

#[tokio::test]
async fn each_function_serves_its_own_routes_and_refuses_the_others_unchanged() {
    let w = world().await;
    let schedule = || {
        req(
            "POST",
            "/environments/prod-web/schedules",
            &sched_body("2026-11-27T15:30", Some("Europe/Paris")),
        )
    };
    let history = || req("GET", "/environments/prod-web/deployments", "");
    // The api function: a scheduling route reached it by a wrong integration.
    let r = handler::api(&w.api, schedule()).await;
    assert_eq!(r.status, 500);
    let detail = r.json_body()["detail"].as_str().unwrap().to_string();
    assert!(
        detail.contains("POST /environments/{env}/schedules is served by the schedules function, and reached the api function"),
        "{detail}"
    );
    assert_eq!(w.sched.create.num_calls(), 0);
    assert_eq!(w.mail.num_calls(), 0);
    assert!(w.store.schedules(ENV).await.unwrap().entries.is_empty());
    assert_eq!(handler::api(&w.api, history()).await.status, 200);
    let page = handler::api(&w.api, req("GET", "/", "")).await;
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    // The schedules function: the other routes and the page are not its own.
    let r = handler::schedules(&w.api, history()).await;
    assert_eq!(r.status, 500);
    assert!(r.json_body()["detail"]
        .as_str()
        .unwrap()
        .contains("served by the api function, and reached the schedules function"));
    let r = handler::schedules(
        &w.api,
        req("POST", "/environments/prod-web/deployments", "{}"),
    )
    .await;
    assert_eq!(r.status, 500);
    assert!(w.recorder.started.lock().unwrap().is_empty());
    assert_eq!(w.store.lock_holder(ENV).await.unwrap(), None);
    assert_eq!(
        handler::schedules(&w.api, req("GET", "/", "")).await.status,
        404
    );
    let r = handler::schedules(&w.api, schedule()).await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(w.sched.create.num_calls(), 1);
    // Shared checks come first in both: no identity is 401 before any routing.
    let mut anonymous = history();
    anonymous.identity = None;
    assert_eq!(handler::schedules(&w.api, anonymous).await.status, 401);
    // Every route reaching the other function is refused there, before any work.
    for (method, template, function) in ROUTES {
        let path = template
            .replace("{env}", "prod-web")
            .replace("{id}", "01JDEPLOYMENT0000000000000");
        let r = match function {
            Function::Api => handler::schedules(&w.api, req(method, &path, "{}")).await,
            Function::Schedules => handler::api(&w.api, req(method, &path, "{}")).await,
        };
        assert_eq!(r.status, 500, "{method} {path}");
        assert!(
            r.json_body()["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("served by the {} function", function.binary())),
            "{method} {path}"
        );
    }
    assert_eq!(w.sched.create.num_calls(), 1);
    assert!(w.recorder.started.lock().unwrap().is_empty());
}
