//! Handler tests' shared fixture: an in-memory store, a recording execution
//! starter, mocked EC2/Auto Scaling/Scheduler/SES, and a `call` that checks
//! every response against infra/openapi.yaml. The tests are per resource.

mod access;
mod audit;
mod deployments;
mod environments;
mod rollback;
mod routing;
mod schedules;
mod spec;
mod spec_rules;

use super::*;
use crate::aws::{AutoScaling, Ec2, Mailer};
use crate::deps::{Deps, Settings};
use crate::domain::{Deployment, DeploymentStatus, Environment, EnvironmentDefaults, StepName};
use crate::error::StepError;
use crate::steps::testkit::{aws, environment, TestClock, ENV, GROUP, LT, SERVER};
use crate::store::MemoryStore;
use crate::store::Store;
use async_trait::async_trait;
use aws_sdk_autoscaling::operation::describe_auto_scaling_groups::DescribeAutoScalingGroupsOutput;
use aws_sdk_ec2::error::ErrorMetadata;
use aws_sdk_ec2::operation::describe_instances::{DescribeInstancesError, DescribeInstancesOutput};
use aws_sdk_ec2::operation::describe_launch_templates::DescribeLaunchTemplatesOutput;
use aws_smithy_mocks::{mock, mock_client, Rule, RuleMode};
use serde_json::{json, Value};
use std::sync::Mutex;

/// Every response in these tests must match infra/openapi.yaml.
async fn call(api: &Api, r: ApiRequest) -> ApiResponse {
    let template = route_of(&r.method, &r.path).map(Route::template);
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

const ME: &str = "arn:aws:iam::123456789012:user/alice";
/// The stack's administrators' group in these tests.
const ADMINS: &str = "autosky-admins";

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
    /// The metric lines the API wrote.
    metrics: Arc<crate::metrics::Recorder>,
    /// The task tokens the API completed (cancel during a wait).
    tokens: Arc<crate::aws::stepfunctions::RecordedTokens>,
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

/// The `autosky:environment` tag value of each described resource (`None`:
/// untagged); all the test environment's by default.
#[derive(Clone)]
struct Tags {
    server: Option<&'static str>,
    template: Option<&'static str>,
    group: Option<&'static str>,
}

impl Default for Tags {
    fn default() -> Self {
        Self {
            server: Some(ENV),
            template: Some(ENV),
            group: Some(ENV),
        }
    }
}

fn ec2_rules(server_found: bool, tags: &Tags) -> Vec<Rule> {
    let (server_tag, template_tag) = (tags.server, tags.template);
    vec![
        if server_found {
            mock!(aws_sdk_ec2::Client::describe_instances).then_compute_output(move |r| {
                let id = r
                    .instance_ids()
                    .first()
                    .map(String::as_str)
                    .unwrap_or(SERVER);
                DescribeInstancesOutput::builder()
                    .reservations(aws::tagged_instance(id, "running", server_tag))
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
        mock!(aws_sdk_ec2::Client::describe_launch_templates).then_output(move || {
            DescribeLaunchTemplatesOutput::builder()
                .launch_templates(aws::tagged_template(1, 1, template_tag))
                .build()
        }),
    ]
}

fn world_with(server_found: bool, fail_start: bool) -> World {
    world_full(server_found, fail_start, false)
}

fn world_full(server_found: bool, fail_start: bool, fail_schedule: bool) -> World {
    world_tagged(server_found, fail_start, fail_schedule, Tags::default())
}

fn world_tagged(server_found: bool, fail_start: bool, fail_schedule: bool, tags: Tags) -> World {
    let store = Arc::new(MemoryStore::new());
    let recorder = Arc::new(Recorder {
        fail: fail_start,
        ..Default::default()
    });
    let ec2 = ec2_rules(server_found, &tags);
    let metrics = Arc::new(crate::metrics::Recorder::default());
    let tokens = Arc::new(crate::aws::stepfunctions::RecordedTokens::default());
    let group_tag = tags.group;
    let groups =
        mock!(aws_sdk_autoscaling::Client::describe_auto_scaling_groups).then_output(move || {
            DescribeAutoScalingGroupsOutput::builder()
                .auto_scaling_groups(aws::tagged_group(2, "1", &[], API_LT, group_tag))
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
        deps: Deps {
            store: store.clone(),
            ec2: Ec2::new(mock_client!(aws_sdk_ec2, RuleMode::MatchAny, &ec2)),
            asg: AutoScaling::new(mock_client!(
                aws_sdk_autoscaling,
                RuleMode::MatchAny,
                [&groups]
            )),
            mailer: Mailer::new(mock_client!(aws_sdk_ses, RuleMode::MatchAny, [&mail])),
            clock: Arc::new(TestClock(Mutex::new(NOW.parse().unwrap()))),
            settings: Settings {
                table_name: "deployments".into(),
                region: "us-east-1".into(),
                sender_email: Some("autosky@example.com".into()),
            },
            metrics: metrics.clone(),
            tokens: tokens.clone(),
            config: None,
        },
        scheduler: Scheduler::new(mock_client!(
            aws_sdk_scheduler,
            RuleMode::MatchAny,
            [&sched.create, &sched.update, &sched.delete]
        )),
        executions: recorder.clone(),
        settings: ApiSettings {
            state_machine_arn: "arn:aws:states:us-east-1:1:stateMachine:sm".into(),
            schedules: ScheduleSettings {
                group: "autosky".into(),
                role_arn: "arn:aws:iam::1:role/scheduler".into(),
                dead_letter_arn: Some("arn:aws:sqs:us-east-1:1:dlq".into()),
                min_lead_seconds: 60,
            },
            access: AccessSettings {
                admin_groups: vec![ADMINS.into()],
                ..AccessSettings::default()
            },
        },
    };
    World {
        store,
        recorder,
        metrics,
        tokens,
        api,
        sched,
        mail,
    }
}

/// Each metric document the API wrote: (Status or Step, whether it has a
/// DeploymentDuration).
fn metric_lines(w: &World) -> Vec<(String, bool)> {
    w.metrics
        .lines()
        .iter()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|m| {
            (
                m["Status"].as_str().unwrap_or("?").to_string(),
                m.get("DeploymentDuration").is_some(),
            )
        })
        .collect()
}

/// The API's clock in these tests.
const NOW: &str = "2026-11-27T12:00:00Z";

async fn world() -> World {
    let w = world_with(true, false);
    w.store.put_environment(&environment(), None).await.unwrap();
    w
}

fn req(method: &str, path: &str, body: &str) -> ApiRequest {
    ApiRequest {
        method: method.into(),
        path: path.into(),
        query: vec![],
        body: body.as_bytes().to_vec(),
        identity: Some(ME.into()),
        caller: crate::domain::Caller::RouteAuthorized,
        // As every client sends a body.
        content_type: (!body.is_empty()).then(|| "application/json".into()),
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

/// A schedule request body (`at` in `tz`, else the default zone).
fn sched_body(at: &str, tz: Option<&str>) -> String {
    let mut b = json!({"at": at, "notificationEmails": ["dev@example.com"], "lockInstances": true});
    if let Some(tz) = tz {
        b["timezone"] = json!(tz);
    }
    b.to_string()
}

/// A Succeeded deployment `id` of `ENV` that put `version` (image
/// `ami-<version>`) of the environment's template in service.
async fn succeeded(store: &MemoryStore, id: &str, version: i64) -> Deployment {
    let d = Deployment::new_running(
        id.into(),
        ENV.into(),
        ME.into(),
        Default::default(),
        NOW.parse().unwrap(),
    );
    store.create_deployment(&d, None).await.unwrap();
    let outcome = crate::store::Outcome {
        status: DeploymentStatus::Succeeded,
        ended_at: NOW.parse().unwrap(),
        duration_ms: 1,
        generated_version: Some(crate::domain::GeneratedVersion {
            launch_template_id: environment().launch_template_id,
            launch_template_version: version,
            image_id: format!("ami-{version}"),
        }),
        error: None,
    };
    store.finish(ENV, id, &outcome).await.unwrap();
    store.deployment(ENV, id).await.unwrap().unwrap()
}
