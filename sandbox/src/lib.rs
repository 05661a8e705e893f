//! The local sandbox: the real step code and the real state machine on a
//! local AWS emulator. `autosky-sandbox up` starts fakecloud, the Auto Scaling
//! bridge, provisions the stack and runs the activity workers; `demo` also
//! seeds an environment and runs one deployment. Tests drive the same binary
//! through [`harness`].

pub mod api_server;
pub mod aws_events;
pub mod bench;
pub mod bridge;
pub mod caller_proxy;
pub mod demo;
pub mod emulator;
pub mod events;
pub mod harness;
pub mod http;
pub mod iam;
pub mod provision;
pub mod seed;
pub mod template;
pub mod workers;

use autosky_core::store::DynamoStore;
use std::time::Duration;

/// Where everything listens once the sandbox is up.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoints {
    pub api: String,
    pub emulator: String,
    pub autoscaling: String,
    pub state_machine_arn: String,
    pub table: String,
    pub sender: String,
}

impl Endpoints {
    /// The Deployments page, opened on environment `env`.
    pub fn page_url(&self, env: &str) -> String {
        format!("{}/?env={env}", self.api)
    }
}

/// SDK clients aimed at the sandbox (Auto Scaling through the bridge).
#[derive(Clone)]
pub struct Clients {
    pub ec2: aws_sdk_ec2::Client,
    pub asg: aws_sdk_autoscaling::Client,
    pub ddb: aws_sdk_dynamodb::Client,
    pub sfn: aws_sdk_sfn::Client,
    pub ses: aws_sdk_ses::Client,
    pub scheduler: aws_sdk_scheduler::Client,
    pub store: DynamoStore,
    pub endpoints: Endpoints,
}

pub fn sdk_config(emulator: &str) -> aws_config::SdkConfig {
    aws_config::SdkConfig::builder()
        .behavior_version(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(emulator)
        .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
            aws_sdk_ec2::config::Credentials::new("test", "test", None, None, "sandbox"),
        ))
        .build()
}

impl Clients {
    pub fn new(endpoints: &Endpoints) -> Self {
        let config = sdk_config(&endpoints.emulator);
        let asg_conf = aws_sdk_autoscaling::config::Builder::from(&config)
            .endpoint_url(&endpoints.autoscaling)
            .build();
        let ddb = aws_sdk_dynamodb::Client::new(&config);
        Self {
            ec2: aws_sdk_ec2::Client::new(&config),
            asg: aws_sdk_autoscaling::Client::from_conf(asg_conf),
            store: DynamoStore::new(ddb.clone(), endpoints.table.clone()),
            ddb,
            sfn: aws_sdk_sfn::Client::new(&config),
            ses: aws_sdk_ses::Client::new(&config),
            scheduler: aws_sdk_scheduler::Client::new(&config),
            endpoints: endpoints.clone(),
        }
    }
}

/// Ports chosen before anything starts, so the process environment (which
/// the workers read exactly as a Lambda would) can be set up front.
pub struct Ports {
    pub emulator: u16,
    pub bridge: u16,
    pub api: u16,
}

impl Ports {
    pub fn pick() -> Result<Self, String> {
        // Held together while picking, so the three ports differ.
        let listeners = (0..3)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .map_err(|e| format!("no free loopback port: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let port = |i: usize| {
            listeners[i]
                .local_addr()
                .map(|a| a.port())
                .map_err(|e| e.to_string())
        };
        Ok(Self {
            emulator: port(0)?,
            bridge: port(1)?,
            api: port(2)?,
        })
    }

    /// The Lambda-style environment of the workers. Call before starting any
    /// thread: environment variables are process-wide.
    pub fn export_env(&self) {
        let vars = [
            // Every service through the gateway (the Auto Scaling bridge), which
            // forwards to the emulator and can inject faults.
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.bridge),
            ),
            (
                "AWS_ENDPOINT_URL_AUTO_SCALING",
                format!("http://127.0.0.1:{}", self.bridge),
            ),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID", "test".into()),
            ("AWS_SECRET_ACCESS_KEY", "test".into()),
            ("TABLE_NAME", provision::TABLE.into()),
            ("SENDER_EMAIL", provision::SENDER.into()),
        ];
        for (k, v) in vars {
            // SAFETY (edition 2024 wording): called from main before any thread exists.
            std::env::set_var(k, v);
        }
    }
}

/// A running sandbox (in this process).
pub struct Sandbox {
    pub emulator: emulator::Emulator,
    pub endpoints: Endpoints,
    /// The number of policies enforced; None when enforcement is off.
    pub iam: Option<usize>,
    pub gateway: bridge::Bridge,
    /// The EC2 and Auto Scaling events the gateway publishes, delivered to
    /// ResumeFunction's handler ([`aws_events::EventBus::set_delivery`]).
    pub events: aws_events::EventBus,
}

/// The sandbox's names for what the template's policies refer to.
pub fn iam_names(state_machine_arn: &str) -> iam::policies::Names {
    iam::policies::Names {
        stack: provision::STACK.into(),
        sender: provision::SENDER.into(),
        table: provision::TABLE.into(),
        state_machine_arn: state_machine_arn.into(),
        schedule_group: provision::SCHEDULE_GROUP.into(),
        scheduler_role_arn: provision::SCHEDULER_ROLE.into(),
        instance_role_arns: vec![seed::INSTANCE_ROLE_ARN.into()],
    }
}

impl Sandbox {
    /// Starts everything; `Ports::export_env` must have run first.
    pub async fn start(ports: &Ports, refresh_phase: Duration) -> Result<Self, String> {
        let emulator = emulator::Emulator::start(ports.emulator).await?;
        let config = aws_config::load_from_env().await;
        let region = config
            .region()
            .map_or("us-east-1".to_string(), |r| r.to_string());
        // ResumeFunction's rules from template.yaml; delivery off with
        // AUTOSKY_SANDBOX_DROP_EVENTS=1.
        let events = aws_events::EventBus::resume(&region)?;
        let (autoscaling, gateway) = bridge::start(
            ports.bridge,
            emulator.url(),
            &config,
            refresh_phase,
            events.clone(),
        )
        .await?;
        let stack = provision::provision(&config).await?;
        let direct = sdk_config(&emulator.url());
        let iam = if iam::enabled() {
            let enforcer = iam::Enforcer::new(
                &iam_names(&stack.state_machine_arn),
                iam::actions::EmulatorLookup::new(&emulator.url(), &direct),
            )?;
            let policies = enforcer.report().policies;
            gateway.enforce(enforcer);
            if let Some(path) = iam::figures::path() {
                iam::figures::started(&path)?;
            }
            Some(policies)
        } else {
            None
        };
        // Each function signs with its own key (the gateway authorizes its
        // calls against its own policy), from the environment a Lambda has.
        let lambda = autosky_core::aws::config::from_env()?;
        let settings = autosky_core::deps::Settings::from_env()?;
        let deps_of = |function: &str| {
            std::sync::Arc::new(autosky_core::Deps::from_config(
                &iam::principals::config_as(&lambda, function),
                settings.clone(),
            ))
        };
        let api = api_server::start(ports.api, &lambda, stack.state_machine_arn.clone()).await?;
        let direct_sfn = aws_sdk_sfn::Client::new(&direct);
        // The workers' own GetActivityTask/SendTask* go straight to the
        // emulator (on AWS the Lambda service does them), so the gateway
        // counts and authorizes only the functions' calls — among them the
        // waiting steps' own SendTaskSuccess/SendTaskFailure.
        workers::spawn(
            |step| deps_of(&iam::principals::of_step(step)),
            direct_sfn.clone(),
            workers::Control {
                sfn: direct_sfn.clone(),
                store: DynamoStore::new(aws_sdk_dynamodb::Client::new(&direct), provision::TABLE),
                tokens: gateway.tokens(),
            },
            stack.activities,
        );
        let refs = std::collections::BTreeMap::from([(
            "DeploymentStateMachine",
            stack.state_machine_arn.clone(),
        )]);
        events::spawn(
            deps_of(&iam::principals::of_step(
                autosky_core::domain::StepName::Finalization,
            )),
            direct_sfn,
            stack.state_machine_arn.clone(),
            events::SafetyNet::from_template(&refs)?,
        );
        // The EC2 and Auto Scaling events the template's rules match go to
        // the resume function, with its own key (its policy authorizes it).
        let resume = deps_of(iam::principals::RESUME);
        events.set_delivery(std::sync::Arc::new(move |event| {
            let deps = resume.clone();
            Box::pin(async move {
                autosky_core::steps::handler::resume(&deps, event)
                    .await
                    .map_err(|e| format!("{}: {}", e.name(), e.message()))
            })
        }));
        let endpoints = Endpoints {
            api,
            emulator: emulator.url(),
            autoscaling,
            state_machine_arn: stack.state_machine_arn,
            table: provision::TABLE.into(),
            sender: provision::SENDER.into(),
        };
        Ok(Self {
            emulator,
            endpoints,
            iam,
            gateway,
            events,
        })
    }

    pub async fn stop(self) {
        // The enforcement's report for `make test`'s summary.
        if let (Some(path), Some(report)) = (iam::figures::path(), self.gateway.iam_report()) {
            if let Err(e) = iam::figures::stopped(&path, &report, iam::denials_on_purpose()) {
                eprintln!("sandbox: {e}");
            }
        }
        self.emulator.stop().await;
    }
}
