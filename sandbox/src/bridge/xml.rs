//! The query protocol's XML, read and written with quick-xml: the bridge's own
//! answers and errors (in Auto Scaling's and EC2's shapes), and its one edit of
//! the emulator's answers, a group's `SuspendedProcesses` in
//! DescribeAutoScalingGroups.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use quick_xml::escape::unescape;
use quick_xml::events::{BytesText, Event};
use quick_xml::{Reader, Writer};
use std::collections::BTreeSet;
use std::io;

/// Auto Scaling's namespace (API version 2011-01-01).
const XMLNS: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

pub type XmlWriter = Writer<Vec<u8>>;

/// A document written by `f`.
fn document(f: impl FnOnce(&mut XmlWriter) -> io::Result<()>) -> String {
    let mut w = Writer::new(Vec::new());
    // Writing to a Vec cannot fail, and the writer only copies &str into it.
    f(&mut w).expect("XML written to memory");
    String::from_utf8(w.into_inner()).expect("XML written from &str")
}

/// An XML fragment written by `f` (several elements may follow each other).
pub fn fragment(f: impl FnOnce(&mut XmlWriter) -> io::Result<()>) -> String {
    document(f)
}

/// `<name>text</name>`, the text escaped.
pub fn leaf(w: &mut XmlWriter, name: &str, text: &str) -> io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(text))?;
    Ok(())
}

/// An HTTP answer with an XML body.
pub fn response(status: u16, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts")
}

/// `<ok/>`: a control route's acknowledgement.
pub fn acknowledged() -> Response<Full<Bytes>> {
    response(
        200,
        document(|w| w.create_element("ok").write_empty().map(drop)),
    )
}

/// An Auto Scaling action's answer with no result element (the
/// SuspendProcesses / ResumeProcesses shape).
pub fn ok_empty(action: &str) -> Response<Full<Bytes>> {
    answer(action, None::<fn(&mut XmlWriter) -> io::Result<()>>)
}

/// An Auto Scaling action's answer; `result` writes the children of
/// `<{action}Result>`.
pub fn ok(
    action: &str,
    result: impl FnOnce(&mut XmlWriter) -> io::Result<()>,
) -> Response<Full<Bytes>> {
    answer(action, Some(result))
}

fn answer(
    action: &str,
    result: Option<impl FnOnce(&mut XmlWriter) -> io::Result<()>>,
) -> Response<Full<Bytes>> {
    let body = document(|w| {
        w.create_element(format!("{action}Response"))
            .with_attribute(("xmlns", XMLNS))
            .write_inner_content(|w| {
                if let Some(result) = result {
                    w.create_element(format!("{action}Result"))
                        .write_inner_content(result)?;
                }
                w.create_element("ResponseMetadata")
                    .write_inner_content(|w| leaf(w, "RequestId", &super::request_id()))?;
                Ok(())
            })
            .map(drop)
    });
    response(200, body)
}

/// An error in Auto Scaling's (and the other query services') shape.
pub fn error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = document(|w| {
        w.create_element("ErrorResponse")
            .with_attribute(("xmlns", XMLNS))
            .write_inner_content(|w| {
                w.create_element("Error").write_inner_content(|w| {
                    leaf(w, "Type", "Sender")?;
                    leaf(w, "Code", code)?;
                    leaf(w, "Message", message)
                })?;
                leaf(w, "RequestId", &super::request_id())
            })
            .map(drop)
    });
    response(status, body)
}

/// An error in EC2's shape (`Response/Errors/Error`, `RequestID`).
pub fn ec2_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = document(|w| {
        w.create_element("Response")
            .write_inner_content(|w| {
                w.create_element("Errors").write_inner_content(|w| {
                    w.create_element("Error").write_inner_content(|w| {
                        leaf(w, "Code", code)?;
                        leaf(w, "Message", message)
                    })?;
                    Ok(())
                })?;
                leaf(w, "RequestID", &super::request_id())
            })
            .map(drop)
    });
    response(status, body)
}

/// A group's `SuspendedProcesses` element, as Auto Scaling describes
/// processes suspended through the API.
pub fn suspended_processes(processes: &BTreeSet<String>) -> String {
    document(|w| {
        w.create_element("SuspendedProcesses")
            .write_inner_content(|w| {
                for p in processes {
                    w.create_element("member").write_inner_content(|w| {
                        leaf(w, "ProcessName", p)?;
                        leaf(w, "SuspensionReason", "User suspended")
                    })?;
                }
                Ok(())
            })
            .map(drop)
    })
}

/// Puts `replacement` as the SuspendedProcesses of the group named `group`
/// in a DescribeAutoScalingGroups answer (the answer unchanged if it is not
/// well-formed XML); see [`set_suspended`].
pub fn inject_suspended(xml: &str, group: &str, replacement: &str) -> String {
    set_suspended(xml, |g| (g == group).then(|| replacement.to_string()))
        .unwrap_or_else(|_| xml.to_string())
}

/// Rewrites a DescribeAutoScalingGroups answer: in each group
/// (`AutoScalingGroups/member`) for whose name `replacement_for` gives an
/// XML fragment, the group's own `SuspendedProcesses` element (the emulator
/// writes none, or an empty one) is dropped and the fragment written as the
/// group's last child. Everything else is copied event by event, as it was.
pub fn set_suspended(
    xml: &str,
    replacement_for: impl Fn(&str) -> Option<String>,
) -> Result<String, quick_xml::Error> {
    edit_groups(xml, |g| {
        replacement_for(g).map(|append| Edit {
            drop: vec!["SuspendedProcesses".into()],
            append,
        })
    })
}

/// What to change in one group of a DescribeAutoScalingGroups answer: its
/// direct children named in `drop` go, `append` (an XML fragment) is written
/// as its last children.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Edit {
    pub drop: Vec<String>,
    pub append: String,
}

impl Edit {
    /// Both edits: the drops of each, then the fragment of each.
    pub fn and(mut self, other: Edit) -> Edit {
        self.drop.extend(other.drop);
        self.append.push_str(&other.append);
        self
    }
}

/// Rewrites a DescribeAutoScalingGroups answer: each group
/// (`AutoScalingGroups/member`) for whose name `edit_for` gives an [`Edit`]
/// gets it; everything else is copied event by event, as it was.
pub fn edit_groups(
    xml: &str,
    edit_for: impl Fn(&str) -> Option<Edit>,
) -> Result<String, quick_xml::Error> {
    let mut reader = Reader::from_str(xml);
    let mut out = Writer::new(Vec::with_capacity(xml.len() + 512));
    // The open elements outside a group, innermost last.
    let mut open: Vec<String> = vec![];
    let mut group: Option<Group<'_>> = None;
    loop {
        let event = reader.read_event()?;
        if matches!(event, Event::Eof) {
            break;
        }
        if let Some(g) = group.as_mut() {
            if g.push(event) {
                if let Some(g) = group.take() {
                    g.write(&mut out, &edit_for)?;
                }
            }
            continue;
        }
        match &event {
            Event::Start(e) => {
                let name = e.name().as_ref().to_string();
                if name == "member" && open.last().is_some_and(|p| p == "AutoScalingGroups") {
                    group = Some(Group::new(event));
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

/// One group's events, held until its end: its name may come after the
/// children to edit.
struct Group<'a> {
    /// Each event, and the direct child of the group it belongs to.
    events: Vec<(Event<'a>, Option<String>)>,
    /// Elements open within the group (1: the group's `member` itself).
    depth: usize,
    /// The direct child the events are in.
    child: Option<String>,
    /// The name's text as written (escaped).
    name: String,
}

impl<'a> Group<'a> {
    fn new(start: Event<'a>) -> Self {
        Self {
            events: vec![(start, None)],
            depth: 1,
            child: None,
            name: String::new(),
        }
    }

    fn in_name(&self) -> bool {
        self.child.as_deref() == Some("AutoScalingGroupName")
    }

    /// Takes the next event; true when it closed the group.
    fn push(&mut self, event: Event<'a>) -> bool {
        let mut tag = self.child.clone();
        match &event {
            Event::Start(e) => {
                self.depth += 1;
                if self.depth == 2 {
                    self.child = Some(e.name().as_ref().to_string());
                    tag = self.child.clone();
                }
            }
            Event::Empty(e) if self.depth == 1 => {
                tag = Some(e.name().as_ref().to_string());
            }
            Event::Text(t) if self.in_name() => self.name.push_str(t),
            Event::GeneralRef(r) if self.in_name() => {
                self.name.push('&');
                self.name.push_str(r);
                self.name.push(';');
            }
            Event::End(_) => {
                self.depth -= 1;
                if self.depth == 1 {
                    self.child = None;
                }
            }
            _ => {}
        }
        self.events.push((event, tag));
        self.depth == 0
    }

    fn write(
        self,
        out: &mut XmlWriter,
        edit_for: &impl Fn(&str) -> Option<Edit>,
    ) -> Result<(), quick_xml::Error> {
        let Some(edit) = edit_for(&unescape(&self.name)?) else {
            for (event, _) in self.events {
                out.write_event(event)?;
            }
            return Ok(());
        };
        let mut events = self.events;
        // The group's end tag, written after the appended fragment.
        let end = events.pop().map(|(e, _)| e);
        for (event, child) in events {
            if !child.is_some_and(|c| edit.drop.contains(&c)) {
                out.write_event(event)?;
            }
        }
        let mut fragment = Reader::from_str(&edit.append);
        loop {
            match fragment.read_event()? {
                Event::Eof => break,
                event => out.write_event(event)?,
            }
        }
        if let Some(end) = end {
            out.write_event(end)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injects_into_the_right_group_only() {
        let xml = "<R><AutoScalingGroups>\
            <member><AutoScalingGroupName>a</AutoScalingGroupName><Instances><member><InstanceId>i-1</InstanceId></member></Instances><SuspendedProcesses/></member>\
            <member><AutoScalingGroupName>b</AutoScalingGroupName><SuspendedProcesses/></member>\
            </AutoScalingGroups></R>";
        let out = inject_suspended(xml, "b", "<SuspendedProcesses><member><ProcessName>AZRebalance</ProcessName></member></SuspendedProcesses>");
        assert_eq!(
            out,
            "<R><AutoScalingGroups>\
            <member><AutoScalingGroupName>a</AutoScalingGroupName><Instances><member><InstanceId>i-1</InstanceId></member></Instances><SuspendedProcesses/></member>\
            <member><AutoScalingGroupName>b</AutoScalingGroupName><SuspendedProcesses><member><ProcessName>AZRebalance</ProcessName></member></SuspendedProcesses></member>\
            </AutoScalingGroups></R>"
        );
        let out_a = inject_suspended(xml, "a", "<SuspendedProcesses>X</SuspendedProcesses>");
        assert!(out_a.contains("</Instances><SuspendedProcesses>X</SuspendedProcesses></member><member><AutoScalingGroupName>b"));
    }

    /// An emulator-shaped answer: declaration, namespace, line breaks, an
    /// escaped value, one group without the element, one with an empty one.
    #[test]
    fn edits_only_the_named_groups_and_copies_the_rest() {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
            <DescribeAutoScalingGroupsResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\">\n\
            <DescribeAutoScalingGroupsResult><AutoScalingGroups>\n  \
            <member><AutoScalingGroupName>web&amp;api</AutoScalingGroupName><Tags><member><Key>a&lt;b</Key></member></Tags></member>\n  \
            <member><AutoScalingGroupName>batch</AutoScalingGroupName><SuspendedProcesses/><MinSize>1</MinSize></member>\n\
            </AutoScalingGroups></DescribeAutoScalingGroupsResult></DescribeAutoScalingGroupsResponse>\n";
        let procs: BTreeSet<String> = ["AZRebalance".to_string(), "Launch".to_string()].into();
        let element = suspended_processes(&procs);
        let out = set_suspended(xml, |g| (g == "web&api").then(|| element.clone())).unwrap();
        assert_eq!(
            out,
            xml.replace(
                "</Tags></member>",
                "</Tags><SuspendedProcesses>\
                 <member><ProcessName>AZRebalance</ProcessName><SuspensionReason>User suspended</SuspensionReason></member>\
                 <member><ProcessName>Launch</ProcessName><SuspensionReason>User suspended</SuspensionReason></member>\
                 </SuspendedProcesses></member>"
            )
        );
        let none = set_suspended(xml, |g| {
            (g == "batch").then(|| suspended_processes(&BTreeSet::new()))
        });
        assert_eq!(
            none.unwrap(),
            xml.replace(
                "<SuspendedProcesses/><MinSize>1</MinSize></member>",
                "<MinSize>1</MinSize><SuspendedProcesses></SuspendedProcesses></member>"
            )
        );
        assert_eq!(set_suspended(xml, |_| None).unwrap(), xml);
        assert!(set_suspended("<a><b></a>", |_| None).is_err());
    }

    async fn text(res: Response<Full<Bytes>>) -> (u16, String) {
        use http_body_util::BodyExt;
        let status = res.status().as_u16();
        assert_eq!(res.headers()["content-type"], "text/xml");
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(body.to_vec()).unwrap())
    }

    /// The request id (random) as `ID`.
    fn without_id(s: &str) -> String {
        let mut out = s.to_string();
        for tag in ["RequestId", "RequestID"] {
            let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
            if let (Some(a), Some(b)) = (out.find(&open), out.find(&close)) {
                out.replace_range(a + open.len()..b, "ID");
            }
        }
        out
    }

    #[tokio::test]
    async fn answers_are_the_query_protocol_shapes() {
        let ns = XMLNS;
        let (status, body) = text(ok("StartInstanceRefresh", |w| {
            leaf(w, "InstanceRefreshId", "r-1")
        }))
        .await;
        assert_eq!(status, 200);
        assert_eq!(
            without_id(&body),
            format!("<StartInstanceRefreshResponse xmlns=\"{ns}\"><StartInstanceRefreshResult><InstanceRefreshId>r-1</InstanceRefreshId></StartInstanceRefreshResult><ResponseMetadata><RequestId>ID</RequestId></ResponseMetadata></StartInstanceRefreshResponse>")
        );
        let (_, body) = text(ok_empty("SuspendProcesses")).await;
        assert_eq!(
            without_id(&body),
            format!("<SuspendProcessesResponse xmlns=\"{ns}\"><ResponseMetadata><RequestId>ID</RequestId></ResponseMetadata></SuspendProcessesResponse>")
        );
        let (status, body) = text(error(400, "ValidationError", "a <b> & c")).await;
        assert_eq!(status, 400);
        assert_eq!(
            without_id(&body),
            format!("<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>ValidationError</Code><Message>a &lt;b&gt; &amp; c</Message></Error><RequestId>ID</RequestId></ErrorResponse>")
        );
        let (status, body) = text(ec2_error(503, "RequestLimitExceeded", "slow down")).await;
        assert_eq!(status, 503);
        assert_eq!(
            without_id(&body),
            "<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors><RequestID>ID</RequestID></Response>"
        );
        assert_eq!(text(acknowledged()).await.1, "<ok/>");
    }
}
