//! `pgkeep failover status`: each node's view and the problems of the pair.

use pgkeep_core::Lsn;
use serde::Serialize;

use crate::node::{Node, Pair, quoted};
use crate::state::{MustRejoin, must_rejoin};

/// What one node looks like.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeStatus {
    /// The node's name.
    pub name: String,
    /// Commands run on it (locally or over ssh).
    pub reachable: bool,
    /// The marker file exists.
    pub marker: bool,
    /// PostgreSQL answers.
    pub postgres_up: bool,
    /// `pg_is_in_recovery()`.
    pub in_recovery: Option<bool>,
    /// The timeline it is on now: a primary's current one, a standby's received one (else that
    /// of its last restartpoint).
    pub timeline: Option<u32>,
    /// A primary's `pg_current_wal_lsn()`.
    pub current_lsn: Option<String>,
    /// A standby's `pg_last_wal_receive_lsn()`.
    pub received_lsn: Option<String>,
    /// A standby's `pg_last_wal_replay_lsn()`.
    pub replayed_lsn: Option<String>,
    /// Bytes the standby's replay is behind the primary's current location.
    pub lag_bytes: Option<u64>,
    /// Seconds since the last replayed transaction's commit, on a standby.
    pub lag_seconds: Option<f64>,
    /// `pg_get_wal_replay_pause_state() <> 'not paused'`.
    pub replay_paused: Option<bool>,
    /// A standby's WAL receiver is streaming.
    pub streaming: Option<bool>,
    /// Whether its data directory holds `standby.signal` (read only when PostgreSQL does not
    /// answer: whether starting it makes a standby or a primary).
    pub standby_signal: Option<bool>,
    /// Why something could not be read.
    pub error: Option<String>,
}

/// The pair as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct PairStatus {
    /// The node this command ran for.
    pub local: String,
    /// The master (the node with the marker), when exactly one has it.
    pub master: Option<String>,
    /// Every node.
    pub nodes: Vec<NodeStatus>,
    /// What is wrong, each with what to do.
    pub problems: Vec<String>,
}

async fn node_status(node: &Node) -> NodeStatus {
    let mut status = NodeStatus {
        name: node.name.clone(),
        ..NodeStatus::default()
    };
    match node.has_marker().await {
        Ok(marker) => {
            status.reachable = true;
            status.marker = marker;
        }
        Err(e) => status.error = Some(e.to_string()),
    }
    let client = match pgkeep_core::connect(&node.conninfo, None).await {
        Ok(client) => client,
        Err(e) => {
            status.error.get_or_insert(e.to_string());
            if status.reachable {
                status.standby_signal = standby_signal(node).await;
            }
            return status;
        }
    };
    status.postgres_up = true;
    let row = client
        .query_one(
            "SELECT pg_is_in_recovery(),
                    (SELECT timeline_id FROM pg_control_checkpoint())::int8,
                    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END,
                    pg_last_wal_receive_lsn()::text,
                    pg_last_wal_replay_lsn()::text,
                    CASE WHEN pg_is_in_recovery()
                         THEN extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
                    CASE WHEN pg_is_in_recovery()
                         THEN pg_get_wal_replay_pause_state() <> 'not paused' END,
                    (SELECT status = 'streaming' FROM pg_stat_wal_receiver),
                    (SELECT received_tli::int8 FROM pg_stat_wal_receiver),
                    CASE WHEN pg_is_in_recovery() THEN NULL
                         ELSE pg_walfile_name(pg_current_wal_lsn()) END",
            &[],
        )
        .await;
    match row {
        Ok(row) => {
            let in_recovery: bool = row.get(0);
            status.in_recovery = Some(in_recovery);
            let checkpoint_tli: Option<i64> = row.get(1);
            let received_tli: Option<i64> = row.get(8);
            // A primary's current WAL file name starts with its timeline: right after a
            // promotion, the last checkpoint is still on the old one.
            let current_tli = row
                .get::<_, Option<String>>(9)
                .and_then(|f| u32::from_str_radix(f.get(..8)?, 16).ok());
            status.timeline = current_tli.or(received_tli
                .or(checkpoint_tli)
                .and_then(|t| u32::try_from(t).ok()));
            status.current_lsn = row.get(2);
            status.received_lsn = row.get(3);
            status.replayed_lsn = row.get(4);
            status.lag_seconds = row.get(5);
            status.replay_paused = row.get(6);
            status.streaming = in_recovery.then(|| row.get::<_, Option<bool>>(7).unwrap_or(false));
        }
        Err(e) => status.error = Some(format!("querying the server: {e}")),
    }
    status
}

/// Whether `node`'s data directory holds `standby.signal`; `None` when that cannot be told.
async fn standby_signal(node: &Node) -> Option<bool> {
    let out = node
        .shell(&format!(
            "if [ -e {d}/standby.signal ]; then echo yes; elif [ -e {d}/PG_VERSION ]; then echo no; fi",
            d = quoted(&node.pgdata)
        ))
        .await
        .ok()?;
    match String::from_utf8_lossy(&out.stdout).trim() {
        "yes" => Some(true),
        "no" => Some(false),
        _ => None,
    }
}

/// Reads every node and judges the pair.
pub async fn status(pair: &Pair) -> PairStatus {
    let mut nodes = Vec::new();
    for node in &pair.nodes {
        nodes.push(node_status(node).await);
    }
    let primary_lsn = nodes
        .iter()
        .filter(|n| n.in_recovery == Some(false))
        .find_map(|n| n.current_lsn.as_deref().and_then(Lsn::parse));
    for n in &mut nodes {
        if n.in_recovery == Some(true)
            && let (Some(primary), Some(replayed)) =
                (primary_lsn, n.replayed_lsn.as_deref().and_then(Lsn::parse))
        {
            n.lag_bytes = Some(primary.0.saturating_sub(replayed.0));
        }
    }
    let (replaced, unreadable) = match must_rejoin(pair) {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(e.to_string())),
    };
    let mut problems = judge(&nodes, &replaced);
    problems.extend(unreadable);
    let with_marker: Vec<&NodeStatus> = nodes.iter().filter(|n| n.marker).collect();
    PairStatus {
        local: pair.local().name.clone(),
        master: (with_marker.len() == 1).then(|| with_marker[0].name.clone()),
        nodes,
        problems,
    }
}

/// What to do about a node whose PostgreSQL does not answer: never "start it" when that would
/// make a second primary.
fn advice_when_down(
    n: &NodeStatus,
    primary: Option<&str>,
    replaced: Option<&MustRejoin>,
) -> String {
    let rejoin = format!("`pgkeep failover rejoin {}`", n.name);
    match (replaced, primary, n.standby_signal) {
        (Some(m), _, _) => format!(
            "do not start it as it is: it was the master and was replaced by {}, so it would be a second primary; make it a standby first: {rejoin}",
            m.replaced_by
        ),
        (None, Some(p), Some(false)) => format!(
            "do not start it as it is: its data directory has no standby.signal, so it would start as a second primary beside {p}; make it a standby of {p}: {rejoin}"
        ),
        (None, Some(p), None) => format!(
            "start it only if it is a standby (standby.signal in its data directory); otherwise it would be a second primary beside {p}: make it a standby with {rejoin}"
        ),
        (None, Some(_), Some(true)) => "start it: it starts as a standby".into(),
        (None, None, _) => {
            "start it, or fail over (`pgkeep failover promote` on the standby) if it is the master and cannot come back".into()
        }
    }
}

/// The problems of a pair, each with what to do; `replaced` are the recorded former masters that
/// must be rejoined.
pub fn judge(nodes: &[NodeStatus], replaced: &[MustRejoin]) -> Vec<String> {
    let mut problems = Vec::new();
    let primary = nodes
        .iter()
        .find(|n| n.in_recovery == Some(false))
        .map(|n| n.name.as_str());
    for n in nodes {
        if n.reachable && !n.postgres_up {
            problems.push(format!(
                "node {}: PostgreSQL does not answer ({}): {}",
                n.name,
                n.error.as_deref().unwrap_or("no connection"),
                advice_when_down(n, primary, replaced.iter().find(|m| m.node == n.name))
            ));
        }
        if !n.reachable {
            problems.push(format!(
                "node {} cannot be reached: {}",
                n.name,
                n.error.as_deref().unwrap_or("unknown error")
            ));
        }
    }
    let markers: Vec<&str> = nodes
        .iter()
        .filter(|n| n.marker)
        .map(|n| n.name.as_str())
        .collect();
    let reachable_all = nodes.iter().all(|n| n.reachable);
    match markers.len() {
        0 if reachable_all => problems.push(
            "no node holds the marker: no node is the master (file sync and switchover refuse); create the marker on the node whose PostgreSQL is the primary".into(),
        ),
        n if n > 1 => problems.push(format!(
            "the marker is on {} nodes ({}): both count as master; remove it from the one whose PostgreSQL is not the primary",
            n,
            markers.join(", ")
        )),
        _ => {}
    }
    for n in nodes {
        if n.marker && n.in_recovery == Some(true) {
            problems.push(format!(
                "node {} holds the marker but its PostgreSQL is a standby: promote it (`pgkeep failover promote`) or move the marker to the primary",
                n.name
            ));
        }
        if n.in_recovery == Some(true) && n.streaming == Some(false) {
            problems.push(format!(
                "node {} is a standby that is not streaming from the primary: check primary_conninfo and the primary's pg_hba.conf, and its server log",
                n.name
            ));
        }
        if n.replay_paused == Some(true) {
            problems.push(format!(
                "node {} has WAL replay paused: `SELECT pg_wal_replay_resume()` there before a switchover",
                n.name
            ));
        }
    }
    let primaries: Vec<&str> = nodes
        .iter()
        .filter(|n| n.in_recovery == Some(false))
        .map(|n| n.name.as_str())
        .collect();
    if primaries.len() > 1 {
        problems.push(format!(
            "split brain: {} are all primaries; stop the one without the marker at once and rejoin it (`pgkeep failover rejoin NODE`)",
            primaries.join(", ")
        ));
    }
    problems.extend(replaced.iter().map(|m| format!(
        "node {} was replaced by {} and must be made its standby before it runs again: `pgkeep failover rejoin {}`",
        m.node, m.replaced_by, m.node
    )));
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, marker: bool, in_recovery: Option<bool>) -> NodeStatus {
        NodeStatus {
            name: name.into(),
            reachable: true,
            marker,
            postgres_up: in_recovery.is_some(),
            in_recovery,
            streaming: in_recovery.filter(|r| *r).map(|_| true),
            replay_paused: in_recovery.filter(|r| *r).map(|_| false),
            ..NodeStatus::default()
        }
    }

    fn one(problems: &[String], words: &str) {
        assert!(
            problems.iter().any(|p| p.contains(words)),
            "no problem says `{words}`: {problems:#?}"
        );
    }

    #[test]
    fn a_healthy_pair_has_no_problem() {
        let nodes = [node("a", true, Some(false)), node("b", false, Some(true))];
        assert!(judge(&nodes, &[]).is_empty(), "{:?}", judge(&nodes, &[]));
    }

    #[test]
    fn markers_roles_and_replication_are_judged() {
        one(
            &judge(
                &[node("a", false, Some(false)), node("b", false, Some(true))],
                &[],
            ),
            "no node holds the marker",
        );
        one(
            &judge(
                &[node("a", true, Some(false)), node("b", true, Some(true))],
                &[],
            ),
            "the marker is on 2 nodes (a, b)",
        );
        one(
            &judge(
                &[node("a", false, Some(false)), node("b", true, Some(true))],
                &[],
            ),
            "node b holds the marker but its PostgreSQL is a standby",
        );
        let split = judge(
            &[node("a", true, Some(false)), node("b", false, Some(false))],
            &[],
        );
        one(&split, "split brain: a, b are all primaries");

        let mut lost = node("b", false, Some(true));
        lost.streaming = Some(false);
        one(
            &judge(&[node("a", true, Some(false)), lost], &[]),
            "node b is a standby that is not streaming",
        );
        let mut paused = node("b", false, Some(true));
        paused.replay_paused = Some(true);
        one(
            &judge(&[node("a", true, Some(false)), paused], &[]),
            "node b has WAL replay paused",
        );
    }

    #[test]
    fn unreachable_nodes_and_stopped_servers_are_named() {
        let mut down = node("a", true, None);
        down.error = Some("connection refused".into());
        let problems = judge(&[down, node("b", false, Some(true))], &[]);
        one(
            &problems,
            "node a: PostgreSQL does not answer (connection refused)",
        );

        let unreachable = NodeStatus {
            name: "b".into(),
            error: Some("ssh: no route to host".into()),
            ..NodeStatus::default()
        };
        let problems = judge(&[node("a", false, Some(false)), unreachable], &[]);
        one(&problems, "node b cannot be reached: ssh: no route to host");
        // With a node out of reach, a missing marker may be on that node: no verdict on it.
        assert!(
            !problems
                .iter()
                .any(|p| p.contains("no node holds the marker"))
        );
    }

    #[test]
    fn a_stopped_former_master_is_never_advised_to_start() {
        let mut a = node("a", false, None);
        a.error = Some("connection refused".into());
        let b = node("b", true, Some(false));
        let replaced = [MustRejoin {
            node: "a".into(),
            replaced_by: "b".into(),
        }];
        for signal in [None, Some(false), Some(true)] {
            a.standby_signal = signal;
            let problems = judge(&[a.clone(), b.clone()], &replaced);
            let down = problems
                .iter()
                .find(|p| p.starts_with("node a: PostgreSQL does not answer"))
                .unwrap();
            assert!(down.contains("do not start it as it is"), "{down}");
            assert!(down.contains("`pgkeep failover rejoin a`"), "{down}");
            one(&problems, "node a was replaced by b");
        }
        // Without the record (status run on the other server): standby.signal decides.
        a.standby_signal = Some(false);
        one(
            &judge(&[a.clone(), b.clone()], &[]),
            "no standby.signal, so it would start as a second primary beside b",
        );
        a.standby_signal = None;
        let problems = judge(&[a.clone(), b.clone()], &[]);
        one(&problems, "start it only if it is a standby");
        a.standby_signal = Some(true);
        one(&judge(&[a, b], &[]), "start it: it starts as a standby");
    }
}
