//! The way back: `failover rejoin NODE` turns a former master into a standby of the current one
//! (pg_rewind, or a fresh pg_basebackup with `--reclone`). A former master is never started as a
//! primary: it gets `standby.signal` before it is started. With a repository configured, it also
//! gets a `restore_command` running `pgkeep wal-fetch` (so it catches up from the archive when the
//! master has recycled the WAL it needs), and pg_rewind runs with `--restore-target-wal`.

mod standby;

use pgkeep_core::shell_quote;
use serde::Serialize;

use crate::error::FailoverError;
use crate::marker::remove_marker;
use crate::node::{Node, Pair, WalFetch, quoted};
use crate::state::{must_rejoin, record_rejoined};
use standby::{LogWatch, set_restore_command, wait_streaming};

/// How a former master was brought in line with the master.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RejoinMethod {
    /// pg_rewind replayed the master's changes over the node's diverged ones.
    #[serde(rename = "rewind")]
    Rewind,
    /// pg_rewind found the node had not diverged.
    #[serde(rename = "no rewind needed")]
    NoRewindNeeded,
    /// The data directory was emptied and copied afresh with pg_basebackup.
    #[serde(rename = "reclone")]
    Reclone,
}

impl std::fmt::Display for RejoinMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RejoinMethod::Rewind => "rewind",
            RejoinMethod::NoRewindNeeded => "no rewind needed",
            RejoinMethod::Reclone => "reclone",
        })
    }
}

/// What `rejoin` did.
#[derive(Debug, Clone, Serialize)]
pub struct RejoinReport {
    /// The node made a standby.
    pub node: String,
    /// The master it follows.
    pub master: String,
    /// How it was brought in line.
    pub method: RejoinMethod,
    /// What pg_rewind or pg_basebackup said.
    pub output: String,
    /// The `restore_command` the standby got (`None`: no repository is configured).
    pub restore_command: Option<String>,
}

/// `failover rejoin NODE [--reclone]`.
pub async fn rejoin(pair: &Pair, name: &str, reclone: bool) -> Result<RejoinReport, FailoverError> {
    let _lock = pair.lock("rejoin")?;
    // The record is rewritten after pg_rewind, which cannot be undone: an unreadable one is
    // refused before anything changes.
    must_rejoin(pair)?;
    let node = pair.node(name)?;
    let mut master = None;
    for other in pair.nodes.iter().filter(|n| n.name != name) {
        if other.has_marker().await? && other.is_primary().await == Some(true) {
            master = Some(other);
        }
    }
    let master = master.ok_or_else(|| {
        FailoverError::refused(
            format!("no other node holds the marker and runs as a primary for {name} to follow"),
            "promote the standby first (`pgkeep failover promote`), then rejoin",
        )
    })?;
    // Stop it (a former master may have come back as a primary), and take its marker away.
    if node.is_primary().await.is_some() {
        node.run("stopping PostgreSQL", &node.stop_postgres).await?;
    }
    remove_marker(node).await?;
    // pg_rewind --restore-target-wal reads restore_command from the node's own configuration.
    if let Some(fetch) = &pair.wal_fetch {
        set_restore_command(node, fetch).await?;
    }
    // pg_rewind and pg_basebackup copy the master's files, configuration in the data directory
    // included (its port, its own settings): keep this node's and put them back afterwards.
    let saved = node
        .run(
            "saving its configuration files",
            &format!(
                "save=$(mktemp -d) && for f in {dir}/*.conf; do [ -e \"$f\" ] && [ \"${{f##*/}}\" != postgresql.auto.conf ] && cp -p \"$f\" \"$save/\"; done; echo \"$save\"",
                dir = quoted(&node.pgdata)
            ),
        )
        .await?;
    let saved = saved.trim().to_string();
    let source = master.conninfo.to_string();
    let copied = copy_from_master(node, &source, reclone, pair.wal_fetch.as_ref()).await;
    node.run(
        "putting its configuration files back",
        &format!(
            "for f in {saved}/*.conf; do [ -e \"$f\" ] && cp -p \"$f\" {dir}/; done; rm -rf {saved}",
            saved = shell_quote(&saved),
            dir = quoted(&node.pgdata)
        ),
    )
    .await?;
    let (method, output) = copied?;
    // The copy replaced postgresql.auto.conf with the master's.
    if let Some(fetch) = &pair.wal_fetch {
        set_restore_command(node, fetch).await?;
    }
    // Never start a former master as a primary.
    let signal = node.pgdata.join("standby.signal");
    if !node
        .shell(&format!("test -e {}", quoted(&signal)))
        .await?
        .status
        .success()
    {
        node.run(
            "writing standby.signal",
            &format!(
                "touch {s} && chown --reference={d} {s}",
                s = quoted(&signal),
                d = quoted(&node.pgdata)
            ),
        )
        .await?;
    }
    let log = LogWatch::before_start(node).await;
    node.run("starting PostgreSQL", &node.start_postgres)
        .await?;
    wait_streaming(pair, node, master, &log).await?;
    record_rejoined(pair, name)?;
    Ok(RejoinReport {
        node: name.to_string(),
        master: master.name.clone(),
        method,
        output: output.trim().to_string(),
        restore_command: pair.wal_fetch.as_ref().map(|f| f.command.clone()),
    })
}

/// Brings `node`'s data directory in line with the master at `source`: pg_rewind (which may find
/// nothing to do, and fetches WAL it lacks with the node's `restore_command` when `fetch` is set), or
/// with `reclone` an emptied directory and pg_basebackup. Returns the method and what the program
/// said.
async fn copy_from_master(
    node: &Node,
    source: &str,
    reclone: bool,
    fetch: Option<&WalFetch>,
) -> Result<(RejoinMethod, String), FailoverError> {
    if reclone {
        let script = format!(
            "find {dir} -mindepth 1 -delete && {}",
            node.pg_program(
                "pg_basebackup",
                &format!(
                    "-D {} -R -X stream -c fast -d {}",
                    quoted(&node.pgdata),
                    shell_quote(source)
                )
            ),
            dir = quoted(&node.pgdata)
        );
        let out = node
            .run_unbounded("cloning with pg_basebackup", &script)
            .await?;
        Ok((RejoinMethod::Reclone, out))
    } else {
        let out = node
            .shell_unbounded(&node.pg_program(
                "pg_rewind",
                &format!(
                    "--target-pgdata={} --source-server={} --write-recovery-conf{} 2>&1",
                    quoted(&node.pgdata),
                    shell_quote(source),
                    if fetch.is_some() {
                        " --restore-target-wal"
                    } else {
                        ""
                    }
                ),
            ))
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(FailoverError::Node {
                node: node.name.clone(),
                what: "pg_rewind".into(),
                detail: text.trim().to_string(),
                fix: format!(
                    "{}if it cannot rewind (no wal_log_hints or data checksums, WAL missing from the archive too), run `pgkeep failover rejoin {} --reclone` to copy the master afresh; do not start the node by hand meanwhile",
                    if fetch.is_none() && text.contains("pg_wal/") {
                        "WAL this node recycled is missing: configure [repository] (the pair's shared repository) so pg_rewind fetches it from the archive, then rerun the rejoin; "
                    } else {
                        ""
                    },
                    node.name
                ),
            });
        }
        let method = if text.contains("no rewind required") {
            RejoinMethod::NoRewindNeeded
        } else {
            RejoinMethod::Rewind
        };
        Ok((method, text))
    }
}
