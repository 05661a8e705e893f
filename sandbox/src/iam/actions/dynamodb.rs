//! (in progress)
use super::{Call, MapError};
use crate::iam::Check;

pub fn checks(call: &Call<'_>) -> Result<Vec<Check>, MapError> {
    Err(MapError::NoEntry(format!(
        "{}:{}",
        call.service, call.action
    )))
}
