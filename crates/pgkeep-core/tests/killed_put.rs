//! A put whose process is killed with SIGKILL midway leaves nothing that `list`, `head` or `get`
//! shows, on the local backend and on Garage. The test re-runs its own binary as the child that
//! does the put.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use common::{garage_settings, random_bytes};
use pgkeep_core::{LocalStorage, PutMode, S3Storage, Storage};
use pgkeep_testkit::Garage;

const CHILD_ENV: &str = "PGKEEP_KILLED_PUT_CHILD";
const TEST_NAME: &str = "killed_process_leaves_nothing";

/// In the child: 7 MiB, then a source that never ends, so the put is midway when it is killed.
async fn child(storage: Arc<dyn Storage>) {
    let (mut writer, mut reader) = tokio::io::duplex(1024 * 1024);
    tokio::spawn(async move {
        let data = random_bytes(7 * 1024 * 1024, 21);
        tokio::io::AsyncWriteExt::write_all(&mut writer, &data)
            .await
            .ok();
        println!("STARTED");
        std::future::pending::<()>().await;
    });
    storage
        .put("k/killed", &mut reader, PutMode::Create)
        .await
        .ok();
    unreachable!("the put never ends: the parent kills this process");
}

async fn child_storage() -> Arc<dyn Storage> {
    let spec = std::env::var(CHILD_ENV).unwrap();
    match spec.split_once(':').unwrap() {
        ("local", path) => Arc::new(LocalStorage::new(path)),
        ("s3", prefix) => {
            let garage_env = |k: &str| std::env::var(k).unwrap();
            let settings = pgkeep_core::S3Settings {
                region: Some(garage_env("AWS_REGION")),
                endpoint: Some(garage_env("AWS_ENDPOINT_URL")),
                force_path_style: Some(true),
                part_size: 5 * 1024 * 1024,
                ..Default::default()
            };
            Arc::new(S3Storage::new(&settings, &garage_env("PGKEEP_TEST_BUCKET"), prefix).await)
        }
        _ => unreachable!(),
    }
}

/// Runs the child doing the put, waits until it is midway, and kills it with SIGKILL.
fn kill_midway(spec: &str, env: &[(String, String)]) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, spec)
        .envs(env.iter().cloned())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let started = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("STARTED"));
    assert!(started, "the child did not start its put");
    // Let the first part reach the store.
    std::thread::sleep(Duration::from_millis(1500));
    child.kill().unwrap(); // SIGKILL: no destructor, no abort, no cleanup runs
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_process_leaves_nothing() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child(child_storage().await).await;
        return;
    }

    // Local: the staging file stays behind, but nothing lists or reads it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    kill_midway(&format!("local:{}", root.display()), &[]);
    let leftovers: Vec<_> = std::fs::read_dir(root.join("k"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        leftovers.len() == 1 && leftovers[0].starts_with(".pgkeep-tmp-"),
        "the kill came midway, leaving only a staging file: {leftovers:?}"
    );
    let local = LocalStorage::new(&root);
    assert!(local.list("").await.unwrap().is_empty());
    assert!(local.head("k/killed").await.unwrap_err().is_not_found());
    // Listed as an unfinished write, it can be removed (as `expire` does).
    let unfinished = local.list_unfinished("k/").await.unwrap();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    local.remove_unfinished(&unfinished[0]).await.unwrap();
    assert!(local.list_unfinished("k/").await.unwrap().is_empty());
    assert!(std::fs::read_dir(root.join("k")).unwrap().next().is_none());
    local.remove_unfinished(&unfinished[0]).await.unwrap(); // gone already: fine

    // S3: the multipart upload stays incomplete, and incomplete uploads are invisible.
    let Some(garage) = Garage::shared() else {
        return;
    };
    let prefix = garage.unique_prefix("killed");
    let mut env = garage.env_vars();
    env.push(("PGKEEP_TEST_BUCKET".into(), garage.bucket().into()));
    kill_midway(&format!("s3:{prefix}"), &env);
    let client = common::raw_client(garage).await;
    assert_eq!(
        common::pending_uploads(&client, garage, &prefix).await,
        1,
        "the kill came midway, leaving an incomplete multipart upload"
    );
    let s3 = S3Storage::new(&garage_settings(garage), garage.bucket(), &prefix).await;
    assert!(s3.list("").await.unwrap().is_empty());
    assert!(s3.head("k/killed").await.unwrap_err().is_not_found());
    assert!(s3.get("k/killed", None).await.is_err());
    // Removing the listed upload aborts it, and spares one started since (a running writer's).
    let unfinished = s3.list_unfinished("k/").await.unwrap();
    assert_eq!(unfinished.len(), 1, "{unfinished:?}");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client
        .create_multipart_upload()
        .bucket(garage.bucket())
        .key(format!("{prefix}/k/killed"))
        .send()
        .await
        .unwrap();
    s3.remove_unfinished(&unfinished[0]).await.unwrap();
    assert_eq!(common::pending_uploads(&client, garage, &prefix).await, 1);
    let newer = s3.list_unfinished("k/").await.unwrap();
    assert!(newer[0].modified > unfinished[0].modified, "{newer:?}");
    s3.remove_unfinished(&newer[0]).await.unwrap();
    assert_eq!(common::pending_uploads(&client, garage, &prefix).await, 0);
}
