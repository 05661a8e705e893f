//! (in progress)
use super::{Call, MapError};
use crate::iam::Check;

pub fn checks(call: &Call<'_>) -> Result<Vec<Check>, MapError> {
    Err(MapError::NoEntry(format!(
        "{}:{}",
        call.service, call.action
    )))
}

pub fn rest_action(_service: &str, _method: &str, _path: &str) -> Option<String> {
    None
}
