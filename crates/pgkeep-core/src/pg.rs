//! PostgreSQL access: connecting as libpq would, and the facts about a server that backups depend on.

use serde::Serialize;
use tokio_postgres::error::SqlState;

use crate::conninfo::ConnInfo;
use crate::error::{Error, pg_detail};

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
        _ if pg_detail(e).contains("password missing") => format!(
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
) -> Result<tokio_postgres::Client, Error> {
    let (client, connection) = conninfo
        .pg_config(dbname)
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| Error::Postgres {
            server: conninfo.server(),
            what: format!("connecting as `{}`", conninfo.user),
            fix: connect_fix(conninfo, &e),
            detail: pg_detail(&e),
            source: e,
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
) -> Result<ServerInfo, Error> {
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
        .map_err(|e| Error::Postgres {
            server: conninfo.server(),
            what: "reading the server's version and settings".into(),
            fix: format!(
                "connect as a superuser, or grant role `{}` pg_monitor (GRANT pg_monitor TO \"{}\")",
                conninfo.user, conninfo.user
            ),
            detail: pg_detail(&e),
            source: e,
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

/// A failed query, with the server's message.
pub(crate) fn query_error(conninfo: &ConnInfo, what: &str, e: tokio_postgres::Error) -> Error {
    Error::Postgres {
        server: conninfo.server(),
        what: what.to_string(),
        detail: pg_detail(&e),
        fix: "read the server's message; check the role's privileges (a superuser, or pg_read_all_data for backups)".into(),
        source: e,
    }
}
