//! The audit trail's items: an entry's `Put`, added to the transaction of
//! the change it records, and the newest-first pages of one environment's
//! entries.

use super::items::{built, check, from_item, pk, s, to_item, AUDIT_PREFIX};
use super::DynamoStore;
use crate::domain::AuditEntry;
use crate::store::{decode_token, encode_token, Page, StoreError};
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};

impl DynamoStore {
    /// The entry's `Put`. Unconditional: its key is its own id, fixed before
    /// the first attempt, so a write retried after a lost answer (the SDK's
    /// retries also carry one ClientRequestToken, which DynamoDB answers
    /// without writing again) rewrites that same item rather than adding
    /// one — and does not fail the change as a condition would.
    pub(super) fn put_audit(&self, entry: &AuditEntry) -> Result<TransactWriteItem, StoreError> {
        let mut item = to_item(entry)?;
        item.insert("PK".into(), pk(&entry.environment_id));
        item.insert("SK".into(), s(format!("{AUDIT_PREFIX}{}", entry.audit_id)));
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// `items` with the entry's `Put` added, when there is one.
    pub(super) fn with_audit(
        &self,
        mut items: Vec<TransactWriteItem>,
        entry: Option<&AuditEntry>,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        if let Some(e) = entry {
            items.push(self.put_audit(e)?);
        }
        Ok(items)
    }

    /// One Query of `limit + 1` entries, newest first, after the token's
    /// entry (the extra one tells whether another page exists).
    pub(super) async fn audit_page(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let after = next_token
            .map(|t| decode_token(environment_id, t))
            .transpose()?;
        let limit = limit.clamp(1, 1000) as usize;
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :audit)")
            .expression_attribute_values(":pk", pk(environment_id))
            .expression_attribute_values(":audit", s(AUDIT_PREFIX))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        if let Some(after) = &after {
            req = req
                .exclusive_start_key("PK", pk(environment_id))
                .exclusive_start_key("SK", s(format!("{AUDIT_PREFIX}{after}")));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                check("Query audit", e)?;
                return Err(StoreError::Failed(
                    "Query audit: unexpected condition failure".into(),
                ));
            }
        };
        let mut items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<AuditEntry>)
            .collect::<Result<Vec<_>, _>>()?;
        let next_token = if items.len() > limit {
            items.truncate(limit);
            items
                .last()
                .map(|e| encode_token(environment_id, &e.audit_id))
        } else {
            None
        };
        Ok(Page { items, next_token })
    }
}
