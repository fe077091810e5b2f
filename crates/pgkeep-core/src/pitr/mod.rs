//! Point-in-time restores from a physical backup and the WAL archive: what to aim at
//! ([`target`]), a plan that proves the archive holds every segment recovery needs before anything
//! is written ([`plan`]), the recovery settings written for the restored server ([`recovery`]),
//! the primary's current WAL archived first ([`switch`]), the restore itself ([`restore`]; a local-mode backup is unpacked in parallel by [`unpack`]) and starting and watching the restored server ([`start`]).

mod plan;
mod recovery;
mod restore;
mod start;
mod switch;
mod target;
mod unpack;

pub use plan::{PhysicalRestorePlan, PhysicalRestoreRequest, plan_physical_restore};
pub use restore::{
    PhysicalRestoreOptions, PhysicalRestoreReport, RECOVERY_LEASE, RestoreState, restore_physical,
};
pub use switch::{SwitchedWal, switch_wal};
pub use target::{
    RecoveryTarget, RecoveryWindow, TargetAction, TimelineChoice, TimelineChoiceError, WindowEnd,
    recoverable_window,
};
