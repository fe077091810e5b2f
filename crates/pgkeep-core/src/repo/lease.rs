//! Leases: a running backup or restore says so in the repository, so that `expire` — on this host
//! or any other sharing the repository — leaves alone what it is using.
//!
//! A lease is a small object `<cluster>/leases/<random>.json` ([`Lease`]): what holds it (a
//! logical backup, a physical restore, ...), the backup it uses, the host and pid, and until when
//! it lives. The holder renews it every fifth of its lifetime (`retention.lease-ttl`, default 10
//! minutes) and deletes it when it ends, whether it succeeded or failed; a killed holder's lease
//! simply expires. Leases are plain objects, so they work the same on every storage.
//!
//! The ordering rules, which make the lease race-free against `expire`:
//! - A backup takes its lease **before** it reserves its id or writes anything, and names its id
//!   in the lease as soon as the id is reserved. `expire` reads the leases **after** it has listed
//!   the backups, so any object of a running backup that it saw is covered by a lease it reads: a
//!   lease naming the id, or one still without an id, which covers every directory whose id (a
//!   UTC second) is not older than the lease's start.
//! - A restore takes its lease and **then** checks that its backup's manifest is still there
//!   ([`RetentionError::BackupGone`] otherwise): an `expire` that saw no lease deleted the manifest
//!   first, and one that runs later sees the lease.
//!
//! Hosts sharing a repository must keep their clocks within a fraction of the lease lifetime of
//! each other: a lease's expiry is the writer's clock, compared with the reader's.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::Repository;
use super::catalog::{EXPIRING, MANIFEST, backup_prefix};
use crate::error::{Error, RetentionError};
use crate::storage::PutMode;

/// The directory (under the cluster) that holds the leases.
const LEASES: &str = "leases/";

/// What holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LeasePurpose {
    /// `backup logical`, while it runs.
    BackupLogical,
    /// `backup physical`, while it runs.
    BackupPhysical,
    /// A physical (point-in-time) restore, while it reads the backup.
    RestorePhysical,
    /// A logical restore of one database.
    RestoreLogical,
    /// A restore of the roles and tablespaces.
    RestoreGlobals,
    /// A restore drill, from its restore to its record.
    Drill,
    /// A physical restore whose server has not finished recovery when pgkeep exits (not started,
    /// or paused at its target): the backup and its WAL stay until the lease expires
    /// (`retention.recovery-lease`), so that the server's `restore_command` still finds them.
    Recovery,
    /// A purpose a newer pgkeep wrote: it still protects the backup it names.
    #[serde(other)]
    Other,
}

impl LeasePurpose {
    /// Whether a running backup holds it (its backup directory is being written).
    pub fn is_backup(self) -> bool {
        matches!(
            self,
            LeasePurpose::BackupLogical | LeasePurpose::BackupPhysical
        )
    }
}

impl fmt::Display for LeasePurpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LeasePurpose::BackupLogical => "a running logical backup",
            LeasePurpose::BackupPhysical => "a running physical backup",
            LeasePurpose::RestorePhysical => "a physical restore",
            LeasePurpose::RestoreLogical => "a logical restore",
            LeasePurpose::RestoreGlobals => "a restore of the globals",
            LeasePurpose::Drill => "a restore drill",
            LeasePurpose::Recovery => "a restored server still recovering",
            LeasePurpose::Other => "a newer pgkeep",
        })
    }
}

/// A lease record, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// What holds it.
    pub purpose: LeasePurpose,
    /// The backup it uses; `None` for a backup that has not reserved its id yet.
    pub backup: Option<String>,
    /// The host it runs on.
    pub host: String,
    /// Its process id there.
    pub pid: u32,
    /// When it was taken.
    pub started_at: DateTime<Utc>,
    /// When it was last renewed.
    pub renewed_at: DateTime<Utc>,
    /// When it expires unless renewed again.
    pub expires_at: DateTime<Utc>,
}

impl Lease {
    /// Whether it is still alive at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }

    /// Whether it covers the directory of backup `id`: it names the backup, or it is a running
    /// backup's that has no id yet and began no later than the id's second.
    pub fn covers(&self, id: &str) -> bool {
        match &self.backup {
            Some(backup) => backup == id,
            None => {
                self.purpose.is_backup()
                    && id
                        >= self
                            .started_at
                            .format("%Y%m%dT%H%M%SZ")
                            .to_string()
                            .as_str()
            }
        }
    }
}

impl fmt::Display for Lease {
    /// `a physical restore on host db1 pid 4242`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} on host {} pid {}", self.purpose, self.host, self.pid)
    }
}

/// A lease found in the repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HeldLease {
    /// Its key.
    pub key: String,
    /// The record.
    #[serde(flatten)]
    pub lease: Lease,
}

/// An object under `leases/` that cannot be read as a lease (it protects nothing, and `expire`
/// leaves it alone).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnreadableLease {
    /// Its key.
    pub key: String,
    /// Why it cannot be read.
    pub problem: String,
}

/// Every lease in the repository, live or expired, and the objects that are not leases.
pub(crate) async fn read_leases(
    repo: &Repository,
) -> Result<(Vec<HeldLease>, Vec<UnreadableLease>), Error> {
    let listed = repo.storage().list(&repo.key(LEASES)).await?;
    let read: Vec<(String, Option<Result<Lease, String>>)> = futures::stream::iter(listed)
        .map(|meta| async move {
            let read = match repo.storage().get_bytes(&meta.key).await {
                Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| e.to_string())),
                // Released since the listing.
                Err(e) if e.is_not_found() => None,
                Err(e) => Some(Err(e.to_string())),
            };
            Ok::<_, Error>((meta.key, read))
        })
        .buffered(8)
        .try_collect()
        .await?;
    let mut held = Vec::new();
    let mut unreadable = Vec::new();
    for (key, read) in read {
        match read {
            Some(Ok(lease)) => held.push(HeldLease { key, lease }),
            Some(Err(problem)) => unreadable.push(UnreadableLease { key, problem }),
            None => {}
        }
    }
    Ok((held, unreadable))
}

/// A lease held by this process: renewed in the background until [`LeaseGuard::release`]. A
/// guard dropped without release (its future dropped by an interrupt) stops renewing and deletes
/// the lease if it still can; otherwise the lease expires.
pub(crate) struct LeaseGuard {
    repo: Repository,
    key: String,
    ttl: Duration,
    record: Arc<tokio::sync::Mutex<Lease>>,
    /// Renewing the lease; `None` once released, or for a restore that could not write one.
    renewer: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseGuard {
    /// Takes a lease for `purpose` on `backup`, living `ttl` between renewals. A restore's
    /// backup is then checked to be still there ([`RetentionError::BackupGone`]). A restore goes
    /// on without a lease (and says so) when the repository cannot be written to — a read-only
    /// copy during an incident — rather than fail; a backup needs its lease.
    pub(crate) async fn take(
        repo: &Repository,
        ttl: Duration,
        purpose: LeasePurpose,
        backup: Option<&str>,
    ) -> Result<LeaseGuard, Error> {
        let now = Utc::now();
        let lease = Lease {
            purpose,
            backup: backup.map(str::to_string),
            host: crate::exec::host_name(),
            pid: std::process::id(),
            started_at: now,
            renewed_at: now,
            expires_at: now + ttl,
        };
        let key = repo.key(&format!("{LEASES}{:016x}.json", rand::random::<u64>()));
        let held = match write(repo, &key, &lease).await {
            Ok(()) => true,
            Err(e) if !purpose.is_backup() => {
                tracing::warn!(
                    "cannot hold a lease in the repository, so `pgkeep expire` (here or on another host) could delete backup {} while it is restored: {e}",
                    backup.unwrap_or("?")
                );
                false
            }
            Err(e) => return Err(e),
        };
        let record = Arc::new(tokio::sync::Mutex::new(lease));
        let renewer =
            held.then(|| tokio::spawn(renew(repo.clone(), key.clone(), ttl, record.clone())));
        let guard = LeaseGuard {
            repo: repo.clone(),
            key,
            ttl,
            record,
            renewer,
        };
        if let (false, Some(id)) = (purpose.is_backup(), backup)
            && let Err(e) = still_there(repo, id, ttl).await
        {
            guard.release().await;
            return Err(e);
        }
        Ok(guard)
    }

    /// Names the backup id the lease's backup reserved.
    pub(crate) async fn set_backup(&self, id: &str) -> Result<(), Error> {
        let mut lease = self.record.lock().await;
        lease.backup = Some(id.to_string());
        lease.renewed_at = Utc::now();
        lease.expires_at = lease.renewed_at + self.ttl;
        write(&self.repo, &self.key, &lease).await
    }

    /// Stops renewing and deletes the lease (a failure to delete is logged: the lease expires).
    pub(crate) async fn release(mut self) {
        let Some(renewer) = self.renewer.take() else {
            return; // never written
        };
        renewer.abort();
        // Wait for a renewal in flight, so that it cannot write the lease back after the delete.
        let _lease = self.record.lock().await;
        if let Err(e) = self.repo.storage().delete(&self.key).await {
            tracing::warn!(
                "cannot remove lease {}: {e}; it expires by itself",
                self.key
            );
        }
    }
}

/// Writes a lease of `purpose` on backup `id` that nobody renews: it lives `lifetime` from now.
/// Returns its key.
pub(crate) async fn leave(
    repo: &Repository,
    purpose: LeasePurpose,
    id: &str,
    lifetime: Duration,
) -> Result<String, Error> {
    let now = Utc::now();
    let lease = Lease {
        purpose,
        backup: Some(id.to_string()),
        host: crate::exec::host_name(),
        pid: std::process::id(),
        started_at: now,
        renewed_at: now,
        expires_at: now + lifetime,
    };
    let key = repo.key(&format!("{LEASES}{:016x}.json", rand::random::<u64>()));
    write(repo, &key, &lease).await?;
    Ok(key)
}

/// Whether backup `id` is still there for a restore that has just written its lease: its
/// manifest exists and `expire` has not marked it ([`EXPIRING`]) within the last `ttl` (an older
/// marker is one an `expire` that died left behind). `expire` writes its marker and then reads
/// the leases; a restore writes its lease and then reads the marker: whichever comes second sees
/// the other, so a backup is never deleted under a restore that passed this check.
async fn still_there(repo: &Repository, id: &str, ttl: Duration) -> Result<(), Error> {
    let prefix = backup_prefix(repo, id);
    let gone = || Error::from(RetentionError::BackupGone { id: id.to_string() });
    match repo.storage().head(&format!("{prefix}{MANIFEST}")).await {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Err(gone()),
        Err(e) => return Err(e.into()),
    }
    match repo.storage().head(&format!("{prefix}{EXPIRING}")).await {
        Ok(marker) => match marker.modified {
            Some(at) if (Utc::now() - at).to_std().is_ok_and(|age| age > ttl) => Ok(()),
            _ => Err(gone()),
        },
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Runs `work`, a restore of backup `id` for `purpose`, under a lease taken first (see
/// [`LeaseGuard::take`]) and released afterwards, whatever the outcome.
pub(crate) async fn restoring<T>(
    repo: &Repository,
    ttl: Duration,
    purpose: LeasePurpose,
    id: &str,
    work: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    let lease = LeaseGuard::take(repo, ttl, purpose, Some(id)).await?;
    let result = work.await;
    lease.release().await;
    result
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return; // released, or never written
        };
        renewer.abort();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (repo, key, record) = (self.repo.clone(), self.key.clone(), self.record.clone());
            runtime.spawn(async move {
                let _lease = record.lock().await;
                let _ = repo.storage().delete(&key).await;
            });
        }
    }
}

async fn write(repo: &Repository, key: &str, lease: &Lease) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(lease).map_err(|e| Error::encode(key, e))?;
    repo.storage()
        .put_bytes(key, &json, PutMode::Overwrite)
        .await?;
    Ok(())
}

/// Renews the lease every fifth of its lifetime until aborted; a failed renewal is logged and
/// tried again at the next turn (four fifths of the lifetime are left for it).
async fn renew(
    repo: Repository,
    key: String,
    ttl: Duration,
    record: Arc<tokio::sync::Mutex<Lease>>,
) {
    let every = (ttl / 5).max(Duration::from_millis(200));
    loop {
        tokio::time::sleep(every).await;
        let mut lease = record.lock().await;
        lease.renewed_at = Utc::now();
        lease.expires_at = lease.renewed_at + ttl;
        if let Err(e) = write(&repo, &key, &lease).await {
            tracing::warn!("cannot renew lease {key}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;
    use crate::storage::faulty::Faulty;

    /// Backup `id`'s manifest (content does not matter to a lease).
    async fn backup_manifest(repo: &Repository, id: &str) {
        repo.storage()
            .put_bytes(
                &format!("main/backups/{id}/manifest.json"),
                b"{}",
                PutMode::Create,
            )
            .await
            .unwrap();
    }

    #[test]
    fn a_lease_covers_its_backup_or_the_ids_after_its_start() {
        let at = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let mut lease = Lease {
            purpose: LeasePurpose::BackupLogical,
            backup: None,
            host: "db1".into(),
            pid: 7,
            started_at: at("2026-11-25T15:04:30.5Z"),
            renewed_at: at("2026-11-25T15:04:30.5Z"),
            expires_at: at("2026-11-25T15:14:30.5Z"),
        };
        assert!(lease.covers("20261125T150430Z"));
        assert!(lease.covers("20261125T150431Z"));
        assert!(!lease.covers("20261125T150429Z"));
        lease.backup = Some("20261125T150431Z".into());
        assert!(!lease.covers("20261125T150432Z"));
        assert!(lease.covers("20261125T150431Z"));
        lease.purpose = LeasePurpose::RestorePhysical;
        lease.backup = None;
        assert!(
            !lease.covers("20261125T150431Z"),
            "a restore covers its backup only"
        );
        assert!(lease.is_live(at("2026-11-25T15:14:30Z")));
        assert!(!lease.is_live(at("2026-11-25T15:14:31Z")));
        assert_eq!(lease.to_string(), "a physical restore on host db1 pid 7");
    }

    #[tokio::test]
    async fn a_lease_is_renewed_and_removed_and_a_restore_needs_its_backup() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(Arc::new(LocalStorage::new(dir.path())), "main");
        let ttl = Duration::from_secs(1);
        let guard = LeaseGuard::take(&repo, ttl, LeasePurpose::BackupPhysical, None)
            .await
            .unwrap();
        let (held, _) = read_leases(&repo).await.unwrap();
        assert_eq!(held.len(), 1);
        let first = held[0].lease.expires_at;
        guard.set_backup("20261125T150430Z").await.unwrap();
        tokio::time::sleep(Duration::from_millis(700)).await;
        let (held, _) = read_leases(&repo).await.unwrap();
        assert!(held[0].lease.expires_at > first, "renewed");
        assert_eq!(held[0].lease.backup.as_deref(), Some("20261125T150430Z"));
        guard.release().await;
        assert!(read_leases(&repo).await.unwrap().0.is_empty());

        let gone = LeaseGuard::take(&repo, ttl, LeasePurpose::RestoreLogical, Some("X")).await;
        assert!(matches!(
            gone,
            Err(Error::Retention(RetentionError::BackupGone { .. }))
        ));
        assert!(read_leases(&repo).await.unwrap().0.is_empty(), "released");

        // A read-only repository: a restore goes on without a lease, a backup cannot start.
        backup_manifest(&repo, "B").await;
        let read_only = Repository::new(
            Arc::new(Faulty {
                inner: LocalStorage::new(dir.path()),
                fail_puts: "leases/",
                fail_deletes: "",
            }),
            "main",
        );
        let restore = LeaseGuard::take(&read_only, ttl, LeasePurpose::RestorePhysical, Some("B"))
            .await
            .unwrap();
        restore.release().await;
        let backup = LeaseGuard::take(&read_only, ttl, LeasePurpose::BackupLogical, None).await;
        assert!(backup.is_err());

        repo.storage()
            .put_bytes("main/leases/junk.json", b"{", PutMode::Create)
            .await
            .unwrap();
        let (held, unreadable) = read_leases(&repo).await.unwrap();
        assert!(held.is_empty());
        assert_eq!(unreadable[0].key, "main/leases/junk.json");
    }

    #[tokio::test]
    async fn a_restore_refuses_a_backup_expire_has_marked_and_a_newer_purpose_still_protects() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Repository::new(Arc::new(LocalStorage::new(dir.path())), "main");
        let ttl = Duration::from_secs(1);
        backup_manifest(&repo, "B").await;
        let marker = format!("{}{EXPIRING}", backup_prefix(&repo, "B"));
        repo.storage()
            .put_bytes(&marker, b"{}", PutMode::Create)
            .await
            .unwrap();
        // Marked just now: an expire is deleting it; the restore refuses and leaves no lease.
        let marked = LeaseGuard::take(&repo, ttl, LeasePurpose::RestorePhysical, Some("B")).await;
        assert!(matches!(
            marked,
            Err(Error::Retention(RetentionError::BackupGone { .. }))
        ));
        assert!(read_leases(&repo).await.unwrap().0.is_empty());
        // A marker older than the lease lifetime was left by an expire that died: no refusal.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        LeaseGuard::take(&repo, ttl, LeasePurpose::RestorePhysical, Some("B"))
            .await
            .unwrap()
            .release()
            .await;

        // A lease a newer pgkeep wrote, with a purpose this one does not know, still names and
        // protects its backup.
        let now = Utc::now();
        let newer = serde_json::json!({
            "purpose": "something-new", "backup": "B", "host": "h", "pid": 1,
            "started_at": now, "renewed_at": now, "expires_at": now + Duration::from_secs(60),
        });
        let lease: Lease = serde_json::from_value(newer).unwrap();
        assert_eq!(lease.purpose, LeasePurpose::Other);
        assert!(lease.is_live(now) && lease.covers("B") && !lease.covers("C"));

        // A lease nobody renews lives its lifetime.
        let key = leave(
            &repo,
            LeasePurpose::Recovery,
            "B",
            Duration::from_secs(3600),
        )
        .await
        .unwrap();
        let (held, _) = read_leases(&repo).await.unwrap();
        assert_eq!(
            (held[0].key.as_str(), held[0].lease.purpose),
            (key.as_str(), LeasePurpose::Recovery)
        );
        assert!(held[0].lease.expires_at > now + Duration::from_secs(3500));
    }
}
