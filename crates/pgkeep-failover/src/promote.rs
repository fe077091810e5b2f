//! The unplanned path: `failover promote` makes this machine's standby the master when the master
//! is gone, and records that the old master must be rejoined before it runs again.

use serde::Serialize;

use crate::error::FailoverError;
use crate::hooks::run_hooks;
use crate::marker::create_marker;
use crate::node::Pair;
use crate::state::{must_rejoin, record_replaced};

/// What `promote` did.
#[derive(Debug, Clone, Serialize)]
pub struct PromoteReport {
    /// The node promoted (this machine's).
    pub promoted: String,
    /// The former masters that must be rejoined.
    pub must_rejoin: Vec<String>,
    /// The timeline the promoted node writes now (`None` if it could not be read).
    pub timeline: Option<u32>,
}

/// `failover promote [--force]`: promotes this machine's standby when the master is gone.
pub async fn promote(pair: &Pair, force: bool) -> Result<PromoteReport, FailoverError> {
    let _lock = pair.lock("promote")?;
    // The record is written after the promotion, which cannot be undone: an unreadable one is
    // refused before anything changes.
    must_rejoin(pair)?;
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
    let client = pgkeep_core::connect(&local.conninfo, None)
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
        return Err(FailoverError::stopped(
            format!("{} did not finish its promotion within 120 s", local.name),
            "look at its server log; once it accepts writes, create its marker and start its services by hand",
        ));
    }
    let timeline = client
        .query_one(
            "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
            &[],
        )
        .await
        .ok()
        .and_then(|row| u32::from_str_radix(row.get::<_, &str>(0), 16).ok());
    let former: Vec<String> = pair.peers().map(|n| n.name.clone()).collect();
    for name in &former {
        record_replaced(pair, name, &local.name)?;
    }
    create_marker(local).await?;
    local.start_services().await?;
    run_hooks(&pair.hooks, &local.name, &former.join(",")).await?;
    Ok(PromoteReport {
        promoted: local.name.clone(),
        must_rejoin: former,
        timeline,
    })
}
