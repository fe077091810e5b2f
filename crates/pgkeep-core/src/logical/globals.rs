//! `restore --globals`: a backup's roles and tablespaces (`pg_dumpall --globals-only`) replayed
//! with psql, the first step of restoring into a new cluster. Roles that already exist are left as
//! they are unless asked for ([`GlobalsOptions::overwrite_roles`]): a live cluster keeps its
//! passwords and the roles an incident runbook locked (`NOLOGIN`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;
use tokio::io::AsyncWriteExt;

use super::restore::{
    BackupChoice, Chosen, MAINTENANCE_DB, check_payload, choose_backup, not_in_backup,
};
use super::roles::{filter_script, script_encoding, without_tablespaces};
use crate::error::{Error, LogicalError};
use crate::exec::{self, ProcessError};
use crate::pg;
use crate::repo::Repository;
use crate::repo::catalog::Manifest;
use crate::repo::lease::{self, LeasePurpose};
use crate::repo::scan::DamagedBackup;
use crate::settings::Settings;
use crate::stream::{Progress, ProgressWriter, fetch_object};

/// How `restore --globals` treats roles that already exist on the server.
#[derive(Debug, Clone, Copy, Default)]
pub struct GlobalsOptions {
    /// Apply the backup's attributes, password, settings, comments and memberships to roles that
    /// already exist (this can turn `LOGIN` back on for a locked role). Off: such roles are
    /// skipped and left exactly as they are.
    pub overwrite_roles: bool,
    /// Leave the tablespaces out (their `CREATE TABLESPACE ... LOCATION`, grants and comments):
    /// for a cluster on the same host as the backup's own server, which must not create files at
    /// that server's tablespace locations. Restore the databases with
    /// [`LogicalRestoreOptions::no_tablespaces`](super::LogicalRestoreOptions) then.
    pub skip_tablespaces: bool,
}

/// How `restore --globals` went.
#[derive(Debug, Clone, Serialize)]
pub struct GlobalsReport {
    /// The backup used.
    pub backup_id: String,
    /// Roles of the backup that did not exist and were created.
    pub created_roles: Vec<String>,
    /// Roles of the backup that already existed and were left as they are (attributes, password,
    /// settings, memberships untouched).
    pub skipped_roles: Vec<String>,
    /// Roles that already existed and were given the backup's attributes and password
    /// ([`GlobalsOptions::overwrite_roles`]).
    pub overwritten_roles: Vec<String>,
    /// Statements that failed only because the object (a tablespace) already exists.
    pub already_existed: usize,
    /// Statements about tablespaces left out ([`GlobalsOptions::skip_tablespaces`]).
    pub tablespace_statements_skipped: usize,
    /// Backups passed over because their manifest cannot be used.
    pub skipped: Vec<DamagedBackup>,
}

/// Replays a backup's roles and tablespaces with psql. The dump is read and its checksums
/// checked before anything runs. Roles that already exist are skipped unless
/// `options.overwrite_roles`; errors that only say a tablespace already exists are counted, not
/// fatal; any other error fails the restore. Safe to repeat. While it runs it holds a lease on
/// the backup, so that `expire` keeps it.
pub async fn restore_globals(
    settings: &Settings,
    repo: &Repository,
    choice: &BackupChoice,
    options: &GlobalsOptions,
    progress: Arc<dyn Progress>,
) -> Result<GlobalsReport, Error> {
    let Chosen {
        backup, skipped, ..
    } = choose_backup(repo, choice, "globals", |m| m.globals().is_some()).await?;
    let id = backup.id.clone();
    lease::restoring(
        repo,
        settings.retention.lease_ttl,
        LeasePurpose::RestoreGlobals,
        &id,
        replay_globals(settings, repo, backup, skipped, options, progress),
    )
    .await
}

/// [`restore_globals`] of the chosen `backup`, under its lease.
async fn replay_globals(
    settings: &Settings,
    repo: &Repository,
    backup: Manifest,
    skipped: Vec<DamagedBackup>,
    options: &GlobalsOptions,
    progress: Arc<dyn Progress>,
) -> Result<GlobalsReport, Error> {
    let object = backup
        .globals()
        .ok_or_else(|| not_in_backup(&backup, "globals"))?;
    let psql = exec::located(
        settings.bin_dir.as_deref(),
        "psql",
        backup.server_version_num / 10_000,
    )?;
    check_payload(repo, &backup, "globals", object).await?;
    let mut script = Vec::new();
    progress.start("globals");
    let mut counted = ProgressWriter::new(&mut script, progress.clone(), "globals");
    fetch_object(repo.storage(), &object.stored, &mut counted).await?;
    progress.finish("globals");
    let encoding = script_encoding(&script);
    let client = pg::connect(&settings.conninfo, Some(MAINTENANCE_DB)).await?;
    let existing = existing_roles(&client, settings, &encoding).await?;
    let (script, tablespace_statements_skipped) = match options.skip_tablespaces {
        true => without_tablespaces(&script),
        false => (script, 0),
    };
    let filtered = filter_script(&script, &existing, options.overwrite_roles);

    let mut cmd = exec::pg_command(&psql, &settings.conninfo, Some(MAINTENANCE_DB));
    cmd.args([
        "-X",
        "-q",
        "--no-password",
        "-v",
        "ON_ERROR_STOP=0",
        "-f",
        "-",
    ]);
    let (status, stderr) = run_with_stdin(cmd, &psql, filtered.script).await?;
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR:")).collect();
    let (benign, real): (Vec<&str>, Vec<&str>) =
        errors.iter().partition(|l| l.contains("already exists"));
    if !status.success() || !real.is_empty() {
        return Err(LogicalError::GlobalsFailed {
            errors: if real.is_empty() {
                stderr.trim().to_string()
            } else {
                real.join("; ")
            },
        }
        .into());
    }
    let existing = display_names(&client, &encoding, filtered.existing).await;
    let (skipped_roles, overwritten_roles) = match options.overwrite_roles {
        true => (vec![], existing),
        false => (existing, vec![]),
    };
    Ok(GlobalsReport {
        backup_id: backup.id,
        created_roles: display_names(&client, &encoding, filtered.created).await,
        skipped_roles,
        overwritten_roles,
        already_existed: benign.len(),
        tablespace_statements_skipped,
        skipped,
    })
}

fn is_utf8(encoding: &str) -> bool {
    matches!(encoding.to_ascii_uppercase().as_str(), "UTF8" | "UTF-8")
}

/// The server's role names, as bytes in the script's encoding. A name that has no equivalent in
/// that encoding cannot appear in the script and is left out.
async fn existing_roles(
    client: &tokio_postgres::Client,
    settings: &Settings,
    encoding: &str,
) -> Result<BTreeSet<Vec<u8>>, Error> {
    let rows = client
        .query("SELECT rolname::text FROM pg_roles", &[])
        .await
        .map_err(|e| pg::query_error(&settings.conninfo, "listing the existing roles", e))?;
    let names = rows.iter().map(|r| r.get::<_, String>(0));
    if is_utf8(encoding) {
        return Ok(names.map(String::into_bytes).collect());
    }
    let mut out = BTreeSet::new();
    for name in names {
        // Each on its own: a name the encoding cannot hold fails only its own query.
        if let Ok(row) = client
            .query_one("SELECT convert_to($1::text, $2)", &[&name, &encoding])
            .await
        {
            out.insert(row.get::<_, Vec<u8>>(0));
        }
    }
    Ok(out)
}

/// Role names from the script (in its encoding) as text, for the report.
async fn display_names(
    client: &tokio_postgres::Client,
    encoding: &str,
    names: BTreeSet<Vec<u8>>,
) -> Vec<String> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let converted = match is_utf8(encoding) {
            true => None,
            false => client
                .query_one("SELECT convert_from($1, $2)", &[&name, &encoding])
                .await
                .ok()
                .map(|row| row.get::<_, String>(0)),
        };
        out.push(converted.unwrap_or_else(|| String::from_utf8_lossy(&name).into_owned()));
    }
    out
}

/// Runs `cmd` with `input` on its stdin; returns its exit status and stderr.
async fn run_with_stdin(
    mut cmd: tokio::process::Command,
    program: &Path,
    input: Vec<u8>,
) -> Result<(std::process::ExitStatus, String), Error> {
    let spawn_error = |source| {
        Error::Process(ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })
    };
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(spawn_error)?;
    let stdin = child.stdin.take();
    let write = async move {
        if let Some(mut stdin) = stdin {
            // A child that stops reading says why in its stderr and exit status.
            let _ = stdin.write_all(&input).await;
        }
    };
    let (_, out) = tokio::join!(write, child.wait_with_output());
    let out = out.map_err(spawn_error)?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}
