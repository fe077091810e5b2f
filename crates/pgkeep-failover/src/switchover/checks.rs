//! The checks before a switchover starts: exactly one marker, a target that is a streaming
//! standby with replay running and its lag within `failover.max-lag-bytes`.

use crate::error::FailoverError;
use crate::status::PairStatus;

/// The checks before a switchover to `to` starts, on the pair's `status`; returns the master's
/// name.
pub(super) fn check(
    status: &PairStatus,
    to: &str,
    max_lag_bytes: u64,
) -> Result<String, FailoverError> {
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
    if lag > max_lag_bytes {
        return Err(FailoverError::refused(
            format!(
                "{to} replays {lag} bytes behind {from}, more than failover.max-lag-bytes ({})",
                max_lag_bytes
            ),
            "wait for it to catch up (`pgkeep failover status`), then switch over",
        ));
    }
    Ok(from)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::NodeStatus;

    fn primary(name: &str) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            reachable: true,
            marker: true,
            postgres_up: true,
            in_recovery: Some(false),
            ..NodeStatus::default()
        }
    }

    fn standby(name: &str) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            reachable: true,
            postgres_up: true,
            in_recovery: Some(true),
            streaming: Some(true),
            replay_paused: Some(false),
            lag_bytes: Some(0),
            ..NodeStatus::default()
        }
    }

    fn pair(nodes: Vec<NodeStatus>) -> PairStatus {
        PairStatus {
            local: "a".into(),
            master: None,
            nodes,
            problems: Vec::new(),
        }
    }

    /// The refusal's text, which always says nothing was changed.
    fn refused(status: &PairStatus, to: &str) -> String {
        let e = check(status, to, 1024).unwrap_err().to_string();
        assert!(e.contains("nothing was changed"), "{e}");
        e
    }

    #[test]
    fn a_streaming_standby_within_the_lag_limit_may_take_over() {
        let status = pair(vec![primary("a"), standby("b")]);
        assert_eq!(check(&status, "b", 1024).unwrap(), "a");
        let mut lagging = standby("b");
        lagging.lag_bytes = Some(1024);
        assert!(check(&pair(vec![primary("a"), lagging]), "b", 1024).is_ok());
    }

    #[test]
    fn every_unsafe_state_is_refused_with_its_reason() {
        let e = refused(&pair(vec![primary("a"), standby("b")]), "a");
        assert!(e.contains("a is already the master"), "{e}");

        let mut b = primary("b");
        b.in_recovery = Some(true);
        let e = refused(&pair(vec![primary("a"), b]), "b");
        assert!(e.contains("the marker is on a and b"), "{e}");

        let mut a = primary("a");
        a.marker = false;
        let e = refused(&pair(vec![a, standby("b")]), "b");
        assert!(e.contains("no node holds the marker"), "{e}");

        let mut a = primary("a");
        a.in_recovery = None;
        let e = refused(&pair(vec![a, standby("b")]), "b");
        assert!(e.contains("does not answer as a primary"), "{e}");

        let mut b = standby("b");
        b.streaming = Some(false);
        let e = refused(&pair(vec![primary("a"), b]), "b");
        assert!(e.contains("b is not a streaming standby of a"), "{e}");

        let mut b = standby("b");
        b.replay_paused = Some(true);
        let e = refused(&pair(vec![primary("a"), b]), "b");
        assert!(e.contains("WAL replay is paused on b"), "{e}");

        let mut b = standby("b");
        b.lag_bytes = Some(1025);
        let e = refused(&pair(vec![primary("a"), b]), "b");
        assert!(e.contains("1025 bytes behind a"), "{e}");

        // An unknown lag (no primary LSN to compare with) is never taken for a small one.
        let mut b = standby("b");
        b.lag_bytes = None;
        refused(&pair(vec![primary("a"), b]), "b");
    }
}
