//! The rejoined node as a standby: its `restore_command` (archived WAL from the shared repository,
//! for pg_rewind and for catching up), and the wait until it streams, which stops at once when
//! its server log shows an error that waiting cannot cure.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use pgkeep_core::{Lsn, conf_quote, shell_quote};

use crate::error::FailoverError;
use crate::node::{Node, Pair, WalFetch, quoted};
use crate::status::status;

/// How long the rejoined node may go without streaming and without replaying anything new.
const NO_PROGRESS_LIMIT: Duration = Duration::from_secs(120);
/// How long a streaming node may take to replay what the master had when it began to stream
/// before the rejoin counts it done anyway (it streams; a busy master keeps it a little behind).
const CATCH_UP_GRACE: Duration = Duration::from_secs(10);

/// Sets `restore_command` in `node`'s postgresql.auto.conf (any earlier one removed), after
/// checking that the pgkeep binary it runs exists on the node.
pub(super) async fn set_restore_command(
    node: &Node,
    fetch: &WalFetch,
) -> Result<(), FailoverError> {
    let program = quoted(&fetch.program);
    let found = node.shell(&format!("test -x {program}")).await?;
    if !found.status.success() {
        return Err(FailoverError::refused(
            format!(
                "node {}: {} does not exist or is not executable, and the rejoined standby's restore_command runs it",
                node.name,
                fetch.program.display()
            ),
            "install pgkeep and its configuration file at the same paths on both servers",
        ));
    }
    let line = format!("restore_command = {}", conf_quote(&fetch.command));
    let file = quoted(&node.pgdata.join("postgresql.auto.conf"));
    node.run(
        "setting restore_command in postgresql.auto.conf",
        &format!(
            "f={file}; tmp=$(mktemp \"$f.pgkeep-XXXXXXXX\") && {{ grep -v -E '^[[:space:]]*restore_command[[:space:]]*=' \"$f\" 2>/dev/null; printf '%s\\n' {line}; }} > \"$tmp\" && chmod 600 \"$tmp\" && chown --reference={dir} \"$tmp\" && mv \"$tmp\" \"$f\"",
            line = shell_quote(&line),
            dir = quoted(&node.pgdata)
        ),
    )
    .await
    .map(|_| ())
}

/// An error in a standby's log that waiting does not cure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permanent {
    /// The master recycled WAL the standby needs, and the archive cannot supply it.
    WalRemoved,
    /// The standby's history does not lead to the master's timeline.
    NotAChild,
    /// The master refuses the standby's replication connection.
    Refused,
}

impl Permanent {
    fn find(line: &str) -> Option<Permanent> {
        if line.contains("has already been removed") {
            Some(Permanent::WalRemoved)
        } else if line.contains("is not a child of this server's history") {
            Some(Permanent::NotAChild)
        } else if line.contains("password authentication failed")
            || line.contains("no pg_hba.conf entry")
        {
            Some(Permanent::Refused)
        } else {
            None
        }
    }

    fn fix(self, node: &str, fetch: Option<&WalFetch>) -> String {
        match self {
            Permanent::WalRemoved => format!(
                "{}; copy the master afresh: `pgkeep failover rejoin {node} --reclone`",
                match fetch {
                    Some(_) =>
                        "the master has recycled that WAL and the repository's archive does not hold it either (is the master archiving? `pgkeep verify --wal`)",
                    None =>
                        "the master has recycled that WAL, and no [repository] is configured, so the standby got no restore_command to fetch it from the archive",
                }
            ),
            Permanent::NotAChild => format!(
                "its data diverged from the master in a way pg_rewind did not undo; copy the master afresh: `pgkeep failover rejoin {node} --reclone`"
            ),
            Permanent::Refused => format!(
                "allow replication from {node} in the master's pg_hba.conf and put the password in ~postgres/.pgpass on {node}, then run `pgkeep failover rejoin {node}` again"
            ),
        }
    }
}

/// The server log of a node, read from where it was when the node was started.
pub(super) struct LogWatch {
    path: Option<PathBuf>,
    offset: u64,
}

impl LogWatch {
    /// Notes the end of the node's server log (found from `-l`/`--log` in its start command, else
    /// Debian's `/var/log/postgresql/postgresql-VERSION-CLUSTER.log`), before it is started.
    pub(super) async fn before_start(node: &Node) -> LogWatch {
        let path = server_log(node);
        let mut offset = 0;
        if let Some(path) = &path
            && let Ok(out) = node
                .shell(&format!("wc -c < {} 2>/dev/null", quoted(path)))
                .await
        {
            offset = String::from_utf8_lossy(&out.stdout)
                .trim()
                .parse()
                .unwrap_or(0);
        }
        LogWatch { path, offset }
    }

    /// The first line written since the start that shows a permanent error.
    async fn permanent(&self, node: &Node) -> Option<(Permanent, String)> {
        let path = self.path.as_ref()?;
        let out = node
            .shell(&format!(
                "tail -c +{} {} 2>/dev/null",
                self.offset + 1,
                quoted(path)
            ))
            .await
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| Permanent::find(l).map(|p| (p, l.trim().to_string())))
    }
}

fn server_log(node: &Node) -> Option<PathBuf> {
    let words: Vec<&str> = node.start_postgres.split_whitespace().collect();
    for (i, word) in words.iter().enumerate() {
        let path = match *word {
            "-l" | "--log" => words.get(i + 1).copied(),
            w => w.strip_prefix("--log="),
        };
        if let Some(path) = path {
            return Some(PathBuf::from(path.trim_matches(['\'', '"'])));
        }
    }
    // Debian's pg_ctlcluster: /var/lib/postgresql/15/main logs to postgresql-15-main.log.
    let mut parts = node.pgdata.strip_prefix("/var/lib/postgresql").ok()?.iter();
    let (version, cluster) = (parts.next()?, parts.next()?);
    parts.next().is_none().then(|| {
        Path::new("/var/log/postgresql").join(format!(
            "postgresql-{}-{}.log",
            version.to_string_lossy(),
            cluster.to_string_lossy()
        ))
    })
}

/// Waits until `node` is a standby that streams from `master` and has replayed what the master
/// had written when streaming began. Gives up when its log shows a
/// permanent error, or when it neither streams nor replays anything new for two minutes (it may
/// be catching up from the archive).
pub(super) async fn wait_streaming(
    pair: &Pair,
    node: &Node,
    master: &Node,
    log: &LogWatch,
) -> Result<(), FailoverError> {
    let mut progress = Instant::now();
    let mut replayed: Option<Lsn> = None;
    // Once it streams: the master's location then, which it must have replayed to be done (so
    // that a switchover right after the rejoin finds it caught up).
    let mut goal: Option<Lsn> = None;
    let mut streaming_since: Option<Instant> = None;
    loop {
        let status = status(pair).await;
        let me = status.nodes.iter().find(|n| n.name == node.name);
        let now = me
            .and_then(|n| n.replayed_lsn.as_deref())
            .and_then(Lsn::parse);
        if me.is_some_and(|n| n.in_recovery == Some(true) && n.streaming == Some(true)) {
            let master_lsn = status
                .nodes
                .iter()
                .find(|n| n.name == master.name)
                .and_then(|n| n.current_lsn.as_deref())
                .and_then(Lsn::parse);
            goal = goal.or(master_lsn);
            let streaming = *streaming_since.get_or_insert_with(Instant::now);
            if goal.is_none() || now >= goal || streaming.elapsed() > CATCH_UP_GRACE {
                return Ok(());
            }
        }
        if let Some((kind, line)) = log.permanent(node).await {
            return Err(FailoverError::stopped(
                format!(
                    "{} runs as a standby but cannot catch up with {}; its server log says:\n    {line}",
                    node.name, master.name
                ),
                &kind.fix(&node.name, pair.wal_fetch.as_ref()),
            ));
        }
        if now > replayed {
            replayed = now;
            progress = Instant::now();
        }
        if progress.elapsed() > NO_PROGRESS_LIMIT {
            return Err(FailoverError::stopped(
                format!(
                    "{} started but neither streams from {} nor replays any further WAL for {} s (replayed: {})",
                    node.name,
                    master.name,
                    NO_PROGRESS_LIMIT.as_secs(),
                    replayed.map_or("nothing".to_string(), |l| l.to_string())
                ),
                &format!(
                    "check its server log{} and primary_conninfo in its postgresql.auto.conf",
                    log.path
                        .as_ref()
                        .map(|p| format!(" ({})", p.display()))
                        .unwrap_or_default()
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permanent_errors_are_recognised_in_log_lines() {
        let line = "2026-12-01 23:40:01 UTC [77] FATAL:  could not receive data from WAL stream: ERROR:  requested WAL segment 000000020000000000000004 has already been removed";
        assert_eq!(Permanent::find(line), Some(Permanent::WalRemoved));
        assert_eq!(
            Permanent::find(
                "FATAL:  highest timeline 1 of the primary is behind recovery timeline 2"
            ),
            None
        );
        assert_eq!(
            Permanent::find("requested timeline 3 is not a child of this server's history"),
            Some(Permanent::NotAChild)
        );
        let fix = Permanent::WalRemoved.fix("a", None);
        assert!(
            fix.contains("`pgkeep failover rejoin a --reclone`"),
            "{fix}"
        );
        assert!(fix.contains("no [repository]"), "{fix}");
    }

    fn node(pgdata: &str, start: &str) -> Node {
        Node {
            name: "a".into(),
            transport: crate::node::Transport::Local,
            conninfo: pgkeep_core::ConnInfo::from_conninfo_and_env(Some("host=127.0.0.1")).unwrap(),
            pgdata: pgdata.into(),
            bin_dir: None,
            marker: "/primary_server".into(),
            start_postgres: start.into(),
            stop_postgres: String::new(),
            services: Vec::new(),
            start_service: String::new(),
            stop_service: String::new(),
            sync_root: "/".into(),
        }
    }

    #[test]
    fn the_server_log_is_found_from_the_start_command_or_debian_layout() {
        let log = |pgdata: &str, start: &str| server_log(&node(pgdata, start));
        assert_eq!(
            log("/srv/pg", "pg_ctl -D /srv/pg -w -l /srv/log/pg.log start"),
            Some(PathBuf::from("/srv/log/pg.log"))
        );
        assert_eq!(
            log("/srv/pg", "pg_ctl start --log='/srv/pg.log'"),
            Some(PathBuf::from("/srv/pg.log"))
        );
        assert_eq!(
            log("/var/lib/postgresql/15/main", "systemctl start postgresql"),
            Some(PathBuf::from("/var/log/postgresql/postgresql-15-main.log"))
        );
        assert_eq!(log("/srv/pg", "systemctl start postgresql"), None);
    }
}
