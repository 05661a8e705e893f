//! The deployment store: environment configs, the environment lock, deployment
//! records and history pages, and the audit trail of the API's changes. One
//! trait, a DynamoDB implementation for AWS and the sandbox, an in-memory one
//! for tests (feature `test-util`).

mod dynamo;
#[cfg(any(test, feature = "test-util"))]
mod memory;

pub use dynamo::DynamoStore;
#[cfg(any(test, feature = "test-util"))]
pub use memory::MemoryStore;

use crate::domain::{
    AuditEntry, Deployment, DeploymentError, DeploymentStatus, Environment, GeneratedVersion,
    IgnoredRun, Runtime, ScheduleInfo, StepRecord, Wait,
};
use crate::schedule::Schedules;
use async_trait::async_trait;
use base64::Engine;
use chrono::{DateTime, Utc};
use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum StoreError {
    /// Throttling or a transient service failure: the caller may retry.
    #[error("store temporarily unavailable: {0}")]
    Transient(String),
    #[error("store error: {0}")]
    Failed(String),
    #[error("invalid nextToken")]
    InvalidToken,
    #[error("record could not be decoded: {0}")]
    Corrupt(String),
}

impl From<StoreError> for crate::error::StepError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Transient(m) => Self::Retryable(m),
            other => Self::AwsError(other.to_string()),
        }
    }
}

/// A wait as registered under one key: whose it is and its token.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Waiting {
    pub environment_id: String,
    pub deployment_id: String,
    pub wait: Wait,
}

/// Result of asking for the environment lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// We hold it now (newly or already).
    Acquired,
    /// Another deployment holds it.
    HeldBy(String),
}

/// How a deployment ends, written once by Finalization.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: DeploymentStatus,
    pub ended_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub generated_version: Option<GeneratedVersion>,
    pub error: Option<DeploymentError>,
}

/// How a deployment that never started ends.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledEnd {
    pub status: DeploymentStatus,
    pub at: DateTime<Utc>,
    pub cancelled_by: Option<String>,
    pub error: Option<DeploymentError>,
}

/// A page of history (or of the audit trail), newest first.
/// Deployments read per Query when looking for the kept Succeeded ones.
pub const KEPT_SCAN_PAGE: u32 = 25;
/// At most this many such Queries: the newest 200 deployments.
pub const KEPT_SCAN_PAGES: usize = 8;

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T = Deployment> {
    pub items: Vec<T>,
    pub next_token: Option<String>,
}

/// The writes an API route makes take `audit: Option<&AuditEntry>`: the
/// entry is written in the same atomic write as the change (both or
/// neither), so a refused or failed write leaves no entry and every change
/// made through the API has one. The steps (and test seeding) pass `None`.
/// A retried write cannot add a second entry: the entry's key is its id,
/// fixed before the first attempt.
#[async_trait]
pub trait Store: Send + Sync {
    async fn environment(&self, environment_id: &str) -> Result<Option<Environment>, StoreError>;
    /// Writes the environment. With an entry, only what the entry says: a
    /// `RegisterEnvironment` only if `env` is not registered, an
    /// `UpdateEnvironment` only if it is (so the entry's action and its
    /// `before` values cannot be from a read a concurrent request made
    /// stale into a registration); false when that condition failed.
    /// Without one, unconditionally (true).
    async fn put_environment(
        &self,
        env: &Environment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    /// Every registered environment, by id.
    async fn list_environments(&self) -> Result<Vec<Environment>, StoreError>;

    /// Takes the environment lock for `deployment_id` unless another deployment
    /// holds it. Taking a lock we already hold succeeds (retries are safe).
    async fn acquire_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
        at: DateTime<Utc>,
    ) -> Result<LockOutcome, StoreError>;
    /// Releases the lock only when `deployment_id` holds it; returns whether it did.
    async fn release_lock(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<bool, StoreError>;
    async fn lock_holder(&self, environment_id: &str) -> Result<Option<String>, StoreError>;

    /// Creates the record unless one with this id exists; returns whether it did.
    async fn create_deployment(
        &self,
        deployment: &Deployment,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    async fn deployment(
        &self,
        environment_id: &str,
        deployment_id: &str,
    ) -> Result<Option<Deployment>, StoreError>;
    /// Moves Scheduled → Running and records the execution that runs it, in one
    /// atomic write that also drops it from the pending schedules; returns
    /// false when it was not Scheduled (started or cancelled already).
    async fn start_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        at: DateTime<Utc>,
        execution_arn: Option<&str>,
    ) -> Result<bool, StoreError>;

    /// The environment's pending schedules (one small Query) and their version.
    async fn schedules(&self, environment_id: &str) -> Result<Schedules, StoreError>;
    /// Creates a Scheduled deployment and its pending-schedule entry, only if
    /// the schedules are still at `seen_version` (so two concurrent requests
    /// cannot both pass the one-per-hour check); false when they changed.
    async fn create_scheduled(
        &self,
        deployment: &Deployment,
        seen_version: u64,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    /// Moves a still-Scheduled deployment to a new time (same version rule);
    /// false when it is no longer Scheduled or the schedules changed.
    async fn reschedule(
        &self,
        environment_id: &str,
        deployment_id: &str,
        scheduled_for: DateTime<Utc>,
        schedule: &ScheduleInfo,
        seen_version: u64,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    /// Scheduled → Cancelled (or Failed when its schedule could not be
    /// created), out of the pending schedules, atomically; false when it was
    /// not Scheduled any more.
    async fn end_scheduled(
        &self,
        environment_id: &str,
        deployment_id: &str,
        end: &ScheduledEnd,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    /// Records `arn` as the deployment's execution unless another one is
    /// recorded; returns whether `arn` is (now) the deployment's execution.
    async fn claim_execution(
        &self,
        environment_id: &str,
        deployment_id: &str,
        arn: &str,
    ) -> Result<bool, StoreError>;
    /// Appends to the record the run that ended without touching anything.
    async fn record_ignored(
        &self,
        environment_id: &str,
        deployment_id: &str,
        run: &IgnoredRun,
    ) -> Result<(), StoreError>;
    /// Flags a Running deployment as cancelled by `by`; false when it is not Running.
    async fn request_cancel(
        &self,
        environment_id: &str,
        deployment_id: &str,
        by: &str,
        audit: Option<&AuditEntry>,
    ) -> Result<bool, StoreError>;
    async fn save_step(
        &self,
        environment_id: &str,
        deployment_id: &str,
        index: usize,
        step: &StepRecord,
    ) -> Result<(), StoreError>;
    async fn save_runtime(
        &self,
        environment_id: &str,
        deployment_id: &str,
        runtime: &Runtime,
    ) -> Result<(), StoreError>;
    /// Registers a waiting state: on the deployment record (`runtime.wait`,
    /// which the cancel route completes) and under each of its keys (which a
    /// wake-up finds by the event's resource). A later registration under
    /// the same key replaces the earlier one.
    async fn save_wait(
        &self,
        environment_id: &str,
        deployment_id: &str,
        wait: &Wait,
    ) -> Result<(), StoreError>;
    /// The wait registered under `key`, if any.
    async fn waiting_on(&self, key: &str) -> Result<Option<Waiting>, StoreError>;
    /// Removes `key`'s registration if it still holds `token` (a newer wait
    /// under the same key stays).
    async fn clear_wait(&self, key: &str, token: &str) -> Result<(), StoreError>;
    /// Writes the terminal status once; returns false when the record was already terminal.
    async fn finish(
        &self,
        environment_id: &str,
        deployment_id: &str,
        outcome: &Outcome,
    ) -> Result<bool, StoreError>;

    /// History newest first; `next_token` comes from a previous page of the
    /// same environment. With `status`, only deployments in that status
    /// (filtered inside the same single Query, so a page may be short).
    async fn history(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
        status: Option<DeploymentStatus>,
    ) -> Result<Page, StoreError>;

    /// The newest `count` Succeeded deployments among the environment's
    /// newest [`KEPT_SCAN_PAGES`] × [`KEPT_SCAN_PAGE`] deployments, newest
    /// first: the ones whose models are kept for a rollback. Filtered pages
    /// may be short, so pages are read until `count` are found; the bound
    /// keeps a long run of failed deployments from costing a Query per few
    /// records (the API and Create models read the same set, so what the
    /// history offers is what retention keeps).
    async fn newest_succeeded(
        &self,
        environment_id: &str,
        count: u32,
    ) -> Result<Vec<Deployment>, StoreError> {
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..KEPT_SCAN_PAGES {
            let page = self
                .history(
                    environment_id,
                    KEPT_SCAN_PAGE.max(count),
                    token.as_deref(),
                    Some(DeploymentStatus::Succeeded),
                )
                .await?;
            found.extend(page.items);
            match page.next_token {
                Some(t) if found.len() < count as usize => token = Some(t),
                _ => break,
            }
        }
        found.truncate(count as usize);
        Ok(found)
    }

    /// The environment's audit trail, newest first, paged like the history
    /// (one Query per page).
    async fn audit(
        &self,
        environment_id: &str,
        limit: u32,
        next_token: Option<&str>,
    ) -> Result<Page<AuditEntry>, StoreError>;
}

/// The opaque history (and audit) cursor: environment and last id, with a check
/// value so a hand-edited token is refused rather than silently misread.
pub(crate) fn encode_token(environment_id: &str, deployment_id: &str) -> String {
    let body = format!("{environment_id}/{deployment_id}");
    let raw = format!("{body}/{:08x}", checksum(&body));
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

pub(crate) fn decode_token(environment_id: &str, token: &str) -> Result<String, StoreError> {
    if token.len() > 256 {
        return Err(StoreError::InvalidToken);
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| StoreError::InvalidToken)?;
    let raw = String::from_utf8(raw).map_err(|_| StoreError::InvalidToken)?;
    let mut parts = raw.rsplitn(2, '/');
    let (sum, body) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if sum != format!("{:08x}", checksum(body)) {
        return Err(StoreError::InvalidToken);
    }
    let (env, dep) = body.split_once('/').ok_or(StoreError::InvalidToken)?;
    if env != environment_id || !crate::domain::valid_deployment_id(dep) {
        return Err(StoreError::InvalidToken);
    }
    Ok(dep.to_string())
}

/// FNV-1a, 32 bits: detects edits, not an authenticity proof (the token only
/// selects a page the caller may read anyway).
fn checksum(s: &str) -> u32 {
    s.bytes().fold(0x811c9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trips_and_rejects_tampering() {
        let id = crate::domain::new_deployment_id();
        let t = encode_token("prod", &id);
        assert_eq!(decode_token("prod", &t).unwrap(), id);
        assert_eq!(decode_token("other", &t), Err(StoreError::InvalidToken));
        assert_eq!(
            decode_token("prod", "garbage!"),
            Err(StoreError::InvalidToken)
        );
        let mut raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&t)
            .unwrap();
        raw[10] = if raw[10] == b'A' { b'B' } else { b'A' };
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        assert_eq!(decode_token("prod", &forged), Err(StoreError::InvalidToken));
    }
}
