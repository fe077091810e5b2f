//! The `drill` handler: flags turned into [`DrillOptions`], one call of [`pgkeep_core::drill`],
//! the run printed (human or JSON), exit 1 when a drill failed.

use std::process::ExitCode;

use pgkeep_core::{DrillOptions, DrillOutcome, DrillSelection, DrillTarget, Interrupt};

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
    let mut failed: Vec<String> = run
        .drills
        .iter()
        .filter(|d| !d.ok())
        .map(|d| match &d.record.outcome {
            DrillOutcome::Failed { cause } => format!("backup {}: {cause}", d.record.backup),
            DrillOutcome::Passed => {
                format!("backup {}: {}", d.record.backup, d.problems.join("; "))
            }
        })
        .collect();
    if !failed.is_empty() {
        failed = vec![format!(
            "{} of {} drill(s) failed:\n{}\n  fix: do not count on a backup whose drill failed; follow the fix above, then take a new backup and drill it (`pgkeep drill ID`)",
            failed.len(),
            run.drills.len(),
            failed.join("\n")
        )];
    }
    if !run.problems.is_empty() {
        // On stderr under -q too: a killed drill's server may still run there.
        failed.push(format!(
            "the scratch directory holds what killed drills left and could not be cleaned up:\n{}",
            run.problems.join("\n")
        ));
    }
    if !failed.is_empty() {
        anyhow::bail!("{}", failed.join("\n"));
    }
    Ok(ExitCode::SUCCESS)
}
