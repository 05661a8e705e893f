//! Lambda glue shared by the six step binaries.

use crate::deps::Deps;
use crate::steps::{self, Step};
use lambda_runtime::{service_fn, LambdaEvent};

/// Serves one step: tracing, configuration and clients once per cold start,
/// then the handler per invocation. Errors reach Step Functions as their
/// stable name (`errorType`).
pub async fn serve(step: Step) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        e
    })?;
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            steps::run(step, deps, event.payload).await
        },
    ))
    .await
}
