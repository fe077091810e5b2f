//! [`Zone`]: the time zone of the top-level `timezone` setting. It reads `--at` times written without
//! an offset, decides where retention's days, weeks and months begin, places scheduled jobs' runs,
//! and shows times in reports.

use std::fmt;

use chrono::{DateTime, Local, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Utc};
use serde::Serialize;

/// A name that is no IANA time zone: what is wrong and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n  fix: {fix}")]
pub struct UnknownZone {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// A time zone: the machine's own, or a named IANA zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Zone {
    /// The local zone of the machine pgkeep runs on (`TZ`, else /etc/localtime).
    #[default]
    Local,
    /// A named IANA zone.
    Named(chrono_tz::Tz),
}

impl Zone {
    /// Reads an IANA name such as `Europe/Belgrade`; the error names the fix.
    pub fn parse(name: &str) -> Result<Zone, UnknownZone> {
        name.parse().map(Zone::Named).map_err(|_| UnknownZone {
            problem: format!("`{name}` is not an IANA time zone name"),
            fix: "write a name such as Europe/Belgrade, America/New_York or UTC (`timedatectl list-timezones` lists them), or leave it out for the local zone".into(),
        })
    }

    /// The calendar day `t` falls on in this zone.
    pub fn date_of(&self, t: DateTime<Utc>) -> NaiveDate {
        self.local(t).date()
    }

    /// `t` as a wall-clock time in this zone.
    pub fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        match self {
            Zone::Local => t.with_timezone(&Local).naive_local(),
            Zone::Named(tz) => t.with_timezone(tz).naive_local(),
        }
    }

    /// The instants a wall-clock time stands for in this zone: one, two (the hour a daylight saving
    /// change repeats) or none (the hour it skips).
    pub fn instants(&self, local: &NaiveDateTime) -> LocalResult<DateTime<Utc>> {
        match self {
            Zone::Local => Local
                .from_local_datetime(local)
                .map(|t| t.with_timezone(&Utc)),
            Zone::Named(tz) => tz.from_local_datetime(local).map(|t| t.with_timezone(&Utc)),
        }
    }

    /// `t` in this zone with its offset, to the second: `2026-11-25 15:04:30 +01:00`.
    pub fn show(&self, t: DateTime<Utc>) -> String {
        const FORMAT: &str = "%Y-%m-%d %H:%M:%S %:z";
        match self {
            Zone::Local => t.with_timezone(&Local).format(FORMAT).to_string(),
            Zone::Named(tz) => t.with_timezone(tz).format(FORMAT).to_string(),
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Zone::Local => f.write_str("local"),
            Zone::Named(tz) => f.write_str(tz.name()),
        }
    }
}

impl Serialize for Zone {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_zones_show_their_offset_and_unknown_names_are_refused() {
        let zone = Zone::parse("Europe/Belgrade").unwrap();
        let t = Utc.with_ymd_and_hms(2026, 7, 1, 10, 0, 0).unwrap();
        assert_eq!(zone.show(t), "2026-07-01 12:00:00 +02:00");
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(zone.instants(&spring), LocalResult::None);
        let e = Zone::parse("Mars/Olympus").unwrap_err().to_string();
        assert!(e.contains("Mars/Olympus") && e.contains("IANA"), "{e}");
    }
}
