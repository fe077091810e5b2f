//! The scheduler's state: every run of every job (start, end, outcome, error, bytes, backup id)
//! and the alerts that are active, in one JSON file in `state-dir` that survives restarts. Each
//! change is a read-modify-write under an `flock` (the daemon and `schedule once` share the file),
//! written durably (a temporary file, fsync, rename, fsync of the directory), and bounded: only
//! the newest `history-runs` runs of each job are kept.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::SchedulerError;

/// The state file's name in `state-dir`.
pub const STATE_FILE: &str = "scheduler.json";

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Still running (or its process died: [`State::reap`] finds out).
    Running,
    /// It did what it should.
    Succeeded,
    /// It failed; the error says why.
    Failed,
    /// It ran past the job's timeout and was stopped.
    TimedOut,
    /// The scheduler was stopped while it ran.
    Interrupted,
    /// The process running it died without recording an outcome.
    Died,
}

impl Outcome {
    /// The word the history, the metrics and the notifications use.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Running => "running",
            Outcome::Succeeded => "succeeded",
            Outcome::Failed => "failed",
            Outcome::TimedOut => "timed-out",
            Outcome::Interrupted => "interrupted",
            Outcome::Died => "died",
        }
    }
}

/// Why a run started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trigger {
    /// Its schedule came due.
    Schedule,
    /// A run missed while the daemon was down, caught up at start-up.
    CatchUp,
    /// `pgkeep schedule once`.
    Once,
}

/// One run of a job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    /// When it started.
    pub started: DateTime<Utc>,
    /// When it ended (`None` while running).
    pub ended: Option<DateTime<Utc>>,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed.
    pub error: Option<String>,
    /// What it did, for a person.
    pub summary: Option<String>,
    /// Bytes stored or read.
    pub bytes: Option<u64>,
    /// The backup it made.
    pub backup_id: Option<String>,
    /// Why it started.
    pub trigger: Trigger,
    /// The process that ran it.
    pub pid: u32,
}

impl Run {
    /// How long it took (so far).
    pub fn duration(&self) -> Option<std::time::Duration> {
        self.ended.and_then(|e| (e - self.started).to_std().ok())
    }
}

/// An active alert: a condition that started and has not cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    /// Since when.
    pub since: DateTime<Utc>,
    /// What it says.
    pub summary: String,
}

/// The whole state file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Each job's runs, oldest first.
    pub runs: BTreeMap<String, Vec<Run>>,
    /// The alerts that are active, by key (`overdue:logical`, `archiving-stuck`).
    pub alerts: BTreeMap<String, ActiveAlert>,
}

impl State {
    /// The newest run of `job`.
    pub fn last_run(&self, job: &str) -> Option<&Run> {
        self.runs.get(job).and_then(|r| r.last())
    }

    /// The newest successful run of `job`.
    pub fn last_success(&self, job: &str) -> Option<&Run> {
        self.runs
            .get(job)?
            .iter()
            .rev()
            .find(|r| r.outcome == Outcome::Succeeded)
    }
}

/// The state file in a directory, and its lock.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    keep: usize,
}

impl StateFile {
    /// The state file in `state_dir`, keeping `keep` runs per job.
    pub fn new(state_dir: &Path, keep: usize) -> StateFile {
        StateFile {
            path: state_dir.join(STATE_FILE),
            keep: keep.max(1),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the state (empty when there is no file yet, or a damaged one: the next update
    /// moves that aside). Takes no lock and creates nothing, so that `status` or `schedule list`
    /// run by another user (root) leaves no file the daemon's user cannot open; writes replace
    /// the file atomically, so a reader sees the old state or the new one.
    pub fn read(&self) -> Result<State, SchedulerError> {
        self.read_unlocked(false)
    }

    /// Changes the state with `change` under the lock and writes it durably; returns what
    /// `change` returned.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, SchedulerError> {
        let _lock = self.lock()?;
        let mut state = self.read_unlocked(true)?;
        let out = change(&mut state);
        for runs in state.runs.values_mut() {
            let extra = runs.len().saturating_sub(self.keep);
            runs.drain(..extra);
        }
        let text = serde_json::to_vec_pretty(&state).expect("the state serializes");
        pgkeep_core::write_file(&self.path, &text, pgkeep_core::PutMode::Overwrite).map_err(
            |e| SchedulerError::State {
                action: "cannot write",
                path: self.path.clone(),
                source: std::io::Error::other(e.to_string()),
            },
        )?;
        Ok(out)
    }

    /// Records `run` of `job`: replaces the record of the same run (same start and pid), else
    /// adds it as the newest.
    pub fn record(&self, job: &str, run: &Run) -> Result<(), SchedulerError> {
        self.update(|s| {
            let runs = s.runs.entry(job.to_string()).or_default();
            match runs
                .iter_mut()
                .rev()
                .find(|r| r.started == run.started && r.pid == run.pid)
            {
                Some(r) => *r = run.clone(),
                None => runs.push(run.clone()),
            }
        })
    }

    /// The state in the file; a damaged one is moved aside when `move_aside` (under the lock),
    /// else only reported.
    fn read_unlocked(&self, move_aside: bool) -> Result<State, SchedulerError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => {
                return Err(SchedulerError::State {
                    action: "cannot read",
                    path: self.path.clone(),
                    source,
                });
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(state) => Ok(state),
            Err(e) if !move_aside => {
                tracing::warn!(
                    "the scheduler's state file {} is damaged ({e}); shown as empty until the next run moves it aside",
                    self.path.display()
                );
                Ok(State::default())
            }
            Err(e) => {
                // A damaged state must not stop the backups: it is kept aside, and the history
                // and alerts start afresh.
                // Never over an earlier damaged copy: the time to the nanosecond and the pid.
                let aside = self.path.with_extension(format!(
                    "damaged-{}-{}",
                    Utc::now().format("%Y%m%dT%H%M%S%.9f"),
                    std::process::id()
                ));
                tracing::error!(
                    "the scheduler's state file {} is damaged ({e}); it was moved to {} and the history starts afresh",
                    self.path.display(),
                    aside.display()
                );
                std::fs::rename(&self.path, &aside).map_err(|source| SchedulerError::State {
                    action: "cannot move aside the damaged",
                    path: self.path.clone(),
                    source,
                })?;
                Ok(State::default())
            }
        }
    }

    fn lock(&self) -> Result<File, SchedulerError> {
        let path = self.path.with_extension("lock");
        let failed = |source| SchedulerError::State {
            action: "cannot lock",
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(failed)?;
        }
        // flock needs no write access: a lock file another user created (0644) still serves.
        let file = match File::open(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path),
            opened => opened,
        }
        .map_err(failed)?;
        file.lock().map_err(failed)?;
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(outcome: Outcome) -> Run {
        Run {
            started: Utc::now(),
            ended: Some(Utc::now()),
            outcome,
            error: None,
            summary: None,
            bytes: Some(1),
            backup_id: None,
            trigger: Trigger::Schedule,
            pid: 1,
        }
    }

    #[test]
    fn the_history_survives_a_reread_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), 3);
        for i in 0..5 {
            file.update(|s| {
                let outcome = [Outcome::Succeeded, Outcome::Failed][i % 2];
                s.runs
                    .entry("nightly".into())
                    .or_default()
                    .push(run(outcome));
            })
            .unwrap();
        }
        let state = StateFile::new(dir.path(), 3).read().unwrap();
        assert_eq!(state.runs["nightly"].len(), 3);
        assert_eq!(
            state.last_run("nightly").unwrap().outcome,
            Outcome::Succeeded
        );
        assert_eq!(
            state.last_success("nightly").unwrap().outcome,
            Outcome::Succeeded
        );
        assert!(state.last_run("other").is_none());
    }

    #[test]
    fn a_damaged_state_file_is_kept_aside_and_the_history_starts_afresh() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path(), 3);
        std::fs::write(file.path(), b"{ not json").unwrap();
        // A read shows it as empty and leaves it; the next update moves it aside.
        assert_eq!(file.read().unwrap(), State::default());
        assert_eq!(std::fs::read(file.path()).unwrap(), b"{ not json");
        file.update(|_| ()).unwrap();
        assert_eq!(file.read().unwrap(), State::default());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains("damaged-"))
            .collect();
        assert_eq!(aside.len(), 1);
        assert_eq!(std::fs::read(aside[0].path()).unwrap(), b"{ not json");
    }

    #[test]
    fn reading_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(&dir.path().join("state"), 3);
        assert_eq!(file.read().unwrap(), State::default());
        assert!(
            !dir.path().join("state").exists(),
            "a read created the state dir"
        );
    }
}
