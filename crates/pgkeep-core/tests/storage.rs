//! The storage conformance suite: the same checks against the local backend and against a real Garage
//! S3 server.

mod common;

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use common::{backends, random_bytes};
use pgkeep_core::{PutMode, Storage, StorageError};
use tokio::io::{AsyncRead, ReadBuf};

/// Yields `data`, then either an error or (with `stall`) never anything again.
struct Interrupted {
    data: Vec<u8>,
    pos: usize,
    stall: bool,
}

impl AsyncRead for Interrupted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.data.len() {
            let n = (self.data.len() - self.pos)
                .min(buf.remaining())
                .min(64 * 1024);
            let start = self.pos;
            buf.put_slice(&self.data[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        if self.stall {
            Poll::Pending
        } else {
            Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "source died",
            )))
        }
    }
}

async fn assert_absent(storage: &dyn Storage, key: &str, name: &str) {
    let listed = storage.list("").await.expect("list");
    assert!(
        listed.iter().all(|m| m.key != key),
        "{name}: {key} listed after an interrupted put: {listed:?}"
    );
    assert!(
        storage
            .head(key)
            .await
            .expect_err("head must fail")
            .is_not_found(),
        "{name}: head found {key}"
    );
    assert!(
        storage.get(key, None).await.is_err(),
        "{name}: get found {key}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_head_list_delete() {
    for b in backends("basic").await {
        let s = b.storage.as_ref();
        let data = random_bytes(100_000, 1);
        let meta = s
            .put_bytes("c/backups/1/a.zst", &data, PutMode::Create)
            .await
            .unwrap();
        assert_eq!(meta.size, 100_000, "{}", b.name);
        assert_eq!(s.get_bytes("c/backups/1/a.zst").await.unwrap(), data);
        assert_eq!(s.head("c/backups/1/a.zst").await.unwrap().size, 100_000);
        s.put_bytes("c/backups/1/b", b"", PutMode::Create)
            .await
            .unwrap();
        assert_eq!(s.get_bytes("c/backups/1/b").await.unwrap(), b"");
        s.put_bytes("c/backups/10/x", b"x", PutMode::Create)
            .await
            .unwrap();
        s.put_bytes("c/wal/1/y", b"y", PutMode::Create)
            .await
            .unwrap();
        s.put_bytes("d/z", b"z", PutMode::Create).await.unwrap();

        let keys =
            |v: Vec<pgkeep_core::ObjectMeta>| v.into_iter().map(|m| m.key).collect::<Vec<_>>();
        assert_eq!(
            keys(s.list("c/backups/1/").await.unwrap()),
            vec!["c/backups/1/a.zst", "c/backups/1/b"],
            "{}",
            b.name
        );
        assert_eq!(
            keys(s.list("c/backups/1").await.unwrap()),
            vec!["c/backups/1/a.zst", "c/backups/1/b", "c/backups/10/x"],
            "{}: a prefix is a string prefix, not a directory",
            b.name
        );
        assert_eq!(
            keys(s.list("c/").await.unwrap()),
            vec![
                "c/backups/1/a.zst",
                "c/backups/1/b",
                "c/backups/10/x",
                "c/wal/1/y"
            ],
            "{}",
            b.name
        );
        assert!(s.list("nothing/").await.unwrap().is_empty());

        s.delete("c/backups/1/a.zst").await.unwrap();
        assert!(
            s.head("c/backups/1/a.zst")
                .await
                .unwrap_err()
                .is_not_found()
        );
        s.delete("c/backups/1/a.zst").await.unwrap(); // deleting a missing object succeeds
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_objects_are_not_found() {
    for b in backends("missing").await {
        let s = b.storage.as_ref();
        assert!(
            s.head("no/such").await.unwrap_err().is_not_found(),
            "{}",
            b.name
        );
        assert!(
            s.get("no/such", None).await.err().unwrap().is_not_found(),
            "{}",
            b.name
        );
        assert!(
            s.get_bytes("no/such").await.unwrap_err().is_not_found(),
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_never_overwrites_and_overwrite_replaces() {
    for b in backends("create").await {
        let s = b.storage.as_ref();
        s.put_bytes("k/manifest.json", b"first", PutMode::Create)
            .await
            .unwrap();
        let err = s
            .put_bytes("k/manifest.json", b"second", PutMode::Create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::AlreadyExists { .. }),
            "{}: {err}",
            b.name
        );
        assert!(err.to_string().contains("never overwritten"), "{err}");
        assert_eq!(s.get_bytes("k/manifest.json").await.unwrap(), b"first");

        // A large create (multipart on S3) is refused too.
        let big = random_bytes(12 * 1024 * 1024, 2);
        let err = s
            .put_bytes("k/manifest.json", &big, PutMode::Create)
            .await
            .unwrap_err();
        assert!(
            matches!(err, StorageError::AlreadyExists { .. }),
            "{}: {err}",
            b.name
        );
        assert_eq!(s.get_bytes("k/manifest.json").await.unwrap(), b"first");

        s.put_bytes("k/manifest.json", b"third", PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(s.get_bytes("k/manifest.json").await.unwrap(), b"third");
        assert_eq!(
            s.list("k/").await.unwrap().len(),
            1,
            "{}: no leftovers",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_streaming_put_and_ranged_get() {
    for b in backends("large").await {
        let s = b.storage.as_ref();
        // 12 MiB + a bit: three parts of 5 MiB on S3, with two in flight.
        let data = random_bytes(12 * 1024 * 1024 + 12_345, 3);
        let mut body: &[u8] = &data;
        let meta = s
            .put("big/object", &mut body, PutMode::Create)
            .await
            .unwrap();
        assert_eq!(meta.size, data.len() as u64, "{}", b.name);
        assert_eq!(s.head("big/object").await.unwrap().size, data.len() as u64);
        assert!(
            s.get_bytes("big/object").await.unwrap() == data,
            "{}: content differs",
            b.name
        );

        let range = 5 * 1024 * 1024 - 10..5 * 1024 * 1024 + 10;
        let mut part = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(
            &mut s.get("big/object", Some(range.clone())).await.unwrap(),
            &mut part,
        )
        .await
        .unwrap();
        assert_eq!(
            part,
            data[range.start as usize..range.end as usize],
            "{}",
            b.name
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_source_leaves_nothing() {
    for b in backends("failsrc").await {
        let s = b.storage.as_ref();
        for (key, len) in [("f/small", 1000usize), ("f/multipart", 11 * 1024 * 1024)] {
            let mut body = Interrupted {
                data: random_bytes(len, 4),
                pos: 0,
                stall: false,
            };
            let err = s.put(key, &mut body, PutMode::Create).await.unwrap_err();
            assert!(
                matches!(err, StorageError::Source { .. }),
                "{}: {key}: {err}",
                b.name
            );
            assert_absent(s, key, b.name).await;
        }
        assert!(s.list("f/").await.unwrap().is_empty(), "{}", b.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_put_leaves_nothing() {
    for b in backends("dropped").await {
        let s = b.storage.as_ref();
        for (key, len) in [("d/small", 1000usize), ("d/multipart", 11 * 1024 * 1024)] {
            let mut body = Interrupted {
                data: random_bytes(len, 5),
                pos: 0,
                stall: true,
            };
            let put = s.put(key, &mut body, PutMode::Overwrite);
            assert!(
                tokio::time::timeout(Duration::from_secs(3), put)
                    .await
                    .is_err(),
                "{}: the put should still be waiting for data",
                b.name
            );
            assert_absent(s, key, b.name).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_are_refused() {
    for b in backends("keys").await {
        let s = b.storage.as_ref();
        for key in ["/abs", "a/../b", "a//b", "", "x/.pgkeep-tmp-1"] {
            let err = s.put_bytes(key, b"x", PutMode::Create).await.unwrap_err();
            assert!(
                matches!(err, StorageError::InvalidKey { .. }),
                "{}: {key:?}: {err}",
                b.name
            );
        }
    }
}
