//! `pgkeep`: the command line over `pgkeep-core` and `pgkeep-failover`. It parses flags
//! ([`args`]), calls the library once per command ([`commands`]), prints human or JSON output
//! ([`output`], [`progress`]), and maps failures to the exit codes documented in docs/cli.md
//! ([`exit`]).

mod args;
mod commands;
mod drills;
mod exit;
mod interrupted;
mod manual;
mod output;
mod progress;
mod scheduling;
mod upkeep;

use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use pgkeep_core::{
    BackupMode, Interrupt, LogicalBackupOptions, Overrides, PhysicalBackupOptions, Settings,
    VerifySelection,
};

use crate::args::{
    BackupCommand, Cli, CliBackupMode, Command, FailoverCommand, ScheduleCommand, SyncCommand,
};
use crate::commands::Ctx;

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            // The daemon logs what it runs; a one-off command only what went wrong.
            0 if matches!(cli.command, Command::Schedule(ScheduleCommand::Run)) => "info",
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGKEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

/// The error and its causes, each cause only if the text so far does not already say it (library
/// errors quote their cause in their own message).
fn error_text(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

async fn run(cli: Cli, interrupt: Interrupt) -> anyhow::Result<ExitCode> {
    let overrides = Overrides {
        config: cli.config.clone(),
        repo: cli.repo.clone(),
        cluster: cli.cluster.clone(),
    };
    if let Command::Manual { dir } = &cli.command {
        // Packaging works on the command line alone: no configuration is read.
        return manual::write(dir);
    }
    let settings = Settings::load(&overrides)?;
    let ctx = Ctx {
        settings,
        json: cli.json,
        quiet: cli.quiet,
        progress: Arc::new(progress::CliProgress::new(cli.quiet || cli.json)),
    };
    match cli.command {
        Command::Check => commands::check(&ctx).await,
        Command::Backup(backup) => backup_command(&ctx, backup, interrupt).await,
        Command::List => commands::list(&ctx).await,
        Command::RepairIdentity => commands::repair_identity(&ctx).await,
        Command::AcceptFork { timeline } => commands::accept_fork(&ctx, timeline).await,
        Command::Info { id } => commands::info(&ctx, &id).await,
        Command::Verify { wal: true, .. } => commands::verify_wal(&ctx).await,
        Command::Verify { id, all, .. } => {
            let selection = match (id, all) {
                (Some(id), _) => VerifySelection::Backup(id),
                (None, true) => VerifySelection::All,
                (None, false) => VerifySelection::Newest,
            };
            commands::verify(&ctx, selection).await
        }
        Command::Drill {
            id,
            all_kinds,
            target,
        } => drills::drill(&ctx, id, all_kinds, target, interrupt).await,
        Command::Restore(args) => match (&args.pgdata, &args.db) {
            (Some(pgdata), _) => commands::restore_physical(&ctx, &args, pgdata.clone()).await,
            (None, Some(db)) => commands::restore_logical(&ctx, &args, db, &interrupt).await,
            (None, None) => commands::restore_globals(&ctx, &args).await,
        },
        Command::Failover(FailoverCommand::Status { node }) => {
            commands::failover_status(&ctx, node.as_deref()).await
        }
        Command::Failover(FailoverCommand::Switchover { to, dry_run, node }) => {
            commands::switchover(&ctx, &to, dry_run, node.as_deref()).await
        }
        Command::Failover(FailoverCommand::Promote { force, node }) => {
            commands::promote(&ctx, force, node.as_deref()).await
        }
        Command::Failover(FailoverCommand::Rejoin {
            target,
            reclone,
            node,
        }) => commands::rejoin(&ctx, &target, reclone, node.as_deref()).await,
        Command::Status => scheduling::status(&ctx).await,
        Command::Schedule(ScheduleCommand::List) => scheduling::list(&ctx).await,
        Command::Schedule(ScheduleCommand::Once { job }) => {
            scheduling::once(&ctx, &job, &interrupt).await
        }
        Command::Schedule(ScheduleCommand::Run) => {
            scheduling::run(&ctx, overrides, interrupt).await
        }
        Command::Sync(SyncCommand::Files { node, dry_run }) => {
            commands::sync_files(&ctx, node.as_deref(), dry_run).await
        }
        Command::Expire { confirm, grace } => upkeep::expire(&ctx, confirm, grace.as_deref()).await,
        Command::Pin { id, reason } => upkeep::pin(&ctx, &id, reason.as_deref()).await,
        Command::Unpin { id } => upkeep::unpin(&ctx, &id).await,
        Command::WalPush { path } => commands::wal_push(&ctx, &path).await,
        Command::WalFetch { name, dest } => commands::wal_fetch(&ctx, &name, &dest).await,
        Command::Manual { .. } => unreachable!("written before the settings are read"),
    }
}

/// `backup logical` and `backup physical`: the flags as the library's options.
async fn backup_command(
    ctx: &Ctx,
    backup: BackupCommand,
    interrupt: Interrupt,
) -> anyhow::Result<ExitCode> {
    match backup {
        BackupCommand::Logical {
            databases,
            all,
            globals,
            jobs,
            exclude_table,
            schema_only,
        } => {
            let options = LogicalBackupOptions {
                databases,
                all,
                globals,
                jobs: usize::from(jobs),
                exclude_tables: exclude_table,
                schema_only,
                interrupt,
            };
            commands::backup_logical(ctx, options).await
        }
        BackupCommand::Physical {
            from_standby,
            wal_timeout,
            mode,
        } => {
            let options = PhysicalBackupOptions {
                from_standby,
                wal_timeout: std::time::Duration::from_secs(wal_timeout),
                interrupt,
                mode: match mode {
                    CliBackupMode::Auto => BackupMode::Auto,
                    CliBackupMode::Local => BackupMode::Local,
                    CliBackupMode::Stream => BackupMode::Stream,
                },
            };
            commands::backup_physical(ctx, options).await
        }
    }
}

fn main() -> ExitCode {
    // restore_command must never exit 1..=125 for a failure, not even for a mistyped command line:
    // PostgreSQL would take it for "no such file" and end recovery there.
    let fetching = std::env::args().any(|a| a == "wal-fetch");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if fetching && e.use_stderr() => {
            let _ = e.print();
            return ExitCode::from(exit::WAL_FETCH_FAILED);
        }
        Err(e) => e.exit(),
    };
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgkeep: cannot start the async runtime: {e}");
            return ExitCode::from(match fetching {
                true => exit::WAL_FETCH_FAILED,
                false => exit::FAILURE,
            });
        }
    };
    // Backups stop themselves on an interrupt (their children killed, what they wrote removed);
    // any other command is dropped, which kills its children and removes its staging files.
    // Backups, logical restores and drills clean up after themselves (what they wrote, a database
    // they created, a throwaway cluster); every other command is simply dropped.
    let stops_itself = match &cli.command {
        Command::Backup(_) | Command::Drill { .. } | Command::Schedule(_) => true,
        Command::Restore(args) => args.pgdata.is_none() && args.db.is_some(),
        _ => false,
    };
    let outcome = runtime.block_on(interrupted::run_until_signal(stops_itself, |interrupt| {
        run(cli, interrupt)
    }));
    // A blocking thread still waiting on a killed child must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgkeep: error: {}", error_text(&e));
            ExitCode::from(match (fetching, interrupted::signal_of(&e)) {
                (true, _) => exit::WAL_FETCH_FAILED,
                (false, Some(code)) => code,
                (false, None) => exit::code_for(&e),
            })
        }
    }
}
