//! In-memory store for unit tests: the same contract as DynamoDB (conditional
//! lock, newest-first pages, terminal status written once, an audit entry
//! written under the same lock as its change or not at all).

use super::{
    decode_token, encode_token, LockOutcome, Outcome, Page, ScheduledEnd, Store, StoreError,
    Waiting,
};
use crate::domain::{
    AuditAction, AuditEntry, Deployment, DeploymentStatus, Environment, IgnoredRun, Runtime,
    ScheduleInfo, StepRecord, Wait,
};
use crate::schedule::{ScheduleEntry, Schedules};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use std::collections::BTreeMap;
use std::sync::Mutex;

#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    envs: BTreeMap<String, Environment>,
    locks: BTreeMap<String, String>,
    // (env, id) -> deployment; ids are ULIDs so BTreeMap order is creation order.
    deployments: BTreeMap<(String, String), Deployment>,
    schedule_versions: BTreeMap<String, u64>,
    // (env, audit id) -> entry; ids are ULIDs, so in order.
    audit: BTreeMap<(String, String), AuditEntry>,
    waits: BTreeMap<String, Waiting>,
}

impl Inner {
    fn scheduled(&mut self, env: &str, id: &str) -> Option<&mut Deployment> {
        self.deployments
            .get_mut(&(env.into(), id.into()))
            .filter(|d| d.status == DeploymentStatus::Scheduled)
    }

    /// Records `entry` (the change it goes with was just made).
    fn record(&mut self, entry: Option<&AuditEntry>) {
        if let Some(e) = entry {
            self.audit
                .insert((e.environment_id.clone(), e.audit_id.clone()), e.clone());
        }
    }

    /// Bumps the schedules' version if it is still `seen`.
    fn bump(&mut self, env: &str, seen: u64) -> bool {
        let v = self.schedule_versions.entry(env.into()).or_default();
        if *v != seen {
            return false;
        }
        *v += 1;
        true
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.inner.lock().expect("memory store poisoned"))
    }

    fn update(
        &self,
        env: &str,
        id: &str,
        f: impl FnOnce(&mut Deployment),
    ) -> Result<(), StoreError> {
        self.with(|i| match i.deployments.get_mut(&(env.into(), id.into())) {
            Some(d) => {
                f(d);
                Ok(())
            }
            None => Err(StoreError::Failed(format!("deployment {id} not found"))),
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn environment(&self, environment_id: &str) -> Result<Option<Environment>, StoreError> {
        Ok(self.with(|i| i.envs.get(environment_id).cloned()))
    }

    async fn put_environment(
        &self,
        env: &Environment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            let exists = i.envs.contains_key(&env.environment_id);
            let allowed = match audit.map(|a| a.action) {
                Some(AuditAction::RegisterEnvironment) => !exists,
                Some(AuditAction::UpdateEnvironment) => exists,
                _ => true,
            };
            if allowed {
                i.envs.insert(env.environment_id.clone(), env.clone());
                i.record(audit);
            }
            allowed
        }))
    }

    async fn list_environments(&self) -> Result<Vec<Environment>, StoreError> {
        Ok(self.with(|i| i.envs.values().cloned().collect()))
    }

    async fn acquire_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
        _at: DateTime<Utc>,
    ) -> Result<LockOutcome, StoreError> {
        Ok(self.with(|i| match i.locks.get(environment_id) {
            Some(holder) if holder != deployment_id => LockOutcome::HeldBy(holder.clone()),
            _ => {
                i.locks.insert(environment_id.into(), deployment_id.into());
                LockOutcome::Acquired
            }
        }))
    }

    async fn release_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            if i.locks.get(environment_id).map(String::as_str) == Some(deployment_id) {
                i.locks.remove(environment_id);
                true
            } else {
                false
            }
        }))
    }

    async fn lock_holder(&self, environment_id: &str) -> Result<Option<String>, StoreError> {
        Ok(self.with(|i| i.locks.get(environment_id).cloned()))
    }

    async fn create_deployment(
        &self,
        d: &Deployment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            let key = (d.environment_id.clone(), d.deployment_id.clone());
            if i.deployments.contains_key(&key) {
                return false;
            }
            i.deployments.insert(key, d.clone());
            i.record(audit);
            true
        }))
    }

    async fn deployment(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<Option<Deployment>, StoreError> {
        Ok(self.with(|i| {
            i.deployments
                .get(&(environment_id.into(), deployment_id.into()))
                .cloned()
        }))
    }

    async fn start_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        at: DateTime<Utc>,
        execution_arn: Option<&str>,
    ) -> Result<bool, StoreError> {
        Ok(
            self.with(|i| match i.scheduled(environment_id, deployment_id) {
                Some(d) => {
                    d.status = DeploymentStatus::Running;
                    d.started_at = Some(at);
                    if let Some(arn) = execution_arn {
                        d.execution_arn = Some(arn.into());
                    }
                    true
                }
                None => false,
            }),
        )
    }

    async fn schedules(&self, environment_id: &str) -> Result<Schedules, StoreError> {
        Ok(self.with(|i| Schedules {
            version: i
                .schedule_versions
                .get(environment_id)
                .copied()
                .unwrap_or(0),
            entries: i
                .deployments
                .values()
                .filter(|d| {
                    d.environment_id == environment_id && d.status == DeploymentStatus::Scheduled
                })
                .filter_map(|d| {
                    Some(ScheduleEntry {
                        deployment_id: d.deployment_id.clone(),
                        scheduled_for: d.scheduled_for?,
                    })
                })
                .collect(),
        }))
    }

    async fn create_scheduled(
        &self,
        d: &Deployment,
        seen_version: u64,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            let key = (d.environment_id.clone(), d.deployment_id.clone());
            if i.deployments.contains_key(&key) || !i.bump(&d.environment_id, seen_version) {
                return false;
            }
            i.deployments.insert(key, d.clone());
            i.record(audit);
            true
        }))
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
        Ok(self.with(|i| {
            if i.scheduled(environment_id, deployment_id).is_none()
                || !i.bump(environment_id, seen_version)
            {
                return false;
            }
            let d = i
                .scheduled(environment_id, deployment_id)
                .expect("checked above");
            d.scheduled_for = Some(scheduled_for);
            d.schedule = Some(schedule.clone());
            i.record(audit);
            true
        }))
    }

    async fn end_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        end: &ScheduledEnd,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            let Some(d) = i.scheduled(environment_id, deployment_id) else {
                return false;
            };
            d.status = end.status;
            d.ended_at = Some(end.at);
            d.duration_ms = Some(0);
            d.cancelled_by = end.cancelled_by.clone();
            d.error = end.error.clone();
            i.record(audit);
            true
        }))
    }

    async fn claim_execution(
        &self,
        environment_id: &str,
        deployment_id: &str,
        arn: &str,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            match i
                .deployments
                .get_mut(&(environment_id.into(), deployment_id.into()))
            {
                Some(d) => match &d.execution_arn {
                    Some(a) => a == arn,
                    None => {
                        d.execution_arn = Some(arn.into());
                        true
                    }
                },
                None => false,
            }
        }))
    }

    async fn record_ignored(
        &self,
        environment_id: &str,
        deployment_id: &str,
        run: &IgnoredRun,
    ) -> Result<(), StoreError> {
        self.update(environment_id, deployment_id, |d| {
            d.ignored_runs.push(run.clone())
        })
    }

    async fn request_cancel(
        &self,
        environment_id: &str,
        deployment_id: &str,
        by: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError> {
        Ok(self.with(|i| {
            match i
                .deployments
                .get_mut(&(environment_id.into(), deployment_id.into()))
            {
                Some(d) if d.status == DeploymentStatus::Running => {
                    d.cancel_requested = true;
                    d.cancelled_by = Some(by.into());
                    i.record(audit);
                    true
                }
                _ => false,
            }
        }))
    }

    async fn save_step(
        &self,
        environment_id: &str,
        deployment_id: &str,
        index: usize,
        step: &StepRecord,
    ) -> Result<(), StoreError> {
        self.update(environment_id, deployment_id, |d| {
            d.steps[index] = step.clone()
        })
    }

    async fn save_runtime(
        &self,
        environment_id: &str,
        deployment_id: &str,
        runtime: &Runtime,
    ) -> Result<(), StoreError> {
        self.update(environment_id, deployment_id, |d| {
            d.runtime = runtime.clone()
        })
    }

    async fn save_wait(
        &self,
        environment_id: &str,
        deployment_id: &str,
        wait: &Wait,
    ) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        for key in &wait.on {
            inner.waits.insert(
                key.clone(),
                Waiting {
                    environment_id: environment_id.into(),
                    deployment_id: deployment_id.into(),
                    wait: wait.clone(),
                },
            );
        }
        drop(inner);
        self.update(environment_id, deployment_id, |d| {
            d.runtime.wait = Some(wait.clone())
        })
    }

    async fn waiting_on(&self, key: &str) -> Result<Option<Waiting>, StoreError> {
        Ok(self.inner.lock().unwrap().waits.get(key).cloned())
    }

    async fn clear_wait(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let mut inner = self.inner.lock().unwrap();
        if inner.waits.get(key).is_some_and(|w| w.wait.token == token) {
            inner.waits.remove(key);
        }
        Ok(())
    }

    async fn finish(
        &self,
        environment_id: &str,
        deployment_id: &str,
        o: &Outcome,
    ) -> Result<bool, StoreError> {
        let mut done = false;
        self.update(environment_id, deployment_id, |d| {
            if !d.status.is_terminal() {
                d.status = o.status;
                d.ended_at = Some(o.ended_at);
                d.duration_ms = Some(o.duration_ms);
                d.generated_version = o.generated_version.clone();
                d.error = o.error.clone();
                done = true;
            }
        })?;
        Ok(done)
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
        Ok(self.with(|i| {
            page(&i.deployments, environment_id, limit, after, |d| {
                status.is_none_or(|s| d.status == s)
            })
        }))
    }

    async fn audit(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError> {
        let after = next_token
            .map(|t| decode_token(environment_id, t))
            .transpose()?;
        Ok(self.with(|i| page(&i.audit, environment_id, limit, after, |_| true)))
    }
}

/// One newest-first page of the environment's records of `map` (keyed by
/// environment and id) that `keep` accepts, after the id `after`.
fn page<T: Clone>(
    map: &BTreeMap<(String, String), T>,
    environment_id: &str,
    limit: u32,
    after: Option<String>,
    keep: impl Fn(&T) -> bool,
) -> Page<T> {
    let limit = limit.max(1) as usize;
    let mut items: Vec<(&String, &T)> = map
        .iter()
        .rev()
        .filter(|((e, id), _)| e == environment_id && after.as_ref().is_none_or(|a| id < a))
        .filter(|(_, t)| keep(t))
        .map(|((_, id), t)| (id, t))
        .take(limit + 1)
        .collect();
    let more = items.len() > limit;
    items.truncate(limit);
    let next_token = match (more, items.last()) {
        (true, Some((last, _))) => Some(encode_token(environment_id, last)),
        _ => None,
    };
    Page {
        items: items.into_iter().map(|(_, t)| t.clone()).collect(),
        next_token,
    }
}
