//! Work locks: one backup of a cluster at a time, and expire only while no backup runs, across
//! processes — the scheduler's daemon, `pgkeep backup` from cron and a run by hand all take the
//! same lock. A lock is an `flock` on a file in `lock-dir` (default `/run/lock`), so the kernel
//! lets go of it when its holder dies, however it dies. WAL archiving never takes it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::exec::Interrupt;
use crate::settings::{Settings, format_duration};
use crate::{Error, RepoLocation};

/// How often a waiting run tries the lock again.
const RETRY: Duration = Duration::from_millis(250);

/// An `flock` held on a file that names its holder (`pid 4242: backup physical since …`);
/// dropping it lets go, and so does the kernel when the holder dies.
#[derive(Debug)]
pub struct LockFile {
    _file: File,
    path: PathBuf,
}

/// The held work lock of a cluster.
pub type WorkLock = LockFile;

/// What waiting for a lock came to.
#[derive(Debug)]
pub enum Acquired {
    /// The lock is held.
    Held(LockFile),
    /// Another holder kept it for the whole wait; what it wrote of itself.
    Busy {
        /// The holder's note, or `another run`.
        holder: String,
    },
    /// The interrupt fired while waiting; its reason.
    Interrupted(String),
}

impl LockFile {
    /// Opens (creating it and its directory) the lock file `path` and waits up to `wait` for an
    /// exclusive `flock`, or until `interrupt` fires; once held, writes `pid N: {what} since …`
    /// into it for whoever waits next. A file another user created is opened read-only, which is
    /// enough for `flock` (root's cron and the postgres daemon share one file) and only costs
    /// the note.
    pub async fn acquire(
        path: &Path,
        what: &str,
        wait: Duration,
        interrupt: &Interrupt,
    ) -> std::io::Result<Acquired> {
        let mut file = open(path)?;
        let started = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    tracing::info!("{what}: waiting for the lock {}", path.display());
                    tokio::select! {
                        () = tokio::time::sleep(RETRY) => {}
                        () = interrupt.fired() => {
                            let reason = interrupt.reason().unwrap_or("an interrupt");
                            return Ok(Acquired::Interrupted(reason.to_string()));
                        }
                    }
                }
                Err(TryLockError::WouldBlock) => {
                    return Ok(Acquired::Busy {
                        holder: holder(&mut file),
                    });
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        let note = format!(
            "pid {}: {what} since {}",
            std::process::id(),
            chrono::Utc::now().format("%Y-%m-%d %H:%M:%S UTC")
        );
        let _ = file
            .set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| file.write_all(note.as_bytes()));
        Ok(Acquired::Held(LockFile {
            _file: file,
            path: path.to_path_buf(),
        }))
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether someone holds the lock at `path` now (false when there is no such file).
    pub fn is_held(path: &Path) -> bool {
        File::open(path).is_ok_and(|f| matches!(f.try_lock(), Err(TryLockError::WouldBlock)))
    }
}

/// The lock file of `settings`' cluster in its repository: `<lock-dir>/pgkeep-<cluster>-<hash>.lock`,
/// the hash over the repository URL and the cluster name, so that two repositories' clusters
/// named `main` never wait for each other.
pub fn work_lock_path(settings: &Settings) -> PathBuf {
    let repo = settings.repo.as_ref().map(RepoLocation::to_string);
    let mut hash = Sha256::new();
    hash.update(repo.unwrap_or_default().as_bytes());
    hash.update([0]);
    hash.update(settings.cluster.as_bytes());
    let hash = hex::encode(&hash.finalize()[..6]);
    settings
        .lock_dir
        .join(format!("pgkeep-{}-{hash}.lock", settings.cluster))
}

/// Takes the work lock of `settings`' cluster for `what` (`backup logical`, `expire`), waiting up
/// to `[schedule] lock-wait` while another run holds it. Fails with [`Error::Busy`] naming the
/// holder when the wait ends, or [`Error::Interrupted`] when `interrupt` fires meanwhile.
pub async fn lock_work(
    settings: &Settings,
    what: &str,
    interrupt: &Interrupt,
) -> Result<WorkLock, Error> {
    let path = work_lock_path(settings);
    match LockFile::acquire(&path, what, settings.lock_wait, interrupt).await {
        Ok(Acquired::Held(lock)) => Ok(lock),
        Ok(Acquired::Busy { holder }) => Err(Error::Busy {
            what: what.to_string(),
            holder,
            waited: format_duration(settings.lock_wait),
            path,
        }),
        Ok(Acquired::Interrupted(reason)) => Err(Error::Interrupted { reason }),
        Err(source) => Err(Error::Lock { path, source }),
    }
}

/// Opens (creating) the lock file: read-write when this user may, else read-only.
fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o664)
        .open(path)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::PermissionDenied => File::open(path),
            _ => Err(e),
        })
}

fn holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.rewind().and_then(|()| file.read_to_string(&mut text));
    match text.trim() {
        "" => "another run".to_string(),
        note => note.chars().take(200).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::ConnInfo;

    fn settings(dir: &Path, wait: Duration) -> Settings {
        let repo = RepoLocation::parse("file:///srv/repo").unwrap();
        let mut settings = Settings::new(repo, ConnInfo::from_conninfo_and_env(None).unwrap());
        settings.lock_dir = dir.join("locks");
        settings.lock_wait = wait;
        settings
    }

    #[tokio::test]
    async fn a_held_lock_is_waited_for_then_refused_naming_its_holder() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Duration::from_millis(600));
        let held = lock_work(&s, "backup physical", &Interrupt::new())
            .await
            .unwrap();
        let started = Instant::now();
        let e = lock_work(&s, "backup logical", &Interrupt::new())
            .await
            .unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(600));
        let text = e.to_string();
        assert!(matches!(e, Error::Busy { .. }), "{text}");
        let me = format!("pid {}: backup physical since", std::process::id());
        assert!(
            text.contains("backup logical did not start") && text.contains(&me),
            "{text}"
        );
        // Another cluster's lock is another file.
        let other = s.clone().with_cluster("other").unwrap();
        drop(
            lock_work(&other, "backup logical", &Interrupt::new())
                .await
                .unwrap(),
        );
        // Let go, and the next run gets it at once.
        drop(held);
        lock_work(&s, "expire", &Interrupt::new()).await.unwrap();
    }

    #[tokio::test]
    async fn a_wait_for_a_lock_ends_at_an_interrupt() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), Duration::from_secs(60));
        let _held = lock_work(&s, "backup physical", &Interrupt::new())
            .await
            .unwrap();
        let interrupt = Interrupt::new();
        let later = interrupt.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            later.interrupt("SIGTERM");
        });
        let e = lock_work(&s, "expire", &interrupt).await.unwrap_err();
        assert!(
            matches!(e, Error::Interrupted { ref reason } if reason == "SIGTERM"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_unusable_lock_dir_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("locks"), b"a file, not a directory").unwrap();
        let s = settings(dir.path(), Duration::from_secs(1));
        let e = lock_work(&s, "expire", &Interrupt::new())
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cannot take the lock") && e.contains("lock-dir"),
            "{e}"
        );
    }
}
