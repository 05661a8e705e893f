//! The run of an emulated refresh: Pending for one phase, then the
//! instances to replace (all, or with SkipMatching those not on the desired
//! configuration) in batches, newest first, one phase each, no batch going
//! past the next checkpoint; at a checkpoint below 100 it pauses for
//! CheckpointDelay (a partial refresh, whose last checkpoint is below 100,
//! ends there); `Baking` for BakeTime when it is > 0; then the desired
//! configuration is applied to the group and the refresh ends Successful.
//! Pauses are scaled ([`pause_phases`]). A cancel, a rollback, a requested
//! failure or a watched alarm in ALARM is noticed between batches and at each
//! phase of a pause. A rollback replaces the instances the refresh replaced
//! with the group's pre-refresh setting, newest first. Each status change
//! (and each checkpoint reached) publishes its event where it happens.
//!
//! How instances are replaced in the emulator: fakecloud 0.51 has neither
//! TerminateInstanceInAutoScalingGroup nor DetachInstances; a group launches
//! from its own setting when its desired capacity grows and terminates its
//! newest instances when it shrinks. So replacing an instance means: shrink
//! the group to just before it (its newer instances go too), then grow it
//! back run by run, each run launched from its setting (the group is set to
//! it in the same call). Newer instances that are not being replaced come
//! back with the same setting (new ids, same launch template version).

use super::setting::Setting;
use super::{Refresh, Rollback};
use crate::aws_events::RefreshChange;
use crate::bridge::Bridge;
use aws_sdk_autoscaling::types::Instance;

/// What an instance was (or is to be) launched from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum On {
    Before,
    Desired,
}

/// One of the group's instances, in launch order.
#[derive(Clone, Debug)]
struct Slot {
    id: String,
    on: On,
    /// Replaced by this refresh (what a rollback replaces again).
    replaced: bool,
}

/// The group as the run found it and keeps it.
#[derive(Debug)]
pub(super) struct Fleet {
    slots: Vec<Slot>,
    min: i32,
    capacity: i32,
    /// The instances this refresh replaces.
    to_replace: usize,
    /// How many a batch replaces.
    batch: usize,
}

impl Fleet {
    pub(super) fn to_replace(&self) -> usize {
        self.to_replace
    }
}

enum Signal {
    Go,
    Cancel,
    Rollback,
    /// A watched CloudWatch alarm is in ALARM (its name).
    Alarm(String),
}

/// How many phases a pause of `seconds` (CheckpointDelay, BakeTime) lasts:
/// one per 5 minutes, at least one, and at most what fits in
/// [`HOLD_LIMIT`], so an hour's delay takes 12 phases (a few seconds in the
/// tests) and the longest (2 days) never outlasts a test.
pub(super) fn pause_phases(seconds: i64, phase: std::time::Duration) -> u32 {
    let cap = (HOLD_LIMIT.as_millis() / phase.as_millis().max(1)).max(1) as u32;
    ((seconds / 300).max(1) as u32).min(cap)
}

/// The size of the next batch when `done` of `total` instances are
/// replaced: the usual batch, but no more than reaches the next checkpoint
/// ("To reach a checkpoint percentage, Amazon EC2 Auto Scaling will
/// sometimes replace fewer but never more than what the minimum healthy
/// percentage allows").
pub(super) fn next_batch(
    batch: usize,
    done: usize,
    total: usize,
    checkpoint: Option<i32>,
) -> usize {
    match checkpoint {
        Some(c) => {
            let needed = (c as usize * total).div_ceil(100);
            batch.min(needed.saturating_sub(done)).max(1)
        }
        None => batch,
    }
}

/// How many instances a batch replaces: as many as MinHealthyPercentage of
/// the group lets go at once (at least one), and at most half of those to
/// replace (rounded up), so that two or more instances are replaced in at
/// least two batches.
pub(super) fn batch_size(group: usize, to_replace: usize, min_healthy: i32) -> usize {
    let healthy = (group * min_healthy.clamp(0, 100) as usize).div_ceil(100);
    group
        .saturating_sub(healthy)
        .min(to_replace.div_ceil(2))
        .max(1)
}

/// Whether the requested outcome makes the refresh fail after its first
/// batch.
fn fails(r: &Refresh) -> bool {
    match r.outcome.as_str() {
        "Failed" | "RollbackSuccessful" => true,
        "RollbackFailed" => r.prefs.auto_rollback,
        _ => false,
    }
}

const CANCELLED: &str = "Cancelled by request";

/// How long a `Hold` refresh waits part-way for a cancel or a rollback.
pub(crate) const HOLD_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

impl Bridge {
    /// An EC2 client aimed at the emulator, in the bridge's Region, with the
    /// sandbox's credentials (the emulator does not check them).
    fn emulator_ec2(&self) -> aws_sdk_ec2::Client {
        let mut b = aws_sdk_ec2::config::Builder::new()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .endpoint_url(&self.emulator)
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "test", "test", None, None, "bridge",
            ));
        b.set_region(
            self.asg
                .config()
                .region()
                .map(|r| aws_sdk_ec2::config::Region::new(r.to_string())),
        );
        aws_sdk_ec2::Client::from_conf(b.build())
    }

    fn signal(&self, r: &Refresh) -> Signal {
        let st = self.lock();
        match st
            .refreshes
            .by_group
            .get(&r.group)
            .and_then(|l| l.iter().find(|x| x.id == r.id))
        {
            Some(x) if x.cancel_requested => Signal::Cancel,
            Some(x) if x.rollback_requested => Signal::Rollback,
            Some(_) => {
                drop(st);
                match self.alarm_firing(r) {
                    Some(a) => Signal::Alarm(a),
                    None => Signal::Go,
                }
            }
            None => Signal::Go,
        }
    }

    /// Acts on a cancel, a rollback or an alarm that came; `true` when the
    /// run has ended (the caller stops).
    async fn interrupted(&self, r: &Refresh, fleet: &mut Fleet) -> bool {
        match self.signal(r) {
            Signal::Go => return false,
            Signal::Cancel => self.cancel(r, fleet).await,
            Signal::Rollback => self.roll_back(r, fleet, None).await,
            Signal::Alarm(a) => self.alarm(r, fleet, &a).await,
        }
        true
    }

    /// A watched alarm went into ALARM: "Auto rollback: Amazon EC2 Auto
    /// Scaling automatically reverses what was deployed if the instance
    /// refresh fails for some reason or if any CloudWatch alarms you specify
    /// go into the ALARM state"; without AutoRollback the alarms "fail the
    /// operation". The reason's text is ours (AWS's is not documented).
    async fn alarm(&self, r: &Refresh, fleet: &mut Fleet, alarm: &str) {
        let reason = format!("Sandbox: CloudWatch alarm {alarm} went into the ALARM state");
        if r.prefs.auto_rollback {
            self.roll_back(r, fleet, Some(format!("{reason}; automatic rollback")))
                .await
        } else {
            self.fail(r, fleet, reason).await
        }
    }

    /// Applies `f` to the refresh.
    fn modify(&self, r: &Refresh, f: impl FnOnce(&mut Refresh)) {
        let mut st = self.lock();
        if let Some(x) = st
            .refreshes
            .by_group
            .get_mut(&r.group)
            .and_then(|l| l.iter_mut().find(|x| x.id == r.id))
        {
            f(x);
        }
    }

    /// Ends the refresh with `status` and stops showing the group's recorded
    /// setting (the emulator's group holds the right one by now).
    fn end(&self, r: &Refresh, status: &str, reason: Option<String>, f: impl FnOnce(&mut Refresh)) {
        {
            let mut st = self.lock();
            st.refreshes.overlays.remove(&r.group);
            if let Some(x) = st
                .refreshes
                .by_group
                .get_mut(&r.group)
                .and_then(|l| l.iter_mut().find(|x| x.id == r.id))
            {
                x.status = status.into();
                x.reason = reason;
                x.end = Some(chrono::Utc::now());
                f(x);
            }
        }
        self.changed(r, RefreshChange::of_end(status));
    }

    /// Publishes the event of a change of the refresh, if it has one.
    fn changed(&self, r: &Refresh, change: Option<RefreshChange>) {
        if let Some(change) = change {
            self.events.refresh(change, &r.event_ref());
        }
    }

    pub(super) async fn run_refresh(&self, r: Refresh, mut fleet: Fleet) {
        if fleet.to_replace == 0 {
            // "If you enable skip matching, but none of these are changing,
            // the instance refresh will succeed immediately without replacing
            // any instances."
            return self.succeed(&r, &mut fleet).await;
        }
        tokio::time::sleep(self.phase).await;
        if self.interrupted(&r, &mut fleet).await {
            return;
        }
        self.modify(&r, |x| x.status = "InProgress".into());
        // "When the status of an instance refresh changes to InProgress".
        self.changed(&r, Some(RefreshChange::Started));
        // Newest first: the emulator terminates newest first.
        let order: Vec<usize> = (0..fleet.slots.len())
            .rev()
            .filter(|i| fleet.slots[*i].on == On::Before)
            .collect();
        let total = fleet.to_replace;
        let checkpoints = r.prefs.checkpoints.clone();
        // The next checkpoint not reached yet.
        let mut next = 0;
        let mut done = 0;
        let mut n = 0;
        while done < order.len() {
            if n > 0 && self.interrupted(&r, &mut fleet).await {
                return;
            }
            let size = next_batch(fleet.batch, done, total, checkpoints.get(next).copied());
            let batch = order[done..(done + size).min(order.len())].to_vec();
            if let Err(e) = self.rebuild(&r, &mut fleet, &batch, On::Desired).await {
                return self.fail(&r, &fleet, format!("Sandbox: {e}")).await;
            }
            done += batch.len();
            let replaced = fleet.slots.iter().filter(|s| s.replaced).count();
            let pct = (replaced * 100 / total) as i32;
            self.modify(&r, |x| {
                x.percentage = pct;
                x.to_update = (total - replaced) as i32;
            });
            tokio::time::sleep(self.phase).await;
            if n == 0 && r.outcome == "Hold" {
                let until = tokio::time::Instant::now() + HOLD_LIMIT;
                while tokio::time::Instant::now() < until {
                    if self.interrupted(&r, &mut fleet).await {
                        return;
                    }
                    tokio::time::sleep(self.phase).await;
                }
            }
            if n == 0 && fails(&r) {
                if r.prefs.auto_rollback {
                    let reason =
                        "Sandbox: the instance refresh failed (requested outcome); automatic rollback";
                    return self.roll_back(&r, &mut fleet, Some(reason.into())).await;
                }
                let mut reason =
                    "Sandbox: instances failed their health checks (requested outcome)".to_string();
                if r.outcome == "RollbackSuccessful" {
                    reason.push_str(
                        "; the test asked for RollbackSuccessful, but AWS rolls back by itself only a \
                         refresh started with Preferences.AutoRollback=true, and this one was not",
                    );
                }
                return self.fail(&r, &fleet, reason).await;
            }
            n += 1;
            // "It's possible to skip a checkpoint": only the highest one
            // reached pauses.
            let mut reached = None;
            while checkpoints.get(next).is_some_and(|c| pct >= *c) {
                reached = checkpoints.get(next).copied();
                next += 1;
            }
            let Some(c) = reached else { continue };
            // "When the number of instances that have been replaced reaches
            // the percentage threshold defined for the checkpoint" (only the
            // highest one a batch reaches: the one it pauses at).
            self.changed(
                &r,
                Some(RefreshChange::CheckpointReached(
                    c,
                    r.prefs.checkpoint_delay,
                )),
            );
            if c < 100 && next == checkpoints.len() {
                // A partial refresh ("the last number in the array must be
                // 100" to replace all instances): it concludes here.
                break;
            }
            if c < 100 && self.pause(&r, &mut fleet, c).await {
                return;
            }
        }
        if r.prefs.bake_time > 0 {
            if self.interrupted(&r, &mut fleet).await {
                return;
            }
            let mut baking = false;
            self.modify(&r, |x| {
                if x.status == "InProgress" {
                    x.status = "Baking".into();
                    baking = true;
                }
            });
            self.changed(&r, baking.then_some(RefreshChange::StartedBaking));
            // "Baking - Waiting the specified bake time after an instance
            // refresh has finished updating instances"; the alarms are still
            // watched.
            for _ in 0..pause_phases(r.prefs.bake_time, self.phase) {
                tokio::time::sleep(self.phase).await;
                if self.interrupted(&r, &mut fleet).await {
                    return;
                }
            }
        }
        self.succeed(&r, &mut fleet).await
    }

    /// The pause at checkpoint `c` for CheckpointDelay ("When the percentage
    /// of instances that are replaced and warmed up reaches one of the
    /// specified thresholds, the operation waits for a specified period of
    /// time"): the refresh stays InProgress; its StatusReason says so (AWS's
    /// text is not documented: ours). `true` when the run ended meanwhile.
    async fn pause(&self, r: &Refresh, fleet: &mut Fleet, c: i32) -> bool {
        let delay = r.prefs.checkpoint_delay;
        self.modify(r, |x| {
            x.reason = Some(format!(
                "Sandbox: checkpoint {c}% reached; waiting {delay} s (CheckpointDelay) before \
                 replacing more instances"
            ))
        });
        for _ in 0..pause_phases(delay, self.phase) {
            tokio::time::sleep(self.phase).await;
            if self.interrupted(r, fleet).await {
                return true;
            }
        }
        self.modify(r, |x| x.reason = None);
        false
    }

    /// Applies the desired configuration to the group and ends Successful,
    /// unless a cancel or a rollback came first.
    async fn succeed(&self, r: &Refresh, fleet: &mut Fleet) {
        let target = r.desired.as_ref().or(r.before.as_ref());
        if let Err(e) = self.restore(r, fleet, target).await {
            return self.fail(r, fleet, format!("Sandbox: {e}")).await;
        }
        let signal = {
            let mut st = self.lock();
            let found = st
                .refreshes
                .by_group
                .get_mut(&r.group)
                .and_then(|l| l.iter_mut().find(|x| x.id == r.id));
            match found {
                Some(x) if x.cancel_requested => Signal::Cancel,
                Some(x) if x.rollback_requested => Signal::Rollback,
                Some(x) => {
                    x.status = "Successful".into();
                    x.reason = None;
                    x.percentage = 100;
                    x.to_update = 0;
                    x.end = Some(chrono::Utc::now());
                    st.refreshes.overlays.remove(&r.group);
                    Signal::Go
                }
                None => Signal::Go,
            }
        };
        match signal {
            Signal::Go => self.changed(r, Some(RefreshChange::Succeeded)),
            Signal::Alarm(_) => {}
            Signal::Cancel => self.cancel(r, fleet).await,
            Signal::Rollback => self.roll_back(r, fleet, None).await,
        }
    }

    /// Replaces the instances the refresh replaced with the pre-refresh
    /// setting, newest first, and ends RollbackSuccessful (RollbackFailed
    /// after the first batch when the test asked for it). `auto`: the
    /// reason of an automatic rollback (the refresh failed, or an alarm
    /// fired, and it was started with AutoRollback); it is RollbackDetails'
    /// RollbackReason.
    async fn roll_back(&self, r: &Refresh, fleet: &mut Fleet, auto: Option<String>) {
        // RollbackInstanceRefresh set the status (and sent the event) itself.
        let mut started = false;
        self.modify(r, |x| {
            started = x.status != "RollbackInProgress";
            x.status = "RollbackInProgress".into();
            x.reason = None;
            if auto.is_some() || x.rollback.is_none() {
                x.rollback = Some(Rollback {
                    reason: auto.unwrap_or_else(|| {
                        "Sandbox: rollback started by RollbackInstanceRefresh".into()
                    }),
                    start: chrono::Utc::now(),
                    percentage: x.percentage,
                    to_update: x.to_update,
                });
            }
        });
        self.changed(r, started.then_some(RefreshChange::RollbackStarted));
        let start = self.percentage(r);
        let order: Vec<usize> = (0..fleet.slots.len())
            .rev()
            .filter(|i| fleet.slots[*i].replaced)
            .collect();
        let total = order.len();
        let fail = r.outcome == "RollbackFailed";
        let mut undone = 0;
        for (n, batch) in order.chunks(fleet.batch).enumerate() {
            if let Signal::Cancel = self.signal(r) {
                return self.cancel(r, fleet).await;
            }
            if let Err(e) = self.rebuild(r, fleet, batch, On::Before).await {
                return self
                    .failed_rollback(r, fleet, format!("Sandbox: {e}"))
                    .await;
            }
            undone += batch.len();
            // "This value gradually goes back down to zero during a rollback."
            let left = (start as usize * (total - undone) / total) as i32;
            self.modify(r, |x| x.percentage = left);
            tokio::time::sleep(self.phase).await;
            if n == 0 && fail {
                let reason = "Sandbox: the rollback failed (requested outcome)".to_string();
                return self.failed_rollback(r, fleet, reason).await;
            }
        }
        if total == 0 {
            tokio::time::sleep(self.phase).await;
        }
        if let Signal::Cancel = self.signal(r) {
            return self.cancel(r, fleet).await;
        }
        if fail && total == 0 {
            let reason = "Sandbox: the rollback failed (requested outcome)".to_string();
            return self.failed_rollback(r, fleet, reason).await;
        }
        let _ = self.restore(r, fleet, r.before.as_ref()).await;
        self.end(r, "RollbackSuccessful", None, |x| x.percentage = 0);
    }

    fn percentage(&self, r: &Refresh) -> i32 {
        self.lock()
            .refreshes
            .by_group
            .get(&r.group)
            .and_then(|l| l.iter().find(|x| x.id == r.id))
            .map_or(0, |x| x.percentage)
    }

    async fn failed_rollback(&self, r: &Refresh, fleet: &Fleet, reason: String) {
        let _ = self.restore(r, fleet, r.before.as_ref()).await;
        self.end(r, "RollbackFailed", Some(reason), |_| ());
    }

    /// Cancelled: the instances already replaced stay, the group keeps its
    /// own setting.
    async fn cancel(&self, r: &Refresh, fleet: &Fleet) {
        let _ = self.restore(r, fleet, r.before.as_ref()).await;
        self.end(r, "Cancelled", Some(CANCELLED.into()), |_| ());
    }

    /// Failed: the instances already replaced stay ("By default, if the
    /// instance refresh fails, it doesn't roll back the changes that it
    /// applied to new instances"), the group keeps its own setting.
    async fn fail(&self, r: &Refresh, fleet: &Fleet, reason: String) {
        let _ = self.restore(r, fleet, r.before.as_ref()).await;
        self.end(r, "Failed", Some(reason), |_| ());
    }

    /// Sets the emulator's group to `setting`, its minimum size and desired
    /// capacity as they were (failures are logged and returned).
    async fn restore(
        &self,
        r: &Refresh,
        fleet: &Fleet,
        setting: Option<&Setting>,
    ) -> Result<(), String> {
        let mut req = self
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .min_size(fleet.min)
            .desired_capacity(fleet.capacity);
        if let Some(s) = setting {
            req = super::setting::apply(req, s);
        }
        req.send().await.map(drop).map_err(|e| {
            let e = format!("UpdateAutoScalingGroup {}: {e:?}", r.group);
            tracing::warn!("bridge: {e}");
            e
        })
    }

    /// The group's instances in launch order, and what the refresh replaces.
    pub(super) async fn prepare(&self, r: &Refresh) -> Result<Fleet, String> {
        let g = self.group(&r.group).await.ok_or("group disappeared")?;
        let target = r.desired.as_ref().or(r.before.as_ref());
        let matching = match (r.prefs.skip_matching, target) {
            (true, Some(t)) => Some(self.matcher(t).await?),
            _ => None,
        };
        let slots: Vec<Slot> = g
            .instances()
            .iter()
            .map(|i| Slot {
                id: i.instance_id().unwrap_or_default().to_string(),
                on: if matching.as_ref().is_some_and(|m| m.matches(i)) {
                    On::Desired
                } else {
                    On::Before
                },
                replaced: false,
            })
            .collect();
        let to_replace = slots.iter().filter(|s| s.on == On::Before).count();
        Ok(Fleet {
            batch: batch_size(slots.len(), to_replace, r.prefs.min_healthy),
            slots,
            min: g.min_size().unwrap_or(0),
            capacity: g.desired_capacity().unwrap_or(0),
            to_replace,
        })
    }

    /// What matches `target`: its launch templates at their versions
    /// (`$Default`/`$Latest` resolved through DescribeLaunchTemplates) and
    /// the override instance types; or its launch configuration.
    async fn matcher(&self, target: &Setting) -> Result<Matcher, String> {
        let (specs, types, configuration) = match target {
            Setting::Configuration(n) => (vec![], vec![], Some(n.clone())),
            Setting::Template(s) => (vec![s.clone()], vec![], None),
            Setting::Mixed(m) => {
                let lt = m.launch_template();
                let mut specs: Vec<_> = lt
                    .and_then(|l| l.launch_template_specification())
                    .cloned()
                    .into_iter()
                    .collect();
                let overrides = lt.map(|l| l.overrides()).unwrap_or_default();
                specs.extend(
                    overrides
                        .iter()
                        .filter_map(|o| o.launch_template_specification().cloned()),
                );
                let types = overrides
                    .iter()
                    .filter_map(|o| o.instance_type().map(str::to_string))
                    .collect();
                (specs, types, None)
            }
        };
        let mut versions = Vec::new();
        for s in specs {
            let mut req = self.emulator_ec2().describe_launch_templates();
            req = match (s.launch_template_id(), s.launch_template_name()) {
                (Some(id), _) => req.launch_template_ids(id),
                (None, Some(name)) => req.launch_template_names(name),
                (None, None) => continue,
            };
            let out = req
                .send()
                .await
                .map_err(|e| format!("DescribeLaunchTemplates: {e:?}"))?;
            let Some(t) = out.launch_templates().first() else {
                continue;
            };
            let version = match s.version().unwrap_or("$Default") {
                "$Default" => t.default_version_number().map(|v| v.to_string()),
                "$Latest" => t.latest_version_number().map(|v| v.to_string()),
                n => Some(n.to_string()),
            };
            if let (Some(id), Some(v)) = (t.launch_template_id(), version) {
                versions.push((id.to_string(), v));
            }
        }
        Ok(Matcher {
            versions,
            types,
            configuration,
        })
    }

    /// Sets the slots `which` to `to` and makes the emulator's group match
    /// the slots (see the module's comment).
    async fn rebuild(
        &self,
        r: &Refresh,
        fleet: &mut Fleet,
        which: &[usize],
        to: On,
    ) -> Result<(), String> {
        let Some(&first) = which.iter().min() else {
            return Ok(());
        };
        for &i in which {
            fleet.slots[i].on = to;
            fleet.slots[i].replaced = to == On::Desired;
        }
        self.scale(r, None, first).await?;
        let kept = self.instance_ids(&r.group).await?;
        let expected: Vec<String> = fleet.slots[..first].iter().map(|s| s.id.clone()).collect();
        if kept != expected {
            return Err(format!(
                "the emulator did not terminate the newest instances of {} (kept {kept:?}, expected {expected:?})",
                r.group
            ));
        }
        let mut i = first;
        while i < fleet.slots.len() {
            let on = fleet.slots[i].on;
            let mut j = i;
            while j < fleet.slots.len() && fleet.slots[j].on == on {
                j += 1;
            }
            let setting = match on {
                On::Before => r.before.as_ref(),
                On::Desired => r.desired.as_ref().or(r.before.as_ref()),
            };
            self.scale(r, setting, j).await?;
            let ids = self.instance_ids(&r.group).await?;
            if ids.len() != j {
                return Err(format!(
                    "the emulator launched {} of {} instances in {} (see its scaling activities)",
                    ids.len().saturating_sub(i),
                    j - i,
                    r.group
                ));
            }
            for (k, id) in ids.into_iter().enumerate().skip(i) {
                fleet.slots[k].id = id;
            }
            i = j;
        }
        Ok(())
    }

    /// Sets the emulator's group to `capacity` instances (and to `setting`,
    /// which the new ones launch from); the minimum size 0 lets it shrink.
    async fn scale(
        &self,
        r: &Refresh,
        setting: Option<&Setting>,
        capacity: usize,
    ) -> Result<(), String> {
        let mut req = self
            .asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(&r.group)
            .min_size(0)
            .desired_capacity(capacity as i32);
        if let Some(s) = setting {
            req = super::setting::apply(req, s);
        }
        req.send()
            .await
            .map(drop)
            .map_err(|e| format!("UpdateAutoScalingGroup {}: {e:?}", r.group))
    }

    async fn instance_ids(&self, group: &str) -> Result<Vec<String>, String> {
        let g = self
            .group(group)
            .await
            .ok_or_else(|| format!("group {group} disappeared"))?;
        Ok(g.instances()
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect())
    }
}

/// What an instance must be launched from to match a desired configuration.
struct Matcher {
    /// Launch template ids and version numbers.
    versions: Vec<(String, String)>,
    /// A mixed policy's override instance types (none: any).
    types: Vec<String>,
    configuration: Option<String>,
}

impl Matcher {
    fn matches(&self, i: &Instance) -> bool {
        if let Some(c) = &self.configuration {
            return i.launch_configuration_name() == Some(c.as_str());
        }
        let Some(lt) = i.launch_template() else {
            return false;
        };
        let on_version = self.versions.iter().any(|(id, v)| {
            lt.launch_template_id() == Some(id.as_str()) && lt.version() == Some(v.as_str())
        });
        let on_type = self.types.is_empty()
            || i.instance_type()
                .is_some_and(|t| self.types.iter().any(|x| x == t));
        on_version && on_type
    }
}
