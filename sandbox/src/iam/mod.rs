//! IAM enforcement in the gateway: every AWS call a function makes is
//! authorized against that function's own policy from `template.yaml`
//! before it reaches the emulator, the way AWS authorizes it (iam-rs
//! evaluates the policies). Who is calling comes from the SigV4 access key
//! ([`principals`]); the policies from the template ([`policies`]); the
//! resource ARNs and request context of a call, including what AWS
//! authorizes on the caller's behalf, from the per-action map ([`actions`]),
//! checked against the Service Authorization Reference ([`reference`]).

pub mod actions;
pub mod policies;
pub mod principals;
pub mod reference;

/// The sandbox's account and Region: every ARN the map builds and every
/// policy resolved from the template uses them.
pub const ACCOUNT: &str = "000000000000";
pub const REGION: &str = "us-east-1";

/// One authorization AWS makes for a call: the IAM action, the resource it
/// is checked on, and the request context (condition keys and values).
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// `service:Action`, as a policy names it (`ec2:StopInstances`).
    pub action: String,
    /// The resource's ARN; `*` for actions without resource-level
    /// permissions.
    pub resource: String,
    /// Condition keys AWS sets for this action on this resource.
    pub context: Vec<(String, iam_rs::ContextValue)>,
    /// For an authorization AWS makes on the caller's behalf, the call that
    /// needs it (`autoscaling:StartInstanceRefresh with launch template lt-1`).
    pub on_behalf_of: Option<String>,
}
