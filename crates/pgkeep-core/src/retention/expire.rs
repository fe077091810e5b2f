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
use crate::repo::catalog::{EXPIRING, MANIFEST, backup_prefix};
use crate::repo::lease::{Lease, read_leases};
use crate::repo::scan::LeftoverKind;
use crate::storage::{ObjectMeta, PutMode};

/// Carries out `plan` (from [`plan_expire`](super::plan_expire)) and says what it deleted. A plan
/// with backups that end in the future (a clock that jumped) is refused
/// ([`ExpirePlan::check_confirmable`]) before anything is deleted.
pub async fn expire(repo: &Repository, plan: &ExpirePlan) -> Result<ExpireReport, Error> {
    plan.check_confirmable()?;
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
        // The marker first, then the leases: a restore that took its lease before the marker
        // is seen here; one that takes it after sees the marker and refuses (repo/lease.rs).
        let marker = format!("{}{EXPIRING}", backup_prefix(repo, &backup.id));
        let note = serde_json::json!({ "expiring_since": chrono::Utc::now() }).to_string();
        repo.storage()
            .put_bytes(&marker, note.as_bytes(), PutMode::Overwrite)
            .await?;
        if let Some(lease) = live_lease_on(repo, &backup.id).await? {
            tracing::info!("backup {} is spared: in use by {lease}", backup.id);
            repo.storage().delete(&marker).await?;
            done.spared.push(backup.id.clone());
            spared.extend(wal_start(&backup.manifest));
            continue;
        }
        done.partly.push(backup.id.clone());
        delete_backup(repo, &backup.id).await?;
        done.partly.pop();
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::pg::ConnInfo;
    use crate::retention::pin::tests::store_backup;
    use crate::retention::{ExpireOptions, plan_expire};
    use crate::settings::{RepoLocation, RetentionPolicy, Settings};
    use crate::storage::faulty::Faulty;
    use crate::storage::{LocalStorage, PutMode};

    /// A logical backup of database `a` that ended at `end`, stored in `repo` (its object too).
    async fn backup(repo: &Repository, id: &str, end: &str) {
        let key = format!("main/backups/{id}/db-0001-a.dump.zst");
        repo.storage()
            .put_bytes(&key, b"dump", PutMode::Create)
            .await
            .unwrap();
        store_backup(repo, id, end.parse().unwrap()).await;
    }

    #[tokio::test]
    async fn a_failed_deletion_stops_and_says_what_was_deleted_before() {
        let dir = tempfile::tempdir().unwrap();
        let local = LocalStorage::new(dir.path());
        let failing = Repository::new(
            Arc::new(Faulty {
                inner: local.clone(),
                fail_puts: "",
                fail_deletes: "B2/db-0001",
            }),
            "main",
        );
        let repo = Repository::new(Arc::new(local), "main");
        repo.record_identity("7", 15).await.unwrap();
        backup(&repo, "B1", "2026-11-01T00:00:00Z").await;
        backup(&repo, "B2", "2026-11-02T00:00:00Z").await;
        backup(&repo, "B3", "2026-11-03T00:00:00Z").await;
        let mut settings = Settings::new(
            RepoLocation::Local(dir.path().into()),
            ConnInfo::from_conninfo_and_env(Some("host=/tmp")).unwrap(),
        );
        settings.retention.logical = Some(RetentionPolicy::default());
        let options = ExpireOptions {
            grace: Some(std::time::Duration::ZERO),
        };

        let plan = plan_expire(&settings, &failing, &options).await.unwrap();
        let expired: Vec<&str> = plan.expired().map(|b| b.id.as_str()).collect();
        assert_eq!(expired, ["B1", "B2"]);
        let error = expire(&failing, &plan).await.unwrap_err();
        let Error::Retention(RetentionError::ExpireFailed { done, .. }) = &error else {
            panic!("{error}");
        };
        assert_eq!(done.backups, ["B1"]);
        assert_eq!(
            done.partly,
            ["B2"],
            "its manifest is gone: no longer a backup"
        );
        let text = error.to_string();
        assert!(
            text.contains("expire stopped: deleting main/backups/B2/db-0001-a.dump.zst"),
            "{text}"
        );
        assert!(
            text.contains(
                "before that it began deleting backup B2 (it may be a leftover now, no backup), and deleted 1 backup(s) (4 bytes): B1"
            ),
            "{text}"
        );
        assert!(text.contains("fix: fix the cause above"), "{text}");

        // B2's manifest went first: it is no backup any more, only a leftover the next run removes.
        let plan = plan_expire(&settings, &repo, &options).await.unwrap();
        let ids: Vec<&str> = plan.backups.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(ids, ["B3"]);
        assert_eq!(plan.leftovers.len(), 1, "{:?}", plan.leftovers);
        assert_eq!(plan.leftovers[0].leftover.prefix, "main/backups/B2/");
        let done = expire(&repo, &plan).await.unwrap();
        assert_eq!((done.backups.len(), done.leftovers), (0, 1));
        assert!(!dir.path().join("main/backups/B2").exists());
        assert!(dir.path().join("main/backups/B3/manifest.json").exists());
    }
}
