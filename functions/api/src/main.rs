//! Lambda for the Deployments HTTP API's environment and deployment routes
//! and the page (API Gateway HTTP API, payload v2); the router and the
//! adapter are in autosky-core. It serves its routes' handler only, so the
//! scheduling routes' code and clients are not linked in.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    autosky_core::api::lambda::serve(autosky_core::api::handler::api).await
}
