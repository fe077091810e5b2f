//! The handlers of the repository's upkeep: `expire` (a plan, carried out with `--confirm`),
//! `pin` and `unpin`.

use std::process::ExitCode;

use pgkeep_core::ExpireOptions;

use crate::commands::Ctx;
use crate::exit::usage;
use crate::output;

/// `expire [--confirm] [--grace DURATION]`: the plan; with `--confirm` also carried out. Exit 0,
/// or 1 when a deletion failed (the error says what was deleted before) or when `--confirm` is
/// refused because a backup ends in the future.
pub async fn expire(ctx: &Ctx, confirm: bool, grace: Option<&str>) -> anyhow::Result<ExitCode> {
    let grace = grace
        .map(pgkeep_core::parse_duration)
        .transpose()
        .map_err(|problem| usage(format!("--grace: {problem}")))?;
    let repo = ctx.repo().await?;
    // A confirmed expire waits for running backups, and no backup starts until it is done.
    let _lock = match confirm {
        true => Some(
            pgkeep_core::lock_work(&ctx.settings, "expire", &pgkeep_core::Interrupt::new()).await?,
        ),
        false => None,
    };
    let plan = pgkeep_core::plan_expire(&ctx.settings, &repo, &ExpireOptions { grace }).await?;
    if !confirm {
        let json = serde_json::json!({ "plan": plan, "confirmed": false, "deleted": null });
        ctx.print(&json, || {
            output::expire_plan(&plan) + &output::expire_done(&plan, None)
        })?;
        return Ok(ExitCode::SUCCESS);
    }
    if !ctx.json && !ctx.quiet {
        print!("{}", output::expire_plan(&plan));
    }
    // A backup that ends in the future (a clock jumped) refuses the whole run: nothing deleted.
    plan.check_confirmable()?;
    let done = pgkeep_core::expire(&repo, &plan).await?;
    let json = serde_json::json!({ "plan": plan, "confirmed": true, "deleted": done });
    ctx.report(true, &json, || output::expire_done(&plan, Some(&done)))?;
    Ok(ExitCode::SUCCESS)
}

/// `id` and `reason` checked before the repository is opened: a usage error (exit 2).
fn check_args(command: &str, id: &str, reason: Option<&str>) -> anyhow::Result<()> {
    pgkeep_core::validate_backup_id(id).map_err(|e| usage(format!("{command}: {e}")))?;
    if let Some(reason) = reason {
        pgkeep_core::validate_pin_reason(reason)
            .map_err(|e| usage(format!("{command} --reason: {e}")))?;
    }
    Ok(())
}

/// `pin ID [--reason TEXT]`: exit 2 for an id that is no backup id or a reason with control
/// characters, before the repository is touched.
pub async fn pin(ctx: &Ctx, id: &str, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    check_args("pin", id, reason)?;
    let repo = ctx.repo().await?;
    let outcome = pgkeep_core::pin_backup(&repo, id, reason).await?;
    let json = serde_json::json!({
        "id": id, "pinned": true, "pin": outcome.pin, "change": outcome.change,
    });
    ctx.report(true, &json, || output::pinned(id, &outcome))?;
    Ok(ExitCode::SUCCESS)
}

/// `unpin ID` (the id checked as `pin` checks it).
pub async fn unpin(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    check_args("unpin", id, None)?;
    let repo = ctx.repo().await?;
    let removed = pgkeep_core::unpin_backup(&repo, id).await?;
    let json = serde_json::json!({ "id": id, "pinned": false, "removed": removed });
    ctx.report(true, &json, || output::unpinned(id, removed.as_ref()))?;
    Ok(ExitCode::SUCCESS)
}
