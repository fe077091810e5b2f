//! Scheduled jobs for pgkeep: nightly dumps, weekly base backups, expiry, restore drills and file
//! sync, run from cron expressions by a long-running daemon ([`run_daemon`], `pgkeep schedule
//! run`) or once on demand ([`run_job`], `pgkeep schedule once`) with the same locks, hooks,
//! history and notifications, and the conditions the daemon watches by itself (overdue backups,
//! stuck WAL archiving) turned into alerts and metrics.
//!
//! - `schedule`: cron expressions (the `cron` crate) evaluated in a time zone (`chrono-tz`),
//!   daylight saving handled.
//! - `job`, `action`: `[[job]]` checked into [`Job`]s whose [`Action`] is a library call into
//!   `pgkeep-core` or `pgkeep-failover`, never a shell string.
//! - `runner`: one run: the job's own lock, hooks, timeout, history record, notification.
//! - `history`: the state file (runs and active alerts), durable and bounded.
//! - `watch`, `alerts`: the facts read at each check, the conditions they raise, and each alert
//!   sent once when it starts and once when it clears.
//! - `notify`: webhook and command; `metrics`: the Prometheus textfile.
//! - `daemon`: the loop; `report`: `schedule list`, `status`, metrics.
//!
//! Backups and expire also take `pgkeep-core`'s work lock ([`pgkeep_core::lock_work`]), which
//! `pgkeep backup` run from cron or by hand shares.

mod action;
mod alerts;
mod daemon;
mod error;
mod history;
mod job;
mod metrics;
mod notify;
mod report;
mod runner;
mod schedule;
mod watch;

pub use action::{ACTIONS, Action, Done};
pub use daemon::{Control, Loader, reap_dead_runs, run_daemon};
pub use error::{RunError, SchedulerError};
pub use history::{ActiveAlert, Outcome, Run, STATE_FILE, State, StateFile, Trigger};
pub use job::{Job, Jobs, SchedulerSettings};
pub use report::{JobListing, NEXT_RUNS, Status, job_listing, metrics, status};
pub use runner::{Finished, run_job};
pub use schedule::{Schedule, ScheduleError};
pub use watch::{Archiver, ClusterFacts, Condition, Newest, cluster_facts, conditions};
