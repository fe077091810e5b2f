//! The database a logical restore writes into: looked up, created (under another name, or by
//! `pg_restore --create`) or replaced (`--clean`), and after a failed restore dropped again — only
//! when this restore created it, never a database that existed before.

use super::restore::{LogicalRestorePlan, MAINTENANCE_DB};
use crate::error::{Error, LogicalError, TargetOutcome};
use crate::exec::ProcessError;
use crate::pg::{self, quote_ident, quote_literal};
use crate::repo::catalog::DatabaseInfo;
use crate::settings::Settings;

/// How a restore meets its target database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Made {
    /// It existed before; `--clean` replaces its contents.
    Existing,
    /// This restore created it (another name than the original), with this oid.
    Created(u32),
    /// It did not exist; `pg_restore --create` creates it.
    ByPgRestore,
}

/// pg_restore's arguments for the target, the database it connects to, and how it was met.
#[derive(Debug)]
pub(super) struct Target {
    pub(super) args: Vec<String>,
    pub(super) connect_to: String,
    pub(super) made: Made,
    /// The `application_name` of pg_restore's sessions, to wait for their end after a failure.
    pub(super) application_name: String,
}

/// Whether the target database exists; refused unless `clean` (nothing is changed).
pub(super) async fn target_exists(
    client: &tokio_postgres::Client,
    settings: &Settings,
    target: &str,
    clean: bool,
) -> Result<bool, Error> {
    let exists = database_oid(client, settings, target).await?.is_some();
    if exists && !clean {
        return Err(LogicalError::DatabaseExists {
            name: target.to_string(),
        }
        .into());
    }
    Ok(exists)
}

/// Decides how pg_restore meets the target (`exists`: see [`target_exists`]): `--clean` into the
/// existing database, `--create` of the database under its own name, or a database created here
/// like the original under another name.
pub(super) async fn prepare_target(
    client: &tokio_postgres::Client,
    settings: &Settings,
    plan: &LogicalRestorePlan,
    info: Option<&DatabaseInfo>,
    exists: bool,
) -> Result<Target, Error> {
    let mut args = vec!["--exit-on-error".to_string(), "--no-password".to_string()];
    let (connect_to, made) = if exists {
        args.extend(["--clean".into(), "--if-exists".into()]);
        (plan.target.clone(), Made::Existing)
    } else if plan.target == plan.database {
        // pg_restore creates it as it was: encoding, locale, owner, settings, grants.
        args.push("--create".into());
        (MAINTENANCE_DB.to_string(), Made::ByPgRestore)
    } else {
        create_like(client, settings, &plan.target, info).await?;
        let oid = database_oid(client, settings, &plan.target)
            .await?
            .ok_or_else(|| Error::Internal {
                problem: format!("database `{}` is missing right after CREATE", plan.target),
            })?;
        (plan.target.clone(), Made::Created(oid))
    };
    Ok(Target {
        args,
        connect_to,
        made,
        application_name: format!("pgkeep-restore-{}", std::process::id()),
    })
}

/// After a failed restore: once pg_restore's sessions have ended (a CREATE DATABASE the server
/// was still running commits first), drops the target if this restore created it, and says what
/// became of it. A database that existed before is never dropped, nor one under the name that is
/// not the one this restore created (another oid, or pg_restore's own CREATE DATABASE failed).
pub(super) async fn clean_up(
    settings: &Settings,
    server_major: u32,
    name: &str,
    target: &Target,
    failure: &Error,
) -> TargetOutcome {
    let expected = match target.made {
        Made::Existing => return TargetOutcome::PartlyRestored,
        Made::ByPgRestore if create_database_failed(failure) => None,
        Made::ByPgRestore => Some(None),
        Made::Created(oid) => Some(Some(oid)),
    };
    let reason = |e: tokio_postgres::Error| TargetOutcome::DropFailed {
        reason: e
            .as_db_error()
            .map_or_else(|| e.to_string(), |d| d.message().to_string()),
    };
    let client = match pg::connect(&settings.conninfo, Some(MAINTENANCE_DB)).await {
        Ok(client) => client,
        Err(e) => {
            return TargetOutcome::DropFailed {
                reason: e.to_string(),
            };
        }
    };
    if let Err(e) = sessions_ended(&client, &target.application_name).await {
        return reason(e);
    }
    let found: Option<u32> = match client
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
    {
        Ok(row) => row.map(|r| r.get(0)),
        Err(e) => return reason(e),
    };
    match (found, expected) {
        (None, _) => TargetOutcome::NothingLeft,
        (Some(_), None) => TargetOutcome::NotOurs,
        (Some(found), Some(Some(oid))) if found != oid => TargetOutcome::NotOurs,
        (Some(_), Some(_)) => {
            // FORCE (PostgreSQL 13 and later): a session that outlived the wait is ended.
            let force = if server_major >= 13 {
                " WITH (FORCE)"
            } else {
                ""
            };
            let sql = format!("DROP DATABASE {}{force}", quote_ident(name));
            match client.batch_execute(&sql).await {
                Ok(()) => TargetOutcome::Dropped,
                Err(e) => reason(e),
            }
        }
    }
}

/// Waits (up to 30 s) until the server runs no session of pg_restore's: a killed pg_restore's
/// backend finishes the statement it was running first.
async fn sessions_ended(
    client: &tokio_postgres::Client,
    application_name: &str,
) -> Result<(), tokio_postgres::Error> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let row = client
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                &[&application_name],
            )
            .await?;
        if row.get::<_, i64>(0) == 0 || std::time::Instant::now() > deadline {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Whether pg_restore itself reported its CREATE DATABASE as the command that failed (the
/// database under the name is then not the one it was asked to create).
fn create_database_failed(failure: &Error) -> bool {
    matches!(
        failure,
        Error::Logical(LogicalError::RestoreFailed {
            source: ProcessError::Failed { stderr, .. },
            ..
        }) if stderr.contains("CREATE DATABASE")
    )
}

async fn database_oid(
    client: &tokio_postgres::Client,
    settings: &Settings,
    name: &str,
) -> Result<Option<u32>, Error> {
    Ok(client
        .query_opt("SELECT oid FROM pg_database WHERE datname = $1", &[&name])
        .await
        .map_err(|e| pg::query_error(&settings.conninfo, "looking up the target database", e))?
        .map(|r| r.get(0)))
}

async fn create_like(
    client: &tokio_postgres::Client,
    settings: &Settings,
    name: &str,
    info: Option<&DatabaseInfo>,
) -> Result<(), Error> {
    let mut sql = format!("CREATE DATABASE {} TEMPLATE template0", quote_ident(name));
    if let Some(info) = info {
        sql.push_str(&format!(
            " ENCODING {} LC_COLLATE {} LC_CTYPE {}",
            quote_literal(&info.encoding),
            quote_literal(&info.collate),
            quote_literal(&info.ctype)
        ));
        let owner_exists = client
            .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&info.owner])
            .await
            .map_err(|e| pg::query_error(&settings.conninfo, "looking up the owner role", e))?
            .is_some();
        if owner_exists {
            sql.push_str(&format!(" OWNER {}", quote_ident(&info.owner)));
        }
    }
    client.batch_execute(&sql).await.map_err(|e| {
        pg::query_error(
            &settings.conninfo,
            &format!("creating database `{name}`"),
            e,
        )
        .into()
    })
}
