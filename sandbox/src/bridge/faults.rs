//! The errors the gateway answers with instead of the emulator, in each
//! service's protocol and with the codes the service itself uses: injected
//! faults (registered through `POST /_sandbox/faults`, listed by `GET`, and
//! which one is due for a call) and IAM denials ([`denial`]).

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
    if kind == "AccessDenied" {
        return denial(service, action, &message);
    }
    let transient = kind == "Throttling";
    match service {
        "dynamodb" | "states" => {
            let (status, code) = if transient {
                (400, "ThrottlingException")
            } else {
                (500, "InternalServerError")
            };
            json_error(status, code, &typed(service, code), "message", &message)
        }
        "scheduler" => {
            let (status, code) = if transient {
                (429, "ThrottlingException")
            } else {
                (500, "InternalServerException")
            };
            rest_json_error(status, code, &message)
        }
        "ec2" => {
            let (status, code) = if transient {
                (503, "RequestLimitExceeded")
            } else {
                (500, "InternalError")
            };
            xml::ec2_error(status, code, &message)
        }
        _ => {
            let (status, code) = if transient {
                (400, "Throttling")
            } else {
                (500, "InternalFailure")
            };
            query_error(service, status, code, &message)
        }
    }
}

/// AWS's refusal of a call the caller's policies do not allow, as the
/// service sends it: EC2 `UnauthorizedOperation` (403); Auto Scaling and
/// SES `AccessDenied` (403, query XML); DynamoDB and Step Functions
/// `AccessDeniedException` (400, JSON); Scheduler `AccessDeniedException`
/// (403, REST-JSON). EC2 puts its own sentence before the text.
pub fn denial(service: &str, _action: &str, message: &str) -> Response<Full<Bytes>> {
    const CODE: &str = "AccessDeniedException";
    match service {
        "ec2" => xml::ec2_error(
            403,
            "UnauthorizedOperation",
            &format!("You are not authorized to perform this operation. {message}"),
        ),
        // Both answer with the generic (not the service-modelled) type.
        "dynamodb" | "states" => json_error(
            400,
            CODE,
            "com.amazon.coral.service#AccessDeniedException",
            "Message",
            message,
        ),
        "scheduler" => rest_json_error(403, CODE, message),
        _ => query_error(service, 403, "AccessDenied", message),
    }
}

/// A Step Functions error in its JSON protocol (`__type` and `message`).
pub fn states_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    json_error(status, code, code, "message", message)
}

/// An error of the JSON protocol (awsJson1.0): the code in
/// `x-amzn-errortype`, the body's `__type` (`typ`), the text under
/// `message_key`.
fn json_error(
    status: u16,
    code: &str,
    typ: &str,
    message_key: &str,
    message: &str,
) -> Response<Full<Bytes>> {
    error_response(
        status,
        "application/x-amz-json-1.0",
        code,
        serde_json::json!({ "__type": typ, message_key: message }),
    )
}

/// An error of the REST-JSON protocol: the code in `x-amzn-errortype`
/// only, the text under `Message`.
fn rest_json_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    error_response(
        status,
        "application/json",
        code,
        serde_json::json!({ "Message": message }),
    )
}

fn error_response(
    status: u16,
    content_type: &str,
    code: &str,
    body: serde_json::Value,
) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .header("x-amzn-errortype", code)
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("static response parts")
}

/// A JSON protocol service's own error type.
fn typed(service: &str, code: &str) -> String {
    if service == "dynamodb" {
        format!("com.amazonaws.dynamodb.v20120810#{code}")
    } else {
        code.to_string()
    }
}

/// A query protocol's error: SES's in its own namespace, Auto Scaling's
/// (and any other) in Auto Scaling's.
fn query_error(service: &str, status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    if !matches!(service, "ses" | "email") {
        return xml::error(status, code, message);
    }
    let body = xml::fragment(|w| {
        w.create_element("ErrorResponse")
            .with_attribute(("xmlns", "http://ses.amazonaws.com/doc/2010-12-01/"))
            .write_inner_content(|w| {
                w.create_element("Error").write_inner_content(|w| {
                    xml::leaf(w, "Type", "Sender")?;
                    xml::leaf(w, "Code", code)?;
                    xml::leaf(w, "Message", message)
                })?;
                xml::leaf(w, "RequestId", &super::request_id())
            })
            .map(drop)
    });
    xml::response(status, body)
}

#[cfg(test)]
mod tests;
