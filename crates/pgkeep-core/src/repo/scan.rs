//! The catalog read as a whole: every backup whose manifest reads, every backup whose manifest does
//! not (each unusable on its own, never blocking the others), and what lies under `backups/`
//! without belonging to a backup — the leftovers of runs that died, failed or are running now.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::Error;
use crate::repo::Repository;
use crate::repo::catalog::{MANIFEST, Manifest, read_backup};
use crate::storage::ObjectMeta;

/// Everything under the repository cluster's `backups/`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Catalog {
    /// The backups whose manifest reads, oldest first.
    pub backups: Vec<Manifest>,
    /// The backups whose manifest exists but cannot be used, oldest first.
    pub damaged: Vec<DamagedBackup>,
    /// What belongs to no backup, oldest first.
    pub leftovers: Vec<Leftover>,
}

impl Catalog {
    /// Whether a backup has a damaged manifest (a problem `list` and `verify` exit non-zero on).
    pub fn has_damage(&self) -> bool {
        !self.damaged.is_empty()
    }

    /// The total size of the leftovers in bytes.
    pub fn leftover_bytes(&self) -> u64 {
        self.leftovers.iter().map(|l| l.bytes).sum()
    }
}

/// A backup whose `manifest.json` exists but cannot be read as this backup's manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DamagedBackup {
    /// The backup id (its directory's name).
    pub id: String,
    /// The manifest's key.
    pub key: String,
    /// Why it cannot be used.
    pub problem: String,
}

/// What a leftover is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftoverKind {
    /// A backup directory without a manifest: a run that was killed or failed — or one still
    /// running.
    Incomplete,
    /// Objects inside a backup's directory that its manifest does not list.
    Unlisted,
    /// Writes that never finished: a local staging file of a killed writer.
    Staging,
}

/// Stored data that no command lists or restores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Leftover {
    /// What it is.
    pub kind: LeftoverKind,
    /// The backup directory it lies in (`<cluster>/backups/<id>/`).
    pub prefix: String,
    /// Its objects' keys.
    pub keys: Vec<String>,
    /// Their total size in bytes.
    pub bytes: u64,
    /// When the newest of them was last written, if the storage says.
    pub modified: Option<DateTime<Utc>>,
}

/// The keys of one backup directory.
#[derive(Default)]
struct Directory {
    manifest: Option<String>,
    objects: Vec<ObjectMeta>,
}

/// Reads the whole catalog: one listing of `backups/`, then every manifest (eight at a time). A
/// manifest that does not parse, or that describes another backup, makes that backup a
/// [`DamagedBackup`]; only a failure to reach the storage is an error.
pub async fn read_catalog(repo: &Repository) -> Result<Catalog, Error> {
    let prefix = repo.key("backups/");
    let mut dirs: BTreeMap<String, Directory> = BTreeMap::new();
    for meta in repo.storage().list(&prefix).await? {
        let Some((id, name)) = meta
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let dir = dirs.entry(id.to_string()).or_default();
        if name == MANIFEST {
            dir.manifest = Some(meta.key.clone());
        } else {
            dir.objects.push(meta);
        }
    }
    let manifests: Vec<(String, Option<Result<Manifest, Error>>)> =
        futures::stream::iter(dirs.iter())
            .map(|(id, dir)| async move {
                let read = match dir.manifest {
                    Some(_) => Some(read_backup(repo, id).await),
                    None => None,
                };
                Ok::<_, Error>((id.clone(), read))
            })
            .buffered(8)
            .try_collect()
            .await?;
    let mut catalog = Catalog::default();
    for (id, read) in manifests {
        let dir = &dirs[&id];
        let dir_prefix = format!("{prefix}{id}/");
        match read {
            None => catalog.leftovers.extend(leftover(
                LeftoverKind::Incomplete,
                &dir_prefix,
                &dir.objects,
            )),
            Some(Ok(manifest)) => {
                let unlisted: Vec<ObjectMeta> = dir
                    .objects
                    .iter()
                    .filter(|o| !manifest.objects.iter().any(|m| m.stored.key == o.key))
                    .cloned()
                    .collect();
                catalog
                    .leftovers
                    .extend(leftover(LeftoverKind::Unlisted, &dir_prefix, &unlisted));
                catalog.backups.push(manifest);
            }
            Some(Err(Error::UnusableBackup { id, key, problem })) => {
                catalog.damaged.push(DamagedBackup { id, key, problem })
            }
            Some(Err(Error::Storage(e))) if e.is_not_found() => {} // removed since the listing
            Some(Err(e)) => return Err(e),
        }
    }
    let staging = repo.storage().list_unfinished(&prefix).await?;
    for (dir_prefix, files) in group_by_directory(&prefix, staging) {
        catalog
            .leftovers
            .extend(leftover(LeftoverKind::Staging, &dir_prefix, &files));
    }
    catalog.backups.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(catalog)
}

/// Unfinished writes grouped by the backup directory they lie in.
fn group_by_directory(prefix: &str, files: Vec<ObjectMeta>) -> BTreeMap<String, Vec<ObjectMeta>> {
    let mut out: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for file in files {
        let dir = match file
            .key
            .strip_prefix(prefix)
            .and_then(|r| r.split_once('/'))
        {
            Some((id, _)) => format!("{prefix}{id}/"),
            None => prefix.to_string(),
        };
        out.entry(dir).or_default().push(file);
    }
    out
}

fn leftover(kind: LeftoverKind, prefix: &str, objects: &[ObjectMeta]) -> Option<Leftover> {
    if objects.is_empty() {
        return None;
    }
    Some(Leftover {
        kind,
        prefix: prefix.to_string(),
        keys: objects.iter().map(|o| o.key.clone()).collect(),
        bytes: objects.iter().map(|o| o.size).sum(),
        modified: objects.iter().filter_map(|o| o.modified).max(),
    })
}
