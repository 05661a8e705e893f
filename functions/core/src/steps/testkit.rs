//! Test support for step tests: deps with SDK clients answered by
//! aws-smithy-mocks rules, an in-memory store and a clock the test moves.

use crate::aws::{AutoScaling, Ec2, Mailer};
use crate::deps::{Clock, Deps, Settings};
use crate::domain::{Deployment, DeploymentOptions, Environment, EnvironmentDefaults, RollbackOf};
use crate::steps::StepInput;
use crate::store::{MemoryStore, Store};
use aws_smithy_mocks::{mock_client, Rule, RuleMode};
use chrono::{DateTime, Duration, TimeZone, Utc};
use std::sync::{Arc, Mutex};

pub const ENV: &str = "prod-web";
pub const DEP: &str = "01JABCDEFGHJKMNPQRSTVWXYZ0";
pub const SERVER: &str = "i-0prep";
pub const LT: &str = "lt-0abc";
pub const GROUP: &str = "web-asg";

pub struct TestClock(pub Mutex<DateTime<Utc>>);

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

pub struct Fixture {
    pub store: Arc<MemoryStore>,
    pub clock: Arc<TestClock>,
    /// The metric lines the steps wrote.
    pub metrics: Arc<crate::metrics::Recorder>,
    /// The task tokens the steps completed.
    pub tokens: Arc<crate::aws::stepfunctions::RecordedTokens>,
}

impl Fixture {
    /// A registered environment and a Running deployment record.
    pub async fn new(options: DeploymentOptions) -> Self {
        Self::rollback(options, None).await
    }

    /// As [`Fixture::new`], a rollback deployment when `rollback_of` says so.
    pub async fn rollback(options: DeploymentOptions, rollback_of: Option<RollbackOf>) -> Self {
        let f = Self::empty();
        f.store.put_environment(&environment(), None).await.unwrap();
        let mut d = Deployment::new_running(
            DEP.into(),
            ENV.into(),
            "alice@example.com".into(),
            options,
            f.now(),
        );
        d.rollback_of = rollback_of;
        f.store.create_deployment(&d, None).await.unwrap();
        f
    }

    pub fn empty() -> Self {
        Self {
            store: Arc::new(MemoryStore::new()),
            clock: Arc::new(TestClock(Mutex::new(
                Utc.with_ymd_and_hms(2026, 11, 27, 9, 0, 0).unwrap(),
            ))),
            metrics: Arc::default(),
            tokens: Arc::default(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&self, seconds: i64) {
        *self.clock.0.lock().unwrap() += Duration::seconds(seconds);
    }

    pub fn deps(&self, ec2: &[&Rule], asg: &[&Rule], ses: &[&Rule]) -> Deps {
        Deps {
            store: self.store.clone(),
            ec2: Ec2::new(mock_client!(aws_sdk_ec2, RuleMode::MatchAny, ec2)),
            asg: AutoScaling::new(mock_client!(aws_sdk_autoscaling, RuleMode::MatchAny, asg)),
            mailer: Mailer::new(mock_client!(aws_sdk_ses, RuleMode::MatchAny, ses)),
            clock: self.clock.clone(),
            settings: Settings {
                table_name: "t".into(),
                sender_email: Some("deployments@example.com".into()),
                region: "us-east-1".into(),
            },
            metrics: self.metrics.clone(),
            tokens: self.tokens.clone(),
            config: None,
        }
    }

    pub async fn deployment(&self) -> Deployment {
        self.store
            .deployment(ENV, DEP)
            .await
            .unwrap()
            .expect("deployment record")
    }

    pub async fn update(&self, f: impl FnOnce(&mut Deployment)) {
        let mut d = self.deployment().await;
        f(&mut d);
        self.store.save_runtime(ENV, DEP, &d.runtime).await.unwrap();
        for (i, s) in d.steps.iter().enumerate() {
            self.store.save_step(ENV, DEP, i, s).await.unwrap();
        }
    }
}

/// A rollback to version `version` of the test template, image `ami-<version>`,
/// made by deployment `01JR0000000000000000000000`.
pub fn rollback_of(version: i64) -> RollbackOf {
    RollbackOf {
        deployment_id: "01JR0000000000000000000000".into(),
        launch_template_id: LT.into(),
        launch_template_version: version,
        image_id: format!("ami-{version}"),
    }
}

pub fn environment() -> Environment {
    Environment {
        environment_id: ENV.into(),
        preparation_server_id: SERVER.into(),
        auto_scaling_groups: vec![GROUP.into()],
        launch_template_id: LT.into(),
        defaults: EnvironmentDefaults {
            notification_emails: vec!["ops@example.com".into()],
            ..Default::default()
        },
        access: None,
    }
}

pub fn input() -> StepInput {
    StepInput {
        deployment_id: DEP.into(),
        environment_id: ENV.into(),
        ..Default::default()
    }
}

pub fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Canned SDK values.
pub mod aws {
    use aws_sdk_autoscaling::types as asg;
    use aws_sdk_ec2::types as ec2;

    /// The `autosky:environment` tag (EC2's form) with `env`.
    fn environment_tag(env: &str) -> ec2::Tag {
        ec2::Tag::builder()
            .key(crate::aws::ec2::TAG_ENVIRONMENT)
            .value(env)
            .build()
    }

    /// The instance `id` in `state`, tagged with the test environment.
    pub fn instance(id: &str, state: &str) -> ec2::Reservation {
        tagged_instance(id, state, Some(super::ENV))
    }

    /// The instance `id` in `state`, tagged `autosky:environment=<env>`
    /// (untagged when `None`).
    pub fn tagged_instance(id: &str, state: &str, env: Option<&str>) -> ec2::Reservation {
        let mut b = ec2::Instance::builder()
            .instance_id(id)
            .state(
                ec2::InstanceState::builder()
                    .name(ec2::InstanceStateName::from(state))
                    .build(),
            )
            .private_ip_address("10.0.0.10")
            .platform_details("Linux/UNIX")
            .tags(ec2::Tag::builder().key("Name").value("prep").build());
        if let Some(env) = env {
            b = b.tags(environment_tag(env));
        }
        ec2::Reservation::builder().instances(b.build()).build()
    }

    pub fn image(id: &str, state: &str, reason: Option<&str>) -> ec2::Image {
        let mut b = ec2::Image::builder()
            .image_id(id)
            .name("img")
            .state(ec2::ImageState::from(state));
        if let Some(r) = reason {
            b = b.state_reason(ec2::StateReason::builder().message(r).build());
        }
        b.build()
    }

    /// The launch template `LT` ("web"), tagged with the test environment.
    pub fn template(default: i64, latest: i64) -> ec2::LaunchTemplate {
        tagged_template(default, latest, Some(super::ENV))
    }

    /// The launch template `LT` ("web"), tagged `autosky:environment=<env>`
    /// (untagged when `None`).
    pub fn tagged_template(default: i64, latest: i64, env: Option<&str>) -> ec2::LaunchTemplate {
        ec2::LaunchTemplate::builder()
            .launch_template_id(super::LT)
            .launch_template_name("web")
            .default_version_number(default)
            .latest_version_number(latest)
            .set_tags(env.map(|e| vec![environment_tag(e)]))
            .build()
    }

    pub fn version(n: i64, description: Option<&str>) -> ec2::LaunchTemplateVersion {
        let mut b = ec2::LaunchTemplateVersion::builder().version_number(n);
        if let Some(d) = description {
            b = b.version_description(d);
        }
        b.build()
    }

    /// The group `GROUP` tagged with the test environment.
    pub fn group(
        desired: i32,
        version: &str,
        suspended: &[&str],
        lt: &str,
    ) -> asg::AutoScalingGroup {
        tagged_group(desired, version, suspended, lt, Some(super::ENV))
    }

    /// The `autosky:environment` tag (Auto Scaling's form) of group `GROUP`.
    pub fn group_tag(env: &str) -> asg::TagDescription {
        asg::TagDescription::builder()
            .resource_id(super::GROUP)
            .resource_type("auto-scaling-group")
            .key(crate::aws::ec2::TAG_ENVIRONMENT)
            .value(env)
            .propagate_at_launch(false)
            .build()
    }

    /// The group `GROUP` with `desired` instances on `version` of `lt`,
    /// tagged `autosky:environment=<env>` (untagged when `None`).
    pub fn tagged_group(
        desired: i32,
        version: &str,
        suspended: &[&str],
        lt: &str,
        env: Option<&str>,
    ) -> asg::AutoScalingGroup {
        let mut b = asg::AutoScalingGroup::builder()
            .auto_scaling_group_name(super::GROUP)
            .set_tags(env.map(|e| vec![group_tag(e)]))
            .desired_capacity(desired)
            .launch_template(
                asg::LaunchTemplateSpecification::builder()
                    .launch_template_id(lt)
                    .version(version)
                    .build(),
            );
        for p in suspended {
            b = b.suspended_processes(asg::SuspendedProcess::builder().process_name(*p).build());
        }
        for i in 0..desired {
            b = b.instances(
                asg::Instance::builder()
                    .instance_id(format!("i-{i}"))
                    .launch_template(
                        asg::LaunchTemplateSpecification::builder()
                            .launch_template_id(lt)
                            .version(version)
                            .build(),
                    )
                    .build(),
            );
        }
        b.build()
    }

    pub fn refresh(
        id: &str,
        status: &str,
        pct: i32,
        version: &str,
        reason: Option<&str>,
    ) -> asg::InstanceRefresh {
        let mut b = asg::InstanceRefresh::builder()
            .instance_refresh_id(id)
            .status(asg::InstanceRefreshStatus::from(status))
            .percentage_complete(pct)
            .desired_configuration(
                asg::DesiredConfiguration::builder()
                    .launch_template(
                        asg::LaunchTemplateSpecification::builder()
                            .launch_template_id(super::LT)
                            .version(version)
                            .build(),
                    )
                    .build(),
            );
        if let Some(r) = reason {
            b = b.status_reason(r);
        }
        b.build()
    }
}
