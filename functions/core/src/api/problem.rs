//! Errors as the API answers them: RFC 9457 problem details
//! (`application/problem+json`), and the problems store and AWS errors become.

use super::ApiResponse;
use crate::error::StepError;
use crate::store::StoreError;
use serde_json::{json, Map, Value};

/// An `application/problem+json` error.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    pub status: u16,
    pub title: &'static str,
    pub detail: String,
    /// Extension members (rare; boxed to keep `Result<_, Problem>` small).
    pub extra: Option<Box<Map<String, Value>>>,
    /// For a 405, the methods the resource does allow: RFC 9110 (15.5.6)
    /// says the origin server "MUST generate an Allow header field" then.
    pub allow: Option<Box<str>>,
}

impl Problem {
    pub fn new(status: u16, title: &'static str, detail: &str) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            extra: None,
            allow: None,
        }
    }

    /// 405 for `method` on `path`, naming the methods `allowed` there.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &[&str]) -> Self {
        Self {
            allow: Some(allowed.join(", ").into()),
            ..Self::new(
                405,
                "Method not allowed",
                &format!(
                    "{method} is not allowed on {}: use {}",
                    crate::domain::truncate(path, 200),
                    allowed.join(" or ")
                ),
            )
        }
    }

    pub fn bad_request(detail: &str) -> Self {
        Self::new(400, "Bad request", detail)
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra
            .get_or_insert_with(Default::default)
            .insert(key.into(), value);
        self
    }

    /// Names the offending input field (the page shows the error next to it).
    pub fn field(self, name: &str) -> Self {
        self.with("field", json!(name))
    }

    pub fn response(&self) -> ApiResponse {
        let mut body = json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if let (Value::Object(m), Some(extra)) = (&mut body, &self.extra) {
            m.extend(extra.as_ref().clone());
        }
        let mut headers = vec![("content-type".into(), "application/problem+json".into())];
        if let Some(allow) = &self.allow {
            headers.push(("allow".into(), allow.to_string()));
        }
        ApiResponse {
            status: self.status,
            headers,
            body: serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

pub(super) fn store_err(e: StoreError) -> Problem {
    match e {
        StoreError::InvalidToken => {
            Problem::bad_request("nextToken is not a token this API issued for this environment")
        }
        StoreError::Transient(m) => {
            Problem::new(503, "Service unavailable", &format!("try again: {m}"))
        }
        other => Problem::new(500, "Internal error", &other.to_string()),
    }
}

pub(super) fn step_err(e: StepError) -> Problem {
    if e.is_retryable() {
        Problem::new(503, "Service unavailable", e.message())
    } else {
        Problem::new(502, "AWS error", e.message())
    }
}
