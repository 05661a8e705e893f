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
mod tests {
    use super::*;
    use std::collections::HashMap;

    const TABLE: &str = "arn:aws:dynamodb:us-east-1:000000000000:table/autosky";

    fn map(action: &str, body: &str) -> Result<Vec<Check>, MapError> {
        let form = HashMap::new();
        checks(&Call {
            service: "dynamodb",
            action,
            method: "POST",
            path: "/",
            query: "",
            form: &form,
            body: body.as_bytes(),
        })
    }

    fn only(action: &str, body: &str) -> Check {
        let mut c = map(action, body).unwrap();
        assert_eq!(c.len(), 1, "{c:?}");
        c.remove(0)
    }

    fn plain(action: &str, resource: &str) -> Check {
        Check {
            action: action.into(),
            resource: resource.into(),
            context: vec![],
            on_behalf_of: None,
        }
    }

    #[test]
    fn get_item_is_authorized_on_the_table() {
        let body = r#"{"TableName":"autosky","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"DEP#1"}},"ConsistentRead":true}"#;
        assert_eq!(only("GetItem", body), plain("dynamodb:GetItem", TABLE));
    }

    #[test]
    fn put_item_is_authorized_on_the_table() {
        let body = r#"{"TableName":"autosky","Item":{"PK":{"S":"ENV#prod"},"SK":{"S":"LOCK"}},"ConditionExpression":"attribute_not_exists(PK)"}"#;
        assert_eq!(only("PutItem", body), plain("dynamodb:PutItem", TABLE));
    }

    #[test]
    fn update_item_is_authorized_on_the_table() {
        let body = r##"{"TableName":"autosky","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"DEP#1"}},"UpdateExpression":"SET #s = :s","ExpressionAttributeNames":{"#s":"status"},"ExpressionAttributeValues":{":s":{"S":"Done"}}}"##;
        assert_eq!(
            only("UpdateItem", body),
            plain("dynamodb:UpdateItem", TABLE)
        );
    }

    #[test]
    fn delete_item_is_authorized_on_the_table() {
        let body = r#"{"TableName":"autosky","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"LOCK"}}}"#;
        assert_eq!(
            only("DeleteItem", body),
            plain("dynamodb:DeleteItem", TABLE)
        );
    }

    #[test]
    fn a_table_named_by_its_arn_is_authorized_on_that_arn() {
        let body = format!(r#"{{"TableName":"{TABLE}","Key":{{}}}}"#);
        assert_eq!(only("GetItem", &body), plain("dynamodb:GetItem", TABLE));
    }

    #[test]
    fn query_is_authorized_on_the_table() {
        let body = r#"{"TableName":"autosky","KeyConditionExpression":"PK = :pk AND begins_with(SK, :dep)","ExpressionAttributeValues":{":pk":{"S":"ENV#prod"},":dep":{"S":"DEP#"}},"ScanIndexForward":false,"Limit":21}"#;
        assert_eq!(only("Query", body), plain("dynamodb:Query", TABLE));
    }

    #[test]
    fn query_on_an_index_is_authorized_on_the_index() {
        let body = r#"{"TableName":"autosky","IndexName":"by-status","KeyConditionExpression":"st = :s","ExpressionAttributeValues":{":s":{"S":"Running"}}}"#;
        assert_eq!(
            only("Query", body),
            plain("dynamodb:Query", &format!("{TABLE}/index/by-status"))
        );
    }

    #[test]
    fn transact_write_items_is_authorized_per_item_on_each_items_table() {
        let body = r#"{"TransactItems":[
            {"Put":{"TableName":"autosky","Item":{"PK":{"S":"ENV#prod"},"SK":{"S":"SCHEDULES#1"}},"ConditionExpression":"attribute_not_exists(PK)"}},
            {"Update":{"TableName":"other","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"DEP#1"}},"UpdateExpression":"SET a = :a","ExpressionAttributeValues":{":a":{"S":"x"}}}},
            {"Delete":{"TableName":"autosky","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"SCHEDULES#0"}}}},
            {"ConditionCheck":{"TableName":"autosky","Key":{"PK":{"S":"ENV#prod"},"SK":{"S":"LOCK"}},"ConditionExpression":"attribute_exists(PK)"}}
        ]}"#;
        let got = map("TransactWriteItems", body).unwrap();
        let enclosing = || {
            vec![(
                "dynamodb:EnclosingOperation".to_string(),
                ContextValue::String("TransactWriteItems".into()),
            )]
        };
        let in_txn = |action: &str, resource: &str| Check {
            context: enclosing(),
            ..plain(action, resource)
        };
        assert_eq!(
            got,
            vec![
                in_txn("dynamodb:PutItem", TABLE),
                in_txn(
                    "dynamodb:UpdateItem",
                    "arn:aws:dynamodb:us-east-1:000000000000:table/other"
                ),
                in_txn("dynamodb:DeleteItem", TABLE),
                plain("dynamodb:ConditionCheckItem", TABLE),
            ]
        );
    }

    #[test]
    fn a_transaction_item_without_a_table_is_invalid() {
        let body = r#"{"TransactItems":[{"Put":{"Item":{}}}]}"#;
        assert!(matches!(
            map("TransactWriteItems", body),
            Err(MapError::Invalid(_))
        ));
    }

    #[test]
    fn actions_without_an_entry_are_refused() {
        assert_eq!(
            map("Scan", r#"{"TableName":"autosky"}"#),
            Err(MapError::NoEntry("dynamodb:Scan".into()))
        );
        assert_eq!(
            map("TransactGetItems", "{}"),
            Err(MapError::NoEntry("dynamodb:TransactGetItems".into()))
        );
    }
}
