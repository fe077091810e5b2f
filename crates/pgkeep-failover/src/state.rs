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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn pair(state_dir: &Path) -> Pair {
        Pair {
            nodes: Vec::new(),
            local: 0,
            sync: pgkeep_core::SyncConfig::default(),
            state_dir: state_dir.to_path_buf(),
            max_lag_bytes: 0,
            catch_up_timeout: Duration::from_secs(1),
            hooks: Vec::new(),
            wal_fetch: None,
        }
    }

    #[test]
    fn must_rejoin_records_round_trip_and_a_damaged_one_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let pair = pair(dir.path());
        assert!(must_rejoin(&pair).unwrap().is_empty());
        record_replaced(&pair, "a", "b").unwrap();
        record_replaced(&pair, "a", "b").unwrap();
        let expected = MustRejoin {
            node: "a".into(),
            replaced_by: "b".into(),
        };
        assert_eq!(must_rejoin(&pair).unwrap(), [expected]);
        // Only the record itself is in the directory: no staging file stays behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["must-rejoin.json"]);

        record_rejoined(&pair, "a").unwrap();
        assert!(!dir.path().join("must-rejoin.json").exists());

        std::fs::write(dir.path().join("must-rejoin.json"), "{not json").unwrap();
        let e = must_rejoin(&pair).unwrap_err().to_string();
        assert!(e.contains("must-rejoin.json: cannot be parsed"), "{e}");
        assert!(e.contains("fix: "), "{e}");
        // A record that cannot be read is never overwritten as if it were empty.
        assert!(record_replaced(&pair, "b", "a").is_err());
        assert_eq!(
            std::fs::read_to_string(dir.path().join("must-rejoin.json")).unwrap(),
            "{not json"
        );
    }
}
