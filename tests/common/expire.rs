//! Helpers of the expire tests: a configuration file with a `[retention]` section, the plan's
//! verdicts, and a byte-for-byte snapshot of a local repository.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::process::Command;

use pgkeep_testkit::PgCluster;
use serde_json::Value;

use super::repo::{Repo, pgkeep_as_server};

/// `dir/pgkeep.toml` holding `text`, readable by the servers' OS user.
pub fn config_file(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pgkeep.toml");
    std::fs::write(&path, text).unwrap();
    PgCluster::chown_for_server(&path);
    path
}

/// A home directory the servers' user owns, holding a configuration file of `text`: for physical
/// backups and restores, which run as that user.
pub fn server_home(text: &str) -> (tempfile::TempDir, PathBuf) {
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    let config = config_file(home.path(), text);
    (home, config)
}

/// `pgkeep --config <config>` against `pg` and `repo`, as the servers' user with `home` as its home.
pub fn pgkeep_in(pg: &PgCluster, repo: &Repo, home: &Path, config: &Path) -> Command {
    let mut cmd = pgkeep_as_server(pg, repo, home);
    cmd.arg("--config").arg(config);
    cmd
}

/// The plan's backups that stay, each with its reasons as shown (joined by `, `), and the ids
/// of those that expire, in the plan's order.
pub fn verdicts(plan: &Value) -> (Vec<(String, String)>, Vec<String>) {
    let mut kept = Vec::new();
    let mut expired = Vec::new();
    for b in plan["backups"].as_array().unwrap() {
        let id = b["id"].as_str().unwrap().to_string();
        if b["expire"].as_bool().unwrap() {
            expired.push(id);
        } else {
            let why: Vec<&str> = b["why"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w.as_str().unwrap())
                .collect();
            kept.push((id, why.join(", ")));
        }
    }
    (kept, expired)
}

/// Every file and directory under `root`, files with their bytes.
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), None);
                stack.push(path);
            } else {
                out.insert(path.clone(), Some(std::fs::read(&path).unwrap()));
            }
        }
    }
    out
}
