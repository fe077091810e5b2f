//! What the scheduler tells a person or a program: `schedule list` ([`job_listing`]), `status`
//! ([`status`]) and the Prometheus metrics ([`metrics`]), all from the same state and facts.

use chrono::{DateTime, Utc};
use pgkeep_core::{BackupKind, Settings};
use serde::Serialize;

use crate::error::SchedulerError;
use crate::history::{ActiveAlert, Run, State, StateFile};
use crate::job::Jobs;
use crate::metrics::{ClusterMetrics, JobMetrics, Metrics};
use crate::watch::{ClusterFacts, Condition, age, kind_word};

/// How many next runs `schedule list` shows.
pub const NEXT_RUNS: usize = 5;

/// One job as `schedule list` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobListing {
    /// Its name.
    pub name: String,
    /// Its action.
    pub action: String,
    /// Its schedule as written.
    pub schedule: String,
    /// The zone the schedule is read in.
    pub timezone: String,
    /// The next runs.
    pub next: Vec<DateTime<Utc>>,
    /// The same, shown in the job's zone with the offset.
    pub next_local: Vec<String>,
    /// The newest run.
    pub last: Option<Run>,
    /// The newest successful run.
    pub last_success: Option<DateTime<Utc>>,
}

/// The jobs with their next runs (from `now`) and last runs.
pub fn job_listing(
    settings: &Settings,
    jobs: &Jobs,
    now: DateTime<Utc>,
) -> Result<Vec<JobListing>, SchedulerError> {
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs).read()?;
    Ok(listing(jobs, &state, now))
}

fn listing(jobs: &Jobs, state: &State, now: DateTime<Utc>) -> Vec<JobListing> {
    jobs.jobs
        .iter()
        .map(|j| {
            let next = j.schedule.upcoming(now, NEXT_RUNS);
            let zone = j.schedule.zone();
            JobListing {
                name: j.name.clone(),
                action: j.action.to_string(),
                schedule: j.schedule.expr().to_string(),
                timezone: zone.to_string(),
                next_local: next.iter().map(|t| zone.show(*t)).collect(),
                next,
                last: state.last_run(&j.name).cloned(),
                last_success: state.last_success(&j.name).map(|r| r.started),
            }
        })
        .collect()
}

/// `pgkeep status`: one screen for a person.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// The cluster's facts: newest backups, window, archiver, last drill.
    pub facts: ClusterFacts,
    /// The jobs with their next and last runs.
    pub jobs: Vec<JobListing>,
    /// The alerts the daemon raised and that have not cleared, by key.
    pub alerts: std::collections::BTreeMap<String, ActiveAlert>,
    /// The conditions that hold now, read afresh (the same the daemon alerts on): without a
    /// daemon, from cron, this is where they show.
    pub holding: Vec<Condition>,
    /// When this was read.
    pub at: DateTime<Utc>,
}

/// Reads everything `pgkeep status` shows.
pub async fn status(settings: &Settings, jobs: &Jobs) -> Result<Status, SchedulerError> {
    let now = Utc::now();
    let facts = crate::watch::cluster_facts(settings).await;
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs).read()?;
    let holding = crate::watch::conditions(&facts, &jobs.settings, now);
    Ok(Status {
        holding,
        facts,
        jobs: listing(jobs, &state, now),
        alerts: state.alerts,
        at: now,
    })
}

/// The metrics of the jobs (from the history) and the cluster (from `facts`).
pub fn metrics(
    settings: &Settings,
    jobs: &Jobs,
    facts: &ClusterFacts,
) -> Result<Metrics, SchedulerError> {
    let now = Utc::now();
    let state = StateFile::new(&settings.state_dir, jobs.settings.history_runs).read()?;
    let jobs = jobs
        .jobs
        .iter()
        .map(|j| {
            let last = state.last_run(&j.name);
            JobMetrics {
                job: j.name.clone(),
                last_success: state.last_success(&j.name).and_then(|r| r.ended),
                last_duration: last.and_then(Run::duration),
                last_bytes: last.and_then(|r| r.bytes),
                last_outcome: last.map(|r| r.outcome.as_str().to_string()),
            }
        })
        .collect();
    let drill = facts.last_drill.as_ref();
    let secs = |s: Option<f64>| {
        s.filter(|s| s.is_finite() && *s >= 0.0)
            .map(std::time::Duration::from_secs_f64)
    };
    Ok(Metrics {
        jobs,
        cluster: ClusterMetrics {
            cluster: facts.cluster.clone(),
            newest_backup_age: [BackupKind::Logical, BackupKind::Physical]
                .into_iter()
                .filter_map(|k| {
                    facts
                        .newest(k)
                        .map(|n| (kind_word(k).to_string(), age(now, n.finished_at)))
                })
                .collect(),
            archive_lag: facts
                .archiver
                .as_ref()
                .ok()
                .and_then(|a| a.last_archived_time)
                .map(|t| age(now, t)),
            last_drill_rto: secs(drill.and_then(|d| d.rto_seconds)),
            last_drill_rpo: secs(drill.and_then(|d| d.rpo_seconds)),
        },
    })
}
