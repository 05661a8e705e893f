//! The EC2 actions the gateway amends, so the steps meet EC2's timings and
//! refusals rather than fakecloud's (which makes an image `available` and a
//! stopped instance `stopped` at once, and accepts any AMI name twice):
//!
//! - a new AMI is not found by the first DescribeImages that would show it
//!   (by id: `InvalidAMIID.NotFound`; by filter: left out), then is `pending`
//!   for [`Timings::image_pending`] more, then as the emulator has it;
//! - CreateImage with a name an image of the account already has:
//!   `InvalidAMIName.Duplicate`;
//! - after StopInstances a running instance is `stopping` for
//!   [`Timings::stopping`] DescribeInstances by id, after StartInstances
//!   `pending` for [`Timings::starting`];
//! - StopInstances of a `pending` instance: `IncorrectInstanceState`;
//! - an image has snapshots of the instance's EBS volumes (`snapshots.rs`).
//!
//! The counts are polls, not seconds, so tests stay quick and repeatable.
//! Everything else is forwarded unchanged.

use super::autoscaling::members;
use super::{xml, Bridge};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Response;
use quick_xml::escape::unescape;
use quick_xml::events::{BytesText, Event};
use quick_xml::{Reader, Writer};
use std::collections::HashMap;

/// The environment variable (and `--ec2-polls` flag) setting every count;
/// 0 turns the timings off (the refusals stay).
pub const POLLS_VAR: &str = "SANDBOX_EC2_POLLS";

/// How many polls each EC2 transition lasts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timings {
    /// DescribeImages calls that do not see a new AMI.
    pub image_invisible: u32,
    /// DescribeImages calls that then show it `pending`.
    pub image_pending: u32,
    /// DescribeInstances (by id) that show a stopped instance `stopping`.
    pub stopping: u32,
    /// DescribeInstances (by id) that show a started instance `pending`.
    pub starting: u32,
}

impl Timings {
    /// Every transition `n` polls long (a new AMI is invisible once).
    pub fn polls(n: u32) -> Self {
        Self {
            image_invisible: n.min(1),
            image_pending: n,
            stopping: n,
            starting: n,
        }
    }

    /// From [`POLLS_VAR`]; 1 poll when unset: every wait loop of the steps
    /// runs, and the end-to-end suites stay quick (2 made the faults suite
    /// twice as long).
    pub fn from_env() -> Self {
        Self::polls(
            std::env::var(POLLS_VAR)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
        )
    }
}

impl Default for Timings {
    fn default() -> Self {
        Self::polls(1)
    }
}

/// What the gateway remembers of EC2 (in the bridge's state).
#[derive(Default)]
pub struct Ec2State {
    pub timings: Timings,
    /// The bridge's own EC2 client, straight to the emulator (None in tests
    /// of the bridge without one).
    pub client: Option<aws_sdk_ec2::Client>,
    /// New AMIs: DescribeImages still to answer "not found", then `pending`.
    images: HashMap<String, (u32, u32)>,
    /// Instances still to show `stopping` / `pending`.
    stopping: HashMap<String, u32>,
    starting: HashMap<String, u32>,
    /// The block devices (with the snapshots the gateway made) of each
    /// image CreateImage made and DeregisterImage has not removed.
    image_devices: HashMap<String, Vec<snapshots::ImageDevice>>,
}

/// Takes one from a count; true if it was above zero.
fn take(count: Option<&mut u32>) -> bool {
    match count {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    }
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
            "StartInstances" => {
                let res = self.forward(parts, body).await;
                if res.status().is_success() {
                    let mut st = self.lock();
                    let n = st.ec2.timings.starting;
                    for id in members(form, "InstanceId.") {
                        st.ec2.stopping.remove(&id);
                        st.ec2.starting.insert(id, n);
                    }
                }
                res
            }
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
                {
                    let mut st = self.lock();
                    let t = st.ec2.timings;
                    st.ec2
                        .images
                        .insert(id.clone(), (t.image_invisible, t.image_pending));
                }
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
        {
            let mut st = self.lock();
            let unseen: Vec<String> = wanted
                .iter()
                .filter(|id| take(st.ec2.images.get_mut(*id).map(|c| &mut c.0)))
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
            let mut st = self.lock();
            edit_items(&text, "imagesSet", |item| {
                let Some(counts) = st.ec2.images.get_mut(&item.text(&["imageId"])) else {
                    return Edit::Keep;
                };
                if take(Some(&mut counts.0)) {
                    Edit::Drop
                } else if take(Some(&mut counts.1)) {
                    Edit::Set(vec![(&["imageState"], "pending".into())])
                } else {
                    Edit::Keep
                }
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
            ids.iter()
                .find(|id| {
                    st.ec2.starting.get(*id).is_some_and(|n| *n > 0)
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
        let edited = {
            let mut st = self.lock();
            let n = st.ec2.timings.stopping;
            for id in ids
                .iter()
                .filter(|id| states.get(*id).is_some_and(|s| s == "running"))
            {
                st.ec2.stopping.insert(id.clone(), n);
            }
            // EC2 answers the state the instance is now in: `stopping`.
            edit_items(&text, "instancesSet", |item| {
                if n > 0 && st.ec2.stopping.contains_key(&item.text(&["instanceId"])) {
                    Edit::Set(vec![
                        (&["currentState", "code"], "64".into()),
                        (&["currentState", "name"], "stopping".into()),
                    ])
                } else {
                    Edit::Keep
                }
            })
        };
        rebuilt(res, edited.unwrap_or(text))
    }

    /// By id (as the steps poll a server): a stopped instance still
    /// `stopping`, a running one still `pending`, while their counts last.
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
            let mut st = self.lock();
            let ec2 = &mut st.ec2;
            edit_items(&text, "instancesSet", |item| {
                let id = item.text(&["instanceId"]);
                let state = item.text(&["instanceState", "name"]);
                let shown = match state.as_str() {
                    "stopped" if take(ec2.stopping.get_mut(&id)) => ("64", "stopping"),
                    "running" if take(ec2.starting.get_mut(&id)) => ("0", "pending"),
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
