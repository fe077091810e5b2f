//! Next-run computation, table-tested: 5-field syntax, @-forms, the seconds form, time zones, and
//! the daylight saving gaps and overlaps.

use chrono::{DateTime, Utc};
use pgkeep_core::Zone;
use pgkeep_scheduler::Schedule;

fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}

fn zone(name: &str) -> Zone {
    Zone::parse(name).unwrap()
}

/// The next `n` runs after `from`, shown in the zone with the offset.
fn next(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
    let z = zone(tz);
    Schedule::parse(expr, z)
        .unwrap_or_else(|e| panic!("{expr}: {e}"))
        .upcoming(utc(from), n)
        .into_iter()
        .map(|t| z.show(t))
        .collect()
}

#[test]
fn crontab_fields_match_as_cron_reads_them() {
    // 2026-12-02 is a Wednesday.
    let from = "2026-12-02T10:07:00Z";
    let table: &[(&str, &[&str])] = &[
        (
            "* * * * *",
            &["2026-12-02 10:08:00 +00:00", "2026-12-02 10:09:00 +00:00"],
        ),
        (
            "30 2 * * *",
            &["2026-12-03 02:30:00 +00:00", "2026-12-04 02:30:00 +00:00"],
        ),
        (
            "0 3 * * 1",
            &["2026-12-07 03:00:00 +00:00", "2026-12-14 03:00:00 +00:00"],
        ),
        (
            "0 3 * * 0",
            &["2026-12-06 03:00:00 +00:00", "2026-12-13 03:00:00 +00:00"],
        ),
        (
            "0 3 * * 7",
            &["2026-12-06 03:00:00 +00:00", "2026-12-13 03:00:00 +00:00"],
        ),
        (
            "0 3 * * sun",
            &["2026-12-06 03:00:00 +00:00", "2026-12-13 03:00:00 +00:00"],
        ),
        (
            "0 9 * * 1-5",
            &[
                "2026-12-03 09:00:00 +00:00",
                "2026-12-04 09:00:00 +00:00",
                "2026-12-07 09:00:00 +00:00",
            ],
        ),
        (
            "0 9 * * MON-FRI",
            &[
                "2026-12-03 09:00:00 +00:00",
                "2026-12-04 09:00:00 +00:00",
                "2026-12-07 09:00:00 +00:00",
            ],
        ),
        (
            "*/20 * * * *",
            &[
                "2026-12-02 10:20:00 +00:00",
                "2026-12-02 10:40:00 +00:00",
                "2026-12-02 11:00:00 +00:00",
            ],
        ),
        (
            "5,35 1-2 * * *",
            &[
                "2026-12-03 01:05:00 +00:00",
                "2026-12-03 01:35:00 +00:00",
                "2026-12-03 02:05:00 +00:00",
            ],
        ),
        // Both day fields restricted: either one matches (the 4th is a Friday, then the 11th).
        (
            "0 0 1,15 * 5",
            &[
                "2026-12-04 00:00:00 +00:00",
                "2026-12-11 00:00:00 +00:00",
                "2026-12-15 00:00:00 +00:00",
            ],
        ),
        (
            "0 0 1 jan *",
            &["2027-01-01 00:00:00 +00:00", "2028-01-01 00:00:00 +00:00"],
        ),
        ("0 0 29 2 *", &["2028-02-29 00:00:00 +00:00"]),
        (
            "@hourly",
            &["2026-12-02 11:00:00 +00:00", "2026-12-02 12:00:00 +00:00"],
        ),
        (
            "@daily",
            &["2026-12-03 00:00:00 +00:00", "2026-12-04 00:00:00 +00:00"],
        ),
        ("@midnight", &["2026-12-03 00:00:00 +00:00"]),
        (
            "@weekly",
            &["2026-12-06 00:00:00 +00:00", "2026-12-13 00:00:00 +00:00"],
        ),
        (
            "@monthly",
            &["2027-01-01 00:00:00 +00:00", "2027-02-01 00:00:00 +00:00"],
        ),
        ("@yearly", &["2027-01-01 00:00:00 +00:00"]),
        (
            "*/20 * * * * *",
            &[
                "2026-12-02 10:07:20 +00:00",
                "2026-12-02 10:07:40 +00:00",
                "2026-12-02 10:08:00 +00:00",
            ],
        ),
    ];
    for (expr, want) in table {
        assert_eq!(next(expr, "UTC", from, want.len()), *want, "{expr}");
    }
}

#[test]
fn times_are_read_in_the_jobs_zone() {
    let from = "2026-12-02T10:07:00Z";
    assert_eq!(
        next("30 2 * * *", "Europe/Belgrade", from, 1),
        ["2026-12-03 02:30:00 +01:00"]
    );
    assert_eq!(
        next("30 2 * * *", "America/New_York", from, 1),
        ["2026-12-03 02:30:00 -05:00"]
    );
    assert_eq!(
        next("0 9 * * 1", "Asia/Kolkata", from, 1),
        ["2026-12-07 09:00:00 +05:30"]
    );
}

#[test]
fn the_spring_forward_day_runs_a_skipped_time_once_just_after_the_gap() {
    // Europe/Belgrade 2026-03-29: 02:00 CET jumps to 03:00 CEST.
    let from = "2026-03-28T12:00:00Z";
    assert_eq!(
        next("30 2 * * *", "Europe/Belgrade", from, 3),
        [
            "2026-03-29 03:00:00 +02:00",
            "2026-03-30 02:30:00 +02:00",
            "2026-03-31 02:30:00 +02:00"
        ]
    );
    // Hourly: 02:00 does not exist; 03:00 runs once, not twice.
    assert_eq!(
        next("0 * * * *", "Europe/Belgrade", "2026-03-29T00:30:00Z", 3),
        [
            "2026-03-29 03:00:00 +02:00",
            "2026-03-29 04:00:00 +02:00",
            "2026-03-29 05:00:00 +02:00"
        ]
    );
    // America/New_York 2026-03-08 02:00 EST jumps to 03:00 EDT.
    assert_eq!(
        next("15 2 * * *", "America/New_York", "2026-03-07T12:00:00Z", 2),
        ["2026-03-08 03:00:00 -04:00", "2026-03-09 02:15:00 -04:00"]
    );
    // Lord Howe shifts by 30 minutes: 02:00 +10:30 jumps to 02:30 +11:00 on 2026-10-04.
    assert_eq!(
        next(
            "10 2 * * *",
            "Australia/Lord_Howe",
            "2026-10-03T00:00:00Z",
            2
        ),
        ["2026-10-04 02:30:00 +11:00", "2026-10-05 02:10:00 +11:00"]
    );
}

#[test]
fn the_fall_back_day_runs_a_repeated_time_once_but_every_hour_schedules_in_both_hours() {
    // Europe/Belgrade 2026-10-25: 03:00 CEST falls back to 02:00 CET; 02:30 happens twice.
    let from = "2026-10-24T12:00:00Z";
    assert_eq!(
        next("30 2 * * *", "Europe/Belgrade", from, 2),
        ["2026-10-25 02:30:00 +02:00", "2026-10-26 02:30:00 +01:00"]
    );
    assert_eq!(
        next("*/30 * * * *", "Europe/Belgrade", "2026-10-24T23:45:00Z", 4),
        [
            "2026-10-25 02:00:00 +02:00",
            "2026-10-25 02:30:00 +02:00",
            "2026-10-25 02:00:00 +01:00",
            "2026-10-25 02:30:00 +01:00",
        ]
    );
    // From inside the repeated hour's second pass, a daily 02:30 waits for the next day.
    assert_eq!(
        next("30 2 * * *", "Europe/Belgrade", "2026-10-25T01:10:00Z", 1),
        ["2026-10-26 02:30:00 +01:00"]
    );
}

#[test]
fn a_per_second_schedule_catches_up_six_hours_quickly() {
    let s = Schedule::parse("*/2 * * * * *", zone("Europe/Belgrade")).unwrap();
    let started = std::time::Instant::now();
    let now = utc("2026-12-02T10:00:01Z");
    let slot = s.latest_between(now - chrono::TimeDelta::hours(6), now);
    assert_eq!(slot, Some(utc("2026-12-02T10:00:00Z")));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn latest_between_finds_the_missed_slot() {
    let s = Schedule::parse("30 2 * * *", zone("UTC")).unwrap();
    let slot = s.latest_between(utc("2026-12-02T00:00:00Z"), utc("2026-12-02T10:00:00Z"));
    assert_eq!(slot, Some(utc("2026-12-02T02:30:00Z")));
    assert_eq!(
        s.latest_between(utc("2026-12-02T03:00:00Z"), utc("2026-12-02T10:00:00Z")),
        None
    );
    // Many missed slots: only the newest.
    let hourly = Schedule::parse("@hourly", zone("UTC")).unwrap();
    let slot = hourly.latest_between(utc("2026-12-01T00:00:00Z"), utc("2026-12-02T10:30:00Z"));
    assert_eq!(slot, Some(utc("2026-12-02T10:00:00Z")));
}

#[test]
fn bad_expressions_name_the_problem_and_the_fix() {
    let cases = [
        ("", "0 field(s)"),
        ("30 2 * *", "4 field(s)"),
        ("1 2 3 4 5 6 7", "7 field(s)"),
        ("61 2 * * *", "61 is out of range for the minute"),
        ("0 24 * * *", "24 is out of range for the hour"),
        ("0 0 0 * *", "0 is out of range for the day-of-month"),
        ("0 0 * 13 *", "13 is out of range for the month"),
        ("0 0 * * 8", "8 is out of range for the day-of-week"),
        ("0 0 * * funday", "`funday` is not a day-of-week value"),
        ("*/0 * * * *", "no usable step"),
        ("0 5-2 * * *", "runs backwards"),
        ("@fortnightly", "not a schedule pgkeep knows"),
        ("0 0 30 2 *", "never comes"),
    ];
    for (expr, problem) in cases {
        let e = Schedule::parse(expr, Zone::Local).unwrap_err().to_string();
        assert!(e.contains(problem), "{expr:?}: {e}");
        assert!(e.contains("fix: "), "{expr:?}: {e}");
    }
}
