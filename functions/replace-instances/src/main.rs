//! Lambda for the "replace-instances" step; the logic is in autosky-core. It serves
//! this step's handler only, so no other step's code is linked in.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    autosky_core::lambda::serve(autosky_core::steps::handler::replace_instances).await
}
