//! The incident restore as an operator runs it minutes after the damage (issue 9, points 4, 7, 8
//! and 10), end to end with the built binary, real clusters archiving through `pgkeep wal-push`, a
//! local repository (one whose path holds a space, quotes, a backslash, `$` and non-ASCII) and a
//! real Garage S3 repository.
//!
//! When the tests run as root the servers, their `archive_command` and every pgkeep command run as
//! the `postgres` OS user (see the test kit), with a per-test configuration file (mode 0600).

mod common;

use common::{json, stderr};

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgkeep_core::shell_quote;
use pgkeep_testkit::{Garage, PgCluster};
use serde_json::Value;

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");
/// How long one pgkeep command may take before the test gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// Row counts per phase of the test table, e.g. `1:100,2:100`.
const PHASES: &str = "SELECT coalesce(string_agg(phase || ':' || c, ',' ORDER BY phase), '')
                        FROM (SELECT phase, count(*) AS c FROM t GROUP BY phase) s";
/// A directory name with everything a shell or postgresql.conf could misread.
const ODD: &str = "it's a \\ $HOME `x` \"q\" näïve 日本";

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A repository, its configuration file, and a scratch directory owned by the servers' user.
struct Repo {
    url: String,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Repo {
    /// `url` (given the scratch directory) with `extra` configuration; the configuration file goes
    /// into `config_dir` (relative to the scratch directory, created).
    fn new(url: impl FnOnce(&Path) -> String, config_dir: &str, extra: &str) -> Repo {
        let dir = tempfile::tempdir().unwrap();
        PgCluster::chown_for_server(dir.path());
        let url = url(dir.path());
        let config_dir = dir.path().join(config_dir);
        fs::create_dir_all(&config_dir).unwrap();
        PgCluster::chown_for_server(&config_dir);
        let config = config_dir.join("pgkeep.toml");
        let text = format!("[repository]\nurl = {}\n\n{extra}", toml_string(&url));
        fs::write(&config, text).unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
        PgCluster::chown_for_server(&config);
        Repo { url, config, dir }
    }

    fn local() -> Repo {
        Repo::new(|d| format!("file://{}/repo", d.display()), ".", "")
    }

    /// A local repository, and its configuration file, under a directory named [`ODD`].
    fn odd_local() -> Repo {
        Repo::new(|d| format!("file://{}/{ODD}/repo", d.display()), ODD, "")
    }

    fn garage(garage: &Garage, test: &str) -> Repo {
        let url = format!("s3://{}/{}", garage.bucket(), garage.unique_prefix(test));
        let s3 = format!(
            "[repository.s3]\nregion = {}\nendpoint = {}\nforce-path-style = true\n\
             access-key-id = {}\nsecret-access-key = {}\n",
            toml_string(garage.region()),
            toml_string(&garage.endpoint()),
            toml_string(garage.access_key_id()),
            toml_string(garage.secret_access_key()),
        );
        Repo::new(|_| url, ".", &s3)
    }

    fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn archive_command(&self) -> String {
        format!(
            "{} --config {} wal-push %p",
            shell_quote(PGKEEP),
            shell_quote(&self.config.to_string_lossy())
        )
    }
}

/// `pgkeep --config <repo's file>` against `pg`, as the servers' OS user, with a clean environment.
fn pgkeep(pg: &PgCluster, repo: &Repo) -> Command {
    let mut cmd = Command::new(PGKEEP);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", repo.dir.path())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .current_dir(repo.dir.path())
        .arg("--config")
        .arg(&repo.config);
    PgCluster::as_server(&mut cmd);
    cmd
}

/// Runs `cmd` to its end, its output going through files (a server it starts keeps pipes open).
fn run(cmd: &mut Command) -> Output {
    let mut out = tempfile::tempfile().unwrap();
    let mut err = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(err.try_clone().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |file: &mut fs::File| {
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(0)).unwrap();
        file.read_to_end(&mut bytes).unwrap();
        bytes
    };
    Output {
        status,
        stdout: read(&mut out),
        stderr: read(&mut err),
    }
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

fn archiving_cluster(repo: &Repo) -> PgCluster {
    PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", repo.archive_command())
        .start()
}

/// Ends the current WAL segment and waits until the server has archived it.
fn switch_and_wait(pg: &PgCluster) {
    let segment = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pg.psql(&format!(
        "SELECT coalesce(last_archived_wal, '') >= '{segment}' FROM pg_stat_archiver"
    )) != "t"
    {
        assert!(Instant::now() < deadline, "{segment} was not archived");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn insert(pg: &PgCluster, phase: u32) {
    pg.psql(&format!(
        "INSERT INTO t SELECT {phase}, g FROM generate_series(1, 100) g"
    ));
}

fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The server's clock now, as RFC 3339 UTC to the microsecond.
fn server_now(pg: &PgCluster) -> String {
    pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
}

fn utc(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// A restored data directory and its server: stopped and removed on drop, its log printed if the
/// test is failing.
struct Restored {
    dir: PathBuf,
    port: u16,
    bin_dir: PathBuf,
}

impl Restored {
    fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin_dir.join("psql"))
            .env_remove("PGDATABASE")
            .args(["-X", "-A", "-t", "-q", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", "postgres", "-c", sql])
            .output()
            .unwrap();
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = fs::read_to_string(self.dir.join("pgkeep-restore.log")).unwrap_or_default();
            eprintln!("===== restored server log =====\n{log}");
        }
        if self.dir.join("postmaster.pid").exists() {
            let _ = PgCluster::as_server(&mut Command::new(self.bin_dir.join("pg_ctl")))
                .arg("-D")
                .arg(&self.dir)
                .args(["stop", "-m", "immediate", "-w"])
                .output();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `pgkeep --json restore --pgdata DIR ARGS --start --port P`, and its guard.
fn try_restore(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (Restored, Output) {
    let restored = Restored {
        dir: repo.scratch(name),
        port: free_port(),
        bin_dir: pg.bin_dir().to_path_buf(),
    };
    let out = run(pgkeep(pg, repo)
        .args(["--json", "restore", "--pgdata"])
        .arg(&restored.dir)
        .args(args)
        .args(["--start", "--port", &restored.port.to_string()]));
    (restored, out)
}

fn restore(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (Restored, Value) {
    let (restored, out) = try_restore(pg, repo, name, args);
    assert!(
        out.status.success(),
        "{}: restore {args:?} failed ({}):\n{}",
        repo.url,
        out.status,
        stderr(&out)
    );
    let result = json(&out);
    (restored, result)
}

/// A restore refused before anything is written: its exit code and message.
fn refused(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (i32, String) {
    let dir = repo.scratch(name);
    let out = run(pgkeep(pg, repo)
        .args(["restore", "--pgdata"])
        .arg(&dir)
        .args(args)
        .arg("--start"));
    let said = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded:\n{said}");
    assert!(!dir.exists(), "a refused restore {args:?} created {dir:?}");
    (out.status.code().unwrap_or(-1), said)
}

#[test]
fn a_repository_path_with_quotes_backslashes_and_dollars_restores_and_bad_flags_are_refused() {
    let repo = Repo::odd_local();
    let pg = archiving_cluster(&repo);
    ok(pgkeep(&pg, &repo).args(["backup", "physical", "--wal-timeout", "120"]));
    pg.psql("CREATE TABLE t (phase int, n int)");
    insert(&pg, 1);
    pause(300);
    let target = server_now(&pg);
    pause(300);
    insert(&pg, 2);
    switch_and_wait(&pg);

    let (restored, result) = restore(&pg, &repo, "restored", &["--at", &target]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100", "{result:#}");
    // Recovery really ran the restore_command with the odd paths, and the configuration holds them
    // as PostgreSQL's parser reads them back.
    let command = restored.psql("SHOW restore_command");
    assert!(
        command.contains(&shell_quote(&repo.config.to_string_lossy())),
        "{command}"
    );
    assert!(command.contains(&shell_quote(&repo.url)), "{command}");
    let auto = fs::read_to_string(restored.dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(r" a \\ $HOME"),
        "the backslash is escaped:\n{auto}"
    );
    drop(restored);

    // Names PostgreSQL could not be given, and port 0: refused as usage errors, nothing written.
    for (args, says) in [
        (vec!["--name", ""], "empty"),
        (vec!["--name", "before\nthe drop"], "control character"),
        (vec!["--at", &target, "--port", "0"], "--port"),
    ] {
        let (code, said) = refused(&pg, &repo, "bad-flag", &args);
        assert_eq!(code, 2, "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
    }
}

/// Point 8 and the `--lsn` item of point 7 against one repository.
fn incident_of_a_few_minutes_ago(repo: &Repo) {
    let pg = archiving_cluster(repo);
    ok(pgkeep(&pg, repo).args(["backup", "physical", "--wal-timeout", "120"]));
    pg.psql("CREATE TABLE t (phase int, n int)");
    insert(&pg, 1);
    switch_and_wait(&pg);
    // Phase 2 commits in the server's current segment, which is not archived yet.
    insert(&pg, 2);
    pause(300);
    let target = server_now(&pg);
    let past_lsn = pg.psql("SELECT pg_current_wal_lsn()");
    pause(300);

    // The window ends at the newest archived commit, shown to the microsecond in a form --at takes.
    let listed = json(&ok(pgkeep(&pg, repo).args(["--json", "list"])));
    let window = &listed["window"];
    assert_eq!(window["end"]["kind"], "newest_commit", "{listed:#}");
    let end = utc(window["to"].as_str().unwrap());
    assert!(end < utc(&target), "{listed:#}");
    let table = String::from_utf8_lossy(&ok(pgkeep(&pg, repo).arg("list")).stdout).into_owned();
    let shown = table
        .lines()
        .find_map(|l| l.strip_prefix("point-in-time recovery window: "))
        .unwrap_or_else(|| panic!("no window in:\n{table}"));
    let shown_end = shown
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(" (")
        .next()
        .unwrap();
    let written = end.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string();
    assert_eq!(shown_end, written, "{table}");

    // A target after it is refused before anything is written, saying why and what to do.
    let (_, said) = refused(&pg, repo, "too-recent", &["--at", &target]);
    for part in ["newest commit in the WAL archive", "--switch-wal", &written] {
        assert!(
            said.contains(part),
            "{}: {part:?} not in:\n{said}",
            repo.url
        );
    }
    // An LSN past the end of a complete archive: past the end, not a missing segment.
    ok(pgkeep(&pg, repo).args(["verify", "--wal"]));
    let (_, said) = refused(&pg, repo, "lsn-past", &["--lsn", &past_lsn]);
    assert!(said.contains("past the end of the WAL archive"), "{said}");
    assert!(!said.contains("missing segment"), "{said}");

    // With --switch-wal the same targets restore: phase 2 is in, nothing after the target.
    let (restored, result) = restore(&pg, repo, "switched", &["--at", &target, "--switch-wal"]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    let segment = result["switched_wal"]["segment"].as_str().unwrap();
    assert_eq!(result["plan"]["wal_to"], segment, "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
    let reached = utc(result["report"]["reached_time"].as_str().unwrap());
    assert!(reached < utc(&target), "{result:#}");
    drop(restored);
    let (restored, result) = restore(&pg, repo, "switched-lsn", &["--lsn", &past_lsn]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
}

#[test]
fn a_target_after_the_last_archived_commit_is_refused_and_switch_wal_restores_it() {
    incident_of_a_few_minutes_ago(&Repo::local());
    if let Some(garage) = Garage::shared() {
        incident_of_a_few_minutes_ago(&Repo::garage(garage, "pitr-incident"));
    }
}

#[test]
fn switch_wal_refuses_a_standby_and_another_cluster_before_anything_is_written() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    ok(pgkeep(&pg, &repo).args(["backup", "physical", "--wal-timeout", "120"]));
    // A standby of the repository's cluster answers, but cannot switch its WAL.
    let standby = PgCluster::builder()
        .setting("hot_standby", "on")
        .standby_of(&pg)
        .start();
    let segment = || pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let before = segment();
    let args = ["--latest", "--switch-wal"];
    let (code, said) = refused(&standby, &repo, "from-standby", &args);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("is a standby"), "{said}");
    assert!(said.contains("fix: point postgres.conninfo"), "{said}");

    // Another cluster altogether: its system identifier is not the backups'.
    let other = PgCluster::start();
    let (code, said) = refused(&other, &repo, "from-other", &args);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("is not the cluster whose backups"), "{said}");
    let other_id = other.psql("SELECT system_identifier FROM pg_control_system()");
    assert!(said.contains(&other_id), "{said}");
    // Neither switched anything on the primary.
    assert_eq!(segment(), before);
}
