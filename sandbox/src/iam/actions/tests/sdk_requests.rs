//! The map fed with the requests the product's own code sends through the
//! real SDK clients (captured by a local server), so the map reads each
//! field where the SDK puts it: the SigV4 scope's service, the action from
//! `X-Amz-Target`, the form or the REST route, the parameters.

use super::ses::tests::verified;
use super::{checks, rest_action, Call, Lookup, MapError};
use crate::iam::Check;
use autosky_core::store::Store;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// One request as it reached the server.
#[derive(Debug, Clone)]
struct Captured {
    method: String,
    path: String,
    query: String,
    authorization: String,
    target: Option<String>,
    body: Vec<u8>,
}

impl Captured {
    /// The SigV4 credential scope's service
    /// (`Credential=AKID/date/region/SERVICE/aws4_request`).
    fn service(&self) -> String {
        let scope = self
            .authorization
            .split("Credential=")
            .nth(1)
            .and_then(|c| c.split(',').next())
            .unwrap_or_default();
        scope.split('/').nth(3).unwrap_or_default().to_string()
    }

    fn form(&self) -> HashMap<String, String> {
        if self.target.is_some() || self.service() == "scheduler" {
            return HashMap::new();
        }
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    async fn checks<L: Lookup>(&self, lookup: &L) -> (String, Result<Vec<Check>, MapError>) {
        let service = self.service();
        let form = self.form();
        let action = match (&self.target, form.get("Action")) {
            (Some(t), _) => t.rsplit('.').next().unwrap_or_default().to_string(),
            (None, Some(a)) => a.clone(),
            (None, None) => rest_action(&service, &self.method, &self.path).unwrap_or_default(),
        };
        let call = Call {
            service: &service,
            action: &action,
            method: &self.method,
            path: &self.path,
            query: &self.query,
            form: &form,
            body: &self.body,
        };
        (format!("{service}:{action}"), checks(&call, lookup).await)
    }
}

/// A server that records every request and answers `{}`; its URL and
/// what it received.
async fn capturing() -> (String, Arc<Mutex<Vec<Captured>>>) {
    let seen: Arc<Mutex<Vec<Captured>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let log = log.clone();
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let header = |name: &str| {
                            parts
                                .headers
                                .get(name)
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string)
                        };
                        let body = body.collect().await?.to_bytes().to_vec();
                        log.lock().unwrap().push(Captured {
                            method: parts.method.to_string(),
                            path: parts.uri.path().to_string(),
                            query: parts.uri.query().unwrap_or_default().to_string(),
                            authorization: header("authorization").unwrap_or_default(),
                            target: header("x-amz-target"),
                            body,
                        });
                        Ok::<_, hyper::Error>(
                            hyper::Response::builder()
                                .header("content-type", "application/x-amz-json-1.0")
                                .body(Full::new(Bytes::from_static(b"{}")))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service),
            );
        }
    });
    (url, seen)
}

/// `service:Action` → (IAM action, resource) of each captured request.
async fn mapped(seen: &Mutex<Vec<Captured>>) -> Vec<(String, Vec<(String, String)>)> {
    let captured = seen.lock().unwrap().clone();
    let mut out = Vec::new();
    for c in &captured {
        let (call, checks) = c.checks(&verified(&["example.com"])).await;
        let checks = checks.unwrap_or_else(|e| panic!("{call}: {e:?}"));
        out.push((
            call,
            checks.into_iter().map(|c| (c.action, c.resource)).collect(),
        ));
    }
    out
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, r)| (a.to_string(), r.to_string()))
        .collect()
}

const TABLE: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/autosky";

#[tokio::test]
async fn the_stores_calls_map_to_their_table() {
    let (url, seen) = capturing().await;
    let client = aws_sdk_dynamodb::Client::new(&crate::sdk_config(&url));
    let store = autosky_core::store::DynamoStore::new(client, "autosky");
    let at = chrono::Utc::now();
    let _ = store.lock_holder("prod").await;
    let _ = store.acquire_lock("prod", "01JDEP", at).await;
    let _ = store.release_lock("prod", "01JDEP").await;
    let _ = store.schedules("prod").await;
    let _ = store.start_scheduled("prod", "01JDEP", at, None).await;
    let _ = store
        .save_runtime("prod", "01JDEP", &Default::default())
        .await;
    let got = mapped(&seen).await;
    let by_call: HashMap<&str, &Vec<(String, String)>> =
        got.iter().map(|(c, k)| (c.as_str(), k)).collect();
    assert_eq!(
        by_call["dynamodb:GetItem"],
        &pairs(&[("dynamodb:GetItem", TABLE)])
    );
    assert_eq!(
        by_call["dynamodb:PutItem"],
        &pairs(&[("dynamodb:PutItem", TABLE)])
    );
    assert_eq!(
        by_call["dynamodb:DeleteItem"],
        &pairs(&[("dynamodb:DeleteItem", TABLE)])
    );
    assert_eq!(
        by_call["dynamodb:Query"],
        &pairs(&[("dynamodb:Query", TABLE)])
    );
    // Moving a schedule to Running: the deployment's update and the
    // pending entry's delete, each authorized as its own action.
    assert_eq!(
        by_call["dynamodb:TransactWriteItems"],
        &pairs(&[
            ("dynamodb:UpdateItem", TABLE),
            ("dynamodb:DeleteItem", TABLE)
        ])
    );
}

/// An API write with its audit entry is one transaction: the change and the
/// entry's Put, each authorized as its own action on the table (the API
/// functions' policies grant PutItem and UpdateItem on it).
#[tokio::test]
async fn an_audited_change_maps_to_its_change_and_a_put_of_the_entry() {
    let (url, seen) = capturing().await;
    let client = aws_sdk_dynamodb::Client::new(&crate::sdk_config(&url));
    let store = autosky_core::store::DynamoStore::new(client, "autosky");
    let entry = autosky_core::domain::AuditEntry::new(
        "prod",
        "alice",
        autosky_core::domain::AuditAction::CancelDeployment,
        chrono::Utc::now(),
    );
    let _ = store
        .request_cancel("prod", "01JDEP", "alice", Some(&entry))
        .await;
    let got = mapped(&seen).await;
    assert_eq!(
        got,
        vec![(
            "dynamodb:TransactWriteItems".to_string(),
            pairs(&[("dynamodb:UpdateItem", TABLE), ("dynamodb:PutItem", TABLE)])
        )]
    );
}

#[tokio::test]
async fn the_mailers_send_email_maps_to_the_senders_identity() {
    let (url, seen) = capturing().await;
    let mailer = autosky_core::aws::Mailer::new(aws_sdk_ses::Client::new(&crate::sdk_config(&url)));
    let email = autosky_core::aws::Email {
        subject: "s".into(),
        text: "t".into(),
        html: "<p>h</p>".into(),
    };
    let _ = mailer
        .send(
            "Autosky <noreply@example.com>",
            &["ops@example.com".into()],
            &email,
        )
        .await;
    let captured = seen.lock().unwrap().clone();
    assert_eq!(captured.len(), 1);
    // The Rust SDK signs SES v1 for the `ses` scope.
    assert_eq!(captured[0].service(), "ses");
    let (call, checks) = captured[0].checks(&verified(&["example.com"])).await;
    assert_eq!(call, "ses:SendEmail");
    let check = &checks.unwrap()[0];
    assert_eq!(
        check.resource,
        "arn:aws:ses:us-east-1:000000000000:identity/example.com"
    );
    assert_eq!(
        check.context,
        vec![
            (
                "ses:FromAddress".to_string(),
                iam_rs::ContextValue::String("noreply@example.com".into())
            ),
            (
                "ses:Recipients".to_string(),
                iam_rs::ContextValue::StringList(vec!["ops@example.com".into()])
            ),
        ]
    );
}

#[tokio::test]
async fn the_schedulers_calls_map_to_the_schedule_and_its_role() {
    let (url, seen) = capturing().await;
    let scheduler =
        autosky_core::aws::Scheduler::new(aws_sdk_scheduler::Client::new(&crate::sdk_config(&url)));
    let role = "arn:aws:iam::000000000000:role/autosky-SchedulerRole";
    let s = autosky_core::aws::OneTimeSchedule {
        name: "01JDEP".into(),
        group: "autosky".into(),
        expression: "at(2026-12-01T14:30:00)".into(),
        timezone: "Europe/Paris".into(),
        description: "d".into(),
        target_arn: "arn:aws:states:us-east-1:000000000000:stateMachine:sm".into(),
        role_arn: role.into(),
        input: "{}".into(),
        dead_letter_arn: None,
    };
    let _ = scheduler.create(&s).await;
    let _ = scheduler.update(&s).await;
    let _ = scheduler.delete("autosky", "01JDEP").await;
    let schedule = "arn:aws:scheduler:us-east-1:000000000000:schedule/autosky/01JDEP";
    assert_eq!(
        mapped(&seen).await,
        vec![
            (
                "scheduler:CreateSchedule".to_string(),
                pairs(&[
                    ("scheduler:CreateSchedule", schedule),
                    ("iam:PassRole", role)
                ])
            ),
            (
                "scheduler:UpdateSchedule".to_string(),
                pairs(&[
                    ("scheduler:UpdateSchedule", schedule),
                    ("iam:PassRole", role)
                ])
            ),
            (
                "scheduler:DeleteSchedule".to_string(),
                pairs(&[("scheduler:DeleteSchedule", schedule)])
            ),
        ]
    );
}

#[tokio::test]
async fn the_cleanup_start_execution_maps_to_the_state_machine() {
    let (url, seen) = capturing().await;
    let sfn =
        autosky_core::aws::StepFunctions::new(aws_sdk_sfn::Client::new(&crate::sdk_config(&url)));
    let sm = "arn:aws:states:us-east-1:000000000000:stateMachine:autosky-deployment";
    let _ = sfn.start_named(sm, "01JDEP-cleanup", "{}").await;
    assert_eq!(
        mapped(&seen).await,
        vec![(
            "states:StartExecution".to_string(),
            pairs(&[("states:StartExecution", sm)])
        )]
    );
}
