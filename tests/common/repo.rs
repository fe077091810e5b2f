//! A test repository (a local directory, or a fresh prefix on the shared Garage) and `pgkeep` run
//! against it, for the test files that need nothing more.

use std::process::{Command, Output};
use std::sync::Arc;

use pgkeep_core::{RepoLocation, S3Settings, Storage};
use pgkeep_testkit::{Garage, PgCluster};

/// A repository for a test.
pub struct Repo {
    /// `file:///...` or `s3://bucket/prefix`.
    pub url: String,
    /// What pgkeep needs in its environment to reach it (Garage's keys).
    pub env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Repo {
    /// A repository in a new temporary directory.
    pub fn local() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        PgCluster::chown_for_server(dir.path());
        Repo {
            url: format!("file://{}/repo", dir.path().display()),
            env: vec![],
            _dir: Some(dir),
        }
    }

    /// A local repository at `url`, whose directory the caller owns.
    pub fn at(url: String) -> Repo {
        Repo {
            url,
            env: vec![],
            _dir: None,
        }
    }

    /// The local repository's root directory.
    pub fn root(&self) -> Option<std::path::PathBuf> {
        self.url.strip_prefix("file://").map(Into::into)
    }

    /// The repository's storage, as pgkeep opens it: to damage or inspect objects directly.
    pub fn storage(&self) -> Arc<dyn Storage> {
        let location = RepoLocation::parse(&self.url).unwrap();
        let env = |name: &str| {
            self.env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let s3 = S3Settings {
            region: env("AWS_REGION"),
            endpoint: env("AWS_ENDPOINT_URL"),
            force_path_style: Some(true),
            credentials: env("AWS_ACCESS_KEY_ID").zip(env("AWS_SECRET_ACCESS_KEY")),
            ..S3Settings::default()
        };
        block_on(pgkeep_core::open_storage(&location, &s3))
    }

    /// Writes `bytes` at `key`, replacing what is there.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let storage = self.storage();
        block_on(storage.put_bytes(key, bytes, pgkeep_core::PutMode::Overwrite)).unwrap();
    }

    /// Deletes the object at `key`.
    pub fn delete(&self, key: &str) {
        let storage = self.storage();
        block_on(storage.delete(key)).unwrap();
    }

    /// Reads the object at `key`.
    pub fn get(&self, key: &str) -> Vec<u8> {
        let storage = self.storage();
        block_on(storage.get_bytes(key)).unwrap()
    }
}

/// A local repository in `dir/repo` (the caller keeps `dir`).
pub fn local_repo(dir: &std::path::Path) -> Repo {
    Repo::at(format!("file://{}", dir.join("repo").display()))
}

/// A local repository, and one on the shared Garage when it runs (it must under CI=true).
pub fn repos(test: &str) -> Vec<Repo> {
    let mut out = vec![Repo::local()];
    if let Some(garage) = Garage::shared() {
        out.push(Repo {
            url: format!("s3://{}/{}", garage.bucket(), garage.unique_prefix(test)),
            env: garage.env_vars(),
            _dir: None,
        });
    }
    out
}

/// Runs a future to its end on a runtime of its own.
pub fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// `pgkeep` against `pg` and `repo`, with a clean environment.
pub fn pgkeep(pg: &PgCluster, repo: &Repo) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgkeep"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGKEEP_REPO", &repo.url)
        .envs(repo.env.iter().cloned());
    cmd
}

/// Runs `cmd` to its end.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

/// Runs `cmd`, which must succeed.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `pgkeep` as the servers' OS user (as archive_command runs it), with `home` as its home and
/// working directory: for physical backups and restores.
pub fn pgkeep_as_server(pg: &PgCluster, repo: &Repo, home: &std::path::Path) -> Command {
    let mut cmd = pgkeep(pg, repo);
    cmd.env("HOME", home).current_dir(home);
    PgCluster::as_server(&mut cmd);
    cmd
}

/// A cluster archiving into the local repository `repo` with `pgkeep wal-push`.
pub fn archiving_cluster(repo: &Repo) -> PgCluster {
    PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", archive_command(repo))
        .start()
}

/// `archive_command` pushing into `repo`.
pub fn archive_command(repo: &Repo) -> String {
    format!(
        "{} --repo {} wal-push %p",
        pgkeep_core::shell_quote(env!("CARGO_BIN_EXE_pgkeep")),
        pgkeep_core::shell_quote(&repo.url)
    )
}

/// Ends the server's current WAL segment and waits (up to a minute) until it is archived; returns
/// its name. `psql` runs SQL on the server.
pub fn switch_and_wait(psql: impl Fn(&str) -> String) -> String {
    let segment = psql("SELECT pg_walfile_name(pg_switch_wal())");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let archived =
        format!("SELECT coalesce(last_archived_wal >= '{segment}', false) FROM pg_stat_archiver");
    while psql(&archived) != "t" {
        assert!(
            std::time::Instant::now() < deadline,
            "{segment} was not archived: {}",
            psql("SELECT last_failed_wal FROM pg_stat_archiver")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    segment
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs a command that must fail with exit code 1; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {stderr}");
    stderr
}

/// Whether database `db` exists on `pg`.
pub fn exists(pg: &PgCluster, db: &str) -> bool {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{db}'"
    )) == "1"
}

/// Flips a byte in the middle: same size, so only reading the object finds it.
pub fn flipped(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let middle = out.len() / 2;
    out[middle] ^= 0x5a;
    out
}
