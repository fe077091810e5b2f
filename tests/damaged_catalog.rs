//! A damaged manifest makes that one backup unusable, never the others: `list`, `verify --all` and
//! restores by time go on with the good backups and say what they passed over; a backup named by id
//! is refused with the reason. Leftovers (a backup directory without a manifest) are reported with
//! their size. Local and Garage repositories, a real cluster.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::os::unix::fs::MetadataExt as _;

use common::{json, stderr};
use repo::{
    Repo, archiving_cluster, free_port, ok, pgkeep, pgkeep_as_server, repos, run, switch_and_wait,
};

use pgkeep_testkit::PgCluster;
use serde_json::Value;

fn backup(pg: &PgCluster, repo: &Repo) -> Value {
    let made = json(&ok(
        pgkeep(pg, repo).args(["--json", "backup", "logical", "--db", "shop"])
    ));
    // Ids are UTC seconds: the next backup starts in another second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    made
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_damaged_manifest_makes_only_its_own_backup_unusable() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db("shop", "CREATE TABLE items (n int)");
    for repo in repos("damaged-manifest") {
        pg.psql_db("shop", "TRUNCATE items; INSERT INTO items VALUES (1)");
        let b1 = backup(&pg, &repo);
        pg.psql_db("shop", "INSERT INTO items VALUES (2)");
        let b2 = backup(&pg, &repo);
        pg.psql_db("shop", "INSERT INTO items VALUES (3)");
        let b3 = backup(&pg, &repo);
        let (id1, id2, id3) = (
            b1["id"].as_str().unwrap(),
            b2["id"].as_str().unwrap(),
            b3["id"].as_str().unwrap(),
        );
        let manifest = |id: &str| format!("main/backups/{id}/manifest.json");
        // b2's manifest cut short; a fourth directory holding a copy of b1's manifest; a fifth
        // with a payload and no manifest (a killed run).
        repo.put(&manifest(id2), b"{\"format\": 1, \"id\": ");
        repo.put(&manifest("20991231T235959Z"), &repo.get(&manifest(id1)));
        repo.put("main/backups/20200101T000000Z/shop.dump.zst", &[7u8; 1000]);

        // list: the good backups, the damaged ones flagged, the leftover with its size; exit 1.
        let out = run(pgkeep(&pg, &repo).arg("list"));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let table = stdout(&out);
        for id in [id1, id3] {
            assert!(table.contains(id), "{table}");
        }
        assert!(table.contains(&format!("{id2}   DAMAGED")), "{table}");
        assert!(table.contains("20991231T235959Z   DAMAGED"), "{table}");
        assert!(table.contains("describes backup"), "{table}");
        assert!(table.contains("main/backups/20200101T000000Z/"), "{table}");
        assert!(table.contains("1000 B"), "{table}");
        assert!(
            stderr(&out).contains("2 backup(s) cannot be used"),
            "{}",
            stderr(&out)
        );
        let listed = json(&run(pgkeep(&pg, &repo).args(["--json", "list"])));
        let ids: Vec<&str> = listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, [id1, id3], "{listed:#}");
        assert_eq!(listed["damaged"][0]["id"], id2, "{listed:#}");
        assert_eq!(listed["leftovers"][0]["kind"], "incomplete", "{listed:#}");
        assert_eq!(listed["leftovers"][0]["bytes"], 1000, "{listed:#}");

        // verify --all: the damaged ones are problems, the good ones are checked all the same.
        let out = run(pgkeep(&pg, &repo).args(["verify", "--all"]));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let said = stdout(&out);
        assert!(said.contains(&format!("backup {id1}: ok")), "{said}");
        assert!(said.contains(&format!("backup {id3}: ok")), "{said}");
        assert!(said.contains(&format!("backup {id2}: FAILED")), "{said}");
        assert!(
            said.contains("leftover: main/backups/20200101T000000Z/"),
            "{said}"
        );
        let checks = json(&run(pgkeep(&pg, &repo).args(["--json", "verify", "--all"])));
        assert_eq!(checks["backups"].as_array().unwrap().len(), 4, "{checks:#}");
        assert_eq!(
            checks["leftovers"].as_array().unwrap().len(),
            1,
            "{checks:#}"
        );

        // Restore by time: the newest good backup, the damaged one passed over and named.
        let out = ok(pgkeep(&pg, &repo).args([
            "restore",
            "--db",
            "shop",
            "--into",
            "shop_now",
            "--at",
            "2099-12-31 23:59:59+00",
        ]));
        assert!(
            stderr(&out).contains(&format!("skipped backup {id2}")),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains(id3), "{}", stderr(&out));
        assert_eq!(pg.psql_db("shop_now", "SELECT count(*) FROM items"), "3");
        // A time between b2 and b3 falls back to b1.
        let between = b3["started_at"].as_str().unwrap();
        ok(pgkeep(&pg, &repo).args([
            "restore",
            "--db",
            "shop",
            "--into",
            "shop_then",
            "--at",
            between,
        ]));
        assert_eq!(pg.psql_db("shop_then", "SELECT count(*) FROM items"), "1");

        // The damaged backup by id: refused with the reason, nothing created.
        let out = run(pgkeep(&pg, &repo).args([
            "restore", "--db", "shop", "--into", "shop_bad", "--backup", id2,
        ]));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out).contains(&format!("backup {id2} cannot be used")),
            "{}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("pgkeep list"), "{}", stderr(&out));
        assert_eq!(
            pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'shop_bad'"),
            "0"
        );
        let out = run(pgkeep(&pg, &repo).args(["verify", id2]));
        assert_eq!(out.status.code(), Some(1));
        assert!(stdout(&out).contains("FAILED"), "{}", stdout(&out));
        for db in ["shop_now", "shop_then"] {
            pg.psql(&format!("DROP DATABASE {db}"));
        }
    }
}

#[test]
fn a_damaged_manifest_does_not_block_a_point_in_time_restore() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)");
    let made = json(&ok(
        pgkeep_as_server(&pg, &repo, home.path()).args(["--json", "backup", "physical"])
    ));
    pg.psql("INSERT INTO t VALUES (2)");
    // A newer backup of the other kind whose manifest is damaged.
    repo.put("main/backups/20991231T235959Z/manifest.json", b"not json");
    PgCluster::chown_for_server(&repo.root().unwrap());
    switch_and_wait(|sql| pg.psql(sql));
    let target = home.path().join("restored");
    let port = free_port();
    let out = ok(pgkeep_as_server(&pg, &repo, home.path())
        .args(["restore", "--latest", "--pgdata"])
        .arg(&target)
        .args([
            "--start",
            "--target-action",
            "shutdown",
            "--port",
            &port.to_string(),
        ]));
    let said = stderr(&out);
    assert!(said.contains("skipped backup 20991231T235959Z"), "{said}");
    assert!(said.contains(made["id"].as_str().unwrap()), "{said}");
    assert!(target.join("PG_VERSION").exists());
    // The recovery files pgkeep writes are private, as PostgreSQL keeps its own, whatever the
    // umask (here 000).
    let unstarted = home.path().join("unstarted");
    let mut umask = std::process::Command::new("sh");
    umask
        .args(["-c", "umask 000 && exec \"$0\" \"$@\""])
        .arg(env!("CARGO_BIN_EXE_pgkeep"))
        .args(["--repo", &repo.url, "restore", "--latest", "--pgdata"])
        .arg(&unstarted)
        .env("HOME", home.path())
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres");
    PgCluster::as_server(&mut umask);
    ok(&mut umask);
    for written in ["postgresql.auto.conf", "recovery.signal"] {
        let mode = std::fs::metadata(unstarted.join(written)).map(|m| m.mode() & 0o777);
        assert_eq!(mode.ok(), Some(0o600), "{written}");
    }

    // The window's start as `list` prints it (to the microsecond) is a target it accepts.
    let table = stdout(&run(pgkeep_as_server(&pg, &repo, home.path()).arg("list")));
    let start = table
        .lines()
        .find_map(|l| l.strip_prefix("point-in-time recovery window: "))
        .and_then(|w| w.split(" to ").next())
        .unwrap_or_else(|| panic!("no window: {table}"))
        .to_string();
    ok(pgkeep_as_server(&pg, &repo, home.path())
        .args(["restore", "--at", &start, "--pgdata"])
        .arg(home.path().join("at-start")));
}

/// What `verify` (the newest) says, and whether it failed.
fn verify_newest(pg: &PgCluster, repo: &Repo) -> (Option<i32>, String) {
    let out = run(pgkeep(pg, repo).arg("verify"));
    (
        out.status.code(),
        format!("{}{}", stdout(&out), stderr(&out)),
    )
}

#[test]
fn unreadable_foreign_and_misshapen_manifests_are_damaged_backups_too() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    let other = PgCluster::start();
    other.psql("CREATE DATABASE shop");
    let repo = Repo::local();
    let theirs = Repo::local();
    let good = backup(&pg, &repo)["id"].as_str().unwrap().to_string();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(backup(&pg, &repo)["id"].as_str().unwrap().to_string());
    }
    let foreign = backup(&other, &theirs)["id"].as_str().unwrap().to_string();
    let manifest = |id: &str| format!("main/backups/{id}/manifest.json");
    let root = repo.root().unwrap();

    // A manifest nobody may read (pgkeep runs as the servers' user here, which root is not).
    std::fs::set_permissions(
        root.join(manifest(&ids[0])),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    // Parses, but cannot be a backup pgkeep wrote: physical without its WAL facts, no objects.
    let mut fake: Value = serde_json::from_slice(&repo.get(&manifest(&ids[1]))).unwrap();
    fake["kind"] = "physical".into();
    repo.put(&manifest(&ids[1]), fake.to_string().as_bytes());
    let mut empty: Value = serde_json::from_slice(&repo.get(&manifest(&ids[2]))).unwrap();
    empty["objects"] = serde_json::json!([]);
    repo.put(&manifest(&ids[2]), empty.to_string().as_bytes());
    // Another cluster's backup copied in under this cluster name (same layout, same name).
    let copy = root.join("main/backups").join(&foreign);
    std::fs::create_dir(&copy).unwrap();
    for entry in
        std::fs::read_dir(theirs.root().unwrap().join("main/backups").join(&foreign)).unwrap()
    {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
    }
    // A killed wal-push's staging file.
    std::fs::create_dir_all(root.join("main/wal/00000001")).unwrap();
    std::fs::write(
        root.join("main/wal/00000001/.pgkeep-tmp-0123456789abcdef"),
        [0u8; 300],
    )
    .unwrap();
    PgCluster::chown_for_server(&root);
    std::fs::set_permissions(
        root.join(manifest(&ids[0])),
        std::os::unix::fs::PermissionsExt::from_mode(0o000),
    )
    .unwrap();
    let as_server = |args: &[&str]| {
        let mut cmd = pgkeep(&pg, &repo);
        PgCluster::as_server(&mut cmd);
        run(cmd.args(args))
    };

    let out = as_server(&["--json", "list"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let listed = json(&out);
    let damaged = listed["damaged"].to_string();
    assert_eq!(listed["backups"][0]["id"], good.as_str(), "{listed:#}");
    assert_eq!(listed["backups"].as_array().unwrap().len(), 2, "{listed:#}");
    for words in [
        "its manifest cannot be read",
        "says physical but has no WAL facts",
        "lists no object",
        "a backup of another PostgreSQL cluster",
    ] {
        assert!(damaged.contains(words), "{words}: {listed:#}");
    }
    assert!(
        listed["leftovers"]
            .to_string()
            .contains("main/wal/00000001/"),
        "{listed:#}"
    );

    // A restore by time that finds nothing says what it passed over.
    let out = as_server(&[
        "restore",
        "--db",
        "shop",
        "--into",
        "x",
        "--at",
        "2000-01-01 00:00:00+00",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("were passed over because their manifest cannot be used"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains(&ids[0]), "{}", stderr(&out));
    // The foreign backup is never restored.
    let out = as_server(&[
        "restore", "--db", "shop", "--into", "x", "--backup", &foreign,
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        pg.psql("SELECT count(*) FROM pg_database WHERE datname = 'x'"),
        "0"
    );

    // verify: the newest directory is the damaged copy, and it is reported as failed.
    let mut cmd = pgkeep(&pg, &repo);
    PgCluster::as_server(&mut cmd);
    let (code, said) = {
        let out = run(cmd.arg("verify"));
        (
            out.status.code(),
            format!("{}{}", stdout(&out), stderr(&out)),
        )
    };
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains("FAILED"), "{said}");
    // Every manifest damaged: verify still reports the newest as failed, not "no backup".
    let solo = Repo::local();
    let id = backup(&pg, &solo)["id"].as_str().unwrap().to_string();
    solo.put(&manifest(&id), b"]");
    let (code, said) = verify_newest(&pg, &solo);
    assert_eq!(code, Some(1), "{said}");
    assert!(said.contains(&format!("backup {id}: FAILED")), "{said}");
}
