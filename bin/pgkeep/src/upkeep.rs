//! The handlers of the repository's upkeep: `expire` (a plan, carried out with `--confirm`),
//! `pin` and `unpin`.

use std::process::ExitCode;

use pgkeep_core::ExpireOptions;

use crate::commands::Ctx;
use crate::exit::usage;
use crate::output;

/// `expire [--confirm] [--grace DURATION]`: the plan; with `--confirm` also carried out. Exit 0,
/// or 1 when a deletion failed (the error says what was deleted before).
pub async fn expire(ctx: &Ctx, confirm: bool, grace: Option<&str>) -> anyhow::Result<ExitCode> {
    let grace = grace
        .map(pgkeep_core::parse_duration)
        .transpose()
        .map_err(|problem| usage(format!("--grace: {problem}")))?;
    let repo = ctx.repo().await?;
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
    let done = pgkeep_core::expire(&repo, &plan).await?;
    let json = serde_json::json!({ "plan": plan, "confirmed": true, "deleted": done });
    ctx.report(true, &json, || output::expire_done(&plan, Some(&done)))?;
    Ok(ExitCode::SUCCESS)
}

/// `pin ID [--reason TEXT]`.
pub async fn pin(ctx: &Ctx, id: &str, reason: Option<&str>) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let pin = pgkeep_core::pin_backup(&repo, id, reason).await?;
    let json = serde_json::json!({ "id": id, "pinned": true, "pin": pin });
    ctx.report(true, &json, || output::pinned(id, &pin))?;
    Ok(ExitCode::SUCCESS)
}

/// `unpin ID`.
pub async fn unpin(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let removed = pgkeep_core::unpin_backup(&repo, id).await?;
    let json = serde_json::json!({ "id": id, "pinned": false, "removed": removed });
    ctx.report(true, &json, || output::unpinned(id, removed.as_ref()))?;
    Ok(ExitCode::SUCCESS)
}
