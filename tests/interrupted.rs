//! Interrupted and failed runs, end to end with the built binary and real clusters: SIGTERM of a
//! logical or physical backup, of `restore --jobs` and of a physical `verify` stops the child
//! programs and leaves nothing behind (no staging file, no half-backup directory, no scratch
//! copy); a backup that fails midway removes what it had stored, on a local repository and on
//! Garage; scratch files keep pgkeep's own modes under umask 000.

mod common;

use common::stderr;

use std::fs;
use std::io::BufRead as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pgkeep_core::{S3Settings, S3Storage, Storage};
use pgkeep_testkit::{Garage, PgCluster};

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");
/// How long a step may take before the test gives up.
const TIMEOUT: Duration = Duration::from_secs(120);
/// The exit code of a process stopped by SIGTERM, as a shell reports it.
const SIGTERM_EXIT: i32 = 128 + 15;

/// A repository: a local directory or a fresh prefix on the shared Garage.
struct Repo {
    url: String,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    garage: Option<(&'static Garage, String)>,
    /// pgkeep runs as the servers' OS user (as archive_command does).
    as_server: bool,
}

impl Repo {
    fn local() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        Repo {
            url: format!("file://{}/repo", dir.path().display()),
            env: vec![],
            dir,
            garage: None,
            as_server: false,
        }
    }

    /// A local repository that pgkeep uses as the servers' OS user, as its archive_command does.
    fn local_for_server() -> Repo {
        let repo = Repo {
            as_server: true,
            ..Repo::local()
        };
        PgCluster::chown_for_server(repo.dir.path());
        repo
    }

    /// A directory in the repository's temporary directory, owned by pgkeep's user.
    fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir(&path).unwrap();
        if self.as_server {
            PgCluster::chown_for_server(&path);
        }
        path
    }

    fn all(test: &str) -> Vec<Repo> {
        let mut out = vec![Repo::local()];
        if let Some(garage) = Garage::shared() {
            let prefix = garage.unique_prefix(test);
            out.push(Repo {
                url: format!("s3://{}/{prefix}", garage.bucket()),
                env: garage.env_vars(),
                dir: tempfile::tempdir().unwrap(),
                garage: Some((garage, prefix)),
                as_server: false,
            });
        }
        out
    }

    /// Everything stored under `main/backups/`: for a local repository every file and directory
    /// there (staging files and empty directories included), for S3 every object.
    fn backups_content(&self) -> Vec<String> {
        match &self.garage {
            None => {
                let mut out = Vec::new();
                walk(&self.dir.path().join("repo/main/backups"), &mut out);
                out
            }
            Some((garage, prefix)) => {
                let settings = S3Settings {
                    region: Some(garage.region().to_string()),
                    endpoint: Some(garage.endpoint()),
                    force_path_style: Some(true),
                    credentials: Some((
                        garage.access_key_id().to_string(),
                        garage.secret_access_key().to_string(),
                    )),
                    ..S3Settings::default()
                };
                let runtime = tokio::runtime::Runtime::new().unwrap();
                runtime.block_on(async {
                    let storage = S3Storage::new(&settings, garage.bucket(), prefix).await;
                    storage
                        .list("main/backups/")
                        .await
                        .unwrap()
                        .into_iter()
                        .map(|o| o.key)
                        .collect()
                })
            }
        }
    }
}

fn walk(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        out.push(path.display().to_string());
        if path.is_dir() {
            walk(&path, out);
        }
    }
}

/// `pgkeep` against `pg` and `repo`, with a clean environment, under umask 000.
fn pgkeep(pg: &PgCluster, repo: &Repo) -> Command {
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "umask 000 && exec \"$0\" \"$@\"", PGKEEP]);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGKEEP_REPO", &repo.url)
        .env("HOME", repo.dir.path())
        .envs(repo.env.iter().cloned())
        .stdin(Stdio::null());
    if repo.as_server {
        PgCluster::as_server(&mut cmd);
    }
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// A running pgkeep whose stderr is collected line by line.
struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    fn start(cmd: &mut Command) -> Running {
        let mut child = cmd.stderr(Stdio::piped()).spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `text`.
    fn wait_for_line(&mut self, text: &str) {
        let deadline = Instant::now() + TIMEOUT;
        while Instant::now() < deadline {
            match self.lines.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    let found = line.contains(text);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no line with `{text}`; stderr:\n{}", self.seen.join("\n"));
    }

    /// Waits until a child program named `name` runs under pgkeep; returns its pid and those of
    /// its own children (pg_restore's workers).
    fn wait_for_child(&mut self, name: &str) -> Vec<u32> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(&pid) = children(self.child.id(), name).first() {
                let mut pids = vec![pid];
                pids.extend(children(pid, name));
                return pids;
            }
            self.seen.extend(self.lines.try_iter());
            assert!(
                Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)),
                "{name} never started; stderr:\n{}",
                self.seen.join("\n")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the end; returns the exit code and the whole of stderr.
    fn finish(mut self) -> (Option<i32>, String) {
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), self.seen.join("\n"))
    }
}

/// Child processes of `parent` named `name`.
fn children(parent: u32, name: &str) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &parent.to_string(), "-x", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether `pid` runs (a zombie waiting for its reaper does not).
fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// Asserts that none of `pids` runs any more (allowing a moment for the kernel).
fn assert_stopped(pids: &[u32], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while pids.iter().any(|&p| alive(p)) {
        assert!(
            Instant::now() < deadline,
            "{what} still runs after pgkeep ended: {pids:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn populate_big(pg: &PgCluster) {
    pg.psql("CREATE DATABASE big");
    pg.psql_db(
        "big",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 7)::text) AS payload
           FROM generate_series(1, 1500000) g;
         CREATE INDEX ON t (payload)",
    );
}

fn backup_count(pg: &PgCluster, repo: &Repo) -> usize {
    let out = ok(pgkeep(pg, repo).args(["--json", "list"]));
    common::json(&out)["backups"].as_array().unwrap().len()
}

#[test]
fn sigterm_or_a_failed_dump_stops_a_logical_backup_and_removes_what_it_wrote() {
    let pg = PgCluster::start();
    populate_big(&pg);
    for repo in Repo::all("interrupted-logical") {
        // SIGTERM while pg_dump of `big` runs; the globals are already stored.
        let mut run = Running::start(pgkeep(&pg, &repo).args(["backup", "logical", "--all"]));
        run.wait_for_line("big: started");
        std::thread::sleep(Duration::from_millis(500));
        let dumps = run.wait_for_child("pg_dump");
        run.signal("-TERM");
        let (code, err) = run.finish();
        assert_eq!(code, Some(SIGTERM_EXIT), "{}: {err}", repo.url);
        assert!(err.contains("interrupted by SIGTERM"), "{err}");
        assert!(err.contains("nothing was recorded as a backup"), "{err}");
        // Local mode here (the data directory is readable): the file list and the bundles.
        assert!(
            err.contains("cleanup: removed the") && err.contains("nothing of it is left"),
            "{}: {err}",
            repo.url
        );
        assert_stopped(&dumps, "pg_dump");
        assert_eq!(repo.backups_content(), Vec::<String>::new(), "{}", repo.url);
        assert_eq!(backup_count(&pg, &repo), 0);

        // pg_dump dies midway: the globals it had stored go too, and the message says so.
        let mut run = Running::start(pgkeep(&pg, &repo).args(["backup", "logical", "--all"]));
        run.wait_for_line("big: started");
        let dumps = run.wait_for_child("pg_dump");
        Command::new("kill")
            .args(["-9", &dumps[0].to_string()])
            .status()
            .unwrap();
        let (code, err) = run.finish();
        assert_eq!(code, Some(1), "{err}");
        assert!(err.contains("pg_dump"), "{err}");
        // Local mode here (the data directory is readable): the file list and the bundles.
        assert!(
            err.contains("cleanup: removed the") && err.contains("nothing of it is left"),
            "{}: {err}",
            repo.url
        );
        assert_eq!(repo.backups_content(), Vec::<String>::new(), "{}", repo.url);
        assert_eq!(backup_count(&pg, &repo), 0);
    }
}

#[test]
fn sigterm_or_sigint_stops_a_logical_restore_its_pg_restore_its_staging_file_and_its_new_database()
{
    let pg = PgCluster::start();
    populate_big(&pg);
    let repo = Repo::local();
    let out = ok(pgkeep(&pg, &repo).args(["--json", "backup", "logical", "--db", "big"]));
    let id = common::json(&out)["id"].as_str().unwrap().to_string();
    let tmp = repo.scratch("tmp");
    for (signal, name, exit) in [("-TERM", "SIGTERM", 128 + 15), ("-INT", "SIGINT", 128 + 2)] {
        let into = format!("big_copy_{}", &signal[1..]).to_lowercase();
        let mut run = Running::start(
            pgkeep(&pg, &repo)
                .env("TMPDIR", &tmp)
                .args(["restore", "--db", "big", "--into", &into, "--jobs", "2"])
                .args(["--backup", &id]),
        );
        let restores = run.wait_for_child("pg_restore");
        // pg_restore -j starts its workers once it has read the table of contents.
        std::thread::sleep(Duration::from_millis(700));
        let mut pids = restores.clone();
        pids.extend(children(restores[0], "pg_restore"));
        let staged: Vec<PathBuf> = fs::read_dir(&tmp)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(staged.len(), 1, "{staged:?}");
        let mode = fs::metadata(&staged[0]).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the staging file under umask 000");
        run.signal(signal);
        let (code, err) = run.finish();
        assert_eq!(code, Some(exit), "{err}");
        assert!(err.contains(&format!("interrupted by {name}")), "{err}");
        assert_stopped(&pids, "pg_restore");
        let left: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
        assert!(left.is_empty(), "left in TMPDIR: {left:?}");
        // The database this restore created is dropped again, as after any failure.
        assert!(err.contains("removed: database"), "{err}");
        let exists = format!("SELECT count(*) FROM pg_database WHERE datname = '{into}'");
        assert_eq!(pg.psql(&exists), "0", "{err}");
    }
    // Streamed into pg_restore (no --jobs): the same.
    let mut run = Running::start(
        pgkeep(&pg, &repo)
            .args(["restore", "--db", "big", "--into", "big_streamed"])
            .args(["--backup", &id]),
    );
    let restores = run.wait_for_child("pg_restore");
    std::thread::sleep(Duration::from_millis(500));
    run.signal("-TERM");
    let (code, err) = run.finish();
    assert_eq!(code, Some(SIGTERM_EXIT), "{err}");
    assert_stopped(&restores, "pg_restore");
    assert!(err.contains("removed: database"), "{err}");
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'big_streamed'"),
        "0"
    );
}

#[test]
fn sigterm_stops_a_physical_backup_and_a_physical_verify_and_leaves_nothing() {
    let repo = Repo::local_for_server();
    let archive_command = format!(
        "{PGKEEP} --repo {} wal-push %p",
        repo.url.replace(' ', "\\ ")
    );
    let pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", archive_command)
        .start();
    populate_big(&pg);

    // SIGTERM while pg_basebackup streams (stream mode; local mode's SIGTERM is below).
    let mut run =
        Running::start(pgkeep(&pg, &repo).args(["backup", "physical", "--mode", "stream"]));
    run.wait_for_line("base backup: started");
    std::thread::sleep(Duration::from_millis(300));
    let basebackups = run.wait_for_child("pg_basebackup");
    run.signal("-TERM");
    let (code, err) = run.finish();
    assert_eq!(code, Some(SIGTERM_EXIT), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert!(err.contains("cleanup: "), "{err}");
    assert_stopped(&basebackups, "pg_basebackup");
    assert_eq!(repo.backups_content(), Vec::<String>::new());
    assert_eq!(backup_count(&pg, &repo), 0);

    // SIGTERM while local mode's workers copy: nothing stored is left, nothing listed.
    let mut run =
        Running::start(pgkeep(&pg, &repo).args(["backup", "physical", "--mode", "local"]));
    run.wait_for_line("base backup (local): started");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("-TERM");
    let (code, err) = run.finish();
    assert_eq!(code, Some(SIGTERM_EXIT), "{err}");
    assert!(err.contains("cleanup: "), "{err}");
    assert_eq!(repo.backups_content(), Vec::<String>::new());
    assert_eq!(backup_count(&pg, &repo), 0);

    // A whole backup (stream mode: its verify extracts a tar), then SIGTERM of its verify while
    // tar extracts the scratch copy.
    ok(pgkeep(&pg, &repo).args(["backup", "physical", "--mode", "stream"]));
    let tmp = repo.scratch("tmp");
    let mut run = Running::start(pgkeep(&pg, &repo).env("TMPDIR", &tmp).arg("verify"));
    let tars = run.wait_for_child("tar");
    std::thread::sleep(Duration::from_millis(200));
    let scratch: Vec<PathBuf> = fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(scratch.len(), 1, "{scratch:?}");
    let mode = fs::metadata(&scratch[0]).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the scratch directory under umask 000");
    run.signal("-TERM");
    let (code, err) = run.finish();
    assert_eq!(code, Some(SIGTERM_EXIT), "{err}");
    assert!(err.contains("interrupted by SIGTERM"), "{err}");
    assert_stopped(&tars, "tar");
    let left: Vec<_> = fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "left in TMPDIR: {left:?}");
    // A fetched WAL file is 0600 under umask 000, as PostgreSQL keeps its own.
    let segment = fs::read_dir(repo.dir.path().join("repo/main/wal/00000001"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|name| name.len() == 24 + ".zst".len())
        .expect("an archived segment");
    let fetched = tmp.join("fetched");
    ok(pgkeep(&pg, &repo)
        .arg("wal-fetch")
        .arg(&segment[..24])
        .arg(&fetched));
    let mode = fs::metadata(&fetched).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a fetched WAL file under umask 000");
    // The repository's own files and directories keep 0600 and 0700 under umask 000.
    let mut stored = Vec::new();
    walk(&repo.dir.path().join("repo"), &mut stored);
    for path in stored {
        let meta = fs::metadata(&path).unwrap();
        let expected = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(meta.permissions().mode() & 0o777, expected, "{path}");
    }
}

#[test]
fn a_physical_backup_whose_wal_never_arrives_removes_its_stored_base() {
    // The server's archive_command reports success but stores nothing: the repository never
    // receives the backup's WAL, so the base is stored and then the wait for that WAL fails.
    let pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", "/bin/true")
        .start();
    for repo in Repo::all("failed-physical") {
        let out = pgkeep(&pg, &repo)
            .args(["backup", "physical", "--wal-timeout", "2"])
            .output()
            .unwrap();
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", repo.url);
        assert!(err.contains("archived"), "{err}");
        // Local mode here (the data directory is readable): the file list and the bundles.
        assert!(
            err.contains("cleanup: removed the") && err.contains("nothing of it is left"),
            "{}: {err}",
            repo.url
        );
        assert_eq!(repo.backups_content(), Vec::<String>::new(), "{}", repo.url);
        assert_eq!(backup_count(&pg, &repo), 0);
    }
}
