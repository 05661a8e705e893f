//! Domain types: scaling environments, deployments, their steps and actions,
//! and the audit trail of the requests that changed them.
//! These are the records the store persists and the API shows, so field names
//! (camelCase in JSON and DynamoDB) are part of the public contract.

mod access;
mod audit;
mod deployment;
mod environment;
mod names;
mod text;

pub use access::*;
pub use audit::*;
pub use deployment::*;
pub use environment::*;
pub use names::*;
pub use text::*;

/// Checks an environment id: `[a-z0-9-]{1,64}`, the same rule as the API.
pub fn valid_environment_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Checks a deployment id: a canonical (upper-case Crockford) ULID.
pub fn valid_deployment_id(id: &str) -> bool {
    id.len() == 26 && ulid::Ulid::from_string(id).is_ok_and(|u| u.to_string() == id)
}

/// A new deployment id (ULID): sortable by creation time, so history is newest first.
pub fn new_deployment_id() -> String {
    ulid::Ulid::new().to_string()
}

/// The ARN of the execution named `deployment_id` of a state machine.
pub fn execution_arn(state_machine_arn: &str, deployment_id: &str) -> String {
    format!(
        "{}:{deployment_id}",
        state_machine_arn.replacen(":stateMachine:", ":execution:", 1)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_ids_follow_the_api_rule() {
        assert!(valid_environment_id("prod-web-1"));
        assert!(!valid_environment_id(""));
        assert!(!valid_environment_id("Prod"));
        assert!(!valid_environment_id("a_b"));
        assert!(!valid_environment_id(&"a".repeat(65)));
    }

    #[test]
    fn deployment_ids_are_canonical_ulids() {
        let id = new_deployment_id();
        assert!(valid_deployment_id(&id));
        assert!(!valid_deployment_id(&id.to_lowercase()));
        assert!(!valid_deployment_id("not-a-ulid"));
    }
}
