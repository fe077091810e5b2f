//! PostgreSQL's own vocabulary and access to a server: connection parameters resolved as libpq
//! resolves them ([`ConnInfo`]), connecting and querying ([`connect`], [`PgError`]), WAL locations
//! and file names ([`Lsn`], [`WalFile`]), points in time as operators write them
//! ([`parse_time`]) and quoting for SQL and postgresql.conf.
//!
//! This is the bottom layer of the crate: it imports nothing else from it.

mod client;
mod conninfo;
mod lsn;
mod quote;
mod time;
mod walname;
mod zone;

pub use client::{PgError, ServerInfo, connect, server_info};
pub(crate) use client::{UTC_TEXT, parse_utc_text, query_error, query_time};
pub use conninfo::{
    ConnInfo, ConnInfoError, DEFAULT_PORT, DEFAULT_SOCKET_DIR, PasswordSource,
    conninfo_has_password,
};
pub use lsn::Lsn;
pub use quote::{command_percent, conf_quote};
pub(crate) use quote::{quote_ident, quote_literal};
pub use time::{TimeError, parse_time, parse_time_in};
pub(crate) use time::{utc_micros, utc_millis};
pub use walname::{DEFAULT_SEGMENT_SIZE, WalFile, segment_name};
pub use zone::{UnknownZone, Zone};
