//! The checks of a restored throwaway cluster: it accepts connections; every database of the
//! backup is there; `count(*)` of every user table succeeds; amcheck's `bt_index_check` passes on
//! every B-tree index, when the server has the amcheck extension (postgresql-contrib). A check
//! that fails says which table or index and PostgreSQL's message; checks never stop each other.

use tokio_postgres::Client;

use super::record::{DrillCheck, DrillCheckKind, DrillCheckResult};
use crate::error::Error;
use crate::pg::{self, ConnInfo, quote_ident};

/// The schema a drill creates the amcheck extension in when the database does not have it.
const AMCHECK_SCHEMA: &str = "pgkeep_drill";

/// How many failures of one check are named in its problem.
const NAMED_FAILURES: usize = 5;

/// The user tables whose rows a drill counts: tables and populated materialized views outside the
/// system schemas, not temporary. Partitioned tables are counted through their partitions.
const USER_TABLES: &str = "SELECT n.nspname, c.relname FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'm') AND c.relpersistence <> 't'
       AND (c.relkind <> 'm' OR c.relispopulated)
       AND n.nspname NOT IN ('pg_catalog', 'information_schema')
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
     ORDER BY 1, 2";

/// Every valid B-tree index, the system catalogs' included, except those of temporary tables and
/// partitioned indexes (relkind `I`, which have no storage and which `bt_index_check` refuses).
const BTREE_INDEXES: &str = "SELECT c.oid, n.nspname, c.relname FROM pg_index i
      JOIN pg_class c ON c.oid = i.indexrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_am am ON am.oid = c.relam
      JOIN pg_class t ON t.oid = i.indrelid
     WHERE am.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready AND t.relpersistence <> 't'
     ORDER BY 2, 3";

/// What checking a database needs: how to reach the server, and whether amcheck is there.
pub(crate) struct Checker {
    conninfo: ConnInfo,
    amcheck: bool,
}

/// A check's result from its failures: passed when there are none, else the first few named.
fn result(failures: &[String], of: u64, what: &str) -> DrillCheckResult {
    if failures.is_empty() {
        return DrillCheckResult::Passed;
    }
    let mut problem = format!("{} of {of} {what} failed: ", failures.len());
    problem.push_str(&failures[..failures.len().min(NAMED_FAILURES)].join("; "));
    if failures.len() > NAMED_FAILURES {
        problem.push_str(&format!("; and {} more", failures.len() - NAMED_FAILURES));
    }
    DrillCheckResult::Failed { problem }
}

/// PostgreSQL's message of a failed query.
fn message(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map_or_else(|| e.to_string(), |d| d.message().to_string())
}

/// `schema.name`, quoted.
fn qualified(schema: &str, name: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(name))
}

impl Checker {
    /// Connects to the restored server (as a superuser: the first of `users` that exists, then
    /// the cluster's bootstrap superuser) and learns whether amcheck is available. The error is
    /// the last connection's.
    pub(crate) async fn connect(
        conninfo: &ConnInfo,
        users: &[String],
    ) -> Result<(Checker, DrillCheck), Error> {
        let mut last = None;
        for user in users {
            let mut candidate = conninfo.clone();
            candidate.user = user.clone();
            match pg::connect(&candidate, None).await {
                Ok(client) => return Checker::connected(candidate, &client).await,
                Err(e) => last = Some(e),
            }
        }
        Err(last.map_or_else(
            || Error::Internal {
                problem: "no role to connect to the drill's server as".into(),
            },
            Error::from,
        ))
    }

    async fn connected(
        mut conninfo: ConnInfo,
        client: &Client,
    ) -> Result<(Checker, DrillCheck), Error> {
        let what = "finding the restored cluster's superuser and amcheck";
        let row = client
            .query_one(
                "SELECT (SELECT rolname FROM pg_roles WHERE oid = 10)::text,
                        EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck')",
                &[],
            )
            .await
            .map_err(|e| pg::query_error(&conninfo, what, e))?;
        conninfo.user = row.get(0);
        let check = DrillCheck {
            check: DrillCheckKind::Connects,
            database: None,
            checked: 1,
            result: DrillCheckResult::Passed,
        };
        Ok((
            Checker {
                conninfo,
                amcheck: row.get(1),
            },
            check,
        ))
    }

    /// The databases to check: those of `expected` (a logical backup's) that are there, else
    /// every database that accepts connections; and the check that they are all there.
    pub(crate) async fn databases(
        &self,
        expected: Option<&[&str]>,
    ) -> Result<(Vec<String>, DrillCheck), Error> {
        let client = pg::connect(&self.conninfo, None).await?;
        let present: Vec<String> = client
            .query(
                "SELECT datname::text FROM pg_database WHERE datallowconn ORDER BY 1",
                &[],
            )
            .await
            .map_err(|e| pg::query_error(&self.conninfo, "listing the databases", e))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let (databases, missing): (Vec<String>, Vec<String>) = match expected {
            Some(expected) => {
                let (there, missing) = expected
                    .iter()
                    .map(|d| d.to_string())
                    .partition(|d| present.contains(d));
                (there, missing)
            }
            None => (present, Vec::new()),
        };
        let result = match missing.is_empty() {
            true => DrillCheckResult::Passed,
            false => DrillCheckResult::Failed {
                problem: format!(
                    "missing after the restore: {}",
                    missing
                        .iter()
                        .map(|d| quote_ident(d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            },
        };
        let check = DrillCheck {
            check: DrillCheckKind::Databases,
            database: None,
            checked: (databases.len() + missing.len()) as u64,
            result,
        };
        Ok((databases, check))
    }

    /// The checks of one database: its tables counted, its B-tree indexes checked.
    pub(crate) async fn database(&self, database: &str) -> Vec<DrillCheck> {
        let check = |check, checked, result| DrillCheck {
            check,
            database: Some(database.to_string()),
            checked,
            result,
        };
        let client = match self.session(database).await {
            Ok(client) => client,
            Err(e) => {
                let problem = format!(
                    "cannot connect: {}",
                    e.to_string().lines().next().unwrap_or("")
                );
                return vec![check(
                    DrillCheckKind::Tables,
                    0,
                    DrillCheckResult::Failed { problem },
                )];
            }
        };
        let (counted, tables) = count_tables(&client).await;
        let mut checks = vec![check(DrillCheckKind::Tables, counted, tables)];
        let (checked, indexes) = match self.amcheck {
            true => check_indexes(&client).await,
            false => (
                0,
                DrillCheckResult::Skipped {
                    why: "amcheck not available (install postgresql-contrib on this host)".into(),
                },
            ),
        };
        checks.push(check(DrillCheckKind::Indexes, checked, indexes));
        checks
    }

    /// A session in `database` that may write (to create amcheck) and waits for nothing.
    async fn session(&self, database: &str) -> Result<Client, Error> {
        let client = pg::connect(&self.conninfo, Some(database)).await?;
        client
            .batch_execute(
                "SET default_transaction_read_only = off; SET statement_timeout = 0; SET lock_timeout = 0",
            )
            .await
            .map_err(|e| pg::query_error(&self.conninfo, "setting up the check session", e))?;
        Ok(client)
    }
}

/// `count(*)` of every user table: how many were counted, and the result.
async fn count_tables(client: &Client) -> (u64, DrillCheckResult) {
    let tables = match client.query(USER_TABLES, &[]).await {
        Ok(rows) => rows,
        Err(e) => {
            let problem = format!("cannot list the tables: {}", message(&e));
            return (0, DrillCheckResult::Failed { problem });
        }
    };
    let mut failures = Vec::new();
    for row in &tables {
        let name = qualified(row.get(0), row.get(1));
        if let Err(e) = client
            .query_one(&format!("SELECT count(*) FROM {name}"), &[])
            .await
        {
            failures.push(format!("{name}: {}", message(&e)));
        }
    }
    let of = tables.len() as u64;
    (of, result(&failures, of, "table(s)"))
}

/// amcheck's `bt_index_check` on every B-tree index, the extension created first if need be.
async fn check_indexes(client: &Client) -> (u64, DrillCheckResult) {
    let schema = match amcheck_schema(client).await {
        Ok(schema) => schema,
        Err(e) => {
            let problem = format!("cannot create the amcheck extension: {}", message(&e));
            return (0, DrillCheckResult::Failed { problem });
        }
    };
    let indexes = match client.query(BTREE_INDEXES, &[]).await {
        Ok(rows) => rows,
        Err(e) => {
            let problem = format!("cannot list the indexes: {}", message(&e));
            return (0, DrillCheckResult::Failed { problem });
        }
    };
    let sql = format!(
        "SELECT {}.bt_index_check($1::oid::regclass)",
        quote_ident(&schema)
    );
    let mut failures = Vec::new();
    for row in &indexes {
        let oid: u32 = row.get(0);
        if let Err(e) = client.query_one(&sql, &[&oid]).await {
            failures.push(format!(
                "{}: {}",
                qualified(row.get(1), row.get(2)),
                message(&e)
            ));
        }
    }
    let of = indexes.len() as u64;
    (of, result(&failures, of, "index(es)"))
}

/// The schema of the amcheck extension in this database. When it is not installed it is created
/// in a schema of the drill's own ([`AMCHECK_SCHEMA`]): the database may have no `public` schema,
/// and the cluster is thrown away.
async fn amcheck_schema(client: &Client) -> Result<String, tokio_postgres::Error> {
    let installed = "SELECT n.nspname::text FROM pg_extension e
               JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'amcheck'";
    if let Some(row) = client.query_opt(installed, &[]).await? {
        return Ok(row.get(0));
    }
    let schema = quote_ident(AMCHECK_SCHEMA);
    client
        .batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}; CREATE EXTENSION amcheck SCHEMA {schema}"
        ))
        .await?;
    Ok(AMCHECK_SCHEMA.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_check_names_the_first_failures() {
        assert_eq!(result(&[], 3, "table(s)"), DrillCheckResult::Passed);
        let failures: Vec<String> = (0..7).map(|n| format!("t{n}: boom")).collect();
        let DrillCheckResult::Failed { problem } = result(&failures, 9, "table(s)") else {
            panic!("must fail");
        };
        assert!(
            problem.starts_with("7 of 9 table(s) failed: t0: boom; "),
            "{problem}"
        );
        assert!(problem.ends_with("t4: boom; and 2 more"), "{problem}");
        assert_eq!(qualified("my \"s\"", "a b"), "\"my \"\"s\"\"\".\"a b\"");
    }
}
