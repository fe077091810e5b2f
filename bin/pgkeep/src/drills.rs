//! The `drill` handler: flags turned into [`DrillOptions`], one call of [`pgkeep_core::drill`],
//! the run printed (human or JSON), exit 1 when a drill failed.

use std::process::ExitCode;

use pgkeep_core::{DrillOptions, DrillOutcome, DrillRun, DrillSelection, DrillTarget, Interrupt};

use crate::args::CliDrillTarget;
use crate::commands::Ctx;
use crate::output;

/// `drill [ID | --all-kinds] [--target latest|random]`.
pub async fn drill(
    ctx: &Ctx,
    id: Option<String>,
    all_kinds: bool,
    target: CliDrillTarget,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let options = DrillOptions {
        selection: match (id, all_kinds) {
            (Some(id), _) => DrillSelection::Backup(id),
            (None, true) => DrillSelection::AllKinds,
            (None, false) => DrillSelection::Newest,
        },
        target: match target {
            CliDrillTarget::Latest => DrillTarget::Latest,
            CliDrillTarget::Random => DrillTarget::Random,
        },
        wal_fetch_program: None,
        interrupt,
    };
    let run = pgkeep_core::drill(&ctx.settings, &repo, &options, ctx.progress.clone()).await?;
    ctx.report(run.ok(), &run, || output::drill_run(&run))?;
    match failure_text(&run) {
        Some(text) => anyhow::bail!("{text}"),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// What went wrong in `run`, for stderr (under -q too): the drills that failed, those that passed
/// with something wrong around them (their record not stored, their scratch cluster not removed),
/// and what killed drills left that could not be cleaned up; `None` when nothing did.
fn failure_text(run: &DrillRun) -> Option<String> {
    let mut failed = Vec::new();
    let mut around = Vec::new();
    for d in run.drills.iter().filter(|d| !d.ok()) {
        let id = &d.record.backup;
        match &d.record.outcome {
            DrillOutcome::Failed { cause } => failed.push(format!("backup {id}: {cause}")),
            DrillOutcome::Passed => around.push(format!(
                "the drill of backup {id} PASSED, but: {}",
                d.problems.join("; ")
            )),
        }
    }
    let mut parts = Vec::new();
    if !failed.is_empty() {
        parts.push(format!(
            "{} of {} drill(s) failed:\n{}\n  fix: do not count on a backup whose drill failed; follow the fix above, then take a new backup and drill it (`pgkeep drill ID`)",
            failed.len(),
            run.drills.len(),
            failed.join("\n")
        ));
    }
    if !around.is_empty() {
        parts.push(format!(
            "{}\n  fix: the backup restored and its checks passed; follow the fix above (for a record not stored: make the repository writable), then drill it again (`pgkeep drill ID`) so that its proof is recorded",
            around.join("\n")
        ));
    }
    if !run.problems.is_empty() {
        // A killed drill's server may still run there.
        parts.push(format!(
            "the scratch directory holds what killed drills left and could not be cleaned up:\n{}",
            run.problems.join("\n")
        ));
    }
    (!parts.is_empty()).then(|| parts.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: serde_json::Value, problems: &[&str]) -> pgkeep_core::DrillReport {
        let mut record = serde_json::json!({
            "format": 1, "backup": "b1", "kind": "logical",
            "started_at": "2026-11-25T15:00:00Z", "finished_at": "2026-11-25T15:00:01Z",
            "target": {"kind": "backup"}, "host": "h", "pgkeep": "0"
        });
        record
            .as_object_mut()
            .unwrap()
            .extend(outcome.as_object().unwrap().clone());
        pgkeep_core::DrillReport {
            record: serde_json::from_value(record).unwrap(),
            record_key: None,
            scratch: "/tmp/x".into(),
            notes: Vec::new(),
            problems: problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn a_passed_drill_whose_record_was_not_stored_is_not_called_failed() {
        let passed = report(
            serde_json::json!({"outcome": "passed"}),
            &["the drill's record was not stored: permission denied"],
        );
        let run = DrillRun {
            drills: vec![passed],
            swept: Vec::new(),
            problems: Vec::new(),
        };
        let text = failure_text(&run).unwrap();
        assert!(
            text.contains("backup b1 PASSED, but: the drill's record was not stored"),
            "{text}"
        );
        assert!(
            !text.contains("failed:") && !text.contains("take a new backup"),
            "{text}"
        );
        let failed = report(
            serde_json::json!({"outcome": "failed", "cause": {"kind": "restore", "error": "boom"}}),
            &[],
        );
        let run = DrillRun {
            drills: vec![failed],
            swept: Vec::new(),
            problems: vec!["cannot clean up /s/d".into()],
        };
        let text = failure_text(&run).unwrap();
        assert!(
            text.starts_with("1 of 1 drill(s) failed:\nbackup b1: the restore failed: boom"),
            "{text}"
        );
        assert!(text.contains("cannot clean up /s/d"), "{text}");
        let clean = DrillRun {
            drills: vec![report(serde_json::json!({"outcome": "passed"}), &[])],
            swept: Vec::new(),
            problems: Vec::new(),
        };
        assert_eq!(failure_text(&clean), None);
    }
}
