//! The parallel copy of a local-mode base backup: the files cut into chunks, and `jobs` workers
//! (blocking threads) that each take the next chunk, read it, compress it into a zstd frame and
//! append it to a bundle of their own; a full bundle is stored while the worker fills the next
//! one. The last chunk, of `global/pg_control` (the walk's last entry), is read after all others.
//! Memory: per worker one chunk, the bundle it fills and the one being stored.
//!
//! A file that vanished since the walk is left out (the server dropped it; replay knows); one that
//! changed is copied as it is read (replay repairs it). The first failure stops every worker.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use super::list::{BUNDLE_TARGET, CHUNK_SIZE, Chunk, FileList, LIST_VERSION, Listed, ListedKind};
use super::walk::{Entry, EntryKind};
use crate::error::Error;
use crate::repo::Repository;
use crate::storage::{FileError, PutMode, StorageError};
use crate::stream::{Codec, Progress, StoredObject};
use crate::workers::{Workers, run_workers};

/// One piece of work: `len` bytes of entry `entry` from `offset`.
#[derive(Debug, Clone, Copy)]
struct Work {
    entry: usize,
    offset: u64,
    len: u64,
}

/// What the workers share.
struct Shared {
    root: PathBuf,
    entries: Vec<Entry>,
    work: Vec<Work>,
    next: AtomicUsize,
    /// Chunks read so far: the last one (of `global/pg_control`) is read only once every other
    /// one has been.
    read: AtomicUsize,
    stop: AtomicBool,
    bundles: AtomicU32,
    prefix: String,
    level: i32,
    repo: Repository,
    handle: Handle,
    progress: Arc<dyn Progress>,
    item: String,
    /// Every worker's results, gathered as they finish.
    done: Mutex<Done>,
}

/// The workers' results.
#[derive(Default)]
struct Done {
    chunks: BTreeMap<usize, Vec<Chunk>>,
    bundles: BTreeMap<u32, StoredObject>,
    vanished: Vec<usize>,
}

impl Done {
    /// Adds one worker's results.
    fn merge(&mut self, mut other: Done) {
        for (entry, mut chunks) in other.chunks {
            self.chunks.entry(entry).or_default().append(&mut chunks);
        }
        self.bundles.append(&mut other.bundles);
        self.vanished.append(&mut other.vanished);
    }
}

/// What the copy stored: the list (not yet stored) and the bundles, in list order.
pub(crate) struct Copied {
    pub(crate) list: FileList,
    pub(crate) bundles: Vec<StoredObject>,
}

/// How to copy: where, with how many workers and which zstd level.
pub(crate) struct CopyPlan {
    pub(crate) root: PathBuf,
    pub(crate) prefix: String,
    pub(crate) jobs: usize,
    pub(crate) level: i32,
    pub(crate) item: String,
}

/// Copies `entries` (from [`super::walk::walk`]) of the data directory into bundles under
/// `plan.prefix`; the last entry (`global/pg_control`) only after all the others.
pub(crate) async fn copy_files(
    repo: &Repository,
    entries: Vec<Entry>,
    plan: CopyPlan,
    progress: Arc<dyn Progress>,
) -> Result<Copied, Error> {
    let mut work: Vec<Work> = Vec::new();
    for (entry, e) in entries.iter().enumerate() {
        if let EntryKind::File { size } = e.kind {
            let mut offset = 0;
            while offset < size {
                let len = CHUNK_SIZE.min(size - offset);
                work.push(Work { entry, offset, len });
                offset += len;
            }
        }
    }
    let shared = Arc::new(Shared {
        root: plan.root,
        entries,
        work,
        next: AtomicUsize::new(0),
        read: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        bundles: AtomicU32::new(0),
        prefix: plan.prefix,
        level: plan.level,
        repo: repo.clone(),
        handle: Handle::current(),
        progress,
        item: plan.item,
        done: Mutex::new(Done::default()),
    });
    run_workers(&shared, plan.jobs.min(shared.work.len()).max(1)).await?;
    Ok(assemble(&shared))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Workers for Shared {
    fn stop_flag(&self) -> &AtomicBool {
        &self.stop
    }
    fn work(&self) -> Result<(), Error> {
        worker(self)
    }
}

/// A bundle being stored: the put's outcome and the buffer, given back for the next bundle.
type Storing = JoinHandle<(Result<(), StorageError>, Vec<u8>)>;

/// A bundle being filled.
struct Filling {
    bytes: Vec<u8>,
    raw: Sha256,
    raw_size: u64,
    /// The chunks in it, by entry, waiting for the bundle's number.
    chunks: Vec<(usize, Chunk)>,
}

impl Filling {
    /// An empty bundle in `spare` (a stored bundle's buffer), else in a new buffer.
    fn new(spare: Option<Vec<u8>>) -> Filling {
        Filling {
            bytes: spare.unwrap_or_else(|| Vec::with_capacity(BUNDLE_TARGET + CHUNK_SIZE as usize)),
            raw: Sha256::new(),
            raw_size: 0,
            chunks: Vec::new(),
        }
    }
}

/// One worker: chunks until there are none or the copy stops.
fn worker(shared: &Shared) -> Result<(), Error> {
    let mut compressor = zstd::bulk::Compressor::new(shared.level)
        .and_then(|mut c| c.include_checksum(true).map(|_| c))
        .map_err(|source| Error::Compress {
            key: shared.prefix.clone(),
            source,
        })?;
    let mut buf = vec![0u8; CHUNK_SIZE as usize];
    let mut open: Option<(usize, File)> = None;
    let mut filling = Filling::new(None);
    let mut frame = Vec::with_capacity(zstd::zstd_safe::compress_bound(CHUNK_SIZE as usize));
    let mut storing: Option<Storing> = None;
    let mut done = Done::default();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::SeqCst);
        let Some(&work) = shared.work.get(i) else {
            break;
        };
        if i + 1 == shared.work.len() {
            wait_for_the_others(shared, i);
        }
        let read = read_chunk(shared, work, &mut open, &mut buf);
        shared.read.fetch_add(1, Ordering::SeqCst);
        let Some(n) = read? else {
            done.vanished.push(work.entry);
            continue;
        };
        if n == 0 {
            continue;
        }
        // Into a buffer kept from chunk to chunk: fresh large allocations cost page faults.
        compressor
            .compress_to_buffer(&buf[..n], &mut frame)
            .map_err(|source| Error::Compress {
                key: shared.entries[work.entry].path.clone(),
                source,
            })?;
        let at = filling.bytes.len() as u64;
        filling.bytes.extend_from_slice(&frame);
        filling.raw.update(&buf[..n]);
        filling.raw_size += n as u64;
        filling.chunks.push((
            work.entry,
            Chunk(0, at, frame.len() as u64, work.offset, n as u64),
        ));
        shared.progress.advance(&shared.item, n as u64);
        if filling.bytes.len() >= BUNDLE_TARGET {
            filling = seal(shared, filling, &mut storing, &mut done)?;
        }
    }
    if !filling.chunks.is_empty() {
        seal(shared, filling, &mut storing, &mut done)?;
    }
    wait_stored(shared, &mut storing)?;
    lock(&shared.done).merge(done);
    Ok(())
}

/// Waits until the `others` chunks before the last one have been read (or the copy stops).
fn wait_for_the_others(shared: &Shared, others: usize) {
    while shared.read.load(Ordering::SeqCst) < others && !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

/// Reads `work` into `buf`: the bytes read (fewer at a file that shrank), or `None` when the file
/// is gone.
fn read_chunk(
    shared: &Shared,
    work: Work,
    open: &mut Option<(usize, File)>,
    buf: &mut [u8],
) -> Result<Option<usize>, Error> {
    let path = shared.root.join(&shared.entries[work.entry].path);
    if open.as_ref().is_none_or(|(entry, _)| *entry != work.entry) {
        match File::open(&path) {
            Ok(file) => *open = Some((work.entry, file)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FileError::new("cannot read", &path, e).into()),
        }
    }
    let file = &open.as_ref().expect("opened above").1;
    let want = work.len as usize;
    let mut n = 0;
    while n < want {
        match file.read_at(&mut buf[n..want], work.offset + n as u64) {
            Ok(0) => break,
            Ok(read) => n += read,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(FileError::new("cannot read", &path, e).into()),
        }
    }
    Ok(Some(n))
}

/// Numbers a full bundle and starts storing it, once the worker's previous one is stored; the
/// next bundle to fill, in the stored one's buffer.
fn seal(
    shared: &Shared,
    full: Filling,
    storing: &mut Option<Storing>,
    done: &mut Done,
) -> Result<Filling, Error> {
    let spare = wait_stored(shared, storing)?;
    let number = shared.bundles.fetch_add(1, Ordering::SeqCst);
    let key = format!("{}files/{number:06}.zst", shared.prefix);
    let object = StoredObject {
        key: key.clone(),
        size: full.raw_size,
        sha256: hex::encode(full.raw.finalize()),
        stored_size: full.bytes.len() as u64,
        stored_sha256: hex::encode(Sha256::digest(&full.bytes)),
        compression: Codec::Zstd,
    };
    for (entry, mut chunk) in full.chunks {
        chunk.0 = number;
        done.chunks.entry(entry).or_default().push(chunk);
    }
    done.bundles.insert(number, object);
    let repo = shared.repo.clone();
    let bytes = full.bytes;
    *storing = Some(shared.handle.spawn(async move {
        let stored = repo
            .storage()
            .put_bytes(&key, &bytes, PutMode::Create)
            .await;
        (stored.map(|_| ()), bytes)
    }));
    Ok(Filling::new(spare))
}

/// Waits for the worker's bundle being stored; its buffer, emptied, for the next one.
fn wait_stored(shared: &Shared, storing: &mut Option<Storing>) -> Result<Option<Vec<u8>>, Error> {
    match storing.take() {
        None => Ok(None),
        Some(handle) => match shared.handle.block_on(handle) {
            Ok((stored, mut bytes)) => {
                stored?;
                bytes.clear();
                Ok(Some(bytes))
            }
            Err(join) => std::panic::resume_unwind(join.into_panic()),
        },
    }
}

/// The list and the bundles from the workers' results.
fn assemble(shared: &Shared) -> Copied {
    let mut done = std::mem::take(&mut *lock(&shared.done));
    let vanished: std::collections::HashSet<usize> = done.vanished.iter().copied().collect();
    let bundles: Vec<StoredObject> = std::mem::take(&mut done.bundles).into_values().collect();
    let entries = shared
        .entries
        .iter()
        .enumerate()
        .filter(|(i, _)| !vanished.contains(i))
        .map(|(i, e)| Listed {
            path: e.path.clone(),
            mode: e.mode,
            kind: match &e.kind {
                EntryKind::Dir => ListedKind::Dir,
                EntryKind::Link { target } => ListedKind::Link {
                    target: target.clone(),
                },
                EntryKind::File { .. } => {
                    let mut chunks = done.chunks.remove(&i).unwrap_or_default();
                    chunks.sort_by_key(|c| c.offset());
                    let size = chunks
                        .iter()
                        .map(|c| c.offset() + c.size())
                        .max()
                        .unwrap_or(0);
                    ListedKind::File { size, chunks }
                }
            },
        })
        .collect();
    Copied {
        list: FileList {
            version: LIST_VERSION,
            bundles: bundles.iter().map(|b| b.key.clone()).collect(),
            entries,
        },
        bundles,
    }
}
