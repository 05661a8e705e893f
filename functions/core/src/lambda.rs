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
/// rather than a `StepName`: a value would keep the whole dispatcher, and
/// so all six steps and every SDK operation they call, in every binary.
pub async fn serve<H, Fut>(handler: H) -> Result<(), lambda_runtime::Error>
where
    H: Fn(&'static Deps, serde_json::Value) -> Fut,
    Fut: Future<Output = Result<serde_json::Value, StepError>>,
{
    crate::stage::mark("main");
    init_logging();
    crate::stage::mark("logging");
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

/// Logs as `lambda_runtime`'s default subscriber does (stdout, no time —
/// CloudWatch stamps each line —, JSON when the function's log format is
/// JSON), with the level or `target=level` list of `AWS_LAMBDA_LOG_LEVEL`,
/// else `RUST_LOG`, else INFO. It filters with `Targets` rather than
/// `EnvFilter`: EnvFilter's span and field-value directives need a regex
/// engine that every binary linked for a feature we do not use.
pub fn init_logging() {
    use lambda_runtime::tracing::subscriber::filter::{LevelFilter, Targets};
    use lambda_runtime::tracing::subscriber::layer::SubscriberExt;
    use lambda_runtime::tracing::subscriber::util::SubscriberInitExt;
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
    let filter = get("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|| get("RUST_LOG"))
        .and_then(|v| parse_filter(&v))
        .unwrap_or_else(|| Targets::new().with_default(LevelFilter::INFO));
    let json = get("AWS_LAMBDA_LOG_FORMAT").is_some_and(|f| f.eq_ignore_ascii_case("json"));
    let builder = lambda_runtime::tracing::subscriber::fmt()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    if json {
        builder.json().finish().with(filter).init();
    } else {
        builder.finish().with(filter).init();
    }
}

/// `info`, `debug`, … or `target=level,…` (levels in any case, as Lambda's
/// `AWS_LAMBDA_LOG_LEVEL` spells them: `DEBUG`); None when it does not parse
/// (then INFO, as the default subscriber falls back).
fn parse_filter(v: &str) -> Option<lambda_runtime::tracing::subscriber::filter::Targets> {
    v.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::parse_filter;
    use tracing::Level;

    #[test]
    fn log_levels_and_target_lists_parse_like_rust_log() {
        let f = parse_filter("DEBUG").unwrap();
        assert!(f.would_enable("autosky_core::steps", &Level::DEBUG));
        assert!(!f.would_enable("autosky_core::steps", &Level::TRACE));
        let f = parse_filter("warn,autosky_core=debug").unwrap();
        assert!(f.would_enable("autosky_core::api", &Level::DEBUG));
        assert!(!f.would_enable("aws_smithy_runtime", &Level::INFO));
        assert!(f.would_enable("aws_smithy_runtime", &Level::WARN));
        let f = parse_filter("error").unwrap();
        assert!(!f.would_enable("autosky_core", &Level::WARN));
        // A bare name is a target at every level, as in RUST_LOG.
        let f = parse_filter("autosky_core").unwrap();
        assert!(f.would_enable("autosky_core::api", &Level::TRACE));
        assert!(!f.would_enable("hyper", &Level::ERROR));
        assert!(parse_filter("autosky_core=loud").is_none());
        assert!(parse_filter("[span{x=1}]=debug").is_none());
    }
}
