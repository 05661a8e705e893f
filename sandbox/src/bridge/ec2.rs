//! The EC2 actions the gateway amends, so the steps meet EC2's timings and
//! refusals rather than fakecloud's (which makes an image `available` and a
//! stopped instance `stopped` at once, and accepts any AMI name twice):
//!
//! - a new AMI is not found for [`Timings::image_invisible`] after
//!   CreateImage (by id: `InvalidAMIID.NotFound`; by filter: left out), then
//!   is `pending` for [`Timings::image_pending`] more, then as the emulator
//!   has it;
//! - CreateImage with a name an image of the account already has:
//!   `InvalidAMIName.Duplicate`;
//! - after StopInstances a running instance is `stopping` for
//!   [`Timings::stopping`] (DescribeInstances by id), after StartInstances a
//!   stopped one `pending` for [`Timings::starting`];
//! - StopInstances of a `pending` instance: `IncorrectInstanceState`;
//! - `POST /_sandbox/image-outcome` (form `instance`, `outcome` = failed |
//!   available, optional `message`) makes the next AMI of that instance end
//!   `failed` instead of `available` (DescribeImages shows `failed` from then
//!   on; the event's `ErrorMessage` is the message);
//! - an image has snapshots of the instance's EBS volumes (`snapshots.rs`).
//!
//! The states move with time, as on AWS (nobody has to ask), and each change
//! publishes the event EC2 sends ([`crate::aws_events`]) at that moment,
//! from a timer of its own: `EC2 Instance State-change Notification`
//! (stopping, stopped, pending, running; shutting-down and terminated on
//! TerminateInstances) and `EC2 AMI State Change` (available; deregistered
//! on DeregisterImage). The lengths are short ([`DEFAULT_MS`]) so tests stay
//! quick. Everything else is forwarded unchanged.

use super::autoscaling::members;
use super::{xml, Bridge};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use quick_xml::escape::unescape;
use quick_xml::events::{BytesText, Event};
use quick_xml::{Reader, Writer};
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// The environment variable (and `--ec2-ms` flag) setting how long each
/// EC2 transition lasts, in milliseconds; 0 turns the timings off (the
/// refusals stay, the events are published at once).
pub const MS_VAR: &str = "SANDBOX_EC2_MS";
/// The earlier knob, in polls of the steps (about a second each): still
/// read when [`MS_VAR`] is unset, `n` polls = `n` × [`DEFAULT_MS`].
pub const POLLS_VAR: &str = "SANDBOX_EC2_POLLS";
/// A second: about one poll of a waiting step (its first wait), so a wait
/// still sees the intermediate state, and end-to-end suites stay quick.
pub const DEFAULT_MS: u64 = 1000;

/// How long each EC2 transition lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// A new AMI is not found (by id) or left out (by filter).
    pub image_invisible: Duration,
    /// Then it is `pending`.
    pub image_pending: Duration,
    /// A stopped instance is `stopping`.
    pub stopping: Duration,
    /// A started instance is `pending`.
    pub starting: Duration,
}

impl Timings {
    /// Every transition `ms` long (a new AMI is invisible for half that).
    pub fn millis(ms: u64) -> Self {
        Self {
            image_invisible: Duration::from_millis(ms / 2),
            image_pending: Duration::from_millis(ms),
            stopping: Duration::from_millis(ms),
            starting: Duration::from_millis(ms),
        }
    }

    /// From [`MS_VAR`], else [`POLLS_VAR`], else [`DEFAULT_MS`].
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        Self::millis(
            var(MS_VAR)
                .or_else(|| var(POLLS_VAR).map(|n| n * DEFAULT_MS))
                .unwrap_or(DEFAULT_MS),
        )
    }
}

impl Default for Timings {
    fn default() -> Self {
        Self::millis(DEFAULT_MS)
    }
}

/// A new AMI's timeline.
#[derive(Debug, Clone)]
struct NewImage {
    /// Found from then on (`pending`).
    visible: Instant,
    /// As the emulator has it from then on (`available`).
    settled: Instant,
    /// The CreateImage request's id (the event's `RequestId`).
    request_id: String,
    /// It ends `failed`, for this reason (a test asked for it).
    failure: Option<String>,
}

/// What the gateway remembers of EC2 (in the bridge's state).
#[derive(Default)]
pub struct Ec2State {
    pub timings: Timings,
    /// The bridge's own EC2 client, straight to the emulator (None in tests
    /// of the bridge without one).
    pub client: Option<aws_sdk_ec2::Client>,
    /// New AMIs until they are available.
    images: HashMap<String, NewImage>,
    /// The failure asked for the next AMI of each instance.
    image_outcomes: HashMap<String, String>,
    /// AMIs that ended `failed`, and why.
    failed_images: HashMap<String, String>,
    /// Instances `stopping` / `pending` until these instants.
    stopping: HashMap<String, Instant>,
    starting: HashMap<String, Instant>,
    /// The block devices (with the snapshots the gateway made) of each
    /// image CreateImage made and DeregisterImage has not removed.
    image_devices: HashMap<String, Vec<snapshots::ImageDevice>>,
}

/// Whether `until` is still ahead.
fn before(until: Option<&Instant>, now: Instant) -> bool {
    until.is_some_and(|u| now < *u)
}

impl Bridge {
    /// An EC2 request that no fault answered.
    pub(super) async fn ec2(
        &self,
        action: &str,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        match action {
            "CreateImage" => self.create_image(form, parts, body).await,
            "DescribeImages" => self.describe_images(form, parts, body).await,
            "DeregisterImage" => self.deregister_image(form, parts, body).await,
            "DeleteSnapshot" => self.delete_snapshot(form, parts, body).await,
            "StopInstances" => self.stop_instances(form, parts, body).await,
            "StartInstances" => self.start_instances(form, parts, body).await,
            "TerminateInstances" => self.terminate_instances(form, parts, body).await,
            "DescribeInstances" => self.describe_instances(form, parts, body).await,
            _ => self.forward(parts, body).await,
        }
    }

    fn ec2_client(&self) -> Option<aws_sdk_ec2::Client> {
        self.lock().ec2.client.clone()
    }

    async fn create_image(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        if let (Some(name), Some(ec2)) = (form.get("Name"), self.ec2_client()) {
            let taken = ec2
                .describe_images()
                .owners("self")
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("name")
                        .values(name)
                        .build(),
                )
                .send()
                .await
                .ok()
                .and_then(|o| {
                    o.images()
                        .iter()
                        .find(|i| i.name() == Some(name.as_str()))
                        .and_then(|i| i.image_id().map(str::to_string))
                });
            if let Some(id) = taken {
                return xml::ec2_error(
                    400,
                    "InvalidAMIName.Duplicate",
                    &format!("AMI name {name} is already in use by AMI {id}"),
                );
            }
        }
        let (res, text) = text_of(self.forward(parts, body).await).await;
        if res.status().is_success() {
            if let Some(id) = between(&text, "<imageId>", "</imageId>") {
                let request_id = between(&text, "<requestId>", "</requestId>")
                    .unwrap_or_else(crate::aws_events::event_id);
                let failure = form
                    .get("InstanceId")
                    .and_then(|i| self.lock().ec2.image_outcomes.remove(i));
                self.image_timeline(&id, request_id, failure);
                if let Err(e) = self.snapshot_volumes(form, &id).await {
                    eprintln!("sandbox: the snapshots of image {id} were not made: {e}");
                }
            }
        }
        rebuilt(res, text)
    }

    async fn describe_images(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let wanted = members(form, "ImageId.");
        let now = Instant::now();
        {
            let st = self.lock();
            let unseen: Vec<String> = wanted
                .iter()
                .filter(|id| before(st.ec2.images.get(*id).map(|i| &i.visible), now))
                .cloned()
                .collect();
            if !unseen.is_empty() {
                return xml::ec2_error(
                    400,
                    "InvalidAMIID.NotFound",
                    &format!("The image id '[{}]' does not exist", unseen.join(", ")),
                );
            }
        }
        let (res, text) = text_of(self.forward(parts, body).await).await;
        if !res.status().is_success() {
            return rebuilt(res, text);
        }
        let edited = {
            let st = self.lock();
            edit_items(&text, "imagesSet", |item| {
                let Some(image) = st.ec2.images.get(&item.text(&["imageId"])) else {
                    return Edit::Keep;
                };
                if now < image.visible {
                    Edit::Drop
                } else if now < image.settled {
                    Edit::Set(vec![(&["imageState"], "pending".into())])
                } else {
                    Edit::Keep
                }
            })
            .and_then(|text| {
                edit_items(&text, "imagesSet", |item| {
                    if st.ec2.failed_images.contains_key(&item.text(&["imageId"])) {
                        Edit::Set(vec![(&["imageState"], "failed".into())])
                    } else {
                        Edit::Keep
                    }
                })
            })
        };
        self.with_block_devices(res, edited.unwrap_or(text))
    }

    /// The emulator's state name of each instance.
    async fn states(&self, ids: &[String]) -> HashMap<String, String> {
        let Some(ec2) = self.ec2_client() else {
            return HashMap::new();
        };
        let Ok(out) = ec2
            .describe_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
        else {
            return HashMap::new();
        };
        out.reservations()
            .iter()
            .flat_map(|r| r.instances())
            .filter_map(|i| {
                Some((
                    i.instance_id()?.to_string(),
                    i.state()?.name()?.as_str().to_string(),
                ))
            })
            .collect()
    }

    async fn stop_instances(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let ids = members(form, "InstanceId.");
        let states = self.states(&ids).await;
        let pending = {
            let st = self.lock();
            let now = Instant::now();
            ids.iter()
                .find(|id| {
                    before(st.ec2.starting.get(*id), now)
                        || states.get(*id).is_some_and(|s| s == "pending")
                })
                .cloned()
        };
        if let Some(id) = pending {
            return xml::ec2_error(
                400,
                "IncorrectInstanceState",
                &format!("Instance '{id}' cannot be stopped as it has never reached the 'running' state."),
            );
        }
        let (res, text) = text_of(self.forward(parts, body).await).await;
        if !res.status().is_success() {
            return rebuilt(res, text);
        }
        let running: Vec<String> = ids
            .iter()
            .filter(|id| states.get(*id).is_some_and(|s| s == "running"))
            .cloned()
            .collect();
        let edited = {
            let mut st = self.lock();
            let length = st.ec2.timings.stopping;
            let until = Instant::now() + length;
            for id in &running {
                st.ec2.starting.remove(id);
                st.ec2.stopping.insert(id.clone(), until);
            }
            // EC2 answers the state the instance is now in: `stopping`.
            edit_items(&text, "instancesSet", |item| {
                if !length.is_zero() && running.contains(&item.text(&["instanceId"])) {
                    Edit::Set(vec![
                        (&["currentState", "code"], "64".into()),
                        (&["currentState", "name"], "stopping".into()),
                    ])
                } else {
                    Edit::Keep
                }
            })
        };
        for id in running {
            self.transition(id, "stopping", "stopped");
        }
        rebuilt(res, edited.unwrap_or(text))
    }

    /// By id (as the steps poll a server): a stopped instance still
    /// `stopping`, a running one still `pending`, until their instants.
    /// Filtered listings are forwarded unchanged.
    async fn describe_instances(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        if members(form, "InstanceId.").is_empty() {
            return self.forward(parts, body).await;
        }
        let (res, text) = text_of(self.forward(parts, body).await).await;
        if !res.status().is_success() {
            return rebuilt(res, text);
        }
        let edited = {
            let st = self.lock();
            let ec2 = &st.ec2;
            let now = Instant::now();
            edit_items(&text, "instancesSet", |item| {
                let id = item.text(&["instanceId"]);
                let state = item.text(&["instanceState", "name"]);
                let shown = match state.as_str() {
                    "stopped" if before(ec2.stopping.get(&id), now) => ("64", "stopping"),
                    "running" if before(ec2.starting.get(&id), now) => ("0", "pending"),
                    _ => return Edit::Keep,
                };
                Edit::Set(vec![
                    (&["instanceState", "code"], shown.0.into()),
                    (&["instanceState", "name"], shown.1.into()),
                ])
            })
        };
        rebuilt(res, edited.unwrap_or(text))
    }
}

/// The failure reason when a test asked for none: AWS's texts for a failed
/// AMI are not documented.
const IMAGE_FAILURE: &str = "Sandbox: the image failed (requested outcome)";

impl Bridge {
    /// `POST /_sandbox/image-outcome` (form `instance`, `outcome` = failed |
    /// available, `message`): how the next AMI of the instance ends.
    pub(super) fn set_image_outcome(
        &self,
        form: &HashMap<String, String>,
    ) -> Response<Full<Bytes>> {
        let Some(instance) = form.get("instance") else {
            return xml::error(400, "ValidationError", "instance is required");
        };
        let mut st = self.lock();
        match form.get("outcome").map(String::as_str) {
            Some("failed") => {
                let why = form.get("message").cloned().unwrap_or(IMAGE_FAILURE.into());
                st.ec2.image_outcomes.insert(instance.clone(), why);
            }
            Some("available") => {
                st.ec2.image_outcomes.remove(instance);
            }
            _ => {
                return xml::error(
                    400,
                    "ValidationError",
                    "outcome must be failed or available",
                )
            }
        }
        xml::acknowledged()
    }

    /// A new AMI: invisible, then `pending`, then available (or failed);
    /// at that moment EC2's event, unless it was deregistered meanwhile.
    fn image_timeline(&self, id: &str, request_id: String, failure: Option<String>) {
        let now = Instant::now();
        let image = {
            let mut st = self.lock();
            let t = st.ec2.timings;
            let visible = now + t.image_invisible;
            let image = NewImage {
                visible,
                settled: visible + t.image_pending,
                request_id,
                failure,
            };
            st.ec2.images.insert(id.to_string(), image.clone());
            image
        };
        let (bridge, id) = (self.clone(), id.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(image.settled).await;
            let settled = {
                let mut st = bridge.lock();
                let same = st.ec2.images.get(&id).map(|i| i.settled) == Some(image.settled);
                let settled = same.then(|| st.ec2.images.remove(&id)).flatten();
                if let Some(why) = settled.as_ref().and_then(|i| i.failure.clone()) {
                    st.ec2.failed_images.insert(id.clone(), why);
                }
                settled
            };
            if let Some(i) = settled {
                match &i.failure {
                    Some(why) => bridge.events.ami_state(&id, "failed", &i.request_id, why),
                    None => bridge.events.ami_state(&id, "available", &i.request_id, ""),
                };
            }
        });
    }

    /// An instance entering `now` (its event at once), then `then` when its
    /// transition's instant comes (stopping/stopped, pending/running), unless
    /// another transition replaced it meanwhile.
    fn transition(&self, id: String, now: &'static str, then: &'static str) {
        let until = {
            let st = self.lock();
            let map = if now == "stopping" {
                &st.ec2.stopping
            } else {
                &st.ec2.starting
            };
            map.get(&id).copied()
        };
        let Some(until) = until else { return };
        self.events.instance_state(&id, now);
        let bridge = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let current = {
                let mut st = bridge.lock();
                let map = if now == "stopping" {
                    &mut st.ec2.stopping
                } else {
                    &mut st.ec2.starting
                };
                let same = map.get(&id) == Some(&until);
                if same {
                    map.remove(&id);
                }
                same
            };
            if current {
                bridge.events.instance_state(&id, then);
            }
        });
    }

    /// StartInstances: a stopped instance is `pending`, then `running`.
    async fn start_instances(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let ids = members(form, "InstanceId.");
        let states = self.states(&ids).await;
        let res = self.forward(parts, body).await;
        if !res.status().is_success() {
            return res;
        }
        let started: Vec<String> = ids
            .into_iter()
            .filter(|id| states.get(id).is_some_and(|s| s == "stopped"))
            .collect();
        {
            let mut st = self.lock();
            let until = Instant::now() + st.ec2.timings.starting;
            for id in &started {
                st.ec2.stopping.remove(id);
                st.ec2.starting.insert(id.clone(), until);
            }
        }
        for id in started {
            self.transition(id, "pending", "running");
        }
        res
    }

    /// TerminateInstances: the emulator terminates at once, so each instance
    /// that was not already gone has both its events, `shutting-down` then
    /// `terminated`, when the call succeeds.
    async fn terminate_instances(
        &self,
        form: &HashMap<String, String>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let ids = members(form, "InstanceId.");
        let states = self.states(&ids).await;
        let res = self.forward(parts, body).await;
        if !res.status().is_success() {
            return res;
        }
        for id in ids {
            if states
                .get(&id)
                .is_none_or(|s| s == "terminated" || s == "shutting-down")
            {
                continue;
            }
            {
                let mut st = self.lock();
                st.ec2.stopping.remove(&id);
                st.ec2.starting.remove(&id);
            }
            self.events.instance_state(&id, "shutting-down");
            self.events.instance_state(&id, "terminated");
        }
        res
    }

    /// After a successful DeregisterImage: EC2's `deregistered` event (the
    /// AMI's `available` one is no longer due).
    pub(super) fn image_deregistered(&self, id: &str, request_id: &str) {
        {
            let mut st = self.lock();
            st.ec2.images.remove(id);
            st.ec2.failed_images.remove(id);
        }
        self.events.ami_state(id, "deregistered", request_id, "");
    }
}

/// The answer's parts and its body as text.
async fn text_of(res: Response<Full<Bytes>>) -> (Response<()>, String) {
    let (parts, body) = res.into_parts();
    let bytes = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    (
        Response::from_parts(parts, ()),
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

/// The answer again, with `text` as its body.
fn rebuilt(res: Response<()>, text: String) -> Response<Full<Bytes>> {
    let (parts, ()) = res.into_parts();
    Response::from_parts(parts, Full::new(Bytes::from(text)))
}

/// The text between the first `open` and the next `close`.
fn between(text: &str, open: &str, close: &str) -> Option<String> {
    let rest = text.split(open).nth(1)?;
    Some(rest.split(close).next()?.to_string())
}

/// What to do with one item of a list.
pub enum Edit {
    Keep,
    Drop,
    /// New text for the elements at these paths (relative to the item).
    Set(Vec<(&'static [&'static str], String)>),
}

/// One item's events with the path (inside the item) each is at.
pub struct Item<'a> {
    events: Vec<(Event<'a>, Vec<String>)>,
}

impl Item<'_> {
    /// The text of the element at `path` (unescaped), empty if none.
    pub fn text(&self, path: &[&str]) -> String {
        let mut s = String::new();
        for (e, p) in &self.events {
            if let Event::Text(t) = e {
                if p.iter().map(String::as_str).eq(path.iter().copied()) {
                    s.push_str(t);
                }
            }
        }
        unescape(&s).map(|c| c.into_owned()).unwrap_or(s)
    }
}

/// Rewrites each `item` directly in a `container` element of an EC2 answer
/// as `decide` says (given the whole item); everything else is copied event
/// by event.
pub fn edit_items(
    xml: &str,
    container: &str,
    mut decide: impl FnMut(&Item<'_>) -> Edit,
) -> Result<String, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut out = Writer::new(Vec::with_capacity(xml.len()));
    let mut open: Vec<String> = vec![];
    let mut item: Option<(Item<'_>, Vec<String>)> = None;
    loop {
        let event = reader.read_event()?;
        if matches!(event, Event::Eof) {
            break;
        }
        if let Some((it, path)) = item.as_mut() {
            match &event {
                Event::Start(e) => {
                    let name = e.name().as_ref().to_string();
                    it.events.push((event, path.clone()));
                    path.push(name);
                }
                Event::End(_) if path.is_empty() => {
                    it.events.push((event, vec![]));
                    if let Some((it, _)) = item.take() {
                        write_item(&mut out, it, &mut decide)?;
                    }
                }
                Event::End(_) => {
                    path.pop();
                    it.events.push((event, path.clone()));
                }
                _ => it.events.push((event, path.clone())),
            }
            continue;
        }
        match &event {
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                if name == "item" && open.last().is_some_and(|p| p == container) {
                    item = Some((
                        Item {
                            events: vec![(event, vec![])],
                        },
                        vec![],
                    ));
                    continue;
                }
                open.push(name);
            }
            Event::End(_) => {
                open.pop();
            }
            _ => {}
        }
        out.write_event(event)?;
    }
    Ok(String::from_utf8(out.into_inner()).expect("copied from a &str"))
}

fn write_item(
    out: &mut Writer<Vec<u8>>,
    item: Item<'_>,
    decide: &mut impl FnMut(&Item<'_>) -> Edit,
) -> Result<(), quick_xml::Error> {
    let sets = match decide(&item) {
        Edit::Drop => return Ok(()),
        Edit::Keep => vec![],
        Edit::Set(s) => s,
    };
    for (event, path) in item.events {
        let new = match &event {
            Event::Text(_) => sets
                .iter()
                .find(|(p, _)| path.iter().map(String::as_str).eq(p.iter().copied())),
            _ => None,
        };
        match new {
            Some((_, text)) => out.write_event(Event::Text(BytesText::new(text)))?,
            None => out.write_event(event)?,
        }
    }
    Ok(())
}

mod snapshots;

#[cfg(test)]
mod tests;
