//! Lambda glue shared by the six step binaries: the whole `main()` of a step
//! function, around the one step handler it serves.

use crate::deps::Deps;
use crate::error::StepError;
use lambda_runtime::{service_fn, LambdaEvent};
use std::future::Future;

/// Serves one step: tracing, configuration and clients once per cold start,
/// then `handler` per invocation. Errors reach Step Functions as their stable
/// name (`errorType`).
///
/// The binary passes its step's function (`steps::handler::validate`, …)
/// rather than a `Step` value: a value would keep the whole dispatcher, and
/// so all six steps and every SDK operation they call, in every binary.
pub async fn serve<H, Fut>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(&'static Deps, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, StepError>>,
{
    lambda_runtime::tracing::init_default_subscriber();
    let deps = Deps::from_env().await.map_err(|e| {
        tracing::error!(error = %e, "configuration error");
        e
    })?;
    // Lives as long as the process (one per cold start); 'static lets the
    // handler's future borrow it without naming a higher-ranked lifetime.
    let deps: &'static Deps = Box::leak(Box::new(deps));
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        handler(deps, event.payload)
    }))
    .await
}
