//! `autosky-sandbox bench-api`: in-process latency of the API's history page
//! (20 items) and details against the sandbox's DynamoDB, p50/p99 over many
//! requests, and the DynamoDB calls each request makes. A benchmark, not a
//! test: it prints numbers; the machine's noise is in them. `setup` and
//! `calls_per_request` are shared with `bench` (the history page's calls).

use crate::api_server::CallCounter;
use crate::{seed, Clients};
use autosky_core::api::{Api, ApiRequest, ApiSettings};
use autosky_core::deps::Settings;
use autosky_core::domain::{
    new_deployment_id, Deployment, DeploymentOptions, DeploymentStatus, EnvironmentDefaults,
    GeneratedVersion,
};
use autosky_core::store::{DynamoStore, Outcome, Store};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

const RUNS: usize = 300;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn measure(
    api: &Api,
    counter: &CallCounter,
    req: &ApiRequest,
) -> Result<(f64, f64, f64, f64, String), String> {
    let before = counter.snapshot();
    let mut times = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let t = Instant::now();
        let res = api.handle(req.clone()).await;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        if res.status != 200 {
            return Err(format!("{} {} -> {}", req.method, req.path, res.status));
        }
    }
    times.sort_by(f64::total_cmp);
    let after = counter.snapshot();
    let per_request: Vec<String> = after
        .iter()
        .map(|(k, v)| (k, v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .map(|(k, d)| format!("{k} {:.2}", d as f64 / RUNS as f64))
        .collect();
    Ok((
        percentile(&times, 0.5),
        percentile(&times, 0.99),
        times[0],
        times[times.len() - 1],
        per_request.join(", "),
    ))
}

/// The API router against the sandbox's table with a DynamoDB call counter,
/// 250 deployments in environment `bench` (one in four Succeeded, the newest
/// too), and two requests: the history page (limit 20) and the newest
/// deployment's details. Shared with `bench`.
pub struct ApiBench {
    pub api: Api,
    pub counter: CallCounter,
    pub history: ApiRequest,
    pub details: ApiRequest,
}

pub async fn setup(c: &Clients) -> Result<ApiBench, String> {
    let env = "bench";
    seed::environment(c, env, 0, EnvironmentDefaults::default()).await?;
    let mut last = String::new();
    for i in 0..250 {
        let d = Deployment::new_running(
            new_deployment_id(),
            env.into(),
            "bench".into(),
            DeploymentOptions::default(),
            chrono::Utc::now(),
        );
        c.store
            .create_deployment(&d, None)
            .await
            .map_err(|e| e.to_string())?;
        // One in four Succeeded (the last one too), as a history has them:
        // the page marks the rollback targets among them.
        if i % 4 == 1 || i == 249 {
            let outcome = Outcome {
                status: DeploymentStatus::Succeeded,
                ended_at: chrono::Utc::now(),
                duration_ms: 1,
                generated_version: Some(GeneratedVersion {
                    launch_template_id: "lt-0bench".into(),
                    launch_template_version: i,
                    image_id: format!("ami-{i:017x}"),
                }),
                error: None,
            };
            c.store
                .finish(env, &d.deployment_id, &outcome)
                .await
                .map_err(|e| e.to_string())?;
        }
        last = d.deployment_id;
    }
    let config = crate::sdk_config(&c.endpoints.emulator);
    let counter = CallCounter::default();
    let settings =
        Settings::from_lookup(|k| (k == "TABLE_NAME").then(|| c.endpoints.table.clone()))?;
    let mut api = Api::from_config(
        &config,
        settings,
        ApiSettings {
            state_machine_arn: c.endpoints.state_machine_arn.clone(),
            ..ApiSettings::default()
        },
    );
    let ddb = aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&config)
            .interceptor(counter.clone())
            .build(),
    );
    api.deps.store = Arc::new(DynamoStore::new(ddb, c.endpoints.table.clone()));
    let get = |path: String, query: Vec<(String, String)>| ApiRequest {
        method: "GET".into(),
        path,
        query,
        body: vec![],
        identity: Some("bench".into()),
        ..ApiRequest::default()
    };
    let history = get(
        format!("/environments/{env}/deployments"),
        vec![("limit".into(), "20".into())],
    );
    let details = get(format!("/environments/{env}/deployments/{last}"), vec![]);
    Ok(ApiBench {
        api,
        counter,
        history,
        details,
    })
}

/// DynamoDB calls per request, by operation, averaged over `n` requests.
pub async fn calls_per_request(
    b: &ApiBench,
    req: &ApiRequest,
    n: usize,
) -> Result<BTreeMap<String, f64>, String> {
    let before = b.counter.snapshot();
    for _ in 0..n {
        let res = b.api.handle(req.clone()).await;
        if res.status != 200 {
            return Err(format!("{} {} -> {}", req.method, req.path, res.status));
        }
    }
    Ok(b.counter
        .snapshot()
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .map(|(k, d)| (k, d as f64 / n as f64))
        .collect())
}

pub async fn run(c: &Clients) -> Result<(), String> {
    let ApiBench {
        api,
        counter,
        history,
        details,
    } = setup(c).await?;
    // Warm the connection pool first.
    for _ in 0..20 {
        api.handle(history.clone()).await;
    }
    println!("API latency in-process against the sandbox's DynamoDB ({RUNS} requests each, 250 deployments)");
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9}  DynamoDB calls per request",
        "request", "p50 ms", "p99 ms", "min ms", "max ms"
    );
    for (name, req) in [
        ("GET history (limit 20)", &history),
        ("GET details", &details),
    ] {
        let (p50, p99, min, max, calls) = measure(&api, &counter, req).await?;
        println!("{name:<28} {p50:>9.2} {p99:>9.2} {min:>9.2} {max:>9.2}  {calls}");
    }
    Ok(())
}
