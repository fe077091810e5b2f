//! Where the PostgreSQL binaries are, and running them as the server's OS user.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Once, OnceLock};

use crate::sys;
use crate::util;

/// Kind prefix of cluster directories under `$TMPDIR`.
pub(super) const DIR_KIND: &str = "pgkeep-pg";
/// The configuration file the harness owns inside the data directory.
pub(super) const TESTKIT_CONF: &str = "pgkeep-testkit.conf";
/// How many lines of server log go into panic messages and panic-time dumps.
pub(super) const LOG_TAIL_LINES: usize = 200;
/// How many times `start` picks a new port when the chosen one got taken.
pub(super) const START_ATTEMPTS: usize = 5;
/// libpq / server environment variables that would interfere with the harness.
pub(super) const PG_ENV_VARS: &[&str] = &[
    "PGDATA",
    "PGHOST",
    "PGHOSTADDR",
    "PGPORT",
    "PGUSER",
    "PGDATABASE",
    "PGPASSWORD",
    "PGPASSFILE",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGOPTIONS",
    "PGTZ",
    "PGDATESTYLE",
    "PGCLIENTENCODING",
    "PGSSLMODE",
    "PGTARGETSESSIONATTRS",
];

/// Where the PostgreSQL server binaries are.
#[derive(Debug)]
pub(super) struct PgBins {
    pub(super) dir: PathBuf,
    pub(super) major: u32,
}

pub(super) fn pg_bins() -> &'static PgBins {
    static BINS: OnceLock<Result<PgBins, String>> = OnceLock::new();
    match BINS.get_or_init(find_pg_bins) {
        Ok(bins) => bins,
        Err(msg) => panic!("{msg}"),
    }
}

pub(super) fn find_pg_bins() -> Result<PgBins, String> {
    let dir = match std::env::var_os("PGKEEP_PG_BIN") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if !dir.join("initdb").is_file() {
                return Err(format!(
                    "pgkeep-testkit: PGKEEP_PG_BIN={} does not contain `initdb`",
                    dir.display()
                ));
            }
            dir
        }
        None => {
            let mut best: Option<(u32, PathBuf)> = None;
            if let Ok(entries) = fs::read_dir("/usr/lib/postgresql") {
                for entry in entries.flatten() {
                    let Some(major) = entry.file_name().to_str().and_then(|n| n.parse().ok())
                    else {
                        continue;
                    };
                    let bin = entry.path().join("bin");
                    if bin.join("initdb").is_file() && best.as_ref().is_none_or(|b| major > b.0) {
                        best = Some((major, bin));
                    }
                }
            }
            match best {
                Some((_, bin)) => bin,
                None => {
                    return Err("pgkeep-testkit: no PostgreSQL server binaries found: set \
                                PGKEEP_PG_BIN to a directory containing initdb, pg_ctl and \
                                psql, or install them (e.g. `apt-get install postgresql`)"
                        .to_string());
                }
            }
        }
    };
    let out = Command::new(dir.join("pg_ctl"))
        .arg("--version")
        .output()
        .map_err(|e| format!("pgkeep-testkit: cannot run {}/pg_ctl: {e}", dir.display()))?;
    let version = String::from_utf8_lossy(&out.stdout).into_owned();
    let major = version
        .split("(PostgreSQL)")
        .nth(1)
        .and_then(|rest| {
            let digits: String = rest
                .trim_start()
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().ok()
        })
        .ok_or_else(|| {
            format!(
                "pgkeep-testkit: cannot parse the version printed by {}/pg_ctl --version: {version:?}",
                dir.display()
            )
        })?;
    Ok(PgBins { dir, major })
}

/// The OS user the server binaries must run as: `Some((uid, gid))` of
/// `postgres` when this process is root, `None` otherwise.
pub(super) fn server_user() -> Option<(u32, u32)> {
    if sys::geteuid() != 0 {
        return None;
    }
    Some(sys::lookup_user("postgres").unwrap_or_else(|| {
        panic!(
            "pgkeep-testkit: running as root, but there is no `postgres` OS user to run the \
             PostgreSQL server as (PostgreSQL refuses to run as root); create one, or run the \
             tests as an unprivileged user"
        )
    }))
}

pub(super) fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    let meta = fs::symlink_metadata(path)?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// A command for a server-side binary (`initdb`, `pg_ctl`): run as the
/// `postgres` OS user when we are root, from `cwd`, without libpq variables.
pub(super) fn server_command(program: &Path, cwd: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.current_dir(cwd);
    for var in PG_ENV_VARS {
        cmd.env_remove(var);
    }
    if let Some((uid, gid)) = server_user() {
        cmd.uid(uid).gid(gid);
    }
    cmd
}

pub(super) fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot run {cmd:?}: {e}"))
}

pub(super) fn describe_output(out: &Output) -> String {
    format!(
        "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout).trim_end(),
        String::from_utf8_lossy(&out.stderr).trim_end()
    )
}

/// Quotes a configuration value for postgresql.conf.
pub(super) fn quote_conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Stops the servers and removes the directories of clusters left behind by
/// test processes that no longer exist. Runs once per process.
pub(super) fn sweep_stale_clusters() {
    static SWEEP: Once = Once::new();
    SWEEP.call_once(|| {
        for dir in util::stale_test_dirs(DIR_KIND) {
            let data = dir.join("data");
            if data.join("postmaster.pid").exists() {
                let bins = pg_bins();
                let _ = server_command(&bins.dir.join("pg_ctl"), &dir)
                    .args(["stop", "-m", "immediate", "-w", "-t", "20", "-D"])
                    .arg(&data)
                    .output();
            }
            let _ = fs::remove_dir_all(&dir);
        }
    });
}
