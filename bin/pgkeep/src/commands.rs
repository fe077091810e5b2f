//! One handler per command: flags turned into the library's options, one library call, the report
//! printed (human or JSON), the exit code chosen. No logic the library lacks.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use pgkeep_core::{
    BackupChoice, Fetched, LogicalBackupOptions, LogicalRestoreOptions, Lsn, Manifest,
    PhysicalBackupOptions, PhysicalRestoreOptions, PhysicalRestoreRequest, Pushed, RecoveryTarget,
    Repository, Settings, TargetAction, VerifySelection,
};
use pgkeep_failover::Pair;

use crate::args::{CliTargetAction, RestoreArgs};
use crate::exit::{self, usage};
use crate::output;
use crate::progress::CliProgress;

/// What every command gets: the settings and how to print.
pub struct Ctx {
    /// The resolved settings.
    pub settings: Settings,
    /// `--json`.
    pub json: bool,
    /// `-q`.
    pub quiet: bool,
    /// Progress on stderr.
    pub progress: Arc<CliProgress>,
}

impl Ctx {
    async fn repo(&self) -> anyhow::Result<Repository> {
        Ok(Repository::open(&self.settings).await?)
    }

    fn pair(&self, node: Option<&str>) -> anyhow::Result<Pair> {
        Ok(Pair::from_settings(&self.settings, node)?)
    }

    /// Prints `value` as JSON, or `human` for people.
    fn print(
        &self,
        value: &impl serde::Serialize,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        self.progress.clear();
        if self.json {
            println!("{}", serde_json::to_string_pretty(value)?);
        } else {
            print!("{}", human());
        }
        Ok(())
    }
}

/// `check`: exit 3 when something the configured jobs need is wrong.
pub async fn check(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let report = pgkeep_core::check(&ctx.settings).await;
    ctx.print(&report, || output::check_report(&report))?;
    Ok(exit::check_code(report.ok))
}

fn backup_done(ctx: &Ctx, manifest: &Manifest) -> anyhow::Result<ExitCode> {
    ctx.print(manifest, || output::backup_summary(manifest))?;
    Ok(ExitCode::SUCCESS)
}

/// `backup logical`.
pub async fn backup_logical(ctx: &Ctx, options: LogicalBackupOptions) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let manifest =
        pgkeep_core::backup_logical(&ctx.settings, &repo, &options, ctx.progress.clone())
            .await
            .context("backup failed; nothing was recorded as a backup")?;
    backup_done(ctx, &manifest)
}

/// `backup physical`.
pub async fn backup_physical(
    ctx: &Ctx,
    options: PhysicalBackupOptions,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let manifest =
        pgkeep_core::backup_physical(&ctx.settings, &repo, &options, ctx.progress.clone())
            .await
            .context("backup failed; nothing was recorded as a backup")?;
    backup_done(ctx, &manifest)
}

/// `list`: the backups and the recoverable window.
pub async fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let backups = pgkeep_core::list_backups(&repo).await?;
    let window = pgkeep_core::recoverable_window(&repo, &backups).await?;
    let json = output::list_json(&repo, &backups, &window);
    ctx.print(&json, || output::list_table(&repo, &backups, &window))?;
    Ok(ExitCode::SUCCESS)
}

/// `info ID`.
pub async fn info(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let manifest = pgkeep_core::find_backup(&repo, id).await?;
    ctx.print(&manifest, || output::info(&manifest))?;
    Ok(ExitCode::SUCCESS)
}

/// `verify [ID | --all]`: the report, then exit 1 when an object is damaged.
pub async fn verify(ctx: &Ctx, selection: VerifySelection) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let report =
        pgkeep_core::verify_backups(&ctx.settings, &repo, &selection, ctx.progress.clone()).await?;
    ctx.print(&report, || output::verify_report(&report))?;
    report.result()?;
    Ok(ExitCode::SUCCESS)
}

/// `verify --wal`: the report, then exit 1 when the archive has a problem.
pub async fn verify_wal(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let report = pgkeep_core::verify_wal(&repo).await?;
    ctx.print(&report, || output::wal_report(&report))?;
    report.result()?;
    Ok(ExitCode::SUCCESS)
}

/// The recovery target a physical restore's flags name (clap allows at most one).
fn recovery_target(args: &RestoreArgs) -> anyhow::Result<RecoveryTarget> {
    Ok(if let Some(at) = &args.at {
        RecoveryTarget::Time(
            pgkeep_core::parse_time(at).map_err(|problem| usage(format!("--at: {problem}")))?,
        )
    } else if let Some(lsn) = &args.lsn {
        RecoveryTarget::Lsn(Lsn::parse(lsn).ok_or_else(|| {
            usage(format!(
                "--lsn: `{lsn}` is not a WAL location; write it as PostgreSQL prints it, e.g. 0/3000060"
            ))
        })?)
    } else if let Some(xid) = &args.xid {
        if xid.parse::<u64>().is_err() {
            return Err(usage(format!(
                "--xid: `{xid}` is not a transaction id (a number)"
            )));
        }
        RecoveryTarget::Xid(xid.clone())
    } else if let Some(name) = &args.name {
        RecoveryTarget::Name(name.clone())
    } else if args.latest {
        RecoveryTarget::Latest
    } else {
        RecoveryTarget::Immediate
    })
}

/// `restore --pgdata`: the plan (printed before anything is written), then the restore.
pub async fn restore_physical(
    ctx: &Ctx,
    args: &RestoreArgs,
    pgdata: PathBuf,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let request = PhysicalRestoreRequest {
        target: recovery_target(args)?,
        backup: args.backup.clone(),
        timeline: args
            .timeline
            .parse()
            .map_err(|problem| usage(format!("--timeline: {problem}")))?,
        pgdata: std::path::absolute(pgdata).context("--pgdata")?,
        force: args.force,
    };
    let plan = pgkeep_core::plan_physical_restore(&repo, &request).await?;
    if !ctx.json {
        eprint!("{}", output::physical_plan(&plan));
    }
    let options = PhysicalRestoreOptions {
        start: args.start,
        target_action: match args.target_action {
            CliTargetAction::Pause => TargetAction::Pause,
            CliTargetAction::Promote => TargetAction::Promote,
            CliTargetAction::Shutdown => TargetAction::Shutdown,
        },
        port: args.port,
        keep_archiving: args.keep_archiving,
        owner: args.owner.clone(),
        wal_fetch_program: None,
    };
    let report =
        pgkeep_core::restore_physical(&ctx.settings, &repo, &plan, &options, ctx.progress.clone())
            .await?;
    let json = serde_json::json!({ "plan": plan, "report": report });
    ctx.print(&json, || output::physical_report(&plan, &report))?;
    Ok(ExitCode::SUCCESS)
}

/// The logical backup `--at` or `--backup` names (clap requires one of them).
fn backup_choice(args: &RestoreArgs) -> anyhow::Result<BackupChoice> {
    match (&args.at, &args.backup) {
        (Some(at), _) => Ok(BackupChoice::At(
            pgkeep_core::parse_time(at).map_err(|problem| usage(format!("--at: {problem}")))?,
        )),
        (None, Some(id)) => Ok(BackupChoice::Id(id.clone())),
        (None, None) => Err(usage(
            "name the backup with --at TIME or --backup ID".to_string(),
        )),
    }
}

/// `restore --globals`.
pub async fn restore_globals(ctx: &Ctx, args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let choice = backup_choice(args)?;
    let report =
        pgkeep_core::restore_globals(&ctx.settings, &repo, &choice, ctx.progress.clone()).await?;
    ctx.print(&report, || {
        format!(
            "restored roles and tablespaces from backup {} ({} already existed)\n",
            report.backup_id, report.already_existed
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `restore --db NAME`: the plan (printed first), then pg_restore.
pub async fn restore_logical(
    ctx: &Ctx,
    args: &RestoreArgs,
    database: &str,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let choice = backup_choice(args)?;
    let plan =
        pgkeep_core::plan_logical_restore(&repo, database, &choice, args.into.as_deref()).await?;
    if !ctx.json {
        eprint!("{}", output::restore_plan(&plan));
    }
    let options = LogicalRestoreOptions {
        jobs: usize::from(args.jobs),
        clean: args.clean,
    };
    let report =
        pgkeep_core::restore_logical(&ctx.settings, &repo, &plan, &options, ctx.progress.clone())
            .await?;
    let json = serde_json::json!({ "plan": plan, "report": report });
    ctx.print(&json, || output::restore_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `failover status`: exit 3 when the pair has a problem.
pub async fn failover_status(ctx: &Ctx, node: Option<&str>) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let status = pgkeep_failover::status(&pair).await;
    ctx.print(&status, || output::pair_status(&status))?;
    Ok(exit::check_code(status.problems.is_empty()))
}

/// `failover switchover --to NODE [--dry-run]`.
pub async fn switchover(
    ctx: &Ctx,
    to: &str,
    dry_run: bool,
    node: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let report = pgkeep_failover::switchover(&pair, to, dry_run).await?;
    ctx.print(&report, || output::switchover_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `failover promote [--force]`.
pub async fn promote(ctx: &Ctx, force: bool, node: Option<&str>) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let report = pgkeep_failover::promote(&pair, force).await?;
    ctx.print(&report, || {
        format!(
            "{} is the master now; {} must be rejoined (`pgkeep failover rejoin NODE`) before it runs again\n",
            report.promoted,
            report.must_rejoin.join(", ")
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `failover rejoin NODE [--reclone]`.
pub async fn rejoin(
    ctx: &Ctx,
    target: &str,
    reclone: bool,
    node: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let report = pgkeep_failover::rejoin(&pair, target, reclone).await?;
    ctx.print(&report, || {
        format!(
            "{} is a streaming standby of {} ({})\n{}\n",
            report.node,
            report.master,
            report.method,
            report.restore_command.as_deref().map_or(
                "no restore_command: no [repository] is configured, so it cannot catch up from the archive".to_string(),
                |c| format!("restore_command: {c}")
            )
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `sync files [--dry-run]`.
pub async fn sync_files(ctx: &Ctx, node: Option<&str>, dry_run: bool) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let report = pgkeep_failover::sync_files(&pair, dry_run).await?;
    ctx.print(&report, || output::sync_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `wal-push PATH` (archive_command): exit 0 once durable.
pub async fn wal_push(ctx: &Ctx, path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let pushed = pgkeep_core::wal_push(&repo, path, ctx.settings.compression)
        .await
        .with_context(|| format!("wal-push {} failed", path.display()))?;
    if pushed == Pushed::AlreadyThere {
        tracing::info!(
            "{}: the archive already holds this exact file",
            path.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `wal-fetch NAME DEST` (restore_command): exit 1 only when the archive has no such file.
pub async fn wal_fetch(ctx: &Ctx, name: &str, dest: &std::path::Path) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    match pgkeep_core::wal_fetch(&repo, name, dest)
        .await
        .with_context(|| format!("wal-fetch {name} failed"))?
    {
        Fetched::Restored(_) => Ok(ExitCode::SUCCESS),
        Fetched::NotFound => {
            if !ctx.quiet {
                eprintln!(
                    "pgkeep wal-fetch: {name} is not in the archive ({})",
                    repo.storage().url()
                );
            }
            Ok(ExitCode::from(exit::WAL_NOT_FOUND))
        }
    }
}
