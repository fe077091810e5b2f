//! Scheduled jobs for pgkeep: nightly dumps, weekly base backups, expiry, restore drills and file sync,
//! run from cron expressions by a long-running daemon (`pgkeep schedule run`) or once on demand.
//!
//! This crate is a placeholder in the foundation release; the module plan it will grow into is:
//!
//! - `schedule`: parsing of cron expressions (the `cron` crate) evaluated in a configured time zone
//!   (`chrono-tz`), with the next fire times listed by `pgkeep schedule list`.
//! - `job`: the job kinds (logical backup, physical backup, expire, drill, file sync) as calls into
//!   `pgkeep-core` and `pgkeep-failover`; a job is a library call, never a shell string.
//! - `lock`: one run of a job at a time per repository and cluster (a lock file with the holder's pid,
//!   taken with `flock`), so a slow nightly dump is never started twice.
//! - `history`: an append-only record of each run (start, end, outcome, backup id) that `schedule list`
//!   and notifications read.
//! - `notify`: hooks run after success or failure (a command, with the outcome in its environment).
//! - `runner`: the daemon loop: sleep until the next due job, run it, record it, survive a missed
//!   wake-up (a job due while the machine slept runs once, not once per missed slot).
