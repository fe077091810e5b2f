//! The streaming pipeline against both backends: round trips, corruption found on read, failures
//! that leave nothing stored, and the repository identity guard.

mod common;

use common::{backends, random_bytes, text_bytes};
use pgkeep_core::{
    Compression, Error, PutMode, Repository, StoredObject, ensure_identity, fetch_object,
    store_object,
};

async fn roundtrip(storage: &dyn pgkeep_core::Storage, key: &str, data: Vec<u8>) -> StoredObject {
    let stored = store_object(
        storage,
        key,
        std::io::Cursor::new(data.clone()),
        PutMode::Create,
        Compression {
            level: 3,
            threads: 2,
        },
    )
    .await
    .expect("store");
    assert_eq!(stored.size, data.len() as u64);
    assert_eq!(serde_json::to_value(stored.compression).unwrap(), "zstd");
    assert_eq!(
        storage.head(key).await.expect("head").size,
        stored.stored_size
    );
    let mut out = Vec::new();
    let n = fetch_object(storage, &stored, &mut out)
        .await
        .expect("fetch");
    assert_eq!(n, data.len() as u64);
    assert!(out == data, "{key}: round trip changed the data");
    stored
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_and_fetch_round_trip() {
    for b in backends("pipe-rt").await {
        let s = b.storage.as_ref();
        let text = roundtrip(s, "p/text.zst", text_bytes(20 * 1024 * 1024)).await;
        assert!(
            text.stored_size * 20 < text.size,
            "{}: text should compress well: {text:?}",
            b.name
        );
        let random = roundtrip(s, "p/random.zst", random_bytes(9 * 1024 * 1024, 7)).await;
        assert!(random.stored_size >= random.size, "{}", b.name);
        roundtrip(s, "p/empty.zst", Vec::new()).await;
        assert_ne!(text.sha256, text.stored_sha256);
    }
}

/// Rewrites an object with one byte flipped (or cut short), as bit rot or a bad copy would.
async fn damage(storage: &dyn pgkeep_core::Storage, key: &str, truncate: bool) {
    let mut bytes = storage.get_bytes(key).await.expect("get");
    if truncate {
        bytes.truncate(bytes.len() - 100);
    } else {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
    }
    storage
        .put_bytes(key, &bytes, PutMode::Overwrite)
        .await
        .expect("rewrite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_byte_is_a_checksum_error() {
    for b in backends("pipe-flip").await {
        let s = b.storage.as_ref();
        for (key, truncate) in [("p/flipped.zst", false), ("p/truncated.zst", true)] {
            let stored = roundtrip(s, key, text_bytes(3 * 1024 * 1024)).await;
            damage(s, key, truncate).await;
            let mut out = Vec::new();
            let err = fetch_object(s, &stored, &mut out).await.unwrap_err();
            assert!(
                matches!(err, Error::ChecksumMismatch { .. }),
                "{}: {key}: expected a checksum mismatch, got {err}",
                b.name
            );
            let message = err.to_string();
            assert!(message.contains(key), "{message}");
            assert!(message.contains("checksum mismatch"), "{message}");
            assert!(message.contains(&stored.stored_sha256), "{message}");
            assert!(message.contains("fix:"), "{message}");
            assert!(err.is_corruption());
        }
    }
}

/// A source that fails midway, as a pg_dump killed mid-stream would.
struct FailingSource {
    left: usize,
}

impl tokio::io::AsyncRead for FailingSource {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        if self.left == 0 {
            return std::task::Poll::Ready(Err(std::io::Error::other("pg_dump died")));
        }
        let n = self.left.min(buf.remaining()).min(256 * 1024);
        let chunk = random_bytes(n, self.left as u64);
        buf.put_slice(&chunk);
        self.left -= n;
        std::task::Poll::Ready(Ok(()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_source_stores_nothing() {
    for b in backends("pipe-fail").await {
        let s = b.storage.as_ref();
        for (key, len) in [("p/small.zst", 10_000), ("p/large.zst", 14 * 1024 * 1024)] {
            let err = store_object(
                s,
                key,
                FailingSource { left: len },
                PutMode::Create,
                Compression::default(),
            )
            .await
            .unwrap_err();
            assert!(
                matches!(err, Error::Input { .. }),
                "{}: {key}: {err}",
                b.name
            );
            assert!(err.to_string().contains("pg_dump died"), "{err}");
            assert!(s.head(key).await.unwrap_err().is_not_found(), "{}", b.name);
        }
        assert!(s.list("p/").await.unwrap().is_empty(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_store_leaves_nothing_listed() {
    for b in backends("pipe-drop").await {
        let s = b.storage.as_ref();
        // A source that never ends: the store is cancelled by the timeout, midway.
        let (mut writer, reader) = tokio::io::duplex(1024 * 1024);
        let feeder = tokio::spawn(async move {
            let chunk = random_bytes(1024 * 1024, 9);
            loop {
                if tokio::io::AsyncWriteExt::write_all(&mut writer, &chunk)
                    .await
                    .is_err()
                {
                    break;
                }
            }
        });
        let store = store_object(
            s,
            "p/never.zst",
            reader,
            PutMode::Create,
            Compression::default(),
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_secs(2), store)
                .await
                .is_err()
        );
        feeder.abort();
        assert!(s.list("p/").await.unwrap().is_empty(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_identity_refuses_another_cluster() {
    for b in backends("identity").await {
        let repo = Repository::new(b.storage.clone(), "main");
        assert!(repo.identity().await.unwrap().is_none());
        let first = ensure_identity(&repo, "7312345678901234567", 15)
            .await
            .unwrap();
        assert_eq!(first.system_identifier, "7312345678901234567");
        // The same server again is fine, and sees the recorded identity.
        assert_eq!(
            ensure_identity(&repo, "7312345678901234567", 15)
                .await
                .unwrap(),
            first
        );
        // Another server under the same name is refused, and the record is untouched.
        let err = ensure_identity(&repo, "7399999999999999999", 15)
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(matches!(err, Error::ClusterMismatch { .. }), "{message}");
        assert!(message.contains("7312345678901234567"), "{message}");
        assert!(message.contains("7399999999999999999"), "{message}");
        assert!(message.contains("--cluster"), "{message}");
        // So is a different major version.
        assert!(
            ensure_identity(&repo, "7312345678901234567", 16)
                .await
                .is_err()
        );
        assert_eq!(repo.identity().await.unwrap(), Some(first));
        // Another name in the same repository is independent.
        let other = Repository::new(b.storage.clone(), "other");
        ensure_identity(&other, "7399999999999999999", 16)
            .await
            .unwrap();
    }
}
