//! Lambda "resume": EventBridge delivers the EC2 and Auto Scaling events a
//! waiting deployment is woken by; the logic is in autosky-core.

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    autosky_core::lambda::serve(autosky_core::steps::handler::resume).await
}
