//! The failover state files in `failover.state-dir`: the switchover journal and the record of
//! former masters that must be rejoined. Written durably (`pgkeep_core::write_file`: a unique
//! staging name, fsync, rename, fsync of the directory); a file that cannot be read or parsed is
//! an error that names it, never taken for "no record".

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::error::FailoverError;
use crate::node::Pair;

/// A state file that cannot be read, parsed or written.
fn state_error(path: &Path, what: &str, e: impl std::fmt::Display, fix: &str) -> FailoverError {
    FailoverError::State {
        path: path.to_path_buf(),
        problem: format!("{what}: {e}"),
        fix: fix.to_string(),
    }
}

/// Reads a state file; `None` when there is none.
pub(crate) fn read_state<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, FailoverError> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(state_error(
                path,
                "cannot be read",
                e,
                "check the permissions of failover.state-dir",
            ));
        }
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        state_error(
            path,
            "cannot be parsed",
            e,
            "look at it; once both nodes are checked by hand (`pgkeep failover status`), move it away",
        )
    })
}

/// Writes a state file durably.
pub(crate) fn write_state<T: Serialize>(path: &Path, value: &T) -> Result<(), FailoverError> {
    let bytes = serde_json::to_vec_pretty(value).expect("state records serialize");
    pgkeep_core::write_file(path, &bytes, pgkeep_core::PutMode::Overwrite).map_err(|e| {
        state_error(
            path,
            "cannot be written",
            e,
            "check the space and permissions of failover.state-dir",
        )
    })
}

/// Removes a state file durably.
fn remove_state(path: &Path) -> Result<(), FailoverError> {
    pgkeep_core::remove_file(path).map_err(|e| {
        state_error(
            path,
            "cannot be removed",
            e,
            "check the permissions of failover.state-dir",
        )
    })
}

/// A node that was promoted away from and must be rejoined before it runs again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MustRejoin {
    /// The former master.
    pub node: String,
    /// The node promoted in its place.
    pub replaced_by: String,
}

fn must_rejoin_path(pair: &Pair) -> PathBuf {
    pair.state_dir.join("must-rejoin.json")
}

/// The recorded former masters that still must be rejoined.
pub fn must_rejoin(pair: &Pair) -> Result<Vec<MustRejoin>, FailoverError> {
    Ok(read_state(&must_rejoin_path(pair))?.unwrap_or_default())
}

fn record_must_rejoin(pair: &Pair, list: &[MustRejoin]) -> Result<(), FailoverError> {
    let path = must_rejoin_path(pair);
    match list.is_empty() {
        true => remove_state(&path),
        false => write_state(&path, &list),
    }
}

/// Records that `old` was replaced by `new` and must be rejoined.
pub(crate) fn record_replaced(pair: &Pair, old: &str, new: &str) -> Result<(), FailoverError> {
    let mut list = must_rejoin(pair)?;
    if !list.iter().any(|m| m.node == old) {
        list.push(MustRejoin {
            node: old.to_string(),
            replaced_by: new.to_string(),
        });
    }
    record_must_rejoin(pair, &list)
}

/// Records that `node` was rejoined.
pub(crate) fn record_rejoined(pair: &Pair, node: &str) -> Result<(), FailoverError> {
    let list: Vec<MustRejoin> = must_rejoin(pair)?
        .into_iter()
        .filter(|m| m.node != node)
        .collect();
    record_must_rejoin(pair, &list)
}
