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
