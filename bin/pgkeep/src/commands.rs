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
    pub(crate) async fn repo(&self) -> anyhow::Result<Repository> {
        Ok(Repository::open(&self.settings).await?)
    }

    fn pair(&self, node: Option<&str>) -> anyhow::Result<Pair> {
        Ok(Pair::from_settings(&self.settings, node)?)
    }

    /// Prints a warning on stderr, unless `-q` (an empty text prints nothing).
    pub(crate) fn warn(&self, text: &str) {
        if !self.quiet && !text.is_empty() {
            self.progress.clear();
            eprint!("{text}");
        }
    }

    /// Prints an outcome as [`Ctx::print`] does, except under `-q` when `ok`: cron then mails
    /// only what went wrong.
    pub(crate) fn report(
        &self,
        ok: bool,
        value: &impl serde::Serialize,
        human: impl FnOnce() -> String,
    ) -> anyhow::Result<()> {
        if self.quiet && ok && !self.json {
            return Ok(());
        }
        self.print(value, human)
    }

    /// Prints `value` as JSON, or `human` for people.
    pub(crate) fn print(
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
    ctx.report(report.ok, &report, || output::check_report(&report))?;
    Ok(exit::check_code(report.ok))
}

fn backup_done(ctx: &Ctx, manifest: &Manifest) -> anyhow::Result<ExitCode> {
    ctx.report(true, manifest, || output::backup_summary(manifest))?;
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

/// `list`: the backups (each with its last drill), the damaged ones and the leftovers, and the
/// recoverable window; exit 1 when a backup's manifest cannot be used (so that cron notices).
pub async fn list(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let catalog = pgkeep_core::read_catalog(&repo).await?;
    let window =
        pgkeep_core::recoverable_window(&repo, &catalog.backups, ctx.settings.bin_dir.as_deref())
            .await?;
    let drills = pgkeep_core::last_drills(&repo, &catalog).await?;
    let json = output::list_json(&repo, &catalog, &window, &drills);
    ctx.print(&json, || {
        output::list_table(&repo, &catalog, &window, &drills)
    })?;
    if let Some(problem) = &catalog.identity_problem {
        anyhow::bail!("{problem}");
    }
    if catalog.has_damage() {
        anyhow::bail!(
            "{} backup(s) cannot be used: their manifest is damaged ({}); the other backups are not affected\n  fix: do not rely on them; run `pgkeep verify --all` and take a new backup",
            catalog.damaged.len(),
            catalog.damaged_ids().join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `accept-fork N`.
pub async fn accept_fork(ctx: &Ctx, timeline: u32) -> anyhow::Result<ExitCode> {
    if timeline < 2 {
        return Err(usage(format!(
            "accept-fork: timeline {timeline} cannot be a branch (timeline 1 is the first); give the timeline `pgkeep verify --wal` names"
        )));
    }
    let repo = ctx.repo().await?;
    let record = pgkeep_core::accept_fork(&repo, timeline).await?;
    ctx.report(true, &record, || {
        format!(
            "timeline {} is recorded as started on purpose ({}, {})\n",
            record.timeline, record.cause, record.recorded_at
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `repair-identity`.
pub async fn repair_identity(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let repair = pgkeep_core::repair_identity(&ctx.settings, &repo).await?;
    ctx.report(true, &repair, || {
        format!(
            "rebuilt {}: system identifier {}, PostgreSQL {} (from {}){}\n",
            repo.key("cluster.json"),
            repair.identity.system_identifier,
            repair.identity.pg_major,
            repair.evidence.describe(),
            repair
                .kept_damaged
                .as_ref()
                .map(|k| format!("; the damaged record is kept as {k}"))
                .unwrap_or_default()
        )
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `info ID`: the manifest and the drill history.
pub async fn info(ctx: &Ctx, id: &str) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let manifest = pgkeep_core::find_backup(&repo, id).await?;
    let history = pgkeep_core::drill_history(&repo, id).await?;
    // The manifest's own fields, and its drills beside them.
    let mut json = serde_json::to_value(&manifest)?;
    json["drills"] = serde_json::to_value(&history.drills)?;
    json["unreadable_drills"] = serde_json::to_value(&history.unreadable)?;
    ctx.print(&json, || {
        output::info(&manifest) + &output::drill_history(&history)
    })?;
    Ok(ExitCode::SUCCESS)
}

/// `verify [ID | --all]`: the report, then exit 1 when an object is damaged.
pub async fn verify(ctx: &Ctx, selection: VerifySelection) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let report =
        pgkeep_core::verify_backups(&ctx.settings, &repo, &selection, ctx.progress.clone()).await?;
    ctx.report(report.result().is_ok(), &report, || {
        output::verify_report(&report)
    })?;
    report.result()?;
    Ok(ExitCode::SUCCESS)
}

/// `verify --wal`: the report, then exit 1 when the archive has a problem.
pub async fn verify_wal(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let report = pgkeep_core::verify_wal(&repo).await?;
    ctx.report(report.result().is_ok(), &report, || {
        output::wal_report(&report)
    })?;
    report.result()?;
    Ok(ExitCode::SUCCESS)
}

/// The recovery target a physical restore's flags name (clap allows at most one).
fn recovery_target(ctx: &Ctx, args: &RestoreArgs) -> anyhow::Result<RecoveryTarget> {
    Ok(if let Some(at) = &args.at {
        RecoveryTarget::Time(
            pgkeep_core::parse_time_in(at, ctx.settings.timezone)
                .map_err(|problem| usage(format!("--at: {problem}")))?,
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
        let target = RecoveryTarget::Name(name.clone());
        target
            .check()
            .map_err(|problem| usage(format!("--name: {problem}")))?;
        target
    } else if args.latest {
        RecoveryTarget::Latest
    } else {
        RecoveryTarget::Immediate
    })
}

/// How long `--switch-wal` waits for the segment it ended to be archived.
const SWITCH_WAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// `restore --pgdata`: the plan (printed before anything is written), then the restore.
pub async fn restore_physical(
    ctx: &Ctx,
    args: &RestoreArgs,
    pgdata: PathBuf,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let request = PhysicalRestoreRequest {
        target: recovery_target(ctx, args)?,
        backup: args.backup.clone(),
        timeline: args
            .timeline
            .parse()
            .map_err(|problem| usage(format!("--timeline: {problem}")))?,
        pgdata: std::path::absolute(pgdata).context("--pgdata")?,
        force: args.force,
        bin_dir: ctx.settings.bin_dir.clone(),
    };
    let mut switched = None;
    if args.switch_wal {
        let done = pgkeep_core::switch_wal(
            &ctx.settings,
            &repo,
            SWITCH_WAL_TIMEOUT,
            ctx.progress.clone(),
        )
        .await?;
        if !ctx.json {
            eprint!("{}", output::switched_wal(&done));
        }
        switched = Some(done);
    }
    let plan = pgkeep_core::plan_physical_restore(&repo, &request).await?;
    ctx.warn(&output::skipped(&plan.skipped));
    if !ctx.json && !ctx.quiet {
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
        server_settings: Vec::new(),
    };
    let report =
        pgkeep_core::restore_physical(&ctx.settings, &repo, &plan, &options, ctx.progress.clone())
            .await?;
    let json = serde_json::json!({ "switched_wal": switched, "plan": plan, "report": report });
    ctx.report(true, &json, || output::physical_report(&plan, &report))?;
    Ok(ExitCode::SUCCESS)
}

/// The logical backup `--at` or `--backup` names (clap requires one of them).
fn backup_choice(ctx: &Ctx, args: &RestoreArgs) -> anyhow::Result<BackupChoice> {
    match (&args.at, &args.backup) {
        (Some(at), _) => Ok(BackupChoice::At(
            pgkeep_core::parse_time_in(at, ctx.settings.timezone)
                .map_err(|problem| usage(format!("--at: {problem}")))?,
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
    let choice = backup_choice(ctx, args)?;
    let options = pgkeep_core::GlobalsOptions {
        overwrite_roles: args.overwrite_roles,
        skip_tablespaces: false,
    };
    let report = pgkeep_core::restore_globals(
        &ctx.settings,
        &repo,
        &choice,
        &options,
        ctx.progress.clone(),
    )
    .await?;
    ctx.warn(&output::skipped(&report.skipped));
    ctx.report(true, &report, || output::globals_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `restore --db NAME`: the plan (printed first), then pg_restore.
pub async fn restore_logical(
    ctx: &Ctx,
    args: &RestoreArgs,
    database: &str,
    interrupt: &pgkeep_core::Interrupt,
) -> anyhow::Result<ExitCode> {
    let repo = ctx.repo().await?;
    let choice = backup_choice(ctx, args)?;
    let plan =
        pgkeep_core::plan_logical_restore(&repo, database, &choice, args.into.as_deref()).await?;
    ctx.warn(&output::skipped(&plan.skipped));
    if !ctx.json && !ctx.quiet {
        eprint!("{}", output::restore_plan(&plan));
    }
    let options = LogicalRestoreOptions {
        jobs: usize::from(args.jobs),
        clean: args.clean,
        no_tablespaces: false,
        interrupt: interrupt.clone(),
    };
    let report =
        pgkeep_core::restore_logical(&ctx.settings, &repo, &plan, &options, ctx.progress.clone())
            .await?;
    let json = serde_json::json!({ "plan": plan, "report": report });
    ctx.report(true, &json, || output::restore_report(&report))?;
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
    ctx.report(true, &report, || output::switchover_report(&report))?;
    Ok(ExitCode::SUCCESS)
}

/// `failover promote [--force]`.
pub async fn promote(ctx: &Ctx, force: bool, node: Option<&str>) -> anyhow::Result<ExitCode> {
    let pair = ctx.pair(node)?;
    let report = pgkeep_failover::promote(&pair, force).await?;
    // The new timeline is deliberate: `verify --wal` reports a fork with the old master's WAL as
    // a note. Without a repository there is no archive to explain.
    if let (Some(timeline), Some(_)) = (report.timeline, &ctx.settings.repo) {
        let repo = ctx.repo().await?;
        if let Err(e) =
            pgkeep_core::record_branch(&repo, timeline, pgkeep_core::BranchCause::Promote).await
        {
            ctx.warn(&format!(
                "warning: timeline {timeline} could not be recorded as started on purpose ({e}); `pgkeep accept-fork {timeline}` records it\n"
            ));
        }
    }
    ctx.report(true, &report, || {
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
    ctx.report(true, &report, || {
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
    ctx.report(true, &report, || output::sync_report(&report))?;
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
