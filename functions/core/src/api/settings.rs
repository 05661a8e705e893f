//! The API's own settings, read from the function's environment: the state
//! machine it starts, where scheduled deployments' schedules go and where
//! callers' roles come from. What it shares with the steps (table, sender,
//! region) is `deps::Settings`.

/// What the API needs beyond [`crate::deps::Settings`].
#[derive(Debug, Clone, Default)]
pub struct ApiSettings {
    pub state_machine_arn: String,
    pub schedules: ScheduleSettings,
    pub access: AccessSettings,
}

/// Where callers' roles come from under JWT authorization (under IAM
/// authorization API Gateway has decided already and these are unused).
#[derive(Debug, Clone, PartialEq)]
pub struct AccessSettings {
    /// `ADMIN_GROUPS` (comma-separated): members administer every
    /// environment, and only they may register a new one.
    pub admin_groups: Vec<String>,
    /// `GROUPS_CLAIM`: the JWT claim naming the caller's groups.
    pub groups_claim: String,
}

/// Cognito user pools put a user's groups in this claim.
pub const DEFAULT_GROUPS_CLAIM: &str = "cognito:groups";

impl Default for AccessSettings {
    fn default() -> Self {
        Self {
            admin_groups: Vec::new(),
            groups_claim: DEFAULT_GROUPS_CLAIM.into(),
        }
    }
}

impl AccessSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        Self {
            admin_groups: get("ADMIN_GROUPS")
                .map(|v| crate::domain::groups_of_claim(&v))
                .unwrap_or_default(),
            groups_claim: get("GROUPS_CLAIM")
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| DEFAULT_GROUPS_CLAIM.into()),
        }
    }
}

impl ApiSettings {
    /// SCHEDULE_GROUP, SCHEDULER_ROLE_ARN, SCHEDULE_DLQ_ARN,
    /// SCHEDULE_MIN_LEAD_SECONDS, then STATE_MACHINE_ARN; a missing or bad
    /// one is a start error naming it.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let schedules = ScheduleSettings::from_lookup(&get)?;
        let state_machine_arn = get("STATE_MACHINE_ARN")
            .filter(|v| !v.is_empty())
            .ok_or("STATE_MACHINE_ARN is not set: it must name the deployment state machine")?;
        Ok(Self {
            state_machine_arn,
            schedules,
            access: AccessSettings::from_lookup(&get),
        })
    }
}

/// Where scheduled deployments' schedules go and how they start the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleSettings {
    /// The project's EventBridge Scheduler schedule group (`SCHEDULE_GROUP`).
    pub group: String,
    /// The role Scheduler assumes to start the state machine (`SCHEDULER_ROLE_ARN`).
    pub role_arn: String,
    /// The schedules' dead-letter queue (`SCHEDULE_DLQ_ARN`).
    pub dead_letter_arn: Option<String>,
    /// `SCHEDULE_MIN_LEAD_SECONDS` (default 60).
    pub min_lead_seconds: i64,
}

impl Default for ScheduleSettings {
    fn default() -> Self {
        Self {
            group: "autosky".into(),
            role_arn: String::new(),
            dead_letter_arn: None,
            min_lead_seconds: crate::schedule::DEFAULT_MIN_LEAD_SECONDS,
        }
    }
}

impl ScheduleSettings {
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let min_lead_seconds = match get("SCHEDULE_MIN_LEAD_SECONDS") {
            None => crate::schedule::DEFAULT_MIN_LEAD_SECONDS,
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (0..=86_400).contains(n))
                .ok_or("SCHEDULE_MIN_LEAD_SECONDS must be a number of seconds from 0 to 86400")?,
        };
        Ok(Self {
            group: get("SCHEDULE_GROUP")
                .ok_or("SCHEDULE_GROUP is not set: it must name the EventBridge Scheduler group")?,
            role_arn: get("SCHEDULER_ROLE_ARN").ok_or(
                "SCHEDULER_ROLE_ARN is not set: it must name the role Scheduler uses to start the state machine",
            )?,
            dead_letter_arn: get("SCHEDULE_DLQ_ARN"),
            min_lead_seconds,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_errors_name_the_missing_variable_in_the_order_they_are_read() {
        let all = |k: &str| {
            Some(
                match k {
                    "SCHEDULE_GROUP" => "autosky",
                    "SCHEDULER_ROLE_ARN" => "arn:aws:iam::1:role/s",
                    "STATE_MACHINE_ARN" => "arn:aws:states:us-east-1:1:stateMachine:sm",
                    _ => return None,
                }
                .to_string(),
            )
        };
        let s = ApiSettings::from_lookup(all).unwrap();
        assert_eq!(s.schedules.min_lead_seconds, 60);
        assert_eq!(s.access, AccessSettings::default());
        assert_eq!(s.access.groups_claim, "cognito:groups");
        let access = AccessSettings::from_lookup(|k| match k {
            "ADMIN_GROUPS" => Some("autosky-admins, platform".into()),
            "GROUPS_CLAIM" => Some("groups".into()),
            _ => None,
        });
        assert_eq!(access.admin_groups, ["autosky-admins", "platform"]);
        assert_eq!(access.groups_claim, "groups");
        let without =
            |missing: &'static str| move |k: &str| (k != missing).then(|| all(k)).flatten();
        assert!(ApiSettings::from_lookup(|_| None)
            .unwrap_err()
            .contains("SCHEDULE_GROUP"));
        assert!(ApiSettings::from_lookup(without("SCHEDULER_ROLE_ARN"))
            .unwrap_err()
            .contains("SCHEDULER_ROLE_ARN"));
        assert!(ApiSettings::from_lookup(without("STATE_MACHINE_ARN"))
            .unwrap_err()
            .contains("STATE_MACHINE_ARN"));
        let bad_lead = |k: &str| match k {
            "SCHEDULE_MIN_LEAD_SECONDS" => Some("-1".to_string()),
            _ => all(k),
        };
        assert!(ApiSettings::from_lookup(bad_lead)
            .unwrap_err()
            .contains("SCHEDULE_MIN_LEAD_SECONDS"));
    }
}
