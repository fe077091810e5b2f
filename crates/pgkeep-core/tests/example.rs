//! The embedding examples (`examples/`) run against real clusters.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pgkeep_core::shell_quote;
use pgkeep_testkit::PgCluster;

/// A program as `cargo build --workspace --examples` left it under target/debug (bin/test builds
/// them before the tests run; `cargo test` builds examples as test harnesses, which cannot run
/// them).
fn built(relative: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(relative);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --examples` first (bin/test does)",
        path.display()
    );
    path
}

fn example_binary() -> PathBuf {
    built("examples/logical_backup")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
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

/// psql against the server on `port`, as the server's user.
fn psql_port(pg: &PgCluster, port: u16, sql: &str) -> String {
    let out = PgCluster::as_server(&mut pg.client("psql"))
        .args([
            "-X",
            "-A",
            "-t",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .args(["-U", "postgres", "-d", "postgres", "-c", sql])
        .output()
        .unwrap();
    assert!(out.status.success(), "psql {sql}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `pgkeep` as the server's user, against the repository and the cluster.
fn pgkeep(pg: &PgCluster, repo: &str, args: &[&str]) -> Output {
    PgCluster::as_server(&mut Command::new(built("pgkeep")))
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .current_dir("/")
        .output()
        .unwrap()
}

/// Waits until the server has archived the segment it just switched away from.
fn switch_and_wait_archived(pg: &PgCluster) {
    let segment = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let begun = Instant::now();
    while pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") < segment {
        assert!(
            begun.elapsed() < Duration::from_secs(60),
            "{segment} was not archived: {}",
            pg.log_contents()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn stop(pg: &PgCluster, dir: &Path) {
    if dir.join("postmaster.pid").exists() {
        let _ = PgCluster::as_server(&mut Command::new(pg.bin("pg_ctl")))
            .arg("-D")
            .arg(dir)
            .args(["stop", "-m", "immediate", "-w"])
            .output();
    }
}

#[test]
fn the_pitr_example_plans_restores_and_stops_at_the_time() {
    let dir = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(dir.path());
    let repo = format!("file://{}/repo", dir.path().display());
    let pg = PgCluster::builder()
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            format!(
                "{} --repo {} wal-push %p",
                shell_quote(&built("pgkeep").to_string_lossy()),
                shell_quote(&repo)
            ),
        )
        .start();
    pg.psql("CREATE TABLE t AS SELECT 1 AS phase FROM generate_series(1, 10)");
    let out = pgkeep(&pg, &repo, &["-q", "backup", "physical"]);
    assert!(out.status.success(), "{}", text(&out));
    pg.psql("INSERT INTO t SELECT 2 FROM generate_series(1, 10)");
    std::thread::sleep(Duration::from_millis(1100));
    let target = pg.psql("SELECT clock_timestamp()");
    std::thread::sleep(Duration::from_millis(1100));
    pg.psql("INSERT INTO t SELECT 3 FROM generate_series(1, 10)");
    switch_and_wait_archived(&pg);

    let restored = dir.path().join("restored");
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let out = PgCluster::as_server(&mut Command::new(built("examples/pitr_restore")))
        .args([
            &repo,
            &target,
            restored.to_str().unwrap(),
            &port.to_string(),
        ])
        .env("PGKEEP_BIN", built("pgkeep"))
        .current_dir("/")
        .output()
        .unwrap();
    let said = text(&out);
    let counts = out
        .status
        .success()
        .then(|| psql_port(&pg, port, "SELECT string_agg(phase || ':' || n, ',' ORDER BY phase) FROM (SELECT phase, count(*) n FROM t GROUP BY phase) s"));
    stop(&pg, &restored);
    assert!(out.status.success(), "{said}");
    assert!(said.starts_with("plan: backup "), "{said}");
    assert!(
        said.contains("restored: the server is paused at LSN "),
        "{said}"
    );
    assert_eq!(counts.as_deref(), Some("1:10,2:10"), "{said}");
}
