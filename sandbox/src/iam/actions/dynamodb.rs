//! DynamoDB's map entries (JSON protocol: the action from `X-Amz-Target`,
//! the table from the body's `TableName`). Item reads and writes are
//! authorized on the table (a Query on an index, on the index);
//! TransactWriteItems is not an IAM action: each of its items is authorized
//! as the single-item action it performs, on that item's table.

use super::{Call, MapError};
use crate::iam::{Check, ACCOUNT, REGION};
use iam_rs::ContextValue;
use serde_json::Value;

pub fn checks(call: &Call<'_>) -> Result<Vec<Check>, MapError> {
    match call.action {
        "GetItem" | "PutItem" | "UpdateItem" | "DeleteItem" => {
            let body = body(call)?;
            Ok(vec![item(call.action, table_name(&body)?, None)])
        }
        "Query" => {
            let body = body(call)?;
            let table = table_arn(table_name(&body)?);
            // A Query on a secondary index is authorized on the index's ARN.
            let resource = match body.get("IndexName").and_then(Value::as_str) {
                Some(index) => format!("{table}/index/{index}"),
                None => table,
            };
            Ok(vec![check("Query", resource, Vec::new())])
        }
        "TransactWriteItems" => transact_write(&body(call)?),
        other => Err(MapError::NoEntry(format!("dynamodb:{other}"))),
    }
}

/// One authorization per item, in the request's order: `Put`, `Update`,
/// `Delete` as PutItem, UpdateItem, DeleteItem (with
/// `dynamodb:EnclosingOperation`, which AWS sets for an action performed
/// inside a transaction), `ConditionCheck` as ConditionCheckItem.
fn transact_write(body: &Value) -> Result<Vec<Check>, MapError> {
    let items = body
        .get("TransactItems")
        .and_then(Value::as_array)
        .filter(|items| !items.is_empty())
        .ok_or_else(|| MapError::Invalid("TransactWriteItems without TransactItems".into()))?;
    items
        .iter()
        .map(|entry| {
            let (kind, op) = entry
                .as_object()
                .and_then(|o| o.iter().next())
                .ok_or_else(|| MapError::Invalid("empty TransactItems entry".into()))?;
            let table = table_name(op)?;
            match kind.as_str() {
                "Put" => Ok(item("PutItem", table, Some("TransactWriteItems"))),
                "Update" => Ok(item("UpdateItem", table, Some("TransactWriteItems"))),
                "Delete" => Ok(item("DeleteItem", table, Some("TransactWriteItems"))),
                // The reference lists no EnclosingOperation key for
                // ConditionCheckItem.
                "ConditionCheck" => Ok(item("ConditionCheckItem", table, None)),
                other => Err(MapError::Invalid(format!(
                    "unknown TransactItems entry {other}"
                ))),
            }
        })
        .collect()
}

fn item(action: &str, table: &str, enclosing: Option<&str>) -> Check {
    let context = enclosing
        .map(|op| {
            vec![(
                "dynamodb:EnclosingOperation".to_string(),
                ContextValue::String(op.to_string()),
            )]
        })
        .unwrap_or_default();
    check(action, table_arn(table), context)
}

fn check(action: &str, resource: String, context: Vec<(String, ContextValue)>) -> Check {
    Check {
        action: format!("dynamodb:{action}"),
        resource,
        context,
        on_behalf_of: None,
    }
}

fn body(call: &Call<'_>) -> Result<Value, MapError> {
    serde_json::from_slice(call.body)
        .map_err(|e| MapError::Invalid(format!("dynamodb:{} body: {e}", call.action)))
}

fn table_name(v: &Value) -> Result<&str, MapError> {
    v.get("TableName")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| MapError::Invalid("no TableName".into()))
}

/// `TableName` is a name or (DynamoDB accepts both) the table's ARN.
fn table_arn(table: &str) -> String {
    if table.starts_with("arn:") {
        table.to_string()
    } else {
        format!("arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{table}")
    }
}

#[cfg(test)]
#[path = "tests/dynamodb.rs"]
mod tests;
