//! The failover commands for people: `failover status`, `sync files`, `switchover`.

use std::fmt::Write;

use pgkeep_failover::{PairStatus, SwitchoverReport, SyncReport};

use super::bytes;

/// `failover status` as a table, then the problems.
pub fn pair_status(s: &PairStatus) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<9} {:<6} {:<8} {:<8} {:>3} {:<12} {:<12} {:>10} {:>8}  streaming/paused",
        "node",
        "reachable",
        "marker",
        "postgres",
        "role",
        "tli",
        "lsn",
        "replayed",
        "lag bytes",
        "lag s"
    );
    for n in &s.nodes {
        let role = match n.in_recovery {
            Some(true) => "standby",
            Some(false) => "primary",
            None => "-",
        };
        let _ = writeln!(
            out,
            "{:<10} {:<9} {:<6} {:<8} {:<8} {:>3} {:<12} {:<12} {:>10} {:>8}  {}{}",
            format!("{}{}", n.name, if n.name == s.local { "*" } else { "" }),
            if n.reachable { "yes" } else { "NO" },
            if n.marker { "yes" } else { "no" },
            if n.postgres_up { "up" } else { "DOWN" },
            role,
            n.timeline.map_or("-".to_string(), |t| t.to_string()),
            n.current_lsn
                .as_deref()
                .or(n.received_lsn.as_deref())
                .unwrap_or("-"),
            n.replayed_lsn.as_deref().unwrap_or("-"),
            n.lag_bytes.map_or("-".to_string(), |b| b.to_string()),
            n.lag_seconds.map_or("-".to_string(), |s| format!("{s:.1}")),
            match n.streaming {
                Some(true) => "streaming",
                Some(false) => "NOT streaming",
                None => "-",
            },
            if n.replay_paused == Some(true) {
                ", replay PAUSED"
            } else {
                ""
            }
        );
    }
    match &s.master {
        Some(m) => {
            let _ = writeln!(out, "master: {m} (* = this node)");
        }
        None => {
            let _ = writeln!(out, "master: none (* = this node)");
        }
    }
    for p in &s.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    if s.problems.is_empty() {
        let _ = writeln!(out, "the pair is consistent");
    }
    out
}

/// `sync files` in human form.
pub fn sync_report(r: &SyncReport) -> String {
    let mut out = String::new();
    if let Some(reason) = &r.reason {
        let _ = writeln!(out, "nothing to do: {reason}");
    }
    for c in &r.copies {
        let _ = writeln!(
            out,
            "{}{} -> {} ({}): {} files, {} transferred, {} deleted{}",
            if r.dry_run { "(dry run) " } else { "" },
            c.source.display(),
            c.destination,
            c.node,
            c.files_transferred,
            bytes(c.bytes_transferred),
            c.files_deleted,
            c.warning
                .as_deref()
                .map(|w| format!("; warning: {w}"))
                .unwrap_or_default()
        );
    }
    out
}

/// A switchover's plan and outcome.
pub fn switchover_report(r: &SwitchoverReport) -> String {
    let mut out = String::new();
    if r.already_finished {
        let _ = writeln!(
            out,
            "the switchover from {} to {} already finished: {} is the master; nothing to do",
            r.from, r.to, r.to
        );
        return out;
    }
    if !r.resumed_after.is_empty() {
        let _ = writeln!(
            out,
            "resuming the switchover from {} to {} after {:?}",
            r.from, r.to, r.resumed_after
        );
    }
    let _ = writeln!(
        out,
        "{} from {} to {}:",
        if r.dry_run {
            "plan of the switchover"
        } else {
            "switchover"
        },
        r.from,
        r.to
    );
    for (i, step) in r.plan.iter().enumerate() {
        let _ = writeln!(out, "  {:>2}. {step}", i + 1);
    }
    if !r.dry_run {
        let _ = writeln!(
            out,
            "done: {} is the master{}; {} is stopped: make it a standby of {} before it runs again",
            r.to,
            r.checkpoint
                .map(|c| format!(" (the old master's last checkpoint {c} was replayed)"))
                .unwrap_or_default(),
            r.from,
            r.to
        );
    }
    out
}
