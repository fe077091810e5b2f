//! The catalog read as a whole: every backup whose manifest reads, every backup whose manifest does
//! not (each unusable on its own, never blocking the others), and what lies under `backups/`
//! without belonging to a backup — the leftovers of runs that died, failed or are running now.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use crate::error::Error;
use crate::repo::Repository;
use crate::repo::catalog::{DRILLS, MANIFEST, Manifest, is_note, read_backup};
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
    /// The keys of each backup's drill records (`backups/<id>/drills/*.json`), by backup id, from
    /// the same listing ([`last_drills`](crate::last_drills) reads them).
    #[serde(skip)]
    pub drill_records: BTreeMap<String, Vec<String>>,
    /// What is wrong with `cluster.json`: damaged or unreadable, or missing while backups exist
    /// (backups and WAL pushes are refused until it is back).
    pub identity_problem: Option<String>,
}

impl Catalog {
    /// Whether a backup has a damaged manifest or the identity record a problem (`list` and
    /// `verify` exit non-zero on both).
    pub fn has_damage(&self) -> bool {
        !self.damaged.is_empty() || self.identity_problem.is_some()
    }

    /// The ids of the damaged backups.
    pub fn damaged_ids(&self) -> Vec<String> {
        self.damaged.iter().map(|d| d.id.clone()).collect()
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
    /// The directory it lies in (`<cluster>/backups/<id>/`, or a WAL directory for a killed
    /// wal-push's staging file).
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
/// manifest that cannot be read, does not parse, describes another backup, or belongs to another
/// PostgreSQL cluster than `cluster.json` names makes that backup a [`DamagedBackup`]; only a
/// failure to list the repository is an error.
pub async fn read_catalog(repo: &Repository) -> Result<Catalog, Error> {
    let prefix = repo.key("backups/");
    // Whose backups these are. A damaged or unreadable record is a problem of its own and leaves
    // the manifests unjudged on this count.
    let (owner, mut identity_problem) = repo
        .identity()
        .await
        .map_or_else(|e| (None, Some(e.to_string())), |owner| (owner, None));
    let mut dirs: BTreeMap<String, Directory> = BTreeMap::new();
    let mut drill_records: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for meta in repo.storage().list(&prefix).await? {
        let Some((id, name)) = meta
            .key
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        if name.starts_with(DRILLS) && name.ends_with(".json") {
            drill_records
                .entry(id.to_string())
                .or_default()
                .push(meta.key.clone());
        }
        let dir = dirs.entry(id.to_string()).or_default();
        if name == MANIFEST {
            dir.manifest = Some(meta.key.clone());
        } else {
            dir.objects.push(meta);
        }
    }
    let owner_ref = owner.as_ref();
    let manifests: Vec<(String, Option<Result<Manifest, Error>>)> =
        futures::stream::iter(dirs.iter())
            .map(|(id, dir)| async move {
                let read = match dir.manifest {
                    Some(_) => Some(read_backup(repo, id, owner_ref).await),
                    None => None,
                };
                Ok::<_, Error>((id.clone(), read))
            })
            .buffered(8)
            .try_collect()
            .await?;
    let mut catalog = Catalog {
        drill_records,
        ..Catalog::default()
    };
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
                    .filter(|o| !o.key.strip_prefix(&dir_prefix).is_some_and(is_note))
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
            // This one object cannot be read (permissions, a damaged file): that backup only.
            Some(Err(e)) => catalog.damaged.push(DamagedBackup {
                key: dir.manifest.clone().unwrap_or_default(),
                problem: format!(
                    "its manifest cannot be read: {}",
                    e.to_string().lines().next().unwrap_or_default()
                ),
                id,
            }),
        }
    }
    // Unfinished writes where pgkeep writes much: the backups, and the WAL of a killed wal-push.
    let mut staging = repo.storage().list_unfinished(&prefix).await?;
    staging.extend(repo.storage().list_unfinished(&repo.key("wal/")).await?);
    for (dir_prefix, files) in group_by_directory(staging) {
        catalog
            .leftovers
            .extend(leftover(LeftoverKind::Staging, &dir_prefix, &files));
    }
    catalog.backups.sort_by(|a, b| a.id.cmp(&b.id));
    let held = catalog.backups.len() + catalog.damaged.len();
    if owner.is_none() && identity_problem.is_none() && held > 0 {
        identity_problem = Some(
            repo.identity_missing(format!("{held} backup(s)"))
                .to_string(),
        );
    }
    catalog.identity_problem = identity_problem;
    Ok(catalog)
}

/// Unfinished writes grouped by the directory they lie in.
fn group_by_directory(files: Vec<ObjectMeta>) -> BTreeMap<String, Vec<ObjectMeta>> {
    let mut out: BTreeMap<String, Vec<ObjectMeta>> = BTreeMap::new();
    for file in files {
        let dir = match file.key.rsplit_once('/') {
            Some((dir, _)) => format!("{dir}/"),
            None => String::new(),
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
