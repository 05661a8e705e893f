//! Scheduled deployments: the operator's local time and IANA zone, the rules a
//! schedule must meet (lead time, one year ahead, one per environment and
//! hour), and the EventBridge Scheduler `at()` expression built from them.

use chrono::{DateTime, Datelike, Months, NaiveDateTime, Timelike, Utc};
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

/// Default minimum time between "now" and a schedule (setting
/// `SCHEDULE_MIN_LEAD_SECONDS`): room for the schedule to be created before it fires.
pub const DEFAULT_MIN_LEAD_SECONDS: i64 = 60;
/// Two schedules of one environment must be at least this far apart.
pub const CONFLICT_WINDOW_MINUTES: i64 = 60;

const LOCAL_FORMAT: &str = "%Y-%m-%dT%H:%M:%S";

/// A checked schedule time.
#[derive(Debug, Clone, PartialEq)]
pub struct When {
    pub local: NaiveDateTime,
    /// The IANA name, as the database spells it (`europe/paris` → `Europe/Paris`).
    pub timezone: String,
    pub utc: DateTime<Utc>,
}

/// Why a time was refused, and which request field it is about.
#[derive(Debug, Clone, PartialEq)]
pub struct WhenError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: String) -> WhenError {
    WhenError { field, message }
}

impl When {
    /// `at` is a local date-time (`yyyy-mm-ddThh:mm[:ss]` exactly: two
    /// digits a field, no offset, no space around it, no leap second) in the
    /// IANA zone `timezone` (UTC when absent). Local times that happen twice
    /// (clocks going back) or never (clocks going forward) are refused: which
    /// instant the operator meant cannot be known.
    ///
    /// Zones come from the IANA database compiled into the binary (jiff's
    /// bundled TZif data, never the host's, which a Lambda runtime may lack):
    /// chrono-tz's compiled tables were 1.4 MB bigger for the same answers
    /// (BENCHMARKS.md, lever 7).
    pub fn parse(at: &str, timezone: Option<&str>) -> Result<Self, WhenError> {
        let tz_name = timezone.unwrap_or("UTC");
        let unknown = || {
            err(
                "timezone",
                format!(
                    "timezone '{}' is not an IANA time zone name (like Europe/Paris or UTC)",
                    crate::domain::truncate(tz_name, 64)
                ),
            )
        };
        let zone = TimeZone::get(tz_name).map_err(|_| unknown())?;
        let name = zone.iana_name().ok_or_else(unknown)?.to_string();
        let bad_at = || {
            err(
                "at",
                format!(
                    "at '{}' must be a local date-time like 2026-12-01T14:30:00, without offset (the zone goes in timezone)",
                    crate::domain::truncate(at, 40)
                ),
            )
        };
        // chrono also takes one-digit fields, a signed or longer year and a
        // leap second (`:60`); printing the value back in the format it was
        // read with, and no sub-second part, leaves exactly the documented shape.
        let local = [LOCAL_FORMAT, "%Y-%m-%dT%H:%M"]
            .into_iter()
            .find_map(|f| {
                NaiveDateTime::parse_from_str(at, f)
                    .ok()
                    .filter(|t| t.nanosecond() == 0 && t.format(f).to_string() == at)
            })
            .ok_or_else(bad_at)?;
        let civil = civil(&local).ok_or_else(bad_at)?;
        // The instant at which the wall clock shows `local` at UTC offset `o`.
        let at_offset = |o: Offset| local.and_utc() - chrono::Duration::seconds(o.seconds().into());
        let utc = match zone.to_ambiguous_zoned(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => at_offset(offset),
            AmbiguousOffset::Fold { before, after } => {
                return Err(err(
                    "at",
                    format!(
                        "{} happens twice in {name} (clocks go back: {} and {}); pick another time",
                        local.format(LOCAL_FORMAT),
                        at_offset(before).format("%H:%M UTC"),
                        at_offset(after).format("%H:%M UTC")
                    ),
                ))
            }
            AmbiguousOffset::Gap { .. } => {
                return Err(err(
                    "at",
                    format!(
                        "{} does not exist in {name} (clocks go forward); pick another time",
                        local.format(LOCAL_FORMAT)
                    ),
                ))
            }
        };
        Ok(Self {
            local,
            timezone: name,
            utc,
        })
    }

    /// At least `min_lead_seconds` and at most one year after `now`.
    pub fn check_window(&self, now: DateTime<Utc>, min_lead_seconds: i64) -> Result<(), WhenError> {
        let earliest = now + chrono::Duration::seconds(min_lead_seconds);
        if self.utc < earliest {
            return Err(err(
                "at",
                format!(
                    "at must be at least {min_lead_seconds} s ahead: {} ({}) is {}",
                    self.local_string(),
                    self.timezone,
                    if self.utc <= now {
                        "in the past".to_string()
                    } else {
                        format!("only {} s ahead", (self.utc - now).num_seconds())
                    }
                ),
            ));
        }
        let latest = now.checked_add_months(Months::new(12)).unwrap_or(now);
        if self.utc > latest {
            return Err(err(
                "at",
                format!(
                    "at must be at most one year ahead (until {})",
                    latest.format("%Y-%m-%d %H:%M UTC")
                ),
            ));
        }
        Ok(())
    }

    pub fn local_string(&self) -> String {
        self.local.format(LOCAL_FORMAT).to_string()
    }

    /// The EventBridge Scheduler expression (read in `ScheduleExpressionTimezone`).
    pub fn expression(&self) -> String {
        format!("at({})", self.local_string())
    }
}

/// `local` as jiff's civil date-time; None outside its years (-9999..=9999).
fn civil(local: &NaiveDateTime) -> Option<jiff::civil::DateTime> {
    let n = |v: u32| i8::try_from(v).ok();
    jiff::civil::DateTime::new(
        i16::try_from(local.year()).ok()?,
        n(local.month())?,
        n(local.day())?,
        n(local.hour())?,
        n(local.minute())?,
        n(local.second())?,
        0,
    )
    .ok()
}

/// A pending schedule of an environment, as the store indexes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleEntry {
    pub deployment_id: String,
    pub scheduled_for: DateTime<Utc>,
}

/// The pending schedules of an environment and the version that guards
/// concurrent changes to them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Schedules {
    pub version: u64,
    pub entries: Vec<ScheduleEntry>,
}

impl Schedules {
    /// A pending schedule (other than `except`) less than an hour from `at`.
    pub fn conflict(&self, at: DateTime<Utc>, except: Option<&str>) -> Option<&ScheduleEntry> {
        self.entries.iter().find(|e| {
            Some(e.deployment_id.as_str()) != except
                && (e.scheduled_for - at).num_seconds().abs() < CONFLICT_WINDOW_MINUTES * 60
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-27T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn local_time_in_a_zone_becomes_the_right_instant() {
        let w = When::parse("2026-12-01T14:30", Some("Europe/Paris")).unwrap();
        assert_eq!(w.utc.to_rfc3339(), "2026-12-01T13:30:00+00:00");
        assert_eq!(w.expression(), "at(2026-12-01T14:30:00)");
        let w = When::parse("2026-07-01T14:30:15", Some("America/New_York")).unwrap();
        assert_eq!(w.utc.to_rfc3339(), "2026-07-01T18:30:15+00:00");
        let w = When::parse("2026-12-01T14:30:00", None).unwrap();
        assert_eq!(w.timezone, "UTC");
        assert_eq!(w.utc.to_rfc3339(), "2026-12-01T14:30:00+00:00");
        // The database's spelling of the name is kept (Scheduler gets it too).
        let w = When::parse("2026-12-01T14:30", Some("europe/paris")).unwrap();
        assert_eq!(w.timezone, "Europe/Paris");
        // Southern hemisphere summer time, half-hour and 45-minute offsets.
        let w = When::parse("2026-01-15T09:00", Some("Australia/Sydney")).unwrap();
        assert_eq!(w.utc.to_rfc3339(), "2026-01-14T22:00:00+00:00");
        let w = When::parse("2026-06-01T12:00", Some("Asia/Kolkata")).unwrap();
        assert_eq!(w.utc.to_rfc3339(), "2026-06-01T06:30:00+00:00");
        let w = When::parse("2026-06-01T12:00", Some("Asia/Kathmandu")).unwrap();
        assert_eq!(w.utc.to_rfc3339(), "2026-06-01T06:15:00+00:00");
    }

    #[test]
    fn bad_times_and_zones_are_refused_with_their_field() {
        let e = When::parse("2026-12-01T14:30", Some("Mars/Olympus")).unwrap_err();
        assert_eq!(e.field, "timezone");
        for bad in [
            "2026-12-01",
            "2026-12-01T14:30:00Z",
            "2026-12-01T14:30:00+01:00",
            "tomorrow",
            "2026-13-01T10:00",
        ] {
            let e = When::parse(bad, None).unwrap_err();
            assert_eq!(e.field, "at", "{bad}");
        }
        // Paris, 2026-03-29: 02:00 → 03:00 (never happens); 2026-10-25: 02:30 happens twice.
        let e = When::parse("2026-03-29T02:30", Some("Europe/Paris")).unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
        let e = When::parse("2026-10-25T02:30", Some("Europe/Paris")).unwrap_err();
        assert!(e.message.contains("happens twice"), "{}", e.message);
        assert!(
            e.message.contains("00:30 UTC and 01:30 UTC"),
            "{}",
            e.message
        );
        // New York, 2026-03-08: 02:00 → 03:00.
        let e = When::parse("2026-03-08T02:15", Some("America/New_York")).unwrap_err();
        assert!(e.message.contains("does not exist"), "{}", e.message);
        for bad in [
            "",
            "Europe/Nowhere",
            "/etc/passwd",
            "../../etc/passwd",
            "Europe/Paris\n",
        ] {
            let e = When::parse("2026-12-01T14:30", Some(bad)).unwrap_err();
            assert_eq!(e.field, "timezone", "{bad:?}");
        }
        let e = When::parse("10000-01-01T00:00", None).unwrap_err();
        assert_eq!(e.field, "at");
    }

    /// Exactly `yyyy-mm-ddThh:mm[:ss]`, as the OpenAPI pattern says: what
    /// chrono would also read is refused.
    #[test]
    fn only_the_documented_shape_is_a_local_time() {
        for good in [
            "2026-12-01T14:30",
            "2026-12-01T14:30:59",
            "0999-01-01T00:00",
        ] {
            assert!(When::parse(good, None).is_ok(), "{good}");
        }
        for bad in [
            " 2026-12-01T14:30",
            "2026-12-01T14:30 ",
            "2026-12-01T14:30\n",
            "2026-1-01T14:30",
            "2026-12-1T14:30",
            "2026-12-01T4:30",
            "2026-12-01T14:3",
            "2026-12-01T14:30:5",
            "+2026-12-01T14:30",
            "02026-12-01T14:30",
            "2026-12-01T14:30:60",
            "2026-12-01T23:59:60",
            "2026-12-01t14:30",
            "2026-02-30T10:00",
        ] {
            let e = When::parse(bad, None).unwrap_err();
            assert_eq!(e.field, "at", "{bad:?}");
        }
    }

    #[test]
    fn lead_time_and_one_year_limits() {
        let at = |s: &str| When::parse(s, None).unwrap();
        assert!(at("2026-11-27T12:01:00").check_window(now(), 60).is_ok());
        let e = at("2026-11-27T12:00:59")
            .check_window(now(), 60)
            .unwrap_err();
        assert!(e.message.contains("only 59 s ahead"), "{}", e.message);
        let e = at("2026-11-27T11:00:00")
            .check_window(now(), 60)
            .unwrap_err();
        assert!(e.message.contains("in the past"), "{}", e.message);
        assert!(at("2026-11-27T12:00:05").check_window(now(), 5).is_ok());
        assert!(at("2027-11-27T12:00:00").check_window(now(), 60).is_ok());
        let e = at("2027-11-27T12:00:01")
            .check_window(now(), 60)
            .unwrap_err();
        assert!(e.message.contains("one year"), "{}", e.message);
    }

    #[test]
    fn schedules_less_than_an_hour_apart_conflict() {
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let s = Schedules {
            version: 3,
            entries: vec![ScheduleEntry {
                deployment_id: "A".into(),
                scheduled_for: t("2026-12-01T10:30:00Z"),
            }],
        };
        assert!(s.conflict(t("2026-12-01T11:29:59Z"), None).is_some());
        assert!(s.conflict(t("2026-12-01T09:30:01Z"), None).is_some());
        assert!(s.conflict(t("2026-12-01T11:30:00Z"), None).is_none());
        assert!(s.conflict(t("2026-12-01T10:30:00Z"), Some("A")).is_none());
    }
}
