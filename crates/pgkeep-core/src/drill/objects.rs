//! The objects of a backup its drill's restore does not read: PostgreSQL's `backup_manifest` and
//! the configuration files kept from outside the data directory (physical). A restore that
//! passes proves nothing of them, so each is read back and its size and sha256 checked (they are
//! small); one missing or damaged fails the drill, named by its key.

use super::record::{DrillCheck, DrillCheckKind, DrillCheckResult};
use crate::repo::Repository;
use crate::repo::catalog::{Manifest, ManifestObject, ObjectRole};
use crate::stream;

/// How many damaged objects the check's problem names.
const NAMED: usize = 5;

/// Whether a drill's restore reads the objects of `role`: the base (tar, or file list and
/// bundles), the dumps and the globals.
fn read_by_restore(role: ObjectRole) -> bool {
    matches!(
        role,
        ObjectRole::Base
            | ObjectRole::FileList
            | ObjectRole::Files
            | ObjectRole::Database
            | ObjectRole::Globals
    )
}

/// The check of `backup`'s objects the restore does not read, each read back with its size and
/// sha256 checked; `None` when it has none.
pub(super) async fn check_unread(repo: &Repository, backup: &Manifest) -> Option<DrillCheck> {
    let unread: Vec<&ManifestObject> = backup
        .objects
        .iter()
        .filter(|o| !read_by_restore(o.role))
        .collect();
    if unread.is_empty() {
        return None;
    }
    let mut failures = Vec::new();
    for object in &unread {
        let key = &object.stored.key;
        if let Err(e) =
            stream::fetch_object(repo.storage(), &object.stored, &mut tokio::io::sink()).await
        {
            let e = e.to_string();
            failures.push(match e.contains(key.as_str()) {
                true => e,
                false => format!("{key}: {e}"),
            });
        }
    }
    let result = match failures.is_empty() {
        true => DrillCheckResult::Passed,
        false => {
            let mut problem = format!(
                "{} of {} object(s) the restore does not read are missing or damaged: {}",
                failures.len(),
                unread.len(),
                failures[..failures.len().min(NAMED)].join("; ")
            );
            if failures.len() > NAMED {
                problem.push_str(&format!("; and {} more", failures.len() - NAMED));
            }
            DrillCheckResult::Failed { problem }
        }
    };
    Some(DrillCheck {
        check: DrillCheckKind::Objects,
        database: None,
        checked: unread.len() as u64,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restore_reads_the_base_the_dumps_and_the_globals_only() {
        for role in [ObjectRole::Base, ObjectRole::Database, ObjectRole::Globals] {
            assert!(read_by_restore(role), "{role:?}");
        }
        for role in [ObjectRole::BackupManifest, ObjectRole::Config] {
            assert!(!read_by_restore(role), "{role:?}");
        }
    }
}
