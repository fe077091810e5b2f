//! Two-server master/standby failover for pgkeep: the node holding the `/primary_server` marker file is
//! the master; switchover, promotion and rejoin move the marker, the PostgreSQL roles and the services
//! together; site files are replicated by rsync, only from the master.
//!
//! Built so far:
//!
//! - [`node`]: the nodes from the configuration ([`Pair`]), reached locally or over ssh (BatchMode),
//!   with their marker path, data directory, connection and service commands.
//! - [`status`]: each node's view (marker, PostgreSQL up, recovery, timeline, LSNs, lag, replay paused,
//!   streaming) and the problems of the pair (markers on both or none, a marker on a standby, two
//!   primaries, a standby not streaming).
//! - [`sync`]: `rsync` of the configured site paths from the master to its peers, with the guards
//!   against wiping a peer (marker checks, sentinel file, `--max-delete`) under the failover lock.
//!
//! - [`switchover`]: the planned move, checked first, then step by step with a journal so that a
//!   rerun after an interruption continues where it stopped.
//! - [`promote`]: the unplanned path (promote this machine's standby when the master is gone) and the
//!   way back (`rejoin`: pg_rewind, or a fresh pg_basebackup, then start it as a standby).

pub mod error;
pub mod node;
pub mod promote;
pub mod status;
pub mod switchover;
pub mod sync;

pub use error::FailoverError;
pub use node::{Node, Pair, Transport};
pub use status::{NodeStatus, PairStatus};
pub use sync::SyncReport;
