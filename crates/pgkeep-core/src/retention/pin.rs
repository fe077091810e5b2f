//! Pins: `backups/<id>/pinned.json` keeps a backup whatever the policy says, until it is unpinned.
//! A pin is a note beside the backup (`repo::catalog::PIN`), written after it; deleting the
//! backup's directory would delete it too, which expire never does while it exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::repo::Repository;
use crate::repo::catalog::{PIN, backup_prefix, find_backup};
use crate::storage::PutMode;

/// A pin record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// When the backup was pinned.
    pub pinned_at: DateTime<Utc>,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
}

fn pin_key(repo: &Repository, id: &str) -> String {
    format!("{}{PIN}", backup_prefix(repo, id))
}

/// Pins backup `id` (which must be a backup whose manifest reads: [`Error::NoSuchBackup`],
/// [`Error::UnusableBackup`] otherwise). Pinning a pinned backup again replaces its reason.
pub async fn pin_backup(repo: &Repository, id: &str, reason: Option<&str>) -> Result<Pin, Error> {
    find_backup(repo, id).await?;
    let pin = Pin {
        pinned_at: Utc::now(),
        reason: reason.map(str::to_string),
    };
    let key = pin_key(repo, id);
    let json = serde_json::to_vec_pretty(&pin).map_err(|e| Error::encode(&key, e))?;
    repo.storage()
        .put_bytes(&key, &json, PutMode::Overwrite)
        .await?;
    Ok(pin)
}

/// Unpins backup `id` (refused as [`pin_backup`] refuses); returns the pin it removed, `None`
/// when the backup was not pinned.
pub async fn unpin_backup(repo: &Repository, id: &str) -> Result<Option<Pin>, Error> {
    find_backup(repo, id).await?;
    let pin = read_pin(repo, id).await?;
    if pin.is_some() {
        repo.storage().delete(&pin_key(repo, id)).await?;
    }
    Ok(pin)
}

/// Backup `id`'s pin, if it has one. A pin record that cannot be read still pins the backup
/// (its reason says so): a damaged note must never let a backup expire.
pub(crate) async fn read_pin(repo: &Repository, id: &str) -> Result<Option<Pin>, Error> {
    let key = pin_key(repo, id);
    match repo.storage().get_bytes(&key).await {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            Pin {
                pinned_at: DateTime::<Utc>::MIN_UTC,
                reason: Some(format!("{key} cannot be read ({e}); it counts as a pin")),
            }
        }))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e.into()),
    }
}
