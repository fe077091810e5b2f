//! Restores for people: the plan printed before anything is written, and the outcome.

use std::fmt::Write;

use pgkeep_core::{
    DamagedBackup, GlobalsReport, LogicalRestorePlan, LogicalRestoreReport, PhysicalRestorePlan,
    PhysicalRestoreReport, RestoreState, SwitchedWal,
};

use super::{bytes, when, when_micros};

/// What `--switch-wal` did, printed before the plan.
pub fn switched_wal(s: &SwitchedWal) -> String {
    format!(
        "switched WAL on the primary: segment {} archived after {:.1} s\n",
        s.segment, s.seconds
    )
}

/// The backups a restore passed over, one warning line each.
pub fn skipped(damaged: &[DamagedBackup]) -> String {
    damaged
        .iter()
        .map(|d| {
            format!(
                "warning: skipped backup {}: it cannot be used: {} ({})\n",
                d.id, d.problem, d.key
            )
        })
        .collect()
}

/// A physical restore's plan, printed before anything is written.
pub fn physical_plan(p: &PhysicalRestorePlan) -> String {
    format!(
        "plan: restore base backup {} (consistent from {}, LSN {}; {}) into {}\n      replay WAL {} .. {} ({} segments checked in the archive), timeline {}\n      target: {}\n      restorable window: {}\n",
        p.backup,
        when_micros(&p.backup_stop_time),
        p.backup_stop_lsn,
        bytes(p.size),
        p.pgdata.display(),
        p.wal_from,
        p.wal_to,
        p.wal_segments,
        p.timeline_setting,
        p.target,
        p.window
    )
}

/// A physical restore's outcome.
pub fn physical_report(plan: &PhysicalRestorePlan, r: &PhysicalRestoreReport) -> String {
    let mut out = String::new();
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    match r.state {
        RestoreState::NotStarted => {
            let _ = writeln!(
                out,
                "restored backup {} into {} in {:.1} s; recovery settings written (restore_command = pgkeep wal-fetch)\nstart it with: pg_ctl -D {} start   (it recovers to {}{})",
                plan.backup,
                plan.pgdata.display(),
                r.seconds,
                plan.pgdata.display(),
                plan.target,
                r.port.map(|p| format!(", on port {p}")).unwrap_or_default()
            );
        }
        state => {
            let _ = writeln!(
                out,
                "recovery reached LSN {}{} and the server is {state} (port {}); {:.1} s in all, recovery {:.1} s",
                r.reached_lsn.as_deref().unwrap_or("?"),
                r.reached_time
                    .map(|t| format!(", last transaction committed at {}", when_micros(&t)))
                    .unwrap_or_default(),
                r.port.map_or("?".to_string(), |p| p.to_string()),
                r.seconds,
                r.recovery_seconds.unwrap_or(0.0)
            );
            if state == RestoreState::Paused {
                let _ = writeln!(
                    out,
                    "check the data (read-only); then `SELECT pg_wal_replay_resume();` ends recovery and opens it for writes, or stop it and restore again with another target"
                );
                if r.locked_tables > 0 {
                    let _ = writeln!(
                        out,
                        "note: {} table(s) are locked by transactions still open at the target (such as the DROP or TRUNCATE recovery stopped before); reading them waits until recovery ends: promote with `SELECT pg_wal_replay_resume();` (those transactions are then rolled back) or restore with --target-action promote",
                        r.locked_tables
                    );
                }
            }
            if let Some(log) = &r.log {
                let _ = writeln!(out, "server log: {}", log.display());
            }
        }
    }
    out
}

/// What a restore is about to do.
pub fn restore_plan(plan: &LogicalRestorePlan) -> String {
    let mut out = format!(
        "restoring database {} from backup {} (finished {})",
        plan.database,
        plan.backup.id,
        when_micros(&plan.backup.finished_at)
    );
    if let (Some(at), Some(seconds)) = (&plan.requested_at, plan.seconds_before_target) {
        let _ = write!(
            out,
            ", {} before the requested {}",
            human_duration(seconds),
            when(at)
        );
    }
    if plan.target != plan.database {
        let _ = write!(out, " into {}", plan.target);
    }
    out.push('\n');
    out
}

fn human_duration(seconds: i64) -> String {
    let (d, h, m, s) = (
        seconds / 86400,
        seconds / 3600 % 24,
        seconds / 60 % 60,
        seconds % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m{s:02}s"),
        (0, _, _) => format!("{h}h{m:02}m"),
        _ => format!("{d}d{h:02}h"),
    }
}

/// The summary after a restore.
pub fn restore_report(r: &LogicalRestoreReport) -> String {
    format!(
        "restored {} from backup {}: {} of archive in {:.1} s{}\n",
        r.target,
        r.backup_id,
        bytes(r.bytes),
        r.seconds,
        if r.cleaned {
            " (existing contents replaced)"
        } else {
            ""
        }
    )
}

/// The summary after `restore --globals`: the roles created, and the existing ones left alone or
/// overwritten, by name.
pub fn globals_report(r: &GlobalsReport) -> String {
    let names = |roles: &[String]| roles.join(", ");
    let mut out = format!(
        "restored roles and tablespaces from backup {}\n",
        r.backup_id
    );
    if !r.created_roles.is_empty() {
        let _ = writeln!(out, "created roles: {}", names(&r.created_roles));
    }
    if !r.skipped_roles.is_empty() {
        let _ = writeln!(
            out,
            "skipped existing roles (attributes, passwords, LOGIN/NOLOGIN, settings and memberships left as they are): {}\n  to give them the backup's settings, run again with --overwrite-roles",
            names(&r.skipped_roles)
        );
    }
    if !r.overwritten_roles.is_empty() {
        let _ = writeln!(
            out,
            "overwrote existing roles with the backup's attributes, passwords, settings and memberships (--overwrite-roles; a role locked with NOLOGIN may be able to log in again): {}",
            names(&r.overwritten_roles)
        );
    }
    if r.already_existed > 0 {
        let _ = writeln!(
            out,
            "{} statement(s) failed only because the object already exists (tablespaces)",
            r.already_existed
        );
    }
    out
}
