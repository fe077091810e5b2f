//! The command line as clap parses it: every command, flag and help text. Turning these into
//! library options is `commands`' job.

use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand};

/// The end of `pgkeep --help` and of `man pgkeep`.
const AFTER_LONG_HELP: &str = "\
Files:
  /etc/pgkeep/pgkeep.toml  the configuration (every key documented in it), when neither --config
                           nor PGKEEP_CONFIG is given and ./pgkeep.toml does not exist
  /var/lib/pgkeep          the scheduler's history and alert state (state-dir)
  /run/lock                the work locks shared by the daemon, cron and runs by hand (lock-dir)

Exit codes:
  0    success
  1    the command failed; stderr says what, why and the fix
  2    invalid flags or configuration; nothing was done
  3    `check` found a problem
  130, 143  interrupted by SIGINT or SIGTERM; what the command wrote was removed
  wal-fetch: 1 only for \"no such file\", 200 for every other failure

Environment: PGKEEP_CONFIG, PGKEEP_REPO, PGKEEP_CLUSTER (as the flags), PGKEEP_LOG (a tracing
filter such as debug), and libpq's PGHOST, PGPORT, PGUSER, PGPASSFILE, ... for the connection.

Documentation: /usr/share/doc/pgkeep (cli.md, scheduling.md), and `pgkeep help COMMAND`.";

/// PostgreSQL backup, restore and failover.
#[derive(Debug, Parser)]
#[command(
    name = "pgkeep",
    version,
    about,
    after_long_help = AFTER_LONG_HELP,
    propagate_version = true
)]
pub struct Cli {
    /// Configuration file [default: ./pgkeep.toml, then /etc/pgkeep/pgkeep.toml].
    #[arg(long, global = true, env = "PGKEEP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Repository: file:///path or s3://bucket/prefix (overrides repository.url).
    #[arg(long, global = true, env = "PGKEEP_REPO", value_name = "URL")]
    pub repo: Option<String>,

    /// Cluster name inside the repository (overrides repository.cluster; default main).
    #[arg(long, global = true, env = "PGKEEP_CLUSTER", value_name = "NAME")]
    pub cluster: Option<String>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Preflight: connection, server settings, client programs and repository, each problem with
    /// its fix. Exits 3 when something the configured jobs need is wrong.
    Check,
    /// Take a backup.
    #[command(subcommand)]
    Backup(BackupCommand),
    /// List the backups in the repository and the point-in-time recovery window.
    List,
    /// Show one backup's manifest.
    Info {
        /// The backup id (see `pgkeep list`).
        id: String,
    },
    /// Re-read backups from the repository and check sizes, checksums and archive readability
    /// (pg_restore --list, pg_verifybackup); exits 1 when something is damaged.
    Verify {
        /// The backup to verify [default: the newest].
        id: Option<String>,
        /// Verify every backup.
        #[arg(long, conflicts_with = "id")]
        all: bool,
        /// Check the WAL archive instead: every file readable, no gaps, every timeline with its
        /// history file; timeline forks are reported as notes.
        #[arg(long, conflicts_with_all = ["id", "all"])]
        wal: bool,
    },
    /// Record that timeline N was started on purpose (a restore promoted outside pgkeep), so that
    /// `verify --wal` reports its fork as a note instead of a split brain.
    AcceptFork {
        /// The timeline (as `verify --wal` names it).
        timeline: u32,
    },
    /// Rebuild a missing or damaged `<cluster>/cluster.json` (which server owns the cluster name)
    /// from the backups' manifests; a damaged one is kept beside it. Refused when the manifests
    /// disagree or the record is readable.
    RepairIdentity,
    /// Delete the backups the [retention] policy no longer keeps, the archived WAL no kept
    /// physical backup needs, and leftovers of interrupted runs older than the grace period.
    /// Without --confirm it only prints the plan and changes nothing.
    Expire {
        /// Carry the plan out.
        #[arg(long)]
        confirm: bool,
        /// Leftovers' grace period instead of retention.leftover-grace (e.g. 0s, 30m, 6h).
        #[arg(long, value_name = "DURATION")]
        grace: Option<String>,
    },
    /// Keep a backup whatever the retention policy says (pinning again keeps the pin; with
    /// --reason it replaces the reason).
    Pin {
        /// The backup id (see `pgkeep list`).
        id: String,
        /// Why, for whoever reads the plan later.
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Remove a backup's pin: the retention policy decides again.
    Unpin {
        /// The backup id.
        id: String,
    },
    /// Restore a backup into a throwaway cluster (in [drill] scratch-dir, reachable only through
    /// its own socket), check it, measure RTO and RPO, remove it, and record the result beside the
    /// backup; exits 1 when a drill fails.
    Drill {
        /// The backup to drill [default: the newest backup of each kind there is].
        id: Option<String>,
        /// The newest logical and the newest physical backup; fails when a kind has none.
        #[arg(long, conflicts_with = "id")]
        all_kinds: bool,
        /// Physical: replay the whole archive (latest), or recover to a random time between the
        /// backup's end and the newest archived commit (random) and check that recovery stopped
        /// there.
        #[arg(long, value_enum, default_value_t = CliDrillTarget::Latest, value_name = "TARGET")]
        target: CliDrillTarget,
    },
    /// Restore: a database or the roles from a logical backup (--db, --globals), or a data directory
    /// to a point in time from a physical backup and the WAL archive (--pgdata).
    Restore(RestoreArgs),
    /// One screen: the newest backup of each kind and its age, the recoverable window, the
    /// archiver, the last drill, the jobs' next runs and every active alert. Exits 1 while an
    /// alert is active or the repository cannot be read.
    Status,
    /// The scheduled jobs ([[job]]): list them, run one now, or run the daemon.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// The two-server master/standby pair: status, switchover, promote, rejoin.
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
    /// Packaging: write the man pages (DIR/man1) and the bash, zsh and fish completions
    /// (DIR/completions) generated from these definitions; bin/package calls it for the .deb.
    #[command(hide = true)]
    Manual {
        /// The directory to write into (created when missing).
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCommand {
    /// Each job with its next 5 runs in its time zone, its last run, outcome and duration.
    List,
    /// Run one job now, with the same locks, hooks, history and notifications as the daemon;
    /// exits 1 when the run fails.
    Once {
        /// The job's name.
        job: String,
    },
    /// The daemon: runs the jobs on their schedules and watches for overdue backups and stuck
    /// archiving. SIGTERM/SIGINT stop it (running jobs get [schedule] stop-grace), SIGHUP reloads
    /// the configuration.
    Run,
}

#[derive(Debug, Subcommand)]
pub enum FailoverCommand {
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
    /// Turn a former master into a streaming standby of the current master (pg_rewind, or a fresh
    /// copy with --reclone); it never starts as a primary.
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
pub enum SyncCommand {
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
pub enum BackupCommand {
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
        /// local: read the data directory here, with [backup] jobs parallel workers (pgkeep on
        /// the database host, a primary); stream: pg_basebackup through the server (a remote
        /// host or a standby); auto: local when the server's data directory is readable here.
        #[arg(long, value_enum, default_value_t = CliBackupMode::Auto, value_name = "MODE")]
        mode: CliBackupMode,
    },
}

/// `backup physical --mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliBackupMode {
    /// Local when the data directory is readable here, else stream.
    Auto,
    /// pgkeep reads the data directory itself.
    Local,
    /// pg_basebackup.
    Stream,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["db", "globals", "pgdata"])))]
#[command(group(clap::ArgGroup::new("when").required(true).multiple(true).args(["at", "backup", "lsn", "xid", "name", "immediate", "latest"])))]
#[command(group(clap::ArgGroup::new("target").args(["at", "lsn", "xid", "name", "immediate", "latest"])))]
pub struct RestoreArgs {
    /// The database to restore.
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
    /// Replay the roles and tablespaces (run this first when restoring into a new cluster).
    #[arg(long, conflicts_with_all = ["into", "clean"])]
    pub globals: bool,
    /// With --globals: also apply the backup's attributes, passwords, settings and memberships to
    /// roles that already exist (by default they are skipped and left as they are; this can turn
    /// LOGIN back on for a role that was locked with NOLOGIN).
    #[arg(long, conflicts_with_all = ["db", "pgdata"])]
    pub overwrite_roles: bool,
    /// Logical: the newest backup that finished at or before this time; physical (--pgdata):
    /// recover up to this time. `2026-11-25 15:04:30` (local), `2026-11-25 15:04:30+01`, or
    /// RFC 3339.
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Use this backup (see `pgkeep list`).
    #[arg(long, value_name = "ID")]
    pub backup: Option<String>,
    /// Restore under another name (created for the restore).
    #[arg(long, value_name = "NEW_NAME")]
    pub into: Option<String>,
    /// Parallel pg_restore jobs (above 1 the archive is staged in a temporary file).
    #[arg(long, short = 'j', default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// Replace the contents of an existing database.
    #[arg(long)]
    pub clean: bool,
    /// Physical point-in-time restore into this data directory (empty or absent).
    #[arg(long, value_name = "DIR", conflicts_with_all = ["db", "globals", "into", "clean"])]
    pub pgdata: Option<PathBuf>,
    /// Physical: recover up to this WAL location (`0/3000060`).
    #[arg(long, value_name = "LSN", requires = "pgdata")]
    pub lsn: Option<String>,
    /// Physical: recover up to the commit of this transaction id.
    #[arg(long, value_name = "XID", requires = "pgdata")]
    pub xid: Option<String>,
    /// Physical: recover up to this restore point (pg_create_restore_point).
    #[arg(long, value_name = "NAME", requires = "pgdata")]
    pub name: Option<String>,
    /// Physical: stop as soon as the base backup is consistent.
    #[arg(long, requires = "pgdata")]
    pub immediate: bool,
    /// Physical: replay all archived WAL.
    #[arg(long, requires = "pgdata")]
    pub latest: bool,
    /// Physical: timeline to follow: latest, current (the backup's), or a number.
    #[arg(
        long,
        default_value = "latest",
        value_name = "TIMELINE",
        requires = "pgdata"
    )]
    pub timeline: String,
    /// Physical: what the server does at the target.
    #[arg(long, value_enum, default_value_t = CliTargetAction::Pause, requires = "pgdata")]
    pub target_action: CliTargetAction,
    /// Physical: start the server, wait until it reaches the target, and report where it stopped.
    #[arg(long, requires = "pgdata")]
    pub start: bool,
    /// Physical: port of the restored server (1 to 65535).
    #[arg(long, requires = "pgdata", value_parser = clap::value_parser!(u16).range(1..))]
    pub port: Option<u16>,
    /// Physical: replace the contents of a non-empty --pgdata.
    #[arg(long, requires = "pgdata")]
    pub force: bool,
    /// Physical: keep the backup's archive settings (default: archive_mode = off in the copy, so
    /// it does not archive into the same repository).
    #[arg(long, requires = "pgdata")]
    pub keep_archiving: bool,
    /// Physical: first make the repository's own primary (postgres.conninfo) write a commit and
    /// switch to a new WAL segment, and wait until that segment is archived, so a target of a
    /// minute ago is inside the window.
    #[arg(long, requires = "pgdata")]
    pub switch_wal: bool,
    /// Physical, as root: the user that owns the restored files and runs the server.
    #[arg(long, value_name = "USER", requires = "pgdata")]
    pub owner: Option<String>,
}

/// `--target-action`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CliTargetAction {
    /// Stay read-only at the target for inspection.
    Pause,
    /// End recovery and accept writes.
    Promote,
    /// Shut down at the target.
    Shutdown,
}

/// `drill --target`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CliDrillTarget {
    /// Replay all of the archived WAL.
    Latest,
    /// A random time inside the window the backup can reach.
    Random,
}
