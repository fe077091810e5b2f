//! `pgkeep check`: a preflight of everything the configured jobs depend on — the server, its WAL
//! settings, its data directory, the client programs, and the repository — with a fix for each
//! problem found.

use std::path::Path;

use serde::Serialize;

use crate::exec::{self, CLIENT_TOOLS, ToolInfo};
use crate::pg::{self, PasswordSource, ServerInfo};
use crate::repo::{ClusterIdentity, Repository, open_storage};
use crate::settings::Settings;
use crate::storage::{PutMode, StorageError};
use crate::wal;

/// How serious a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Something the configured jobs need is wrong: `check` fails.
    Error,
    /// Worth fixing, but the configured jobs can run.
    Warning,
}

/// One problem and its fix.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// How serious.
    pub severity: Severity,
    /// What was checked (`connection`, `wal_level`, `pg_dump`, `repository`, ...).
    pub item: String,
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// The connection used.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectionReport {
    /// Connection parameters, without the password.
    pub conninfo: String,
    /// Where the password came from.
    pub password_source: PasswordSource,
    /// Whether the connection succeeded.
    pub connected: bool,
}

/// The data directory as seen from this host.
#[derive(Debug, Clone, Serialize)]
pub struct DataDirReport {
    /// Its path.
    pub path: String,
    /// Whether it exists on this host.
    pub present_here: bool,
    /// Its mode, octal (`0700`), if present.
    pub mode: Option<String>,
    /// Its owner's uid, if present.
    pub owner_uid: Option<u32>,
}

/// The repository's state.
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryReport {
    /// Its URL.
    pub url: String,
    /// The cluster name.
    pub cluster: String,
    /// Whether listing worked.
    pub reachable: bool,
    /// Whether a probe object could be written and deleted.
    pub writable: bool,
    /// The identity recorded for this cluster name, if any.
    pub identity: Option<ClusterIdentity>,
}

/// Everything `check` found.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    /// True when no problem is an [`Severity::Error`].
    pub ok: bool,
    /// The connection.
    pub connection: ConnectionReport,
    /// The server, if the connection worked.
    pub server: Option<ServerInfo>,
    /// The data directory, if known.
    pub data_directory: Option<DataDirReport>,
    /// The client programs.
    pub tools: Vec<ToolInfo>,
    /// The repository, if configured.
    pub repository: Option<RepositoryReport>,
    /// Problems, most serious first.
    pub problems: Vec<Problem>,
}

struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, severity: Severity, item: &str, problem: String, fix: String) {
        self.0.push(Problem {
            severity,
            item: item.to_string(),
            problem,
            fix,
        });
    }

    /// Adds an error whose message ends in `\n  fix: ...`, split into problem and fix.
    fn add_error(&mut self, item: &str, error: &dyn std::fmt::Display) {
        let text = error.to_string();
        let (problem, fix) = match text.split_once("\n  fix: ") {
            Some((problem, fix)) => (problem.to_string(), fix.to_string()),
            None => (text, "see the message".to_string()),
        };
        self.add(Severity::Error, item, problem, fix);
    }
}

fn check_wal_settings(settings: &Settings, server: &ServerInfo, problems: &mut Problems) {
    let archive_needed = if settings.wal_archive {
        Severity::Error
    } else {
        Severity::Warning
    };
    if server.wal_level == "minimal" {
        problems.add(
            archive_needed,
            "wal_level",
            "wal_level is minimal: physical backups and WAL archiving are impossible".into(),
            "set wal_level = replica in postgresql.conf and restart PostgreSQL".into(),
        );
    }
    if server.archive_mode == "off" {
        problems.add(
            archive_needed,
            "archive_mode",
            "archive_mode is off: WAL is not archived, so point-in-time recovery is impossible"
                .into(),
            "set archive_mode = on and archive_command = 'pgkeep wal-push %p' in postgresql.conf, \
             restart PostgreSQL, and set wal.archive = true in the pgkeep configuration"
                .into(),
        );
    } else if settings.wal_archive && !calls_wal_push(&server.archive_command) {
        problems.add(
            Severity::Error,
            "archive_command",
            format!(
                "archive_command is `{}`, which does not call pgkeep wal-push",
                server.archive_command
            ),
            "set archive_command = 'pgkeep wal-push %p' and reload PostgreSQL".into(),
        );
    }
}

fn check_data_dir(
    settings: &Settings,
    server: Option<&ServerInfo>,
    problems: &mut Problems,
) -> Option<DataDirReport> {
    use std::os::unix::fs::MetadataExt;
    let server_dir = server.and_then(|s| s.data_directory.clone());
    let path = settings
        .pgdata
        .as_ref()
        .map(|p| p.display().to_string())
        .or(server_dir.clone())?;
    if let (Some(configured), Some(actual)) = (&settings.pgdata, &server_dir)
        && Path::new(actual) != configured.as_path()
    {
        problems.add(
            Severity::Warning,
            "data_directory",
            format!(
                "postgres.pgdata is {} but the server's data_directory is {actual}",
                configured.display()
            ),
            "correct postgres.pgdata, or check that pgkeep connects to the right server".into(),
        );
    }
    let meta = std::fs::metadata(&path).ok();
    let mode = meta.as_ref().map(|m| m.mode() & 0o7777);
    if let Some(mode) = mode
        && mode & 0o027 != 0
    {
        problems.add(
            Severity::Warning,
            "data_directory",
            format!("{path} has mode {mode:04o}; PostgreSQL requires 0700 or 0750"),
            format!("chmod 0700 {path}"),
        );
    }
    Some(DataDirReport {
        present_here: meta.is_some(),
        mode: mode.map(|m| format!("{m:04o}")),
        owner_uid: meta.as_ref().map(MetadataExt::uid),
        path,
    })
}

fn check_tools(tools: &[ToolInfo], server: Option<&ServerInfo>, problems: &mut Problems) {
    for tool in tools {
        if let Some(e) = exec::misfit(tool, server.map(|s| s.major)) {
            problems.add(Severity::Error, &tool.name, e.problem(), e.fix());
        }
    }
}

async fn check_repository(
    settings: &Settings,
    server: Option<&ServerInfo>,
    problems: &mut Problems,
) -> Option<RepositoryReport> {
    let Some(location) = &settings.repo else {
        problems.add(
            Severity::Error,
            "repository",
            "no repository is configured".into(),
            "pass --repo file:///path or --repo s3://bucket/prefix, or set repository.url".into(),
        );
        return None;
    };
    let storage = open_storage(location, &settings.s3).await;
    let repo = Repository::new(storage, settings.cluster.clone());
    let mut report = RepositoryReport {
        url: repo.storage().url(),
        cluster: settings.cluster.clone(),
        reachable: false,
        writable: false,
        identity: None,
    };
    match repo.storage().list(&repo.key("")).await {
        Ok(_) => {}
        // A new repository: the probe below creates its directory, as the first backup would.
        Err(StorageError::RootMissing { path }) => problems.add(
            Severity::Warning,
            "repository",
            format!("{} did not exist; this check created it", path.display()),
            "if the repository should be on a disk of its own, check that it is mounted".into(),
        ),
        Err(e) => {
            problems.add_error("repository", &e);
            return Some(report);
        }
    }
    report.reachable = true;
    report.writable = probe_writes(&repo, problems).await;
    match repo.identity().await {
        Ok(identity) => {
            if let (Some(identity), Some(server)) = (&identity, server)
                && (identity.system_identifier != server.system_identifier
                    || identity.pg_major != server.major)
            {
                problems.add(
                    Severity::Error,
                    "repository",
                    format!(
                        "cluster name `{}` in {} belongs to system identifier {} (PostgreSQL {}), \
                         not to this server ({}, PostgreSQL {})",
                        settings.cluster,
                        report.url,
                        identity.system_identifier,
                        identity.pg_major,
                        server.system_identifier,
                        server.major
                    ),
                    "use another --cluster name for this server, or another repository".into(),
                );
            }
            if identity.is_none() {
                check_missing_identity(&repo, server, problems).await;
            }
            report.identity = identity;
        }
        Err(e) => problems.add_error("repository", &e),
    }
    Some(report)
}

/// Without `cluster.json`: an error when the repository holds backups under the name (writes are
/// refused until it is back) or WAL of another server than this one, a warning when it holds only
/// this server's WAL (the first backup records it).
async fn check_missing_identity(
    repo: &Repository,
    server: Option<&ServerInfo>,
    problems: &mut Problems,
) {
    let evidence = match wal::IdentityEvidence::gather(repo).await {
        Ok(evidence) => evidence,
        Err(e) => return problems.add_error("repository", &e),
    };
    if evidence.holds_backups() {
        return problems.add_error("repository", &evidence.missing(repo));
    }
    if let Some(server) = server
        && let Err(e) = evidence.check_wal(repo, &server.system_identifier)
    {
        return problems.add_error("repository", &e);
    }
    if evidence.wal_files > 0 {
        problems.add(
            Severity::Warning,
            "repository",
            format!(
                "{} has no identity record yet, and holds {}",
                repo.identity_key(),
                evidence.describe()
            ),
            "take a backup: the first backup records which server owns the cluster name".into(),
        );
    }
}

/// Writes and deletes a probe object where the jobs write: beside the identity record, in a new
/// directory under `backups/` (as each backup makes one), under `wal/`, and under `leases/`
/// (where running backups and restores hold their lease). Returns whether all
/// of them worked; each failure is a problem that names the path and the storage's own error.
async fn probe_writes(repo: &Repository, problems: &mut Problems) -> bool {
    let tag = format!(".check-{:016x}", rand::random::<u64>());
    let probes = [
        (repo.key(&tag), None),
        (
            repo.key(&format!("backups/{tag}/probe")),
            Some(repo.key(&format!("backups/{tag}/"))),
        ),
        (
            repo.key(&format!("wal/{tag}/probe")),
            Some(repo.key(&format!("wal/{tag}/"))),
        ),
        (repo.key(&format!("leases/{tag}")), None),
    ];
    let mut writable = true;
    for (probe, dir) in probes {
        let storage = repo.storage();
        if let Err(e) = storage
            .put_bytes(&probe, b"pgkeep check probe\n", PutMode::Create)
            .await
        {
            problems.add_error("repository", &e);
            writable = false;
            // The put may have made the directory before it failed.
            if let Some(dir) = &dir {
                let _ = storage.remove_empty_dir(dir).await;
            }
            continue;
        }
        let removed = match storage.delete(&probe).await {
            Ok(()) => match &dir {
                Some(dir) => storage.remove_empty_dir(dir).await,
                None => Ok(()),
            },
            Err(e) => Err(e),
        };
        if let Err(e) = removed {
            problems.add(
                Severity::Error,
                "repository",
                format!("a probe object could be written but not removed: {e}"),
                format!(
                    "allow deletes for pgkeep (a failed backup removes what it wrote); remove \
                     {probe} by hand"
                ),
            );
            writable = false;
        }
    }
    writable
}

/// Runs every check. Never fails: whatever goes wrong is a [`Problem`] in the report.
pub async fn check(settings: &Settings) -> CheckReport {
    let mut problems = Problems(Vec::new());
    let mut connection = ConnectionReport {
        conninfo: settings.conninfo.to_string(),
        password_source: settings.conninfo.password_source().clone(),
        connected: false,
    };
    let server = match pg::connect(&settings.conninfo, None).await {
        Ok(client) => {
            connection.connected = true;
            match pg::server_info(&client, &settings.conninfo).await {
                Ok(info) => Some(info),
                Err(e) => {
                    problems.add_error("server", &e);
                    None
                }
            }
        }
        Err(e) => {
            problems.add_error("connection", &e);
            None
        }
    };
    if let Some(server) = &server {
        check_wal_settings(settings, server, &mut problems);
    }
    let data_directory = check_data_dir(settings, server.as_ref(), &mut problems);
    let mut tools = Vec::new();
    for name in CLIENT_TOOLS {
        tools.push(
            exec::inspect(
                name,
                settings.bin_dir.as_deref(),
                server.as_ref().map(|s| s.major),
            )
            .await,
        );
    }
    check_tools(&tools, server.as_ref(), &mut problems);
    let repository = check_repository(settings, server.as_ref(), &mut problems).await;
    problems.0.sort_by_key(|p| p.severity != Severity::Error);
    CheckReport {
        ok: problems.0.iter().all(|p| p.severity != Severity::Error),
        connection,
        server,
        data_directory,
        tools,
        repository,
        problems: problems.0,
    }
}

/// Whether an archive_command runs `pgkeep ... wal-push` (a path and global flags may come between).
fn calls_wal_push(command: &str) -> bool {
    let words: Vec<&str> = command.split_whitespace().collect();
    words.iter().enumerate().any(|(i, w)| {
        w.trim_matches(|c| c == '\'' || c == '"')
            .ends_with("pgkeep")
            && words[i + 1..].contains(&"wal-push")
    })
}

#[cfg(test)]
mod archive_command_tests {
    #[test]
    fn wal_push_is_recognized_with_paths_and_flags() {
        for yes in [
            "pgkeep wal-push %p",
            "/usr/local/bin/pgkeep --config /etc/pgkeep/pgkeep.toml wal-push %p",
            "'/opt/my dir/pgkeep' wal-push --config x %p",
        ] {
            assert!(super::calls_wal_push(yes), "{yes}");
        }
        for no in [
            "(disabled)",
            "cp %p /archive/%f",
            "pgkeep-wal-push %p",
            "wal-push pgkeep",
        ] {
            assert!(!super::calls_wal_push(no), "{no}");
        }
    }
}
