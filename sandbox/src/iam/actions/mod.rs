//! The per-action map: from one request a function sends (its service,
//! action and parameters) to the authorizations AWS makes for it — the IAM
//! action, each resource ARN and the request context — including those AWS
//! makes on the caller's behalf (a refresh's launch template, tag on create,
//! a role passed to a service). One entry per action the product calls; a
//! call without an entry is refused, so a new call site needs one.

mod autoscaling;
mod dynamodb;
mod ec2;
mod launch;
mod lookup;
mod scheduler;
#[cfg(test)]
#[path = "tests/sdk_requests.rs"]
mod sdk_requests;
mod ses;
mod states;

pub use lookup::{EmulatorLookup, GroupInfo, Lookup, Tags, TemplateInfo, VersionInfo};

use super::Check;
use std::collections::HashMap;

/// One request as the gateway received it.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The SigV4 credential scope's service (`ec2`, `autoscaling`,
    /// `dynamodb`, `ses`/`email`, `states`, `scheduler`).
    pub service: &'a str,
    /// The API action (from `X-Amz-Target`, the query protocol's `Action`, or
    /// [`rest_action`] for REST-JSON services).
    pub action: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    /// The raw query string (without `?`), empty when none.
    pub query: &'a str,
    /// The query protocols' form parameters (EC2, Auto Scaling, SES).
    pub form: &'a HashMap<String, String>,
    /// The raw body (JSON protocols).
    pub body: &'a [u8],
}

/// Why a call could not be mapped to its authorizations.
#[derive(Debug, Clone, PartialEq)]
pub enum MapError {
    /// No map entry for this `service:Action`: refused, so every call site
    /// the product grows gets an entry (and a test).
    NoEntry(String),
    /// A resource the call names does not exist: the call is not authorized
    /// here but forwarded, so the emulator answers with the service's own
    /// not-found error, as AWS does for an id that names nothing.
    NotFound(String),
    /// The request is malformed or a look-up failed.
    Invalid(String),
}

/// The action of a REST-JSON request (EventBridge Scheduler), from its
/// method and path; None when the path is not one of the service's routes.
pub fn rest_action(service: &str, method: &str, path: &str) -> Option<String> {
    scheduler::rest_action(service, method, path)
}

/// Every authorization AWS makes for `call`, in the order AWS makes them.
pub async fn checks<L: Lookup>(call: &Call<'_>, lookup: &L) -> Result<Vec<Check>, MapError> {
    match call.service {
        "ec2" => ec2::checks(call, lookup).await,
        "autoscaling" => autoscaling::checks(call, lookup).await,
        "dynamodb" => dynamodb::checks(call),
        "ses" | "email" => ses::checks(call, lookup).await,
        "scheduler" => scheduler::checks(call),
        "states" => states::checks(call),
        other => Err(MapError::NoEntry(format!("{other}:{}", call.action))),
    }
}
