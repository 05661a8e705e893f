//! (in progress) Each function's policies, read from template.yaml with the
//! sandbox's names substituted, and their evaluation (iam-rs).

use super::Check;
use std::collections::BTreeSet;

/// The sandbox's names for what the template refers to.
#[derive(Debug, Clone, Default)]
pub struct Names {
    pub stack: String,
    pub sender: String,
    pub table: String,
    pub state_machine_arn: String,
    pub schedule_group: String,
    pub scheduler_role_arn: String,
    /// The `InstanceRoleArns` stack parameter.
    pub instance_role_arns: Vec<String>,
}

/// The outcome of one check against a function's policies.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed by the statement with this Sid.
    Allowed { sid: Option<String> },
    /// Denied, and why ("no statement allows …", "statement X: condition … not met").
    Denied { reason: String },
}

/// Every policy of the template's roles, by the logical id of the function
/// or role (`ValidateFunction`, `SchedulerRole`, `DeploymentStateMachine`).
#[derive(Debug, Clone, Default)]
pub struct Policies {}

impl Policies {
    pub fn load(_names: &Names) -> Result<Self, String> {
        Ok(Self {})
    }

    /// The number of policy documents (what `IAM: enforced (N policies)` counts).
    pub fn count(&self) -> usize {
        0
    }

    pub fn evaluate(&self, _function: &str, _check: &Check) -> Verdict {
        Verdict::Allowed { sid: None }
    }

    /// The actions the function's policies grant (as the template names them).
    pub fn granted_actions(&self, _function: &str) -> BTreeSet<String> {
        BTreeSet::new()
    }

    /// A copy with one statement of one function's policies removed.
    pub fn without_statement(&self, _function: &str, _sid: &str) -> Result<Self, String> {
        Ok(self.clone())
    }
}
