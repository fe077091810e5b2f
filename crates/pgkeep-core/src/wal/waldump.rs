//! What the archive's newest segments hold, read with pg_waldump (which ships with the server):
//! the newest transaction end (commit or abort). Recovery to a time stops only at a commit or abort
//! stamped after the target, so this — not the time the newest segment was archived — is where
//! the times that can be restored to end.

use std::path::Path;

use chrono::{DateTime, NaiveDateTime, Utc};

use super::fetch::read;
use super::timeline::Archive;
use crate::error::Error;
use crate::exec::{self, ProcessError};
use crate::repo::Repository;
use crate::storage::FileError;

/// How many of the newest segments are read before giving up on finding a commit.
pub(crate) const SCAN_SEGMENTS: usize = 8;

/// The newest transaction end the archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NewestCommit {
    /// Its commit (or abort) time, as the server stamped it.
    pub time: DateTime<Utc>,
    /// The segment that holds it.
    pub segment: String,
}

/// The newest commit or abort on the path to timeline `tli`, from the newest
/// [`SCAN_SEGMENTS`] segments; `None` when none of them holds one.
pub(crate) async fn newest_commit(
    repo: &Repository,
    archive: &Archive,
    tli: u32,
    pg_waldump: &Path,
) -> Result<Option<NewestCommit>, Error> {
    for (t, segno) in archive.newest_on_path(tli).into_iter().take(SCAN_SEGMENTS) {
        let segment = archive.name(t, segno);
        if let Some(time) = segment_last_commit(repo, &segment, pg_waldump).await? {
            return Ok(Some(NewestCommit { time, segment }));
        }
    }
    Ok(None)
}

/// The newest commit or abort in one archived segment.
async fn segment_last_commit(
    repo: &Repository,
    segment: &str,
    pg_waldump: &Path,
) -> Result<Option<DateTime<Utc>>, Error> {
    let raw = read(repo, segment).await?;
    let tmp = std::env::temp_dir();
    let dir = tempfile::Builder::new()
        .prefix(".pgkeep-waldump-")
        .tempdir_in(&tmp)
        .map_err(|e| FileError::new("cannot create a scratch directory in", &tmp, e))?;
    let path = dir.path().join(segment);
    tokio::fs::write(&path, &raw)
        .await
        .map_err(|e| FileError::new("cannot write", &path, e))?;
    let mut cmd = tokio::process::Command::new(pg_waldump);
    // pg_waldump prints times in its local time zone with an abbreviation: make it UTC.
    cmd.env("TZ", "UTC")
        .arg("--rmgr=Transaction")
        .arg(&path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = exec::output(&mut cmd, pg_waldump).await?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = last_xact_time(&stdout);
    if !out.status.success() && last.is_none() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A segment whose last record continues into the next one ends in "could not find file";
        // a segment that is not WAL of this server's version is an error.
        if !stderr.contains("could not find file") && !stderr.contains("error in WAL record") {
            return Err(ProcessError::Failed {
                program: pg_waldump.to_path_buf(),
                status: out.status,
                stderr: stderr.trim().to_string(),
            }
            .into());
        }
    }
    Ok(last)
}

/// The time of the last commit or abort record in pg_waldump's output (run with `TZ=UTC`):
/// `rmgr: Transaction ... desc: COMMIT 2026-11-25 14:04:30.123456 UTC; ...`, also
/// `COMMIT_PREPARED`, `ABORT` and `ABORT_PREPARED`.
pub(crate) fn last_xact_time(output: &str) -> Option<DateTime<Utc>> {
    output.lines().rev().find_map(|line| {
        let desc = line.split_once("desc: ")?.1;
        if !(desc.starts_with("COMMIT") || desc.starts_with("ABORT")) {
            return None;
        }
        let end = desc.find(" UTC")?;
        // The time is the 26 characters before " UTC": `2026-11-25 14:04:30.123456`.
        let text = desc.get(end.checked_sub(26)?..end)?;
        NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.6f")
            .ok()
            .map(|t| t.and_utc())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_commit_or_abort_of_pg_waldump_output() {
        let output = "\
rmgr: Transaction len (rec/tot):     66/    66, tx:        722, lsn: 0/015004B0, prev 0/01500438, desc: COMMIT 2026-12-01 23:13:41.951905 UTC; inval msgs: catcache 21; sync
rmgr: Transaction len (rec/tot):     70/    70, tx:        724, lsn: 0/01516618, prev 0/015165D8, desc: ABORT 2026-12-01 23:13:42.202276 UTC; rels: base/5/16384
rmgr: Transaction len (rec/tot):     34/    34, tx:          0, lsn: 0/01516660, prev 0/01516618, desc: ASSIGNMENT xtop 725: subxacts: 726
";
        assert_eq!(
            last_xact_time(output).map(|t| t.to_rfc3339()),
            Some("2026-12-01T23:13:42.202276+00:00".into())
        );
        let prepared = "rmgr: Transaction len (rec/tot): 66/ 66, tx: 0, lsn: 0/01500700, prev 0/015006D0, desc: COMMIT_PREPARED 730: 2026-12-01 23:14:00.000001 UTC";
        assert_eq!(
            last_xact_time(prepared).map(|t| t.to_rfc3339()),
            Some("2026-12-01T23:14:00.000001+00:00".into())
        );
        assert_eq!(last_xact_time(""), None);
        assert_eq!(
            last_xact_time("rmgr: Transaction desc: PREPARE gid x"),
            None
        );
    }
}
