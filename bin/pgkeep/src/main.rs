//! `pgkeep`: the command line over `pgkeep-core`. It parses flags, prints human or JSON output, and
//! maps failures to the exit codes documented in docs/cli.md.

mod exit;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{ArgAction, Args, Parser, Subcommand};
use pgkeep_core::logical::{self, BackupChoice, LogicalBackupOptions};
use pgkeep_core::{Overrides, Repository, Settings, catalog, physical, wal};
use pgkeep_failover::Pair;

/// PostgreSQL backup, restore and failover.
#[derive(Debug, Parser)]
#[command(name = "pgkeep", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file [default: ./pgkeep.toml, then /etc/pgkeep/pgkeep.toml].
    #[arg(long, global = true, env = "PGKEEP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Repository: file:///path or s3://bucket/prefix (overrides repository.url).
    #[arg(long, global = true, env = "PGKEEP_REPO", value_name = "URL")]
    repo: Option<String>,

    /// Cluster name inside the repository (overrides repository.cluster; default main).
    #[arg(long, global = true, env = "PGKEEP_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Preflight: connection, server settings, client programs and repository, each problem with
    /// its fix. Exits 3 when something the configured jobs need is wrong.
    Check,
    /// Take a backup.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// List the backups in the repository.
    List,
    /// Show one backup's manifest.
    Info {
        /// The backup id (see `pgkeep list`).
        id: String,
    },
    /// Re-read backups from the repository and check sizes, checksums and archive readability.
    Verify {
        /// The backup to verify [default: the newest].
        id: Option<String>,
        /// Verify every backup.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Check the WAL archive instead: every file readable, no gaps, no timeline forks.
        #[arg(long, conflicts_with_all = ["id", "all"])]
        wal: bool,
    },
    /// Restore a database (or the roles) from a logical backup.
    Restore(RestoreArgs),
    /// The two-server master/standby pair: status.
    #[command(subcommand)]
    Failover(FailoverCommand),
    /// Replicate files from the master to the other nodes.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Archive one WAL file: `archive_command = 'pgkeep wal-push %p'`. Exits 0 once it is durable
    /// (or the archive already holds the same content), 1 otherwise.
    WalPush {
        /// The file (PostgreSQL's %p).
        path: PathBuf,
    },
    /// Restore one archived WAL file: `restore_command = 'pgkeep wal-fetch %f %p'`. Exits 0 when
    /// restored, 1 only when the archive has no such file, 200 on any other failure (PostgreSQL then
    /// stops instead of ending recovery early).
    WalFetch {
        /// The file name asked for (%f).
        name: String,
        /// Where to write it (%p).
        dest: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum FailoverCommand {
    /// Each node's marker, PostgreSQL role, timeline, LSNs and lag, and the pair's problems. Exits 3
    /// when there is a problem.
    Status {
        /// This machine's node (overrides failover.local-node).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Planned switchover: checks, final file sync, stop services and PostgreSQL on the master,
    /// wait for the standby to replay everything, move the marker, promote, start services, hooks.
    /// A rerun after an interruption continues where it stopped.
    Switchover {
        /// The standby to become the master.
        #[arg(long, value_name = "NODE")]
        to: String,
        /// Print the plan with the live values; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// This machine's node (overrides failover.local-node).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Unplanned: promote this machine's standby when the master is gone; creates the marker,
    /// starts services, runs hooks, and records that the old master must be rejoined.
    Promote {
        /// Promote even though the old master still answers as a primary.
        #[arg(long)]
        force: bool,
        /// This machine's node (overrides failover.local-node).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
    /// Turn a former master into a streaming standby of the current master (pg_rewind).
    Rejoin {
        /// The former master.
        target: String,
        /// Copy the master afresh with pg_basebackup instead of pg_rewind (the node's data
        /// directory is emptied first).
        #[arg(long)]
        reclone: bool,
        /// This machine's node (overrides failover.local-node).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum SyncCommand {
    /// rsync the [sync] paths from this node, if it is the master, to the other nodes. On a node
    /// without the marker it does nothing and exits 0.
    Files {
        /// This machine's node (overrides failover.local-node).
        #[arg(long, value_name = "NAME")]
        node: Option<String>,
        /// Show what would be copied and deleted (rsync --dry-run).
        #[arg(long)]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BackupCommand {
    /// pg_dump each database (custom format) and pg_dumpall --globals-only into the repository.
    Logical {
        /// A database to back up (repeatable).
        #[arg(long = "db", value_name = "NAME", required_unless_present_any = ["all", "globals"])]
        databases: Vec<String>,
        /// Every connectable database except templates (implies --globals).
        #[arg(long, conflicts_with = "databases")]
        all: bool,
        /// Also store roles and tablespaces (pg_dumpall --globals-only).
        #[arg(long)]
        globals: bool,
        /// Databases dumped at once.
        #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
        jobs: u16,
        /// Leave out tables matching this pg_dump pattern (repeatable).
        #[arg(long, value_name = "PATTERN")]
        exclude_table: Vec<String>,
        /// Only the schema, no data.
        #[arg(long)]
        schema_only: bool,
    },
    /// pg_basebackup (tar, fast checkpoint) into the repository; recorded once its WAL is archived.
    Physical {
        /// The server is a standby.
        #[arg(long)]
        from_standby: bool,
        /// Seconds to wait for the backup's last WAL segment to be archived.
        #[arg(long, default_value_t = 300, value_name = "SECS")]
        wal_timeout: u64,
    },
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["db", "globals", "pgdata"])))]
#[command(group(clap::ArgGroup::new("when").required(true).multiple(true).args(["at", "backup", "lsn", "xid", "name", "immediate", "latest"])))]
#[command(group(clap::ArgGroup::new("target").args(["at", "lsn", "xid", "name", "immediate", "latest"])))]
struct RestoreArgs {
    /// The database to restore.
    #[arg(long, value_name = "NAME")]
    db: Option<String>,
    /// Replay the roles and tablespaces (run this first when restoring into a new cluster).
    #[arg(long, conflicts_with_all = ["into", "clean"])]
    globals: bool,
    /// Use the newest backup that finished at or before this time: `2026-11-25 15:04:30` (local),
    /// `2026-11-25 15:04:30+01`, or RFC 3339.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    /// Use this backup (see `pgkeep list`).
    #[arg(long, value_name = "ID")]
    backup: Option<String>,
    /// Restore under another name (created for the restore).
    #[arg(long, value_name = "NEW_NAME")]
    into: Option<String>,
    /// Parallel pg_restore jobs (above 1 the archive is staged in a temporary file).
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    jobs: u16,
    /// Replace the contents of an existing database.
    #[arg(long)]
    clean: bool,
    /// Physical point-in-time restore into this data directory (empty or absent).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["db", "globals", "into", "clean"])]
    pgdata: Option<PathBuf>,
    /// Physical: recover up to this WAL location (`0/3000060`).
    #[arg(long, value_name = "LSN", requires = "pgdata")]
    lsn: Option<String>,
    /// Physical: recover up to the commit of this transaction id.
    #[arg(long, value_name = "XID", requires = "pgdata")]
    xid: Option<String>,
    /// Physical: recover up to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME", requires = "pgdata")]
    name: Option<String>,
    /// Physical: stop as soon as the base backup is consistent.
    #[arg(long, requires = "pgdata")]
    immediate: bool,
    /// Physical: replay all archived WAL.
    #[arg(long, requires = "pgdata")]
    latest: bool,
    /// Physical: timeline to follow: latest, current (the backup's), or a number.
    #[arg(
        long,
        default_value = "latest",
        value_name = "TIMELINE",
        requires = "pgdata"
    )]
    timeline: String,
    /// Physical: what the server does at the target.
    #[arg(long, value_enum, default_value_t = CliTargetAction::Pause, requires = "pgdata")]
    target_action: CliTargetAction,
    /// Physical: start the server, wait until it reaches the target, and report where it stopped.
    #[arg(long, requires = "pgdata")]
    start: bool,
    /// Physical: port of the restored server.
    #[arg(long, requires = "pgdata")]
    port: Option<u16>,
    /// Physical: replace the contents of a non-empty --pgdata.
    #[arg(long, requires = "pgdata")]
    force: bool,
    /// Physical: keep the backup's archive settings (default: archive_mode = off in the copy, so
    /// it does not archive into the same repository).
    #[arg(long, requires = "pgdata")]
    keep_archiving: bool,
    /// Physical, as root: the user that owns the restored files and runs the server.
    #[arg(long, value_name = "USER", requires = "pgdata")]
    owner: Option<String>,
}

/// `--target-action`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CliTargetAction {
    /// Stay read-only at the target for inspection.
    Pause,
    /// End recovery and accept writes.
    Promote,
    /// Shut down at the target.
    Shutdown,
}

/// An invalid value found after parsing (exit code 2).
fn usage(message: String) -> anyhow::Error {
    anyhow::Error::new(exit::UsageError(message))
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
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

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints a finished backup: its manifest as JSON, or the summary.
fn backup_done(
    json: bool,
    manifest: &catalog::Manifest,
    progress: &progress::CliProgress,
) -> anyhow::Result<ExitCode> {
    progress.clear();
    if json {
        print_json(manifest)?;
    } else {
        print!("{}", output::backup_summary(manifest));
    }
    Ok(ExitCode::SUCCESS)
}

/// `restore --pgdata`: plan (printed), then restore.
async fn restore_physical(
    json: bool,
    settings: &Settings,
    repo: &Repository,
    args: RestoreArgs,
    progress: Arc<progress::CliProgress>,
) -> anyhow::Result<ExitCode> {
    let target = if let Some(at) = &args.at {
        physical::Target::Time(
            pgkeep_core::time::parse_time(at)
                .map_err(|problem| usage(format!("--at: {problem}")))?,
        )
    } else if let Some(lsn) = &args.lsn {
        physical::Target::Lsn(wal::Lsn::parse(lsn).ok_or_else(|| {
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
        physical::Target::Xid(xid.clone())
    } else if let Some(name) = &args.name {
        physical::Target::Name(name.clone())
    } else if args.latest {
        physical::Target::Latest
    } else {
        physical::Target::Immediate
    };
    let request = physical::RestoreRequest {
        target,
        backup: args.backup.clone(),
        timeline: args
            .timeline
            .parse()
            .map_err(|problem| usage(format!("--timeline: {problem}")))?,
        pgdata: std::path::absolute(args.pgdata.clone().expect("checked by the caller"))
            .context("--pgdata")?,
        force: args.force,
    };
    let plan = physical::plan_restore(repo, &request).await?;
    if !json {
        eprint!("{}", output::physical_plan(&plan));
    }
    let options = physical::RestoreOptions {
        start: args.start,
        target_action: match args.target_action {
            CliTargetAction::Pause => physical::TargetAction::Pause,
            CliTargetAction::Promote => physical::TargetAction::Promote,
            CliTargetAction::Shutdown => physical::TargetAction::Shutdown,
        },
        port: args.port,
        keep_archiving: args.keep_archiving,
        owner: args.owner.clone(),
    };
    let report = physical::restore(settings, repo, &plan, &options, progress.clone()).await?;
    progress.clear();
    if json {
        print_json(&serde_json::json!({ "plan": plan, "report": report }))?;
    } else {
        print!("{}", output::physical_report(&plan, &report));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&Overrides {
        config: cli.config.clone(),
        repo: cli.repo.clone(),
        cluster: cli.cluster.clone(),
    })?;
    let progress = Arc::new(progress::CliProgress::new(cli.quiet || cli.json));
    match cli.command {
        Command::Backup(BackupCommand::Logical {
            databases,
            all,
            globals,
            jobs,
            exclude_table,
            schema_only,
        }) => {
            let repo = Repository::open(&settings).await?;
            let options = LogicalBackupOptions {
                databases,
                all,
                globals: globals || all,
                jobs: usize::from(jobs),
                exclude_tables: exclude_table,
                schema_only,
            };
            let manifest = logical::backup(&settings, &repo, &options, progress.clone())
                .await
                .context("backup failed; nothing was recorded as a backup")?;
            backup_done(cli.json, &manifest, &progress)
        }
        Command::Backup(BackupCommand::Physical {
            from_standby,
            wal_timeout,
        }) => {
            let repo = Repository::open(&settings).await?;
            let options = physical::PhysicalBackupOptions {
                from_standby,
                wal_timeout: std::time::Duration::from_secs(wal_timeout),
            };
            let manifest = physical::backup(&settings, &repo, &options, progress.clone())
                .await
                .context("backup failed; nothing was recorded as a backup")?;
            backup_done(cli.json, &manifest, &progress)
        }
        Command::List => {
            let repo = Repository::open(&settings).await?;
            let backups = catalog::list_backups(&repo).await?;
            let window = physical::recoverable_window(&repo, &backups).await?;
            if cli.json {
                print_json(&output::list_json(&repo, &backups, &window))?;
            } else {
                print!("{}", output::list_table(&repo, &backups, &window));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { id } => {
            let repo = Repository::open(&settings).await?;
            let manifest = catalog::find_backup(&repo, &id).await?;
            if cli.json {
                print_json(&manifest)?;
            } else {
                print!("{}", output::info(&manifest));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { wal: true, .. } => {
            let repo = Repository::open(&settings).await?;
            let backups = catalog::list_backups(&repo).await?;
            let report = wal::verify_archive(&repo, physical::segment_size(&backups)).await?;
            if cli.json {
                print_json(&report)?;
            } else {
                print!("{}", output::wal_report(&report));
            }
            if !report.problems.is_empty() {
                anyhow::bail!(
                    "verify --wal found {} problem(s) in the WAL archive\n  fix: recovery stops at a gap or a damaged file: push the missing files from the server's pg_wal if they still exist, and take a new base backup so that restores need not cross them",
                    report.problems.len()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id, all, .. } => {
            let repo = Repository::open(&settings).await?;
            let backups = match (id, all) {
                (Some(id), _) => vec![catalog::find_backup(&repo, &id).await?],
                (None, true) => catalog::list_backups(&repo).await?,
                (None, false) => catalog::list_backups(&repo)
                    .await?
                    .pop()
                    .into_iter()
                    .collect(),
            };
            if backups.is_empty() {
                anyhow::bail!(
                    "the repository {} holds no backup of cluster {}\n  fix: check --repo and --cluster, or take a backup first",
                    repo.storage().url(),
                    repo.cluster()
                );
            }
            let checks = logical::verify(&settings, &repo, &backups, progress.clone()).await?;
            progress.clear();
            if cli.json {
                print_json(&checks)?;
            } else {
                print!("{}", output::verify_report(&checks));
            }
            let bad: usize = checks
                .iter()
                .map(|b| b.objects.iter().filter(|o| !o.ok).count())
                .sum();
            if bad > 0 {
                anyhow::bail!(
                    "verify found {bad} damaged object(s)\n  fix: do not restore from the backups marked FAILED; take a new backup and find the cause (disk, storage, tampering)"
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Restore(args) if args.pgdata.is_some() => {
            let repo = Repository::open(&settings).await?;
            restore_physical(cli.json, &settings, &repo, args, progress).await
        }
        Command::Restore(args) => {
            let repo = Repository::open(&settings).await?;
            let choice = match (&args.at, &args.backup) {
                (Some(at), _) => BackupChoice::At(
                    pgkeep_core::time::parse_time(at)
                        .map_err(|problem| usage(format!("--at: {problem}")))?,
                ),
                (None, Some(id)) => BackupChoice::Id(id.clone()),
                (None, None) => unreachable!("clap requires --at or --backup"),
            };
            if args.globals {
                let report =
                    logical::restore_globals(&settings, &repo, &choice, progress.clone()).await?;
                progress.clear();
                if cli.json {
                    print_json(&report)?;
                } else {
                    println!(
                        "restored roles and tablespaces from backup {} ({} already existed)",
                        report.backup_id, report.already_existed
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let db = args.db.clone().unwrap_or_default();
            let plan = logical::plan_restore(&repo, &db, &choice, args.into.as_deref()).await?;
            if !cli.json {
                eprint!("{}", output::restore_plan(&plan));
            }
            let report = logical::restore(
                &settings,
                &repo,
                &plan,
                usize::from(args.jobs),
                args.clean,
                progress.clone(),
            )
            .await?;
            progress.clear();
            if cli.json {
                print_json(&serde_json::json!({ "plan": plan, "report": report }))?;
            } else {
                print!("{}", output::restore_report(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Failover(FailoverCommand::Status { node }) => {
            let pair = Pair::from_settings(&settings, node.as_deref())?;
            let status = pgkeep_failover::status::status(&pair).await;
            if cli.json {
                print_json(&status)?;
            } else {
                print!("{}", output::pair_status(&status));
            }
            Ok(if status.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::CHECK_FAILED)
            })
        }
        Command::Failover(FailoverCommand::Switchover { to, dry_run, node }) => {
            let pair = Pair::from_settings(&settings, node.as_deref())?;
            let report = pgkeep_failover::switchover::switchover(
                &pair,
                &to,
                dry_run,
                std::time::Duration::from_secs(settings.failover.catch_up_timeout.unwrap_or(60)),
                &settings.failover.hooks,
            )
            .await?;
            if cli.json {
                print_json(&report)?;
            } else {
                print!("{}", output::switchover_report(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Failover(FailoverCommand::Promote { force, node }) => {
            let pair = Pair::from_settings(&settings, node.as_deref())?;
            let report =
                pgkeep_failover::promote::promote(&pair, force, &settings.failover.hooks).await?;
            if cli.json {
                print_json(&report)?;
            } else {
                println!(
                    "{} is the master now; {} must be rejoined (`pgkeep failover rejoin NODE`) before it runs again",
                    report.promoted,
                    report.must_rejoin.join(", ")
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Failover(FailoverCommand::Rejoin {
            target,
            reclone,
            node,
        }) => {
            let pair = Pair::from_settings(&settings, node.as_deref())?;
            let report = pgkeep_failover::promote::rejoin(&pair, &target, reclone).await?;
            if cli.json {
                print_json(&report)?;
            } else {
                println!(
                    "{} is a streaming standby of {} ({})",
                    report.node, report.master, report.method
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Sync(SyncCommand::Files { node, dry_run }) => {
            let pair = Pair::from_settings(&settings, node.as_deref())?;
            let report = pgkeep_failover::sync::sync_files(&pair, dry_run).await?;
            if cli.json {
                print_json(&report)?;
            } else {
                print!("{}", output::sync_report(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WalPush { path } => {
            let repo = Repository::open(&settings).await?;
            let pushed = wal::push(&repo, &path, settings.compression)
                .await
                .with_context(|| format!("wal-push {} failed", path.display()))?;
            if pushed == wal::Pushed::AlreadyThere {
                tracing::info!(
                    "{}: the archive already holds this exact file",
                    path.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::WalFetch { name, dest } => {
            let repo = Repository::open(&settings).await?;
            match wal::fetch(&repo, &name, &dest)
                .await
                .with_context(|| format!("wal-fetch {name} failed"))?
            {
                wal::Fetched::Restored(_) => Ok(ExitCode::SUCCESS),
                wal::Fetched::NotFound => {
                    if !cli.quiet {
                        eprintln!(
                            "pgkeep wal-fetch: {name} is not in the archive ({})",
                            repo.storage().url()
                        );
                    }
                    Ok(ExitCode::from(exit::WAL_NOT_FOUND))
                }
            }
        }
        Command::Check => {
            let report = pgkeep_core::check(&settings).await;
            if cli.json {
                print_json(&report)?;
            } else {
                print!("{}", output::check_report(&report));
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::CHECK_FAILED)
            })
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
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgkeep: error: {}", error_text(&e));
            ExitCode::from(match fetching {
                true => exit::WAL_FETCH_FAILED,
                false => exit::code_for(&e),
            })
        }
    }
}
