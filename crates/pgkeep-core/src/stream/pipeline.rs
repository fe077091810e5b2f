//! The streaming pipeline: `reader → zstd (multi-threaded) → sha256 → Storage::put` on the way in,
//! `Storage::get → sha256 check → zstd decompress → writer` on the way out.
//!
//! Nothing is staged on disk and memory is bounded whatever the size of the stream: compression runs
//! on a blocking thread that hands chunks of at most [`CHUNK`] bytes to the storage put through a
//! channel of [`CHANNEL_DEPTH`] chunks, and the put itself is bounded (see [`crate::storage`]).
//!
//! Two hashes are kept: of the original stream (`sha256`, what a restore must reproduce) and of the
//! stored bytes (`stored_sha256`, what `verify` re-reads). They are computed on different threads (the
//! compressor's and the consumer's) so that hashing does not halve compression throughput.
//!
//! The channel carries an explicit end marker: if the compressing side stops without sending it (an
//! error, a panic), the put sees an error instead of a clean end of stream, so a truncated object is
//! never published.

use std::io::{Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::SyncIoBridge;

use crate::error::Error;
use crate::settings::Compression;
use crate::storage::{PutMode, Storage, StorageError};

/// Size of the chunks handed between the compression thread and the storage side.
const CHUNK: usize = 1024 * 1024;
/// How many chunks may wait in the channel.
const CHANNEL_DEPTH: usize = 8;

/// How an object's stored bytes are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Codec {
    /// One or more zstd frames with zstd's content checksum.
    Zstd,
}

/// One stored object as the pipeline wrote it; manifests list these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// Key in the repository.
    pub key: String,
    /// Size of the original (uncompressed) stream.
    pub size: u64,
    /// sha256 of the original stream, hex.
    pub sha256: String,
    /// Size of the stored (compressed) bytes.
    pub stored_size: u64,
    /// sha256 of the stored bytes, hex.
    pub stored_sha256: String,
    /// Compression of the stored bytes.
    pub compression: Codec,
}

enum Msg {
    Data(Bytes),
    End,
}

/// The receiving side of the channel is gone (the storage put stopped reading).
#[derive(Debug, thiserror::Error)]
#[error("the storage side stopped reading")]
struct ConsumerStopped;

impl ConsumerStopped {
    fn error() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::BrokenPipe, ConsumerStopped)
    }
}

/// The sending half, used on a blocking thread: buffers writes into chunks.
struct ChunkSender {
    tx: mpsc::Sender<Msg>,
    buf: Vec<u8>,
}

impl ChunkSender {
    fn new(tx: mpsc::Sender<Msg>) -> ChunkSender {
        ChunkSender {
            tx,
            buf: Vec::with_capacity(CHUNK),
        }
    }

    fn send_buf(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Msg::Data(chunk))
            .map_err(|_| ConsumerStopped::error())
    }

    /// Flushes the last chunk and sends the end marker.
    fn finish(mut self) -> std::io::Result<()> {
        self.send_buf()?;
        self.tx
            .blocking_send(Msg::End)
            .map_err(|_| ConsumerStopped::error())
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The receiving half as an `AsyncRead`, hashing what it delivers. Ends cleanly only after the end
/// marker; a closed channel without it is an error.
struct ChannelReader {
    rx: mpsc::Receiver<Msg>,
    current: Bytes,
    ended: bool,
    hasher: Sha256,
    size: u64,
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        while this.current.is_empty() && !this.ended {
            match this.rx.poll_recv(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Msg::Data(chunk))) => this.current = chunk,
                Poll::Ready(Some(Msg::End)) => this.ended = true,
                Poll::Ready(None) => {
                    return Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the compression stage stopped before the end of the stream",
                    )));
                }
            }
        }
        let n = this.current.len().min(out.remaining());
        let chunk = this.current.split_to(n);
        this.hasher.update(&chunk);
        this.size += n as u64;
        out.put_slice(&chunk);
        Poll::Ready(Ok(()))
    }
}

/// A reader that hashes and counts what passes through it, and keeps the first error of its inner
/// reader so that a failing source is told apart from bad data.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    error: Option<std::io::Error>,
}

impl<R> HashingReader<R> {
    fn new(inner: R) -> HashingReader<R> {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            size: 0,
            error: None,
        }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.error.is_some() {
            return Err(std::io::Error::other("the source already failed"));
        }
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.size += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let kind = e.kind();
                let message = e.to_string();
                self.error = Some(e);
                Err(std::io::Error::new(kind, message))
            }
        }
    }
}

/// Why the compression thread stopped short.
enum Stopped {
    /// The storage side stopped reading (its put failed or was dropped): the put's error is the
    /// cause, not this thread.
    ConsumerGone,
    /// The source or the compressor failed.
    Failed(Box<Error>),
}

fn compress_blocking(
    input: impl Read,
    tx: mpsc::Sender<Msg>,
    compression: Compression,
    key: &str,
) -> Result<(u64, String), Stopped> {
    let compress_err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::BrokenPipe if tx_closed(&source) => Stopped::ConsumerGone,
        _ => Stopped::Failed(Box::new(Error::Compress {
            key: key.to_string(),
            source,
        })),
    };
    let mut input = HashingReader::new(input);
    let mut encoder = zstd::stream::write::Encoder::new(ChunkSender::new(tx), compression.level)
        .map_err(compress_err)?;
    encoder
        .multithread(compression.workers())
        .map_err(compress_err)?;
    encoder.include_checksum(true).map_err(compress_err)?;
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(Stopped::Failed(Box::new(Error::Input {
                    key: key.to_string(),
                    source,
                })));
            }
        };
        encoder.write_all(&buf[..n]).map_err(compress_err)?;
    }
    let sender = encoder.finish().map_err(compress_err)?;
    sender.finish().map_err(compress_err)?;
    Ok((input.size, hex::encode(input.hasher.finalize())))
}

/// Whether an error is [`ChunkSender`]'s "the receiving side is gone".
fn tx_closed(e: &std::io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.is::<ConsumerStopped>())
}

/// Compresses `reader` into `key`. The returned [`StoredObject`] records both sizes and hashes.
/// Nothing is visible under `key` unless this returns `Ok`.
pub async fn store_object<R>(
    storage: &dyn Storage,
    key: &str,
    reader: R,
    mode: PutMode,
    compression: Compression,
) -> Result<StoredObject, Error>
where
    R: AsyncRead + Send + Unpin + 'static,
{
    store_blocking(storage, key, SyncIoBridge::new(reader), mode, compression).await
}

/// [`store_object`] from a blocking reader, read on the compression thread itself: for a child process's
/// stdout pipe this saves a hand-over between threads for every pipe-full of data.
pub(crate) async fn store_blocking<R>(
    storage: &dyn Storage,
    key: &str,
    reader: R,
    mode: PutMode,
    compression: Compression,
) -> Result<StoredObject, Error>
where
    R: Read + Send + 'static,
{
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    let key_owned = key.to_string();
    let compressor =
        tokio::task::spawn_blocking(move || compress_blocking(reader, tx, compression, &key_owned));
    let mut stored = ChannelReader {
        rx,
        current: Bytes::new(),
        ended: false,
        hasher: Sha256::new(),
        size: 0,
    };
    let put = storage.put(key, &mut stored, mode).await;
    let ChannelReader {
        rx, hasher, size, ..
    } = stored;
    drop(rx); // unblocks the compressor if the put stopped early
    let compressed = compressor.await.map_err(|e| Error::Compress {
        key: key.to_string(),
        source: std::io::Error::other(e),
    })?;
    // When both failed, the compressor's error is the cause (the put only saw the stream break),
    // unless the compressor stopped only because the put had stopped reading: then the put's own
    // error (no space left, permission denied, ...) is.
    let (raw_size, raw_sha) = match compressed {
        Ok(done) => done,
        Err(Stopped::Failed(e)) => return Err(*e),
        Err(Stopped::ConsumerGone) => {
            put?;
            return Err(Error::Internal {
                problem: format!("{key}: the storage put ended before the end of the stream"),
            });
        }
    };
    let meta = put?;
    let stored_sha256 = hex::encode(hasher.finalize());
    if meta.size != size {
        return Err(Error::SizeMismatch {
            key: key.to_string(),
            expected: size,
            actual: meta.size,
        });
    }
    Ok(StoredObject {
        key: key.to_string(),
        size: raw_size,
        sha256: raw_sha,
        stored_size: size,
        stored_sha256,
        compression: Codec::Zstd,
    })
}

fn decompress_blocking(
    stored: impl Read,
    tx: mpsc::Sender<Msg>,
    object: &StoredObject,
) -> Result<(), Error> {
    let mut hashing = HashingReader::new(stored);
    let decoded = (|| -> std::io::Result<ChunkSender> {
        let mut decoder = zstd::stream::read::Decoder::new(&mut hashing)?;
        let mut out = ChunkSender::new(tx);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = decoder.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n])?;
        }
        // Read whatever follows the last frame, so the hash covers every stored byte.
        std::io::copy(&mut decoder.finish(), &mut std::io::sink())?;
        Ok(out)
    })();
    // A corrupt object usually breaks decompression before its end: hash the rest anyway, so the
    // error names the cause (the stored bytes changed) rather than the symptom.
    if decoded.is_err() {
        let _ = std::io::copy(&mut hashing, &mut std::io::sink());
    }
    // Reading the repository failed: an outage, not proof of corruption.
    if let Some(source) = hashing.error.take() {
        return Err(Error::Storage(StorageError::Read {
            key: object.key.clone(),
            source,
        }));
    }
    let actual = hex::encode(hashing.hasher.clone().finalize());
    if hashing.size != object.stored_size || actual != object.stored_sha256 {
        return Err(Error::ChecksumMismatch {
            key: object.key.clone(),
            expected: object.stored_sha256.clone(),
            actual,
            expected_size: object.stored_size,
            actual_size: hashing.size,
        });
    }
    match decoded {
        Ok(out) => out.finish().map_err(|source| Error::Output {
            key: object.key.clone(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Error::Output {
            key: object.key.clone(),
            source: e,
        }),
        Err(source) => Err(Error::Corrupt {
            key: object.key.clone(),
            source,
        }),
    }
}

/// Reads `object` back, checks the stored bytes' size and sha256, decompresses it into `writer`
/// and checks the original stream's size and sha256. Returns the number of bytes written.
///
/// Data reaches `writer` as it is decompressed, before the end of the object is checked: treat the
/// output as valid only when this returns `Ok`.
pub async fn fetch_object<W>(
    storage: &dyn Storage,
    object: &StoredObject,
    writer: &mut W,
) -> Result<u64, Error>
where
    W: AsyncWrite + Unpin + Send + ?Sized,
{
    let reader = storage.get(&object.key, None).await?;
    let (tx, mut rx) = mpsc::channel(CHANNEL_DEPTH);
    let bridge = SyncIoBridge::new(reader);
    let owned = object.clone();
    let decompressor = tokio::task::spawn_blocking(move || decompress_blocking(bridge, tx, &owned));
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut ended = false;
    let mut write_error = None;
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Data(chunk) => {
                hasher.update(&chunk);
                size += chunk.len() as u64;
                if let Err(e) = writer.write_all(&chunk).await {
                    write_error = Some(e);
                    break;
                }
            }
            Msg::End => {
                ended = true;
                break;
            }
        }
    }
    drop(rx);
    let result = decompressor.await.map_err(|e| Error::Corrupt {
        key: object.key.clone(),
        source: std::io::Error::other(e),
    })?;
    if let Some(source) = write_error {
        return Err(Error::Output {
            key: object.key.clone(),
            source,
        });
    }
    result?;
    if !ended {
        return Err(Error::Corrupt {
            key: object.key.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "decompression stopped early",
            ),
        });
    }
    writer.flush().await.map_err(|source| Error::Output {
        key: object.key.clone(),
        source,
    })?;
    let actual = hex::encode(hasher.finalize());
    if size != object.size || actual != object.sha256 {
        return Err(Error::ChecksumMismatch {
            key: object.key.clone(),
            expected: object.sha256.clone(),
            actual,
            expected_size: object.size,
            actual_size: size,
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use async_trait::async_trait;
    use tokio::io::AsyncReadExt;

    use super::*;
    use crate::storage::{ByteReader, ObjectMeta};

    /// A storage whose disk fills up after its first megabyte.
    #[derive(Debug)]
    struct FillsUp;

    #[async_trait]
    impl Storage for FillsUp {
        fn url(&self) -> String {
            "file:///full".into()
        }

        async fn put(
            &self,
            _key: &str,
            body: &mut (dyn AsyncRead + Send + Unpin),
            _mode: PutMode,
        ) -> Result<ObjectMeta, StorageError> {
            let mut buf = vec![0u8; CHUNK];
            let _ = body.read(&mut buf).await.unwrap();
            Err(StorageError::Local {
                op: "writing",
                path: "/full/x".into(),
                source: std::io::ErrorKind::StorageFull.into(),
                fix: "free space",
            })
        }

        async fn get(&self, key: &str, _: Option<Range<u64>>) -> Result<ByteReader, StorageError> {
            Err(StorageError::NotFound { key: key.into() })
        }

        async fn head(&self, key: &str) -> Result<ObjectMeta, StorageError> {
            Err(StorageError::NotFound { key: key.into() })
        }

        async fn list(&self, _: &str) -> Result<Vec<ObjectMeta>, StorageError> {
            Ok(Vec::new())
        }

        async fn create_root(&self) -> Result<(), StorageError> {
            Ok(())
        }

        async fn list_unfinished(&self, _: &str) -> Result<Vec<ObjectMeta>, StorageError> {
            Ok(Vec::new())
        }

        async fn delete(&self, _: &str) -> Result<(), StorageError> {
            Ok(())
        }

        async fn remove_unfinished(&self, _: &ObjectMeta) -> Result<(), StorageError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_put_is_the_error_not_the_stopped_compressor() {
        // Incompressible input, so the compressor keeps sending after the put stopped reading.
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let input: Vec<u8> = (0..16 * CHUNK)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 32) as u8
            })
            .collect();
        let compression = Compression::default();
        let e = store_object(
            &FillsUp,
            "x",
            std::io::Cursor::new(input),
            PutMode::Create,
            compression,
        )
        .await
        .unwrap_err();
        assert!(
            matches!(&e, Error::Storage(StorageError::Local { source, .. })
                if source.kind() == std::io::ErrorKind::StorageFull),
            "{e}"
        );
    }
}
