//! Durations as the configuration and the flags write them: `45s`, `30m`, `6h`, `14d`, `2w`, or
//! several together (`1d12h`).

use std::time::Duration;

use super::InvalidValue;

/// The units, largest first, with their length in seconds.
const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

/// The longest duration [`parse_duration`] reads: 36500 days (about a century). Anything longer
/// is refused, so that no caller adding it to a date can overflow.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses a duration: one or more `<number><unit>` with the units `s`, `m`, `h`, `d` (24 hours)
/// and `w` (7 days), e.g. `30m`, `6h`, `14d`, `2w`, `1d12h`, `0s`; at most 36500 days
/// (`999999999999w` is refused, never overflows).
///
/// ```
/// use std::time::Duration;
///
/// assert_eq!(pgkeep_core::parse_duration("1d12h")?, Duration::from_secs(36 * 3600));
/// assert!(pgkeep_core::parse_duration("14").is_err());
/// # Ok::<(), pgkeep_core::InvalidValue>(())
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, InvalidValue> {
    let bad = |why: &str| {
        InvalidValue::new(
            format!("`{text}` is not a duration: {why}"),
            "write a number and a unit: s, m, h, d or w (e.g. 30m, 6h, 14d, 2w, or 1d12h)",
        )
    };
    let text_trimmed = text.trim();
    if text_trimmed.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text_trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let Some(&(_, seconds)) = UNITS.iter().find(|(u, _)| *u == c) else {
            return Err(bad(&format!("`{c}` is not a unit")));
        };
        if digits.is_empty() {
            return Err(bad(&format!("a number must come before `{c}`")));
        }
        // Only digits: a number that does not parse is too long.
        let n: u64 = digits.parse().unwrap_or(u64::MAX);
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .filter(|&s| s <= MAX_DURATION.as_secs())
            .ok_or_else(|| bad("it is longer than 36500d, the longest duration pgkeep reads"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(bad(&format!("`{digits}` has no unit")));
    }
    Ok(Duration::from_secs(total))
}

/// A duration as [`parse_duration`] reads it, in days and smaller units (`14d`, `1d12h`, `0s`).
pub fn format_duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    if left == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    // Days at most: `14d` reads the same whether the operator wrote `14d` or `2w`.
    for (unit, seconds) in UNITS.into_iter().skip(1) {
        if left >= seconds {
            out.push_str(&format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print() {
        for (text, secs) in [
            ("30m", 1800),
            ("6h", 21_600),
            ("14d", 14 * 86_400),
            ("2w", 14 * 86_400),
            ("1d12h", 36 * 3600),
            ("0s", 0),
            (" 90s ", 90),
        ] {
            assert_eq!(parse_duration(text).unwrap().as_secs(), secs, "{text}");
        }
        assert_eq!(parse_duration("36500d").unwrap(), MAX_DURATION);
        for too_long in [
            "999999999999w",
            "36501d",
            "36500d1s",
            "99999999999999999999999s",
        ] {
            let e = parse_duration(too_long).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{too_long}: {e}");
        }
        let e = parse_duration("999999999999w").unwrap_err().to_string();
        assert!(e.contains("longer than 36500d"), "{e}");
        for bad in ["", "14", "h", "3x", "1.5h", "-1d", "99999999999999999w"] {
            let e = parse_duration(bad).unwrap_err().to_string();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
            assert!(e.contains("fix: write a number and a unit"), "{bad}: {e}");
        }
        assert_eq!(format_duration(Duration::from_secs(14 * 86_400)), "14d");
        assert_eq!(format_duration(Duration::from_secs(36 * 3600)), "1d12h");
        assert_eq!(format_duration(Duration::from_secs(21_600)), "6h");
        assert_eq!(format_duration(Duration::ZERO), "0s");
    }
}
