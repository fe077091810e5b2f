//! The embedding example (`examples/logical_backup.rs`) runs against a real cluster.

use std::path::PathBuf;
use std::process::Command;

use pgkeep_testkit::PgCluster;

/// The example as `cargo build --examples` left it (bin/test builds it before the tests run;
/// `cargo test` builds examples as test harnesses, which cannot run it).
fn example_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples")
        .join("logical_backup");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --examples` first (bin/test does)",
        path.display()
    );
    path
}

#[test]
fn the_embedding_example_backs_up_and_lists() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE app");
    pg.psql_db(
        "app",
        "CREATE TABLE t AS SELECT generate_series(1, 100) AS n",
    );
    let dir = tempfile::tempdir().unwrap();
    let repo = format!("file://{}/repo", dir.path().display());
    let out = Command::new(example_binary())
        .args([repo.as_str(), "app"])
        .current_dir(dir.path())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.starts_with("backed up app as "), "{stdout}");
    assert!(
        stdout
            .lines()
            .nth(1)
            .is_some_and(|l| l.contains("Logical  app")),
        "{stdout}"
    );
}
