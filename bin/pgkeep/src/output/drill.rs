//! Restore drills for people: the outcome of `drill`, the proof line `list` prints under each
//! backup, and the drill history `info` prints.

use std::fmt::Write;

use pgkeep_core::{
    DrillAim, DrillCause, DrillCheck, DrillCheckKind, DrillCheckResult, DrillHistory, DrillOutcome,
    DrillRecord, DrillReport, DrillRun, LastDrills,
};

use super::{when, when_micros};

/// A duration for people: `3.2 s`, `5 min 3 s`, `2 h 5 min`, `3 d 4 h`.
fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0);
    if s < 60.0 {
        return format!("{s:.1} s");
    }
    let s = s.round() as u64;
    match s {
        ..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86400, s % 86400 / 3600),
    }
}

/// `RTO 3.2 s, RPO 5 min 3 s`, with `-` for what was not measured.
fn rto_rpo(r: &DrillRecord) -> String {
    let or_dash = |v: Option<f64>| v.map_or("-".to_string(), duration);
    format!(
        "RTO {}, RPO {}",
        or_dash(r.rto_seconds),
        or_dash(r.rpo_seconds)
    )
}

/// The longest cause `list` and `info` print on a drill's line (`drill` prints it whole).
const CAUSE_CHARS: usize = 160;

/// The first line of a failed drill's cause, cut to [`CAUSE_CHARS`].
fn cause_line(r: &DrillRecord) -> String {
    let DrillOutcome::Failed { cause } = &r.outcome else {
        return String::new();
    };
    let text = cause.to_string();
    let line = text.lines().next().unwrap_or("");
    match line.char_indices().nth(CAUSE_CHARS) {
        Some((cut, _)) => format!("{} ...", &line[..cut]),
        None => line.to_string(),
    }
}

/// What `list` says under a backup about its drills.
pub fn proof_line(last: Option<&LastDrills>) -> String {
    let Some(last) = last else {
        return "  drill: never drilled (`pgkeep drill ID`)".to_string();
    };
    let proven = |r: &DrillRecord| {
        format!(
            "proven restorable {} ({})",
            when(&r.finished_at),
            rto_rpo(r)
        )
    };
    match (&last.last_passed, last.last_failed()) {
        (Some(passed), false) => format!("  drill: {}", proven(passed)),
        (passed, _) => format!(
            "  drill: last drill FAILED {}: {}; {}",
            when(&last.last.finished_at),
            cause_line(&last.last),
            passed
                .as_ref()
                .map_or("never proven restorable".to_string(), |p| format!(
                    "last {}",
                    proven(p)
                ))
        ),
    }
}

/// A check, a line.
fn check_line(c: &DrillCheck) -> String {
    let counted = match c.check {
        DrillCheckKind::Tables => format!(" ({} counted)", c.checked),
        DrillCheckKind::Indexes => format!(" ({} checked with bt_index_check)", c.checked),
        DrillCheckKind::Databases => format!(" ({})", c.checked),
        DrillCheckKind::Objects => format!(" ({} read back)", c.checked),
        _ => String::new(),
    };
    match &c.result {
        DrillCheckResult::Passed => format!("  ok       {}{counted}", c.subject()),
        DrillCheckResult::Failed { problem } => {
            format!(
                "  FAILED   {}: {}",
                c.subject(),
                problem.replace('\n', "\n           ")
            )
        }
        DrillCheckResult::Skipped { why } => format!("  skipped  {}: {why}", c.subject()),
    }
}

/// Where a drill's restore aimed and what it reached.
fn aim_line(r: &DrillRecord) -> Option<String> {
    let reached = r.reached_time.as_ref().map_or(String::new(), |t| {
        format!(
            "; newest commit replayed {}{}",
            when_micros(t),
            r.reached_lsn
                .as_deref()
                .map_or(String::new(), |l| format!(" (LSN {l})"))
        )
    });
    let restored = !matches!(
        &r.outcome,
        DrillOutcome::Failed {
            cause: DrillCause::Restore { .. }
        }
    );
    let aim = match r.target {
        DrillAim::Backup => return None,
        DrillAim::Latest => "the end of the archived WAL".to_string(),
        DrillAim::Time { time } => format!("the random time {}", when_micros(&time)),
    };
    Some(match restored {
        true => format!("  recovered to {aim}{reached}"),
        false => format!("  aimed at {aim}; not restored"),
    })
}

/// One drill in full.
fn report(out: &mut String, d: &DrillReport) {
    let r = &d.record;
    let verdict = match &r.outcome {
        DrillOutcome::Passed => "PASSED".to_string(),
        DrillOutcome::Failed { cause } => format!("FAILED: {cause}"),
    };
    let _ = writeln!(
        out,
        "drill of backup {} ({}): {verdict}",
        r.backup,
        format!("{:?}", r.kind).to_lowercase()
    );
    if let Some(line) = aim_line(r) {
        let _ = writeln!(out, "{line}");
    }
    let _ = writeln!(out, "  {}", rto_rpo(r));
    for c in &r.checks {
        let _ = writeln!(out, "{}", check_line(c));
    }
    for note in &d.notes {
        let _ = writeln!(out, "  note: {note}");
    }
    for problem in &d.problems {
        let _ = writeln!(out, "  PROBLEM: {problem}");
    }
    match &d.record_key {
        Some(key) => {
            let _ = writeln!(out, "  recorded as {key}");
        }
        None => {
            let _ = writeln!(out, "  not recorded");
        }
    }
}

/// `drill`'s outcome: what was swept, then each drill.
pub fn drill_run(run: &DrillRun) -> String {
    let mut out = String::new();
    for swept in &run.swept {
        let _ = writeln!(out, "note: {swept}");
    }
    for problem in &run.problems {
        let _ = writeln!(out, "PROBLEM: {problem}");
    }
    for d in &run.drills {
        report(&mut out, d);
    }
    out
}

/// `info`'s drill history: a line per drill, oldest first.
pub fn history(h: &DrillHistory) -> String {
    let mut out = String::new();
    if h.drills.is_empty() && h.unreadable.is_empty() {
        let _ = writeln!(out, "drills:      never drilled (`pgkeep drill ID`)");
        return out;
    }
    let _ = writeln!(out, "drills:");
    for r in &h.drills {
        let verdict = match r.passed() {
            true => "passed".to_string(),
            false => format!("FAILED: {}", cause_line(r)),
        };
        let aim = match r.target {
            DrillAim::Backup => String::new(),
            DrillAim::Latest => " to the end of the WAL".to_string(),
            DrillAim::Time { time } => format!(" to {}", when_micros(&time)),
        };
        let _ = writeln!(
            out,
            "  {}{aim} on {}: {verdict} ({})",
            when(&r.finished_at),
            r.host,
            rto_rpo(r)
        );
    }
    for u in &h.unreadable {
        let _ = writeln!(out, "  UNREADABLE {}: {}", u.key, u.problem);
    }
    if let Some(last) = h.last_passed() {
        let _ = writeln!(
            out,
            "last proven restorable {} ({})",
            when(&last.finished_at),
            rto_rpo(last)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration(3.21), "3.2 s");
        assert_eq!(duration(303.0), "5 min 3 s");
        assert_eq!(duration(7500.0), "2 h 5 min");
        assert_eq!(duration(3.0 * 86400.0 + 4.0 * 3600.0), "3 d 4 h");
    }

    #[test]
    fn a_drill_that_never_restored_does_not_say_it_recovered() {
        let record = |outcome: serde_json::Value| -> DrillRecord {
            let mut json = serde_json::json!({
                "format": 1, "backup": "b", "kind": "physical",
                "started_at": "2026-11-25T15:00:00Z", "finished_at": "2026-11-25T15:00:01Z",
                "target": {"kind": "latest"}, "host": "h", "pgkeep": "0"
            });
            json.as_object_mut()
                .unwrap()
                .extend(outcome.as_object().unwrap().clone());
            serde_json::from_value(json).unwrap()
        };
        let failed = record(serde_json::json!({
            "outcome": "failed", "cause": {"kind": "restore", "error": "missing segment"}
        }));
        let line = aim_line(&failed).unwrap();
        assert_eq!(line, "  aimed at the end of the archived WAL; not restored");
        let passed = record(serde_json::json!({"outcome": "passed"}));
        assert_eq!(
            aim_line(&passed).unwrap(),
            "  recovered to the end of the archived WAL"
        );
    }
}
