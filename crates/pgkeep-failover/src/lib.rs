//! Two-server master/standby failover for pgkeep: the node holding the `/primary_server` marker file is
//! the master; switchover, promotion and rejoin move the marker, the PostgreSQL roles and the services
//! together; site files are replicated by rsync, only from the master.
//!
//! The modules, each importing only from those before it:
//!
//! - [`node`]: the nodes from the configuration ([`Pair`]), reached locally or over ssh (BatchMode),
//!   with their marker path, data directory, connection and service commands.
//! - `marker` and `hooks`: creating and removing the marker durably on a node; the hooks run after a
//!   role change.
//! - `state`: the state files in `failover.state-dir` (the switchover journal, the must-rejoin
//!   record), written durably and never silently ignored when unreadable.
//! - [`status`]: each node's view (marker, PostgreSQL up, recovery, timeline, LSNs, lag, replay paused,
//!   streaming) and the problems of the pair (markers on both or none, a marker on a standby, two
//!   primaries, a standby not streaming).
//! - [`sync`]: `rsync` of the configured site paths from the master to its peers, with the guards
//!   against wiping a peer (marker checks, sentinel file, `--max-delete`) under the failover lock.
//! - [`switchover`]: the planned move, checked first, then step by step with a journal so that a
//!   rerun after an interruption continues where it stopped.
//! - [`promote`]: the unplanned path (promote this machine's standby when the master is gone), and
//!   [`rejoin`], the way back (pg_rewind, or a fresh pg_basebackup, then start it as a standby
//!   whose `restore_command` fetches archived WAL from the shared repository, [`WalFetch`]).

pub mod error;
mod hooks;
mod marker;
pub mod node;
pub mod promote;
pub mod rejoin;
mod state;
pub mod status;
pub mod switchover;
pub mod sync;

pub use error::FailoverError;
pub use node::{Node, Pair, Transport, WalFetch};
pub use promote::{PromoteReport, promote};
pub use rejoin::{RejoinMethod, RejoinReport, rejoin};
pub use state::MustRejoin;
pub use status::{NodeStatus, PairStatus, status};
pub use switchover::{Step, SwitchoverReport, switchover};
pub use sync::{SyncReport, sync_files};
