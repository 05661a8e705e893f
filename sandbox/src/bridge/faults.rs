//! Fault injection: faults registered through `POST /_sandbox/faults` (listed
//! by `GET`), which one is due for a call, and the error it answers with, in
//! the protocol and with the codes the service itself uses.

use super::xml;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

/// The kinds of error a fault can inject.
const KINDS: [&str; 3] = ["Throttling", "ServerError", "AccessDenied"];

/// "Make the `nth` call of `service`:`action` from now fail with `error`."
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Fault {
    pub service: String,
    pub action: String,
    #[serde(default = "one")]
    pub nth: u32,
    /// Throttling, ServerError or AccessDenied.
    pub error: String,
    #[serde(default)]
    pub seen: u32,
    #[serde(default)]
    pub fired: bool,
}

fn one() -> u32 {
    1
}

impl Fault {
    fn hit(&mut self, service: &str, action: &str) -> Option<String> {
        if self.fired || self.service != service || self.action != action {
            return None;
        }
        self.seen += 1;
        (self.seen == self.nth).then(|| {
            self.fired = true;
            self.error.clone()
        })
    }
}

/// The error kind to answer this call with, if a fault is due. Every fault
/// for the call counts it, up to the first that fires.
pub fn due(faults: &mut [Fault], service: &str, action: &str) -> Option<String> {
    faults.iter_mut().find_map(|f| f.hit(service, action))
}

/// Registers the fault in `body` (JSON), counting from now.
pub fn add(faults: &mut Vec<Fault>, body: &Bytes) -> Response<Full<Bytes>> {
    match serde_json::from_slice::<Fault>(body) {
        Ok(f) if KINDS.contains(&f.error.as_str()) && f.nth > 0 => {
            faults.push(Fault {
                seen: 0,
                fired: false,
                ..f
            });
            xml::acknowledged()
        }
        _ => xml::error(
            400,
            "ValidationError",
            "fault: {service, action, nth >= 1, error: Throttling|ServerError|AccessDenied}",
        ),
    }
}

/// An injected error, in the protocol and with the codes the service uses.
pub fn response(service: &str, action: &str, kind: &str) -> Response<Full<Bytes>> {
    let message = format!("Sandbox fault injected into {service}:{action}");
    match service {
        "dynamodb" | "states" => {
            let (status, code) = match kind {
                "Throttling" => (400, "ThrottlingException"),
                "ServerError" => (500, "InternalServerError"),
                _ => (400, "AccessDeniedException"),
            };
            let prefix = if service == "dynamodb" {
                "com.amazonaws.dynamodb.v20120810#"
            } else {
                ""
            };
            Response::builder()
                .status(status)
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amzn-errortype", code)
                .body(Full::new(Bytes::from(
                    serde_json::json!({"__type": format!("{prefix}{code}"), "message": message})
                        .to_string(),
                )))
                .expect("static response parts")
        }
        "ec2" => {
            let (status, code) = match kind {
                "Throttling" => (503, "RequestLimitExceeded"),
                "ServerError" => (500, "InternalError"),
                _ => (403, "UnauthorizedOperation"),
            };
            xml::ec2_error(status, code, &message)
        }
        _ => {
            let (status, code) = match kind {
                "Throttling" => (400, "Throttling"),
                "ServerError" => (500, "InternalFailure"),
                _ => (403, "AccessDenied"),
            };
            xml::error(status, code, &message)
        }
    }
}

// TEMP (lane N replaces): the service's own denial.
pub fn denial(service: &str, action: &str, _message: &str) -> Response<Full<Bytes>> {
    response(service, action, "AccessDenied")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(nth: u32) -> Fault {
        Fault {
            service: "ec2".into(),
            action: "CreateImage".into(),
            nth,
            error: "Throttling".into(),
            seen: 0,
            fired: false,
        }
    }

    #[test]
    fn the_nth_matching_call_fires_once() {
        let mut faults = vec![fault(2)];
        assert_eq!(due(&mut faults, "ec2", "StopInstances"), None);
        assert_eq!(due(&mut faults, "ec2", "CreateImage"), None);
        assert_eq!(
            due(&mut faults, "ec2", "CreateImage").as_deref(),
            Some("Throttling")
        );
        assert_eq!(due(&mut faults, "ec2", "CreateImage"), None);
        assert!(faults[0].fired);
    }
}
