//! The incident restore as an operator runs it minutes after the damage (issue 9, points 4, 7, 8
//! and 10), end to end with the built binary, real clusters archiving through `pgkeep wal-push`, a
//! local repository (one whose path holds a space, quotes, a backslash, `$` and non-ASCII) and a
//! real Garage S3 repository.
//!
//! When the tests run as root the servers, their `archive_command` and every pgkeep command run as
//! the `postgres` OS user (see the test kit), with a per-test configuration file (mode 0600).

mod common;
#[allow(dead_code)]
#[path = "common/physical.rs"]
mod physical;

use common::json;
use physical::*;

use std::fs;

use pgkeep_core::shell_quote;
use pgkeep_testkit::{Garage, PgCluster};

#[test]
fn a_repository_path_with_quotes_backslashes_and_dollars_restores_and_bad_flags_are_refused() {
    let repo = Repo::odd_local();
    let pg = archiving_cluster(&repo);
    ok(pgkeep(&pg, &repo).args(["backup", "physical", "--wal-timeout", "120"]));
    pg.psql("CREATE TABLE t (phase int, n int)");
    insert(&pg, 1);
    pause(300);
    let target = server_now(&pg);
    pause(300);
    insert(&pg, 2);
    switch_and_wait(&pg);

    let (restored, result) = restore(&pg, &repo, "restored", &["--at", &target]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100", "{result:#}");
    // Recovery really ran the restore_command with the odd paths, and the configuration holds them
    // as PostgreSQL's parser reads them back.
    let command = restored.psql("SHOW restore_command");
    assert!(
        command.contains(&shell_quote(&repo.config.to_string_lossy())),
        "{command}"
    );
    assert!(command.contains(&shell_quote(&repo.url)), "{command}");
    let auto = fs::read_to_string(restored.dir.join("postgresql.auto.conf")).unwrap();
    assert!(
        auto.contains(r" a \\ $HOME"),
        "the backslash is escaped:\n{auto}"
    );
    drop(restored);

    // Names PostgreSQL could not be given, and port 0: refused as usage errors, nothing written.
    for (args, says) in [
        (vec!["--name", ""], "empty"),
        (vec!["--name", "before\nthe drop"], "control character"),
        (vec!["--at", &target, "--port", "0"], "--port"),
    ] {
        let (code, said) = refused(&pg, &repo, "bad-flag", &args);
        assert_eq!(code, 2, "{args:?}: {said}");
        assert!(said.contains(says), "{args:?}: {said}");
    }
}

/// Point 8 and the `--lsn` item of point 7 against one repository.
fn incident_of_a_few_minutes_ago(repo: &Repo) {
    let pg = archiving_cluster(repo);
    ok(pgkeep(&pg, repo).args(["backup", "physical", "--wal-timeout", "120"]));
    pg.psql("CREATE TABLE t (phase int, n int)");
    insert(&pg, 1);
    switch_and_wait(&pg);
    // Phase 2 commits in the server's current segment, which is not archived yet.
    insert(&pg, 2);
    pause(300);
    let target = server_now(&pg);
    let past_lsn = pg.psql("SELECT pg_current_wal_lsn()");
    pause(300);

    // The window ends at the newest archived commit, shown to the microsecond in a form --at takes.
    let listed = json(&ok(pgkeep(&pg, repo).args(["--json", "list"])));
    let window = &listed["window"];
    assert_eq!(window["end"]["kind"], "newest_commit", "{listed:#}");
    let end = utc(window["to"].as_str().unwrap());
    assert!(end < utc(&target), "{listed:#}");
    let table = String::from_utf8_lossy(&ok(pgkeep(&pg, repo).arg("list")).stdout).into_owned();
    let shown = table
        .lines()
        .find_map(|l| l.strip_prefix("point-in-time recovery window: "))
        .unwrap_or_else(|| panic!("no window in:\n{table}"));
    let shown_end = shown
        .split(" to ")
        .nth(1)
        .unwrap()
        .split(" (")
        .next()
        .unwrap();
    let written = end.format("%Y-%m-%d %H:%M:%S%.6f UTC").to_string();
    assert_eq!(shown_end, written, "{table}");

    // A target after it is refused before anything is written, saying why and what to do.
    let (_, said) = refused(&pg, repo, "too-recent", &["--at", &target]);
    for part in ["newest commit in the WAL archive", "--switch-wal", &written] {
        assert!(
            said.contains(part),
            "{}: {part:?} not in:\n{said}",
            repo.url
        );
    }
    // An LSN past the end of a complete archive: past the end, not a missing segment.
    ok(pgkeep(&pg, repo).args(["verify", "--wal"]));
    let (_, said) = refused(&pg, repo, "lsn-past", &["--lsn", &past_lsn]);
    assert!(said.contains("past the end of the WAL archive"), "{said}");
    assert!(!said.contains("missing segment"), "{said}");

    // With --switch-wal the same targets restore: phase 2 is in, nothing after the target.
    let (restored, result) = restore(&pg, repo, "switched", &["--at", &target, "--switch-wal"]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    let segment = result["switched_wal"]["segment"].as_str().unwrap();
    assert_eq!(result["plan"]["wal_to"], segment, "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
    let reached = utc(result["report"]["reached_time"].as_str().unwrap());
    assert!(reached < utc(&target), "{result:#}");
    drop(restored);
    let (restored, result) = restore(&pg, repo, "switched-lsn", &["--lsn", &past_lsn]);
    assert_eq!(result["report"]["state"], "paused", "{result:#}");
    assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
}

#[test]
fn a_target_after_the_last_archived_commit_is_refused_and_switch_wal_restores_it() {
    incident_of_a_few_minutes_ago(&Repo::local());
    if let Some(garage) = Garage::shared() {
        incident_of_a_few_minutes_ago(&Repo::garage(
            garage,
            "pitr-incident",
            &garage.endpoint(),
            "",
        ));
    }
}

#[test]
fn switch_wal_refuses_a_standby_and_another_cluster_before_anything_is_written() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    ok(pgkeep(&pg, &repo).args(["backup", "physical", "--wal-timeout", "120"]));
    // A standby of the repository's cluster answers, but cannot switch its WAL.
    let standby = PgCluster::builder()
        .setting("hot_standby", "on")
        .standby_of(&pg)
        .start();
    // The segment the insert position is in, by arithmetic: pg_walfile_name names the previous
    // segment while the position sits exactly on a boundary (after the backup's WAL switch), and
    // the next running-xacts record the server logs by itself would then seem a switch.
    let segment =
        || pg.psql("SELECT floor((pg_current_wal_lsn() - '0/0'::pg_lsn) / 16777216)::bigint");
    let before = segment();
    let args = ["--latest", "--switch-wal"];
    let (code, said) = refused(&standby, &repo, "from-standby", &args);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("is a standby"), "{said}");
    assert!(said.contains("fix: point postgres.conninfo"), "{said}");

    // Another cluster altogether: its system identifier is not the backups'.
    let other = PgCluster::start();
    let (code, said) = refused(&other, &repo, "from-other", &args);
    assert_eq!(code, 1, "{said}");
    assert!(said.contains("is not the cluster whose backups"), "{said}");
    let other_id = other.psql("SELECT system_identifier FROM pg_control_system()");
    assert!(said.contains(&other_id), "{said}");
    // Neither switched anything on the primary.
    assert_eq!(segment(), before);
}
