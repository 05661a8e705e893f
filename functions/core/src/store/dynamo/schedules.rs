//! The transaction items of scheduled changes: the pending-schedule entries
//! and their version counter change together with the deployment record in
//! one transaction, conditioned on the version the caller read.

use super::items::{built, pk, s, schedule_sk, to_av, SCHEDULES};
use super::DynamoStore;
use crate::domain::DeploymentStatus;
use crate::schedule::{ScheduleEntry, Schedules};
use crate::store::StoreError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The counter item and the entries one `begins_with(SK, "SCHEDULE")` Query read.
pub(super) fn decode(items: Vec<HashMap<String, AttributeValue>>) -> Result<Schedules, StoreError> {
    let mut out = Schedules::default();
    for item in items {
        let sk = item
            .get("SK")
            .and_then(|v| v.as_s().ok())
            .map(String::as_str);
        if sk == Some(SCHEDULES) {
            out.version = item
                .get("version")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            continue;
        }
        let id = item.get("deploymentId").and_then(|v| v.as_s().ok());
        let at = item
            .get("scheduledFor")
            .and_then(|v| v.as_s().ok())
            .and_then(|t| t.parse::<DateTime<Utc>>().ok());
        match (id, at) {
            (Some(id), Some(at)) => out.entries.push(ScheduleEntry {
                deployment_id: id.clone(),
                scheduled_for: at,
            }),
            _ => return Err(StoreError::Corrupt(format!("schedule entry {sk:?}"))),
        }
    }
    Ok(out)
}

impl DynamoStore {
    /// The version bump that guards the schedules: succeeds only while they
    /// are still at `seen` (0 = the counter does not exist yet).
    pub(super) fn bump_schedules(
        &self,
        env: &str,
        seen: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let update = built(
            Update::builder()
                .table_name(&self.table)
                .key("PK", pk(env))
                .key("SK", s(SCHEDULES))
                .update_expression("SET version = :next")
                .condition_expression("attribute_not_exists(version) OR version = :seen")
                .expression_attribute_values(":next", AttributeValue::N((seen + 1).to_string()))
                .expression_attribute_values(":seen", AttributeValue::N(seen.to_string()))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    pub(super) fn put_entry(
        &self,
        env: &str,
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .item("PK", pk(env))
                .item("SK", schedule_sk(id))
                .item("deploymentId", s(id))
                .item("scheduledFor", to_av(&at)?)
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    pub(super) fn delete_entry(
        &self,
        env: &str,
        id: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.table)
                .key("PK", pk(env))
                .key("SK", schedule_sk(id))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// An update of a deployment that must still be Scheduled.
    pub(super) fn update_scheduled(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        mut values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut names = names.to_vec();
        names.push(("#st", "status"));
        values.push((":scheduled", s(DeploymentStatus::Scheduled.as_str())));
        self.update_item(env, id, expression, &names, values, "#st = :scheduled")
    }
}
