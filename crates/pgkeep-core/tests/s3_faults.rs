//! S3 failure handling against a real Garage server behind a fault-injecting TCP proxy: transient
//! failures are retried, an unreachable store and bad credentials fail with clear messages, and an
//! abandoned multipart upload is aborted.

mod common;

use std::time::{Duration, Instant};

use common::{garage_settings, random_bytes};
use pgkeep_core::{PutMode, S3Settings, S3Storage, Storage, StorageError};
use pgkeep_testkit::{FaultMode, FaultProxy, Garage};

fn through_proxy(garage: &Garage, proxy: &FaultProxy) -> S3Settings {
    S3Settings {
        endpoint: Some(format!("http://{}", proxy.addr())),
        ..garage_settings(garage)
    }
}

/// A new proxy in `mode` and a client that reaches `prefix` through it. Each phase of a test takes
/// a new pair, so that no connection pooled in an earlier phase (and reset since) is reused and
/// spends one of the attempts the phase counts on.
async fn behind_new_proxy(
    garage: &Garage,
    prefix: &str,
    mode: FaultMode,
) -> (FaultProxy, S3Storage) {
    let proxy = FaultProxy::start(garage.s3_addr());
    proxy.set_mode(mode);
    let s3 = S3Storage::new(&through_proxy(garage, &proxy), garage.bucket(), prefix).await;
    (proxy, s3)
}

/// A client that reaches `prefix` directly.
async fn direct(garage: &Garage, prefix: &str) -> S3Storage {
    S3Storage::new(&garage_settings(garage), garage.bucket(), prefix).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_are_retried() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("resets");
    let (proxy, s3) = behind_new_proxy(garage, &prefix, FaultMode::ResetNext(2)).await;
    s3.put_bytes("r/small", b"survives two resets", PutMode::Create)
        .await
        .expect("two resets are within max_attempts = 3");
    assert!(
        proxy.connections() >= 3,
        "{} connections",
        proxy.connections()
    );
    assert_eq!(
        direct(garage, &prefix)
            .await
            .get_bytes("r/small")
            .await
            .unwrap(),
        b"survives two resets"
    );

    // Connections cut midway through multipart uploads: each part is replayed on a new connection.
    let data = random_bytes(16 * 1024 * 1024, 11);
    let (proxy, s3) =
        behind_new_proxy(garage, &prefix, FaultMode::CutAfterBytes(7 * 1024 * 1024)).await;
    let mut body: &[u8] = &data;
    s3.put("r/big", &mut body, PutMode::Create)
        .await
        .expect("parts are retried on fresh connections");
    assert!(
        proxy.connections() >= 3,
        "the cuts forced new connections: {}",
        proxy.connections()
    );
    assert!(
        direct(garage, &prefix)
            .await
            .get_bytes("r/big")
            .await
            .unwrap()
            == data
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_downloads_resume_where_they_stopped() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("resume");
    let data = random_bytes(7 * 1024 * 1024 + 333, 13);
    direct(garage, &prefix)
        .await
        .put_bytes("g/object", &data, PutMode::Create)
        .await
        .unwrap();

    // Every connection breaks after 3 MiB downstream: the 7 MiB object needs two resumptions,
    // within max_attempts = 3.
    let three_mib = FaultMode::CutDownAfterBytes(3 * 1024 * 1024);
    let (proxy, s3) = behind_new_proxy(garage, &prefix, three_mib).await;
    let read = s3.get_bytes("g/object").await.expect("resumed");
    assert!(read == data, "the resumed download differs");
    assert!(proxy.connections() >= 3, "it did resume");

    // A ranged read resumes within its range.
    let (_proxy, s3) = behind_new_proxy(garage, &prefix, three_mib).await;
    let mut part = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(
        &mut s3
            .get("g/object", Some(1000..5 * 1024 * 1024))
            .await
            .unwrap(),
        &mut part,
    )
    .await
    .expect("ranged resume");
    assert!(part == data[1000..5 * 1024 * 1024]);

    // Cut every 1 MiB: more breaks than attempts, so the read fails instead of looping.
    let one_mib = FaultMode::CutDownAfterBytes(1024 * 1024);
    let (_proxy, s3) = behind_new_proxy(garage, &prefix, one_mib).await;
    assert!(s3.get_bytes("g/object").await.is_err());

    // Through the pipeline, a read that keeps breaking is an outage, not corruption.
    let stored = pgkeep_core::store_object(
        &direct(garage, &prefix).await,
        "g/piped",
        std::io::Cursor::new(data.clone()),
        PutMode::Create,
        pgkeep_core::Compression::default(),
    )
    .await
    .unwrap();
    let (_proxy, s3) = behind_new_proxy(garage, &prefix, one_mib).await;
    let err = pgkeep_core::fetch_object(&s3, &stored, &mut tokio::io::sink())
        .await
        .unwrap_err();
    assert!(
        matches!(err, pgkeep_core::Error::Storage(StorageError::Read { .. })),
        "{err}"
    );
    assert!(!err.is_corruption(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_reported() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("slowdown");
    direct(garage, &prefix)
        .await
        .put_bytes("s/x", b"x", PutMode::Create)
        .await
        .unwrap();
    // Two 503 SlowDown answers, then the real store: within max_attempts = 3.
    let (proxy, s3) = behind_new_proxy(garage, &prefix, FaultMode::SlowDownNext(2)).await;
    assert_eq!(s3.head("s/x").await.expect("retried").size, 1);
    assert_eq!(
        proxy.mode(),
        FaultMode::PassThrough,
        "both 503s were served"
    );

    // Throttled past the attempts: a transient error naming the status.
    let (_proxy, s3) = behind_new_proxy(garage, &prefix, FaultMode::SlowDownNext(10)).await;
    let err = s3.head("s/x").await.unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    let message = err.to_string();
    assert!(message.contains("HTTP 503"), "{message}");
    assert!(message.contains("3 attempts"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_store_fails_as_transient_with_a_fix() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("unreachable");
    let (proxy, s3) = behind_new_proxy(garage, &prefix, FaultMode::ResetAll).await;
    let err = s3
        .put_bytes("u/x", b"x", PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(!err.is_permanent(), "{err}");
    let message = err.to_string();
    assert!(matches!(err, StorageError::S3 { .. }), "{message}");
    assert!(message.contains("PutObject"), "{message}");
    assert!(message.contains("3 attempts"), "{message}");
    assert!(message.contains("fix:"), "{message}");
    assert!(proxy.connections() >= 3, "retried: {}", proxy.connections());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_fail_at_once() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let settings = S3Settings {
        credentials: Some((
            garage.access_key_id().to_string(),
            "0".repeat(64), // wrong secret
        )),
        ..garage_settings(garage)
    };
    let s3 = S3Storage::new(&settings, garage.bucket(), "badcreds").await;
    let started = Instant::now();
    let err = s3
        .put_bytes("b/x", b"x", PutMode::Overwrite)
        .await
        .unwrap_err();
    assert!(err.is_permanent(), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a permanent error is not retried"
    );
    let message = err.to_string();
    assert!(message.contains("HTTP 403"), "{message}");
    assert!(message.contains("credentials"), "{message}");

    let missing_bucket = S3Storage::new(&garage_settings(garage), "no-such-bucket-x", "").await;
    let err = missing_bucket.list("").await.unwrap_err();
    assert!(err.is_permanent(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_multipart_upload_is_aborted() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("abort");
    let s3 = direct(garage, &prefix).await;
    // 6 MiB, then the source stalls: one part is uploaded, the put waits for more.
    let (mut writer, mut reader) = tokio::io::duplex(1024 * 1024);
    let feeder = tokio::spawn(async move {
        let data = random_bytes(6 * 1024 * 1024, 12);
        tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
            .await
            .ok();
        std::future::pending::<()>().await;
    });
    let put = s3.put("a/stalled", &mut reader, PutMode::Create);
    assert!(
        tokio::time::timeout(Duration::from_secs(3), put)
            .await
            .is_err()
    );
    feeder.abort();

    let client = common::raw_client(garage).await;
    // The abort runs on a spawned task after the drop; give it a moment.
    let mut pending = usize::MAX;
    for _ in 0..50 {
        pending = common::pending_uploads(&client, garage, &prefix).await;
        if pending == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(pending, 0, "the multipart upload was not aborted");
    assert!(s3.list("a/").await.unwrap().is_empty());
}
