//! `pgkeep verify`: backups read back from the repository — every object's size and both
//! checksums, `pg_restore --list` over each dump (a readable archive), `pg_verifybackup` over a
//! scratch extraction of each physical backup — and the WAL archive (`verify --wal`).

use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::Error;
use crate::exec;
use crate::repo::Repository;
use crate::repo::catalog::{self, Manifest, ManifestObject, ObjectFormat, ObjectRole};
use crate::repo::scan::{DamagedBackup, Leftover, read_catalog};
use crate::settings::Settings;
use crate::storage::FileError;
use crate::stream::{self, Progress, feed_child};
use crate::wal::{self, WalReport};

/// Which backups `verify` reads back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerifySelection {
    /// The newest backup.
    Newest,
    /// Every backup.
    All,
    /// This backup.
    Backup(String),
}

/// The result of verifying one object.
#[derive(Debug, Clone, Serialize)]
pub struct ObjectCheck {
    /// The object's key.
    pub key: String,
    /// Its database, if any.
    pub database: Option<String>,
    /// Whether size, checksums and (for archives) `pg_restore --list` all passed.
    pub ok: bool,
    /// What failed.
    pub error: Option<String>,
}

/// The result of verifying one backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupCheck {
    /// The backup id.
    pub id: String,
    /// Whether every object passed.
    pub ok: bool,
    /// Each object.
    pub objects: Vec<ObjectCheck>,
}

/// What `verify` found: every backup checked, each object's outcome, and (for `--all` and the
/// newest) the leftovers that belong to no backup.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// The backups, oldest first. A backup whose manifest cannot be used is one failed check of
    /// the manifest itself.
    pub backups: Vec<BackupCheck>,
    /// Stored data no backup lists: reported, not counted as damage (a backup running now has
    /// one too).
    pub leftovers: Vec<Leftover>,
    /// Problems with the repository itself: a damaged identity record, or a missing one while
    /// backups exist.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// How many objects failed.
    pub fn damaged_objects(&self) -> usize {
        self.backups
            .iter()
            .map(|b| b.objects.iter().filter(|o| !o.ok).count())
            .sum()
    }

    /// `Ok` when every object passed and the repository has no problem, else
    /// [`Error::DamagedBackups`] or [`Error::RepositoryProblems`].
    pub fn result(&self) -> Result<(), Error> {
        match (self.damaged_objects(), self.problems.len()) {
            (0, 0) => Ok(()),
            (0, problems) => Err(Error::RepositoryProblems { problems }),
            (objects, _) => Err(Error::DamagedBackups { objects }),
        }
    }
}

impl WalReport {
    /// `Ok` when the archive has no problem (forks are notes), else
    /// [`Error::WalArchiveProblems`].
    pub fn result(&self) -> Result<(), Error> {
        match self.problems.len() {
            0 => Ok(()),
            problems => Err(Error::WalArchiveProblems { problems }),
        }
    }
}

/// Reads back the selected backups; a damaged object is a failed [`ObjectCheck`] in the report
/// (see [`VerifyReport::result`]), not an error. An empty selection is
/// [`Error::NothingToVerify`].
pub async fn verify_backups(
    settings: &Settings,
    repo: &Repository,
    selection: &VerifySelection,
    progress: Arc<dyn Progress>,
) -> Result<VerifyReport, Error> {
    let mut catalog = read_catalog(repo).await?;
    let problems: Vec<String> = catalog.identity_problem.take().into_iter().collect();
    let (backups, damaged, leftovers) = match selection {
        VerifySelection::Backup(id) => {
            match catalog.backups.iter().position(|b| b.id == *id) {
                Some(i) => (vec![catalog.backups.swap_remove(i)], Vec::new(), Vec::new()),
                None => match catalog.damaged.iter().position(|d| d.id == *id) {
                    Some(i) => (Vec::new(), vec![catalog.damaged.swap_remove(i)], Vec::new()),
                    // Not in the listing: the usual "no such backup" (or the storage's error).
                    None => (
                        vec![catalog::find_backup(repo, id).await?],
                        Vec::new(),
                        Vec::new(),
                    ),
                },
            }
        }
        VerifySelection::All => (catalog.backups, catalog.damaged, catalog.leftovers),
        VerifySelection::Newest => {
            // The newest backup directory with a manifest, damaged or not.
            let newest_good = catalog.backups.last().map(|b| b.id.clone());
            let newest_damaged = catalog.damaged.last().map(|d| d.id.clone());
            if newest_damaged > newest_good {
                let damaged = catalog.damaged.pop().into_iter().collect();
                (Vec::new(), damaged, catalog.leftovers)
            } else {
                let good = catalog.backups.pop().into_iter().collect();
                (good, Vec::new(), catalog.leftovers)
            }
        }
    };
    if backups.is_empty() && damaged.is_empty() {
        return Err(Error::NothingToVerify {
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
        });
    }
    let mut out: Vec<BackupCheck> = damaged.into_iter().map(unusable_check).collect();
    for backup in &backups {
        out.push(verify_backup(settings, repo, backup, &progress).await?);
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(VerifyReport {
        backups: out,
        leftovers,
        problems,
    })
}

/// A backup whose manifest cannot be used: one failed check, of the manifest.
fn unusable_check(d: DamagedBackup) -> BackupCheck {
    BackupCheck {
        ok: false,
        objects: vec![ObjectCheck {
            error: Some(
                Error::UnusableBackup {
                    id: d.id.clone(),
                    key: d.key.clone(),
                    problem: d.problem,
                }
                .to_string(),
            ),
            key: d.key,
            database: None,
            ok: false,
        }],
        id: d.id,
    }
}

/// `verify --wal`: every archived file read back, gaps, timelines without history, forks.
pub async fn verify_wal(repo: &Repository) -> Result<WalReport, Error> {
    let catalog = read_catalog(repo).await?;
    let mut report = wal::verify_archive(repo, catalog::wal_segment_size(&catalog.backups)).await?;
    report.problems.extend(catalog.identity_problem);
    Ok(report)
}

async fn verify_backup(
    settings: &Settings,
    repo: &Repository,
    backup: &Manifest,
    progress: &Arc<dyn Progress>,
) -> Result<BackupCheck, Error> {
    let major = backup.server_version_num / 10_000;
    let bin_dir = settings.bin_dir.as_deref();
    // Found once per backup, only when it has archives to list.
    let pg_restore = match backup
        .objects
        .iter()
        .any(|o| o.format == ObjectFormat::Custom)
    {
        true => Some(exec::located(bin_dir, "pg_restore", major)?),
        false => None,
    };
    let mut objects = Vec::new();
    for object in &backup.objects {
        let item = format!("verify {}", object.stored.key);
        progress.start(&item);
        let result = match (object.role, &pg_restore) {
            (ObjectRole::Base, _) => {
                verify_base(settings, repo, major, object, progress, &item).await
            }
            (_, Some(program)) if object.format == ObjectFormat::Custom => {
                list_archive(repo, object, program, progress, &item).await
            }
            _ => stream::fetch_object(repo.storage(), &object.stored, &mut tokio::io::sink())
                .await
                .map(|_| ()),
        };
        progress.finish(&item);
        objects.push(ObjectCheck {
            key: object.stored.key.clone(),
            database: object.database.clone(),
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        });
    }
    Ok(BackupCheck {
        id: backup.id.clone(),
        ok: objects.iter().all(|o| o.ok),
        objects,
    })
}

/// `pg_restore --list` over a dump: proof that it is a readable archive.
async fn list_archive(
    repo: &Repository,
    object: &ManifestObject,
    program: &Path,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<(), Error> {
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg("--list")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let fed = feed_child(cmd, program, repo.storage(), &object.stored, progress, item).await?;
    if fed.status.success() {
        return Ok(());
    }
    Err(Error::CheckFailed {
        check: "pg_restore --list cannot read the archive",
        status: fed.status,
        output: fed.stderr,
    })
}

/// A physical backup's base object: extracted into a scratch directory (under TMPDIR) and
/// checked by `pg_verifybackup` against PostgreSQL's own `backup_manifest`.
async fn verify_base(
    settings: &Settings,
    repo: &Repository,
    major: u32,
    object: &ManifestObject,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<(), Error> {
    let program = exec::located(settings.bin_dir.as_deref(), "pg_verifybackup", major)?;
    // 0700 whatever the umask: the copy holds the whole cluster's data. An interrupt drops it,
    // which removes it.
    let scratch = tempfile::Builder::new()
        .prefix("pgkeep-verify-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(|e| FileError::new("creating a scratch directory in", &std::env::temp_dir(), e))?;
    let cmd = exec::tar_extract(scratch.path(), false);
    let tar = Path::new("tar");
    let fed = feed_child(cmd, tar, repo.storage(), &object.stored, progress, item).await?;
    if !fed.status.success() {
        return Err(Error::CheckFailed {
            check: "tar cannot extract it",
            status: fed.status,
            output: fed.stderr.trim().to_string(),
        });
    }
    let mut cmd = tokio::process::Command::new(&program);
    cmd.arg("--no-parse-wal").arg("--quiet").arg(scratch.path());
    let out = exec::output(&mut cmd, &program).await?;
    if !out.status.success() {
        return Err(Error::CheckFailed {
            check: "pg_verifybackup found problems",
            status: out.status,
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
