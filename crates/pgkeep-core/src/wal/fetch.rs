//! `wal-fetch` (restore_command): writes an archived file to PostgreSQL's destination atomically
//! after checking its size and sha256. "Not found" ([`Fetched::NotFound`]) is said only when the
//! archive really has no such file; every other failure is an error, which the CLI turns into an
//! exit code above 125 so that PostgreSQL stops instead of ending recovery early.

use std::path::Path;

use super::codec::decode;
use super::wal_key;
use crate::error::{Error, WalError};
use crate::repo::Repository;

/// What `wal-fetch` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetched {
    /// Written to the destination; its size.
    Restored(u64),
    /// The archive has no such file.
    NotFound,
}

/// `wal-fetch`: writes archived file `name` to `dest` atomically (a temporary file in the same
/// directory, then a rename), after checking its size and sha256. No fsync: PostgreSQL reads the
/// file at once, and after a crash it asks for it again.
pub async fn wal_fetch(repo: &Repository, name: &str, dest: &Path) -> Result<Fetched, Error> {
    let key = wal_key(repo, name)?;
    let stored = match repo.storage().get_bytes(&key).await {
        Ok(bytes) => bytes,
        Err(e) if e.is_not_found() => {
            // "Not found" ends recovery: say it only when the repository does hold this cluster.
            // A backup records cluster.json; before any backup, archived WAL is the evidence.
            if repo.identity().await?.is_none()
                && repo.storage().list(&repo.key("wal/")).await?.is_empty()
            {
                return Err(Error::Wal(WalError::NothingArchived {
                    name: name.to_string(),
                    repo: repo.storage().url(),
                    cluster: repo.cluster().to_string(),
                }));
            }
            return Ok(Fetched::NotFound);
        }
        Err(e) => return Err(e.into()),
    };
    let raw = tokio::task::spawn_blocking({
        let key = key.clone();
        move || decode(&key, &stored)
    })
    .await
    .expect("decoding does not panic")?;
    let output = |source: std::io::Error| Error::Output {
        key: key.clone(),
        source: std::io::Error::new(source.kind(), format!("{}: {source}", dest.display())),
    };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string());
    let tmp = dir.join(format!(
        ".pgkeep-fetch-{file_name}-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    let write = async {
        // 0600 whatever the umask, as PostgreSQL keeps its own WAL files.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        tokio::io::AsyncWriteExt::write_all(&mut file, &raw).await?;
        tokio::io::AsyncWriteExt::flush(&mut file).await?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await
    };
    if let Err(e) = write.await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(output(e));
    }
    Ok(Fetched::Restored(raw.len() as u64))
}

/// Reads and checks one archived file (for history files and `verify --wal`).
pub(crate) async fn read(repo: &Repository, name: &str) -> Result<Vec<u8>, Error> {
    let key = wal_key(repo, name)?;
    let stored = repo.storage().get_bytes(&key).await?;
    tokio::task::spawn_blocking(move || decode(&key, &stored))
        .await
        .expect("decoding does not panic")
}
