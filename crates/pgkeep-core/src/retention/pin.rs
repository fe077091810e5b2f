//! Pins: `backups/<id>/pinned.json` keeps a backup whatever the policy says, until it is unpinned.
//! A pin is a note beside the backup (`repo::catalog::PIN`), written after it; deleting the
//! backup's directory would delete it too, which expire never does while it exists.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::repo::Repository;
use crate::repo::catalog::{PIN, backup_prefix, find_backup};
use crate::settings::{ConfigError, InvalidValue};
use crate::storage::PutMode;

/// A pin record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    /// When the backup was pinned.
    pub pinned_at: DateTime<Utc>,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
}

/// What [`pin_backup`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PinChange {
    /// The backup was not pinned: it is now.
    Pinned,
    /// It was pinned already and no reason was given: the pin stays as it was.
    AlreadyPinned,
    /// It was pinned already: the reason is replaced, `pinned_at` stays.
    ReasonReplaced,
}

/// A pin and what [`pin_backup`] did to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PinOutcome {
    /// The backup's pin now.
    pub pin: Pin,
    /// What changed.
    pub change: PinChange,
}

fn pin_key(repo: &Repository, id: &str) -> String {
    format!("{}{PIN}", backup_prefix(repo, id))
}

/// Checks that `id` can be a backup id (not empty, not `.` or `..`, no `/` and no control
/// characters): anything else would name another key of the repository, or print as something
/// else. Backup ids are what `pgkeep list` shows.
pub fn validate_backup_id(id: &str) -> Result<(), InvalidValue> {
    let ok = !id.is_empty()
        && id != "."
        && id != ".."
        && !id.contains(['/', '\\'])
        && !id.chars().any(char::is_control);
    match ok {
        true => Ok(()),
        false => Err(InvalidValue::new(
            format!(
                "`{}` is not a backup id (see pgkeep list)",
                id.escape_debug()
            ),
            "give the id of a backup as `pgkeep list` shows it (e.g. 20261101T020000Z)",
        )),
    }
}

/// Checks a pin's reason: one line of text, without control characters (newlines, ANSI
/// escapes), which would forge lines or colours in the plan.
pub fn validate_pin_reason(reason: &str) -> Result<(), InvalidValue> {
    match reason.chars().any(char::is_control) {
        false => Ok(()),
        true => Err(InvalidValue::new(
            format!(
                "`{}` is not a usable pin reason: it holds control characters (newlines, escapes)",
                reason.escape_debug()
            ),
            "write the reason on one line of plain text",
        )),
    }
}

/// `value` checked by `check`, as a refusal of the argument `key` of `command`.
fn checked(
    check: fn(&str) -> Result<(), InvalidValue>,
    command: &str,
    key: &str,
    value: &str,
) -> Result<(), Error> {
    check(value).map_err(|e| ConfigError::at(command, key, e).into())
}

/// Pins backup `id` (which must be a backup whose manifest reads: [`Error::NoSuchBackup`],
/// [`Error::UnusableBackup`] otherwise). An id that [`validate_backup_id`] refuses, and a reason
/// that [`validate_pin_reason`] refuses, are an [`Error::Config`] before the repository is
/// read. Pinning a pinned backup again keeps its pin ([`PinChange::AlreadyPinned`]), or with a
/// reason replaces the reason and keeps `pinned_at` ([`PinChange::ReasonReplaced`]).
pub async fn pin_backup(
    repo: &Repository,
    id: &str,
    reason: Option<&str>,
) -> Result<PinOutcome, Error> {
    checked(validate_backup_id, "pgkeep pin", "ID", id)?;
    if let Some(reason) = reason {
        checked(validate_pin_reason, "pgkeep pin", "--reason", reason)?;
    }
    find_backup(repo, id).await?;
    let (pin, change) = match (read_pin(repo, id).await?, reason) {
        (Some(old), None) => {
            return Ok(PinOutcome {
                pin: old,
                change: PinChange::AlreadyPinned,
            });
        }
        (Some(old), Some(reason)) => (
            Pin {
                pinned_at: old.pinned_at,
                reason: Some(reason.to_string()),
            },
            PinChange::ReasonReplaced,
        ),
        (None, reason) => (
            Pin {
                pinned_at: Utc::now(),
                reason: reason.map(str::to_string),
            },
            PinChange::Pinned,
        ),
    };
    let key = pin_key(repo, id);
    let json = serde_json::to_vec_pretty(&pin).map_err(|e| Error::encode(&key, e))?;
    repo.storage()
        .put_bytes(&key, &json, PutMode::Overwrite)
        .await?;
    Ok(PinOutcome { pin, change })
}

/// Unpins backup `id` (refused as [`pin_backup`] refuses); returns the pin it removed, `None`
/// when the backup was not pinned.
pub async fn unpin_backup(repo: &Repository, id: &str) -> Result<Option<Pin>, Error> {
    checked(validate_backup_id, "pgkeep unpin", "ID", id)?;
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

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::repo::catalog::{BackupKind, Manifest, ManifestObject, ObjectFormat, ObjectRole};
    use crate::storage::LocalStorage;
    use crate::stream::{Codec, StoredObject};

    /// A repository in `dir` holding one logical backup `B1`, ended now.
    async fn repo_with_backup(dir: &std::path::Path) -> Repository {
        let repo = Repository::new(Arc::new(LocalStorage::new(dir)), "main");
        repo.record_identity("7", 15).await.unwrap();
        store_backup(&repo, "B1", Utc::now()).await;
        repo
    }

    /// Stores a logical backup `id` of database `a` that ended at `end` (its object is not
    /// written: planning never reads it).
    pub(crate) async fn store_backup(repo: &Repository, id: &str, end: DateTime<Utc>) {
        let manifest = Manifest {
            format: 1,
            id: id.into(),
            kind: BackupKind::Logical,
            cluster: "main".into(),
            system_identifier: "7".into(),
            server_version: "15.18".into(),
            server_version_num: 150018,
            started_at: end,
            finished_at: end,
            tools: BTreeMap::new(),
            logical: Some(Default::default()),
            physical: None,
            objects: vec![ManifestObject {
                role: ObjectRole::Database,
                database: Some("a".into()),
                format: ObjectFormat::Custom,
                database_info: None,
                seconds: 0.0,
                path: None,
                stored: StoredObject {
                    key: format!("main/backups/{id}/db-0001-a.dump.zst"),
                    size: 4,
                    sha256: String::new(),
                    stored_size: 4,
                    stored_sha256: String::new(),
                    compression: Codec::Zstd,
                },
            }],
        };
        repo.storage()
            .put_bytes(
                &format!("main/backups/{id}/manifest.json"),
                &serde_json::to_vec(&manifest).unwrap(),
                PutMode::Create,
            )
            .await
            .unwrap();
    }

    #[test]
    fn what_is_no_backup_id_or_reason_is_refused() {
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "B1/",
            "/B1",
            "../B1",
            "a\\b",
            "B1\n",
            "\u{1b}[31mB1",
        ] {
            let e = validate_backup_id(bad).unwrap_err().to_string();
            assert!(
                e.contains("is not a backup id (see pgkeep list)"),
                "{bad:?}: {e}"
            );
            assert!(e.contains("fix: give the id of a backup"), "{bad:?}: {e}");
            // Control characters are shown escaped, never printed.
            let problem = e.split("\n  fix:").next().unwrap();
            assert!(!problem.chars().any(char::is_control), "{bad:?}: {e}");
        }
        assert!(validate_backup_id("20261101T020000Z").is_ok());
        assert!(validate_pin_reason("audit 2026, ticket #42").is_ok());
        for bad in ["two\nlines", "\u{1b}[2Jcleared", "tab\there", "cr\r"] {
            let e = validate_pin_reason(bad).unwrap_err().to_string();
            assert!(e.contains("is not a usable pin reason"), "{bad:?}: {e}");
            let problem = e.split("\n  fix:").next().unwrap();
            assert!(!problem.chars().any(char::is_control), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn bad_arguments_are_refused_before_the_repository_is_read() {
        let dir = tempfile::tempdir().unwrap();
        // No repository there at all: a refusal that read it would say so instead.
        let repo = Repository::new(Arc::new(LocalStorage::new(dir.path().join("none"))), "main");
        let e = pin_backup(&repo, "a/b", None).await.unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string()
                .starts_with("pgkeep pin: `ID`: `a/b` is not a backup id"),
            "{e}"
        );
        let e = pin_backup(&repo, "B1", Some("x\n\u{1b}[0m"))
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Config(_)), "{e}");
        assert!(
            e.to_string()
                .contains("`--reason`: `x\\n\\u{1b}[0m` is not a usable"),
            "{e}"
        );
        let e = unpin_backup(&repo, "..").await.unwrap_err();
        assert!(
            e.to_string()
                .starts_with("pgkeep unpin: `ID`: `..` is not a backup id"),
            "{e}"
        );
        assert!(!dir.path().join("none").exists());
    }

    #[tokio::test]
    async fn pinning_again_keeps_the_pin_or_replaces_only_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let repo = repo_with_backup(dir.path()).await;
        let first = pin_backup(&repo, "B1", Some("audit")).await.unwrap();
        assert_eq!(first.change, PinChange::Pinned);

        let again = pin_backup(&repo, "B1", None).await.unwrap();
        assert_eq!(again.change, PinChange::AlreadyPinned);
        assert_eq!(again.pin, first.pin, "the reason and pinned_at stay");
        assert_eq!(
            read_pin(&repo, "B1").await.unwrap(),
            Some(first.pin.clone())
        );

        let replaced = pin_backup(&repo, "B1", Some("legal hold")).await.unwrap();
        assert_eq!(replaced.change, PinChange::ReasonReplaced);
        assert_eq!(replaced.pin.pinned_at, first.pin.pinned_at);
        assert_eq!(replaced.pin.reason.as_deref(), Some("legal hold"));
        assert_eq!(
            read_pin(&repo, "B1").await.unwrap(),
            Some(replaced.pin.clone())
        );

        assert_eq!(unpin_backup(&repo, "B1").await.unwrap(), Some(replaced.pin));
        let fresh = pin_backup(&repo, "B1", None).await.unwrap();
        assert_eq!((fresh.change, fresh.pin.reason), (PinChange::Pinned, None));
    }
}
