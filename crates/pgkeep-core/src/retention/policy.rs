//! The retention policy as a pure function: backups with known end times in, the reasons each one
//! is kept out ([`apply_policy`]); a backup no rule keeps expires.
//!
//! The rules (docs/cli.md, `[retention]`):
//! - Backups are ordered by end time, then start LSN — never by id, name or timeline. A logical
//!   backup ends at `finished_at`; a physical one at `physical.stop_time`, the end of its base
//!   backup, which is also where the recoverable window begins.
//! - A backup belongs to one or more *series*, the backups that replace each other: a physical
//!   backup to the cluster's; a logical one to one series per database it holds, and to the
//!   globals' when it holds them. `backup logical --db a` and `--db b` are different series, so
//!   `keep-last 1` keeps the newest backup of `a` even when `b` was backed up later. Every rule
//!   counts within each series, and a backup that any series keeps is kept.
//! - `keep-last N`: the N newest. `keep-daily`/`keep-weekly`/`keep-monthly N`: for each of the N
//!   most recent days / ISO weeks / months (in the configured time zone) that hold a backup, its
//!   newest. `keep-within D`: every backup that ended within D of now; for physical backups also
//!   the newest that ended before that, which a point-in-time restore into the start of the window
//!   needs ("needed by the window").
//! - Pinned backups are kept, the newest backup of the kind is kept, and then the newest
//!   not-yet-kept backups of each series are kept until it has `min-keep` kept.
//! - Without a policy for the kind, every backup of it is kept.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::pin::Pin;
use super::reason::{KeepReason, Series};
use crate::pg::Lsn;
use crate::repo::catalog::BackupKind;
use crate::settings::{RetentionPolicy, Zone};

/// What the policy knows of one backup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyBackup {
    /// The backup id.
    pub id: String,
    /// When it ended (see the module docs).
    pub end: DateTime<Utc>,
    /// Where a physical backup starts in the WAL (breaks ties of `end`).
    pub start_lsn: Option<Lsn>,
    /// The series it belongs to; none counts as the cluster's.
    pub series: Vec<Series>,
    /// Its pin, if it is pinned.
    pub pin: Option<Pin>,
}

/// Applies `policy` (`None`: none configured) to `backups`, all of one `kind`, at `now`, with
/// days, weeks and months counted in `zone`. Returns, for each backup in the order given, why it
/// is kept; an empty list means it expires. Pure: the same input gives the same answer.
pub fn apply_policy(
    policy: Option<&RetentionPolicy>,
    kind: BackupKind,
    backups: &[PolicyBackup],
    zone: Zone,
    now: DateTime<Utc>,
) -> Vec<Vec<KeepReason>> {
    let mut reasons: Vec<Vec<KeepReason>> = vec![Vec::new(); backups.len()];
    // Newest first, by end time and then start LSN. The sort is stable: exact ties keep the
    // order given.
    let mut order: Vec<usize> = (0..backups.len()).collect();
    order.sort_by(|&a, &b| {
        (backups[b].end, backups[b].start_lsn).cmp(&(backups[a].end, backups[a].start_lsn))
    });
    let Some(policy) = policy else {
        for (i, backup) in backups.iter().enumerate() {
            reasons[i].push(KeepReason::NoPolicy { kind });
            reasons[i].extend(pinned(backup));
        }
        return reasons;
    };
    for (i, backup) in backups.iter().enumerate() {
        reasons[i].extend(pinned(backup));
    }
    if let Some(&newest) = order.first() {
        reasons[newest].push(KeepReason::Newest);
    }
    let series_of = |b: &PolicyBackup| match b.series.is_empty() {
        true => vec![Series::Cluster],
        false => b.series.clone(),
    };
    let all: BTreeSet<Series> = backups.iter().flat_map(series_of).collect();
    for series in all {
        let members: Vec<usize> = order
            .iter()
            .copied()
            .filter(|&i| series_of(&backups[i]).contains(&series))
            .collect();
        let series_rules = SeriesRules {
            policy,
            kind,
            backups,
            members: &members,
            series: &series,
            zone,
            now,
        };
        series_rules.apply(&mut reasons);
    }
    reasons
}

fn pinned(backup: &PolicyBackup) -> Option<KeepReason> {
    backup.pin.as_ref().map(|pin| KeepReason::Pinned {
        reason: pin.reason.clone(),
    })
}

/// The rules applied within one series.
struct SeriesRules<'a> {
    policy: &'a RetentionPolicy,
    kind: BackupKind,
    backups: &'a [PolicyBackup],
    /// The series' backups, newest first.
    members: &'a [usize],
    series: &'a Series,
    zone: Zone,
    now: DateTime<Utc>,
}

impl SeriesRules<'_> {
    fn apply(&self, reasons: &mut [Vec<KeepReason>]) {
        let p = self.policy;
        let s = || self.series.clone();
        for (rank, &i) in self.members.iter().take(p.keep_last as usize).enumerate() {
            reasons[i].push(KeepReason::Last {
                n: rank as u32 + 1,
                of: s(),
            });
        }
        self.periods(reasons, p.keep_daily, |day| KeepReason::Daily {
            day,
            of: s(),
        });
        self.periods(reasons, p.keep_weekly, |day| {
            let week = day.iso_week();
            KeepReason::Weekly {
                week: format!("{}-W{:02}", week.year(), week.week()),
                of: s(),
            }
        });
        self.periods(reasons, p.keep_monthly, |day| KeepReason::Monthly {
            month: day.format("%Y-%m").to_string(),
            of: s(),
        });
        if let Some(within) = p.keep_within {
            self.within(reasons, within);
        }
        let mut kept = self
            .members
            .iter()
            .filter(|&&i| !reasons[i].is_empty())
            .count();
        for &i in self.members {
            if kept >= p.min_keep as usize {
                break;
            }
            if reasons[i].is_empty() {
                reasons[i].push(KeepReason::MinKeep { of: s() });
                kept += 1;
            }
        }
    }

    /// For each of the `count` most recent periods (days, weeks or months: `reason` of the
    /// backup's local day names its period) that hold a backup, keeps the newest of it.
    fn periods(
        &self,
        reasons: &mut [Vec<KeepReason>],
        count: u32,
        reason: impl Fn(NaiveDate) -> KeepReason,
    ) {
        let mut seen: Vec<KeepReason> = Vec::new();
        for &i in self.members {
            if seen.len() >= count as usize {
                break;
            }
            let this = reason(self.zone.date_of(self.backups[i].end));
            if !seen.contains(&this) {
                seen.push(this.clone());
                reasons[i].push(this);
            }
        }
    }

    /// `keep-within`, and for physical backups the one the window's start needs.
    fn within(&self, reasons: &mut [Vec<KeepReason>], within: Duration) {
        let cutoff = chrono::Duration::from_std(within)
            .ok()
            .and_then(|within| self.now.checked_sub_signed(within))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        for &i in self.members {
            if self.backups[i].end >= cutoff {
                reasons[i].push(KeepReason::Within {
                    within,
                    of: self.series.clone(),
                });
            }
        }
        let starts_the_window = self
            .members
            .iter()
            .copied()
            .find(|&i| self.backups[i].end <= cutoff);
        if self.kind == BackupKind::Physical
            && let Some(i) = starts_the_window
            && self.backups[i].end < cutoff
        {
            reasons[i].push(KeepReason::NeededByWindow { within });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn belgrade() -> Zone {
        Zone::Named(chrono_tz::Europe::Belgrade)
    }

    /// One backup of a case: id, end time, series (`a`, `b`: databases; `g`: globals; empty:
    /// the cluster), pinned.
    type Spec = (&'static str, &'static str, &'static [&'static str], bool);

    struct Case {
        name: &'static str,
        policy: Option<RetentionPolicy>,
        kind: BackupKind,
        zone: Zone,
        now: &'static str,
        backups: &'static [Spec],
        /// The ids kept, each with the reasons as shown.
        kept: &'static [(&'static str, &'static [&'static str])],
    }

    fn policy(f: impl FnOnce(&mut RetentionPolicy)) -> Option<RetentionPolicy> {
        let mut p = RetentionPolicy::default();
        f(&mut p);
        Some(p)
    }

    fn backups(specs: &[Spec]) -> Vec<PolicyBackup> {
        specs
            .iter()
            .map(|(id, end, series, pinned)| PolicyBackup {
                id: id.to_string(),
                end: at(end),
                start_lsn: None,
                series: series
                    .iter()
                    .map(|s| match *s {
                        "g" => Series::Globals,
                        db => Series::Database(db.to_string()),
                    })
                    .collect(),
                pin: pinned.then(|| Pin {
                    pinned_at: at(end),
                    reason: None,
                }),
            })
            .collect()
    }

    fn run(case: &Case) {
        let input = backups(case.backups);
        let reasons = apply_policy(
            case.policy.as_ref(),
            case.kind,
            &input,
            case.zone,
            at(case.now),
        );
        let kept: Vec<(&str, Vec<String>)> = input
            .iter()
            .zip(&reasons)
            .filter(|(_, r)| !r.is_empty())
            .map(|(b, r)| (b.id.as_str(), r.iter().map(ToString::to_string).collect()))
            .collect();
        let expected: Vec<(&str, Vec<String>)> = case
            .kept
            .iter()
            .map(|(id, r)| (*id, r.iter().map(ToString::to_string).collect()))
            .collect();
        assert_eq!(kept, expected, "case {}", case.name);
    }

    /// The calendar rules (daily, ISO weekly, monthly) in Europe/Belgrade, across both daylight
    /// saving changes of 2026.
    #[test]
    fn calendar_rules_count_in_the_configured_time_zone_across_daylight_saving() {
        let physical = BackupKind::Physical;
        let cases = [
            Case {
                // 2026-03-29 02:00 CET becomes 03:00 CEST. In UTC the newest two days would be
                // 03-29 (D) and 03-28 (A, 23:30Z); in Belgrade D is on 03-30 and A on 03-29.
                name: "keep-daily across the spring daylight saving change",
                policy: policy(|p| p.keep_daily = 2),
                kind: physical,
                zone: belgrade(),
                now: "2026-04-01T00:00:00Z",
                backups: &[
                    ("E", "2026-03-28T22:30:00Z", &[], false), // 03-28 23:30 CET
                    ("A", "2026-03-28T23:30:00Z", &[], false), // 03-29 00:30 CET
                    ("B", "2026-03-29T00:30:00Z", &[], false), // 03-29 01:30 CET
                    ("C", "2026-03-29T01:30:00Z", &[], false), // 03-29 03:30 CEST
                    ("D", "2026-03-29T22:30:00Z", &[], false), // 03-30 00:30 CEST
                ],
                kept: &[
                    ("C", &["keep-daily 2026-03-29"]),
                    ("D", &["newest", "keep-daily 2026-03-30"]),
                ],
            },
            Case {
                // 2026-10-25 03:00 CEST becomes 02:00 CET: 02:30 happens twice (F, then G).
                name: "keep-daily and keep-last across the autumn repeated hour",
                policy: policy(|p| p.keep_daily = 3),
                kind: physical,
                zone: belgrade(),
                now: "2026-11-01T00:00:00Z",
                backups: &[
                    ("I", "2026-10-24T21:30:00Z", &[], false), // 10-24 23:30 CEST
                    ("H", "2026-10-24T22:30:00Z", &[], false), // 10-25 00:30 CEST
                    ("F", "2026-10-25T00:30:00Z", &[], false), // 10-25 02:30 CEST
                    ("G", "2026-10-25T01:30:00Z", &[], false), // 10-25 02:30 CET
                    ("J", "2026-10-25T22:30:00Z", &[], false), // 10-25 23:30 CET
                    ("K", "2026-10-25T23:30:00Z", &[], false), // 10-26 00:30 CET
                ],
                kept: &[
                    ("I", &["keep-daily 2026-10-24"]),
                    ("J", &["keep-daily 2026-10-25"]),
                    ("K", &["newest", "keep-daily 2026-10-26"]),
                ],
            },
            Case {
                name: "the repeated hour orders by instant, not by wall clock",
                policy: policy(|p| p.keep_last = 1),
                kind: physical,
                zone: belgrade(),
                now: "2026-11-01T00:00:00Z",
                backups: &[
                    ("G", "2026-10-25T01:30:00Z", &[], false), // 02:30 CET, the later
                    ("F", "2026-10-25T00:30:00Z", &[], false), // 02:30 CEST
                ],
                kept: &[("G", &["newest", "keep-last 1"])],
            },
            Case {
                // 2026 has 53 ISO weeks; 2027-01-03 (a Sunday) is still in 2026-W53.
                name: "keep-weekly by ISO week, and keep-monthly",
                policy: policy(|p| {
                    p.keep_weekly = 2;
                    p.keep_monthly = 3;
                }),
                kind: physical,
                zone: belgrade(),
                now: "2027-02-01T00:00:00Z",
                backups: &[
                    ("n1", "2026-11-10T12:00:00Z", &[], false),
                    ("n2", "2026-11-20T12:00:00Z", &[], false),
                    ("d1", "2026-12-28T12:00:00Z", &[], false),
                    ("w53", "2027-01-03T12:00:00Z", &[], false),
                    ("w01", "2027-01-04T12:00:00Z", &[], false),
                ],
                kept: &[
                    ("n2", &["keep-monthly 2026-11"]),
                    ("d1", &["keep-monthly 2026-12"]),
                    ("w53", &["keep-weekly 2026-W53"]),
                    (
                        "w01",
                        &["newest", "keep-weekly 2027-W01", "keep-monthly 2027-01"],
                    ),
                ],
            },
        ];
        for case in &cases {
            run(case);
        }
    }

    /// keep-last counts by end time, whatever the ids say.
    #[test]
    fn keep_last_orders_by_end_time_not_by_id() {
        let physical = BackupKind::Physical;
        let cases = [Case {
            name: "keep-last, ids ordered against the end times",
            policy: policy(|p| p.keep_last = 2),
            kind: physical,
            zone: Zone::Named(chrono_tz::UTC),
            now: "2026-11-30T00:00:00Z",
            backups: &[
                ("d", "2026-11-01T00:00:00Z", &[], false),
                ("c", "2026-11-02T00:00:00Z", &[], false),
                ("b", "2026-11-03T00:00:00Z", &[], false),
                ("a", "2026-11-04T00:00:00Z", &[], false),
            ],
            kept: &[("b", &["keep-last 2"]), ("a", &["newest", "keep-last 1"])],
        }];
        for case in &cases {
            run(case);
        }
    }

    /// Pins, the min-keep floor, the newest, keep-within's window and per-database series.
    #[test]
    fn pins_floors_the_newest_windows_and_series() {
        let (physical, logical) = (BackupKind::Physical, BackupKind::Logical);
        let cases = [
            Case {
                name: "pinned backups stay, min-keep tops up the newest",
                policy: policy(|p| {
                    p.keep_last = 1;
                    p.min_keep = 3;
                }),
                kind: physical,
                zone: belgrade(),
                now: "2026-11-30T00:00:00Z",
                backups: &[
                    ("p", "2026-01-01T00:00:00Z", &[], true),
                    ("x", "2026-11-01T00:00:00Z", &[], false),
                    ("y", "2026-11-02T00:00:00Z", &[], false),
                    ("z", "2026-11-03T00:00:00Z", &[], false),
                ],
                kept: &[
                    ("p", &["pinned"]),
                    ("y", &["min-keep"]),
                    ("z", &["newest", "keep-last 1"]),
                ],
            },
            Case {
                name: "the newest is kept when no rule keeps anything",
                policy: policy(|p| p.keep_within = Some(Duration::from_secs(86_400))),
                kind: logical,
                zone: belgrade(),
                now: "2026-11-30T00:00:00Z",
                backups: &[
                    ("x", "2026-11-01T00:00:00Z", &["a"], false),
                    ("y", "2026-11-02T00:00:00Z", &["a"], false),
                ],
                kept: &[("y", &["newest"])],
            },
            Case {
                name: "keep-within on physical backups keeps the one the window starts from",
                policy: policy(|p| p.keep_within = Some(Duration::from_secs(2 * 86_400))),
                kind: physical,
                zone: belgrade(),
                now: "2026-11-30T00:00:00Z",
                backups: &[
                    ("old", "2026-11-25T00:00:00Z", &[], false),
                    ("start", "2026-11-27T00:00:00Z", &[], false),
                    ("in", "2026-11-29T00:00:00Z", &[], false),
                ],
                kept: &[
                    ("start", &["needed by the window"]),
                    ("in", &["newest", "keep-within 2d"]),
                ],
            },
            Case {
                // keep-last 1 must not expire the only backup of `a` because `b` came later.
                name: "logical series per database and globals",
                policy: policy(|p| p.keep_last = 1),
                kind: logical,
                zone: belgrade(),
                now: "2026-11-30T00:00:00Z",
                backups: &[
                    ("all", "2026-11-01T00:00:00Z", &["g", "a", "b"], false),
                    ("a1", "2026-11-02T00:00:00Z", &["a"], false),
                    ("b1", "2026-11-03T00:00:00Z", &["b"], false),
                    ("b2", "2026-11-04T00:00:00Z", &["b"], false),
                ],
                kept: &[
                    ("all", &["keep-last 1 (globals)"]),
                    ("a1", &["keep-last 1 (database a)"]),
                    ("b2", &["newest", "keep-last 1 (database b)"]),
                ],
            },
            Case {
                name: "no policy: nothing expires",
                policy: None,
                kind: logical,
                zone: belgrade(),
                now: "2026-11-30T00:00:00Z",
                backups: &[
                    ("x", "2026-11-01T00:00:00Z", &["a"], true),
                    ("y", "2026-11-02T00:00:00Z", &["a"], false),
                ],
                kept: &[
                    ("x", &["no [retention.logical] policy", "pinned"]),
                    ("y", &["no [retention.logical] policy"]),
                ],
            },
        ];
        for case in &cases {
            run(case);
        }
    }

    #[test]
    fn equal_end_times_are_ordered_by_start_lsn() {
        let end = at("2026-11-01T00:00:00Z");
        let backup = |id: &str, lsn: u64| PolicyBackup {
            id: id.into(),
            end,
            start_lsn: Some(Lsn(lsn)),
            series: vec![],
            pin: None,
        };
        let policy = RetentionPolicy {
            keep_last: 1,
            ..RetentionPolicy::default()
        };
        let input = [backup("b", 0x300_0000), backup("a", 0x200_0000)];
        let reasons = apply_policy(Some(&policy), BackupKind::Physical, &input, belgrade(), end);
        assert!(
            !reasons[0].is_empty() && reasons[1].is_empty(),
            "{reasons:?}"
        );
        let reversed = [backup("a", 0x300_0000), backup("b", 0x200_0000)];
        let reasons = apply_policy(
            Some(&policy),
            BackupKind::Physical,
            &reversed,
            belgrade(),
            end,
        );
        assert!(
            !reasons[0].is_empty() && reasons[1].is_empty(),
            "{reasons:?}"
        );
    }
}
