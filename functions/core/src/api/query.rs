//! Query parameters: each allowed at most once, unknown ones refused.

use super::{ApiResult, Problem};

pub(super) struct Query(Vec<(String, String)>);

impl Query {
    /// Checks `raw` against the route's `allowed` parameters.
    pub(super) fn new(raw: &[(String, String)], allowed: &[&str]) -> ApiResult<Self> {
        for (i, (k, _)) in raw.iter().enumerate() {
            if !allowed.contains(&k.as_str()) {
                return Err(Problem::bad_request(&format!(
                    "unknown query parameter '{}'",
                    crate::domain::truncate(k, 40)
                )));
            }
            if raw[..i].iter().any(|(k2, _)| k2 == k) {
                return Err(Problem::bad_request(&format!(
                    "query parameter '{k}' is repeated"
                )));
            }
        }
        Ok(Self(raw.to_vec()))
    }

    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    }

    /// A page's `limit`: 1 to 100, 20 when absent (history and audit pages).
    pub(super) fn limit(&self) -> ApiResult<u32> {
        match self.get("limit") {
            None => Ok(20),
            // Digits only: `parse` alone would also take a sign (`+5`).
            Some(v) => Some(v)
                .filter(|v| v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u32>().ok())
                .filter(|l| (1..=100).contains(l))
                .ok_or_else(|| Problem::bad_request("limit must be an integer from 1 to 100")),
        }
    }
}
