//! Repositories with direct access to their objects, and `pgkeep` runs, for the logical failure
//! tests: tests/logical_failures.rs and tests/logical_globals.rs include this file with
//! `#[path = "common/logical.rs"] mod logical;` (beside `mod common;`). Not every file uses every
//! helper, hence the allow.
#![allow(dead_code)]

use std::process::{Command, Output};
use std::sync::Arc;

use pgkeep_core::{LocalStorage, PutMode, S3Settings, S3Storage, Storage};
use pgkeep_testkit::{Garage, PgCluster};

use crate::common::stderr;

/// A repository for a test, and direct access to its objects for damaging them.
pub struct Repo {
    pub url: String,
    pub env: Vec<(String, String)>,
    pub storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

/// A local-directory repository under `dir`.
pub fn local_repo(dir: &std::path::Path) -> Repo {
    let root = dir.join("repo");
    Repo {
        url: format!("file://{}", root.display()),
        env: vec![],
        storage: Arc::new(LocalStorage::new(root)),
        _dir: None,
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A local-directory repository and, when Garage runs (always under CI), a fresh S3 prefix.
pub fn repos(test: &str) -> Vec<Repo> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let mut out = vec![Repo {
        url: format!("file://{}", root.display()),
        env: vec![],
        storage: Arc::new(LocalStorage::new(root)),
        _dir: Some(dir),
    }];
    if let Some(garage) = Garage::shared() {
        let prefix = garage.unique_prefix(test);
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
        let storage = runtime().block_on(S3Storage::new(&settings, garage.bucket(), &prefix));
        out.push(Repo {
            url: format!("s3://{}/{prefix}", garage.bucket()),
            env: garage.env_vars(),
            storage: Arc::new(storage),
            _dir: None,
        });
    }
    out
}

impl Repo {
    pub fn get(&self, key: &str) -> Vec<u8> {
        runtime().block_on(self.storage.get_bytes(key)).unwrap()
    }

    pub fn put(&self, key: &str, bytes: &[u8]) {
        runtime()
            .block_on(self.storage.put_bytes(key, bytes, PutMode::Overwrite))
            .unwrap();
    }

    pub fn delete(&self, key: &str) {
        runtime().block_on(self.storage.delete(key)).unwrap();
    }
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

pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// Runs a command that must fail with exit code 1; returns its stderr.
pub fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {}", stderr(&out));
    stderr(&out)
}

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
