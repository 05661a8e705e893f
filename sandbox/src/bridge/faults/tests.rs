use super::*;

fn fault(nth: u32) -> Fault {
    Fault {
        service: "ec2".into(),
        action: "CreateImage".into(),
        nth,
        error: "Throttling".into(),
        seen: 0,
        fired: false,
    }
}

#[test]
fn the_nth_matching_call_fires_once() {
    let mut faults = vec![fault(2)];
    assert_eq!(due(&mut faults, "ec2", "StopInstances"), None);
    assert_eq!(due(&mut faults, "ec2", "CreateImage"), None);
    assert_eq!(
        due(&mut faults, "ec2", "CreateImage").as_deref(),
        Some("Throttling")
    );
    assert_eq!(due(&mut faults, "ec2", "CreateImage"), None);
    assert!(faults[0].fired);
}

/// A server answering every request with `answer()`; its URL.
async fn answering(answer: fn() -> Response<Full<Bytes>>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = hyper::service::service_fn(move |_req| async move {
                Ok::<_, std::convert::Infallible>(answer())
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    url
}

const MESSAGE: &str = "User: arn:aws:sts::000000000000:assumed-role/fn/fn is not authorized \
    to perform: x:Y on resource: * because no identity-based policy allows the x:Y action";

/// What an SDK client surfaced: HTTP status, error code, message.
fn surfaced<E>(
    err: aws_sdk_ec2::error::SdkError<
        E,
        aws_smithy_runtime_api::client::orchestrator::HttpResponse,
    >,
) -> (u16, String, String)
where
    E: aws_sdk_ec2::error::ProvideErrorMetadata + std::fmt::Debug,
{
    use aws_sdk_ec2::error::ProvideErrorMetadata;
    let status = err
        .raw_response()
        .map(|r| r.status().as_u16())
        .unwrap_or_else(|| panic!("no response: {err:?}"));
    (
        status,
        err.code().unwrap_or_default().to_string(),
        err.message().unwrap_or_default().to_string(),
    )
}

fn surfaced_as(status: u16, code: &str) -> (u16, String, String) {
    (status, code.to_string(), MESSAGE.to_string())
}

#[tokio::test]
async fn the_ses_sdk_surfaces_access_denied() {
    let url = answering(|| denial("ses", "SendEmail", MESSAGE)).await;
    let client = aws_sdk_ses::Client::new(&crate::sdk_config(&url));
    let err = client
        .send_email()
        .source("noreply@example.com")
        .destination(
            aws_sdk_ses::types::Destination::builder()
                .to_addresses("ops@example.com")
                .build(),
        )
        .message(
            aws_sdk_ses::types::Message::builder()
                .subject(
                    aws_sdk_ses::types::Content::builder()
                        .data("s")
                        .build()
                        .unwrap(),
                )
                .body(aws_sdk_ses::types::Body::builder().build())
                .build(),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(surfaced(err), surfaced_as(403, "AccessDenied"));
}

#[tokio::test]
async fn the_scheduler_sdk_surfaces_access_denied_exception() {
    let url = answering(|| denial("scheduler", "DeleteSchedule", MESSAGE)).await;
    let client = aws_sdk_scheduler::Client::new(&crate::sdk_config(&url));
    let err = client
        .delete_schedule()
        .group_name("autosky")
        .name("01JDEPLOY")
        .send()
        .await
        .unwrap_err();
    assert_eq!(surfaced(err), surfaced_as(403, "AccessDeniedException"));
}

#[tokio::test]
async fn the_dynamodb_sdk_surfaces_access_denied_exception() {
    let url = answering(|| denial("dynamodb", "GetItem", MESSAGE)).await;
    let client = aws_sdk_dynamodb::Client::new(&crate::sdk_config(&url));
    let err = client
        .get_item()
        .table_name("autosky")
        .key(
            "PK",
            aws_sdk_dynamodb::types::AttributeValue::S("ENV#prod".into()),
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(surfaced(err), surfaced_as(400, "AccessDeniedException"));
}

#[tokio::test]
async fn the_step_functions_sdk_surfaces_access_denied_exception() {
    let url = answering(|| denial("states", "StartExecution", MESSAGE)).await;
    let client = aws_sdk_sfn::Client::new(&crate::sdk_config(&url));
    let err = client
        .start_execution()
        .state_machine_arn("arn:aws:states:us-east-1:000000000000:stateMachine:sm")
        .send()
        .await
        .unwrap_err();
    assert_eq!(surfaced(err), surfaced_as(400, "AccessDeniedException"));
}

#[tokio::test]
async fn the_ec2_sdk_surfaces_unauthorized_operation() {
    let url = answering(|| denial("ec2", "StopInstances", MESSAGE)).await;
    let client = aws_sdk_ec2::Client::new(&crate::sdk_config(&url));
    let err = client
        .stop_instances()
        .instance_ids("i-0123456789abcdef0")
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        surfaced(err),
        (
            403,
            "UnauthorizedOperation".to_string(),
            format!("You are not authorized to perform this operation. {MESSAGE}")
        )
    );
}

#[tokio::test]
async fn the_auto_scaling_sdk_surfaces_access_denied() {
    let url = answering(|| denial("autoscaling", "SuspendProcesses", MESSAGE)).await;
    let client = aws_sdk_autoscaling::Client::new(&crate::sdk_config(&url));
    let err = client
        .suspend_processes()
        .auto_scaling_group_name("web")
        .send()
        .await
        .unwrap_err();
    assert_eq!(surfaced(err), surfaced_as(403, "AccessDenied"));
}

#[test]
fn an_injected_access_denied_is_the_services_denial() {
    let status = |r: Response<Full<Bytes>>| r.status().as_u16();
    assert_eq!(
        status(response("scheduler", "CreateSchedule", "AccessDenied")),
        403
    );
    assert_eq!(status(response("dynamodb", "PutItem", "AccessDenied")), 400);
    assert_eq!(
        status(response("ec2", "StopInstances", "AccessDenied")),
        403
    );
}
