//! What a local-mode base backup copies of a data directory: PostgreSQL's rules for a base backup
//! taken between `pg_backup_start` and `pg_backup_stop`, as pg_basebackup applies them. Left out:
//! the contents of pg_wal (recovery reads the archive; `pg_wal/archive_status` stays, empty) and of
//! the directories the server empties or rebuilds at start-up, `postmaster.pid` and friends, the
//! relation cache init files, temporary files and relations, and the forks of unlogged relations
//! except their init forks. Tablespaces (links in pg_tblspc) are copied as the directories they
//! lead to. `global/pg_control` is copied last, after everything else.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::storage::FileError;

/// One entry of the data directory, by its path relative to it (`base/5/16384`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The path below the data directory, `/`-separated.
    pub(crate) path: String,
    /// Permission bits (`0o600`, `0o700`, or group-readable when initdb gave `-g`).
    pub(crate) mode: u32,
    /// What it is.
    pub(crate) kind: EntryKind,
}

/// A directory, a regular file with the size it had when the walk saw it, or a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryKind {
    Dir,
    File { size: u64 },
    Link { target: String },
}

/// The directories whose contents the server removes or rebuilds when it starts: kept, empty.
const EMPTIED_DIRS: [&str; 7] = [
    "pg_stat_tmp",
    "pg_replslot",
    "pg_dynshmem",
    "pg_notify",
    "pg_serial",
    "pg_snapshots",
    "pg_subtrans",
];

/// Top-level files never copied: written again by the server or by the backup itself.
const SKIPPED_FILES: [&str; 7] = [
    "postmaster.pid",
    "postmaster.opts",
    "backup_label",
    "tablespace_map",
    "backup_manifest",
    "postgresql.auto.conf.tmp",
    "current_logfiles.tmp",
];

/// The control file, copied after every other file.
pub(crate) const CONTROL_FILE: &str = "global/pg_control";

/// Whether a file of a database directory is a temporary relation (`t3_16384`, `t3_16384.1`).
fn is_temp_relation(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('t') else {
        return false;
    };
    let Some((backend, rel)) = rest.split_once('_') else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let rel = rel.split(['.', '_']).next().unwrap_or_default();
    digits(backend) && digits(rel)
}

/// The relation file node a file of a database directory belongs to (`16384` for `16384`,
/// `16384.2`, `16384_fsm`, `16384_init`), with whether it is the init fork.
fn relation_of(name: &str) -> Option<(&str, bool)> {
    let end = name
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(name.len());
    if end == 0 {
        return None;
    }
    let (node, rest) = name.split_at(end);
    let fork = rest.split('.').next().unwrap_or_default();
    match fork {
        "" | "_fsm" | "_vm" => Some((node, false)),
        "_init" => Some((node, true)),
        _ => None,
    }
}

/// The names of a database directory to leave out: temporary relations, and every fork but the
/// init fork of an unlogged relation (one that has an init fork).
fn skipped_in_database(names: &[String]) -> HashSet<String> {
    let unlogged: HashSet<&str> = names
        .iter()
        .filter_map(|n| relation_of(n))
        .filter(|(_, init)| *init)
        .map(|(node, _)| node)
        .collect();
    names
        .iter()
        .filter(|n| {
            is_temp_relation(n)
                || relation_of(n).is_some_and(|(node, init)| !init && unlogged.contains(node))
        })
        .cloned()
        .collect()
}

/// Whether `dir` (relative) holds relation files: `global`, `base/<oid>`, or a tablespace's
/// `pg_tblspc/<oid>/PG_<version>_<catversion>/<oid>`.
fn is_database_dir(dir: &str) -> bool {
    let oid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let parts: Vec<&str> = dir.split('/').collect();
    match parts.as_slice() {
        ["global"] => true,
        ["base", db] => oid(db),
        ["pg_tblspc", space, version, db] => oid(space) && version.starts_with("PG_") && oid(db),
        _ => false,
    }
}

/// Whether an entry named `name` in directory `dir` (relative, "" for the top) is left out.
fn skipped(dir: &str, name: &str) -> bool {
    name.starts_with("pgsql_tmp")
        || name.starts_with("pg_internal.init")
        || (dir.is_empty() && SKIPPED_FILES.contains(&name))
        || (dir == "global" && name == "pg_control")
}

/// Whether the contents of `dir` (relative) are left out, the directory itself kept.
fn emptied(dir: &str) -> bool {
    EMPTIED_DIRS.contains(&dir) || dir == "pg_wal"
}

/// Every entry of the data directory at `root` a base backup copies, parents before children,
/// `global/pg_control` last. An entry that vanishes while the walk runs is no error (the server
/// removed it; replay knows).
pub(crate) fn walk(root: &Path) -> Result<Vec<Entry>, FileError> {
    let mut out = Vec::new();
    walk_dir(root, "", &mut out)?;
    let control = root.join(CONTROL_FILE);
    let meta =
        std::fs::metadata(&control).map_err(|e| FileError::new("cannot read", &control, e))?;
    out.push(Entry {
        path: CONTROL_FILE.to_string(),
        mode: meta.permissions().mode() & 0o7777,
        kind: EntryKind::File { size: meta.len() },
    });
    Ok(out)
}

fn walk_dir(root: &Path, dir: &str, out: &mut Vec<Entry>) -> Result<(), FileError> {
    let full = root.join(dir);
    let listing = match std::fs::read_dir(&full) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !dir.is_empty() => return Ok(()),
        Err(e) => return Err(FileError::new("cannot read", &full, e)),
    };
    let mut names = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| FileError::new("cannot read", &full, e))?;
        match entry.file_name().into_string() {
            Ok(name) => names.push(name),
            Err(name) => {
                return Err(FileError::new(
                    "cannot back up a file name that is not UTF-8 in",
                    &full,
                    std::io::Error::other(format!("{name:?}")),
                ));
            }
        }
    }
    names.sort();
    let database = is_database_dir(dir);
    let skip_relations = match database {
        true => skipped_in_database(&names),
        false => HashSet::new(),
    };
    for name in names {
        if skipped(dir, &name) || skip_relations.contains(&name) {
            continue;
        }
        let path = match dir.is_empty() {
            true => name.clone(),
            false => format!("{dir}/{name}"),
        };
        visit(root, dir, path, out)?;
    }
    Ok(())
}

/// Adds the entry at `path` (in directory `dir`) and, for a directory, what it holds.
fn visit(root: &Path, dir: &str, path: String, out: &mut Vec<Entry>) -> Result<(), FileError> {
    let full = root.join(&path);
    let meta = match std::fs::symlink_metadata(&full) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(FileError::new("cannot read", &full, e)),
    };
    let mode = meta.mode() & 0o7777;
    let file_type = meta.file_type();
    // pg_wal may be a link to another disk, and each tablespace is a link in pg_tblspc: both
    // are copied as the directories they lead to (a restore makes a tablespace a directory
    // inside the data directory, never a write to its old location).
    let followed =
        (path == "pg_wal" || dir == "pg_tblspc") && file_type.is_symlink() && full.is_dir();
    if file_type.is_dir() || followed {
        let mode = match followed {
            true => std::fs::metadata(&full).map_or(0o700, |m| m.mode() & 0o7777),
            false => mode,
        };
        out.push(Entry {
            path: path.clone(),
            mode,
            kind: EntryKind::Dir,
        });
        if path == "pg_wal" {
            out.push(Entry {
                path: "pg_wal/archive_status".into(),
                mode,
                kind: EntryKind::Dir,
            });
        }
        if !emptied(&path) {
            walk_dir(root, &path, out)?;
        }
    } else if file_type.is_file() {
        out.push(Entry {
            path,
            mode,
            kind: EntryKind::File { size: meta.len() },
        });
    } else if file_type.is_symlink() {
        let target =
            std::fs::read_link(&full).map_err(|e| FileError::new("cannot read", &full, e))?;
        out.push(Entry {
            path,
            mode: 0o777,
            kind: EntryKind::Link {
                target: target.to_string_lossy().into_owned(),
            },
        });
    }
    // Sockets, pipes and devices have no place in a data directory: left out.
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_files_are_sorted_into_unlogged_temporary_and_kept() {
        let names: Vec<String> = [
            "16384",
            "16384.1",
            "16384_fsm",
            "16384_vm",
            "16390",
            "16390_init",
            "16390_fsm",
            "16390.1",
            "t3_16400",
            "t3_16400.2",
            "t3_16400_fsm",
            "PG_VERSION",
            "pg_filenode.map",
            "pg_internal.init",
        ]
        .map(String::from)
        .to_vec();
        let mut left_out: Vec<_> = skipped_in_database(&names).into_iter().collect();
        left_out.sort();
        assert_eq!(
            left_out,
            [
                "16390",
                "16390.1",
                "16390_fsm",
                "t3_16400",
                "t3_16400.2",
                "t3_16400_fsm"
            ]
        );
        assert!(skipped("base/5", "pg_internal.init") && skipped("global", "pg_internal.init.123"));
        assert!(skipped("", "postmaster.pid") && !skipped("base", "postmaster.pid"));
        assert!(skipped("base/pgsql_tmp", "pgsql_tmp123.0") && skipped("base", "pgsql_tmp"));
        assert!(is_database_dir("base/1") && is_database_dir("global") && !is_database_dir("base"));
        assert!(is_database_dir("pg_tblspc/16384/PG_15_202209061/5"));
        assert!(!is_database_dir("pg_tblspc/16384/PG_15_202209061"));
        assert!(!is_temp_relation("t3") && !is_temp_relation("tx_1") && is_temp_relation("t12_5"));
    }

    #[test]
    fn the_walk_keeps_the_layout_and_leaves_out_what_the_server_rebuilds() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for d in [
            "base/5",
            "global",
            "pg_wal/archive_status",
            "pg_stat_tmp",
            "pg_tblspc",
            "pg_xact",
        ] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        for f in [
            "PG_VERSION",
            "postmaster.pid",
            "postgresql.auto.conf",
            "base/5/16384",
            "base/5/16390",
            "base/5/16390_init",
            "global/pg_control",
            "global/1262",
            "pg_wal/000000010000000000000001",
            "pg_wal/archive_status/000000010000000000000001.ready",
            "pg_stat_tmp/x.stat",
            "pg_xact/0000",
        ] {
            std::fs::write(root.join(f), f).unwrap();
        }
        let paths: Vec<String> = walk(root).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(
            paths,
            [
                "PG_VERSION",
                "base",
                "base/5",
                "base/5/16384",
                "base/5/16390_init",
                "global",
                "global/1262",
                "pg_stat_tmp",
                "pg_tblspc",
                "pg_wal",
                "pg_wal/archive_status",
                "pg_xact",
                "pg_xact/0000",
                "postgresql.auto.conf",
                "global/pg_control",
            ]
        );
    }
}
