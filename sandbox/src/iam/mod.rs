//! IAM enforcement in the gateway: every AWS call a function makes is
//! authorized against that function's own policy from `template.yaml`
//! before it reaches the emulator, the way AWS authorizes it (iam-rs
//! evaluates the policies). Who is calling comes from the SigV4 access key
//! ([`principals`]); the policies from the template ([`policies`]); the
//! resource ARNs and request context of a call, including what AWS
//! authorizes on the caller's behalf, from the per-action map ([`actions`]),
//! checked against the Service Authorization Reference ([`reference`]).

pub mod actions;
pub mod figures;
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

use actions::{Call, EmulatorLookup, MapError};
use policies::{Names, Policies, Verdict};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// The environment variable (and `up --iam off`) that turns enforcement off
/// for experiments: `off`. Anything else, or unset, enforces.
pub const MODE_VAR: &str = "AUTOSKY_IAM";

/// Removes one statement from one function's policy before enforcing
/// (`<Function>/<Sid>`): how a test shows that the check can fail.
pub const DROP_VAR: &str = "AUTOSKY_IAM_DROP";

/// Marks a sandbox whose tests provoke denials on purpose (tests/iam.rs):
/// `make test`'s summary counts its denials apart. [`DROP_VAR`] implies it.
pub const ON_PURPOSE_VAR: &str = "AUTOSKY_IAM_DENIALS_ON_PURPOSE";

/// Whether this sandbox's denials are provoked on purpose.
pub fn denials_on_purpose() -> bool {
    std::env::var_os(ON_PURPOSE_VAR).is_some() || std::env::var_os(DROP_VAR).is_some()
}

/// Whether [`MODE_VAR`] leaves enforcement on.
pub fn enabled() -> bool {
    !std::env::var(MODE_VAR).is_ok_and(|v| v.eq_ignore_ascii_case("off"))
}

/// A call a function's policy does not allow.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Denial {
    pub function: String,
    pub action: String,
    /// Every resource the call was checked on, the denied one last.
    pub resources: Vec<String>,
    /// The denied check's request context (`key=value`).
    pub context: Vec<String>,
    pub reason: String,
    /// AWS's message for it.
    pub message: String,
}

/// What the enforcement saw: the figures `make test` prints.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub policies: usize,
    /// Calls of a function, every check allowed.
    pub authorized: u64,
    pub denied: u64,
    /// Per function, the actions some check was allowed.
    pub exercised: BTreeMap<String, BTreeSet<String>>,
    /// Per function, the actions its policies grant (lower case).
    pub granted: BTreeMap<String, BTreeSet<String>>,
    /// The denials, as log lines.
    pub denials: Vec<String>,
}

impl Report {
    /// Granted actions no call exercised, `Function: action` (sorted).
    pub fn unused_grants(&self) -> Vec<String> {
        let mut unused = Vec::new();
        for (function, granted) in &self.granted {
            let used = self.exercised.get(function);
            for action in granted {
                if !used.is_some_and(|u| u.contains(action)) {
                    unused.push(format!("{function}: {action}"));
                }
            }
        }
        unused
    }

    /// Sums reports of several sandboxes (one per test binary).
    pub fn merge(&mut self, other: &Report) {
        self.policies = self.policies.max(other.policies);
        self.authorized += other.authorized;
        self.denied += other.denied;
        for (f, a) in &other.exercised {
            self.exercised
                .entry(f.clone())
                .or_default()
                .extend(a.iter().cloned());
        }
        for (f, a) in &other.granted {
            self.granted
                .entry(f.clone())
                .or_default()
                .extend(a.iter().cloned());
        }
        self.denials.extend(other.denials.iter().cloned());
    }

    /// `IAM: <calls> calls authorized, <n> denied; unused grants: <list or none>`.
    pub fn summary(&self) -> String {
        let unused = self.unused_grants();
        format!(
            "IAM: {} calls authorized, {} denied; unused grants: {}",
            self.authorized,
            self.denied,
            if unused.is_empty() {
                "none".to_string()
            } else {
                unused.join(", ")
            }
        )
    }
}

/// The gateway's IAM check.
pub struct Enforcer {
    policies: Policies,
    lookup: EmulatorLookup,
    report: Mutex<Report>,
}

impl Enforcer {
    /// The template's policies with the sandbox's names; [`DROP_VAR`]
    /// applied.
    pub fn new(names: &Names, lookup: EmulatorLookup) -> Result<Self, String> {
        let mut policies = Policies::load(names)?;
        if let Ok(drop) = std::env::var(DROP_VAR) {
            let (function, sid) = drop
                .split_once('/')
                .ok_or_else(|| format!("{DROP_VAR}={drop}: expected <Function>/<Sid>"))?;
            policies = policies.without_statement(function, sid)?;
        }
        Ok(Self::with_policies(policies, lookup))
    }

    pub fn with_policies(policies: Policies, lookup: EmulatorLookup) -> Self {
        let granted = principals::functions()
            .into_iter()
            .map(|f| {
                let actions = policies
                    .granted_actions(&f)
                    .into_iter()
                    .map(|a| a.to_ascii_lowercase())
                    .collect();
                (f, actions)
            })
            .collect();
        let report = Report {
            policies: policies.count(),
            granted,
            ..Report::default()
        };
        Self {
            policies,
            lookup,
            report: Mutex::new(report),
        }
    }

    pub fn report(&self) -> Report {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Authorizes `call` by `function`: Ok when every check AWS makes for it
    /// is allowed (or the call names a resource that does not exist: the
    /// emulator then answers not found).
    pub async fn authorize(&self, function: &str, call: &Call<'_>) -> Result<(), Box<Denial>> {
        let principal = self.policies.principal_arn(function);
        let outcome = match actions::checks(call, &self.lookup).await {
            Err(MapError::NotFound(_)) => return Ok(()),
            Err(MapError::NoEntry(action)) => Err(Denial::new(
                &principal,
                function,
                &action,
                vec![],
                vec![],
                "the sandbox has no map entry for this action (add one, with its test)".into(),
            )),
            Err(MapError::Invalid(e)) => Err(Denial::new(
                &principal,
                function,
                &format!("{}:{}", call.service, call.action),
                vec![],
                vec![],
                format!("the request could not be mapped: {e}"),
            )),
            Ok(checks) => self.evaluate(function, &checks),
        };
        let mut report = self.report.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(allowed) => {
                report.authorized += 1;
                report
                    .exercised
                    .entry(function.to_string())
                    .or_default()
                    .extend(allowed);
                Ok(())
            }
            Err(d) => {
                report.denied += 1;
                report.denials.push(d.log_line());
                // Always shown (the sandbox's log needs no RUST_LOG for it).
                eprintln!("sandbox: {}", d.log_line());
                Err(d)
            }
        }
    }

    /// The allowed actions (lower case), or the first denial.
    fn evaluate(&self, function: &str, checks: &[Check]) -> Result<BTreeSet<String>, Box<Denial>> {
        let mut allowed = BTreeSet::new();
        let mut resources = Vec::new();
        for check in checks {
            resources.push(check.resource.clone());
            if let Verdict::Denied { reason } = self.policies.evaluate(function, check) {
                let context = check
                    .context
                    .iter()
                    .map(|(k, v)| format!("{k}={}", context_value(v)))
                    .collect();
                let reason = match &check.on_behalf_of {
                    Some(call) => {
                        format!("{reason} (authorized on the caller's behalf for {call})")
                    }
                    None => reason,
                };
                return Err(Denial::new(
                    &self.policies.principal_arn(function),
                    function,
                    &check.action,
                    resources,
                    context,
                    reason,
                ));
            }
            allowed.insert(check.action.to_ascii_lowercase());
        }
        Ok(allowed)
    }
}

impl Denial {
    fn new(
        principal: &str,
        function: &str,
        action: &str,
        resources: Vec<String>,
        context: Vec<String>,
        reason: String,
    ) -> Box<Self> {
        let resource = resources.last().map(String::as_str).unwrap_or("*");
        Box::new(Self {
            function: function.to_string(),
            action: action.to_string(),
            message: format!(
                "User: {principal} is not authorized to perform: {action} on resource: {resource} because {reason}"
            ),
            resources,
            context,
            reason,
        })
    }

    /// One line: function, action, resources, context, reason.
    pub fn log_line(&self) -> String {
        format!(
            "IAM denied {} {} on [{}] context [{}]: {}",
            self.function,
            self.action,
            self.resources.join(", "),
            self.context.join(", "),
            self.reason
        )
    }
}

fn context_value(v: &iam_rs::ContextValue) -> String {
    match v {
        iam_rs::ContextValue::String(s) => s.clone(),
        other => serde_json::to_string(other).unwrap_or_default(),
    }
}
