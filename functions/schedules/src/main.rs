//! Lambda for the Deployments HTTP API's scheduled-deployment routes
//! (create, move, cancel a schedule; API Gateway HTTP API, payload v2); the
//! router and the adapter are in autosky-core. It serves these routes'
//! handler only, so the other routes' code and clients are not linked in.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    autosky_core::api::lambda::serve(autosky_core::api::handler::schedules).await
}
