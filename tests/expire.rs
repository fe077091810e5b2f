//! `pgkeep expire`, `pin` and `unpin` end to end, with the built binary and real clusters: the
//! policy keeps exactly the expected backups (their end times rewritten to known values around a
//! daylight saving change, per-database series, a pin, a damaged backup, a leftover), the dry run
//! changes no byte of the repository, `--confirm` deletes on a local directory and on Garage, and
//! after expiring physical backups a point-in-time restore inside the remaining window works while
//! one before it is refused naming the window — with wal-push archiving all along.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/expire.rs"]
mod expire_helpers;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{json, stderr};
use expire_helpers::{config_file, pgkeep_in, server_home, snapshot, verdicts};
use repo::{Repo, archiving_cluster, fails, free_port, ok, pgkeep, repos, run};

use pgkeep_testkit::PgCluster;
use serde_json::Value;

/// `backup logical --db <db>`, then a second's pause (ids are UTC seconds); returns the id.
fn backup(pg: &PgCluster, repo: &Repo, db: &str) -> String {
    let made = json(&ok(
        pgkeep(pg, repo).args(["--json", "backup", "logical", "--db", db])
    ));
    std::thread::sleep(Duration::from_millis(1100));
    made["id"].as_str().unwrap().to_string()
}

/// Rewrites backup `id`'s manifest so that it ended at `end` (RFC 3339).
fn set_end(repo: &Repo, id: &str, end: &str) {
    let key = format!("main/backups/{id}/manifest.json");
    let mut manifest: Value = serde_json::from_slice(&repo.get(&key)).unwrap();
    manifest["started_at"] = end.into();
    manifest["finished_at"] = end.into();
    repo.put(&key, &serde_json::to_vec_pretty(&manifest).unwrap());
}

/// `pgkeep --config <config> --json expire <args>`, which must succeed; its JSON.
fn expire(pg: &PgCluster, repo: &Repo, config: &Path, args: &[&str]) -> Value {
    json(&ok(pgkeep(pg, repo)
        .arg("--config")
        .arg(config)
        .args(["--json", "expire"])
        .args(args)))
}

/// The ids of the backups `list` shows (it exits 1 here: the repository holds a damaged one).
fn listed(pg: &PgCluster, repo: &Repo) -> Vec<String> {
    let out = run(pgkeep(pg, repo).args(["--json", "list"]));
    json(&out)["backups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect()
}

/// Whether anything is stored under `prefix`.
fn stored(repo: &Repo, prefix: &str) -> bool {
    let storage = repo.storage();
    !repo::block_on(storage.list(prefix)).unwrap().is_empty()
}

#[test]
fn expire_keeps_exactly_what_the_policy_keeps_and_deletes_the_rest() {
    let pg = PgCluster::start();
    for db in ["a", "b"] {
        pg.psql(&format!("CREATE DATABASE {db}"));
        pg.psql_db(db, "CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    }
    let dir = tempfile::tempdir().unwrap();
    // keep-daily counts days in Belgrade: 2026-03-29 02:00 CET became 03:00 CEST.
    let config = config_file(
        dir.path(),
        "[retention]\ntime-zone = \"Europe/Belgrade\"\n[retention.logical]\nkeep-daily = 2\n",
    );
    for repo in repos("expire-policy") {
        let [a1, a2, a3, b1, b2, b3] = dated_backups(&pg, &repo);
        // A damaged backup and a leftover of a killed run, written just now.
        repo.put("main/backups/20200101T000000Z/manifest.json", b"{ not json");
        repo.put(
            "main/backups/20200102T000000Z/db-0001-a.dump.zst",
            &[7u8; 1000],
        );

        pin_refusals(&pg, &repo);
        ok(pgkeep(&pg, &repo).args(["pin", &a2]));
        let pinned = json(&ok(
            pgkeep(&pg, &repo).args(["--json", "pin", &a2, "--reason", "audit"])
        ));
        assert_eq!(pinned["pin"]["reason"], "audit", "{pinned:#}");
        assert_eq!(pinned["change"], "reason_replaced", "{pinned:#}");
        // Pinning again without a reason keeps the pin as it was.
        let again = ok(pgkeep(&pg, &repo).args(["pin", &a2]));
        let again = String::from_utf8_lossy(&again.stdout);
        assert!(
            again.contains(&format!("backup {a2} is already pinned (audit)")),
            "{again}"
        );

        // The dry run: exactly the expected verdicts, and not one byte changed.
        let before = repo.root().map(|root| snapshot(&root));
        let dry = expire(&pg, &repo, &config, &[]);
        assert_eq!(
            repo.root().map(|root| snapshot(&root)),
            before,
            "{}",
            repo.url
        );
        let plan = &dry["plan"];
        let (kept, expired) = verdicts(plan);
        let kept_expected = [
            (b2.clone(), "keep-daily 2026-03-28 (database b)".to_string()),
            (a2.clone(), "pinned: audit".to_string()),
            (a3.clone(), "keep-daily 2026-03-29 (database a)".to_string()),
            (
                b3.clone(),
                "newest, keep-daily 2026-03-30 (database b)".to_string(),
            ),
        ];
        assert_eq!(kept, kept_expected, "{plan:#}");
        assert_eq!(expired, [b1.clone(), a1.clone()], "{plan:#}");
        assert_eq!(dry["confirmed"], false);
        assert_eq!(plan["damaged"][0]["id"], "20200101T000000Z", "{plan:#}");
        assert_eq!(plan["leftovers"][0]["action"], "young", "{plan:#}");
        assert!(plan["to_free"]["backups"].as_u64().unwrap() > 0, "{plan:#}");
        assert!(plan["wal"]["left_alone"].is_string(), "{plan:#}");
        let human = ok(pgkeep(&pg, &repo)
            .arg("--config")
            .arg(&config)
            .arg("expire"));
        let human = String::from_utf8_lossy(&human.stdout);
        assert!(human.contains(&format!("EXPIRE  {a1}")), "{human}");
        assert!(human.contains("nothing was changed"), "{human}");
        assert!(human.contains("damaged backups, left alone"), "{human}");

        // --confirm: the two expired backups are gone, manifest and all; the rest is listed.
        let done = expire(&pg, &repo, &config, &["--confirm"]);
        assert_eq!(
            done["deleted"]["backups"],
            serde_json::json!([b1, a1]),
            "{done:#}"
        );
        assert_eq!(done["deleted"]["leftovers"], 0, "{done:#}");
        for id in [&a1, &b1] {
            assert!(!stored(&repo, &format!("main/backups/{id}/")), "{id}");
        }
        if let Some(root) = repo.root() {
            assert!(!root.join(format!("main/backups/{a1}")).exists());
        }
        // (`list` orders by id.)
        assert_eq!(
            listed(&pg, &repo),
            [a2.clone(), a3.clone(), b2.clone(), b3.clone()]
        );
        // The leftover goes once older than the grace (here none); the damaged backup stays.
        let done = expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"]);
        assert_eq!(done["deleted"]["leftovers"], 1, "{done:#}");
        assert!(!stored(&repo, "main/backups/20200102T000000Z/"));
        assert!(stored(&repo, "main/backups/20200101T000000Z/manifest.json"));

        unpinned_it_expires(&pg, &repo, &config, &a2);
        a_future_backup_refuses_confirm(&pg, &repo, &config, &a3);
    }
}

/// A backup that ends in the future (a clock jumped): the dry run warns and names it, `--confirm`
/// refuses naming it, its end and the fix, and deletes nothing.
fn a_future_backup_refuses_confirm(pg: &PgCluster, repo: &Repo, config: &Path, id: &str) {
    set_end(repo, id, "2099-01-01T00:00:00Z");
    let dry = expire(pg, repo, config, &[]);
    let future = &dry["plan"]["future_backups"];
    assert_eq!(future[0]["id"], id, "{dry:#}");
    assert_eq!(future[0]["end"], "2099-01-01T00:00:00Z", "{dry:#}");
    let human = ok(pgkeep(pg, repo).arg("--config").arg(config).arg("expire"));
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains(&format!(
            "WARNING: backup {id} (logical) ends at 2099-01-01 00:00:00 UTC, more than 5 minutes after now"
        )),
        "{human}"
    );
    let before = repo.root().map(|root| snapshot(&root));
    let out = run(pgkeep(pg, repo).arg("--config").arg(config).args([
        "expire",
        "--confirm",
        "--grace",
        "0s",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let said = stderr(&out);
    assert!(
        said.contains(&format!("backup {id} (ends 2099-01-01 00:00:00 UTC)")),
        "{said}"
    );
    assert!(said.contains("nothing was deleted"), "{said}");
    assert!(said.contains("fix: correct the clock"), "{said}");
    assert_eq!(
        repo.root().map(|root| snapshot(&root)),
        before,
        "{}",
        repo.url
    );
    assert!(stored(repo, &format!("main/backups/{id}/manifest.json")));
}

/// Six backups, three of database a and three of b, each rewritten to end at a known time.
fn dated_backups(pg: &PgCluster, repo: &Repo) -> [String; 6] {
    let ids = ["a", "a", "a", "b", "b", "b"].map(|db| backup(pg, repo, db));
    // a1..a3 all end on 2026-03-29 in Belgrade (in UTC a1 is on 03-28). b1 and b2 end before
    // every backup of a although they were taken after them: ids say nothing.
    for (id, end) in ids.iter().zip([
        "2026-03-28T23:30:00Z", // a1: 03-29 00:30 CET
        "2026-03-29T00:30:00Z", // a2: 03-29 01:30 CET
        "2026-03-29T01:30:00Z", // a3: 03-29 03:30 CEST
        "2026-03-27T12:00:00Z", // b1
        "2026-03-28T12:00:00Z", // b2
        "2026-03-29T22:30:00Z", // b3: 03-30 00:30 CEST
    ]) {
        set_end(repo, id, end);
    }
    ids
}

/// `pin` refuses unknown and damaged ids, naming them.
fn pin_refusals(pg: &PgCluster, repo: &Repo) {
    let said = fails(pgkeep(pg, repo).args(["pin", "20991231T000000Z"]));
    assert!(said.contains("no backup `20991231T000000Z`"), "{said}");
    let said = fails(pgkeep(pg, repo).args(["pin", "20200101T000000Z"]));
    assert!(
        said.contains("backup 20200101T000000Z cannot be used"),
        "{said}"
    );
    let said = fails(pgkeep(pg, repo).args(["unpin", "20991231T000000Z"]));
    assert!(said.contains("no backup `20991231T000000Z`"), "{said}");
    // What is no backup id, and a reason with control characters, are usage errors.
    for args in [
        &["pin", "a/b"][..],
        &["pin", ".."],
        &["pin", ""],
        &["unpin", "20200101T000000Z/"],
        &["pin", "20200101T000000Z", "--reason", "x\n\u{1b}[2J"],
    ] {
        let out = run(pgkeep(pg, repo).args(args));
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let said = stderr(&out);
        assert!(
            said.contains("is not a backup id (see pgkeep list)")
                || said.contains("pin --reason: `x\\n\\u{1b}[2J` is not a usable pin reason"),
            "{args:?}: {said}"
        );
    }
}

/// Unpinned, `a2` is one more backup of 2026-03-29 in database a: it expires next. Unpinning
/// twice is fine; a bad `--grace` is a usage error.
fn unpinned_it_expires(pg: &PgCluster, repo: &Repo, config: &Path, a2: &str) {
    let unpinned = json(&ok(pgkeep(pg, repo).args(["--json", "unpin", a2])));
    assert_eq!(unpinned["removed"]["reason"], "audit", "{unpinned:#}");
    let again = ok(pgkeep(pg, repo).args(["unpin", a2]));
    assert!(String::from_utf8_lossy(&again.stdout).contains("was not pinned"));
    let (_, expired) = verdicts(&expire(pg, repo, config, &[])["plan"]);
    assert_eq!(expired, [a2]);
    let out = run(pgkeep(pg, repo).args(["expire", "--grace", "6"]));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--grace: `6` is not a duration"),
        "{}",
        stderr(&out)
    );
}

/// A data directory a test restored into, with the server pgkeep started there: stopped and
/// removed on drop.
struct Restored {
    dir: std::path::PathBuf,
    port: u16,
    bin_dir: std::path::PathBuf,
}

impl Restored {
    fn psql(&self, sql: &str) -> String {
        let out = ok(Command::new(self.bin_dir.join("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(self.port.to_string())
            .args(["-d", "postgres", "-c", sql])
            .env_remove("PGHOST")
            .env_remove("PGPORT"));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Restored {
    fn drop(&mut self) {
        if self.dir.join("postmaster.pid").exists() {
            let _ = PgCluster::as_server(&mut Command::new(self.bin_dir.join("pg_ctl")))
                .arg("-D")
                .arg(&self.dir)
                .args(["stop", "-m", "fast", "-w"])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The archived WAL file names of timeline 1 in the local repository at `root`.
fn archived(root: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root.join("main/wal/00000001"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".zst").map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn after_expire_a_restore_inside_the_window_works_and_one_before_it_is_refused() {
    let repo = Repo::local();
    let root = repo.root().unwrap();
    let pg = archiving_cluster(&repo);
    let (home, config) = server_home("[retention.physical]\nkeep-last = 2\n");
    let pgkeep = || pgkeep_in(&pg, &repo, home.path(), &config);
    let physical = || json(&ok(pgkeep().args(["--json", "backup", "physical"])));
    let switch = || repo::switch_and_wait(|sql| pg.psql(sql));
    let phase = |n: u32| {
        pg.psql(&format!("INSERT INTO t VALUES ({n})"));
        let at = pg.psql("SELECT clock_timestamp()");
        std::thread::sleep(Duration::from_millis(1100));
        switch();
        at
    };
    pg.psql("CREATE TABLE t (phase int)");
    let b1 = physical();
    let between_b1_and_b2 = phase(1);
    let b2 = physical();
    let between_b2_and_b3 = phase(2);
    let b3 = physical();
    phase(3);
    let b2_start = b2["physical"]["start_segment"]
        .as_str()
        .unwrap()
        .to_string();
    let before = archived(&root);
    assert!(before.iter().any(|n| *n < b2_start), "{before:?}");

    let (first, second) = expire_while_archiving(&pg, &pgkeep);
    let (kept, expired) = verdicts(&first["plan"]);
    assert_eq!(expired, [b1["id"].as_str().unwrap()], "{first:#}");
    let id = |b: &Value| b["id"].as_str().unwrap().to_string();
    let kept_expected = [
        (id(&b2), "keep-last 2".to_string()),
        (id(&b3), "newest, keep-last 1".to_string()),
    ];
    assert_eq!(kept, kept_expected, "{first:#}");
    assert!(
        first["deleted"]["wal_files"].as_u64().unwrap() > 0,
        "{first:#}"
    );
    assert_eq!(
        second["deleted"]["backups"],
        serde_json::json!([]),
        "{second:#}"
    );
    // Every file before b2's start segment is gone (b1's .backup history file too); from it on,
    // everything is there.
    let after = archived(&root);
    assert!(after.iter().all(|n| *n >= b2_start), "{after:?}");
    for name in before.iter().filter(|n| **n >= b2_start) {
        assert!(after.contains(name), "{name} was deleted: {after:?}");
    }
    let listed = json(&ok(pgkeep().args(["--json", "list"])));
    assert_eq!(
        listed["window"]["from"], b2["physical"]["stop_time"],
        "{listed:#}"
    );

    restores_after_expire(
        &pg,
        &pgkeep,
        home.path(),
        &b2,
        [between_b1_and_b2, between_b2_and_b3],
    );

    // .history files always stay.
    let history = home.path().join("00000002.history");
    std::fs::write(&history, "1\t0/FF000000\tno recovery target specified\n").unwrap();
    PgCluster::chown_for_server(&history);
    ok(pgkeep().arg("wal-push").arg(&history));
    switch();
    let b4 = physical();
    let last = json(&ok(pgkeep().args(["--json", "expire", "--confirm"])));
    assert_eq!(
        last["deleted"]["backups"],
        serde_json::json!([b2["id"]]),
        "{last:#}"
    );
    assert_eq!(last["plan"]["wal"]["history_files"], 1, "{last:#}");
    assert!(root.join("main/wal/00000002/00000002.history.zst").exists());
    assert!(b4["id"].is_string());
}

/// `expire --confirm` twice while commits and segment switches keep wal-push archiving; every
/// push succeeds. Returns both runs' JSON.
fn expire_while_archiving(pg: &PgCluster, pgkeep: &dyn Fn() -> Command) -> (Value, Value) {
    let stop = AtomicBool::new(false);
    let runs = std::thread::scope(|s| {
        let archiving = s.spawn(|| {
            let mut switches = 0;
            while !stop.load(Ordering::Relaxed) || switches < 3 {
                pg.psql("INSERT INTO t VALUES (9)");
                repo::switch_and_wait(|sql| pg.psql(sql));
                switches += 1;
            }
            switches
        });
        let first = json(&ok(pgkeep().args(["--json", "expire", "--confirm"])));
        std::thread::sleep(Duration::from_secs(1));
        let second = json(&ok(pgkeep().args(["--json", "expire", "--confirm"])));
        stop.store(true, Ordering::Relaxed);
        assert!(archiving.join().unwrap() >= 3);
        (first, second)
    });
    assert_eq!(
        pg.psql("SELECT failed_count FROM pg_stat_archiver"),
        "0",
        "a wal-push failed while expire ran"
    );
    runs
}

/// After b1 expired: a restore to `at[1]` (after b2) works from b2 and its WAL; one to `at[0]`
/// (before b2) is refused, naming the window, and writes nothing.
fn restores_after_expire(
    pg: &PgCluster,
    pgkeep: &dyn Fn() -> Command,
    home: &Path,
    b2: &Value,
    at: [String; 2],
) {
    let restored = Restored {
        dir: home.join("inside"),
        port: free_port(),
        bin_dir: pg.bin_dir().to_path_buf(),
    };
    let out = ok(pgkeep()
        .args(["--json", "restore", "--at", &at[1], "--pgdata"])
        .arg(&restored.dir)
        .args(["--start", "--target-action", "promote", "--port"])
        .arg(restored.port.to_string()));
    assert_eq!(json(&out)["plan"]["backup"], b2["id"], "{}", stderr(&out));
    assert_eq!(
        restored.psql("SELECT string_agg(DISTINCT phase::text, ',') FROM t"),
        "1,2"
    );
    drop(restored);
    let refused = home.join("before");
    let out = run(pgkeep()
        .args(["restore", "--at", &at[0], "--pgdata"])
        .arg(&refused));
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("before the end of the oldest base backup"),
        "{said}"
    );
    let from = b2["physical"]["stop_time"].as_str().unwrap();
    let window_from = format!("the restorable window is {} {}", &from[..10], &from[11..19]);
    assert!(said.contains(&window_from), "{said}");
    assert!(!refused.exists());
}
