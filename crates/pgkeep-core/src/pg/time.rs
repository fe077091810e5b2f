//! Points in time as operators write them: RFC 3339 (`2026-11-25T15:04:30+01:00`), PostgreSQL's
//! timestamptz text as psql and the server log print it (`2026-11-25 15:04:30.123456+01`), and
//! `YYYY-MM-DD HH:MM[:SS]` in the local time zone (`TZ`, else /etc/localtime).

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};

use super::Zone;

/// A time that cannot be read; the message says which forms are accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimeError {
    /// The text matches none of the accepted forms.
    #[error(
        "`{text}` is not a time pgkeep understands: write `2026-11-25 15:04:30` (local time), \
         `2026-11-25 15:04:30+01` (as psql prints it) or `2026-11-25T14:04:30Z` (RFC 3339)"
    )]
    Unknown {
        /// The text given.
        text: String,
    },
    /// A local time that happens twice (the hour a daylight saving change repeats).
    #[error(
        "`{text}` happens twice in the local time zone (a daylight saving change): \
         add the offset, e.g. `{first}` or `{second}`"
    )]
    Ambiguous {
        /// The text given.
        text: String,
        /// The earlier reading, with its offset.
        first: String,
        /// The later reading, with its offset.
        second: String,
    },
    /// A local time that does not exist (skipped by a daylight saving change).
    #[error(
        "`{text}` does not exist in the local time zone (a daylight saving gap): add the offset"
    )]
    Skipped {
        /// The text given.
        text: String,
    },
}

/// Parses a point in time, reading a time without an offset in the machine's zone; the error
/// says which forms are accepted.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, TimeError> {
    parse_time_in(text, Zone::Local)
}

/// Parses a point in time, reading a time without an offset in `zone` (the configuration's
/// `timezone`); the error says which forms are accepted.
pub fn parse_time_in(text: &str, zone: Zone) -> Result<DateTime<Utc>, TimeError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%d %H:%M:%S%.f%#z",
        "%Y-%m-%dT%H:%M:%S%.f%#z",
        "%Y-%m-%d %H:%M%#z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(text, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    if let Some(naive) = text.strip_suffix(" UTC").or_else(|| text.strip_suffix('Z'))
        && let Some(t) = parse_naive(naive)
    {
        return Ok(Utc.from_utc_datetime(&t));
    }
    if let Some(naive) = parse_naive(text) {
        return match zone.instants(&naive) {
            chrono::LocalResult::Single(t) => Ok(t),
            chrono::LocalResult::Ambiguous(a, b) => Err(TimeError::Ambiguous {
                text: text.to_string(),
                first: zone.show(a),
                second: zone.show(b),
            }),
            chrono::LocalResult::None => Err(TimeError::Skipped {
                text: text.to_string(),
            }),
        };
    }
    Err(TimeError::Unknown {
        text: text.to_string(),
    })
}

/// `t` as messages show it: `2026-11-25 14:04:30.123 UTC`.
pub(crate) fn utc_millis(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.3f UTC").to_string()
}

/// `t` as PITR plans, windows and messages show it: to the microsecond, in a form `--at` reads
/// back (`2026-11-25 14:04:30.123456 UTC`).
pub(crate) fn utc_micros(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string()
}

fn parse_naive(text: &str) -> Option<NaiveDateTime> {
    [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M:%S%.f",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let utc = |s: &str| parse_time(s).unwrap().to_rfc3339();
        assert_eq!(
            utc("2026-11-25T15:04:30+01:00"),
            "2026-11-25T14:04:30+00:00"
        );
        assert_eq!(
            utc("2026-11-25 15:04:30.123456+01"),
            "2026-11-25T14:04:30.123456+00:00"
        );
        assert_eq!(
            utc("2026-11-25 15:04:30+05:30"),
            "2026-11-25T09:34:30+00:00"
        );
        assert_eq!(utc("2026-11-25 15:04:30 UTC"), "2026-11-25T15:04:30+00:00");
        assert_eq!(utc("2026-11-25T15:04:30Z"), "2026-11-25T15:04:30+00:00");
        assert!(parse_time("2026-11-25 15:04").is_ok());
        assert!(parse_time("2026-11-25 15:04:30").is_ok());
        let t = parse_time("2026-11-25 15:04:30.123456+01").unwrap();
        assert_eq!(utc_micros(&t), "2026-11-25 14:04:30.123456 UTC");
        assert_eq!(parse_time(&utc_micros(&t)), Ok(t));
        let e = parse_time("yesterday").unwrap_err().to_string();
        assert!(e.contains("2026-11-25 15:04:30"), "{e}");
    }
}
