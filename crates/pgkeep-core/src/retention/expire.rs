//! Carrying out an expire plan, in an order that never leaves a backup listed with parts missing:
//!
//! 1. Each expired backup: its manifest first — from then on it is no backup, and if expire stops
//!    here what is left is an incomplete leftover that the next expire removes — then every other
//!    object of its directory (payload, notes), then the directory. The leases are read again just
//!    before each one: a restore that took the backup since the plan spares it.
//! 2. The WAL no kept backup needs (a backup spared in step 1 keeps its WAL too).
//! 3. The leftovers older than the grace period that no lease covers.
//! 4. The expired leases, each read again first: one renewed since the plan stays.
//!
//! The first failure stops the run; [`RetentionError::ExpireFailed`] says what was deleted before.

use futures::{StreamExt, TryStreamExt};

use super::plan::ExpirePlan;
use super::wal::{WalStart, is_needed, wal_start};
use crate::error::{Error, ExpireReport, RetentionError};
use crate::repo::Repository;
use crate::repo::catalog::{MANIFEST, backup_prefix};
use crate::repo::lease::{Lease, read_leases};
use crate::repo::scan::LeftoverKind;
use crate::storage::ObjectMeta;

/// Carries out `plan` (from [`plan_expire`](super::plan_expire)) and says what it deleted.
pub async fn expire(repo: &Repository, plan: &ExpirePlan) -> Result<ExpireReport, Error> {
    let mut done = ExpireReport::default();
    match carry_out(repo, plan, &mut done).await {
        Ok(()) => Ok(done),
        Err(source) => Err(RetentionError::ExpireFailed {
            done: Box::new(done),
            source: Box::new(source),
        }
        .into()),
    }
}

async fn carry_out(
    repo: &Repository,
    plan: &ExpirePlan,
    done: &mut ExpireReport,
) -> Result<(), Error> {
    let mut spared: Vec<WalStart> = Vec::new();
    for backup in plan.expired() {
        if let Some(lease) = live_lease_on(repo, &backup.id).await? {
            tracing::info!("backup {} is spared: in use by {lease}", backup.id);
            done.spared.push(backup.id.clone());
            spared.extend(wal_start(&backup.manifest));
            continue;
        }
        delete_backup(repo, &backup.id).await?;
        tracing::info!("expired backup {}", backup.id);
        done.backups.push(backup.id.clone());
        done.backup_bytes += backup.stored_size;
    }
    let wal: Vec<_> = plan
        .wal
        .delete
        .iter()
        .filter(|w| !is_needed(w.timeline, w.segno, &spared))
        .collect();
    let mut deletes = futures::stream::iter(&wal)
        .map(|w| async move { repo.storage().delete(&w.key).await.map(|()| w.bytes) })
        .buffer_unordered(8);
    while let Some(deleted) = deletes.next().await {
        done.wal_bytes += deleted?;
        done.wal_files += 1;
    }
    for planned in plan.removed_leftovers() {
        let leftover = &planned.leftover;
        match leftover.kind {
            LeftoverKind::Incomplete | LeftoverKind::Unlisted => {
                for key in &leftover.keys {
                    repo.storage().delete(key).await?;
                }
            }
            LeftoverKind::Staging => {
                for key in &leftover.keys {
                    let write = ObjectMeta {
                        key: key.clone(),
                        size: 0,
                        modified: leftover.modified,
                    };
                    repo.storage().remove_unfinished(&write).await?;
                }
            }
        }
        if leftover.kind != LeftoverKind::Unlisted
            && leftover.prefix.starts_with(&repo.key("backups/"))
        {
            repo.storage().remove_empty_dir(&leftover.prefix).await?;
        }
        done.leftovers += 1;
        done.leftover_bytes += leftover.bytes;
    }
    for held in &plan.expired_leases {
        let renewed = match repo.storage().get_bytes(&held.key).await {
            Ok(bytes) => {
                serde_json::from_slice::<Lease>(&bytes).is_ok_and(|l| l.is_live(chrono::Utc::now()))
            }
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        if !renewed {
            repo.storage().delete(&held.key).await?;
            done.leases += 1;
        }
    }
    Ok(())
}

/// The live lease that uses backup `id` now, if any.
async fn live_lease_on(repo: &Repository, id: &str) -> Result<Option<Lease>, Error> {
    let now = chrono::Utc::now();
    let (held, _) = read_leases(repo).await?;
    Ok(held
        .into_iter()
        .map(|h| h.lease)
        .find(|l| l.is_live(now) && l.backup.as_deref() == Some(id)))
}

/// Deletes backup `id`: the manifest first, then everything else in its directory, then the
/// directory.
async fn delete_backup(repo: &Repository, id: &str) -> Result<(), Error> {
    let prefix = backup_prefix(repo, id);
    repo.storage()
        .delete(&format!("{prefix}{MANIFEST}"))
        .await?;
    let rest = repo.storage().list(&prefix).await?;
    futures::stream::iter(&rest)
        .map(|o| repo.storage().delete(&o.key))
        .buffer_unordered(8)
        .try_collect::<Vec<()>>()
        .await?;
    repo.storage().remove_empty_dir(&prefix).await?;
    Ok(())
}
