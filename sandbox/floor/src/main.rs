//! The cold-start floor: a `lambda_runtime` function that answers its event
//! with the event, with no logging, configuration or AWS client. Built with
//! the functions' release profile, its spawn→ready and peak RSS are the least
//! a Rust function on this runtime can cost; `make bench` reads each
//! function's as a ratio to these, and its start's stages (`stage.rs`) as
//! the functions'. Never deployed.

use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

// The functions' stage marks, included rather than linked (see its header).
#[path = "../../../functions/core/src/stage.rs"]
mod stage;

#[tokio::main]
async fn main() -> Result<(), Error> {
    stage::mark("main");
    lambda_runtime::run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<Value, Error>(event.payload)
    }))
    .await
}
