//! Two-server master/standby failover for pgkeep: the node holding the `/primary_server` marker file is
//! the master; switchover, promotion and rejoin move the marker, the PostgreSQL roles and the services
//! together; site files are replicated by rsync, only from the master.
//!
//! This crate is a placeholder in the foundation release; the module plan it will grow into is:
//!
//! - `node`: a node from the configuration, reached locally or over ssh, with its marker path, data
//!   directory, connection and service commands.
//! - `marker`: reading, creating and removing the marker file durably (write, fsync, rename, fsync dir).
//! - `status`: each node's view (marker present, PostgreSQL reachable, `pg_is_in_recovery()`, replication
//!   lag) and the verdict on whether the pair is consistent.
//! - `journal`: a step-by-step record of a switchover on both nodes, so a rerun resumes where it stopped
//!   and never repeats a step that must not repeat.
//! - `switchover`: the planned move (stop services on the master, checkpoint, wait for the standby to
//!   replay everything, demote, promote, move the marker, start services), under one lock.
//! - `promote` / `rejoin`: the unplanned path and the way back (pg_rewind or a fresh base backup).
//! - `sync`: `rsync` of the configured site paths from the master to its peer, with the guards against
//!   wiping the peer (sentinel file, `--max-delete`, marker checks).
