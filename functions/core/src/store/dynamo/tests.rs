//! DynamoStore's requests against mocked DynamoDB responses: conditions,
//! names used, one Query per page, one transaction per scheduled change and
//! per audited change (the change and its entry).

use super::items::{s, LOCK};
use super::DynamoStore;
use crate::domain::{DeploymentStatus, IgnoredRun, Runtime};
use crate::store::{LockOutcome, Outcome, ScheduledEnd, Store, StoreError};
use aws_sdk_dynamodb::error::ErrorMetadata;
use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
use aws_sdk_dynamodb::Client;
use aws_smithy_mocks::{mock, mock_client, RuleMode};
use chrono::Utc;

#[tokio::test]
async fn lock_is_a_conditional_put_and_names_the_holder() {
    let put = mock!(Client::put_item)
        .match_requests(|r| {
            r.condition_expression() == Some("attribute_not_exists(PK) OR deploymentId = :d")
                && r.item().and_then(|i| i.get("SK")) == Some(&s(LOCK))
        })
        .then_error(|| {
            PutItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .build(),
                    )
                    .build(),
            )
        });
    let get = mock!(Client::get_item).then_output(|| {
        GetItemOutput::builder()
            .item("deploymentId", s("01HOLDER00000000000000000A"))
            .build()
    });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&put, &get]);
    let store = DynamoStore::new(client, "t");
    let got = store
        .acquire_lock("prod", "01MINE0000000000000000000A", Utc::now())
        .await
        .unwrap();
    assert_eq!(
        got,
        LockOutcome::HeldBy("01HOLDER00000000000000000A".into())
    );
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn lock_acquired_when_put_succeeds() {
    let put = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&put]);
    let store = DynamoStore::new(client, "t");
    let got = store
        .acquire_lock("prod", "01MINE0000000000000000000A", Utc::now())
        .await
        .unwrap();
    assert_eq!(got, LockOutcome::Acquired);
}

#[tokio::test]
async fn history_is_one_query_newest_first_with_limit_plus_one() {
    let q = mock!(Client::query)
        .match_requests(|r| r.scan_index_forward() == Some(false) && r.limit() == Some(3))
        .then_output(|| QueryOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&q]);
    let store = DynamoStore::new(client, "t");
    let page = store.history("prod", 2, None, None).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_token, None);
    assert_eq!(q.num_calls(), 1);
}

/// DynamoDB refuses a request whose ExpressionAttributeNames include one
/// the expressions do not use.
fn names_all_used(r: &aws_sdk_dynamodb::operation::update_item::UpdateItemInput) -> bool {
    let text = format!(
        "{} {}",
        r.update_expression().unwrap_or(""),
        r.condition_expression().unwrap_or("")
    );
    r.expression_attribute_names()
        .into_iter()
        .flatten()
        .all(|(k, _)| text.contains(k.as_str()))
}

#[tokio::test]
async fn finish_names_only_the_attributes_it_uses() {
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    let u = mock!(Client::update_item)
        .match_requests(names_all_used)
        .then_output(|| UpdateItemOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::MatchAny, [&u]);
    let store = DynamoStore::new(client, "t");
    let mut o = Outcome {
        status: DeploymentStatus::Succeeded,
        ended_at: Utc::now(),
        duration_ms: 5,
        generated_version: None,
        error: None,
    };
    assert!(store
        .finish("prod", "01MINE0000000000000000000A", &o)
        .await
        .unwrap());
    o.error = Some(crate::domain::DeploymentError {
        step: None,
        name: "X".into(),
        message: "m".into(),
    });
    o.status = DeploymentStatus::Failed;
    assert!(store
        .finish("prod", "01MINE0000000000000000000A", &o)
        .await
        .unwrap());
    assert!(store
        .claim_execution("prod", "01MINE0000000000000000000A", "arn:x")
        .await
        .unwrap());
    store
        .record_ignored(
            "prod",
            "01MINE0000000000000000000A",
            &IgnoredRun {
                execution_arn: None,
                at: Utc::now(),
                reason: "r".into(),
            },
        )
        .await
        .unwrap();
    store
        .save_runtime("prod", "01MINE0000000000000000000A", &Runtime::default())
        .await
        .unwrap();
    assert_eq!(u.num_calls(), 5);
}

#[tokio::test]
async fn scheduled_changes_are_one_transaction_and_a_failed_condition_is_false() {
    use aws_sdk_dynamodb::operation::transact_write_items::{
        TransactWriteItemsError, TransactWriteItemsOutput,
    };
    use aws_sdk_dynamodb::types::error::TransactionCanceledException;
    use aws_sdk_dynamodb::types::CancellationReason;
    // Every Update names only what it uses; start = update + delete of the entry.
    let ok = mock!(Client::transact_write_items)
        .match_requests(|r| {
            let items = r.transact_items();
            items.len() == 2
                && items[0].update().is_some_and(|u| {
                    u.condition_expression() == Some("#st = :scheduled")
                        && u.update_expression().contains("executionArn = :arn")
                        && u.expression_attribute_names()
                            .map(|n| {
                                n.keys().all(|k| {
                                    u.update_expression().contains(k.as_str())
                                        || u.condition_expression()
                                            .unwrap_or("")
                                            .contains(k.as_str())
                                })
                            })
                            .unwrap_or(true)
                })
                && items[1].delete().is_some_and(|d| {
                    d.key().get("SK") == Some(&s("SCHEDULE#01MINE0000000000000000000A"))
                })
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let refused = mock!(Client::transact_write_items)
        .match_requests(|r| r.transact_items().len() == 2)
        .then_error(|| {
            TransactWriteItemsError::TransactionCanceledException(
                TransactionCanceledException::builder()
                    .cancellation_reasons(
                        CancellationReason::builder()
                            .code("ConditionalCheckFailed")
                            .build(),
                    )
                    .cancellation_reasons(CancellationReason::builder().code("None").build())
                    .meta(
                        ErrorMetadata::builder()
                            .code("TransactionCanceledException")
                            .build(),
                    )
                    .build(),
            )
        });
    let client = mock_client!(aws_sdk_dynamodb, RuleMode::Sequential, [&ok, &refused]);
    let store = DynamoStore::new(client, "t");
    assert!(store
        .start_scheduled(
            "prod",
            "01MINE0000000000000000000A",
            Utc::now(),
            Some("arn:x")
        )
        .await
        .unwrap());
    assert!(!store
        .end_scheduled(
            "prod",
            "01MINE0000000000000000000A",
            &ScheduledEnd {
                status: DeploymentStatus::Cancelled,
                at: Utc::now(),
                cancelled_by: Some("bob".into()),
                error: None,
            },
            None,
        )
        .await
        .unwrap());
}

#[tokio::test]
async fn tampered_token_is_refused_before_any_query() {
    let q = mock!(Client::query).then_output(|| QueryOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&q]);
    let store = DynamoStore::new(client, "t");
    assert_eq!(
        store.history("prod", 2, Some("bm9wZQ"), None).await,
        Err(StoreError::InvalidToken)
    );
    assert_eq!(q.num_calls(), 0);
}

fn entry(action: crate::domain::AuditAction) -> crate::domain::AuditEntry {
    crate::domain::AuditEntry::new("prod", "alice", action, Utc::now())
}

/// The audit entry's Put: unconditional, under `ENV#<env>`/`AUDIT#<id>`.
fn is_audit_put(item: &aws_sdk_dynamodb::types::TransactWriteItem, id: &str) -> bool {
    item.put().is_some_and(|p| {
        p.condition_expression().is_none()
            && p.item().get("PK") == Some(&s("ENV#prod"))
            && p.item().get("SK") == Some(&s(format!("AUDIT#{id}")))
            && p.item().get("caller") == Some(&s("alice"))
    })
}

#[tokio::test]
async fn an_audited_change_is_one_transaction_with_its_entry_and_an_unaudited_one_is_not() {
    use crate::domain::{AuditAction, Deployment};
    use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    let start = entry(AuditAction::StartDeployment);
    let cancel = entry(AuditAction::CancelDeployment);
    let register = entry(AuditAction::RegisterEnvironment);
    let update = entry(AuditAction::UpdateEnvironment);
    let (a, b, c, e) = (
        start.audit_id.clone(),
        cancel.audit_id.clone(),
        register.audit_id.clone(),
        update.audit_id.clone(),
    );
    let created = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let i = r.transact_items();
            i.len() == 2
                && i[0].put().is_some_and(|p| {
                    p.condition_expression() == Some("attribute_not_exists(PK)")
                        && p.item().get("SK") == Some(&s("DEP#01MINE0000000000000000000A"))
                })
                && is_audit_put(&i[1], &a)
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let cancelled = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let i = r.transact_items();
            i.len() == 2
                && i[0].update().is_some_and(|u| {
                    u.condition_expression() == Some("#st = :running")
                        && u.update_expression() == "SET cancelRequested = :t, cancelledBy = :by"
                })
                && is_audit_put(&i[1], &b)
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let registered = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let i = r.transact_items();
            i.len() == 3
                && i[0].put().is_some_and(|p| {
                    p.condition_expression() == Some("attribute_not_exists(PK)")
                        && p.item().get("SK") == Some(&s("CONFIG"))
                })
                && i[1].put().is_some_and(|p| {
                    p.condition_expression().is_none()
                        && p.item().get("PK") == Some(&s("ENVIRONMENTS"))
                })
                && is_audit_put(&i[2], &c)
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let updated = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let i = r.transact_items();
            i.len() == 3
                && i[0]
                    .put()
                    .is_some_and(|p| p.condition_expression() == Some("attribute_exists(PK)"))
                && is_audit_put(&i[2], &e)
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    // A step's writes stay single-item requests.
    let put = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let upd = mock!(Client::update_item).then_output(|| UpdateItemOutput::builder().build());
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::Sequential,
        [&created, &cancelled, &registered, &updated, &put, &upd]
    );
    let store = DynamoStore::new(client, "t");
    let d = Deployment::new_running(
        "01MINE0000000000000000000A".into(),
        "prod".into(),
        "alice".into(),
        Default::default(),
        Utc::now(),
    );
    assert!(store.create_deployment(&d, Some(&start)).await.unwrap());
    assert!(store
        .request_cancel("prod", &d.deployment_id, "alice", Some(&cancel))
        .await
        .unwrap());
    let env: crate::domain::Environment = serde_json::from_value(serde_json::json!({
        "environmentId": "prod", "preparationServerId": "i-1",
        "autoScalingGroups": ["g"], "launchTemplateId": "lt-1"
    }))
    .unwrap();
    assert!(store.put_environment(&env, Some(&register)).await.unwrap());
    assert!(store.put_environment(&env, Some(&update)).await.unwrap());
    assert!(store.create_deployment(&d, None).await.unwrap());
    assert!(store
        .request_cancel("prod", &d.deployment_id, "alice", None)
        .await
        .unwrap());
    for rule in [&created, &cancelled, &registered, &updated, &put, &upd] {
        assert_eq!(rule.num_calls(), 1);
    }
}

#[tokio::test]
async fn a_scheduled_change_carries_its_entry_in_the_same_transaction() {
    use crate::domain::AuditAction;
    use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsOutput;
    let cancel = entry(AuditAction::CancelSchedule);
    let id = cancel.audit_id.clone();
    let t = mock!(Client::transact_write_items)
        .match_requests(move |r| {
            let i = r.transact_items();
            // The record's update, the pending entry's delete, the audit Put.
            i.len() == 3
                && i[0].update().is_some()
                && i[1].delete().is_some()
                && is_audit_put(&i[2], &id)
        })
        .then_output(|| TransactWriteItemsOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&t]);
    let store = DynamoStore::new(client, "t");
    let end = ScheduledEnd {
        status: DeploymentStatus::Cancelled,
        at: Utc::now(),
        cancelled_by: Some("alice".into()),
        error: None,
    };
    assert!(store
        .end_scheduled("prod", "01MINE0000000000000000000A", &end, Some(&cancel))
        .await
        .unwrap());
    assert_eq!(t.num_calls(), 1);
}

#[tokio::test]
async fn the_audit_is_one_query_of_its_prefix_newest_first() {
    let q = mock!(Client::query)
        .match_requests(|r| {
            r.scan_index_forward() == Some(false)
                && r.limit() == Some(3)
                && r.key_condition_expression() == Some("PK = :pk AND begins_with(SK, :prefix)")
                && r.expression_attribute_values()
                    .and_then(|v| v.get(":prefix"))
                    == Some(&s("AUDIT#"))
        })
        .then_output(|| QueryOutput::builder().build());
    let client = mock_client!(aws_sdk_dynamodb, [&q]);
    let store = DynamoStore::new(client, "t");
    let page = store.audit("prod", 2, None).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next_token, None);
    assert_eq!(q.num_calls(), 1);
}

#[tokio::test]
async fn a_wait_is_one_item_per_key_and_its_removal_is_conditional_on_the_token() {
    use aws_sdk_dynamodb::operation::delete_item::{DeleteItemError, DeleteItemOutput};
    use aws_sdk_dynamodb::operation::update_item::UpdateItemOutput;
    let wait = crate::domain::Wait {
        step: crate::domain::StepName::ReplaceInstances,
        token: "T1".into(),
        on: vec!["group:a".into(), "group:b".into()],
        at: Utc::now(),
    };
    let put = mock!(Client::put_item)
        .match_requests(|r| {
            let item = r.item().unwrap();
            matches!(item.get("PK"), Some(aws_sdk_dynamodb::types::AttributeValue::S(k)) if k.starts_with("WAIT#group:"))
                && item.get("SK") == Some(&s("WAIT"))
                && matches!(item.get("expiresAt"), Some(aws_sdk_dynamodb::types::AttributeValue::N(_)))
                && item.get("deploymentId") == Some(&s("01JDEP"))
                && r.condition_expression().is_none()
        })
        .then_output(|| PutItemOutput::builder().build());
    let update = mock!(Client::update_item)
        .match_requests(|r| {
            r.update_expression() == Some("SET #rt.#w = :w")
                && r.condition_expression() == Some("attribute_exists(PK)")
        })
        .then_output(|| UpdateItemOutput::builder().build());
    let get = mock!(Client::get_item)
        .match_requests(|r| r.key().and_then(|k| k.get("PK")) == Some(&s("WAIT#group:a")))
        .then_output(move || {
            GetItemOutput::builder()
                .item("PK", s("WAIT#group:a"))
                .item("SK", s("WAIT"))
                .item("environmentId", s("prod"))
                .item("deploymentId", s("01JDEP"))
                .item(
                    "wait",
                    serde_dynamo::to_attribute_value(crate::domain::Wait {
                        step: crate::domain::StepName::ReplaceInstances,
                        token: "T1".into(),
                        on: vec!["group:a".into()],
                        at: Utc::now(),
                    })
                    .unwrap(),
                )
                .build()
        });
    let delete = mock!(Client::delete_item)
        .match_requests(|r| {
            r.condition_expression() == Some("#w.#t = :t")
                && r.expression_attribute_values().and_then(|v| v.get(":t")) == Some(&s("T0"))
        })
        .then_error(|| {
            DeleteItemError::ConditionalCheckFailedException(
                ConditionalCheckFailedException::builder()
                    .meta(
                        ErrorMetadata::builder()
                            .code("ConditionalCheckFailedException")
                            .build(),
                    )
                    .build(),
            )
        });
    let deleted = mock!(Client::delete_item).then_output(|| DeleteItemOutput::builder().build());
    let client = mock_client!(
        aws_sdk_dynamodb,
        RuleMode::MatchAny,
        [&put, &update, &get, &delete, &deleted]
    );
    let store = DynamoStore::new(client, "t");
    store.save_wait("prod", "01JDEP", &wait).await.unwrap();
    assert_eq!((put.num_calls(), update.num_calls()), (2, 1));
    let w = store.waiting_on("group:a").await.unwrap().unwrap();
    assert_eq!(
        (w.deployment_id.as_str(), w.wait.token.as_str()),
        ("01JDEP", "T1")
    );
    // Another token holds the key: its removal is refused and not an error.
    store.clear_wait("group:a", "T0").await.unwrap();
    assert_eq!((delete.num_calls(), deleted.num_calls()), (1, 0));
}
