//! Test harness for pgkeep: real servers, no mocks.
//!
//! - [`PgCluster`]: a throwaway PostgreSQL cluster (`initdb` into a temp dir,
//!   `pg_ctl start` on a free loopback port, stopped and removed on drop).
//! - [`Garage`]: a real single-node Garage S3 server on loopback, one per test
//!   process, with a bucket and a key ready to use.
//! - [`FaultProxy`]: a TCP proxy to put between a client and a real server, to
//!   reset connections or cut them after some bytes ([`FaultMode`]).
//!
//! # Finding the servers
//!
//! | what | from |
//! |------|------|
//! | PostgreSQL binaries | `PGKEEP_PG_BIN`, else the highest `/usr/lib/postgresql/<major>/bin` |
//! | Garage | `PGKEEP_GARAGE_BIN`, else `garage` on `PATH`, else `~/.cargo/bin/garage` |
//!
//! Install Garage with `cargo install garage --locked`.
//!
//! # The CI rule
//!
//! Outside CI, a test whose server is missing may skip: [`Garage::shared()`]
//! prints `SKIPPED: ...` and returns `None`, and the test returns early.
//! **Under `CI=true` a missing server fails the test, it never skips**, so a
//! green CI run means every test really ran. (PostgreSQL is always required:
//! a missing PostgreSQL fails everywhere.)
//!
//! # Running as root
//!
//! PostgreSQL refuses to run as root; when the tests do, the clusters are
//! owned and run by the `postgres` OS user (see [`cluster`]).
//!
//! # Debugging
//!
//! When a test panics, the tail of each of its clusters' server log is printed
//! to stderr. Set `PGKEEP_KEEP_TEST_DIRS=1` to keep cluster and Garage
//! directories (their paths are printed).

pub mod cluster;
pub mod garage;
pub mod proxy;
mod sys;
mod util;

pub use cluster::{PgCluster, PgClusterBuilder};
pub use garage::Garage;
pub use proxy::{FaultMode, FaultProxy};

/// `prefix`, a dash and 8 random lowercase hex digits, e.g. `db-5e0c9a1f`:
/// a name no other test uses (databases, buckets, object prefixes...).
pub fn unique_name(prefix: &str) -> String {
    format!("{prefix}-{}", util::random_hex(4))
}

/// Whether we run under CI (`CI` is `true` or `1`): then missing servers are
/// errors, never skips.
pub fn is_ci() -> bool {
    util::env_flag("CI")
}
