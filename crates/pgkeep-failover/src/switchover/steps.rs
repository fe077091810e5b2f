//! The steps of a switchover, in order, each described with its live values and carried out on
//! the nodes.

use std::time::{Duration, Instant};

use pgkeep_core::Lsn;
use serde::{Deserialize, Serialize};

use super::Journal;
use crate::error::FailoverError;
use crate::hooks::run_hooks;
use crate::marker::{create_marker, remove_marker};
use crate::node::{Node, Pair, quoted};

/// The steps, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// A last file sync from the master to the target.
    SyncFiles,
    /// Stop the application services on the master.
    StopServices,
    /// CHECKPOINT and a clean stop of PostgreSQL on the master.
    StopPostgres,
    /// Confirm the clean shutdown with pg_controldata and read the last checkpoint location.
    ReadCheckpoint,
    /// Wait until the target has replayed that checkpoint.
    CatchUp,
    /// Remove the master's marker.
    RemoveMarker,
    /// Promote the target and wait until it accepts writes.
    Promote,
    /// Create the target's marker.
    CreateMarker,
    /// Start the application services on the target.
    StartServices,
    /// Run the hooks.
    Hooks,
}

/// Every step, in order.
pub const STEPS: [Step; 10] = [
    Step::SyncFiles,
    Step::StopServices,
    Step::StopPostgres,
    Step::ReadCheckpoint,
    Step::CatchUp,
    Step::RemoveMarker,
    Step::Promote,
    Step::CreateMarker,
    Step::StartServices,
    Step::Hooks,
];

impl Step {
    pub(super) fn describe(self, from: &Node, to: &Node) -> String {
        match self {
            Step::SyncFiles => format!("final file sync from {} to {}", from.name, to.name),
            Step::StopServices => format!(
                "stop services on {}: {}",
                from.name,
                list(from.services.iter().rev())
            ),
            Step::StopPostgres => format!(
                "CHECKPOINT, then stop PostgreSQL on {} (`{}`)",
                from.name, from.stop_postgres
            ),
            Step::ReadCheckpoint => format!(
                "pg_controldata on {}: clean shutdown, last checkpoint location",
                from.name
            ),
            Step::CatchUp => format!("wait until {} has replayed that checkpoint", to.name),
            Step::RemoveMarker => {
                format!("remove {}'s marker {}", from.name, from.marker.display())
            }
            Step::Promote => format!("promote {} and wait until it accepts writes", to.name),
            Step::CreateMarker => format!("create {}'s marker {}", to.name, to.marker.display()),
            Step::StartServices => {
                format!(
                    "start services on {}: {}",
                    to.name,
                    list(to.services.iter())
                )
            }
            Step::Hooks => "run the hooks with PGKEEP_NEW_PRIMARY".to_string(),
        }
    }
}

fn list<'a>(items: impl Iterator<Item = &'a String>) -> String {
    let items: Vec<&str> = items.map(String::as_str).collect();
    if items.is_empty() {
        "(none)".into()
    } else {
        items.join(", ")
    }
}

pub(super) async fn run_step(
    pair: &Pair,
    step: Step,
    from: &Node,
    to: &Node,
    journal: &mut Journal,
) -> Result<(), FailoverError> {
    match step {
        Step::SyncFiles => {
            if !pair.sync.paths.is_empty() {
                crate::sync::copy_all(pair, from, to, false).await?;
            }
        }
        Step::StopServices => from.stop_services().await?,
        Step::StopPostgres => {
            // A rerun after a kill during this step finds it stopped: its stop command may fail
            // then (`pg_ctl stop` with nothing running), so it is not run again.
            if postgres_running(from).await? {
                if let Ok(client) = pgkeep_core::connect(&from.conninfo, None).await {
                    let _ = client.batch_execute("CHECKPOINT").await;
                }
                from.run("stopping PostgreSQL", &from.stop_postgres).await?;
            }
        }
        Step::ReadCheckpoint => journal.checkpoint = Some(read_checkpoint(from).await?),
        Step::CatchUp => {
            let checkpoint = journal.checkpoint.expect("read in the step before");
            catch_up(to, checkpoint, pair.catch_up_timeout).await?;
        }
        Step::RemoveMarker => remove_marker(from).await?,
        Step::Promote => promote_target(to).await?,
        Step::CreateMarker => create_marker(to).await?,
        Step::StartServices => to.start_services().await?,
        Step::Hooks => run_hooks(&pair.hooks, &to.name, &from.name).await?,
    }
    Ok(())
}

/// Whether a postmaster runs for `node`'s data directory (`pg_ctl status`: also while it shuts
/// down).
pub(super) async fn postgres_running(node: &Node) -> Result<bool, FailoverError> {
    let out = node
        .shell(&node.pg_program(
            "pg_ctl",
            &format!("status -D {} 2>&1", quoted(&node.pgdata)),
        ))
        .await?;
    match out.status.code() {
        Some(0) => Ok(true),
        Some(3) => Ok(false),
        _ => Err(FailoverError::Node {
            node: node.name.clone(),
            what: "asking pg_ctl whether PostgreSQL runs".into(),
            detail: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            fix: "check failover.nodes.NAME.pgdata and bin-dir".into(),
        }),
    }
}

/// The stopped master's latest checkpoint location, after pg_controldata confirms a clean
/// shutdown.
async fn read_checkpoint(from: &Node) -> Result<Lsn, FailoverError> {
    let text = from
        .run(
            "reading pg_controldata",
            &format!(
                "export LC_ALL=C; {}",
                from.pg_program("pg_controldata", &quoted(&from.pgdata))
            ),
        )
        .await?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_string())
    };
    let state = field("Database cluster state:").unwrap_or_default();
    if state != "shut down" {
        return Err(FailoverError::refused(
            format!(
                "PostgreSQL on {} is `{state}`, not cleanly shut down",
                from.name
            ),
            "start it again and stop it cleanly (a fast or smart shutdown), then rerun",
        ));
    }
    field("Latest checkpoint location:")
        .and_then(|v| Lsn::parse(&v))
        .ok_or_else(|| {
            FailoverError::refused(
                "pg_controldata shows no latest checkpoint location".into(),
                "check the node's data directory (failover.nodes.NAME.pgdata)",
            )
        })
}

/// Waits until `to` has replayed past `checkpoint`, for at most `timeout`.
async fn catch_up(to: &Node, checkpoint: Lsn, timeout: Duration) -> Result<(), FailoverError> {
    let client = pgkeep_core::connect(&to.conninfo, None)
        .await
        .map_err(|e| node_error(to, "connecting", e.to_string()))?;
    let begun = Instant::now();
    loop {
        let row = client
            .query_one("SELECT pg_last_wal_replay_lsn()::text", &[])
            .await
            .map_err(|e| node_error(to, "reading the replay location", e.to_string()))?;
        let replayed: Option<String> = row.get(0);
        if replayed
            .as_deref()
            .and_then(Lsn::parse)
            .is_some_and(|r| r > checkpoint)
        {
            return Ok(());
        }
        if begun.elapsed() > timeout {
            return Err(FailoverError::refused(
                format!(
                    "{} did not replay the old master's last checkpoint {checkpoint} within {} s (replayed: {})",
                    to.name,
                    timeout.as_secs(),
                    replayed.unwrap_or_default()
                ),
                "check that it streams and replay is not paused",
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Promotes `to` unless it already is a primary (a resumed run), and waits until it accepts
/// writes.
async fn promote_target(to: &Node) -> Result<(), FailoverError> {
    let client = pgkeep_core::connect(&to.conninfo, None)
        .await
        .map_err(|e| node_error(to, "connecting", e.to_string()))?;
    let in_recovery: bool = client
        .query_one("SELECT pg_is_in_recovery()", &[])
        .await
        .map_err(|e| node_error(to, "querying", e.to_string()))?
        .get(0);
    if in_recovery {
        let promoted: bool = client
            .query_one("SELECT pg_promote(true, 120)", &[])
            .await
            .map_err(|e| node_error(to, "promoting", e.to_string()))?
            .get(0);
        if !promoted {
            return Err(FailoverError::refused(
                format!("{} did not finish its promotion within 120 s", to.name),
                "look at its server log; rerun when it accepts writes",
            ));
        }
    }
    Ok(())
}

fn node_error(node: &Node, what: &str, detail: String) -> FailoverError {
    FailoverError::Node {
        node: node.name.clone(),
        what: what.to_string(),
        detail,
        fix: "check that its PostgreSQL runs and that failover.nodes.NAME.conninfo reaches it"
            .into(),
    }
}
