//! Helpers of the physical backup and point-in-time restore tests (tests/physical.rs,
//! tests/pitr_incident.rs): a repository with its configuration file, pgkeep run as the servers'
//! OS user, archiving clusters, and restored data directories that clean up after themselves.

use std::fs;
use std::io::{Read as _, Seek as _, SeekFrom};
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgkeep_core::shell_quote;
use pgkeep_testkit::{Garage, PgCluster};
use serde_json::Value;

use super::common::{json, stderr};

/// A directory name with everything a shell or postgresql.conf could misread.
pub const ODD: &str = "it's a \\ $HOME `x` \"q\" näïve 日本";
pub const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");
/// How long one pgkeep command may take before the test gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a segment may take to reach the archive after pg_switch_wal().
pub const ARCHIVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Row counts per phase of the test table, e.g. `1:100,2:100`.
pub const PHASES: &str = "SELECT coalesce(string_agg(phase || ':' || c, ',' ORDER BY phase), '')
                        FROM (SELECT phase, count(*) AS c FROM t GROUP BY phase) s";

/// The OS user the servers run as (see the test kit).
pub fn server_user() -> Option<(u32, u32)> {
    PgCluster::server_user()
}

/// Makes `cmd` run as the servers' OS user.
pub fn as_server(cmd: &mut Command) -> &mut Command {
    PgCluster::as_server(cmd)
}

/// A temporary directory the servers' OS user owns.
pub fn server_tempdir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(dir.path());
    dir
}

pub fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A repository for a test: its configuration file and a directory for everything else the test's
/// pgkeep commands touch (their `HOME`, scratch files, restored data directories), owned by the
/// servers' OS user.
pub struct Repo {
    /// The repository's URL.
    pub url: String,
    /// Its configuration file.
    pub config: PathBuf,
    /// The repository's directory, for a local one.
    pub root: Option<PathBuf>,
    /// The test's directory.
    pub dir: tempfile::TempDir,
}

impl Repo {
    /// A repository whose configuration file is `[repository] url` plus `extra`.
    pub fn with_config(url: impl FnOnce(&Path) -> String, extra: &str) -> Repo {
        Repo::new(url, ".", extra)
    }

    /// [`Repo::with_config`], the configuration file in `config_dir` (relative to the test's
    /// directory, created).
    pub fn new(url: impl FnOnce(&Path) -> String, config_dir: &str, extra: &str) -> Repo {
        let dir = server_tempdir();
        let url = url(dir.path());
        let config_dir = dir.path().join(config_dir);
        fs::create_dir_all(&config_dir).unwrap();
        PgCluster::chown_for_server(&config_dir);
        let config = config_dir.join("pgkeep.toml");
        fs::write(
            &config,
            format!("[repository]\nurl = {}\n\n{extra}", toml_string(&url)),
        )
        .unwrap();
        fs::set_permissions(&config, fs::Permissions::from_mode(0o600)).unwrap();
        PgCluster::chown_for_server(&config);
        let root = url.strip_prefix("file://").map(PathBuf::from);
        Repo {
            url,
            config,
            root,
            dir,
        }
    }

    /// A local repository in the test's directory.
    pub fn local() -> Repo {
        Repo::with_config(|dir| format!("file://{}/repo", dir.display()), "")
    }

    /// A local repository, and its configuration file, under a directory named [`ODD`].
    pub fn odd_local() -> Repo {
        Repo::new(|d| format!("file://{}/{ODD}/repo", d.display()), ODD, "")
    }

    /// A fresh prefix on the shared Garage, the keys in the configuration file.
    pub fn garage(garage: &Garage, test: &str, endpoint: &str, extra: &str) -> Repo {
        let url = format!("s3://{}/{}", garage.bucket(), garage.unique_prefix(test));
        let s3 = format!(
            "[repository.s3]\nregion = {}\nendpoint = {}\nforce-path-style = true\n\
             access-key-id = {}\nsecret-access-key = {}\n{extra}",
            toml_string(garage.region()),
            toml_string(endpoint),
            toml_string(garage.access_key_id()),
            toml_string(garage.secret_access_key()),
        );
        Repo::with_config(|_| url, &s3)
    }

    /// A path in the test's directory (not created).
    pub fn scratch(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `archive_command` pushing into this repository.
    pub fn archive_command(&self) -> String {
        format!(
            "{} --config {} wal-push %p",
            shell_quote(PGKEEP),
            shell_quote(&self.config.to_string_lossy())
        )
    }

    /// The stored object of a WAL file of timeline 1, for a local repository.
    pub fn wal_object(&self, name: &str) -> PathBuf {
        self.root
            .as_ref()
            .expect("a local repository")
            .join("main/wal/00000001")
            .join(format!("{name}.zst"))
    }
}

pub fn repos(test: &str) -> Vec<Repo> {
    let mut out = vec![Repo::local()];
    if let Some(garage) = Garage::shared() {
        out.push(Repo::garage(garage, test, &garage.endpoint(), ""));
    }
    out
}

/// `pgkeep --config <repo's file>` against `pg`, as the servers' OS user, with a clean environment.
pub fn pgkeep(pg: &PgCluster, repo: &Repo) -> Command {
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
    as_server(&mut cmd);
    cmd
}

/// Runs `cmd` to its end, its output going through files: a server it starts may keep pipes open
/// long after it exits.
pub fn run(cmd: &mut Command) -> Output {
    let mut stdout = tempfile::tempfile().unwrap();
    let mut stderr = tempfile::tempfile().unwrap();
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(stdout.try_clone().unwrap())
        .stderr(stderr.try_clone().unwrap())
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
            panic!(
                "{cmd:?} did not finish within {COMMAND_TIMEOUT:?}; stderr so far:\n{}",
                String::from_utf8_lossy(&read_all(&mut stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: read_all(&mut stdout),
        stderr: read_all(&mut stderr),
    }
}

pub fn read_all(file: &mut fs::File) -> Vec<u8> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0)).unwrap();
    file.read_to_end(&mut bytes).unwrap();
    bytes
}

pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Both streams, for messages that may go to either.
pub fn said(out: &Output) -> String {
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `pgkeep --json list`.
pub fn list(pg: &PgCluster, repo: &Repo) -> Value {
    json(&ok(pgkeep(pg, repo).args(["--json", "list"])))
}

pub fn archiving_cluster(repo: &Repo) -> PgCluster {
    PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", repo.archive_command())
        .start()
}

pub fn psql_at(bin_dir: &Path, port: u16, sql: &str) -> Result<String, String> {
    let mut cmd = Command::new(bin_dir.join("psql"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
        .arg("127.0.0.1")
        .arg("-p")
        .arg(port.to_string())
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .env("PGCONNECT_TIMEOUT", "10")
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(stderr(&out))
    }
}

/// Waits until the server on `port` has archived `segment` (or a later WAL file).
pub fn wait_archived(bin_dir: &Path, port: u16, segment: &str) {
    let deadline = Instant::now() + ARCHIVE_TIMEOUT;
    loop {
        // The server marks an archived file `.done` (until a checkpoint recycles the segment);
        // pg_stat_archiver names the last file archived, possibly a later segment, or a
        // `.backup` / `.partial` / `.history` file.
        let row = psql_at(
            bin_dir,
            port,
            &format!(
                "SELECT EXISTS (SELECT FROM pg_ls_archive_statusdir() WHERE name = '{segment}.done'),
                        coalesce(last_archived_wal, ''), coalesce(last_failed_wal, ''), failed_count
                   FROM pg_stat_archiver"
            ),
        )
        .unwrap();
        let mut fields = row.split('|');
        let marked_done = fields.next() == Some("t");
        let archived = fields.next().unwrap_or("");
        let later = match archived.len() {
            24 => archived >= segment,
            n if n > 24 => &archived[..24] > segment,
            _ => false,
        };
        if marked_done || later {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{segment} was not archived within {ARCHIVE_TIMEOUT:?} by the server on port {port}: \
             (.done | last archived | last failed | failures) {row}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn wait_archived_pg(pg: &PgCluster, segment: &str) {
    wait_archived(pg.bin_dir(), pg.port(), segment);
}

/// Ends the current WAL segment and returns its name.
pub fn switch_wal(pg: &PgCluster) -> String {
    pg.psql("SELECT pg_walfile_name(pg_switch_wal())")
}

/// 100 rows of `phase` into the test table.
pub fn insert(pg: &PgCluster, phase: u32) {
    pg.psql(&format!(
        "INSERT INTO t SELECT {phase}, g FROM generate_series(1, 100) g"
    ));
}

pub fn pause(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// A data directory a test restores into, and the server pgkeep may have started there: stopped
/// and removed on drop, its logs printed if the test is failing.
pub struct Restored {
    /// The data directory.
    pub dir: PathBuf,
    /// The port its server listens on.
    pub port: u16,
    /// The PostgreSQL programs.
    pub bin_dir: PathBuf,
}

impl Restored {
    pub fn psql(&self, sql: &str) -> String {
        psql_at(&self.bin_dir, self.port, sql).unwrap_or_else(|e| {
            panic!(
                "psql on the restored server (port {}) failed for {sql:?}:\n{e}",
                self.port
            )
        })
    }

    pub fn stop(&self) {
        if self.dir.join("postmaster.pid").exists() {
            let out = as_server(&mut Command::new(self.bin_dir.join("pg_ctl")))
                .arg("-D")
                .arg(&self.dir)
                .args(["stop", "-m", "fast", "-w", "-t", "60"])
                .output()
                .unwrap();
            if !out.status.success() {
                eprintln!("pg_ctl stop of {}: {}", self.dir.display(), stderr(&out));
            }
        }
    }

    pub fn print_logs(&self) {
        let mut logs = Vec::new();
        for dir in [
            self.dir.clone(),
            self.dir.join("log"),
            self.dir.join("pg_log"),
        ] {
            for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.path().is_file() && (dir != self.dir || name.contains("log")) {
                    logs.push(entry.path());
                }
            }
        }
        for log in logs {
            let text = String::from_utf8_lossy(&fs::read(&log).unwrap_or_default()).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!(
                "===== {} (last 80 lines) =====\n{}\n===== end =====",
                log.display(),
                lines[lines.len().saturating_sub(80)..].join("\n")
            );
        }
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
        }
        self.stop();
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// `pgkeep --json restore --pgdata <dir> <args> --start --port <free port>`: the guard of the
/// restored directory and pgkeep's output.
pub fn try_restore_into(
    pg: &PgCluster,
    repo: &Repo,
    dir: PathBuf,
    args: &[&str],
) -> (Restored, Output) {
    let restored = Restored {
        dir,
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

/// A restore that must succeed: the guard and the JSON result, checked for the common points.
pub fn restore_into(pg: &PgCluster, repo: &Repo, dir: PathBuf, args: &[&str]) -> (Restored, Value) {
    let (restored, out) = try_restore_into(pg, repo, dir, args);
    assert!(
        out.status.success(),
        "{}: restore {args:?} failed ({}):\n{}",
        repo.url,
        out.status,
        said(&out)
    );
    let result = json(&out);
    assert_eq!(
        result["plan"]["pgdata"],
        restored.dir.to_str().unwrap(),
        "{result:#}"
    );
    assert!(result["report"]["seconds"].is_number(), "{result:#}");
    let meta = fs::metadata(&restored.dir).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "{result:#}");
    if let Some((uid, _)) = server_user() {
        assert_eq!(
            meta.uid(),
            uid,
            "the restored directory belongs to postgres"
        );
    }
    (restored, result)
}

pub fn restore(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (Restored, Value) {
    restore_into(pg, repo, repo.scratch(name), args)
}

/// A restore that must be refused before anything is written: returns what pgkeep said.
pub fn refused_restore(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> String {
    refused(pg, repo, name, args).1
}

/// Ends the current WAL segment and waits until the server has archived it; returns its name.
pub fn switch_and_wait(pg: &PgCluster) -> String {
    let segment = switch_wal(pg);
    wait_archived_pg(pg, &segment);
    segment
}

/// The server's clock now, as RFC 3339 UTC to the microsecond.
pub fn server_now(pg: &PgCluster) -> String {
    pg.psql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
}

/// An RFC 3339 time in UTC.
pub fn utc(rfc3339: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap_or_else(|e| panic!("{rfc3339:?}: {e}"))
        .with_timezone(&chrono::Utc)
}

/// `pgkeep --json restore --pgdata <scratch name> <args> --start --port <free port>`.
pub fn try_restore(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (Restored, Output) {
    try_restore_into(pg, repo, repo.scratch(name), args)
}

/// A restore refused before anything is written: its exit code and message (a free `--port` is
/// added unless `args` name one).
pub fn refused(pg: &PgCluster, repo: &Repo, name: &str, args: &[&str]) -> (i32, String) {
    let dir = repo.scratch(name);
    let port = free_port().to_string();
    let mut cmd = pgkeep(pg, repo);
    cmd.args(["restore", "--pgdata"])
        .arg(&dir)
        .args(args)
        .arg("--start");
    if !args.contains(&"--port") {
        cmd.args(["--port", &port]);
    }
    let out = run(&mut cmd);
    let said = stderr(&out);
    assert!(
        !out.status.success(),
        "{}: restore {args:?} succeeded:\n{said}",
        repo.url
    );
    assert!(
        !dir.exists(),
        "{}: a refused restore {args:?} created {}",
        repo.url,
        dir.display()
    );
    (out.status.code().unwrap_or(-1), said)
}
