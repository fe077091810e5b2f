//! Restoring a local-mode base backup, with no tar process in between: the file list read, its
//! directories, links and (empty) files created, then `jobs` workers that each take the next
//! bundle, fetch it, check its stored sha256, decode its frames (each with zstd's checksum) and
//! write every chunk at its place in its file, checking the bundle's decoded sha256 and size at its
//! end. The files and directories are made durable once at the end, with one `syncfs`.
//!
//! Every listed path is checked to stay inside the target directory before anything is created.
//! Tablespaces go to `<dir>.tablespaces/<oid>` beside it ([`tablespace_root`]), linked from
//! `pg_tblspc`.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::{FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use sha2::{Digest, Sha256};
use tokio::runtime::Handle;

use crate::error::{Error, PitrError};
use crate::physical::local::list::{Chunk, FileList, LIST_VERSION, ListedKind, is_clean_path};
use crate::repo::Repository;
use crate::repo::catalog::{Manifest, ObjectRole};
use crate::storage::FileError;
use crate::stream::{self, Progress, StoredObject};
use crate::workers::{Workers, run_workers};

/// Where one chunk goes: the file (by its index in the list) and the chunk.
type Place = (usize, Chunk);

/// What the workers share.
struct Shared {
    /// The backup's id, for messages.
    id: String,
    dir: PathBuf,
    paths: Vec<String>,
    bundles: Vec<StoredObject>,
    /// The chunks of each bundle, in frame order.
    places: Vec<Vec<Place>>,
    next: AtomicUsize,
    stop: AtomicBool,
    repo: Repository,
    handle: Handle,
    progress: Arc<dyn Progress>,
    item: String,
}

/// Whether `manifest` is a local-mode backup (it has a file list).
pub(crate) fn is_local(manifest: &Manifest) -> bool {
    manifest
        .objects
        .iter()
        .any(|o| o.role == ObjectRole::FileList)
}

/// A backup whose file list or bundle is damaged or foreign.
fn unusable(id: &str, key: &str, problem: String) -> Error {
    Error::UnusableBackup {
        id: id.to_string(),
        key: key.to_string(),
        problem,
    }
}

/// Reads the backup's file list and the bundles it names, each with its manifest entry; the
/// list's key.
async fn read_list(
    repo: &Repository,
    manifest: &Manifest,
) -> Result<(FileList, Vec<StoredObject>, String), Error> {
    let object = manifest
        .objects
        .iter()
        .find(|o| o.role == ObjectRole::FileList)
        .ok_or_else(|| PitrError::NoBaseObject {
            backup: manifest.id.clone(),
        })?;
    let mut json = Vec::new();
    stream::fetch_object(repo.storage(), &object.stored, &mut json).await?;
    let key = &object.stored.key;
    let bad_list = |key: &str, problem| unusable(&manifest.id, key, problem);
    let list: FileList = serde_json::from_slice(&json)
        .map_err(|e| bad_list(key, format!("the file list cannot be read: {e}")))?;
    if list.version != LIST_VERSION {
        return Err(bad_list(
            key,
            format!(
                "file list version {} is not {LIST_VERSION}: restore it with the pgkeep that wrote it",
                list.version
            ),
        ));
    }
    let by_key: HashMap<&str, &StoredObject> = manifest
        .objects
        .iter()
        .filter(|o| o.role == ObjectRole::Files)
        .map(|o| (o.stored.key.as_str(), &o.stored))
        .collect();
    let bundles = list
        .bundles
        .iter()
        .map(|b| {
            by_key
                .get(b.as_str())
                .map(|&o| o.clone())
                .ok_or_else(|| bad_list(key, format!("bundle {b} is not in the manifest")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok((list, bundles, key.clone()))
}

/// Where a restore into `dir` puts the backup's tablespaces: `<dir>.tablespaces/<oid>`, each linked
/// from `<dir>/pg_tblspc/<oid>` (PostgreSQL accepts only links there). Never the tablespace's old
/// location, which may belong to the running cluster the backup came from.
pub(crate) fn tablespace_root(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".tablespaces");
    dir.with_file_name(name)
}

/// Whether a listed directory is a tablespace: `pg_tblspc/<oid>`.
fn tablespace_oid(path: &str) -> Option<&str> {
    path.strip_prefix("pg_tblspc/")
        .filter(|oid| !oid.is_empty() && oid.bytes().all(|b| b.is_ascii_digit()))
}

/// Creates the directory of tablespace `oid` under [`tablespace_root`] and its link.
fn make_tablespace(
    dir: &Path,
    oid: &str,
    link: &Path,
    mode: std::fs::Permissions,
) -> Result<(), Error> {
    let root = tablespace_root(dir);
    if !root.exists() {
        std::fs::create_dir(&root).map_err(|e| FileError::new("cannot create", &root, e))?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| FileError::new("cannot set the mode of", &root, e))?;
    }
    let place = root.join(oid);
    std::fs::create_dir(&place).map_err(|e| FileError::new("cannot create", &place, e))?;
    std::fs::set_permissions(&place, mode)
        .map_err(|e| FileError::new("cannot set the mode of", &place, e))?;
    std::os::unix::fs::symlink(&place, link)
        .map_err(|e| FileError::new("cannot create", link, e))?;
    Ok(())
}

/// Creates the list's directories, links and empty files below `dir`; the chunks of each bundle.
fn lay_out(dir: &Path, list: &FileList, id: &str, key: &str) -> Result<Vec<Vec<Place>>, Error> {
    let bad_list = |key: &str, problem| unusable(id, key, problem);
    let mut places: Vec<Vec<Place>> = vec![Vec::new(); list.bundles.len()];
    for (i, entry) in list.entries.iter().enumerate() {
        if !is_clean_path(&entry.path) {
            return Err(bad_list(
                key,
                format!("the path {:?} leaves the data directory", entry.path),
            ));
        }
        let path = dir.join(&entry.path);
        let cannot = |e| FileError::new("cannot create", &path, e);
        let mode = std::fs::Permissions::from_mode(entry.mode & 0o7777);
        match &entry.kind {
            ListedKind::Dir => match tablespace_oid(&entry.path) {
                Some(oid) => make_tablespace(dir, oid, &path, mode)?,
                None => {
                    std::fs::create_dir(&path).map_err(cannot)?;
                    std::fs::set_permissions(&path, mode).map_err(cannot)?;
                }
            },
            ListedKind::Link { target } => {
                std::os::unix::fs::symlink(target, &path).map_err(cannot)?
            }
            ListedKind::File { chunks, .. } => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(entry.mode & 0o7777)
                    .open(&path)
                    .map_err(cannot)?;
                std::fs::set_permissions(&path, mode).map_err(cannot)?;
                for chunk in chunks {
                    let bundle = places.get_mut(chunk.bundle()).ok_or_else(|| {
                        bad_list(
                            key,
                            format!(
                                "{} names bundle {} of {}",
                                entry.path,
                                chunk.bundle(),
                                list.bundles.len()
                            ),
                        )
                    })?;
                    bundle.push((i, *chunk));
                }
            }
        }
    }
    for bundle in &mut places {
        bundle.sort_by_key(|(_, c)| c.frame().start);
    }
    Ok(places)
}

/// Restores a local-mode base backup into the empty directory `dir` with `jobs` workers.
pub(crate) async fn unpack(
    repo: &Repository,
    manifest: &Manifest,
    dir: &Path,
    jobs: usize,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<(), Error> {
    let (list, bundles, list_key) = read_list(repo, manifest).await?;
    let places = lay_out(dir, &list, &manifest.id, &list_key)?;
    let shared = Arc::new(Shared {
        id: manifest.id.clone(),
        dir: dir.to_path_buf(),
        paths: list.entries.into_iter().map(|e| e.path).collect(),
        bundles,
        places,
        next: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        repo: repo.clone(),
        handle: Handle::current(),
        progress: progress.clone(),
        item: item.to_string(),
    });
    let jobs = jobs.clamp(1, shared.bundles.len().max(1));
    run_workers(&shared, jobs).await?;
    let sync_dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let handle =
            File::open(&sync_dir).map_err(|e| FileError::new("cannot open", &sync_dir, e))?;
        rustix::fs::syncfs(&handle)
            .map_err(|e| FileError::new("cannot sync the file system of", &sync_dir, e.into()))
    })
    .await
    .expect("syncfs does not panic")?;
    Ok(())
}

/// A bundle to read: from a local repository's file when the worker gets to it, or from an object
/// store by a task started ahead, which gives back the buffer it filled.
enum Fetch {
    Local(PathBuf, Vec<u8>),
    Remote(tokio::task::JoinHandle<Result<Vec<u8>, Error>>),
}

/// Claims the next bundle and, from an object store, starts fetching it into `buffer` (emptied;
/// kept from bundle to bundle, since fresh large allocations cost page faults); `None` when there
/// are no more.
fn fetch_next(shared: &Shared, mut buffer: Vec<u8>) -> Option<(usize, Fetch)> {
    let i = shared.next.fetch_add(1, Ordering::SeqCst);
    let bundle = shared.bundles.get(i)?;
    let key = bundle.key.clone();
    buffer.clear();
    buffer.reserve(bundle.stored_size as usize);
    if let Some(path) = shared.repo.storage().local_file(&key) {
        return Some((i, Fetch::Local(path, buffer)));
    }
    let repo = shared.repo.clone();
    let fetch = async move {
        let mut reader = repo.storage().get(&key, None).await?;
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut buffer)
            .await
            .map_err(|source| crate::storage::StorageError::Read { key, source })?;
        Ok(buffer)
    };
    Some((i, Fetch::Remote(shared.handle.spawn(fetch))))
}

/// The stored bytes of a bundle.
fn fetched(shared: &Shared, key: &str, fetch: Fetch) -> Result<Vec<u8>, Error> {
    match fetch {
        Fetch::Local(path, mut buffer) => {
            let read = File::open(&path)
                .and_then(|mut file| std::io::Read::read_to_end(&mut file, &mut buffer));
            match read {
                Ok(_) => Ok(buffer),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(crate::storage::StorageError::NotFound {
                        key: key.to_string(),
                    }
                    .into())
                }
                Err(e) => Err(FileError::new("cannot read", &path, e).into()),
            }
        }
        Fetch::Remote(task) => match shared.handle.block_on(task) {
            Ok(stored) => stored,
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        },
    }
}

impl Workers for Shared {
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
    fn work(&self) -> Result<(), Error> {
        worker(self)
    }
}

/// One worker: bundles until there are none or the restore stops.
fn worker(shared: &Shared) -> Result<(), Error> {
    let mut decompressor = zstd::bulk::Decompressor::new().map_err(|source| Error::Compress {
        key: shared.item.clone(),
        source,
    })?;
    let mut raw = Vec::new();
    let mut open: Option<(usize, File)> = None;
    // Each worker fetches its next bundle while it writes the current one: two buffers in turn.
    let mut fetching = fetch_next(shared, Vec::new());
    let mut spare = Vec::new();
    loop {
        let Some((i, fetch)) = fetching.take() else {
            return Ok(());
        };
        if shared.stop.load(Ordering::SeqCst) {
            return Ok(());
        }
        fetching = fetch_next(shared, std::mem::take(&mut spare));
        let bundle = &shared.bundles[i];
        let stored = fetched(shared, &bundle.key, fetch)?;
        let stored_sha256 = hex::encode(Sha256::digest(&stored));
        if stored.len() as u64 != bundle.stored_size || stored_sha256 != bundle.stored_sha256 {
            return Err(Error::ChecksumMismatch {
                key: bundle.key.clone(),
                expected: bundle.stored_sha256.clone(),
                actual: stored_sha256,
                expected_size: bundle.stored_size,
                actual_size: stored.len() as u64,
            });
        }
        let mut decoded = Sha256::new();
        let mut size = 0u64;
        for &(file, chunk) in &shared.places[i] {
            let damaged = |problem: String| {
                let at = format!("the chunk of {} at {}", shared.paths[file], chunk.offset());
                unusable(&shared.id, &bundle.key, format!("{at} {problem}"))
            };
            let frame = stored
                .get(chunk.frame())
                .ok_or_else(|| damaged("lies outside its bundle".into()))?;
            raw.clear();
            raw.reserve(chunk.size() as usize);
            decompressor
                .decompress_to_buffer(frame, &mut raw)
                .map_err(|e| damaged(format!("cannot be decompressed ({e})")))?;
            decoded.update(&raw);
            size += raw.len() as u64;
            write_at(shared, &mut open, file, &raw, chunk.offset())?;
            shared.progress.advance(&shared.item, raw.len() as u64);
        }
        spare = stored;
        let decoded = hex::encode(decoded.finalize());
        if size != bundle.size || decoded != bundle.sha256 {
            return Err(Error::ChecksumMismatch {
                key: bundle.key.clone(),
                expected: bundle.sha256.clone(),
                actual: decoded,
                expected_size: bundle.size,
                actual_size: size,
            });
        }
    }
}

/// Writes `bytes` at `offset` of the list's file `file`, keeping the last file open.
fn write_at(
    shared: &Shared,
    open: &mut Option<(usize, File)>,
    file: usize,
    bytes: &[u8],
    offset: u64,
) -> Result<(), Error> {
    let path = shared.dir.join(&shared.paths[file]);
    if open.as_ref().is_none_or(|(f, _)| *f != file) {
        let handle = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| FileError::new("cannot open", &path, e))?;
        *open = Some((file, handle));
    }
    let handle = &open.as_ref().expect("opened above").1;
    handle
        .write_all_at(bytes, offset)
        .map_err(|e| FileError::new("cannot write", &path, e).into())
}
