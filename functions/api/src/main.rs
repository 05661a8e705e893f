//! Lambda for the Deployments HTTP API (API Gateway HTTP API, payload v2);
//! the router and the adapter are in autosky-core.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    autosky_core::api::lambda::serve().await
}
