//! Retention: which backups `expire` keeps by policy ([`policy`]: a pure function), the plan
//! made from the repository ([`plan`]) and why each backup is kept ([`reason`]), and carrying it out ([`expire`](mod@expire)), with the
//! WAL rule ([`wal`]), the leftovers' grace ([`leftovers`]) and pins ([`pin`]). Running backups
//! and restores are protected by their leases (`repo::lease`).

mod expire;
mod leftovers;
mod pin;
mod plan;
mod policy;
mod reason;
mod wal;

pub use expire::expire;
pub use leftovers::{LeftoverAction, PlannedLeftover, UNFINISHED_MIN_AGE};
pub use pin::{
    Pin, PinChange, PinOutcome, pin_backup, unpin_backup, validate_backup_id, validate_pin_reason,
};
pub use plan::{
    BytesToFree, ExpireOptions, ExpirePlan, FUTURE_TOLERANCE, FutureBackup, PlannedBackup,
    plan_expire,
};
pub use policy::{PolicyBackup, apply_policy};
pub use reason::{KeepReason, Series};
pub use wal::{WalObject, WalPlan, WalStart};
