//! `pgkeep sync files`: rsync of the `[sync]` paths from the master to every other node.
//!
//! Cron runs it on both servers. It sends only from the node that holds the marker and whose
//! PostgreSQL is the primary, only to nodes without the marker, only from a source that holds the
//! sentinel file (an empty or unmounted source must never wipe a peer), under the failover lock.

use std::path::{Path, PathBuf};

use pgkeep_core::shell_quote;
use serde::Serialize;

use crate::error::FailoverError;
use crate::node::{Node, Pair, Transport};

/// The sentinel file's default name.
pub const DEFAULT_SENTINEL: &str = ".pgkeep-sync";

/// What one rsync run did.
#[derive(Debug, Clone, Serialize)]
pub struct PathSync {
    /// The peer.
    pub node: String,
    /// The local directory.
    pub source: PathBuf,
    /// The destination, as given to rsync.
    pub destination: String,
    /// "Number of regular files transferred".
    pub files_transferred: u64,
    /// "Total transferred file size", bytes.
    pub bytes_transferred: u64,
    /// "Number of deleted files".
    pub files_deleted: u64,
    /// A warning (exit 24: files vanished while copying).
    pub warning: Option<String>,
}

/// What `sync files` did.
#[derive(Debug, Clone, Serialize)]
pub struct SyncReport {
    /// Whether anything was sent (false on the node without the marker).
    pub ran: bool,
    /// Why nothing was sent, when it was not.
    pub reason: Option<String>,
    /// rsync ran with `--dry-run`.
    pub dry_run: bool,
    /// One entry per path and peer.
    pub copies: Vec<PathSync>,
}

/// Runs the sync from this machine's node; see the module documentation.
pub async fn sync_files(pair: &Pair, dry_run: bool) -> Result<SyncReport, FailoverError> {
    let _lock = pair.lock("sync files")?;
    let local = pair.local();
    let mut peers_with_marker = Vec::new();
    for peer in pair.peers() {
        if peer.has_marker().await? {
            peers_with_marker.push(peer.name.clone());
        }
    }
    if !local.has_marker().await? {
        if peers_with_marker.is_empty() {
            return Err(FailoverError::refused(
                format!(
                    "no node holds the marker (this node {} has no {})",
                    local.name,
                    local.marker.display()
                ),
                "put the marker on the node whose PostgreSQL is the primary; `pgkeep failover status` shows the pair",
            ));
        }
        return Ok(SyncReport {
            ran: false,
            reason: Some(format!(
                "node {} does not hold the marker ({} does): only the master sends files",
                local.name,
                peers_with_marker.join(", ")
            )),
            dry_run,
            copies: Vec::new(),
        });
    }
    if !peers_with_marker.is_empty() {
        return Err(FailoverError::refused(
            format!(
                "the marker is on this node {} and on {}: both look like the master",
                local.name,
                peers_with_marker.join(", ")
            ),
            "remove the marker from the node whose PostgreSQL is not the primary (`pgkeep failover status`)",
        ));
    }
    match local.is_primary().await {
        Some(true) => {}
        Some(false) => {
            return Err(FailoverError::refused(
                format!(
                    "node {} holds the marker but its PostgreSQL is a standby",
                    local.name
                ),
                "promote it (`pgkeep failover promote`) or move the marker to the primary",
            ));
        }
        None => {
            return Err(FailoverError::refused(
                format!(
                    "node {} holds the marker but its PostgreSQL does not answer",
                    local.name
                ),
                "start PostgreSQL on the master, or fail over; files are sent only from a running primary",
            ));
        }
    }
    if pair.sync.paths.is_empty() {
        return Err(FailoverError::refused(
            "no [sync] paths are configured".into(),
            "list the directories to copy in [sync] paths, e.g. paths = [\"/www\"]",
        ));
    }
    let mut copies = Vec::new();
    for peer in pair.peers() {
        copies.extend(copy_all(pair, local, peer, dry_run).await?);
    }
    Ok(SyncReport {
        ran: true,
        reason: None,
        dry_run,
        copies,
    })
}

/// Copies every `[sync]` path from `from` (this machine) to `to`, after checking each source's
/// sentinel file. No marker checks: the callers make them.
pub async fn copy_all(
    pair: &Pair,
    from: &Node,
    to: &Node,
    dry_run: bool,
) -> Result<Vec<PathSync>, FailoverError> {
    if from.transport != Transport::Local {
        return Err(FailoverError::refused(
            format!("the files are on {}, which is not this machine", from.name),
            "run the command on the master, where the files are",
        ));
    }
    let sentinel = pair.sync.sentinel.as_deref().unwrap_or(DEFAULT_SENTINEL);
    for path in &pair.sync.paths {
        let source = from.sync_path(path);
        if !source.join(sentinel).exists() {
            return Err(FailoverError::refused(
                format!(
                    "{} has no sentinel file {sentinel}: it may be empty or not mounted, and copying it would wipe the peers",
                    source.display()
                ),
                &format!(
                    "if {} is right, create the sentinel: touch {}",
                    source.display(),
                    source.join(sentinel).display()
                ),
            ));
        }
    }
    let mut copies = Vec::new();
    for path in &pair.sync.paths {
        copies.push(
            rsync(
                pair,
                &from.sync_path(path),
                to,
                &to.sync_path(path),
                dry_run,
            )
            .await?,
        );
    }
    Ok(copies)
}

async fn rsync(
    pair: &Pair,
    source: &Path,
    peer: &Node,
    destination: &Path,
    dry_run: bool,
) -> Result<PathSync, FailoverError> {
    let mut cmd = tokio::process::Command::new(
        pair.sync
            .rsync
            .clone()
            .unwrap_or_else(|| PathBuf::from("rsync")),
    );
    cmd.args([
        "-aHAX",
        "--numeric-ids",
        "--delete",
        "--delete-delay",
        "--delay-updates",
        "--partial-dir=.rsync-partial",
        "--stats",
    ])
    .arg(format!("--timeout={}", pair.sync.timeout.unwrap_or(600)))
    .arg(format!(
        "--max-delete={}",
        pair.sync.max_delete.unwrap_or(1000)
    ));
    for pattern in &pair.sync.exclude {
        cmd.arg(format!("--exclude={pattern}"));
    }
    if dry_run {
        cmd.arg("--dry-run");
    }
    let destination = match &peer.transport {
        Transport::Local => format!("{}/", destination.display()),
        Transport::Ssh { host, user, port } => {
            let mut ssh = "ssh -o BatchMode=yes -o ConnectTimeout=10".to_string();
            if let Some(port) = port {
                ssh.push_str(&format!(" -p {port}"));
            }
            cmd.arg("-e").arg(ssh);
            let host = match user {
                Some(user) => format!("{user}@{host}"),
                None => host.clone(),
            };
            format!("{host}:{}/", shell_quote(&destination.to_string_lossy()))
        }
    };
    cmd.arg(format!("{}/", source.display()))
        .arg(&destination)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let out = cmd.output().await.map_err(|e| FailoverError::Node {
        node: peer.name.clone(),
        what: "running rsync".into(),
        detail: e.to_string(),
        fix: "install rsync (apt-get install rsync)".into(),
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let warning = match out.status.code() {
        Some(0) => None,
        Some(24) => Some(format!(
            "some files vanished while they were copied: {stderr}"
        )),
        Some(25) => {
            return Err(FailoverError::Node {
                node: peer.name.clone(),
                what: format!("rsync {} to {destination}", source.display()),
                detail: format!(
                    "it would delete more than {} files, so deleting stopped: {stderr}",
                    pair.sync.max_delete.unwrap_or(1000)
                ),
                fix: "check that the source is complete; if the deletions are intended, raise [sync] max-delete for one run".into(),
            });
        }
        _ => {
            return Err(FailoverError::Node {
                node: peer.name.clone(),
                what: format!("rsync {} to {destination}", source.display()),
                detail: format!("exit {}: {stderr}", out.status),
                fix: "see rsync's message; check the peer's disk and permissions, and ssh access"
                    .into(),
            });
        }
    };
    Ok(PathSync {
        node: peer.name.clone(),
        source: source.to_path_buf(),
        destination,
        files_transferred: stat(&stdout, "Number of regular files transferred"),
        bytes_transferred: stat(&stdout, "Total transferred file size"),
        files_deleted: stat(&stdout, "Number of deleted files"),
        warning,
    })
}

/// A number from rsync's `--stats` (`Total transferred file size: 1,234 bytes`).
fn stat(stats: &str, label: &str) -> u64 {
    stats
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .replace(',', "")
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn stats() {
        let text = "Number of deleted files: 2\nNumber of regular files transferred: 1,203\nTotal transferred file size: 12,345,678 bytes\n";
        assert_eq!(
            super::stat(text, "Number of regular files transferred"),
            1203
        );
        assert_eq!(super::stat(text, "Total transferred file size"), 12_345_678);
        assert_eq!(super::stat(text, "Number of deleted files"), 2);
        assert_eq!(super::stat(text, "Missing"), 0);
    }
}
