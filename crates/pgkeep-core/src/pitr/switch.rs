//! `restore --switch-wal`: before a restore to "a minute ago", the repository's own primary
//! writes a commit stamped now, ends its current WAL segment (`pg_switch_wal()`), and pgkeep
//! waits until that segment is in the archive. The archive then holds the commit that proves a
//! recent target was passed, so recovery can stop there instead of running out of WAL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::error::{Error, PitrError};
use crate::pg::{self, PgError, query_error};
use crate::repo::Repository;
use crate::repo::catalog::BackupKind;
use crate::repo::scan::read_catalog;
use crate::settings::Settings;
use crate::stream::Progress;
use crate::wal::wal_key;

/// What [`switch_wal`] did.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchedWal {
    /// The segment the switch ended, now archived.
    pub segment: String,
    /// Seconds from the switch until the segment was in the archive.
    pub seconds: f64,
}

/// Makes the primary at `settings.conninfo` (it must be the cluster whose physical backups the
/// repository holds, and not in recovery) write a commit, switch to a new WAL segment, and waits
/// up to `timeout` until the segment it ended is archived. Changes nothing else on the server.
pub async fn switch_wal(
    settings: &Settings,
    repo: &Repository,
    timeout: Duration,
    progress: Arc<dyn Progress>,
) -> Result<SwitchedWal, Error> {
    let conninfo = &settings.conninfo;
    let expected = read_catalog(repo)
        .await?
        .backups
        .into_iter()
        .rfind(|b| b.kind == BackupKind::Physical)
        .map(|b| b.system_identifier)
        .ok_or_else(|| PitrError::NoPhysicalBackup {
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
        })?;
    let client = pg::connect(conninfo, None).await?;
    let info = pg::server_info(&client, conninfo).await?;
    if info.in_recovery {
        return Err(PitrError::SwitchOnStandby {
            server: conninfo.server(),
        }
        .into());
    }
    if info.system_identifier != expected {
        return Err(PitrError::SwitchWrongServer {
            server: conninfo.server(),
            actual: info.system_identifier,
            expected,
            repo: repo.storage().url(),
        }
        .into());
    }
    // A transaction with an id writes a commit record, stamped now: the proof, once archived,
    // that recovery passed any earlier target.
    client
        .simple_query("SELECT pg_current_xact_id()")
        .await
        .map_err(|e| {
            query_error(
                conninfo,
                "writing a commit record (pg_current_xact_id())",
                e,
            )
        })?;
    let segment: String = client
        .query_one("SELECT pg_walfile_name(pg_switch_wal())", &[])
        .await
        .map_err(|e| {
            PgError::new(
                conninfo,
                "switching to a new WAL segment (pg_switch_wal())",
                e,
                format!(
                    "connect as a superuser, or GRANT EXECUTE ON FUNCTION pg_switch_wal() TO \"{}\"",
                    conninfo.user
                ),
            )
        })?
        .get(0);
    let key = wal_key(repo, &segment)?;
    let item = format!("waiting for WAL {segment} to be archived");
    progress.start(&item);
    let begun = Instant::now();
    loop {
        match repo.storage().head(&key).await {
            Ok(_) => break,
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e.into()),
        }
        if begun.elapsed() >= timeout {
            progress.finish(&item);
            return Err(PitrError::SwitchNotArchived {
                segment,
                seconds: timeout.as_secs(),
            }
            .into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    progress.finish(&item);
    Ok(SwitchedWal {
        segment,
        seconds: begun.elapsed().as_secs_f64(),
    })
}
