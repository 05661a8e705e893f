//! Lambda for the "create-image" step; the logic is in autosky-core. It serves
//! this step's handler only, so no other step's code is linked in.

// Its future (the step, and its waiting state's registration and token
// around it) nests deeper than the default limit allows when its layout is
// computed here.
#![recursion_limit = "256"]

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    autosky_core::lambda::serve(autosky_core::steps::handler::create_image).await
}
