//! DynamoDB single-table store. Items, by partition key `PK` / sort key `SK`:
//! `ENV#<env>`/`CONFIG` (the environment), `ENV#<env>`/`LOCK`,
//! `ENV#<env>`/`DEP#<ulid>` (a deployment), a copy of each environment under
//! `ENVIRONMENTS`/`ENV#<env>` (listing without a Scan), and for scheduled
//! deployments `ENV#<env>`/`SCHEDULE` (a version counter) with one
//! `ENV#<env>`/`SCHEDULE#<ulid>` entry per pending schedule, and the audit
//! trail: `ENV#<env>`/`AUDIT#<ulid>`, one entry per change made through the
//! API.
//! Every state change is one conditional write, or one transaction when
//! several items change together: a deployment and its schedule entry, an
//! environment and its listing copy, and any change the API makes with its
//! audit entry. History and each audit page are one `Query`.
//!
//! This file is the `Store` implementation, one method per operation (a
//! trait impl is one block, hence its length); the keys, codec and
//! request helpers are in `items`, the scheduled changes' transaction items
//! in `schedules`, the audit entries' in `audit`.

mod audit;
mod items;
mod pages;
mod schedules;
#[cfg(test)]
mod tests;
mod waits;

use super::{LockOutcome, Outcome, Page, ScheduledEnd, Store, StoreError, Waiting};
use crate::domain::{
    AuditAction, AuditEntry, Deployment, DeploymentStatus, Environment, IgnoredRun, Runtime,
    ScheduleInfo, StepRecord, Wait,
};
use crate::schedule::Schedules;
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use aws_sdk_dynamodb::Client;
use chrono::{DateTime, Utc};
use items::{
    built, check, dep_sk, from_item, pk, s, to_av, to_item, AUDIT_PREFIX, CONFIG, DEP_PREFIX,
    ENVIRONMENTS, LOCK, SCHEDULES,
};
use pages::PageQuery;

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
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

    async fn put_environment(
        &self,
        env: &Environment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let item = to_item(env)?;
        // The entry says whether this registers or updates: the config item
        // must then be absent, or present.
        let condition = match audit.map(|a| a.action) {
            Some(AuditAction::RegisterEnvironment) => Some("attribute_not_exists(PK)"),
            Some(AuditAction::UpdateEnvironment) => Some("attribute_exists(PK)"),
            _ => None,
        };
        // The config and its listing copy, in one transaction: the list
        // never shows another version of an environment than its own item.
        let mut items = Vec::new();
        for (p, sk, condition) in [
            (pk(&env.environment_id), s(CONFIG), condition),
            (
                s(ENVIRONMENTS),
                s(format!("ENV#{}", env.environment_id)),
                None,
            ),
        ] {
            let mut item = item.clone();
            item.insert("PK".into(), p);
            item.insert("SK".into(), sk);
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string));
            items.push(
                TransactWriteItem::builder()
                    .put(built(put.build())?)
                    .build(),
            );
        }
        let items = self.with_audit(items, audit)?;
        self.transact("TransactWriteItems environment", items).await
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

    async fn create_deployment(
        &self,
        d: &Deployment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let mut item = to_item(d)?;
        item.insert("PK".into(), pk(&d.environment_id));
        item.insert("SK".into(), dep_sk(&d.deployment_id));
        if audit.is_some() {
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(PK)");
            let items = vec![TransactWriteItem::builder()
                .put(built(put.build())?)
                .build()];
            let items = self.with_audit(items, audit)?;
            return self
                .transact("TransactWriteItems create deployment", items)
                .await;
        }
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
        schedules::decode(items)
    }

    async fn create_scheduled(
        &self,
        d: &Deployment,
        seen_version: u64,
        audit: Option<&AuditEntry>,
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
        let items = self.with_audit(items, audit)?;
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
        audit: Option<&AuditEntry>,
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
        let items = self.with_audit(items, audit)?;
        self.transact("TransactWriteItems reschedule", items).await
    }

    async fn end_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        end: &ScheduledEnd,
        audit: Option<&AuditEntry>,
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
        let items = self.with_audit(items, audit)?;
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
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        let (expression, names, condition) = (
            "SET cancelRequested = :t, cancelledBy = :by",
            [("#st", "status")],
            "#st = :running",
        );
        let values = vec![
            (":t", AttributeValue::Bool(true)),
            (":by", s(by)),
            (":running", s(DeploymentStatus::Running.as_str())),
        ];
        if audit.is_none() {
            return self
                .update_deployment(
                    environment_id,
                    deployment_id,
                    expression,
                    &names,
                    values,
                    condition,
                )
                .await;
        }
        let update = self.update_item(
            environment_id,
            deployment_id,
            expression,
            &names,
            values,
            condition,
        )?;
        let items = self.with_audit(vec![update], audit)?;
        self.transact("TransactWriteItems cancel", items).await
    }

    async fn save_step(
        &self,
        environment_id: &str,
        deployment_id: &str,
        index: usize,
        step: &StepRecord,
    ) -> Result<(), StoreError> {
        self.set_on_deployment(
            environment_id,
            deployment_id,
            &format!("SET steps[{index}] = :step"),
            &[],
            (":step", to_av(step)?),
        )
        .await
    }

    async fn save_runtime(
        &self,
        environment_id: &str,
        deployment_id: &str,
        runtime: &Runtime,
    ) -> Result<(), StoreError> {
        self.set_on_deployment(
            environment_id,
            deployment_id,
            "SET #rt = :rt",
            &[("#rt", "runtime")],
            (":rt", to_av(runtime)?),
        )
        .await
    }

    async fn save_wait(
        &self,
        environment_id: &str,
        deployment_id: &str,
        wait: &Wait,
    ) -> Result<(), StoreError> {
        self.put_wait(environment_id, deployment_id, wait).await
    }

    async fn waiting_on(&self, key: &str) -> Result<Option<Waiting>, StoreError> {
        self.get_wait(key).await
    }

    async fn clear_wait(&self, key: &str, token: &str) -> Result<(), StoreError> {
        self.delete_wait(key, token).await
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
        let query = PageQuery {
            environment_id,
            prefix: DEP_PREFIX,
            limit,
            next_token,
            filter: status.map(|st| ("status", s(st.as_str()))),
        };
        self.page(query, |d: &Deployment| &d.deployment_id).await
    }

    async fn audit(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let query = PageQuery {
            environment_id,
            prefix: AUDIT_PREFIX,
            limit,
            next_token,
            filter: None,
        };
        self.page(query, |e: &AuditEntry| &e.audit_id).await
    }
}
