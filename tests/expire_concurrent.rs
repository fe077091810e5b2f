//! `pgkeep expire` while a backup runs in another process: the running backup's directory (a
//! leftover until its manifest is written) is left alone because of its lease, even with no grace
//! at all, and the backup completes; a killed backup's lease expires by time, and its leftovers
//! go once older than the grace. The backup is made slow by a lock the test holds on its table,
//! on which pg_dump waits.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/expire.rs"]
mod expire_helpers;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/table_lock.rs"]
mod table_lock;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime};

use common::{json, stderr};
use expire_helpers::{config_file, pgkeep_in, server_home};
use repo::{Repo, archiving_cluster, ok, pgkeep};
use table_lock::{lock, locks, unlock, wait_for};

use pgkeep_testkit::PgCluster;
use serde_json::Value;

/// The lease lifetime the tests configure: renewed every 0.8 s.
const TTL_SECS: u64 = 4;

/// `backup logical --db shop --globals`, started in another process; returns once its pg_dump
/// waits on the lock (the globals are stored by then).
fn start_backup(pg: &PgCluster, repo: &Repo, config: &Path) -> Child {
    let child = pgkeep(pg, repo)
        .arg("--config")
        .arg(config)
        .args(["--json", "backup", "logical", "--db", "shop", "--globals"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("pg_dump to wait on the lock", || {
        locks(pg, "NOT l.granted") == "1"
    });
    child
}

/// `pgkeep --config <config> --json expire <args>`: its JSON.
fn expire(pg: &PgCluster, repo: &Repo, config: &Path, args: &[&str]) -> Value {
    json(&ok(pgkeep(pg, repo)
        .arg("--config")
        .arg(config)
        .args(["--json", "expire"])
        .args(args)))
}

/// The plan's leftover under backup `id`'s directory, and what expire does with it.
fn leftover_action(plan: &Value, id: &str) -> String {
    let prefix = format!("main/backups/{id}/");
    plan["leftovers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["prefix"] == prefix.as_str() && l["kind"] == "incomplete")
        .unwrap_or_else(|| panic!("no incomplete leftover {prefix}: {plan:#}"))["action"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Sets the modification time of every file under `dir` back by `age`.
fn backdate(dir: &Path, age: Duration) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            backdate(&path, age);
        } else {
            let file = std::fs::File::options().write(true).open(&path).unwrap();
            file.set_modified(SystemTime::now() - age).unwrap();
        }
    }
}

/// A local repository, a server with database `shop` (table `items`), and a configuration file
/// of `keep-last 1` for logical backups with leases of [`TTL_SECS`] (its directory, and the file).
fn shop() -> (Repo, PgCluster, tempfile::TempDir, std::path::PathBuf) {
    let repo = Repo::local();
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE items (n int); INSERT INTO items VALUES (1)",
    );
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &shop_config(dir.path(), "locks"));
    (repo, pg, dir, config)
}

/// `keep-last 1`, leases of [`TTL_SECS`], a lock wait of 1s, and the work locks in `dir/locks`.
fn shop_config(dir: &Path, locks: &str) -> String {
    format!(
        "lock-dir = \"{}/{locks}\"\n[schedule]\nlock-wait = \"1s\"\n[retention]\nlease-ttl = \"{TTL_SECS}s\"\n[retention.logical]\nkeep-last = 1\n",
        dir.display()
    )
}

/// The same configuration as on another machine that shares the repository: its own work
/// locks, so that only the backups' leases keep its expire away from them.
fn elsewhere(dir: &Path) -> std::path::PathBuf {
    let other = dir.join("elsewhere");
    std::fs::create_dir_all(&other).unwrap();
    config_file(&other, &shop_config(dir, "elsewhere-locks"))
}

#[test]
fn expire_leaves_a_running_backup_alone_and_removes_a_killed_runs_leftovers() {
    let (repo, pg, dir, here) = shop();
    let root = repo.root().unwrap();
    let config = elsewhere(dir.path());

    // A backup waits on the lock: its directory holds the globals and no manifest.
    let session = lock(&pg);
    let running = start_backup(&pg, &repo, &here);
    // Here, expire --confirm waits for the backup's work lock (1s), then gives up naming it.
    std::thread::sleep(Duration::from_millis(500));
    let waited = pgkeep(&pg, &repo)
        .arg("--config")
        .arg(&here)
        .args(["expire", "--confirm"])
        .output()
        .unwrap();
    assert_eq!(waited.status.code(), Some(1), "{}", stderr(&waited));
    assert!(
        stderr(&waited).contains("expire did not start"),
        "{}",
        stderr(&waited)
    );
    // On another machine sharing the repository, the backup's lease protects it.
    let plan = &expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"])["plan"];
    let lease = &plan["live_leases"][0];
    assert_eq!(lease["purpose"], "backup-logical", "{plan:#}");
    let id = lease["backup"].as_str().unwrap().to_string();
    assert_eq!(leftover_action(plan, &id), "leased", "{plan:#}");
    assert!(
        root.join(format!("main/backups/{id}/globals.sql.zst"))
            .exists()
    );
    // Longer than the lease lives without renewal: it is renewed, and still protects the backup.
    std::thread::sleep(Duration::from_secs(2 * TTL_SECS + 1));
    let plan = &expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"])["plan"];
    assert_eq!(leftover_action(plan, &id), "leased", "{plan:#}");
    assert!(
        plan["live_leases"][0]["renewed_at"] != lease["renewed_at"],
        "{plan:#}"
    );
    assert_eq!(plan["expired_leases"], serde_json::json!([]), "{plan:#}");

    // The backup completes, whole, and its lease is gone.
    unlock(session);
    let out = running.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json(&out)["id"], id.as_str());
    let listed = json(&ok(pgkeep(&pg, &repo).args(["--json", "list"])));
    assert_eq!(listed["backups"][0]["id"], id.as_str(), "{listed:#}");
    assert_eq!(listed["leftovers"], serde_json::json!([]), "{listed:#}");
    ok(pgkeep(&pg, &repo).args(["verify", &id]));
    let plan = &expire(&pg, &repo, &config, &[])["plan"];
    assert_eq!(plan["live_leases"], serde_json::json!([]), "{plan:#}");

    // A backup killed midway: its lease protects its directory until it expires by time.
    let session = lock(&pg);
    let mut killed = start_backup(&pg, &repo, &here);
    let plan = &expire(&pg, &repo, &config, &[])["plan"];
    let lease = &plan["live_leases"][0];
    let dead = lease["backup"].as_str().unwrap().to_string();
    killed.kill().unwrap();
    killed.wait().unwrap();
    unlock(session);
    let plan = &expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"])["plan"];
    assert_eq!(leftover_action(plan, &dead), "leased", "{plan:#}");
    std::thread::sleep(Duration::from_secs(TTL_SECS + 1));
    // Expired: reported and removed; the leftover stays while younger than the grace (6h).
    let done = expire(&pg, &repo, &config, &["--confirm"]);
    assert_eq!(
        done["plan"]["expired_leases"][0]["backup"],
        dead.as_str(),
        "{done:#}"
    );
    assert_eq!(leftover_action(&done["plan"], &dead), "young", "{done:#}");
    assert_eq!(done["deleted"]["leases"], 1, "{done:#}");
    assert_eq!(done["deleted"]["leftovers"], 0, "{done:#}");
    assert!(
        std::fs::read_dir(root.join("main/leases"))
            .unwrap()
            .next()
            .is_none()
    );
    // Older than the grace, it goes: the objects, the killed put's staging file, the directory.
    let killed_dir = root.join(format!("main/backups/{dead}"));
    backdate(&killed_dir, Duration::from_secs(7 * 3600));
    let done = expire(&pg, &repo, &config, &["--confirm"]);
    assert_eq!(leftover_action(&done["plan"], &dead), "remove", "{done:#}");
    assert!(
        done["deleted"]["leftovers"].as_u64().unwrap() >= 1,
        "{done:#}"
    );
    assert!(!killed_dir.exists(), "{done:#}");
    let listed = json(&ok(pgkeep(&pg, &repo).args(["--json", "list"])));
    assert_eq!(listed["leftovers"], serde_json::json!([]), "{listed:#}");
    assert_eq!(listed["backups"][0]["id"], id.as_str(), "{listed:#}");
}

#[test]
fn expire_spares_a_backup_that_a_restore_is_reading_until_the_restore_ends() {
    let (repo, pg, _dir, config) = shop();
    let root = repo.root().unwrap();
    let backup = |pg: &PgCluster| {
        let out = ok(pgkeep(pg, &repo).args(["--json", "backup", "logical", "--db", "shop"]));
        json(&out)["id"].as_str().unwrap().to_string()
    };
    let older = backup(&pg);
    std::thread::sleep(Duration::from_millis(1100)); // a new id second
    let newer = backup(&pg);

    // A restore of the older backup waits on the lock (pg_restore's DROP TABLE of --clean).
    let session = lock(&pg);
    let restoring = pgkeep(&pg, &repo)
        .arg("--config")
        .arg(&config)
        .args(["restore", "--db", "shop", "--clean", "--backup", &older])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for("pg_restore to wait on the lock", || {
        locks(&pg, "NOT l.granted") == "1"
    });
    // keep-last 1 would expire it, but it is in use: kept, and its objects stay, twice the
    // lease's lifetime later too.
    for _ in 0..2 {
        let done = expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"]);
        let (kept, expired) = expire_helpers::verdicts(&done["plan"]);
        assert!(expired.is_empty(), "{done:#}");
        let why = &kept.iter().find(|(id, _)| *id == older).unwrap().1;
        assert!(
            why.contains("in use by a logical restore"),
            "{why}: {done:#}"
        );
        assert_eq!(
            done["deleted"]["backups"],
            serde_json::json!([]),
            "{done:#}"
        );
        assert!(
            root.join(format!("main/backups/{older}/manifest.json"))
                .exists()
        );
        std::thread::sleep(Duration::from_secs(TTL_SECS + 1));
    }

    // The restore ends well; then the backup expires as the policy says.
    unlock(session);
    let out = restoring.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(pg.psql_db("shop", "SELECT count(*) FROM items"), "1");
    let done = expire(&pg, &repo, &config, &["--confirm"]);
    let (kept, expired) = expire_helpers::verdicts(&done["plan"]);
    assert_eq!(expired, vec![older.clone()], "{done:#}");
    assert_eq!(kept[0].0, newer, "{done:#}");
    assert!(
        !root.join(format!("main/backups/{older}")).exists(),
        "{done:#}"
    );
}

#[test]
fn a_restored_server_that_has_not_recovered_yet_keeps_its_backup_and_wal_from_expire() {
    let repo = Repo::local();
    let root = repo.root().unwrap();
    let pg = archiving_cluster(&repo);
    let (home, config) = server_home("[retention.physical]\nkeep-last = 1\n");
    let pgkeep_here = || pgkeep_in(&pg, &repo, home.path(), &config);
    let backup = || {
        json(&ok(pgkeep_here().args(["--json", "backup", "physical"])))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let older = backup();
    std::thread::sleep(Duration::from_millis(1100));
    let newer = backup();

    // Restored, not started: its server will read the older backup's WAL when it starts.
    let restored = home.path().join("restored");
    let out = ok(pgkeep_here()
        .args([
            "--json", "restore", "--backup", &older, "--latest", "--pgdata",
        ])
        .arg(&restored));
    let result = json(&out);
    assert_eq!(result["report"]["state"], "not started", "{result:#}");
    let notes = result["report"]["notes"].to_string();
    assert!(notes.contains("kept from `pgkeep expire`"), "{result:#}");
    let plan = &expire(&pg, &repo, &config, &[])["plan"];
    let (kept, expired) = expire_helpers::verdicts(plan);
    assert!(expired.is_empty(), "{plan:#}");
    let why = &kept.iter().find(|(id, _)| *id == older).unwrap().1;
    assert!(
        why.contains("in use by a restored server still recovering"),
        "{why}"
    );
    let lease = &plan["live_leases"][0];
    assert_eq!(lease["purpose"], "recovery", "{plan:#}");

    // Once the operator removes the lease (the server promoted), the policy applies again.
    std::fs::remove_file(root.join(lease["key"].as_str().unwrap())).unwrap();
    let (kept, expired) = expire_helpers::verdicts(&expire(&pg, &repo, &config, &[])["plan"]);
    assert_eq!(expired, vec![older]);
    assert_eq!(kept[0].0, newer);
}
