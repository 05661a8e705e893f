//! Lambda for the "finalize" step; the logic is in autosky-core.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    autosky_core::lambda::serve(autosky_core::steps::Step::Finalize).await
}
