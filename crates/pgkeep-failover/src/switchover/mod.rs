//! `pgkeep failover switchover --to NODE`: the planned move of the master role, step by step
//! ([`Step`]), each step recorded in a journal (`<state-dir>/switchover.json`, written durably)
//! before the next one starts, so that a rerun after an interruption continues where it stopped
//! instead of starting over.

mod checks;
mod steps;

use std::path::PathBuf;

use pgkeep_core::Lsn;
use serde::{Deserialize, Serialize};

pub use steps::{STEPS, Step};

use crate::error::FailoverError;
use crate::node::{Node, Pair, Transport};
use crate::state::{must_rejoin, read_state, record_replaced, write_state};
use crate::status::status;

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
    /// The switchover had already finished: a rerun found it done and changed nothing.
    pub already_finished: bool,
    /// The old master's last checkpoint location.
    pub checkpoint: Option<Lsn>,
}

fn journal_path(pair: &Pair) -> PathBuf {
    pair.state_dir.join("switchover.json")
}

/// Runs (or resumes, or with `dry_run` only plans) a switchover to `to`.
pub async fn switchover(
    pair: &Pair,
    to: &str,
    dry_run: bool,
) -> Result<SwitchoverReport, FailoverError> {
    let _lock = pair.lock("switchover")?;
    // The must-rejoin record is written when the switchover is done: an unreadable one is refused
    // before anything changes.
    must_rejoin(pair)?;
    let path = journal_path(pair);
    let mut journal = match read_state::<Journal>(&path)? {
        Some(j) if j.finished && j.to == to && is_master(pair, to).await? => {
            return Ok(SwitchoverReport {
                from: j.from,
                to: j.to,
                plan: Vec::new(),
                resumed_after: Vec::new(),
                dry_run,
                already_finished: true,
                checkpoint: j.checkpoint,
            });
        }
        Some(j) if !j.finished => resumable(pair, j, to).await?,
        _ => {
            pair.node(to)?;
            let status = status(pair).await;
            let from = checks::check(&status, to, pair.max_lag_bytes)?;
            if !pair.sync.paths.is_empty() && pair.node(&from)?.transport != Transport::Local {
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
        already_finished: false,
        checkpoint: journal.checkpoint,
    };
    if dry_run {
        return Ok(report);
    }
    write_state(&path, &journal)?;
    for step in STEPS {
        if journal.done.contains(&step) {
            continue;
        }
        tracing::info!("switchover: {}", step.describe(&from, &target));
        if let Err(e) = steps::run_step(pair, step, &from, &target, &mut journal).await {
            return Err(stopped_at(step, &journal, &from, &target, e).await);
        }
        // From the promotion on, the old master must not run as it is.
        if step == Step::Promote {
            record_replaced(pair, &from.name, &target.name)?;
        }
        journal.done.push(step);
        write_state(&path, &journal)?;
    }
    record_replaced(pair, &from.name, &target.name)?;
    journal.finished = true;
    write_state(&path, &journal)?;
    report.checkpoint = journal.checkpoint;
    Ok(report)
}

/// Whether `name` holds the marker and its PostgreSQL answers as a primary.
async fn is_master(pair: &Pair, name: &str) -> Result<bool, FailoverError> {
    let node = pair.node(name)?;
    Ok(node.has_marker().await? && node.is_primary().await == Some(true))
}

/// An unfinished journal, to be resumed with `--to to`. The journal says what was done, the nodes
/// say what holds now: an old master whose PostgreSQL runs again before the target was promoted
/// (restarted at boot, or by hand) is stopped and its checkpoint read once more.
async fn resumable(pair: &Pair, mut j: Journal, to: &str) -> Result<Journal, FailoverError> {
    if j.to != to {
        return Err(FailoverError::refused(
            format!(
                "a switchover from {} to {} stopped after {:?} and must be finished first",
                j.from, j.to, j.done
            ),
            &format!("rerun `pgkeep failover switchover --to {}`", j.to),
        ));
    }
    let from = pair.node(&j.from)?;
    if j.done.contains(&Step::StopPostgres)
        && !j.done.contains(&Step::Promote)
        && steps::postgres_running(from).await?
    {
        tracing::warn!(
            "{}'s PostgreSQL runs again: stopping it and reading its checkpoint again",
            from.name
        );
        j.done
            .retain(|s| !matches!(s, Step::StopPostgres | Step::ReadCheckpoint | Step::CatchUp));
        j.checkpoint = None;
    }
    Ok(j)
}

/// An error during a step, with where the pair stands (read from the nodes, not only the journal)
/// and what to do.
async fn stopped_at(
    step: Step,
    journal: &Journal,
    from: &Node,
    to: &Node,
    error: FailoverError,
) -> FailoverError {
    let mut state = Vec::new();
    for node in [from, to] {
        let marker = match node.has_marker().await {
            Ok(true) => "holds the marker",
            Ok(false) => "no marker",
            Err(_) => "marker unknown (not reachable)",
        };
        let postgres = match node.is_primary().await {
            Some(true) => "PostgreSQL primary",
            Some(false) => "PostgreSQL standby",
            None => "PostgreSQL down",
        };
        state.push(format!("{}: {marker}, {postgres}", node.name));
    }
    if journal.done.contains(&Step::StopServices) && !journal.done.contains(&Step::StartServices) {
        state.push(format!("services stopped on {}", from.name));
    }
    FailoverError::Stopped {
        problem: format!(
            "the switchover stopped at step `{step:?}`: {error}\n  state: {}",
            state.join("; ")
        ),
        fix: format!(
            "fix the cause, then rerun `pgkeep failover switchover --to {}`: it continues from this step (done so far: {:?})",
            journal.to, journal.done
        ),
    }
}
