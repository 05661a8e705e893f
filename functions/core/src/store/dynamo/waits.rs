//! The waits' items: one per wake-up key (`WAIT#<key>`, sort key `WAIT`),
//! holding the deployment and the task token registered last under it, and
//! the copy on the deployment record (`runtime.wait`).

use super::items::{check, from_item, s, to_av, to_item};
use super::DynamoStore;
use crate::domain::Wait;
use crate::store::{StoreError, Waiting};
use aws_sdk_dynamodb::types::AttributeValue;

const WAIT_PREFIX: &str = "WAIT#";
const WAIT_SK: &str = "WAIT";
/// The table's TTL attribute (template.yaml): a registration no event
/// removed (its wait ended by the step's own check or by its timeout) is
/// deleted by DynamoDB a day after it was saved.
const EXPIRES_AT: &str = "expiresAt";
const KEPT_SECONDS: i64 = 24 * 3600;

fn key_pk(key: &str) -> AttributeValue {
    s(format!("{WAIT_PREFIX}{key}"))
}

impl DynamoStore {
    pub(super) async fn put_wait(
        &self,
        env: &str,
        id: &str,
        wait: &Wait,
    ) -> Result<(), StoreError> {
        for key in &wait.on {
            let mut item = to_item(&Waiting {
                environment_id: env.into(),
                deployment_id: id.into(),
                wait: wait.clone(),
            })?;
            item.insert("PK".into(), key_pk(key));
            item.insert("SK".into(), s(WAIT_SK));
            item.insert(
                EXPIRES_AT.into(),
                AttributeValue::N((wait.at.timestamp() + KEPT_SECONDS).to_string()),
            );
            if let Err(e) = self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
            {
                // No condition: only an SDK error can come back.
                check("PutItem wait", e)?;
            }
        }
        self.set_on_deployment(
            env,
            id,
            "SET #rt.#w = :w",
            &[("#rt", "runtime"), ("#w", "wait")],
            (":w", to_av(wait)?),
        )
        .await
    }

    pub(super) async fn get_wait(&self, key: &str) -> Result<Option<Waiting>, StoreError> {
        match self
            .client
            .get_item()
            .table_name(&self.table)
            .key("PK", key_pk(key))
            .key("SK", s(WAIT_SK))
            .consistent_read(true)
            .send()
            .await
        {
            Ok(out) => match out.item {
                Some(mut item) => {
                    for k in ["PK", "SK", EXPIRES_AT] {
                        item.remove(k);
                    }
                    Ok(Some(from_item(item)?))
                }
                None => Ok(None),
            },
            Err(e) => {
                check("GetItem wait", e)?;
                Ok(None)
            }
        }
    }

    pub(super) async fn delete_wait(&self, key: &str, token: &str) -> Result<(), StoreError> {
        match self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", key_pk(key))
            .key("SK", s(WAIT_SK))
            .condition_expression("#w.#t = :t")
            .expression_attribute_names("#w", "wait")
            .expression_attribute_names("#t", "token")
            .expression_attribute_values(":t", s(token))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            // A newer wait holds the key (or none does): it stays.
            Err(e) => check("DeleteItem wait", e),
        }
    }
}
