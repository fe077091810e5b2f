//! Connecting to PostgreSQL as libpq would, the facts about a server that backups depend on, and
//! [`PgError`]: a failed connection or query with the server's own words and a fix.

use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::pg::ConnInfo;

/// Connecting to or querying PostgreSQL failed.
#[derive(Debug, thiserror::Error)]
#[error("PostgreSQL at {server}: {what}: {detail}\n  fix: {fix}")]
pub struct PgError {
    /// host:port (never the password).
    pub server: String,
    /// What was being done.
    pub what: String,
    /// The server's message, or the chain of causes.
    pub detail: String,
    /// The driver's error.
    #[source]
    pub source: tokio_postgres::Error,
    /// What to do.
    pub fix: String,
}

impl PgError {
    /// A failed query on the server at `conninfo`, with the server's message and `fix`.
    pub fn new(
        conninfo: &ConnInfo,
        what: impl Into<String>,
        source: tokio_postgres::Error,
        fix: impl Into<String>,
    ) -> PgError {
        PgError {
            server: conninfo.server(),
            what: what.into(),
            detail: detail(&source),
            source,
            fix: fix.into(),
        }
    }
}

/// The full story of a driver error: the server's message with its detail and hint, or the chain of
/// causes ("error connecting to server: No such file or directory").
fn detail(error: &tokio_postgres::Error) -> String {
    if let Some(db) = error.as_db_error() {
        let mut text = format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    let mut text = error.to_string();
    let mut cause = std::error::Error::source(error);
    while let Some(c) = cause {
        text.push_str(&format!(": {c}"));
        cause = c.source();
    }
    text
}

/// Facts about a running server.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    /// `server_version`, e.g. `15.18 (Debian 15.18-0+deb12u1)`.
    pub version: String,
    /// `server_version_num`, e.g. 150018.
    pub version_num: u32,
    /// Major version, e.g. 15.
    pub major: u32,
    /// The cluster's system identifier, decimal.
    pub system_identifier: String,
    /// Whether the server is a standby.
    pub in_recovery: bool,
    /// `wal_level`.
    pub wal_level: String,
    /// `archive_mode`.
    pub archive_mode: String,
    /// `archive_command`.
    pub archive_command: String,
    /// `data_directory`, when the role may read it (superuser or pg_read_all_settings).
    pub data_directory: Option<String>,
}

fn connect_fix(conninfo: &ConnInfo, e: &tokio_postgres::Error) -> String {
    match e.code() {
        Some(code) if *code == SqlState::INVALID_PASSWORD => format!(
            "check the password for role `{}`: ~/.pgpass (mode 0600), PGPASSFILE or PGPASSWORD",
            conninfo.user
        ),
        Some(code) if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => format!(
            "allow role `{}` in the server's pg_hba.conf, or connect as another role (PGUSER)",
            conninfo.user
        ),
        Some(code) if *code == SqlState::INVALID_CATALOG_NAME => format!(
            "database `{}` does not exist: set PGDATABASE or dbname= in postgres.conninfo",
            conninfo.dbname
        ),
        _ if detail(e).contains("password missing") => format!(
            "the server wants a password for role `{}`: put it in ~/.pgpass or the file PGPASSFILE \
             names (mode 0600, as libpq requires), or set PGPASSWORD",
            conninfo.user
        ),
        _ => format!(
            "check that PostgreSQL is running and listening at {} (PGHOST/PGPORT or postgres.conninfo)",
            conninfo.server()
        ),
    }
}

/// Connects to `dbname` (else the configured database); the connection runs on a spawned task.
pub async fn connect(
    conninfo: &ConnInfo,
    dbname: Option<&str>,
) -> Result<tokio_postgres::Client, PgError> {
    let (client, connection) = conninfo
        .pg_config(dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| {
            let fix = connect_fix(conninfo, &e);
            PgError::new(
                conninfo,
                format!("connecting as `{}`", conninfo.user),
                e,
                fix,
            )
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection closed: {e}");
        }
    });
    Ok(client)
}

/// Reads the server's version, identity and WAL settings.
pub async fn server_info(
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
) -> Result<ServerInfo, PgError> {
    let row = client
        .query_one(
            "SELECT current_setting('server_version'),
                    current_setting('server_version_num')::int4,
                    (SELECT system_identifier FROM pg_control_system())::text,
                    pg_is_in_recovery(),
                    current_setting('wal_level'),
                    current_setting('archive_mode'),
                    current_setting('archive_command'),
                    (SELECT setting FROM pg_settings WHERE name = 'data_directory')",
            &[],
        )
        .await
        .map_err(|e| {
            let fix = format!(
                "connect as a superuser, or grant role `{}` pg_monitor (GRANT pg_monitor TO \"{}\")",
                conninfo.user, conninfo.user
            );
            PgError::new(conninfo, "reading the server's version and settings", e, fix)
        })?;
    let version_num = row.get::<_, i32>(1) as u32;
    Ok(ServerInfo {
        version: row.get(0),
        version_num,
        major: if version_num >= 100_000 {
            version_num / 10_000
        } else {
            version_num / 100
        },
        system_identifier: row.get(2),
        in_recovery: row.get(3),
        wal_level: row.get(4),
        archive_mode: row.get(5),
        archive_command: row.get(6),
        data_directory: row.get(7),
    })
}

/// A failed query, with the server's message and the usual fix (privileges).
pub(crate) fn query_error(conninfo: &ConnInfo, what: &str, e: tokio_postgres::Error) -> PgError {
    PgError::new(
        conninfo,
        what,
        e,
        "read the server's message; check the role's privileges (a superuser, or pg_read_all_data for backups)",
    )
}

/// Runs a query whose one row holds one UTC time as RFC 3339 text (`to_char(... AT TIME ZONE
/// 'UTC', ...)`, see [`UTC_TEXT`]) and parses it; `None` for SQL NULL.
pub(crate) async fn query_time(
    client: &tokio_postgres::Client,
    conninfo: &ConnInfo,
    what: &str,
    sql: &str,
) -> Result<Option<DateTime<Utc>>, PgError> {
    let text: Option<String> = client
        .query_one(sql, &[])
        .await
        .map_err(|e| query_error(conninfo, what, e))?
        .get(0);
    Ok(text.as_deref().and_then(parse_utc_text))
}

/// The SQL format of a timestamptz as UTC RFC 3339 text: `to_char(t AT TIME ZONE 'UTC', UTC_TEXT)`.
pub(crate) const UTC_TEXT: &str = "'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'";

/// Parses what [`UTC_TEXT`] made.
pub(crate) fn parse_utc_text(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
