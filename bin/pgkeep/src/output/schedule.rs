//! `schedule list`, `schedule once` and `status` for people.

use std::fmt::Write as _;

use chrono::Utc;
use pgkeep_core::{BackupKind, Zone};
use pgkeep_scheduler::{JobListing, Run, Status};

fn took(run: &Run) -> String {
    run.duration().map_or_else(
        || "-".into(),
        |d| pgkeep_core::format_duration(std::time::Duration::from_secs(d.as_secs())),
    )
}

fn last_line(run: &Run, zone: Zone) -> String {
    let mut text = format!(
        "{} at {} (took {})",
        run.outcome.as_str(),
        zone.show(run.started),
        took(run)
    );
    if let Some(error) = &run.error {
        let first = error.lines().next().unwrap_or_default();
        let _ = write!(text, ": {first}");
    }
    text
}

/// `schedule list`; the last runs shown in `zone` (the top-level `timezone`).
pub fn job_listing(jobs: &[JobListing], zone: Zone) -> String {
    if jobs.is_empty() {
        return "no jobs are configured: add [[job]] sections (see docs/scheduling.md)\n".into();
    }
    let mut out = String::new();
    for j in jobs {
        let _ = writeln!(
            out,
            "{}  {}  `{}` ({})",
            j.name, j.action, j.schedule, j.timezone
        );
        let _ = writeln!(out, "  next: {}", j.next_local.join(", "));
        match &j.last {
            Some(run) => {
                let _ = writeln!(out, "  last: {}", last_line(run, zone));
            }
            None => out.push_str("  last: never run\n"),
        }
    }
    out
}

/// `schedule once JOB`.
pub fn job_run(name: &str, run: &Run, zone: Zone) -> String {
    let mut out = format!("job {name}: {}", last_line(run, zone));
    if let Some(summary) = &run.summary {
        let _ = write!(out, "\n  {summary}");
    }
    out.push('\n');
    out
}

/// `status`.
pub fn status(s: &Status, zone: Zone) -> String {
    let mut out = format!("cluster {} at {}\n", s.facts.cluster, zone.show(s.at));
    if let Some(e) = &s.facts.repository_error {
        let _ = writeln!(out, "repository: cannot be read: {e}");
    }
    for kind in [BackupKind::Logical, BackupKind::Physical] {
        let word = match kind {
            BackupKind::Logical => "logical",
            BackupKind::Physical => "physical",
        };
        match s.facts.newest(kind) {
            Some(n) => {
                let age = (Utc::now() - n.finished_at).to_std().unwrap_or_default();
                let age =
                    pgkeep_core::format_duration(std::time::Duration::from_secs(age.as_secs()));
                let _ = writeln!(
                    out,
                    "newest {word}: {} at {} ({age} ago)",
                    n.id,
                    zone.show(n.finished_at)
                );
            }
            None => {
                let _ = writeln!(out, "newest {word}: none");
            }
        }
    }
    if s.facts.damaged > 0 {
        let _ = writeln!(out, "damaged backups: {} (pgkeep list)", s.facts.damaged);
    }
    if let Some(w) = &s.facts.window {
        match (w.from, w.to) {
            (Some(from), Some(to)) => {
                let _ = writeln!(out, "recoverable: {} .. {}", zone.show(from), zone.show(to));
            }
            _ => out.push_str("recoverable: no point-in-time window\n"),
        }
    }
    archiver_line(&mut out, s, zone);
    drill_line(&mut out, s, zone);
    jobs_and_alerts(&mut out, s, zone);
    out
}

fn archiver_line(out: &mut String, s: &Status, zone: Zone) {
    match &s.facts.archiver {
        Ok(a) => {
            let _ = writeln!(
                out,
                "archiver: {} archived (newest {} at {}), {} failed{}{}",
                a.archived_count,
                a.last_archived_wal.as_deref().unwrap_or("-"),
                a.last_archived_time
                    .map_or_else(|| "-".into(), |t| zone.show(t)),
                a.failed_count,
                a.waiting
                    .map_or_else(String::new, |n| format!(", {n} waiting")),
                if a.failing() { " — FAILING" } else { "" }
            );
        }
        Err(e) => {
            let _ = writeln!(out, "archiver: cannot be read: {e}");
        }
    }
}

fn drill_line(out: &mut String, s: &Status, zone: Zone) {
    match &s.facts.last_drill {
        Some(d) => {
            let _ = writeln!(
                out,
                "last drill: backup {} at {}: {}{}",
                d.backup,
                zone.show(d.finished_at),
                match d.outcome {
                    pgkeep_core::DrillOutcome::Passed => "passed",
                    _ => "FAILED",
                },
                d.rto_seconds
                    .map_or_else(String::new, |r| format!(", RTO {r:.0}s"))
            );
        }
        None => out.push_str("last drill: none\n"),
    }
}

fn jobs_and_alerts(out: &mut String, s: &Status, zone: Zone) {
    for j in &s.jobs {
        let _ = writeln!(
            out,
            "job {}: next {}; last {}",
            j.name,
            j.next_local.first().map_or("never", String::as_str),
            j.last
                .as_ref()
                .map_or_else(|| "never run".into(), |r| last_line(r, zone))
        );
    }
    for (key, a) in &s.alerts {
        let _ = writeln!(
            out,
            "ALERT {key} since {}: {}",
            zone.show(a.since),
            a.summary
        );
    }
    for c in s.holding.iter().filter(|c| !s.alerts.contains_key(&c.key)) {
        let _ = writeln!(out, "ALERT {} (now): {}", c.key, c.summary);
    }
    if s.alerts.is_empty() && s.holding.is_empty() {
        out.push_str("alerts: none\n");
    }
}
