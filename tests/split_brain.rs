//! A timeline fork in the WAL archive (a parent timeline that kept archiving after a child
//! branched off it) is a problem for `verify --wal`, so that cron alerts on a split brain, unless
//! the child timeline was started on purpose: a restore pgkeep promoted with `--keep-archiving`
//! (shown in tests/physical.rs), or one accepted with `pgkeep accept-fork`.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::process::Command;

use common::{json, stderr};
use repo::{Repo, archiving_cluster, free_port, ok, pgkeep_as_server, run, switch_and_wait};

use pgkeep_testkit::PgCluster;

#[test]
fn an_unrecorded_fork_is_a_split_brain_until_accepted() {
    let repo = Repo::local();
    let primary = archiving_cluster(&repo);
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    let pgkeep = || pgkeep_as_server(&primary, &repo, home.path());
    primary.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    ok(pgkeep().args(["backup", "physical"]));
    switch_and_wait(|sql| primary.psql(sql));

    // A restore promoted by hand (pgkeep did not start it), archiving into the same repository
    // beside the primary that still writes: two primaries.
    let dir = home.path().join("second");
    ok(pgkeep()
        .args(["restore", "--latest", "--keep-archiving", "--pgdata"])
        .arg(&dir)
        .args(["--target-action", "promote"]));
    let port = free_port();
    let mut pg_ctl = Command::new(primary.bin("pg_ctl"));
    pg_ctl
        .arg("-D")
        .arg(&dir)
        .args(["-w", "-l"])
        .arg(dir.join("log"))
        .args(["-o", &format!("-p {port} -k /tmp"), "start"]);
    PgCluster::as_server(&mut pg_ctl);
    assert!(
        pg_ctl
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let second = |sql: &str| {
        let out = Command::new(primary.bin("psql"))
            .args(["-X", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(port.to_string())
            .args(["-c", sql])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while second("SELECT pg_is_in_recovery()") != "f" {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore did not promote"
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    second("INSERT INTO t VALUES (2)");
    let branch = switch_and_wait(second);
    assert!(branch.starts_with("00000002"), "{branch}");
    // The primary goes on past the segment the branch started in.
    for n in 3..5 {
        primary.psql(&format!("INSERT INTO t VALUES ({n})"));
        switch_and_wait(|sql| primary.psql(sql));
    }

    let out = run(pgkeep().args(["--json", "verify", "--wal"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let report = json(&out);
    let problems = report["problems"].to_string();
    assert!(
        problems.contains("timeline 2 branched off timeline 1"),
        "{report:#}"
    );
    assert!(problems.contains("split brain"), "{report:#}");
    assert!(problems.contains("pgkeep accept-fork 2"), "{report:#}");

    // Accepted as deliberate: a note, and verify --wal passes.
    ok(pgkeep().args(["accept-fork", "2"]));
    let report = json(&ok(pgkeep().args(["--json", "verify", "--wal"])));
    assert_eq!(report["problems"], serde_json::json!([]), "{report:#}");
    assert!(
        report["forks"].to_string().contains("accepted"),
        "{report:#}"
    );
    assert_eq!(
        run(pgkeep().args(["accept-fork", "1"])).status.code(),
        Some(2)
    );

    let mut stop = Command::new(primary.bin("pg_ctl"));
    stop.arg("-D").arg(&dir).args(["-m", "immediate", "stop"]);
    PgCluster::as_server(&mut stop);
    stop.stdout(std::process::Stdio::null()).status().unwrap();
}
