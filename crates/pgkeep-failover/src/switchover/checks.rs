//! The checks before a switchover starts: exactly one marker, a target that is a streaming
//! standby with replay running and its lag within `failover.max-lag-bytes`.

use crate::error::FailoverError;
use crate::node::Pair;
use crate::status::PairStatus;

/// The checks before a switchover starts; the status they were made on.
pub(super) fn check(pair: &Pair, status: &PairStatus, to: &str) -> Result<String, FailoverError> {
    let markers: Vec<&str> = status
        .nodes
        .iter()
        .filter(|n| n.marker)
        .map(|n| n.name.as_str())
        .collect();
    let from = match markers.as_slice() {
        [one] => one.to_string(),
        [] => {
            return Err(FailoverError::refused(
                "no node holds the marker, so there is no master to switch from".into(),
                "use `pgkeep failover promote` on the standby if the master is gone",
            ));
        }
        many => {
            return Err(FailoverError::refused(
                format!("the marker is on {}", many.join(" and ")),
                "fix the markers first (`pgkeep failover status` says which node is the primary)",
            ));
        }
    };
    if from == to {
        return Err(FailoverError::refused(
            format!("{to} is already the master"),
            "name the standby with --to",
        ));
    }
    let target = status
        .nodes
        .iter()
        .find(|n| n.name == to)
        .expect("status covers every node");
    let master = status
        .nodes
        .iter()
        .find(|n| n.name == from)
        .expect("status covers every node");
    if master.in_recovery != Some(false) {
        return Err(FailoverError::refused(
            format!("the master {from} does not answer as a primary"),
            "check its PostgreSQL; if it is gone, use `pgkeep failover promote` on the standby",
        ));
    }
    if target.in_recovery != Some(true) || target.streaming != Some(true) {
        return Err(FailoverError::refused(
            format!("{to} is not a streaming standby of {from}"),
            "rejoin it first (`pgkeep failover rejoin`), and check `pgkeep failover status`",
        ));
    }
    if target.replay_paused == Some(true) {
        return Err(FailoverError::refused(
            format!("WAL replay is paused on {to}"),
            "run `SELECT pg_wal_replay_resume()` there, then switch over",
        ));
    }
    let lag = target.lag_bytes.unwrap_or(u64::MAX);
    if lag > pair.max_lag_bytes {
        return Err(FailoverError::refused(
            format!(
                "{to} replays {lag} bytes behind {from}, more than failover.max-lag-bytes ({})",
                pair.max_lag_bytes
            ),
            "wait for it to catch up (`pgkeep failover status`), then switch over",
        ));
    }
    Ok(from)
}
