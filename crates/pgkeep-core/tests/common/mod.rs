//! Backends for the conformance suites: every suite runs against a local directory and against a
//! real Garage S3 server (skipped outside CI when Garage is missing; a failure under CI=true).

#![allow(dead_code)]

use std::sync::Arc;

use pgkeep_core::{LocalStorage, S3Settings, S3Storage, Storage};
use pgkeep_testkit::Garage;
use rand::{RngCore, SeedableRng};

/// A backend under test; keeps its temp directory alive.
pub struct Backend {
    pub name: &'static str,
    pub storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

/// S3 settings for the shared Garage with small parts, so multipart paths run on small data.
pub fn garage_settings(garage: &Garage) -> S3Settings {
    S3Settings {
        region: Some(garage.region().to_string()),
        endpoint: Some(garage.endpoint()),
        force_path_style: Some(true),
        credentials: Some((
            garage.access_key_id().to_string(),
            garage.secret_access_key().to_string(),
        )),
        part_size: 5 * 1024 * 1024,
        max_parts_in_flight: 2,
        max_attempts: 3,
        ..S3Settings::default()
    }
}

/// The local backend and, when Garage is available, the S3 backend.
pub async fn backends(test: &str) -> Vec<Backend> {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut out = vec![Backend {
        name: "local",
        storage: Arc::new(LocalStorage::new(dir.path().join("repo"))),
        _dir: Some(dir),
    }];
    if let Some(garage) = Garage::shared() {
        let storage = S3Storage::new(
            &garage_settings(garage),
            garage.bucket(),
            &garage.unique_prefix(test),
        )
        .await;
        out.push(Backend {
            name: "s3",
            storage: Arc::new(storage),
            _dir: None,
        });
    }
    out
}

/// `len` incompressible bytes, the same for the same seed.
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut data = vec![0u8; len];
    rng.fill_bytes(&mut data);
    data
}

/// `len` bytes of compressible text.
pub fn text_bytes(len: usize) -> Vec<u8> {
    let line = b"INSERT INTO orders VALUES (42, 'caf\xc3\xa9 cr\xc3\xa8me', now());\n";
    line.iter().copied().cycle().take(len).collect()
}

/// A plain SDK client for the shared Garage, to look behind pgkeep's back.
pub async fn raw_client(garage: &Garage) -> aws_sdk_s3::Client {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new(garage.region().to_string()))
        .endpoint_url(garage.endpoint())
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            garage.access_key_id(),
            garage.secret_access_key(),
            None,
            None,
            "test",
        ))
        .load()
        .await;
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

/// How many multipart uploads are in progress under `prefix/`.
pub async fn pending_uploads(client: &aws_sdk_s3::Client, garage: &Garage, prefix: &str) -> usize {
    client
        .list_multipart_uploads()
        .bucket(garage.bucket())
        .prefix(format!("{prefix}/"))
        .send()
        .await
        .expect("list multipart uploads")
        .uploads()
        .len()
}
