//! `pgkeep failover switchover --to NODE`: the planned move of the master role, step by step, each
//! step recorded in a journal (`<state-dir>/switchover.json`) before the next one starts, so that a
//! rerun after an interruption continues where it stopped instead of starting over.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgkeep_core::wal::Lsn;
use serde::{Deserialize, Serialize};

use crate::error::FailoverError;
use crate::node::{Node, Pair, quoted};
use crate::status::{self, PairStatus};

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
    fn describe(self, from: &Node, to: &Node) -> String {
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

/// The journal of one switchover.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Journal {
    /// The old master.
    pub from: String,
    /// The new master.
    pub to: String,
    /// Steps done, in order.
    pub done: Vec<Step>,
    /// The old master's last checkpoint location, once read.
    pub checkpoint: Option<Lsn>,
    /// Whether every step is done.
    pub finished: bool,
}

/// What a switchover did (or, with `--dry-run`, would do).
#[derive(Debug, Clone, Serialize)]
pub struct SwitchoverReport {
    /// The old master.
    pub from: String,
    /// The new master.
    pub to: String,
    /// The plan, one line per step, with live values.
    pub plan: Vec<String>,
    /// Steps already done by an earlier, interrupted run.
    pub resumed_after: Vec<Step>,
    /// Whether anything was changed.
    pub dry_run: bool,
    /// The old master's last checkpoint location.
    pub checkpoint: Option<Lsn>,
}

fn journal_path(pair: &Pair) -> PathBuf {
    pair.state_dir.join("switchover.json")
}

fn read_journal(path: &Path) -> Result<Option<Journal>, FailoverError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| FailoverError::Refused {
            problem: format!("the switchover journal {} cannot be read: {e}", path.display()),
            fix: "look at it; once both nodes are checked by hand (`pgkeep failover status`), move it away".into(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FailoverError::Refused {
            problem: format!("cannot read {}: {e}", path.display()),
            fix: "check the permissions of failover.state-dir".into(),
        }),
    }
}

fn write_journal(path: &Path, journal: &Journal) -> Result<(), FailoverError> {
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(journal).expect("a journal serializes");
    let written = (|| {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
    })();
    written.map_err(|e| FailoverError::Refused {
        problem: format!(
            "cannot write the switchover journal {}: {e}",
            path.display()
        ),
        fix: "check the space and permissions of failover.state-dir".into(),
    })
}

/// The checks before a switchover starts; the status they were made on.
fn check(pair: &Pair, status: &PairStatus, to: &str) -> Result<String, FailoverError> {
    let markers: Vec<&str> = status
        .nodes
        .iter()
        .filter(|n| n.marker)
        .map(|n| n.name.as_str())
        .collect();
    let from = match markers.as_slice() {
        [one] => one.to_string(),
        [] => {
            return Err(FailoverError::refused(
                "no node holds the marker, so there is no master to switch from".into(),
                "use `pgkeep failover promote` on the standby if the master is gone",
            ));
        }
        many => {
            return Err(FailoverError::refused(
                format!("the marker is on {}", many.join(" and ")),
                "fix the markers first (`pgkeep failover status` says which node is the primary)",
            ));
        }
    };
    if from == to {
        return Err(FailoverError::refused(
            format!("{to} is already the master"),
            "name the standby with --to",
        ));
    }
    let target = status
        .nodes
        .iter()
        .find(|n| n.name == to)
        .expect("status covers every node");
    let master = status
        .nodes
        .iter()
        .find(|n| n.name == from)
        .expect("status covers every node");
    if master.in_recovery != Some(false) {
        return Err(FailoverError::refused(
            format!("the master {from} does not answer as a primary"),
            "check its PostgreSQL; if it is gone, use `pgkeep failover promote` on the standby",
        ));
    }
    if target.in_recovery != Some(true) || target.streaming != Some(true) {
        return Err(FailoverError::refused(
            format!("{to} is not a streaming standby of {from}"),
            "rejoin it first (`pgkeep failover rejoin`), and check `pgkeep failover status`",
        ));
    }
    if target.replay_paused == Some(true) {
        return Err(FailoverError::refused(
            format!("WAL replay is paused on {to}"),
            "run `SELECT pg_wal_replay_resume()` there, then switch over",
        ));
    }
    let lag = target.lag_bytes.unwrap_or(u64::MAX);
    if lag > pair.max_lag_bytes {
        return Err(FailoverError::refused(
            format!(
                "{to} replays {lag} bytes behind {from}, more than failover.max-lag-bytes ({})",
                pair.max_lag_bytes
            ),
            "wait for it to catch up (`pgkeep failover status`), then switch over",
        ));
    }
    Ok(from)
}

/// Runs (or resumes, or with `dry_run` only plans) a switchover to `to`.
pub async fn switchover(
    pair: &Pair,
    to: &str,
    dry_run: bool,
    catch_up_timeout: Duration,
    hooks: &[String],
) -> Result<SwitchoverReport, FailoverError> {
    let _lock = pair.lock("switchover")?;
    let path = journal_path(pair);
    let mut journal = match read_journal(&path)? {
        Some(j) if !j.finished => {
            if j.to != to {
                return Err(FailoverError::refused(
                    format!(
                        "a switchover from {} to {} stopped after {:?} and must be finished first",
                        j.from, j.to, j.done
                    ),
                    &format!("rerun `pgkeep failover switchover --to {}`", j.to),
                ));
            }
            j
        }
        _ => {
            pair.node(to)?;
            let status = status::status(pair).await;
            let from = check(pair, &status, to)?;
            if !pair.sync.paths.is_empty()
                && pair.node(&from)?.transport != crate::node::Transport::Local
            {
                return Err(FailoverError::refused(
                    format!(
                        "the master {from} is not this machine, and the final file sync runs from the master"
                    ),
                    &format!("run the switchover on {from}"),
                ));
            }
            Journal {
                from,
                to: to.to_string(),
                done: Vec::new(),
                checkpoint: None,
                finished: false,
            }
        }
    };
    let from = pair.node(&journal.from)?.clone();
    let target = pair.node(&journal.to)?.clone();
    let resumed_after = journal.done.clone();
    let plan: Vec<String> = STEPS
        .iter()
        .map(|s| {
            format!(
                "{}{}",
                if journal.done.contains(s) {
                    "(done) "
                } else {
                    ""
                },
                s.describe(&from, &target)
            )
        })
        .collect();
    let mut report = SwitchoverReport {
        from: from.name.clone(),
        to: target.name.clone(),
        plan,
        resumed_after,
        dry_run,
        checkpoint: journal.checkpoint,
    };
    if dry_run {
        return Ok(report);
    }
    write_journal(&path, &journal)?;
    for step in STEPS {
        if journal.done.contains(&step) {
            continue;
        }
        tracing::info!("switchover: {}", step.describe(&from, &target));
        run_step(
            pair,
            step,
            &from,
            &target,
            &mut journal,
            catch_up_timeout,
            hooks,
        )
        .await
        .map_err(|e| stopped_at(step, &journal, e))?;
        journal.done.push(step);
        write_journal(&path, &journal)?;
    }
    journal.finished = true;
    write_journal(&path, &journal)?;
    crate::promote::record_replaced(pair, &from.name, &target.name)?;
    report.checkpoint = journal.checkpoint;
    Ok(report)
}

/// An error during a step, with where the pair stands and what to do.
fn stopped_at(step: Step, journal: &Journal, error: FailoverError) -> FailoverError {
    let state = if journal.done.contains(&Step::RemoveMarker) {
        format!(
            "no node holds the marker now; {} is stopped and {} is {}",
            journal.from,
            journal.to,
            if journal.done.contains(&Step::Promote) {
                "promoted"
            } else {
                "still a standby"
            }
        )
    } else if journal.done.contains(&Step::StopPostgres) {
        format!(
            "{} still holds the marker but its PostgreSQL is stopped; {} is still a standby",
            journal.from, journal.to
        )
    } else if journal.done.contains(&Step::StopServices) {
        format!(
            "{} is still the master, with its services stopped",
            journal.from
        )
    } else {
        format!("nothing has changed yet; {} is the master", journal.from)
    };
    FailoverError::Stopped {
        problem: format!("the switchover stopped at step `{step:?}`: {error}\n  state: {state}"),
        fix: format!(
            "fix the cause, then rerun `pgkeep failover switchover --to {}`: it continues from this step (done so far: {:?})",
            journal.to, journal.done
        ),
    }
}

async fn run_step(
    pair: &Pair,
    step: Step,
    from: &Node,
    to: &Node,
    journal: &mut Journal,
    catch_up_timeout: Duration,
    hooks: &[String],
) -> Result<(), FailoverError> {
    match step {
        Step::SyncFiles => {
            if !pair.sync.paths.is_empty() {
                crate::sync::copy_all(pair, from, to, false).await?;
            }
        }
        Step::StopServices => {
            for service in from.services.iter().rev() {
                from.run(
                    &format!("stopping {service}"),
                    &from.stop_service.replace("{service}", service),
                )
                .await?;
            }
        }
        Step::StopPostgres => {
            if let Ok(client) = pgkeep_core::pg::connect(&from.conninfo, None).await {
                let _ = client.batch_execute("CHECKPOINT").await;
            }
            from.run("stopping PostgreSQL", &from.stop_postgres).await?;
        }
        Step::ReadCheckpoint => {
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
            journal.checkpoint = field("Latest checkpoint location:").and_then(|v| Lsn::parse(&v));
            if journal.checkpoint.is_none() {
                return Err(FailoverError::refused(
                    "pg_controldata shows no latest checkpoint location".into(),
                    "check the node's data directory (failover.nodes.NAME.pgdata)",
                ));
            }
        }
        Step::CatchUp => {
            let checkpoint = journal.checkpoint.expect("read in the step before");
            let client = pgkeep_core::pg::connect(&to.conninfo, None)
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
                    break;
                }
                if begun.elapsed() > catch_up_timeout {
                    return Err(FailoverError::refused(
                        format!(
                            "{} did not replay the old master's last checkpoint {checkpoint} within {} s (replayed: {})",
                            to.name,
                            catch_up_timeout.as_secs(),
                            replayed.unwrap_or_default()
                        ),
                        "check that it streams and replay is not paused",
                    ));
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        Step::RemoveMarker => crate::promote::remove_marker(from).await?,
        Step::Promote => {
            let client = pgkeep_core::pg::connect(&to.conninfo, None)
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
        }
        Step::CreateMarker => crate::promote::create_marker(to).await?,
        Step::StartServices => {
            for service in &to.services {
                to.run(
                    &format!("starting {service}"),
                    &to.start_service.replace("{service}", service),
                )
                .await?;
            }
        }
        Step::Hooks => run_hooks(hooks, &to.name, &from.name).await?,
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

/// Runs the hooks here, with `PGKEEP_NEW_PRIMARY` and `PGKEEP_OLD_PRIMARY` set.
pub async fn run_hooks(hooks: &[String], new: &str, old: &str) -> Result<(), FailoverError> {
    for hook in hooks {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(hook)
            .env("PGKEEP_NEW_PRIMARY", new)
            .env("PGKEEP_OLD_PRIMARY", old)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                FailoverError::refused(format!("hook `{hook}`: {e}"), "check the hook command")
            })?;
        if !out.status.success() {
            return Err(FailoverError::Stopped {
                problem: format!(
                    "hook `{hook}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                fix: "fix the hook and run it by hand; the role change itself is done".into(),
            });
        }
    }
    Ok(())
}
