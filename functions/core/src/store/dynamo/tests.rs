//! DynamoStore's requests against mocked DynamoDB responses: conditions,
//! names used, one Query per page, one transaction per scheduled change.

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
