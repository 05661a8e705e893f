//! The framework-free HTTP messages the router takes and gives: the Lambda
//! adapter and the sandbox's loopback server each convert to and from these.

use crate::domain::Caller;
use serde::Serialize;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

/// A request as the router needs it, whatever served it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApiRequest {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The authenticated caller (IAM ARN, or JWT email/sub); never from the body.
    pub identity: Option<String>,
    /// How the caller was authorized: by API Gateway for this route (IAM),
    /// or as a member of groups whose roles the router checks (JWT).
    pub caller: Caller,
    /// The `Content-Type` header, when the request has one: a route that
    /// takes a body takes JSON only.
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub(super) fn json<T: Serialize>(status: u16, body: &T) -> Self {
        Self {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: serde_json::to_vec(body).unwrap_or_default(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}
