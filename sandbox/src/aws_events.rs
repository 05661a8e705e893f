//! The EC2 and Auto Scaling events of the sandbox: fakecloud emits none, so
//! the gateway ([`crate::bridge`]) builds the events AWS documents at the
//! moment its emulation changes a state (an instance stopping, stopped,
//! pending, running, terminated; an AMI available, failed, deregistered; an
//! instance refresh started, at a checkpoint, baking, ended, rolling back)
//! and publishes them on this bus, the sandbox's default event bus.
//!
//! The bus records every event with the instant it was published, matches
//! it against ResumeFunction's rule patterns (read from template.yaml, as
//! [`crate::events::Rules`]) and hands each matching one to the delivery,
//! spawned: the publisher never waits. A failed delivery is tried again as
//! Lambda does for an asynchronous invocation (the template's
//! `EventInvokeConfig.MaximumRetryAttempts`). With delivery switched off
//! (`PUT /_sandbox/events/delivery {"drop": true}`, or
//! [`DROP_VAR`]`=1` at start) events are still recorded, marked dropped,
//! and never delivered: the product's fallback (each waiting state's
//! timeout) is what remains.

use crate::events::Rules;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Starts the sandbox with delivery off when set to `1` (or `true`).
pub const DROP_VAR: &str = "AUTOSKY_SANDBOX_DROP_EVENTS";
/// The function whose rules the bus delivers to.
pub const TARGET: &str = "ResumeFunction";
/// The account id fakecloud puts in the ARNs it makes (its groups' ARNs).
pub const ACCOUNT: &str = "000000000000";

/// What a matching event is handed to: the target function's handler.
pub type Delivery =
    Arc<dyn Fn(Value) -> Pin<Box<dyn Future<Output = Result<Value, String>> + Send>> + Send + Sync>;

/// One event as the bus saw it (`GET /_sandbox/events` lists them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedEvent {
    pub event: Value,
    /// When it was published: RFC 3339, milliseconds, UTC.
    pub published_at: String,
    /// One of the target's rule patterns matches it.
    pub matched: bool,
    /// It was handed to the delivery (matched, delivery on).
    pub delivered: bool,
    /// It matched but delivery was off.
    #[serde(default)]
    pub dropped: bool,
    /// The delivery's error after its last attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PublishedEvent {
    pub fn detail_type(&self) -> &str {
        self.event["detail-type"].as_str().unwrap_or_default()
    }

    pub fn published_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::parse_from_rfc3339(&self.published_at)
            .ok()
            .map(|t| t.to_utc())
    }
}

struct Inner {
    rules: Rules,
    region: String,
    log: Mutex<Vec<PublishedEvent>>,
    dropping: AtomicBool,
    delivery: Mutex<Delivery>,
}

/// The sandbox's event bus (cheap to clone: one shared bus).
#[derive(Clone)]
pub struct EventBus {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("rules", &self.inner.rules)
            .field("region", &self.inner.region)
            .field("dropping", &self.dropping())
            .finish_non_exhaustive()
    }
}

/// A delivery that only logs the event (until the target's handler is
/// wired in).
pub fn log_only() -> Delivery {
    Arc::new(|event: Value| {
        Box::pin(async move {
            tracing::info!(
                detail_type = %event["detail-type"],
                resources = %event["resources"],
                "event bus: would wake ResumeFunction"
            );
            Ok(Value::Null)
        })
    })
}

/// Whether [`DROP_VAR`] asks for delivery off.
pub fn drop_from_env() -> bool {
    drop_asked(std::env::var(DROP_VAR).ok().as_deref())
}

fn drop_asked(value: Option<&str>) -> bool {
    value.is_some_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

impl EventBus {
    /// A bus delivering what `rules` match (to [`log_only`] until
    /// [`EventBus::set_delivery`]), its events in `region`.
    pub fn new(rules: Rules, region: &str) -> Self {
        Self {
            inner: Arc::new(Inner {
                rules,
                region: region.to_string(),
                log: Mutex::default(),
                dropping: AtomicBool::new(false),
                delivery: Mutex::new(log_only()),
            }),
        }
    }

    /// The sandbox's bus: ResumeFunction's rules from template.yaml, delivery
    /// off when [`DROP_VAR`] says so.
    pub fn resume(region: &str) -> Result<Self, String> {
        let bus = Self::new(Rules::of(TARGET, &BTreeMap::new())?, region);
        bus.set_drop(drop_from_env());
        Ok(bus)
    }

    /// What matching events are handed to from now on.
    pub fn set_delivery(&self, delivery: Delivery) {
        *self.inner.delivery.lock().expect("event bus poisoned") = delivery;
    }

    /// The drop switch: `true` records matching events as dropped instead of
    /// delivering them.
    pub fn set_drop(&self, drop: bool) {
        self.inner.dropping.store(drop, Ordering::SeqCst);
    }

    pub fn dropping(&self) -> bool {
        self.inner.dropping.load(Ordering::SeqCst)
    }

    pub fn region(&self) -> &str {
        &self.inner.region
    }

    pub fn rules(&self) -> &Rules {
        &self.inner.rules
    }

    /// Every event published so far, oldest first.
    pub fn events(&self) -> Vec<PublishedEvent> {
        self.inner.log.lock().expect("event bus poisoned").clone()
    }

    /// Records the event and, when it matches and delivery is on, hands it
    /// to the delivery in a task of its own (outside a Tokio runtime it is
    /// recorded as not delivered). Returns the record as published.
    pub fn publish(&self, event: Value) -> PublishedEvent {
        let matched = self.inner.rules.matches(&event);
        let dropped = matched && self.dropping();
        let runtime = tokio::runtime::Handle::try_current().ok();
        let delivered = matched && !dropped && runtime.is_some();
        let record = PublishedEvent {
            event: event.clone(),
            published_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            matched,
            delivered,
            dropped,
            error: None,
        };
        let index = {
            let mut log = self.inner.log.lock().expect("event bus poisoned");
            log.push(record.clone());
            log.len() - 1
        };
        tracing::debug!(
            detail_type = %event["detail-type"],
            matched,
            dropped,
            "event bus: published"
        );
        if let (true, Some(runtime)) = (delivered, runtime) {
            let bus = self.clone();
            runtime.spawn(async move { bus.deliver(index, event).await });
        }
        record
    }

    /// Runs the delivery, trying again after a failure (1 s apart: Lambda
    /// waits minutes, the sandbox keeps tests short).
    async fn deliver(&self, index: usize, event: Value) {
        let delivery = self
            .inner
            .delivery
            .lock()
            .expect("event bus poisoned")
            .clone();
        let retries = self.inner.rules.retries;
        for attempt in 0..=retries {
            match delivery(event.clone()).await {
                Ok(_) => return,
                Err(e) => {
                    tracing::warn!(
                        detail_type = %event["detail-type"],
                        attempt,
                        error = %e,
                        "event bus: delivery failed"
                    );
                    if attempt == retries {
                        if let Some(r) = self
                            .inner
                            .log
                            .lock()
                            .expect("event bus poisoned")
                            .get_mut(index)
                        {
                            r.error = Some(e);
                        }
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Publishes an `EC2 Instance State-change Notification`.
    pub fn instance_state(&self, instance_id: &str, state: &str) -> PublishedEvent {
        self.publish(instance_state_change(self.region(), instance_id, state))
    }

    /// Publishes an `EC2 AMI State Change`.
    pub fn ami_state(
        &self,
        image_id: &str,
        state: &str,
        request_id: &str,
        error: &str,
    ) -> PublishedEvent {
        self.publish(ami_state_change(
            self.region(),
            image_id,
            state,
            request_id,
            error,
        ))
    }

    /// Publishes an instance refresh event.
    pub fn refresh(&self, change: RefreshChange, r: &RefreshRef<'_>) -> PublishedEvent {
        self.publish(refresh_event(self.region(), change, r))
    }
}

/// A new event id as EventBridge gives them ("A Version 4 UUID that's
/// generated for every event."): a ULID's 128 bits with the version 4 and
/// RFC 4122 variant bits set.
pub fn event_id() -> String {
    let n = u128::from(ulid::Ulid::new());
    let n = (n & !(0xf << 76)) | (0x4 << 76);
    let n = (n & !(0x3 << 62)) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        n >> 96,
        (n >> 80) & 0xffff,
        (n >> 64) & 0xffff,
        (n >> 48) & 0xffff,
        n & 0xffff_ffff_ffff
    )
}

/// The envelope every AWS service event has: "version" 0, a new id, the
/// time to the second.
pub fn envelope(
    detail_type: &str,
    source: &str,
    region: &str,
    resources: Vec<String>,
    detail: Value,
) -> Value {
    json!({
        "version": "0",
        "id": event_id(),
        "detail-type": detail_type,
        "source": source,
        "account": ACCOUNT,
        "time": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        "region": region,
        "resources": resources,
        "detail": detail,
    })
}

/// "Amazon EC2 sends an `EC2 Instance State-change Notification` event to
/// Amazon EventBridge when the state of an instance changes." Detail
/// `instance-id` and `state`; resources the instance's ARN.
pub fn instance_state_change(region: &str, instance_id: &str, state: &str) -> Value {
    envelope(
        "EC2 Instance State-change Notification",
        "aws.ec2",
        region,
        vec![format!(
            "arn:aws:ec2:{region}:{ACCOUNT}:instance/{instance_id}"
        )],
        json!({ "instance-id": instance_id, "state": state }),
    )
}

/// "Amazon EC2 generates an `EC2 AMI State Change` event when an AMI enters
/// any of the following states: available, failed, deregistered,
/// disabled". Detail `RequestId` (the request that made the AMI),
/// `ImageId`, `State`, `ErrorMessage` (empty unless failed); resources the
/// image's ARN, which has no account.
pub fn ami_state_change(
    region: &str,
    image_id: &str,
    state: &str,
    request_id: &str,
    error: &str,
) -> Value {
    envelope(
        "EC2 AMI State Change",
        "aws.ec2",
        region,
        vec![format!("arn:aws:ec2:{region}::image/{image_id}")],
        json!({
            "RequestId": request_id,
            "ImageId": image_id,
            "State": state,
            "ErrorMessage": error,
        }),
    )
}

/// The instance refresh changes Auto Scaling sends an event for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RefreshChange {
    /// Status to `InProgress`.
    Started,
    /// A checkpoint's percentage reached: (CheckpointPercentage,
    /// CheckpointDelay in seconds).
    CheckpointReached(i32, i64),
    /// Status to `Baking`.
    StartedBaking,
    Succeeded,
    Failed,
    Cancelled,
    /// Status to `RollbackInProgress`.
    RollbackStarted,
    RollbackSucceeded,
    RollbackFailed,
}

impl RefreshChange {
    pub fn detail_type(self) -> &'static str {
        match self {
            Self::Started => "EC2 Auto Scaling Instance Refresh Started",
            Self::CheckpointReached(..) => "EC2 Auto Scaling Instance Refresh Checkpoint Reached",
            Self::StartedBaking => "EC2 Auto Scaling Instance Refresh Started Baking",
            Self::Succeeded => "EC2 Auto Scaling Instance Refresh Succeeded",
            Self::Failed => "EC2 Auto Scaling Instance Refresh Failed",
            Self::Cancelled => "EC2 Auto Scaling Instance Refresh Cancelled",
            Self::RollbackStarted => "EC2 Auto Scaling Instance Refresh Rollback Started",
            Self::RollbackSucceeded => "EC2 Auto Scaling Instance Refresh Rollback Succeeded",
            Self::RollbackFailed => "EC2 Auto Scaling Instance Refresh Rollback Failed",
        }
    }

    /// The event for a refresh that ended with `status`, if it has one.
    pub fn of_end(status: &str) -> Option<Self> {
        Some(match status {
            "Successful" => Self::Succeeded,
            "Failed" => Self::Failed,
            "Cancelled" => Self::Cancelled,
            "RollbackSuccessful" => Self::RollbackSucceeded,
            "RollbackFailed" => Self::RollbackFailed,
            _ => return None,
        })
    }
}

/// The refresh an event is about.
#[derive(Debug, Clone, Copy)]
pub struct RefreshRef<'a> {
    pub id: &'a str,
    pub group: &'a str,
    pub group_arn: &'a str,
}

/// An instance refresh event as the Auto Scaling user guide's examples
/// show it: detail `InstanceRefreshId` and `AutoScalingGroupName` (and, at a
/// checkpoint, `CheckpointPercentage` and `CheckpointDelay`, as strings);
/// resources the group's ARN.
pub fn refresh_event(region: &str, change: RefreshChange, r: &RefreshRef<'_>) -> Value {
    let mut detail = json!({
        "InstanceRefreshId": r.id,
        "AutoScalingGroupName": r.group,
    });
    if let RefreshChange::CheckpointReached(percentage, delay) = change {
        detail["CheckpointPercentage"] = json!(percentage.to_string());
        detail["CheckpointDelay"] = json!(delay.to_string());
    }
    envelope(
        change.detail_type(),
        "aws.autoscaling",
        region,
        vec![r.group_arn.to_string()],
        detail,
    )
}

#[cfg(test)]
mod tests;
