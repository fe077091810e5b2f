//! The unplanned path and the way back: `failover promote` makes this machine's standby the master
//! when the master is gone; `failover rejoin NODE` turns a former master into a standby of the
//! current one (pg_rewind, or a fresh pg_basebackup with `--reclone`). A former master is never
//! started as a primary: it gets `standby.signal` before it is started.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::FailoverError;
use crate::node::{Node, Pair, quoted, shell_quote};
use crate::switchover::run_hooks;

fn stopped(problem: String, fix: &str) -> FailoverError {
    FailoverError::Stopped {
        problem,
        fix: fix.to_string(),
    }
}

/// A node that was promoted away from and must be rejoined before it runs again.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
pub fn must_rejoin(pair: &Pair) -> Vec<MustRejoin> {
    std::fs::read(must_rejoin_path(pair))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn record_must_rejoin(pair: &Pair, list: &[MustRejoin]) -> Result<(), FailoverError> {
    let path = must_rejoin_path(pair);
    let result = if list.is_empty() {
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    } else {
        std::fs::write(&path, serde_json::to_vec_pretty(list).expect("serializes"))
    };
    result.map_err(|e| {
        FailoverError::refused(
            format!("cannot write {}: {e}", path.display()),
            "check the permissions of failover.state-dir",
        )
    })
}

/// Records that `old` was replaced by `new` and must be rejoined.
pub fn record_replaced(pair: &Pair, old: &str, new: &str) -> Result<(), FailoverError> {
    let mut list = must_rejoin(pair);
    if !list.iter().any(|m| m.node == old) {
        list.push(MustRejoin {
            node: old.to_string(),
            replaced_by: new.to_string(),
        });
    }
    record_must_rejoin(pair, &list)
}

/// What `promote` did.
#[derive(Debug, Clone, Serialize)]
pub struct PromoteReport {
    /// The node promoted (this machine's).
    pub promoted: String,
    /// The former masters that must be rejoined.
    pub must_rejoin: Vec<String>,
}

/// `failover promote [--force]`: promotes this machine's standby when the master is gone.
pub async fn promote(
    pair: &Pair,
    force: bool,
    hooks: &[String],
) -> Result<PromoteReport, FailoverError> {
    let _lock = pair.lock("promote")?;
    let local = pair.local();
    match local.is_primary().await {
        Some(false) => {}
        Some(true) => {
            return Err(FailoverError::refused(
                format!("{} is already a primary", local.name),
                "nothing to promote; `pgkeep failover status` shows the pair",
            ));
        }
        None => {
            return Err(FailoverError::refused(
                format!("PostgreSQL on {} does not answer", local.name),
                "start the standby first",
            ));
        }
    }
    let mut alive = Vec::new();
    for peer in pair.peers() {
        if peer.is_primary().await == Some(true) {
            alive.push(peer.name.clone());
        }
    }
    if !alive.is_empty() && !force {
        return Err(FailoverError::refused(
            format!(
                "the master {} still answers as a primary: promoting now would make two primaries",
                alive.join(", ")
            ),
            "use `pgkeep failover switchover` while the master runs; pass --force only when you are sure it cannot reach its clients (it will have to be rejoined)",
        ));
    }
    let client = pgkeep_core::pg::connect(&local.conninfo, None)
        .await
        .map_err(|e| FailoverError::refused(e.to_string(), "check the standby"))?;
    let promoted: bool = client
        .query_one("SELECT pg_promote(true, 120)", &[])
        .await
        .map_err(|e| {
            FailoverError::refused(
                format!("promoting {}: {e}", local.name),
                "look at its server log",
            )
        })?
        .get(0);
    if !promoted {
        return Err(stopped(
            format!("{} did not finish its promotion within 120 s", local.name),
            "look at its server log; once it accepts writes, create its marker and start its services by hand",
        ));
    }
    let former: Vec<String> = pair.peers().map(|n| n.name.clone()).collect();
    for name in &former {
        record_replaced(pair, name, &local.name)?;
    }
    create_marker(local).await?;
    for service in &local.services {
        local
            .run(
                &format!("starting {service}"),
                &local.start_service.replace("{service}", service),
            )
            .await?;
    }
    run_hooks(hooks, &local.name, &former.join(",")).await?;
    Ok(PromoteReport {
        promoted: local.name.clone(),
        must_rejoin: former,
    })
}

/// Creates `node`'s marker durably (written, synced, renamed, directory synced).
pub async fn create_marker(node: &Node) -> Result<(), FailoverError> {
    let dir = node.marker.parent().unwrap_or(Path::new("/"));
    node.run(
        "creating the marker",
        &format!(
            "printf '%s\\n' {} > {tmp} && sync {tmp} && mv {tmp} {marker} && sync {dir}",
            shell_quote(&node.name),
            tmp = quoted(&node.marker.with_extension("pgkeep-tmp")),
            marker = quoted(&node.marker),
            dir = quoted(dir)
        ),
    )
    .await
    .map(|_| ())
}

/// Removes `node`'s marker durably.
pub async fn remove_marker(node: &Node) -> Result<(), FailoverError> {
    let dir = node.marker.parent().unwrap_or(Path::new("/"));
    node.run(
        "removing the marker",
        &format!("rm -f {} && sync {}", quoted(&node.marker), quoted(dir)),
    )
    .await
    .map(|_| ())
}

/// What `rejoin` did.
#[derive(Debug, Clone, Serialize)]
pub struct RejoinReport {
    /// The node made a standby.
    pub node: String,
    /// The master it follows.
    pub master: String,
    /// `rewind`, `no rewind needed` or `reclone`.
    pub method: String,
    /// What pg_rewind or pg_basebackup said.
    pub output: String,
}

/// `failover rejoin NODE [--reclone]`.
pub async fn rejoin(pair: &Pair, name: &str, reclone: bool) -> Result<RejoinReport, FailoverError> {
    let _lock = pair.lock("rejoin")?;
    let node = pair.node(name)?;
    let mut master = None;
    for other in pair.nodes.iter().filter(|n| n.name != name) {
        if other.has_marker().await? && other.is_primary().await == Some(true) {
            master = Some(other);
        }
    }
    let master = master.ok_or_else(|| {
        FailoverError::refused(
            format!("no other node holds the marker and runs as a primary for {name} to follow"),
            "promote the standby first (`pgkeep failover promote`), then rejoin",
        )
    })?;
    // Stop it (a former master may have come back as a primary), and take its marker away.
    if node.is_primary().await.is_some() {
        node.run("stopping PostgreSQL", &node.stop_postgres).await?;
    }
    remove_marker(node).await?;
    // pg_rewind and pg_basebackup copy the master's files, configuration in the data directory
    // included (its port, its own settings): keep this node's and put them back afterwards.
    let saved = node
        .run(
            "saving its configuration files",
            &format!(
                "save=$(mktemp -d) && for f in {dir}/*.conf; do [ -e \"$f\" ] && [ \"${{f##*/}}\" != postgresql.auto.conf ] && cp -p \"$f\" \"$save/\"; done; echo \"$save\"",
                dir = quoted(&node.pgdata)
            ),
        )
        .await?;
    let saved = saved.trim().to_string();
    let source = master.conninfo.to_string();
    let copied = copy_from_master(node, &source, reclone).await;
    node.run(
        "putting its configuration files back",
        &format!(
            "for f in {saved}/*.conf; do [ -e \"$f\" ] && cp -p \"$f\" {dir}/; done; rm -rf {saved}",
            saved = shell_quote(&saved),
            dir = quoted(&node.pgdata)
        ),
    )
    .await?;
    let (method, output) = copied?;
    // Never start a former master as a primary.
    let signal = node.pgdata.join("standby.signal");
    if !node
        .shell(&format!("test -e {}", quoted(&signal)))
        .await?
        .status
        .success()
    {
        node.run(
            "writing standby.signal",
            &format!(
                "touch {s} && chown --reference={d} {s}",
                s = quoted(&signal),
                d = quoted(&node.pgdata)
            ),
        )
        .await?;
    }
    node.run("starting PostgreSQL", &node.start_postgres)
        .await?;
    let begun = Instant::now();
    loop {
        let status = crate::status::status(pair).await;
        let me = status.nodes.iter().find(|n| n.name == name);
        if me.is_some_and(|n| n.in_recovery == Some(true) && n.streaming == Some(true)) {
            break;
        }
        if begun.elapsed() > Duration::from_secs(120) {
            return Err(stopped(
                format!(
                    "{name} started but does not stream from {} within 120 s",
                    master.name
                ),
                "check its server log and primary_conninfo in postgresql.auto.conf",
            ));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let list: Vec<MustRejoin> = must_rejoin(pair)
        .into_iter()
        .filter(|m| m.node != name)
        .collect();
    record_must_rejoin(pair, &list)?;
    Ok(RejoinReport {
        node: name.to_string(),
        master: master.name.clone(),
        method,
        output: output.trim().to_string(),
    })
}

/// Brings `node`'s data directory in line with the master at `source`: pg_rewind (which may find
/// nothing to do), or with `reclone` an emptied directory and pg_basebackup. Returns the method and
/// what the program said.
async fn copy_from_master(
    node: &Node,
    source: &str,
    reclone: bool,
) -> Result<(String, String), FailoverError> {
    if reclone {
        let script = format!(
            "find {dir} -mindepth 1 -delete && {}",
            node.pg_program(
                "pg_basebackup",
                &format!(
                    "-D {} -R -X stream -c fast -d {}",
                    quoted(&node.pgdata),
                    shell_quote(source)
                )
            ),
            dir = quoted(&node.pgdata)
        );
        let out = node
            .run_unbounded("cloning with pg_basebackup", &script)
            .await?;
        Ok(("reclone".to_string(), out))
    } else {
        let out = node
            .shell_unbounded(&node.pg_program(
                "pg_rewind",
                &format!(
                    "--target-pgdata={} --source-server={} --write-recovery-conf 2>&1",
                    quoted(&node.pgdata),
                    shell_quote(source)
                ),
            ))
            .await?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if !out.status.success() {
            return Err(FailoverError::Node {
                node: node.name.clone(),
                what: "pg_rewind".into(),
                detail: text.trim().to_string(),
                fix: format!(
                    "if it cannot rewind (no wal_log_hints or data checksums, missing WAL), run `pgkeep failover rejoin {} --reclone` to copy the master afresh",
                    node.name
                ),
            });
        }
        let method = if text.contains("no rewind required") {
            "no rewind needed"
        } else {
            "rewind"
        };
        Ok((method.to_string(), text))
    }
}
