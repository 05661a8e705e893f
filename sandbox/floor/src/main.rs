//! The cold-start floor: a `lambda_runtime` function that answers its event
//! with the event, with no logging, configuration or AWS client. Built with
//! the functions' release profile, its spawn→ready and peak RSS are the least
//! a Rust function on this runtime can cost; `make bench` reads each
//! function's as a ratio to these. Never deployed.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
