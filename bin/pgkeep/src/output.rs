//! Human-readable renderings of reports. JSON output is the reports' serde form.

use std::fmt::Write;

use pgkeep_core::logical;
use pgkeep_core::physical::{RestorePlan, RestoreReport, Window};
use pgkeep_core::wal::WalReport;
use pgkeep_core::{CheckReport, Manifest, PasswordSource, Repository, Severity};

/// `pgkeep check` as aligned lines, then the problems with their fixes, then a verdict.
pub fn check_report(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<16} {value}");
    };
    let password = match &report.connection.password_source {
        PasswordSource::None => "none".to_string(),
        PasswordSource::ConnString => "from the connection string".to_string(),
        PasswordSource::Environment => "from PGPASSWORD".to_string(),
        PasswordSource::PassFile(path) => format!("from {}", path.display()),
    };
    line(
        "connection",
        format!(
            "{} (password: {password}) {}",
            report.connection.conninfo,
            if report.connection.connected {
                "ok"
            } else {
                "FAILED"
            }
        ),
    );
    if let Some(server) = &report.server {
        line(
            "server",
            format!(
                "PostgreSQL {}, {}",
                server.version,
                if server.in_recovery {
                    "standby"
                } else {
                    "primary"
                }
            ),
        );
        line("system id", server.system_identifier.clone());
        line("wal_level", server.wal_level.clone());
        line("archive_mode", server.archive_mode.clone());
        line(
            "archive_command",
            if server.archive_command.is_empty() {
                "(empty)".into()
            } else {
                server.archive_command.clone()
            },
        );
    }
    if let Some(dir) = &report.data_directory {
        line(
            "data directory",
            match (&dir.mode, dir.present_here) {
                (Some(mode), true) => format!("{} (mode {mode})", dir.path),
                _ => format!("{} (not on this host)", dir.path),
            },
        );
    }
    for tool in &report.tools {
        line(
            &tool.name,
            match (&tool.path, &tool.version) {
                (Some(path), Some(version)) => format!(
                    "{} — {version}{}",
                    path.display(),
                    if tool.fits { "" } else { " (DOES NOT FIT)" }
                ),
                (Some(path), None) => format!("{} (no version)", path.display()),
                _ => "NOT FOUND".into(),
            },
        );
    }
    if let Some(repo) = &report.repository {
        let identity = match &repo.identity {
            Some(id) => format!(
                "system id {}, PostgreSQL {}",
                id.system_identifier, id.pg_major
            ),
            None => "not yet recorded (the first backup records it)".into(),
        };
        line(
            "repository",
            format!(
                "{} cluster {}: {}, {}; {identity}",
                repo.url,
                repo.cluster,
                if repo.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                if repo.writable {
                    "writable"
                } else {
                    "NOT WRITABLE"
                },
            ),
        );
    }
    if !report.problems.is_empty() {
        out.push_str("\nproblems:\n");
        for p in &report.problems {
            let tag = match p.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "  {tag:<8}{}: {}", p.item, p.problem);
            let _ = writeln!(out, "  {:<8}fix: {}", "", p.fix);
        }
    }
    let errors = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = report.problems.len() - errors;
    let _ = writeln!(
        out,
        "\ncheck: {} ({errors} errors, {warnings} warnings)",
        if report.ok { "OK" } else { "FAILED" }
    );
    out
}

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn ratio(size: u64, stored: u64) -> String {
    if stored == 0 {
        "-".into()
    } else {
        format!("{:.2}", size as f64 / stored as f64)
    }
}

/// The summary after `backup logical`.
pub fn backup_summary(m: &Manifest) -> String {
    let mut out = String::new();
    for o in &m.objects {
        let _ = writeln!(
            out,
            "  {:<24} {:>10} -> {:>10} stored  {:>6.1} s",
            o.database.as_deref().unwrap_or(match o.role {
                pgkeep_core::catalog::ObjectRole::Base => "(data directory)",
                pgkeep_core::catalog::ObjectRole::BackupManifest => "(backup_manifest)",
                _ => "(globals)",
            }),
            bytes(o.stored.size),
            bytes(o.stored.stored_size),
            o.seconds
        );
    }
    if let Some(p) = &m.physical {
        let _ = writeln!(
            out,
            "backup {}: physical, WAL {} to {} (LSN {} to {}, timeline {}), {} read, {} stored (ratio {}), {:.1} s; restorable from {}",
            m.id,
            p.start_segment,
            p.stop_segment,
            p.start_lsn,
            p.stop_lsn,
            p.timeline,
            bytes(m.size()),
            bytes(m.stored_size()),
            ratio(m.size(), m.stored_size()),
            m.seconds(),
            when(&p.stop_time)
        );
        return out;
    }
    let _ = writeln!(
        out,
        "backup {}: {} database(s){}, {} read, {} stored (ratio {}), {:.1} s",
        m.id,
        m.databases().len(),
        if m.globals().is_some() {
            " + globals"
        } else {
            ""
        },
        bytes(m.size()),
        bytes(m.stored_size()),
        ratio(m.size(), m.stored_size()),
        m.seconds()
    );
    out
}

/// `list --json`: stable fields, documented in docs/cli.md.
pub fn list_json(repo: &Repository, backups: &[Manifest], window: &Window) -> serde_json::Value {
    serde_json::json!({
        "repository": repo.storage().url(),
        "cluster": repo.cluster(),
        "window": (window.from.is_some()).then_some(window),
        "backups": backups.iter().map(|m| serde_json::json!({
            "id": m.id,
            "kind": m.kind,
            "started_at": m.started_at,
            "finished_at": m.finished_at,
            "seconds": m.seconds(),
            "databases": m.databases(),
            "globals": m.globals().is_some(),
            "size": m.size(),
            "stored_size": m.stored_size(),
            "status": "complete",
            "physical": m.physical.as_ref().map(|p| serde_json::json!({
                "start_lsn": p.start_lsn,
                "stop_lsn": p.stop_lsn,
                "timeline": p.timeline,
                "stop_time": p.stop_time,
            })),
        })).collect::<Vec<_>>(),
    })
}

/// `list` as a table.
pub fn list_table(repo: &Repository, backups: &[Manifest], window: &Window) -> String {
    let mut out = String::new();
    if backups.is_empty() {
        let _ = writeln!(
            out,
            "no backups of cluster {} in {}",
            repo.cluster(),
            repo.storage().url()
        );
        return out;
    }
    let _ = writeln!(
        out,
        "{:<18} {:<8} {:<23} {:>8} {:>10} {:>10}  databases",
        "id", "kind", "finished", "seconds", "size", "stored"
    );
    for m in backups {
        let mut dbs = m.databases().join(", ");
        if m.globals().is_some() {
            dbs.push_str(" + globals");
        }
        if let Some(p) = &m.physical {
            dbs = format!("data directory, WAL from {}", p.start_segment);
        }
        let _ = writeln!(
            out,
            "{:<18} {:<8} {:<23} {:>8.1} {:>10} {:>10}  {}",
            m.id,
            format!("{:?}", m.kind).to_lowercase(),
            when(&m.finished_at),
            m.seconds(),
            bytes(m.size()),
            bytes(m.stored_size()),
            dbs.trim_start_matches(" + ")
        );
    }
    if window.from.is_some() {
        let _ = writeln!(out, "point-in-time recovery window: {window}");
    }
    out
}

/// `verify --wal` in human form.
pub fn wal_report(r: &WalReport) -> String {
    let mut out = String::new();
    for t in &r.timelines {
        let _ = writeln!(
            out,
            "timeline {}: {} to {} ({} segments)",
            t.timeline, t.first, t.last, t.segments
        );
    }
    for f in &r.forks {
        let _ = writeln!(out, "fork: {f}");
    }
    for p in &r.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    let _ = writeln!(
        out,
        "{} files read back; {}",
        r.checked,
        if r.problems.is_empty() {
            "the archive is complete".to_string()
        } else {
            format!("{} problem(s)", r.problems.len())
        }
    );
    out
}

/// A physical restore's plan, printed before anything is written.
pub fn physical_plan(p: &RestorePlan) -> String {
    format!(
        "plan: restore base backup {} (consistent from {}, LSN {}; {}) into {}\n      replay WAL {} .. {} ({} segments checked in the archive), timeline {}\n      target: {}\n      restorable window: {}\n",
        p.backup,
        when(&p.backup_stop_time),
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
pub fn physical_report(plan: &RestorePlan, r: &RestoreReport) -> String {
    let mut out = String::new();
    for note in &r.notes {
        let _ = writeln!(out, "note: {note}");
    }
    match r.state.as_str() {
        "not started" => {
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
                    .map(|t| format!(", last transaction committed at {}", when(&t)))
                    .unwrap_or_default(),
                r.port.map_or("?".to_string(), |p| p.to_string()),
                r.seconds,
                r.recovery_seconds.unwrap_or(0.0)
            );
            if state == "paused" {
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

/// `info ID` in human form.
pub fn info(m: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "backup       {}", m.id);
    let _ = writeln!(
        out,
        "kind         {}",
        format!("{:?}", m.kind).to_lowercase()
    );
    let _ = writeln!(
        out,
        "cluster      {} (system id {})",
        m.cluster, m.system_identifier
    );
    let _ = writeln!(out, "server       PostgreSQL {}", m.server_version);
    let _ = writeln!(out, "started      {}", when(&m.started_at));
    let _ = writeln!(
        out,
        "finished     {} ({:.1} s)",
        when(&m.finished_at),
        m.seconds()
    );
    for (tool, version) in &m.tools {
        let _ = writeln!(out, "tool         {tool}: {version}");
    }
    let _ = writeln!(out, "objects:");
    let _ = out.write_str(
        &backup_summary(m)
            .lines()
            .filter(|l| l.starts_with("  "))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    );
    out
}

/// `verify` results.
pub fn verify_report(checks: &[logical::BackupCheck]) -> String {
    let mut out = String::new();
    for b in checks {
        let _ = writeln!(
            out,
            "backup {}: {}",
            b.id,
            if b.ok { "ok" } else { "FAILED" }
        );
        for o in &b.objects {
            match &o.error {
                None => {
                    let _ = writeln!(out, "  ok      {}", o.key);
                }
                Some(e) => {
                    let _ = writeln!(
                        out,
                        "  FAILED  {}\n          {}",
                        o.key,
                        e.replace('\n', "\n          ")
                    );
                }
            }
        }
    }
    out
}

/// What a restore is about to do.
pub fn restore_plan(plan: &logical::RestorePlan) -> String {
    let mut out = format!(
        "restoring database {} from backup {} (finished {})",
        plan.database,
        plan.backup.id,
        when(&plan.backup.finished_at)
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
pub fn restore_report(r: &logical::RestoreReport) -> String {
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

/// `failover status` as a table, then the problems.
pub fn pair_status(s: &pgkeep_failover::PairStatus) -> String {
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
pub fn sync_report(r: &pgkeep_failover::SyncReport) -> String {
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
pub fn switchover_report(r: &pgkeep_failover::switchover::SwitchoverReport) -> String {
    let mut out = String::new();
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
