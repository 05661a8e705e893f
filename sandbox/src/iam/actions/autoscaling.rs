//! (in progress)
use super::{Call, Lookup, MapError};
use crate::iam::Check;

pub async fn checks<L: Lookup>(call: &Call<'_>, _lookup: &L) -> Result<Vec<Check>, MapError> {
    Err(MapError::NoEntry(format!("{}:{}", call.service, call.action)))
}
