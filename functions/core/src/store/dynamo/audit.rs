//! The audit trail's items: an entry's `Put`, added to the transaction of
//! the change it records (its pages are `pages.rs`').

use super::items::{built, pk, s, to_item, AUDIT_PREFIX};
use super::DynamoStore;
use crate::domain::AuditEntry;
use crate::store::StoreError;
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
}
