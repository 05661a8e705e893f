//! The sandbox's two benchmarks: `bench-api` ([`api`]: the API's latency and
//! DynamoDB calls per request) and `bench` ([`functions`], `make bench`: the
//! functions' size, cold start and memory, per-deployment costs, budgets,
//! BENCHMARKS.md).

pub mod api;
pub mod functions;
