//! Which leftovers of interrupted runs `expire` removes: those older than the grace period that
//! no live lease covers. A running backup's directory (a leftover until its manifest is written)
//! is covered by its lease, whatever the grace. Unfinished writes (local staging files, S3
//! multipart uploads) also stay while younger than [`UNFINISHED_MIN_AGE`], whatever the grace:
//! a wal-push writing now, which holds no lease, looks just like a killed one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::repo::lease::HeldLease;
use crate::repo::scan::{Leftover, LeftoverKind};

/// Unfinished writes younger than this are never removed.
pub const UNFINISHED_MIN_AGE: Duration = Duration::from_secs(600);

/// What `expire` does with a leftover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum LeftoverAction {
    /// Removed: older than the grace period, and no lease covers it.
    Remove,
    /// Left alone: written too recently.
    Young {
        /// When it becomes old enough.
        removable_after: DateTime<Utc>,
    },
    /// Left alone: a running backup's lease covers its directory.
    Leased {
        /// The lease.
        lease: HeldLease,
    },
    /// Left alone: the storage does not say when it was written.
    AgeUnknown,
}

/// A leftover and what `expire` does with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedLeftover {
    /// The leftover.
    #[serde(flatten)]
    pub leftover: Leftover,
    /// What is done with it.
    #[serde(flatten)]
    pub action: LeftoverAction,
}

/// The backup id a leftover under `backups_prefix` (`<cluster>/backups/`) belongs to.
fn backup_id<'a>(leftover: &'a Leftover, backups_prefix: &str) -> Option<&'a str> {
    leftover
        .prefix
        .strip_prefix(backups_prefix)
        .and_then(|rest| rest.split('/').next())
        .filter(|id| !id.is_empty())
}

/// Decides each leftover's fate at `now` with `grace`, given the live leases.
pub(crate) fn plan_leftovers(
    leftovers: &[Leftover],
    live: &[HeldLease],
    backups_prefix: &str,
    grace: Duration,
    now: DateTime<Utc>,
) -> Vec<PlannedLeftover> {
    leftovers
        .iter()
        .map(|leftover| {
            let covering = backup_id(leftover, backups_prefix)
                .and_then(|id| live.iter().find(|l| l.lease.covers(id)));
            let grace = match leftover.kind {
                LeftoverKind::Staging => grace.max(UNFINISHED_MIN_AGE),
                LeftoverKind::Incomplete | LeftoverKind::Unlisted => grace,
            };
            let removable_after = |modified: DateTime<Utc>| {
                chrono::Duration::from_std(grace)
                    .ok()
                    .and_then(|grace| modified.checked_add_signed(grace))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC)
            };
            let action = match (covering, leftover.modified.map(removable_after)) {
                (Some(lease), _) => LeftoverAction::Leased {
                    lease: lease.clone(),
                },
                (None, None) => LeftoverAction::AgeUnknown,
                (None, Some(after)) if after > now => LeftoverAction::Young {
                    removable_after: after,
                },
                (None, Some(_)) => LeftoverAction::Remove,
            };
            PlannedLeftover {
                leftover: leftover.clone(),
                action,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::lease::{Lease, LeasePurpose};

    #[test]
    fn leftovers_go_when_old_and_unleased() {
        let now = DateTime::parse_from_rfc3339("2026-11-25T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let hours = |h: i64| now - chrono::Duration::hours(h);
        let leftover = |kind, prefix: &str, modified| Leftover {
            kind,
            prefix: prefix.into(),
            keys: vec![format!("{prefix}x")],
            bytes: 1,
            modified,
        };
        let leftovers = [
            leftover(LeftoverKind::Incomplete, "main/backups/A/", Some(hours(7))),
            leftover(LeftoverKind::Incomplete, "main/backups/B/", Some(hours(5))),
            leftover(LeftoverKind::Incomplete, "main/backups/C/", Some(hours(9))),
            leftover(LeftoverKind::Staging, "main/wal/00000001/", Some(now)),
            leftover(LeftoverKind::Unlisted, "main/backups/D/", None),
        ];
        let live = [HeldLease {
            key: "main/leases/1.json".into(),
            lease: Lease {
                purpose: LeasePurpose::BackupPhysical,
                backup: Some("C".into()),
                host: "h".into(),
                pid: 1,
                started_at: hours(10),
                renewed_at: now,
                expires_at: now + chrono::Duration::minutes(10),
            },
        }];
        let six_hours = Duration::from_secs(6 * 3600);
        let planned = plan_leftovers(&leftovers, &live, "main/backups/", six_hours, now);
        let actions: Vec<&str> = planned
            .iter()
            .map(|p| match p.action {
                LeftoverAction::Remove => "remove",
                LeftoverAction::Young { .. } => "young",
                LeftoverAction::Leased { .. } => "leased",
                LeftoverAction::AgeUnknown => "unknown",
            })
            .collect();
        assert_eq!(actions, ["remove", "young", "leased", "young", "unknown"]);
        // With no grace, the leased one and the unfinished write stay all the same.
        let planned = plan_leftovers(&leftovers, &live, "main/backups/", Duration::ZERO, now);
        assert_eq!(planned[1].action, LeftoverAction::Remove);
        assert!(matches!(planned[2].action, LeftoverAction::Leased { .. }));
        assert!(matches!(planned[3].action, LeftoverAction::Young { .. }));
    }
}
