//! What a job does: a pgkeep operation with its options ([`Action`]), read from a `[[job]]`'s
//! `action` and option keys, and carried out as a library call ([`Action::run`]) — never a
//! shell string.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use pgkeep_core::{
    DrillOptions, DrillSelection, DrillTarget, Interrupt, LogicalBackupOptions, Manifest,
    NoProgress, PhysicalBackupOptions, Repository, Settings, VerifySelection,
};
use serde::Deserialize;

use crate::error::RunError;

/// A job's action and its checked options.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// `backup logical`.
    BackupLogical {
        /// `db = ["shop"]`: these databases.
        databases: Vec<String>,
        /// `all = true`: every database.
        all: bool,
        /// `globals = true`: the roles and tablespaces too.
        globals: bool,
        /// `jobs = N`: parallel pg_dump workers per database (default 1).
        jobs: usize,
        /// `exclude-table = [...]`: tables left out.
        exclude_tables: Vec<String>,
        /// `schema-only = true`.
        schema_only: bool,
    },
    /// `backup physical`.
    BackupPhysical {
        /// `from-standby = true`.
        from_standby: bool,
        /// `wal-timeout`: how long to wait for the backup's last WAL segment (default 5m).
        wal_timeout: Duration,
        /// `mode = "auto" | "local" | "stream"` (default auto).
        mode: pgkeep_core::BackupMode,
    },
    /// `expire`: the retention policy carried out (as `expire --confirm`).
    Expire {
        /// `grace`: leftovers' grace period instead of `retention.leftover-grace`.
        grace: Option<Duration>,
    },
    /// `drill`: a restore drill.
    Drill {
        /// `backup = "ID"`, `all-kinds = true`, or the newest of each kind.
        selection: DrillSelection,
        /// `target = "latest" | "random"`.
        target: DrillTarget,
    },
    /// `verify`: re-read backups (`backup = "ID"`, `all = true`) or the WAL archive (`wal = true`).
    Verify {
        /// Which backups; `None` with `wal`.
        selection: Option<VerifySelection>,
    },
    /// `sync files`: rsync of the `[sync]` paths from the master.
    SyncFiles {
        /// `node = "a"`: this machine's node (else `failover.local-node`).
        node: Option<String>,
        /// `dry-run = true`.
        dry_run: bool,
    },
}

/// The actions as a `[[job]]` names them, each with its option keys.
pub const ACTIONS: &[(&str, &str)] = &[
    (
        "backup logical",
        "db, all, globals, jobs, exclude-table, schema-only",
    ),
    ("backup physical", "from-standby, wal-timeout"),
    ("expire", "grace"),
    ("drill", "backup, all-kinds, target"),
    ("verify", "backup, all, wal"),
    ("sync files", "node, dry-run"),
];

/// What a successful action did, for the history, the metrics and the notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Done {
    /// One line for a person.
    pub summary: String,
    /// Bytes stored (a backup) or read back (a verify), when the action knows.
    pub bytes: Option<u64>,
    /// The backup made (or drilled).
    pub backup_id: Option<String>,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::BackupLogical { .. } => "backup logical",
            Action::BackupPhysical { .. } => "backup physical",
            Action::Expire { .. } => "expire",
            Action::Drill { .. } => "drill",
            Action::Verify { .. } => "verify",
            Action::SyncFiles { .. } => "sync files",
        })
    }
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct LogicalOptions {
    db: Vec<String>,
    all: bool,
    globals: bool,
    jobs: Option<u16>,
    exclude_table: Vec<String>,
    schema_only: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct PhysicalOptions {
    from_standby: bool,
    wal_timeout: Option<String>,
    mode: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct ExpireOptions {
    grace: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct DrillJobOptions {
    backup: Option<String>,
    all_kinds: bool,
    target: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct VerifyOptions {
    backup: Option<String>,
    all: bool,
    wal: bool,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
struct SyncOptions {
    node: Option<String>,
    dry_run: bool,
}

/// A problem with an action or one of its options: (the key, what is wrong, the fix).
pub(crate) type OptionProblem = (String, String, String);

fn options<T: for<'de> Deserialize<'de>>(
    action: &str,
    table: &toml::Table,
) -> Result<T, OptionProblem> {
    toml::Value::Table(table.clone()).try_into().map_err(|e| {
        let keys = ACTIONS
            .iter()
            .find(|(a, _)| *a == action)
            .map_or("", |a| a.1);
        (
            "(options)".to_string(),
            e.to_string().trim().replace('\n', " "),
            format!("the options of `{action}` are: {keys}"),
        )
    })
}

fn duration(key: &str, text: Option<&str>) -> Result<Option<Duration>, OptionProblem> {
    text.map(|t| pgkeep_core::parse_duration(t).map_err(|e| (key.to_string(), e.problem, e.fix)))
        .transpose()
}

impl Action {
    /// Reads `action` (`backup logical`, or with `-`/`_` for the space) and its options.
    pub(crate) fn parse(action: &str, table: &toml::Table) -> Result<Action, OptionProblem> {
        let name = action.trim().to_ascii_lowercase().replace(['-', '_'], " ");
        Ok(match name.as_str() {
            "backup logical" => {
                let o: LogicalOptions = options(&name, table)?;
                if o.db.is_empty() && !o.all && !o.globals {
                    return Err((
                        "db".into(),
                        "a logical backup job names no database".into(),
                        "add `db = [\"name\"]`, `all = true` or `globals = true`".into(),
                    ));
                }
                Action::BackupLogical {
                    databases: o.db,
                    all: o.all,
                    globals: o.globals,
                    jobs: usize::from(o.jobs.unwrap_or(1).max(1)),
                    exclude_tables: o.exclude_table,
                    schema_only: o.schema_only,
                }
            }
            "backup physical" => {
                let o: PhysicalOptions = options(&name, table)?;
                Action::BackupPhysical {
                    from_standby: o.from_standby,
                    wal_timeout: duration("wal-timeout", o.wal_timeout.as_deref())?
                        .unwrap_or(Duration::from_secs(300)),
                    mode: backup_mode(o.mode.as_deref())?,
                }
            }
            "expire" => {
                let o: ExpireOptions = options(&name, table)?;
                Action::Expire {
                    grace: duration("grace", o.grace.as_deref())?,
                }
            }
            "drill" => drill(options(&name, table)?)?,
            "verify" => {
                let o: VerifyOptions = options(&name, table)?;
                Action::Verify {
                    selection: match (o.wal, o.backup, o.all) {
                        (true, None, false) => None,
                        (true, _, _) => {
                            return Err((
                                "wal".into(),
                                "`wal = true` checks the WAL archive, not backups".into(),
                                "give `wal = true` alone, or make two jobs".into(),
                            ));
                        }
                        (false, Some(id), _) => Some(VerifySelection::Backup(id)),
                        (false, None, true) => Some(VerifySelection::All),
                        (false, None, false) => Some(VerifySelection::Newest),
                    },
                }
            }
            "sync files" => {
                let o: SyncOptions = options(&name, table)?;
                Action::SyncFiles {
                    node: o.node,
                    dry_run: o.dry_run,
                }
            }
            _ => {
                let names: Vec<&str> = ACTIONS.iter().map(|a| a.0).collect();
                return Err((
                    "action".into(),
                    format!("`{action}` is not an action pgkeep can schedule"),
                    format!("write one of: {}", names.join(", ")),
                ));
            }
        })
    }

    /// Carries the action out with `settings` (whose `lock_wait` is the job's), until it ends or
    /// `interrupt` fires.
    pub async fn run(&self, settings: &Settings, interrupt: &Interrupt) -> Result<Done, RunError> {
        match self {
            Action::SyncFiles { node, dry_run } => {
                sync_files(settings, node.as_deref(), *dry_run).await
            }
            _ => {
                let repo = Repository::open(settings).await?;
                self.run_in(settings, &repo, interrupt).await
            }
        }
    }

    async fn run_in(
        &self,
        settings: &Settings,
        repo: &Repository,
        interrupt: &Interrupt,
    ) -> Result<Done, RunError> {
        let progress = Arc::new(NoProgress);
        match self {
            Action::BackupLogical {
                databases,
                all,
                globals,
                jobs,
                exclude_tables,
                schema_only,
            } => {
                let options = LogicalBackupOptions {
                    databases: databases.clone(),
                    all: *all,
                    globals: *globals,
                    jobs: *jobs,
                    exclude_tables: exclude_tables.clone(),
                    schema_only: *schema_only,
                    interrupt: interrupt.clone(),
                };
                let manifest =
                    pgkeep_core::backup_logical(settings, repo, &options, progress).await?;
                Ok(backed_up(&manifest))
            }
            Action::BackupPhysical {
                from_standby,
                wal_timeout,
                mode,
            } => {
                let options = PhysicalBackupOptions {
                    from_standby: *from_standby,
                    wal_timeout: *wal_timeout,
                    interrupt: interrupt.clone(),
                    mode: *mode,
                };
                let manifest =
                    pgkeep_core::backup_physical(settings, repo, &options, progress).await?;
                Ok(backed_up(&manifest))
            }
            Action::Expire { grace } => expire(settings, repo, *grace, interrupt).await,
            Action::Drill { selection, target } => {
                let options = DrillOptions {
                    selection: selection.clone(),
                    target: *target,
                    wal_fetch_program: None,
                    interrupt: interrupt.clone(),
                };
                let run = pgkeep_core::drill(settings, repo, &options, progress).await?;
                drilled(&run)
            }
            Action::Verify { selection: None } => {
                pgkeep_core::verify_wal(repo).await?.result()?;
                Ok(Done {
                    summary: "the WAL archive verified".into(),
                    ..Done::default()
                })
            }
            Action::Verify {
                selection: Some(selection),
            } => {
                let report =
                    pgkeep_core::verify_backups(settings, repo, selection, progress).await?;
                report.result()?;
                Ok(Done {
                    summary: format!("{} backup(s) verified", report.backups.len()),
                    ..Done::default()
                })
            }
            Action::SyncFiles { .. } => unreachable!("sync files needs no repository"),
        }
    }
}

fn backup_mode(mode: Option<&str>) -> Result<pgkeep_core::BackupMode, OptionProblem> {
    use pgkeep_core::BackupMode;
    match mode {
        None | Some("auto") => Ok(BackupMode::Auto),
        Some("local") => Ok(BackupMode::Local),
        Some("stream") => Ok(BackupMode::Stream),
        Some(other) => Err((
            "mode".into(),
            format!("`{other}` is not a backup mode"),
            "write `auto`, `local` or `stream`".into(),
        )),
    }
}

fn drill(o: DrillJobOptions) -> Result<Action, OptionProblem> {
    let target = match o.target.as_deref() {
        None | Some("latest") => DrillTarget::Latest,
        Some("random") => DrillTarget::Random,
        Some(other) => {
            return Err((
                "target".into(),
                format!("`{other}` is not a drill target"),
                "write `latest` or `random`".into(),
            ));
        }
    };
    let selection = match (o.backup, o.all_kinds) {
        (Some(_), true) => {
            return Err((
                "backup".into(),
                "`backup` and `all-kinds` exclude each other".into(),
                "give one of them".into(),
            ));
        }
        (Some(id), false) => DrillSelection::Backup(id),
        (None, true) => DrillSelection::AllKinds,
        (None, false) => DrillSelection::Newest,
    };
    Ok(Action::Drill { selection, target })
}

fn backed_up(manifest: &Manifest) -> Done {
    Done {
        summary: format!("backup {} stored", manifest.id),
        bytes: Some(manifest.stored_size()),
        backup_id: Some(manifest.id.clone()),
    }
}

fn drilled(run: &pgkeep_core::DrillRun) -> Result<Done, RunError> {
    let failed: Vec<String> = run
        .drills
        .iter()
        .filter(|d| !d.ok())
        .map(|d| match &d.record.outcome {
            pgkeep_core::DrillOutcome::Failed { cause } => {
                format!("backup {}: {cause}", d.record.backup)
            }
            pgkeep_core::DrillOutcome::Passed => {
                format!("backup {}: {}", d.record.backup, d.problems.join("; "))
            }
        })
        .chain(run.problems.iter().cloned())
        .collect();
    if !failed.is_empty() {
        return Err(RunError::Failed {
            problem: format!("{} drill(s) failed: {}", failed.len(), failed.join("; ")),
        });
    }
    Ok(Done {
        summary: format!("{} drill(s) passed", run.drills.len()),
        bytes: None,
        backup_id: run.drills.last().map(|d| d.record.backup.clone()),
    })
}

async fn expire(
    settings: &Settings,
    repo: &Repository,
    grace: Option<Duration>,
    interrupt: &Interrupt,
) -> Result<Done, RunError> {
    let _lock = pgkeep_core::lock_work(settings, "expire", interrupt).await?;
    let plan =
        pgkeep_core::plan_expire(settings, repo, &pgkeep_core::ExpireOptions { grace }).await?;
    let report = pgkeep_core::expire(repo, &plan).await?;
    Ok(Done {
        summary: format!(
            "expired {} backup(s), {} WAL file(s), {} leftover(s)",
            report.backups.len(),
            report.wal_files,
            report.leftovers
        ),
        bytes: Some(report.backup_bytes + report.wal_bytes + report.leftover_bytes),
        backup_id: None,
    })
}

async fn sync_files(
    settings: &Settings,
    node: Option<&str>,
    dry_run: bool,
) -> Result<Done, RunError> {
    let pair = pgkeep_failover::Pair::from_settings(settings, node)?;
    let report = pgkeep_failover::sync_files(&pair, dry_run).await?;
    Ok(Done {
        summary: match (report.ran, &report.reason) {
            (true, _) => format!("{} cop(ies) synced", report.copies.len()),
            (false, Some(reason)) => format!("nothing synced: {reason}"),
            (false, None) => "nothing synced".into(),
        },
        ..Done::default()
    })
}
