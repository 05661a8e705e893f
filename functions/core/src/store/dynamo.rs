//! DynamoDB single-table store (layout in DESIGN §3):
//! `ENV#<env>`/`CONFIG`, `ENV#<env>`/`LOCK`, `ENV#<env>`/`DEP#<ulid>`, and for
//! scheduled deployments `ENV#<env>`/`SCHEDULE` (a version counter) with one
//! `ENV#<env>`/`SCHEDULE#<ulid>` entry per pending schedule.
//! Every state change is one conditional write (or one transaction when a
//! deployment and its schedule entry change together); history is one `Query`.

use super::{
    decode_token, encode_token, LockOutcome, Outcome, Page, ScheduledEnd, Store, StoreError,
};
use crate::domain::{
    Deployment, DeploymentStatus, Environment, IgnoredRun, Runtime, ScheduleInfo, StepRecord,
};
use crate::error::is_transient_code;
use crate::schedule::{ScheduleEntry, Schedules};
use async_trait::async_trait;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, TransactWriteItem, Update};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::collections::HashMap;

const CONFIG: &str = "CONFIG";
const LOCK: &str = "LOCK";
const DEP_PREFIX: &str = "DEP#";
/// The partition listing every environment (a copy of each CONFIG item), so
/// listing is one Query, never a Scan.
const ENVIRONMENTS: &str = "ENVIRONMENTS";
/// The schedules' version counter; entries are `SCHEDULE#<id>`, so one
/// `begins_with(SK, "SCHEDULE")` Query reads both.
const SCHEDULES: &str = "SCHEDULE";

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn pk(env: &str) -> AttributeValue {
    AttributeValue::S(format!("ENV#{env}"))
}

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn dep_sk(id: &str) -> AttributeValue {
    s(format!("{DEP_PREFIX}{id}"))
}

fn to_av<T: Serialize>(v: &T) -> Result<AttributeValue, StoreError> {
    serde_dynamo::to_attribute_value(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn to_item<T: Serialize>(v: &T) -> Result<HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn from_item<T: serde::de::DeserializeOwned>(
    item: HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Maps an SDK error; `Ok(())` means the condition failed (the caller decides).
fn check<E: ProvideErrorMetadata + std::error::Error + 'static, R: std::fmt::Debug>(
    what: &str,
    err: SdkError<E, R>,
) -> Result<(), StoreError> {
    let code = err.code().unwrap_or("").to_string();
    if code == "ConditionalCheckFailedException" {
        return Ok(());
    }
    let msg = err.message().unwrap_or("").to_string();
    Err(match err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            StoreError::Transient(format!("{what}: {err}"))
        }
        _ if is_transient_code(&code) => StoreError::Transient(format!("{what}: {code} {msg}")),
        _ => StoreError::Failed(format!("{what}: {code} {msg}")),
    })
}

fn schedule_sk(id: &str) -> AttributeValue {
    s(format!("{SCHEDULES}#{id}"))
}

fn built<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, StoreError> {
    r.map_err(|e| StoreError::Failed(format!("building a transaction: {e}")))
}

impl DynamoStore {
    /// One TransactWriteItems; false when a condition failed (nothing was written).
    async fn transact(
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

    /// The version bump that guards the schedules: succeeds only while they
    /// are still at `seen` (0 = the counter does not exist yet).
    fn bump_schedules(&self, env: &str, seen: u64) -> Result<TransactWriteItem, StoreError> {
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

    fn put_entry(
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

    fn delete_entry(&self, env: &str, id: &str) -> Result<TransactWriteItem, StoreError> {
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
    fn update_scheduled(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut u = Update::builder()
            .table_name(&self.table)
            .key("PK", pk(env))
            .key("SK", dep_sk(id))
            .update_expression(expression)
            .condition_expression("#st = :scheduled")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":scheduled", s(DeploymentStatus::Scheduled.as_str()));
        for (k, v) in names {
            u = u.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            u = u.expression_attribute_values(k, v);
        }
        Ok(TransactWriteItem::builder()
            .update(built(u.build())?)
            .build())
    }

    /// Every item of a key range (all pages of a strongly consistent Query):
    /// for the small partitions read whole (environments, pending schedules).
    async fn query_all(
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

    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    async fn get(
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

    /// One UpdateItem on an existing deployment record.
    async fn update_deployment(
        &self,
        env: &str,
        id: &str,
        expression: &str,
        names: &[(&str, &str)],
        values: Vec<(&str, AttributeValue)>,
        condition: &str,
    ) -> Result<bool, StoreError> {
        let mut req = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("PK", pk(env))
            .key("SK", dep_sk(id))
            .update_expression(expression)
            .condition_expression(condition);
        for (k, v) in names {
            req = req.expression_attribute_names(*k, *v);
        }
        for (k, v) in values {
            req = req.expression_attribute_values(k, v);
        }
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                check("UpdateItem", e)?;
                Ok(false)
            }
        }
    }
}

#[async_trait]
impl Store for DynamoStore {
    async fn environment(&self, environment_id: &str) -> Result<Option<Environment>, StoreError> {
        self.get(environment_id, s(CONFIG))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn put_environment(&self, env: &Environment) -> Result<(), StoreError> {
        let item = to_item(env)?;
        // The config, then its listing copy; both are idempotent puts.
        for (p, sk) in [
            (pk(&env.environment_id), s(CONFIG)),
            (s(ENVIRONMENTS), s(format!("ENV#{}", env.environment_id))),
        ] {
            let mut item = item.clone();
            item.insert("PK".into(), p);
            item.insert("SK".into(), sk);
            self.client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(item))
                .send()
                .await
                .map(|_| ())
                .or_else(|e| check("PutItem", e))?;
        }
        Ok(())
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        self.query_all(
            "Query environments",
            "PK = :pk",
            vec![(":pk", s(ENVIRONMENTS))],
        )
        .await?
        .into_iter()
        .map(from_item)
        .collect()
    }

    async fn acquire_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
        at: DateTime<Utc>,
    ) -> Result<LockOutcome, StoreError> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("PK", pk(environment_id))
            .item("SK", s(LOCK))
            .item("deploymentId", s(deployment_id))
            .item("acquiredAt", s(at.to_rfc3339()))
            .condition_expression("attribute_not_exists(PK) OR deploymentId = :d")
            .expression_attribute_values(":d", s(deployment_id))
            .send()
            .await;
        match res {
            Ok(_) => Ok(LockOutcome::Acquired),
            Err(e) => {
                check("PutItem lock", e)?;
                // Condition failed: someone else holds it (read who, for the message).
                let holder = self.lock_holder(environment_id).await?;
                Ok(match holder {
                    Some(h) if h != deployment_id => LockOutcome::HeldBy(h),
                    // Released between our write and our read: let the caller retry.
                    _ => return Err(StoreError::Transient("lock changed hands, retry".into())),
                })
            }
        }
    }

    async fn release_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("PK", pk(environment_id))
            .key("SK", s(LOCK))
            .condition_expression("deploymentId = :d")
            .expression_attribute_values(":d", s(deployment_id))
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                check("DeleteItem lock", e)?;
                Ok(false)
            }
        }
    }

    async fn lock_holder(&self, environment_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(environment_id, s(LOCK)).await?.and_then(|item| {
            item.get("deploymentId")
                .and_then(|v| v.as_s().ok())
                .cloned()
        }))
    }

    async fn create_deployment(&self, d: &Deployment) -> Result<bool, StoreError> {
        let mut item = to_item(d)?;
        item.insert("PK".into(), pk(&d.environment_id));
        item.insert("SK".into(), dep_sk(&d.deployment_id));
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK)")
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                check("PutItem deployment", e)?;
                Ok(false)
            }
        }
    }

    async fn deployment(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        self.get(environment_id, dep_sk(deployment_id))
            .await?
            .map(from_item)
            .transpose()
    }

    async fn start_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        at: DateTime<Utc>,
        execution_arn: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut expr = String::from("SET #st = :running, startedAt = :at");
        let mut values = vec![
            (":running", s(DeploymentStatus::Running.as_str())),
            (":at", to_av(&at)?),
        ];
        if let Some(arn) = execution_arn {
            expr.push_str(", executionArn = :arn");
            values.push((":arn", s(arn)));
        }
        let items = vec![
            self.update_scheduled(environment_id, deployment_id, &expr, &[], values)?,
            self.delete_entry(environment_id, deployment_id)?,
        ];
        self.transact("TransactWriteItems start scheduled", items)
            .await
    }

    async fn schedules(&self, environment_id: &str) -> Result<Schedules, StoreError> {
        let items = self
            .query_all(
                "Query schedules",
                "PK = :pk AND begins_with(SK, :sched)",
                vec![(":pk", pk(environment_id)), (":sched", s(SCHEDULES))],
            )
            .await?;
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

    async fn create_scheduled(
        &self,
        d: &Deployment,
        seen_version: u64,
    ) -> Result<bool, StoreError> {
        let at = d.scheduled_for.ok_or_else(|| {
            StoreError::Failed("a scheduled deployment needs scheduledFor".into())
        })?;
        let mut item = to_item(d)?;
        item.insert("PK".into(), pk(&d.environment_id));
        item.insert("SK".into(), dep_sk(&d.deployment_id));
        let put = built(
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)")
                .build(),
        )?;
        let items = vec![
            self.bump_schedules(&d.environment_id, seen_version)?,
            self.put_entry(&d.environment_id, &d.deployment_id, at)?,
            TransactWriteItem::builder().put(put).build(),
        ];
        self.transact("TransactWriteItems create scheduled", items)
            .await
    }

    async fn reschedule(
        &self,
        environment_id: &str,
        deployment_id: &str,
        scheduled_for: DateTime<Utc>,
        schedule: &ScheduleInfo,
        seen_version: u64,
    ) -> Result<bool, StoreError> {
        let items = vec![
            self.bump_schedules(environment_id, seen_version)?,
            self.update_scheduled(
                environment_id,
                deployment_id,
                "SET scheduledFor = :sf, schedule = :sc",
                &[],
                vec![(":sf", to_av(&scheduled_for)?), (":sc", to_av(schedule)?)],
            )?,
            self.put_entry(environment_id, deployment_id, scheduled_for)?,
        ];
        self.transact("TransactWriteItems reschedule", items).await
    }

    async fn end_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        end: &ScheduledEnd,
    ) -> Result<bool, StoreError> {
        let mut expr = String::from("SET #st = :end, endedAt = :at, durationMs = :zero");
        let mut values = vec![
            (":end", s(end.status.as_str())),
            (":at", to_av(&end.at)?),
            (":zero", AttributeValue::N("0".into())),
        ];
        if let Some(by) = &end.cancelled_by {
            expr.push_str(", cancelledBy = :by");
            values.push((":by", s(by)));
        }
        // DynamoDB refuses unused ExpressionAttributeNames: #err only with an error.
        let mut names = vec![];
        if let Some(e) = &end.error {
            expr.push_str(", #err = :err");
            values.push((":err", to_av(e)?));
            names.push(("#err", "error"));
        }
        let items = vec![
            self.update_scheduled(environment_id, deployment_id, &expr, &names, values)?,
            self.delete_entry(environment_id, deployment_id)?,
        ];
        self.transact("TransactWriteItems end scheduled", items)
            .await
    }

    async fn claim_execution(
        &self,
        environment_id: &str,
        deployment_id: &str,
        arn: &str,
    ) -> Result<bool, StoreError> {
        self.update_deployment(
            environment_id,
            deployment_id,
            "SET executionArn = :a",
            &[],
            vec![(":a", s(arn))],
            "attribute_exists(PK) AND (attribute_not_exists(executionArn) OR executionArn = :a)",
        )
        .await
    }

    async fn record_ignored(
        &self,
        environment_id: &str,
        deployment_id: &str,
        run: &IgnoredRun,
    ) -> Result<(), StoreError> {
        self.update_deployment(
            environment_id,
            deployment_id,
            "SET ignoredRuns = list_append(if_not_exists(ignoredRuns, :none), :run)",
            &[],
            vec![
                (":none", AttributeValue::L(vec![])),
                (":run", AttributeValue::L(vec![to_av(run)?])),
            ],
            "attribute_exists(PK)",
        )
        .await
        .map(|_| ())
    }

    async fn request_cancel(
        &self,
        environment_id: &str,
        deployment_id: &str,
        by: &str,
    ) -> Result<bool, StoreError> {
        self.update_deployment(
            environment_id,
            deployment_id,
            "SET cancelRequested = :t, cancelledBy = :by",
            &[("#st", "status")],
            vec![
                (":t", AttributeValue::Bool(true)),
                (":by", s(by)),
                (":running", s(DeploymentStatus::Running.as_str())),
            ],
            "#st = :running",
        )
        .await
    }

    async fn save_step(
        &self,
        environment_id: &str,
        deployment_id: &str,
        index: usize,
        step: &StepRecord,
    ) -> Result<(), StoreError> {
        let ok = self
            .update_deployment(
                environment_id,
                deployment_id,
                &format!("SET steps[{index}] = :step"),
                &[],
                vec![(":step", to_av(step)?)],
                "attribute_exists(PK)",
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(StoreError::Failed(format!(
                "deployment {deployment_id} not found"
            )))
        }
    }

    async fn save_runtime(
        &self,
        environment_id: &str,
        deployment_id: &str,
        runtime: &Runtime,
    ) -> Result<(), StoreError> {
        let ok = self
            .update_deployment(
                environment_id,
                deployment_id,
                "SET #rt = :rt",
                &[("#rt", "runtime")],
                vec![(":rt", to_av(runtime)?)],
                "attribute_exists(PK)",
            )
            .await?;
        if ok {
            Ok(())
        } else {
            Err(StoreError::Failed(format!(
                "deployment {deployment_id} not found"
            )))
        }
    }

    async fn finish(
        &self,
        environment_id: &str,
        deployment_id: &str,
        o: &Outcome,
    ) -> Result<bool, StoreError> {
        let mut expr = String::from("SET #st = :st, endedAt = :end, durationMs = :dur");
        let mut values = vec![
            (":st", s(o.status.as_str())),
            (":end", to_av(&o.ended_at)?),
            (":dur", AttributeValue::N(o.duration_ms.to_string())),
            (":running", s(DeploymentStatus::Running.as_str())),
            (":scheduled", s(DeploymentStatus::Scheduled.as_str())),
        ];
        if let Some(v) = &o.generated_version {
            expr.push_str(", generatedVersion = :gv");
            values.push((":gv", to_av(v)?));
        }
        // DynamoDB refuses unused ExpressionAttributeNames: #err only with an error.
        let mut names = vec![("#st", "status")];
        if let Some(e) = &o.error {
            expr.push_str(", #err = :err");
            values.push((":err", to_av(e)?));
            names.push(("#err", "error"));
        }
        self.update_deployment(
            environment_id,
            deployment_id,
            &expr,
            &names,
            values,
            "#st IN (:running, :scheduled)",
        )
        .await
    }

    async fn history(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
        status: Option<DeploymentStatus>,
    ) -> Result<Page, StoreError> {
        let after = next_token
            .map(|t| decode_token(environment_id, t))
            .transpose()?;
        let limit = limit.clamp(1, 1000) as usize;
        // One Query of limit+1 items: the extra item tells whether another page
        // exists, so the last page never comes with a token to an empty page.
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :dep)")
            .expression_attribute_values(":pk", pk(environment_id))
            .expression_attribute_values(":dep", s(DEP_PREFIX))
            .scan_index_forward(false)
            .limit(limit as i32 + 1);
        if let Some(st) = status {
            req = req
                .filter_expression("#st = :st")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":st", s(st.as_str()));
        }
        if let Some(after) = &after {
            req = req
                .exclusive_start_key("PK", pk(environment_id))
                .exclusive_start_key("SK", dep_sk(after));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) => {
                check("Query", e)?;
                return Err(StoreError::Failed(
                    "Query: unexpected condition failure".into(),
                ));
            }
        };
        // Where the Query stopped reading: with a status filter, a page can be
        // short although more items follow.
        let evaluated = out
            .last_evaluated_key
            .as_ref()
            .and_then(|k| k.get("SK"))
            .and_then(|v| v.as_s().ok())
            .and_then(|sk| sk.strip_prefix(DEP_PREFIX))
            .map(str::to_string);
        let mut items = out
            .items
            .unwrap_or_default()
            .into_iter()
            .map(from_item::<Deployment>)
            .collect::<Result<Vec<_>, _>>()?;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|d| d.deployment_id.clone())
        } else if status.is_some() {
            evaluated
        } else {
            None
        };
        Ok(Page {
            items,
            next_token: next.map(|id| encode_token(environment_id, &id)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::get_item::GetItemOutput;
    use aws_sdk_dynamodb::operation::put_item::{PutItemError, PutItemOutput};
    use aws_sdk_dynamodb::operation::query::QueryOutput;
    use aws_sdk_dynamodb::types::error::ConditionalCheckFailedException;
    use aws_smithy_mocks::{mock, mock_client, RuleMode};

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
}
