//! Request bodies and their validation: unknown fields are refused, e-mail
//! addresses follow RFC 5321 lengths with no header injection, resource ids
//! have the shapes AWS gives them. Bad input is refused before anything is read
//! or written.

use super::Problem;
use crate::domain::{
    AccessMap, Environment, EnvironmentDefaults, RefreshPreferences, RequestedOptions,
    DEFAULT_RETENTION, MAX_REFRESH_ALARMS, MAX_REFRESH_PAUSE_SECONDS,
};
use serde::Deserialize;

pub const MAX_EMAILS: usize = 20;

pub(super) fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    serde_json::from_slice(body)
        .map_err(|e| Problem::bad_request(&format!("invalid JSON body: {e}")))
}

/// An address SES can send to: `local@domain`, local part ≤ 64, whole ≤ 254,
/// printable ASCII without spaces, quotes, angle brackets or separators (so
/// no CR/LF or other header injection), a dotted domain of LDH labels.
pub fn valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let local_ok = (1..=64).contains(&local.len())
        && local
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"<>()[]\\,;:\"@".contains(&b))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let domain_ok = (3..=253).contains(&domain.len())
        && domain.contains('.')
        && domain.split('.').all(|l| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    s.len() <= 254 && local_ok && domain_ok
}

fn check_emails(field: &str, emails: &[String]) -> Result<(), Problem> {
    if emails.len() > MAX_EMAILS {
        return Err(
            Problem::bad_request(&format!("{field}: at most {MAX_EMAILS} addresses")).field(field),
        );
    }
    for (i, e) in emails.iter().enumerate() {
        if !valid_email(e) {
            return Err(Problem::bad_request(&format!(
                "{field}[{i}] is not a valid e-mail address: '{}'",
                crate::domain::truncate(&e.escape_debug().to_string(), 80)
            ))
            .field(field));
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartInput {
    pub lock_instances: Option<bool>,
    pub stop_preparation_server: Option<bool>,
    pub notification_emails: Option<Vec<String>>,
    pub notify_on_start: Option<bool>,
}

impl StartInput {
    /// A start's (or rollback's) body, checked: empty (or only white space)
    /// is `{}`.
    pub fn from_body(body: &[u8]) -> Result<Self, Problem> {
        let input: Self = if body.iter().all(u8::is_ascii_whitespace) {
            Self::default()
        } else {
            parse(body)?
        };
        input.check()?;
        Ok(input)
    }

    pub fn check(&self) -> Result<(), Problem> {
        check_emails(
            "notificationEmails",
            self.notification_emails.as_deref().unwrap_or_default(),
        )
    }

    pub fn options(&self) -> RequestedOptions {
        RequestedOptions {
            lock_instances: self.lock_instances,
            stop_preparation_server: self.stop_preparation_server,
            notification_emails: self.notification_emails.clone(),
            notify_on_start: self.notify_on_start,
        }
    }
}

/// `POST /environments/{env}/schedules`: when, plus the same options as a
/// start (parsed and checked by `StartInput`, which refuses unknown fields).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScheduleInput {
    /// Local date-time in `timezone`: `yyyy-mm-ddThh:mm[:ss]`, no offset.
    pub at: Option<String>,
    /// IANA time zone name; UTC when absent.
    pub timezone: Option<String>,
    pub options: StartInput,
}

impl ScheduleInput {
    pub(super) fn parse(body: &[u8]) -> Result<Self, Problem> {
        let mut fields: serde_json::Map<String, serde_json::Value> = parse(body)?;
        let mut text = |k: &'static str| match fields.remove(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(v)) => Ok(Some(v)),
            Some(_) => Err(Problem::bad_request(&format!("{k} must be a string")).field(k)),
        };
        let (at, timezone) = (text("at")?, text("timezone")?);
        let options: StartInput = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| Problem::bad_request(&format!("invalid JSON body: {e}")))?;
        options.check()?;
        Ok(Self {
            at,
            timezone,
            options,
        })
    }
}

/// `PATCH /environments/{env}/schedules/{id}`: a new time (and zone).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RescheduleInput {
    pub at: Option<String>,
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RefreshInput {
    #[serde(default, deserialize_with = "whole")]
    pub min_healthy_percentage: Option<i32>,
    #[serde(default, deserialize_with = "whole")]
    pub instance_warmup_seconds: Option<i32>,
    pub skip_matching: Option<bool>,
    pub auto_rollback: Option<bool>,
    pub checkpoint_percentages: Option<Vec<serde_json::Number>>,
    #[serde(default, deserialize_with = "whole")]
    pub checkpoint_delay_seconds: Option<i32>,
    #[serde(default, deserialize_with = "whole")]
    pub bake_time_seconds: Option<i32>,
    pub alarms: Option<Vec<String>>,
}

impl RefreshInput {
    /// The checkpoint percentages as integers (JSON Schema's `integer`: `50.0`
    /// is 50); `Err`: the index of one that is not an integer.
    fn checkpoints(&self) -> Result<Vec<i32>, usize> {
        self.checkpoint_percentages
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, n)| {
                n.as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                    .and_then(|v| i32::try_from(v).ok())
                    .ok_or(i)
            })
            .collect()
    }

    /// AWS's rules for the checkpoints, the pauses and the alarms of a
    /// refresh (RefreshPreferences, AlarmSpecification), checked here so a
    /// bad setting is refused when it is saved rather than when a deployment
    /// starts its refresh.
    fn check(&self) -> Result<(), Problem> {
        const P: &str = "defaults.refreshPreferences";
        range(
            &format!("{P}.minHealthyPercentage"),
            self.min_healthy_percentage,
            0,
            100,
        )?;
        range(
            &format!("{P}.instanceWarmupSeconds"),
            self.instance_warmup_seconds,
            0,
            3600,
        )?;
        let field = format!("{P}.checkpointPercentages");
        let bad = |msg: String| Err(Problem::bad_request(&msg).field(&field));
        let checkpoints = match self.checkpoints() {
            Ok(c) => c,
            Err(i) => return bad(format!("{field}[{i}] must be an integer")),
        };
        for (i, c) in checkpoints.iter().enumerate() {
            if !(1..=100).contains(c) {
                return bad(format!("{field}[{i}] must be from 1 to 100"));
            }
            if i > 0 && checkpoints[i - 1] >= *c {
                return bad(format!(
                    "{field} must be unique and in ascending order ({} then {c})",
                    checkpoints[i - 1]
                ));
            }
        }
        let delay_field = format!("{P}.checkpointDelaySeconds");
        range(
            &delay_field,
            self.checkpoint_delay_seconds,
            0,
            MAX_REFRESH_PAUSE_SECONDS,
        )?;
        if self.checkpoint_delay_seconds.is_some() && checkpoints.is_empty() {
            return Err(Problem::bad_request(&format!(
                "{delay_field} needs {field}: AWS takes a checkpoint delay only with checkpoints"
            ))
            .field(&delay_field));
        }
        range(
            &format!("{P}.bakeTimeSeconds"),
            self.bake_time_seconds,
            0,
            MAX_REFRESH_PAUSE_SECONDS,
        )?;
        let alarms = self.alarms.as_deref().unwrap_or_default();
        let field = format!("{P}.alarms");
        if alarms.len() > MAX_REFRESH_ALARMS {
            return Err(Problem::bad_request(&format!(
                "{field}: at most {MAX_REFRESH_ALARMS} alarms"
            ))
            .field(&field));
        }
        for (i, a) in alarms.iter().enumerate() {
            // AWS also takes tabs and line breaks; they have no place in an
            // alarm name an e-mail or the page shows on one line.
            let ok = (1..=255).contains(&a.chars().count()) && !a.chars().any(char::is_control);
            if !ok {
                return Err(Problem::bad_request(&format!(
                    "{field}[{i}] must be a CloudWatch alarm name of 1 to 255 characters without \
                     control characters: '{}'",
                    crate::domain::truncate(&a.escape_debug().to_string(), 80)
                ))
                .field(&field));
            }
            if alarms[..i].contains(a) {
                return Err(Problem::bad_request(&format!(
                    "{field}: alarm '{}' is named twice",
                    crate::domain::truncate(&a.escape_debug().to_string(), 80)
                ))
                .field(&field));
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultsInput {
    pub lock_instances: Option<bool>,
    pub stop_preparation_server: Option<bool>,
    pub notification_emails: Option<Vec<String>>,
    pub notify_on_start: Option<bool>,
    #[serde(default, deserialize_with = "whole")]
    pub retention: Option<u32>,
    #[serde(default, deserialize_with = "whole")]
    pub kept_deployments: Option<u32>,
    pub replace_instances: Option<bool>,
    pub refresh_preferences: Option<RefreshInput>,
    #[serde(default, deserialize_with = "whole")]
    pub image_timeout_seconds: Option<u64>,
    #[serde(default, deserialize_with = "whole")]
    pub stop_timeout_seconds: Option<u64>,
    #[serde(default, deserialize_with = "whole")]
    pub refresh_timeout_seconds: Option<u64>,
}

/// An optional integer as JSON Schema's `integer` has it: any number
/// without a fractional part, so `5.0` and `5e0` are 5 (serde alone takes
/// only `5`); `null` is left out.
fn whole<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i64>,
{
    use serde::de::Error;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    // Past ±2^53 a float is no longer exact; no bound of the API is near it.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    n.as_i64()
        .or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() <= EXACT)
                .map(|f| f as i64)
        })
        .and_then(|v| T::try_from(v).ok())
        .map(Some)
        .ok_or_else(|| D::Error::custom(format!("{n} is not an integer in range")))
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvironmentInput {
    pub preparation_server_id: String,
    pub auto_scaling_groups: Vec<String>,
    pub launch_template_id: String,
    #[serde(default, deserialize_with = "null_is_default")]
    pub defaults: DefaultsInput,
    /// Which groups hold which role (JWT authorization).
    #[serde(default)]
    pub access: Option<AccessMap>,
}

/// Most groups one role of an access map may list.
pub const MAX_GROUPS: usize = 50;

/// An access map's group names: as identity providers name groups (Cognito:
/// 1 to 128 characters), without whitespace or commas, which separate the
/// names of a groups claim, and without control characters.
fn check_access(access: &AccessMap) -> Result<(), Problem> {
    for (field, list) in [
        ("access.viewers", &access.viewers),
        ("access.deployers", &access.deployers),
        ("access.administrators", &access.administrators),
    ] {
        if list.len() > MAX_GROUPS {
            return Err(
                Problem::bad_request(&format!("{field}: at most {MAX_GROUPS} groups")).field(field),
            );
        }
        for (i, g) in list.iter().enumerate() {
            let ok = (1..=128).contains(&g.chars().count())
                && !g
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == ',');
            if !ok {
                return Err(Problem::bad_request(&format!(
                    "{field}[{i}] must be a group name of 1 to 128 characters without \
                     whitespace, commas or control characters: '{}'",
                    crate::domain::truncate(&g.escape_debug().to_string(), 80)
                ))
                .field(field));
            }
        }
    }
    Ok(())
}

/// `null` for an optional object is the same as leaving it out, as it is
/// for every other optional field (those are `Option`s).
fn null_is_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| {
        (8..=17).contains(&h.len())
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

fn range<T: PartialOrd + std::fmt::Display + Copy>(
    field: &str,
    v: Option<T>,
    lo: T,
    hi: T,
) -> Result<(), Problem> {
    match v {
        Some(v) if v < lo || v > hi => {
            Err(Problem::bad_request(&format!("{field} must be from {lo} to {hi}")).field(field))
        }
        _ => Ok(()),
    }
}

impl EnvironmentInput {
    pub fn check(&self) -> Result<(), Problem> {
        if !aws_id(&self.preparation_server_id, "i-") {
            return Err(
                Problem::bad_request("preparationServerId must be an instance id (i-…)")
                    .field("preparationServerId"),
            );
        }
        if !aws_id(&self.launch_template_id, "lt-") {
            return Err(Problem::bad_request(
                "launchTemplateId must be a launch template id (lt-…)",
            )
            .field("launchTemplateId"));
        }
        if self.auto_scaling_groups.is_empty() || self.auto_scaling_groups.len() > 10 {
            return Err(
                Problem::bad_request("autoScalingGroups must name 1 to 10 groups")
                    .field("autoScalingGroups"),
            );
        }
        for (i, g) in self.auto_scaling_groups.iter().enumerate() {
            // AWS counts a group name's length in characters, not UTF-8 bytes.
            let chars = g.chars().count();
            if chars == 0 || chars > 255 || g.chars().any(char::is_control) {
                return Err(Problem::bad_request(
                    "each Auto Scaling group name must be 1 to 255 printable characters",
                )
                .field("autoScalingGroups"));
            }
            // A group named twice would get two instance refreshes at once.
            if self.auto_scaling_groups[..i].contains(g) {
                return Err(Problem::bad_request(&format!(
                    "Auto Scaling group '{}' is named twice",
                    crate::domain::truncate(&g.escape_debug().to_string(), 80)
                ))
                .field("autoScalingGroups"));
            }
        }
        if let Some(access) = &self.access {
            check_access(access)?;
        }
        let d = &self.defaults;
        check_emails(
            "defaults.notificationEmails",
            d.notification_emails.as_deref().unwrap_or_default(),
        )?;
        range("defaults.retention", d.retention, 2, 100)?;
        range("defaults.keptDeployments", d.kept_deployments, 1, 20)?;
        range(
            "defaults.imageTimeoutSeconds",
            d.image_timeout_seconds,
            60,
            86_400,
        )?;
        range(
            "defaults.stopTimeoutSeconds",
            d.stop_timeout_seconds,
            60,
            86_400,
        )?;
        range(
            "defaults.refreshTimeoutSeconds",
            d.refresh_timeout_seconds,
            60,
            86_400,
        )?;
        if let Some(r) = &d.refresh_preferences {
            r.check()?;
        }
        Ok(())
    }

    pub fn into_environment(self, environment_id: &str) -> Environment {
        let base = EnvironmentDefaults::default();
        let d = self.defaults;
        let r = d.refresh_preferences.unwrap_or_default();
        // Checked by `check`: the integers are valid here.
        let checkpoints = r.checkpoints().unwrap_or_default();
        let rp = RefreshPreferences::default();
        Environment {
            environment_id: environment_id.into(),
            preparation_server_id: self.preparation_server_id,
            auto_scaling_groups: self.auto_scaling_groups,
            launch_template_id: self.launch_template_id,
            defaults: EnvironmentDefaults {
                lock_instances: d.lock_instances.unwrap_or(base.lock_instances),
                stop_preparation_server: d
                    .stop_preparation_server
                    .unwrap_or(base.stop_preparation_server),
                notification_emails: d.notification_emails.unwrap_or_default(),
                retention: d.retention.unwrap_or(DEFAULT_RETENTION),
                kept_deployments: d.kept_deployments.unwrap_or(base.kept_deployments),
                replace_instances: d.replace_instances.unwrap_or(base.replace_instances),
                refresh_preferences: RefreshPreferences {
                    min_healthy_percentage: r
                        .min_healthy_percentage
                        .unwrap_or(rp.min_healthy_percentage),
                    instance_warmup_seconds: r
                        .instance_warmup_seconds
                        .or(rp.instance_warmup_seconds),
                    skip_matching: r.skip_matching.unwrap_or(rp.skip_matching),
                    auto_rollback: r.auto_rollback.unwrap_or(rp.auto_rollback),
                    checkpoint_percentages: checkpoints,
                    checkpoint_delay_seconds: r.checkpoint_delay_seconds,
                    bake_time_seconds: r.bake_time_seconds,
                    alarms: r.alarms.unwrap_or_default(),
                },
                image_timeout_seconds: d
                    .image_timeout_seconds
                    .unwrap_or(base.image_timeout_seconds),
                stop_timeout_seconds: d.stop_timeout_seconds.unwrap_or(base.stop_timeout_seconds),
                refresh_timeout_seconds: d
                    .refresh_timeout_seconds
                    .unwrap_or(base.refresh_timeout_seconds),
                notify_on_start: d.notify_on_start.unwrap_or(base.notify_on_start),
            },
            access: self.access,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_follow_rfc_5321_lengths_and_refuse_injection() {
        assert!(valid_email("ops@example.com"));
        assert!(valid_email("first.last+tag@sub.example.co"));
        for bad in [
            "",
            "no-at.example.com",
            "a@b",
            "a@@example.com",
            "a b@example.com",
            "a@example.com\r\nBcc: x@y.z",
            "<a@example.com>",
            "a@-example.com",
            ".a@example.com",
        ] {
            assert!(!valid_email(bad), "{bad:?}");
        }
        assert!(!valid_email(&format!("{}@example.com", "a".repeat(65))));
        assert!(!valid_email(&format!("a@{}.com", "b".repeat(250))));
    }

    fn with_groups(groups: &[&str]) -> EnvironmentInput {
        EnvironmentInput {
            preparation_server_id: "i-0123456789abcdef0".into(),
            auto_scaling_groups: groups.iter().map(|g| g.to_string()).collect(),
            launch_template_id: "lt-0abc12345".into(),
            defaults: DefaultsInput::default(),
            access: None,
        }
    }

    #[test]
    fn group_names_are_counted_in_characters_and_named_once() {
        let field = |groups: &[&str]| {
            with_groups(groups)
                .check()
                .err()
                .map(|p| (p.status, p.extra.map(|e| e["field"].clone())))
        };
        // 255 two-byte characters: 510 bytes, a valid name all the same.
        let accented = "é".repeat(255);
        assert_eq!(field(&[&accented]), None);
        assert_eq!(field(&["web", "api"]), None);
        let refused = Some((400, Some(serde_json::json!("autoScalingGroups"))));
        assert_eq!(field(&[&"é".repeat(256)]), refused);
        assert_eq!(field(&[""]), refused);
        assert_eq!(field(&["web\u{7f}"]), refused);
        assert_eq!(field(&["web\u{85}"]), refused);
        assert_eq!(field(&["web", "api", "web"]), refused);
    }

    /// Every optional field takes `null` for "left out", `defaults` included.
    #[test]
    fn null_is_the_same_as_left_out() {
        let with_null: EnvironmentInput = parse(
            br#"{"preparationServerId": "i-0123456789abcdef0", "autoScalingGroups": ["web"],
                 "launchTemplateId": "lt-0abc12345", "defaults": null}"#,
        )
        .unwrap();
        assert_eq!(with_null, with_groups(&["web"]));
        let nested: EnvironmentInput = parse(
            br#"{"preparationServerId": "i-0123456789abcdef0", "autoScalingGroups": ["web"],
                 "launchTemplateId": "lt-0abc12345",
                 "defaults": {"retention": null, "refreshPreferences": null, "notificationEmails": null}}"#,
        )
        .unwrap();
        assert_eq!(nested, with_groups(&["web"]));
        // A required field is never null.
        assert!(parse::<EnvironmentInput>(
            br#"{"preparationServerId": null, "autoScalingGroups": ["web"], "launchTemplateId": "lt-0abc12345"}"#
        )
        .is_err());
    }

    /// JSON Schema's `integer`: a zero fraction or an exponent is still an integer.
    #[test]
    fn integers_may_be_written_as_whole_numbers() {
        let defaults = |json: &str| serde_json::from_str::<DefaultsInput>(json);
        let d = defaults(
            r#"{"retention": 5.0, "imageTimeoutSeconds": 6e2, "refreshPreferences": {"minHealthyPercentage": 90.0}}"#,
        )
        .unwrap();
        assert_eq!(d.retention, Some(5));
        assert_eq!(d.image_timeout_seconds, Some(600));
        assert_eq!(
            d.refresh_preferences.unwrap().min_healthy_percentage,
            Some(90)
        );
        assert_eq!(defaults(r#"{"retention": null}"#).unwrap().retention, None);
        for bad in [
            r#"{"retention": 5.5}"#,
            r#"{"retention": "5"}"#,
            r#"{"retention": -1}"#,
            r#"{"stopTimeoutSeconds": -60}"#,
            r#"{"retention": 1e300}"#,
            r#"{"refreshPreferences": {"instanceWarmupSeconds": 3000000000}}"#,
        ] {
            assert!(defaults(bad).is_err(), "{bad}");
        }
    }

    /// The field a `refreshPreferences` body is refused for (None: accepted).
    fn refused_field(prefs: serde_json::Value) -> Option<String> {
        let body = serde_json::json!({
            "preparationServerId": "i-0123456789abcdef0", "autoScalingGroups": ["web"],
            "launchTemplateId": "lt-0abc12345", "defaults": {"refreshPreferences": prefs}
        });
        let input: EnvironmentInput = parse(body.to_string().as_bytes()).unwrap();
        input.check().err().map(|p| {
            assert_eq!(p.status, 400);
            p.extra.unwrap()["field"].as_str().unwrap().to_string()
        })
    }

    #[test]
    fn checkpoints_pauses_and_alarms_follow_aws_rules() {
        use serde_json::json;
        let f = |s: &str| Some(format!("defaults.refreshPreferences.{s}"));
        for ok in [
            json!({"checkpointPercentages": [10, 50]}),
            json!({"checkpointPercentages": [10, 50, 100], "checkpointDelaySeconds": 0}),
            json!({"checkpointPercentages": [50.0], "checkpointDelaySeconds": 172800}),
            json!({"bakeTimeSeconds": 600, "alarms": ["web-5xx", "web-latency"]}),
            json!({"alarms": (0..10).map(|i| format!("a{i}")).collect::<Vec<_>>()}),
            json!({"alarms": ["é".repeat(255)]}),
        ] {
            assert_eq!(refused_field(ok.clone()), None, "{ok}");
        }
        let cp = f("checkpointPercentages");
        for (bad, field) in [
            (json!({"checkpointPercentages": [50, 10]}), &cp),
            (json!({"checkpointPercentages": [50, 50]}), &cp),
            (json!({"checkpointPercentages": [0, 50]}), &cp),
            (json!({"checkpointPercentages": [50, 101]}), &cp),
            (json!({"checkpointPercentages": [12.5]}), &cp),
            (
                json!({"checkpointDelaySeconds": 600}),
                &f("checkpointDelaySeconds"),
            ),
            (
                json!({"checkpointPercentages": [50], "checkpointDelaySeconds": 172801}),
                &f("checkpointDelaySeconds"),
            ),
            (
                json!({"checkpointPercentages": [50], "checkpointDelaySeconds": -1}),
                &f("checkpointDelaySeconds"),
            ),
            (json!({"bakeTimeSeconds": 172801}), &f("bakeTimeSeconds")),
            (
                json!({"alarms": (0..11).map(|i| format!("a{i}")).collect::<Vec<_>>()}),
                &f("alarms"),
            ),
            (json!({"alarms": [""]}), &f("alarms")),
            (json!({"alarms": ["x".repeat(256)]}), &f("alarms")),
            (json!({"alarms": ["a\nb"]}), &f("alarms")),
            (json!({"alarms": ["a", "a"]}), &f("alarms")),
        ] {
            assert_eq!(&refused_field(bad.clone()), field, "{bad}");
        }
    }

    #[test]
    fn new_refresh_settings_reach_the_environment() {
        let input: EnvironmentInput = parse(
            br#"{"preparationServerId": "i-0123456789abcdef0", "autoScalingGroups": ["web"],
                 "launchTemplateId": "lt-0abc12345",
                 "defaults": {"refreshPreferences": {"checkpointPercentages": [10, 50.0],
                   "checkpointDelaySeconds": 900, "bakeTimeSeconds": 300, "alarms": ["web-5xx"]}}}"#,
        )
        .unwrap();
        input.check().unwrap();
        let r = input.into_environment("prod").defaults.refresh_preferences;
        assert_eq!(r.checkpoint_percentages, vec![10, 50]);
        assert_eq!(r.checkpoints_sent(), vec![10, 50, 100]);
        assert_eq!(r.checkpoint_delay_seconds, Some(900));
        assert_eq!(r.bake_time_seconds, Some(300));
        assert_eq!(r.alarms, vec!["web-5xx".to_string()]);
        // The rest keeps its defaults.
        assert_eq!(r.min_healthy_percentage, 90);
    }

    /// An environment saved before these settings existed reads as before.
    #[test]
    fn stored_preferences_without_the_new_fields_still_read() {
        let r: RefreshPreferences = serde_json::from_str(
            r#"{"minHealthyPercentage": 80, "instanceWarmupSeconds": null, "skipMatching": false, "autoRollback": true}"#,
        )
        .unwrap();
        assert_eq!(r.min_healthy_percentage, 80);
        assert!(r.checkpoint_percentages.is_empty() && r.alarms.is_empty());
        assert_eq!(
            (r.checkpoint_delay_seconds, r.bake_time_seconds),
            (None, None)
        );
        assert!(r.checkpoints_sent().is_empty());
    }

    #[test]
    fn ids_have_aws_shapes() {
        assert!(aws_id("i-0123456789abcdef0", "i-"));
        assert!(aws_id("lt-0abc12345", "lt-"));
        assert!(!aws_id("i-XYZ", "i-"));
        assert!(!aws_id("lt-0ABC12345", "lt-"));
    }
}
