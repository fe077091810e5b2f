//! Human-readable renderings of reports. JSON output is the reports' serde form (and `list_json`).

mod backups;
mod check;
mod drill;
mod failover;
mod restore;
mod retention;
mod schedule;

pub use backups::{backup_summary, info, list_json, list_table, verify_report, wal_report};
pub use check::check_report;
pub use drill::{drill_run, history as drill_history};
pub use failover::{pair_status, switchover_report, sync_report};
pub use restore::{
    globals_report, physical_plan, physical_report, restore_plan, restore_report, skipped,
    switched_wal,
};
pub use retention::{expire_done, expire_plan, pinned, unpinned};
pub use schedule::{job_listing, job_run, status};

fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

fn when(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A time to the microsecond, where a user may paste it into `--at` (which reads it back).
fn when_micros(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string()
}

fn ratio(size: u64, stored: u64) -> String {
    if stored == 0 {
        "-".into()
    } else {
        format!("{:.2}", size as f64 / stored as f64)
    }
}
