//! Cron schedules: when a schedule's ticks fall, and the run each tick stands for.
//!
//! A tick's run id is derived from the schedule's name and the tick's time, so a tick is
//! one run however many times it is fired: by a server restarted around it, or by
//! several servers on one journal. Ticks missed while no server ran are not made up,
//! except the latest one within the schedule's catch-up window, run once at start.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tether_types::RunId;

/// What to do with a tick while the schedule's previous run has not ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Skip the tick (the default): one run of a schedule at a time.
    #[default]
    Skip,
    /// Start it anyway.
    Allow,
}

/// A schedule as the operator writes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// Its name (it makes each tick's run id).
    pub name: String,
    /// The workflow to start, by name.
    pub workflow: String,
    /// A cron pattern: five fields (minute first) or six (second first).
    pub cron: String,
    /// The IANA time zone the pattern is read in, such as `Europe/Paris` [default: UTC].
    #[serde(default)]
    pub timezone: Option<String>,
    /// What to do while the previous run has not ended.
    #[serde(default)]
    pub overlap: Overlap,
    /// The input of every run.
    #[serde(default)]
    pub input: Value,
    /// How far back a tick missed while no server ran is still run at start (once, the
    /// latest) [default: 1h; `0s` runs none].
    #[serde(default)]
    pub catch_up: Option<String>,
}

/// A parsed schedule.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// As written.
    pub spec: ScheduleSpec,
    cron: croner::Cron,
    zone: Tz,
    /// The catch-up window.
    pub catch_up: Duration,
}

impl Schedule {
    /// Parses and checks a schedule; the error names the schedule and the field.
    pub fn parse(spec: ScheduleSpec) -> Result<Schedule, String> {
        let at = format!("schedule `{}`", spec.name);
        if spec.name.is_empty() || !spec.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            return Err(format!("{at}: name it with letters, digits, `-`, `_` or `.`"));
        }
        let cron = croner::Cron::new(&spec.cron)
            .with_seconds_optional()
            .parse()
            .map_err(|e| format!("{at}: cron `{}`: {e}", spec.cron))?;
        let zone = match &spec.timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("{at}: timezone `{name}` is not an IANA time zone (such as Europe/Paris)"))?,
        };
        let catch_up = match &spec.catch_up {
            None => Duration::from_secs(3600),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| format!("{at}: catch_up `{text}`: {e}; write a duration such as 1h"))?,
        };
        Ok(Schedule { spec, cron, zone, catch_up })
    }

    /// The first tick after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.zone);
        self.cron.find_next_occurrence(&local, false).ok().map(|n| n.with_timezone(&Utc))
    }

    /// The latest tick at or before `now` and no older than `within`.
    pub fn latest_at_or_before(&self, now: DateTime<Utc>, within: Duration) -> Option<DateTime<Utc>> {
        let from = now - chrono::Duration::from_std(within).ok()?;
        let first = self.cron.find_next_occurrence(&from.with_timezone(&self.zone), true).ok()?.with_timezone(&Utc);
        let mut latest = (first <= now).then_some(first)?;
        while let Some(next) = self.next_after(latest).filter(|n| *n <= now) {
            latest = next;
        }
        Some(latest)
    }

    /// The tick before `tick` (within a day of it is enough to find an overlap).
    pub fn previous(&self, tick: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let before = tick - chrono::Duration::seconds(1);
        self.latest_at_or_before(before, Duration::from_secs(86_400 * 366))
    }

    /// The run a tick stands for.
    pub fn run_id(&self, tick: DateTime<Utc>) -> RunId {
        let digest = Sha256::digest(format!("schedule\0{}\0{}", self.spec.name, tick.timestamp()).as_bytes());
        RunId::from_suffix(&hex::encode(&digest[..16])).expect("hex is a valid run id suffix")
    }

    /// How a tick is named in its run's origin: `NAME@2026-11-30T02:00:00Z`.
    pub fn tick_key(&self, tick: DateTime<Utc>) -> String {
        format!("{}@{}", self.spec.name, tick.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    }
}

/// Now, as the schedules read time.
pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// A time given in microseconds since the Unix epoch.
pub fn from_us(us: u64) -> DateTime<Utc> {
    Utc.timestamp_micros(us as i64).single().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(cron: &str, zone: Option<&str>, name: &str) -> Result<Schedule, String> {
        Schedule::parse(ScheduleSpec {
            name: name.into(),
            workflow: "w".into(),
            cron: cron.into(),
            timezone: zone.map(str::to_string),
            overlap: Overlap::Skip,
            input: Value::Null,
            catch_up: None,
        })
    }

    fn schedule(cron: &str, zone: Option<&str>) -> Schedule {
        parse(cron, zone, "nightly").unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn ticks_fall_in_the_schedules_time_zone() {
        let s = schedule("0 2 * * *", Some("Europe/Paris"));
        // 02:00 in Paris in winter is 01:00 UTC.
        assert_eq!(s.next_after(at("2026-11-30T00:00:00Z")), Some(at("2026-11-30T01:00:00Z")));
        assert_eq!(
            s.latest_at_or_before(at("2026-11-30T05:00:00Z"), Duration::from_secs(3600 * 6)),
            Some(at("2026-11-30T01:00:00Z"))
        );
        assert_eq!(
            s.latest_at_or_before(at("2026-11-30T05:00:00Z"), Duration::from_secs(3600)),
            None,
            "outside the window"
        );
        assert_eq!(s.previous(at("2026-11-30T01:00:00Z")), Some(at("2026-11-29T01:00:00Z")));
    }

    #[test]
    fn a_tick_is_one_run_id_and_another_tick_another() {
        let s = schedule("*/10 * * * * *", None);
        let tick = at("2026-11-30T00:00:10Z");
        assert_eq!(s.run_id(tick), s.run_id(tick));
        assert_ne!(s.run_id(tick), s.run_id(at("2026-11-30T00:00:20Z")));
        assert_eq!(s.tick_key(tick), "nightly@2026-11-30T00:00:10Z");
        assert_eq!(s.next_after(tick), Some(at("2026-11-30T00:00:20Z")));
    }

    #[test]
    fn bad_patterns_zones_and_names_are_named() {
        let bad = |cron: &str, zone: Option<&str>, name: &str| parse(cron, zone, name).unwrap_err();
        assert!(bad("61 * * * *", None, "n").contains("schedule `n`: cron `61 * * * *`"));
        assert!(bad("* * * * *", Some("Mars/Olympus"), "n").contains("timezone `Mars/Olympus`"));
        assert!(bad("* * * * *", None, "a b").contains("name it"));
    }
}
