//! The run of an emulated refresh: Pending for one phase, then the
//! instances to replace (all, or with SkipMatching those not on the desired
//! configuration) in batches, newest first, one phase each; `Baking` for one
//! phase when BakeTime > 0; then the desired configuration is applied to the
//! group and the refresh ends Successful. A cancel, a rollback or a requested
//! failure is noticed between batches. A rollback replaces the instances the
//! refresh replaced with the group's pre-refresh setting, newest first.
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
            _ => Signal::Go,
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

    pub(super) async fn run_refresh(&self, r: Refresh, mut fleet: Fleet) {
        if fleet.to_replace == 0 {
            // "If you enable skip matching, but none of these are changing,
            // the instance refresh will succeed immediately without replacing
            // any instances."
            return self.succeed(&r, &mut fleet).await;
        }
        tokio::time::sleep(self.phase).await;
        match self.signal(&r) {
            Signal::Go => {}
            Signal::Cancel => return self.end(&r, "Cancelled", Some(CANCELLED.into()), |_| ()),
            Signal::Rollback => return self.roll_back(&r, &mut fleet, false).await,
        }
        self.modify(&r, |x| x.status = "InProgress".into());
        // Newest first: the emulator terminates newest first.
        let order: Vec<usize> = (0..fleet.slots.len())
            .rev()
            .filter(|i| fleet.slots[*i].on == On::Before)
            .collect();
        for (n, batch) in order.chunks(fleet.batch).enumerate() {
            if n > 0 {
                match self.signal(&r) {
                    Signal::Go => {}
                    Signal::Cancel => return self.cancel(&r, &fleet).await,
                    Signal::Rollback => return self.roll_back(&r, &mut fleet, false).await,
                }
            }
            if let Err(e) = self.rebuild(&r, &mut fleet, batch, On::Desired).await {
                return self.fail(&r, &fleet, format!("Sandbox: {e}")).await;
            }
            let done = fleet.slots.iter().filter(|s| s.replaced).count();
            let total = fleet.to_replace;
            self.modify(&r, |x| {
                x.percentage = (done * 100 / total) as i32;
                x.to_update = (total - done) as i32;
            });
            tokio::time::sleep(self.phase).await;
            if n == 0 && r.outcome == "Hold" {
                let until = tokio::time::Instant::now() + HOLD_LIMIT;
                while tokio::time::Instant::now() < until {
                    match self.signal(&r) {
                        Signal::Go => tokio::time::sleep(self.phase).await,
                        Signal::Cancel => return self.cancel(&r, &fleet).await,
                        Signal::Rollback => return self.roll_back(&r, &mut fleet, false).await,
                    }
                }
            }
            if n == 0 && fails(&r) {
                if r.prefs.auto_rollback {
                    return self.roll_back(&r, &mut fleet, true).await;
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
        }
        if r.prefs.bake_time > 0 {
            match self.signal(&r) {
                Signal::Go => {}
                Signal::Cancel => return self.cancel(&r, &fleet).await,
                Signal::Rollback => return self.roll_back(&r, &mut fleet, false).await,
            }
            self.modify(&r, |x| {
                if x.status == "InProgress" {
                    x.status = "Baking".into();
                }
            });
            // Any BakeTime lasts one phase here.
            tokio::time::sleep(self.phase).await;
        }
        self.succeed(&r, &mut fleet).await
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
            Signal::Go => {}
            Signal::Cancel => self.cancel(r, fleet).await,
            Signal::Rollback => self.roll_back(r, fleet, false).await,
        }
    }

    /// Replaces the instances the refresh replaced with the pre-refresh
    /// setting, newest first, and ends RollbackSuccessful (RollbackFailed
    /// after the first batch when the test asked for it). `auto`: the
    /// refresh failed and was started with AutoRollback.
    async fn roll_back(&self, r: &Refresh, fleet: &mut Fleet, auto: bool) {
        self.modify(r, |x| {
            x.status = "RollbackInProgress".into();
            if auto || x.rollback.is_none() {
                x.rollback = Some(Rollback {
                    reason: if auto {
                        "Sandbox: the instance refresh failed (requested outcome); automatic rollback"
                            .into()
                    } else {
                        "Sandbox: rollback started by RollbackInstanceRefresh".into()
                    },
                    start: chrono::Utc::now(),
                    percentage: x.percentage,
                    to_update: x.to_update,
                });
            }
        });
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
