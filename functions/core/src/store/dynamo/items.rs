//! The table's keys and item codec, and the request shapes every operation
//! is built from (read one item, conditional update, transaction, whole
//! partition query), with SDK errors mapped to `StoreError`.

use super::DynamoStore;
use crate::error::{classify_sdk_error, StepError};
use crate::store::StoreError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem, Update};
use serde::Serialize;
use std::collections::HashMap;

pub(super) const CONFIG: &str = "CONFIG";
pub(super) const LOCK: &str = "LOCK";
pub(super) const DEP_PREFIX: &str = "DEP#";
/// The partition listing every environment (a copy of each CONFIG item), so
/// listing is one Query, never a Scan.
pub(super) const ENVIRONMENTS: &str = "ENVIRONMENTS";
/// The schedules' version counter; entries are `SCHEDULE#<id>`, so one
/// `begins_with(SK, "SCHEDULE")` Query reads both.
pub(super) const SCHEDULES: &str = "SCHEDULE";
/// Audit entries: `AUDIT#<ulid>`, so one `begins_with` Query pages them in
/// time order.
pub(super) const AUDIT_PREFIX: &str = "AUDIT#";

pub(super) fn pk(env: &str) -> AttributeValue {
    AttributeValue::S(format!("ENV#{env}"))
}

pub(super) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(super) fn dep_sk(id: &str) -> AttributeValue {
    s(format!("{DEP_PREFIX}{id}"))
}

pub(super) fn to_av<T: Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn to_item<T: Serialize>(v: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_item<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Maps an SDK error; `Ok(())` means the condition failed (the caller
/// decides). Otherwise the one SDK error classification decides whether a
/// retry may help.
pub(super) fn check<
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
>(
    what: &str,
    err: SdkError<E, R>,
) -> Result<(), StoreError> {
    if err.code() == Some("ConditionalCheckFailedException") {
        return Ok(());
    }
    Err(match classify_sdk_error(what, &err) {
        StepError::Retryable(m) => StoreError::Transient(m),
        other => StoreError::Failed(other.message().to_string()),
    })
}

pub(super) fn schedule_sk(id: &str) -> AttributeValue {
    s(format!("{SCHEDULES}#{id}"))
}

pub(super) fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Failed(format!("building a transaction: {e}")))
}

impl DynamoStore {
    /// One TransactWriteItems; false when a condition failed (nothing was written).
    pub(super) async fn transact(
        &self,
        what: &str,
        items: Vec<TransactWriteItem>,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match res {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c)) = err.as_service_error() {
            let codes: Vec<&str> = c
                .cancellation_reasons()
                .iter()
                .filter_map(|r| r.code())
                .collect();
            // A concurrent transaction on the same items: retry; a condition: the caller decides.
            if codes.contains(&"TransactionConflict") && !codes.contains(&"ConditionalCheckFailed") {
                return Err(StoreError::Transient(format!("{what}: transaction conflict")));
            }
            return Ok(false);
        }
        check(what, err)?;
        Ok(false)
    }

    /// Every item of a key range (all pages of a strongly consistent Query):
    /// for the small partitions read whole (environments, pending schedules).
    pub(super) async fn query_all(
        &self,
        what: &str,
        key_condition: &str,
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<Vec<HashMap<String, AttributeValue>>, StoreError> {
        let mut out = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let mut req = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression(key_condition)
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            for (k, v) in &values {
                req = req.expression_attribute_values(*k, v.clone());
            }
            let page = match req.send().await {
                Ok(p) => p,
                Err(e) => {
                    check(what, e)?;
                    return Err(StoreError::Failed(format!(
                        "{what}: unexpected condition failure"
                    )));
                }
            };
            out.extend(page.items.unwrap_or_default());
            match page.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(out),
            }
        }
    }

    pub(super) async fn get(
        &self,
        env: &str,
        sk: AttributeValue,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        match self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", pk(env))
            .key("SK", sk)
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => Ok(out.item),
            Err(e) => {
                check("GetItem", e)?;
                Ok(None)
            }
        }
    }

    /// A conditional update of a deployment record, as a transaction item.
    pub(super) fn update_item(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = self.update(env, id, expression, names, values, condition)?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// A conditional update of a deployment record: sent alone as an
    /// UpdateItem, or within a transaction.
    fn update(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<Update, StoreError> {
        let mut u = Update::builder()
            .table_name(&self.table)
            .key("PK", pk(env))
            .key("SK", dep_sk(id))
            .update_expression(expression)
            .condition_expression(condition);
        for (k, v) in names {
            u = u.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            u = u.expression_attribute_values(k, v);
        }
        built(u.build())
    }

    /// Sets one value on an existing deployment record; a missing record is
    /// an error (a step only writes to the record it loaded).
    pub(super) async fn set_on_deployment(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        value: (&str, AttributeValue),
    ) -> Result<(), StoreError> {
        let found = self
            .update_deployment(
                env,
                id,
                expression,
                names,
                vec![value],
                "attribute_exists(PK)",
            )
            .await?;
        if found {
            Ok(())
        } else {
            Err(StoreError::Failed(format!("deployment {id} not found")))
        }
    }

    /// One UpdateItem on an existing deployment record.
    pub(super) async fn update_deployment(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<bool, StoreError> {
        let u = self.update(env, id, expression, names, values, condition)?;
        let req = self
            .client
            .update_item()
            .table_name(u.table_name)
            .set_key(Some(u.key))
            .update_expression(u.update_expression)
            .set_condition_expression(u.condition_expression)
            .set_expression_attribute_names(u.expression_attribute_names)
            .set_expression_attribute_values(u.expression_attribute_values);
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                check("UpdateItem", e)?;
                Ok(false)
            }
        }
    }
}
