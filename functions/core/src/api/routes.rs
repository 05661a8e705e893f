//! The API's routes, typed: each one's method, path template, query
//! parameters and the Lambda function serving it, and matching a request
//! path against them, and the role each needs. The router, the OpenAPI test and the template test
//! all read [`Route::ALL`].

use crate::domain::Role;

/// The Lambda function that serves a route in AWS. The scheduling routes
/// have their own, so that neither bootstrap links the other's code and
/// clients: together, the Scheduler client, the time-zone database and the
/// scheduling code put one function over the size budget (BENCHMARKS.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    /// `api`: environments, deployments (start, history, details, cancel, rollback),
    /// the audit trail and the page.
    Api,
    /// `schedules`: scheduled deployments (create, move, cancel).
    Schedules,
}

impl Function {
    /// The binary (and crate under functions/) of the function.
    pub fn binary(self) -> &'static str {
        match self {
            Function::Api => "api",
            Function::Schedules => "schedules",
        }
    }
}

/// Every route of the API (the page's files are `page::PAGE_ROUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    ListEnvironments,
    GetEnvironment,
    PutEnvironment,
    StartDeployment,
    ListDeployments,
    GetDeployment,
    CancelDeployment,
    RollbackDeployment,
    CreateSchedule,
    MoveSchedule,
    CancelSchedule,
    GetAudit,
}

impl Route {
    /// Every route, in the order the router tries them.
    pub const ALL: [Route; 12] = [
        Route::ListEnvironments,
        Route::GetEnvironment,
        Route::PutEnvironment,
        Route::StartDeployment,
        Route::ListDeployments,
        Route::GetDeployment,
        Route::CancelDeployment,
        Route::RollbackDeployment,
        Route::CreateSchedule,
        Route::MoveSchedule,
        Route::CancelSchedule,
        Route::GetAudit,
    ];

    pub fn method(self) -> &'static str {
        match self {
            Route::ListEnvironments
            | Route::GetEnvironment
            | Route::ListDeployments
            | Route::GetDeployment
            | Route::GetAudit => "GET",
            Route::PutEnvironment => "PUT",
            Route::StartDeployment
            | Route::CancelDeployment
            | Route::RollbackDeployment
            | Route::CreateSchedule => "POST",
            Route::MoveSchedule => "PATCH",
            Route::CancelSchedule => "DELETE",
        }
    }

    /// Whether the route takes a request body (JSON; the spec's
    /// `requestBody`). Other routes ignore a body.
    pub fn takes_body(self) -> bool {
        matches!(
            self,
            Route::PutEnvironment
                | Route::StartDeployment
                | Route::RollbackDeployment
                | Route::CreateSchedule
                | Route::MoveSchedule
        )
    }

    /// The path template; `{env}` is always the first parameter.
    pub fn template(self) -> &'static str {
        match self {
            Route::ListEnvironments => "/environments",
            Route::GetEnvironment | Route::PutEnvironment => "/environments/{env}",
            Route::StartDeployment | Route::ListDeployments => "/environments/{env}/deployments",
            Route::GetDeployment => "/environments/{env}/deployments/{id}",
            Route::CancelDeployment => "/environments/{env}/deployments/{id}/cancel",
            Route::RollbackDeployment => "/environments/{env}/deployments/{id}/rollback",
            Route::CreateSchedule => "/environments/{env}/schedules",
            Route::MoveSchedule | Route::CancelSchedule => "/environments/{env}/schedules/{id}",
            Route::GetAudit => "/environments/{env}/audit",
        }
    }

    pub fn function(self) -> Function {
        match self {
            Route::ListEnvironments
            | Route::GetEnvironment
            | Route::PutEnvironment
            | Route::StartDeployment
            | Route::ListDeployments
            | Route::GetDeployment
            | Route::CancelDeployment
            | Route::RollbackDeployment
            | Route::GetAudit => Function::Api,
            Route::CreateSchedule | Route::MoveSchedule | Route::CancelSchedule => {
                Function::Schedules
            }
        }
    }

    /// The least role the caller needs on the route's environment.
    /// `GET /environments` lists the environments on which the caller holds
    /// at least this role; registering a new environment takes a stack
    /// administrator (the router's rule, not a role on an environment that
    /// does not exist yet).
    pub fn role(self) -> Role {
        match self {
            Route::ListEnvironments
            | Route::GetEnvironment
            | Route::ListDeployments
            | Route::GetDeployment
            | Route::GetAudit => Role::Viewer,
            Route::StartDeployment
            | Route::CancelDeployment
            | Route::RollbackDeployment
            | Route::CreateSchedule
            | Route::MoveSchedule
            | Route::CancelSchedule => Role::Deployer,
            Route::PutEnvironment => Role::Administrator,
        }
    }

    /// The query parameters the route accepts (any other is refused).
    pub fn allowed_query(self) -> &'static [&'static str] {
        match self {
            Route::ListDeployments => &["limit", "nextToken", "status"],
            Route::GetAudit => &["limit", "nextToken"],
            _ => &[],
        }
    }

    /// The decoded `{…}` segments of `path`, if it matches the template.
    pub(super) fn params(self, path: &str) -> Option<Vec<String>> {
        matches(self.template(), path)
    }
}

/// The route of `method path`, if any.
pub fn route_of(method: &str, path: &str) -> Option<Route> {
    Route::ALL
        .into_iter()
        .find(|r| r.method() == method && r.params(path).is_some())
}

/// Matches `path` against a template; returns the `{…}` segments in order.
fn matches(template: &str, path: &str) -> Option<Vec<String>> {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path
        .trim_end_matches('/')
        .trim_start_matches('/')
        .split('/')
        .collect();
    if t.len() != p.len() {
        return None;
    }
    let mut params = Vec::new();
    for (a, b) in t.iter().zip(&p) {
        if a.starts_with('{') {
            if b.is_empty() {
                return None;
            }
            params.push(decode(b)?);
        } else if a != b {
            return None;
        }
    }
    Some(params)
}

/// A percent-decoded path segment; None (no match) for a malformed escape
/// (`%` without two hex digits, which the decoder would pass through) or
/// bytes that are not UTF-8.
fn decode(segment: &str) -> Option<String> {
    let b = segment.as_bytes();
    let well_formed = b.iter().enumerate().all(|(i, c)| {
        *c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit))
    });
    if !well_formed {
        return None;
    }
    percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_parameters_are_percent_decoded_and_malformed_ones_match_nothing() {
        assert_eq!(
            matches("/environments/{env}", "/environments/prod%2Dweb/"),
            Some(vec!["prod-web".to_string()])
        );
        assert_eq!(decode("a%25b%c3%a9"), Some("a%bé".to_string()));
        assert_eq!(decode("%2541"), Some("%41".to_string()));
        for bad in ["%zz", "%4", "a%", "%%41", "%ff", "%c3"] {
            assert_eq!(decode(bad), None, "{bad}");
        }
        assert_eq!(matches("/environments/{env}", "/environments/"), None);
        assert_eq!(route_of("GET", "/environments/%zz"), None);
    }

    #[test]
    fn each_route_is_found_by_its_own_method_and_template() {
        for r in Route::ALL {
            let path = r
                .template()
                .replace("{env}", "prod-web")
                .replace("{id}", "01JDEPLOYMENT0000000000000");
            assert_eq!(route_of(r.method(), &path), Some(r), "{r:?}");
        }
    }
}
