//! Backups, the catalog and verification for people: the summary after a backup, `list`, `info`,
//! `verify` and `verify --wal`.

use std::collections::BTreeMap;
use std::fmt::Write;

use pgkeep_core::{
    Catalog, LastDrills, Leftover, LeftoverKind, Manifest, ObjectRole, RecoveryWindow, Repository,
    VerifyReport, WalReport,
};

use super::drill::proof_line;
use super::{bytes, ratio, when, when_micros};

/// The newest drills of each drilled backup, by id.
pub type Drills = BTreeMap<String, LastDrills>;

/// The summary after `backup logical`.
pub fn backup_summary(m: &Manifest) -> String {
    let mut out = String::new();
    let line = |out: &mut String, name: &str, size: u64, stored: u64, seconds: f64| {
        let _ = writeln!(
            out,
            "  {name:<24} {:>10} -> {:>10} stored  {seconds:>6.1} s",
            bytes(size),
            bytes(stored)
        );
    };
    for o in &m.objects {
        let name = match o.role {
            ObjectRole::Base => "(data directory)",
            ObjectRole::BackupManifest => "(backup_manifest)",
            ObjectRole::FileList => "(file list)",
            ObjectRole::Config => o.path.as_deref().unwrap_or("(configuration file)"),
            // A local-mode backup's bundles: one line for all of them, below.
            ObjectRole::Files => continue,
            _ => o.database.as_deref().unwrap_or("(globals)"),
        };
        line(
            &mut out,
            name,
            o.stored.size,
            o.stored.stored_size,
            o.seconds,
        );
    }
    let bundles: Vec<_> = m
        .objects
        .iter()
        .filter(|o| o.role == ObjectRole::Files)
        .collect();
    if let Some(first) = bundles.first() {
        let name = format!("(data directory, {} bundles)", bundles.len());
        let size = bundles.iter().map(|o| o.stored.size).sum();
        let stored = bundles.iter().map(|o| o.stored.stored_size).sum();
        line(&mut out, &name, size, stored, first.seconds);
    }
    if let Some(p) = &m.physical {
        let _ = writeln!(
            out,
            "backup {}: physical ({} mode), WAL {} to {} (LSN {} to {}, timeline {}), {} read, {} stored (ratio {}), {:.1} s; restorable from {}",
            m.id,
            p.mode,
            p.start_segment,
            p.stop_segment,
            p.start_lsn,
            p.stop_lsn,
            p.timeline,
            bytes(m.size()),
            bytes(m.stored_size()),
            ratio(m.size(), m.stored_size()),
            m.seconds(),
            when_micros(&p.stop_time)
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
pub fn list_json(
    repo: &Repository,
    catalog: &Catalog,
    window: &RecoveryWindow,
    drills: &Drills,
) -> serde_json::Value {
    let backups = &catalog.backups;
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
            "drills": drills.get(&m.id).map(|d| serde_json::json!({
                "last": d.last,
                "last_passed": d.last_passed,
                "last_failed": d.last_failed(),
            })),
        })).collect::<Vec<_>>(),
        "damaged": catalog.damaged,
        "leftovers": catalog.leftovers,
    })
}

/// `list` as a table (each backup with a line on its drills), then the damaged backups and the
/// leftovers.
pub fn list_table(
    repo: &Repository,
    catalog: &Catalog,
    window: &RecoveryWindow,
    drills: &Drills,
) -> String {
    let backups = &catalog.backups;
    let mut out = String::new();
    if backups.is_empty() && catalog.damaged.is_empty() {
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
        "{:<18} {:<8} {:<30} {:>8} {:>10} {:>10}  databases",
        "id", "kind", "finished", "seconds", "size", "stored"
    );
    // One row per backup directory, in id (time) order, the damaged ones among the others.
    let mut rows: Vec<(&str, String)> = backups
        .iter()
        .map(|m| {
            let proof = proof_line(drills.get(&m.id));
            (m.id.as_str(), format!("{}\n{proof}", backup_row(m)))
        })
        .chain(catalog.damaged.iter().map(|d| {
            let row = format!("{:<18} DAMAGED  {} ({})", d.id, d.problem, d.key);
            (d.id.as_str(), row)
        }))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(b.0));
    for (_, row) in rows {
        let _ = writeln!(out, "{row}");
    }
    if window.from.is_some() {
        let _ = writeln!(out, "point-in-time recovery window: {window}");
    }
    out.push_str(&leftovers(&catalog.leftovers));
    out
}

fn backup_row(m: &Manifest) -> String {
    let mut dbs = m.databases().join(", ");
    if m.globals().is_some() {
        dbs.push_str(" + globals");
    }
    if let Some(p) = &m.physical {
        dbs = format!("data directory, WAL from {}", p.start_segment);
    }
    format!(
        "{:<18} {:<8} {:<30} {:>8.1} {:>10} {:>10}  {}",
        m.id,
        format!("{:?}", m.kind).to_lowercase(),
        when_micros(&m.finished_at),
        m.seconds(),
        bytes(m.size()),
        bytes(m.stored_size()),
        dbs.trim_start_matches(" + ")
    )
}

/// Leftovers, a line each, then what to do about them.
pub fn leftovers(leftovers: &[Leftover]) -> String {
    let mut out = String::new();
    for l in leftovers {
        let _ = writeln!(
            out,
            "leftover: {} {} ({} object(s), {}{}); no command lists or restores it",
            l.prefix,
            match l.kind {
                LeftoverKind::Incomplete =>
                    "is a backup without a manifest (killed or failed, or still running)",
                LeftoverKind::Unlisted => "holds objects its manifest does not list",
                LeftoverKind::Staging => "holds unfinished writes of a killed process",
            },
            l.keys.len(),
            bytes(l.bytes),
            l.modified
                .map(|t| format!(", last written {}", when(&t)))
                .unwrap_or_default()
        );
    }
    if !leftovers.is_empty() {
        let _ = writeln!(
            out,
            "leftovers: {} in all; no command lists or restores them. Look before deleting: a directory without a manifest is usually a killed or failed run (or one running now), but can also be a backup whose manifest was lost; once you know, and no pgkeep backup is running, delete the listed objects by hand",
            bytes(leftovers.iter().map(|l| l.bytes).sum())
        );
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

/// `info ID` in human form.
pub fn info(m: &Manifest) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "backup       {}", m.id);
    let _ = writeln!(
        out,
        "kind         {}",
        format!("{:?}", m.kind).to_lowercase()
    );
    if let Some(p) = &m.physical {
        let _ = writeln!(out, "mode         {}", p.mode);
    }
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
        when_micros(&m.finished_at),
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

/// `verify` results, then the leftovers.
pub fn verify_report(report: &VerifyReport) -> String {
    let mut out = String::new();
    for b in &report.backups {
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
    for p in &report.problems {
        let _ = writeln!(out, "PROBLEM: {p}");
    }
    out.push_str(&leftovers(&report.leftovers));
    out
}
