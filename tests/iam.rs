//! IAM enforcement end to end: the sandbox authorizes each function's calls
//! against that function's own policy from template.yaml. These tests show
//! that it can refuse: a statement removed from a policy fails a deployment
//! with the service's own denial naming the action, and each condition the
//! template relies on refuses a resource or request that does not meet it —
//! with AWS's error code, and nothing changed.

use autosky_core::domain::{DeploymentStatus, EnvironmentDefaults, StepName, StepStatus};
use autosky_core::store::Store;
use autosky_sandbox::harness::{self, SandboxProcess};
use autosky_sandbox::{seed, Clients, Endpoints};
use aws_sdk_ec2::types::{InstanceType, ResourceType, Tag, TagSpecification};
use serde_json::json;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_autosky-sandbox");

/// This binary's sandbox: its denials are provoked on purpose, so `make
/// test`'s summary counts them apart from the suites'.
fn sandbox() -> &'static Endpoints {
    static SANDBOX: std::sync::OnceLock<SandboxProcess> = std::sync::OnceLock::new();
    &SANDBOX
        .get_or_init(|| {
            SandboxProcess::spawn_with(BIN, false, &[(autosky_sandbox::iam::ON_PURPOSE_VAR, "1")])
                .expect("sandbox starts")
        })
        .endpoints
}

fn clients() -> Clients {
    Clients::new(sandbox())
}

fn ec2_as(function: &str) -> aws_sdk_ec2::Client {
    aws_sdk_ec2::Client::new(&harness::config_as(sandbox(), function))
}

fn asg_as(function: &str) -> aws_sdk_autoscaling::Client {
    aws_sdk_autoscaling::Client::new(&harness::config_as(sandbox(), function))
}

/// The error code of an SDK error (`UnauthorizedOperation`, `AccessDenied`).
fn code<E: aws_sdk_ec2::error::ProvideErrorMetadata, R>(
    e: &aws_sdk_ec2::error::SdkError<E, R>,
) -> String {
    aws_sdk_ec2::error::ProvideErrorMetadata::code(e)
        .unwrap_or_default()
        .to_string()
}

fn tag_spec(rt: ResourceType, env: &str) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .tags(Tag::builder().key("autosky:environment").value(env).build())
        .build()
}

/// A running instance, tagged with `env` or untagged (by the test's own
/// credentials, which the sandbox does not authorize).
async fn instance(c: &Clients, env: Option<&str>) -> String {
    let mut run = c
        .ec2
        .run_instances()
        .image_id(seed::BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1);
    if let Some(env) = env {
        run = run.tag_specifications(tag_spec(ResourceType::Instance, env));
    }
    let out = run.send().await.expect("RunInstances");
    out.instances()[0].instance_id().unwrap().to_string()
}

async fn state_of(c: &Clients, id: &str) -> String {
    harness::instance_state(c, id).await
}

/// A denial is counted and logged with the function, the action and why.
async fn denial_logged(function: &str, action: &str) -> String {
    let report = harness::iam_report(sandbox())
        .await
        .unwrap()
        .expect("enforcement on");
    report
        .denials
        .iter()
        .rev()
        .find(|d| d.contains(function) && d.contains(action))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no denial of {action} for {function} in {:?}",
                report.denials
            )
        })
}

// ---- aws:ResourceTag/autosky:environment, per resource type ----

#[tokio::test(flavor = "multi_thread")]
async fn stopping_an_instance_needs_the_environment_tag_on_it() {
    let c = clients();
    let stop = ec2_as("StopPreparationServerFunction");
    let untagged = instance(&c, None).await;
    let e = stop
        .stop_instances()
        .instance_ids(&untagged)
        .send()
        .await
        .expect_err("an untagged instance is not ours to stop");
    assert_eq!(code(&e), "UnauthorizedOperation", "{e:?}");
    assert_eq!(state_of(&c, &untagged).await, "running", "nothing changed");
    let logged = denial_logged("StopPreparationServerFunction", "ec2:StopInstances").await;
    assert!(logged.contains(&format!("instance/{untagged}")), "{logged}");
    assert!(
        logged.contains("aws:ResourceTag/autosky:environment"),
        "{logged}"
    );

    // The same call on a tagged instance is allowed: the check is the tag.
    let tagged = instance(&c, Some("iam-stop")).await;
    stop.stop_instances()
        .instance_ids(&tagged)
        .send()
        .await
        .expect("a tagged instance may be stopped");
}

#[tokio::test(flavor = "multi_thread")]
async fn changing_a_launch_template_needs_the_environment_tag_on_it() {
    let c = clients();
    let lt = c
        .ec2
        .create_launch_template()
        .launch_template_name("iam-untagged-template")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id(seed::BASE_IMAGE)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let id = lt.launch_template().unwrap().launch_template_id().unwrap();
    let e = ec2_as("CreateModelsFunction")
        .create_launch_template_version()
        .launch_template_id(id)
        .source_version("1")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .image_id("ami-00000000000000001")
                .build(),
        )
        .send()
        .await
        .expect_err("an untagged template is not ours to change");
    assert_eq!(code(&e), "UnauthorizedOperation", "{e:?}");
    let versions = c
        .ec2
        .describe_launch_template_versions()
        .launch_template_id(id)
        .send()
        .await
        .unwrap();
    assert_eq!(
        versions.launch_template_versions().len(),
        1,
        "no version added"
    );
    denial_logged("CreateModelsFunction", "ec2:CreateLaunchTemplateVersion").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn suspending_a_group_needs_the_environment_tag_on_it() {
    let c = clients();
    let lt = seed::template(&c.ec2, "iam-group", "iam-group-template")
        .await
        .unwrap();
    // Untagged (the seed tags its groups).
    c.asg
        .create_auto_scaling_group()
        .auto_scaling_group_name("iam-untagged-asg")
        .min_size(0)
        .max_size(1)
        .availability_zones("us-east-1a")
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(lt)
                .version("1")
                .build(),
        )
        .send()
        .await
        .unwrap();
    let e = asg_as("ValidateFunction")
        .suspend_processes()
        .auto_scaling_group_name("iam-untagged-asg")
        .scaling_processes("Launch")
        .send()
        .await
        .expect_err("an untagged group is not ours to suspend");
    assert_eq!(code(&e), "AccessDenied", "{e:?}");
    assert!(
        harness::suspended_processes(&c, "iam-untagged-asg")
            .await
            .is_empty(),
        "nothing suspended"
    );
    let logged = denial_logged("ValidateFunction", "autoscaling:SuspendProcesses").await;
    assert!(
        logged.contains("autoScalingGroupName/iam-untagged-asg"),
        "{logged}"
    );
}

// ---- aws:RequestTag (ec2:CreateAction, ec2:LaunchTemplate and
// iam:PassedToService: the product's requests always carry the right value,
// so their wrong values are shown on the policies: iam::policies tests) ----

#[tokio::test(flavor = "multi_thread")]
async fn an_image_must_be_tagged_as_it_is_created() {
    let c = clients();
    let server = instance(&c, Some("iam-image")).await;
    let img = ec2_as("CreateImageFunction");
    let e = img
        .create_image()
        .instance_id(&server)
        .name("iam-untagged-image")
        .send()
        .await
        .expect_err("an image without the environment tag is refused");
    assert_eq!(code(&e), "UnauthorizedOperation", "{e:?}");
    let images = c
        .ec2
        .describe_images()
        .filters(
            aws_sdk_ec2::types::Filter::builder()
                .name("name")
                .values("iam-untagged-image")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(images.images().is_empty(), "no image created");
    let logged = denial_logged("CreateImageFunction", "ec2:CreateImage").await;
    assert!(
        logged.contains("aws:RequestTag/autosky:environment"),
        "{logged}"
    );

    // Tagged at creation it is allowed, tag-on-create included.
    img.create_image()
        .instance_id(&server)
        .name("iam-tagged-image")
        .tag_specifications(tag_spec(ResourceType::Image, "iam-image"))
        .tag_specifications(tag_spec(ResourceType::Snapshot, "iam-image"))
        .send()
        .await
        .expect("a tagged image may be created");
}

// ---- iam:PassRole only of the environments' instance roles ----

/// A refresh to a launch template whose instance profile holds a role that
/// is not one of the stack's InstanceRoleArns is refused: Auto Scaling
/// authorizes passing it on the caller's behalf.
#[tokio::test(flavor = "multi_thread")]
async fn a_refresh_may_only_pass_the_environments_instance_roles() {
    let c = clients();
    let env = "iam-other-role";
    let seeded = seed::environment(&c, env, 1, EnvironmentDefaults::default())
        .await
        .unwrap();
    let e = &seeded.environment;
    let (_, profile) = seed::instance_profile::create(&c.endpoints.emulator, "iam-other-role")
        .await
        .unwrap();
    let profile = profile.expect("a new profile");
    let version = c
        .ec2
        .create_launch_template_version()
        .launch_template_id(&e.launch_template_id)
        .source_version("1")
        .launch_template_data(
            aws_sdk_ec2::types::RequestLaunchTemplateData::builder()
                .iam_instance_profile(
                    aws_sdk_ec2::types::LaunchTemplateIamInstanceProfileSpecificationRequest::builder()
                        .arn(&profile)
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .unwrap();
    let number = version
        .launch_template_version()
        .unwrap()
        .version_number()
        .unwrap();
    let group = &e.auto_scaling_groups[0];
    let refresh = |version: String| {
        asg_as("ReplaceInstancesFunction")
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .desired_configuration(
                aws_sdk_autoscaling::types::DesiredConfiguration::builder()
                    .launch_template(
                        aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                            .launch_template_id(&e.launch_template_id)
                            .version(version)
                            .build(),
                    )
                    .build(),
            )
            .send()
    };
    let err = refresh(number.to_string())
        .await
        .expect_err("another role may not be passed");
    assert_eq!(code(&err), "AccessDenied", "{err:?}");
    let logged = denial_logged("ReplaceInstancesFunction", "iam:PassRole").await;
    assert!(logged.contains("role/iam-other-role"), "{logged}");
    assert!(
        logged.contains("iam:PassedToService=ec2.amazonaws.com"),
        "{logged}"
    );
    let refreshes = c
        .asg
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .unwrap();
    assert!(
        refreshes.instance_refreshes().is_empty(),
        "no refresh started"
    );

    // Version 1 (the seeded instance role) may be refreshed to.
    refresh("1".into())
        .await
        .expect("the environment's role may be passed");
}

/// A call the map has no entry for (the product never launches an instance
/// itself) is refused, not let through: a new call site needs its entry.
#[tokio::test(flavor = "multi_thread")]
async fn a_call_without_a_map_entry_is_refused() {
    let e = ec2_as("ReplaceInstancesFunction")
        .run_instances()
        .image_id(seed::BASE_IMAGE)
        .instance_type(InstanceType::T3Micro)
        .min_count(1)
        .max_count(1)
        .send()
        .await
        .expect_err("no map entry: refused");
    assert_eq!(code(&e), "UnauthorizedOperation", "{e:?}");
    let logged = denial_logged("ReplaceInstancesFunction", "ec2:RunInstances").await;
    assert!(logged.contains("no map entry"), "{logged}");
}

// ---- a statement removed: the deployment fails naming the action ----

/// Runs one deployment in a sandbox of its own whose policy lacks
/// `function/sid`; returns the failed step and its error.
async fn deployment_without(
    env: &str,
    function: &str,
    sid: &str,
) -> (StepName, String, Vec<String>) {
    let drop = format!("{function}/{sid}");
    let sb = SandboxProcess::spawn_with(BIN, false, &[(autosky_sandbox::iam::DROP_VAR, &drop)])
        .expect("sandbox starts");
    let c = Clients::new(&sb.endpoints);
    let defaults = EnvironmentDefaults {
        notification_emails: vec!["ops@example.com".into()],
        ..Default::default()
    };
    seed::environment(&c, env, 1, defaults).await.unwrap();
    let id = harness::start_deployment(&c, env, json!({"lockInstances": true}))
        .await
        .unwrap();
    harness::wait_execution(&c, &id, Duration::from_secs(240))
        .await
        .unwrap();
    let d = c.store.deployment(env, &id).await.unwrap().unwrap();
    assert_eq!(d.status, DeploymentStatus::Failed, "{d:?}");
    let failed = d
        .steps
        .iter()
        .find(|s| s.status == StepStatus::Failed)
        .unwrap_or_else(|| panic!("a failed step: {d:?}"));
    let error = format!("{:?} {}", d.error, serde_json::to_string(&failed).unwrap());
    let denials = harness::iam_report(&sb.endpoints)
        .await
        .unwrap()
        .unwrap()
        .denials;
    let step = failed.name;
    sb.stop();
    (step, error, denials)
}

#[tokio::test(flavor = "multi_thread")]
async fn without_its_refresh_statement_the_deployment_fails_in_replace_instances() {
    let (step, error, denials) = deployment_without(
        "iam-no-refresh",
        "ReplaceInstancesFunction",
        "RefreshTaggedGroups",
    )
    .await;
    assert_eq!(step, StepName::ReplaceInstances);
    assert!(error.contains("AccessDenied"), "{error}");
    assert!(
        denials
            .iter()
            .any(|d| d.contains("ReplaceInstancesFunction autoscaling:StartInstanceRefresh")),
        "{denials:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_tag_on_create_the_deployment_fails_in_create_image() {
    let (step, error, denials) = deployment_without(
        "iam-no-tag-on-create",
        "CreateImageFunction",
        "TagOnCreateImage",
    )
    .await;
    assert_eq!(step, StepName::CreateImage);
    assert!(error.contains("UnauthorizedOperation"), "{error}");
    assert!(
        denials
            .iter()
            .any(|d| d.contains("CreateImageFunction ec2:CreateTags") && d.contains("CreateImage")),
        "{denials:?}"
    );
}
