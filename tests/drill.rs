//! Restore drills end to end (issue 10, points 3 to 5): real clusters archiving through
//! `pgkeep wal-push`, a local repository, the built binary. A drill of good logical and physical
//! backups passes and records RTO and RPO where `list` and `info` show them; `--target random`
//! stops at its time; a corrupted object, a missing WAL segment and too little scratch space each
//! fail (or refuse) naming the cause; a drill stopped by SIGTERM or killed by SIGKILL leaves
//! nothing that the next drill does not clean up; the scratch directory is empty after every
//! drill. Names with quotes and spaces throughout, an indexed partitioned table, a database
//! without a `public` schema; a deleted `backup_manifest` object fails the drill naming it; a
//! killed drill's directory the sweep cannot clean up fails the run (under -q too); `--target
//! random` after a quiet physical backup drills it to latest.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{json, stderr};
use pgkeep_testkit::PgCluster;
use repo::{Repo, archiving_cluster, flipped, ok, pgkeep, run, switch_and_wait};
use serde_json::Value;

/// A database whose name needs quoting everywhere.
const ODD_DB: &str = "it's a \"db\" with spaces";
/// A table whose name needs quoting everywhere.
const ODD_TABLE: &str = "odd \"t\" n";

/// A repository, and a configuration file naming a scratch directory of the test's own.
struct Drills {
    repo: Repo,
    config: PathBuf,
    scratch: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drills {
    fn new() -> Drills {
        let dir = tempfile::tempdir().unwrap();
        let scratch = dir.path().join("scratch");
        let config = dir.path().join("pgkeep.toml");
        std::fs::write(
            &config,
            format!("[drill]\nscratch-dir = {:?}\n", scratch.to_str().unwrap()),
        )
        .unwrap();
        // The servers (and the restore_command they run) are the postgres user when the tests
        // run as root.
        PgCluster::chown_for_server(dir.path());
        let repo = Repo::local();
        // The repository's directory belongs to the servers' user, as wal-push runs as it: what
        // the drills and backups (run as root) write there keeps that owner.
        let root = repo.root().unwrap();
        std::fs::create_dir_all(&root).unwrap();
        PgCluster::chown_for_server(&root);
        Drills {
            repo,
            config,
            scratch,
            _dir: dir,
        }
    }

    /// `pgkeep --config <the test's file>` against `pg` and the repository.
    fn pgkeep(&self, pg: &PgCluster) -> Command {
        let mut cmd = pgkeep(pg, &self.repo);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// `pgkeep --json drill ARGS`, which must succeed; its JSON.
    fn drill(&self, pg: &PgCluster, args: &[&str]) -> Value {
        let run = json(&ok(self.pgkeep(pg).args(["--json", "drill"]).args(args)));
        self.assert_scratch_empty();
        run
    }

    /// What is in the scratch directory.
    fn scratch_entries(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(&self.scratch) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }

    fn assert_scratch_empty(&self) {
        let left = self.scratch_entries();
        assert!(
            left.is_empty(),
            "the scratch directory still holds {left:?}"
        );
    }

    /// The drill records stored beside backup `id`.
    fn records(&self, id: &str) -> Vec<PathBuf> {
        let dir = self
            .repo
            .root()
            .unwrap()
            .join(format!("main/backups/{id}/drills"));
        match std::fs::read_dir(dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// `pg` with a database and a table whose names need quoting, an index on it, and `shop`.
fn populate(pg: &PgCluster) {
    pg.psql(&format!(
        "CREATE DATABASE \"{}\"",
        ODD_DB.replace('"', "\"\"")
    ));
    let table = format!("\"{}\"", ODD_TABLE.replace('"', "\"\""));
    pg.psql_db(
        ODD_DB,
        &format!(
            "CREATE TABLE {table} (id int PRIMARY KEY, v text);
             INSERT INTO {table} SELECT g, md5(g::text) FROM generate_series(1, 2000) g;
             CREATE INDEX ON {table} (v)"
        ),
    );
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE items (n int PRIMARY KEY); INSERT INTO items SELECT generate_series(1, 500);
         CREATE TABLE parted (k int, v text) PARTITION BY RANGE (k);
         CREATE TABLE parted_low PARTITION OF parted FOR VALUES FROM (0) TO (100);
         CREATE INDEX ON parted (k);
         INSERT INTO parted SELECT g, g::text FROM generate_series(0, 99) g",
    );
}

/// `pg` with a database that has no `public` schema, its table in schema "Other".
fn populate_without_public(pg: &PgCluster) {
    pg.psql("CREATE DATABASE nopublic");
    pg.psql_db(
        "nopublic",
        "DROP SCHEMA public; CREATE SCHEMA \"Other\";
         CREATE TABLE \"Other\".t (id int PRIMARY KEY); INSERT INTO \"Other\".t VALUES (1), (2)",
    );
}

/// The one drill of a run's JSON.
fn only(run: &Value) -> &Value {
    let drills = run["drills"].as_array().unwrap();
    assert_eq!(drills.len(), 1, "{run:#}");
    &drills[0]
}

/// The checks of a drill of `kind` named `check` for `database`.
fn check<'a>(drill: &'a Value, check: &str, database: Option<&str>) -> &'a Value {
    drill["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == check && c["database"].as_str() == database)
        .unwrap_or_else(|| panic!("no {check} check of {database:?}: {drill:#}"))
}

fn backup(drills: &Drills, pg: &PgCluster, args: &[&str]) -> String {
    let made = json(&ok(drills.pgkeep(pg).args(["--json", "backup"]).args(args)));
    // Ids are UTC seconds: the next backup starts in another second.
    std::thread::sleep(Duration::from_millis(1100));
    made["id"].as_str().unwrap().to_string()
}

#[test]
fn drills_of_good_backups_pass_and_record_rto_and_rpo_where_list_and_info_show_them() {
    let drills = Drills::new();
    let pg = archiving_cluster(&drills.repo);
    populate(&pg);
    let logical = backup(&drills, &pg, &["logical", "--all"]);
    populate_without_public(&pg);
    // Stream mode: its backup holds PostgreSQL's backup_manifest, an object the restore does not
    // read, which the drill reads back (checked below). Local-mode drills are the other tests'.
    let physical = backup(&drills, &pg, &["physical", "--mode", "stream"]);
    // Commits after the physical backup, some time apart, archived: a window to aim into.
    for n in 0..4 {
        pg.psql_db("shop", &format!("INSERT INTO items VALUES ({})", 1000 + n));
        std::thread::sleep(Duration::from_millis(300));
    }
    switch_and_wait(|sql| pg.psql(sql));

    // Both kinds, the newest of each.
    let run = drills.drill(&pg, &[]);
    let ran = run["drills"].as_array().unwrap();
    assert_eq!(ran.len(), 2, "{run:#}");
    for (drill, id, kind) in [
        (&ran[0], &logical, "logical"),
        (&ran[1], &physical, "physical"),
    ] {
        assert_eq!(drill["backup"], id.as_str(), "{drill:#}");
        assert_eq!(drill["kind"], kind);
        assert_eq!(drill["outcome"], "passed", "{drill:#}");
        assert!(drill["rto_seconds"].as_f64().unwrap() > 0.0, "{drill:#}");
        assert!(drill["rpo_seconds"].as_f64().unwrap() >= 0.0, "{drill:#}");
        assert!(
            drill["problems"].as_array().unwrap().is_empty(),
            "{drill:#}"
        );
        // The odd names were restored and read: the table counted, its two indexes checked.
        assert_eq!(
            check(drill, "tables", Some(ODD_DB))["checked"],
            1,
            "{drill:#}"
        );
        assert_eq!(check(drill, "tables", Some(ODD_DB))["result"], "passed");
        let indexes = check(drill, "indexes", Some(ODD_DB));
        assert_eq!(indexes["result"], "passed", "{drill:#}");
        assert!(indexes["checked"].as_u64().unwrap() >= 2, "{drill:#}");
        assert_eq!(check(drill, "databases", None)["result"], "passed");
        // A partitioned table's index (relkind 'I') is not given to bt_index_check; its
        // partition's is: shop's indexes pass.
        let shop = check(drill, "indexes", Some("shop"));
        assert_eq!(shop["result"], "passed", "{drill:#}");
        assert!(shop["checked"].as_u64().unwrap() >= 2, "{drill:#}");
        assert_eq!(drills.records(id).len(), 1);
    }
    // A database without a `public` schema: amcheck is created in the drill's own schema.
    let nopublic = check(&ran[1], "indexes", Some("nopublic"));
    assert_eq!(nopublic["result"], "passed", "{:#}", ran[1]);
    assert!(nopublic["checked"].as_u64().unwrap() >= 1, "{:#}", ran[1]);
    assert_eq!(check(&ran[1], "tables", Some("nopublic"))["checked"], 1);
    assert_eq!(ran[0]["target"]["kind"], "backup");
    assert_eq!(ran[1]["target"]["kind"], "latest");
    // Replayed to the end of the archive: nothing of it lost.
    assert!(
        ran[1]["rpo_seconds"].as_f64().unwrap() < 1.0,
        "{:#}",
        ran[1]
    );
    // The logical backup's RPO is its age.
    assert!(
        ran[0]["rpo_seconds"].as_f64().unwrap() >= 1.0,
        "{:#}",
        ran[0]
    );

    // A random time inside the window the physical backup reaches: recovery stops there.
    let random = drills.drill(&pg, &[&physical, "--target", "random"]);
    let drill = only(&random);
    assert_eq!(drill["outcome"], "passed", "{drill:#}");
    assert_eq!(drill["target"]["kind"], "time");
    let target: chrono::DateTime<chrono::Utc> =
        drill["target"]["time"].as_str().unwrap().parse().unwrap();
    // Promoted there (PostgreSQL stops with an error when the WAL ends before the target), with
    // no commit after it replayed. A time before the first commit after the backup replays none.
    if let Some(reached) = drill["reached_time"].as_str() {
        let reached: chrono::DateTime<chrono::Utc> = reached.parse().unwrap();
        assert!(reached <= target, "{drill:#}");
    }
    assert!(drill["rpo_seconds"].as_f64().is_some(), "{drill:#}");
    assert_eq!(check(drill, "target", None)["result"], "passed");

    // list: when each backup was last proven restorable, with RTO and RPO; the same in JSON,
    // beside the fields it always had.
    let listed = json(&ok(drills.pgkeep(&pg).args(["--json", "list"])));
    for backup in listed["backups"].as_array().unwrap() {
        assert_eq!(backup["status"], "complete");
        assert!(backup["size"].as_u64().is_some());
        let last = &backup["drills"];
        assert_eq!(last["last_failed"], false, "{backup:#}");
        assert_eq!(last["last"]["outcome"], "passed");
        assert!(last["last_passed"]["rto_seconds"].as_f64().is_some());
    }
    let table = String::from_utf8_lossy(&ok(drills.pgkeep(&pg).arg("list")).stdout).into_owned();
    assert_eq!(
        table.matches("drill: proven restorable").count(),
        2,
        "{table}"
    );
    assert!(table.contains("RTO ") && table.contains("RPO "), "{table}");

    // info: the drill history, oldest first; the manifest's own fields unchanged.
    let info = json(&ok(drills.pgkeep(&pg).args(["--json", "info", &physical])));
    assert_eq!(info["id"], physical.as_str());
    assert_eq!(info["kind"], "physical");
    assert!(info["objects"].as_array().is_some());
    let history = info["drills"].as_array().unwrap();
    assert_eq!(history.len(), 2, "{info:#}");
    assert_eq!(history[0]["target"]["kind"], "latest");
    assert_eq!(history[1]["target"]["kind"], "time");
    let human = String::from_utf8_lossy(&ok(drills.pgkeep(&pg).args(["info", &physical])).stdout)
        .into_owned();
    assert!(human.contains("last proven restorable"), "{human}");
    // Every object the restore does not read was read back: PostgreSQL's backup_manifest.
    let objects = check(&ran[1], "objects", None);
    assert_eq!(objects["result"], "passed", "{:#}", ran[1]);
    assert!(objects["checked"].as_u64().unwrap() >= 1, "{:#}", ran[1]);

    // The backup_manifest object deleted: the restore does not need it, but the drill fails
    // naming it.
    let manifest_key = info["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["role"] == "backup_manifest")
        .unwrap_or_else(|| panic!("no backup_manifest object: {info:#}"))["key"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::remove_file(drills.repo.root().unwrap().join(&manifest_key)).unwrap();
    let out = repo::run(drills.pgkeep(&pg).args(["--json", "drill", &physical]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let drill = only(&json(&out)).clone();
    assert_eq!(drill["outcome"], "failed", "{drill:#}");
    assert_eq!(drill["cause"]["kind"], "checks", "{drill:#}");
    let objects = check(&drill, "objects", None);
    assert_eq!(objects["result"], "failed", "{drill:#}");
    assert!(
        objects["problem"].as_str().unwrap().contains(&manifest_key),
        "{drill:#}"
    );
    drills.assert_scratch_empty();
}

#[test]
fn a_corrupt_object_a_missing_wal_segment_and_too_little_space_fail_naming_the_cause() {
    let drills = Drills::new();
    let pg = archiving_cluster(&drills.repo);
    populate(&pg);
    let logical = backup(&drills, &pg, &["logical", "--db", "shop"]);
    let physical = backup(&drills, &pg, &["physical"]);
    for _ in 0..2 {
        pg.psql_db("shop", "INSERT INTO items SELECT max(n) + 1 FROM items");
        switch_and_wait(|sql| pg.psql(sql));
    }

    // Too little space (the manifest claims a petabyte): refused before anything is restored,
    // both numbers and the setting named; nothing recorded.
    let key = format!("main/backups/{logical}/manifest.json");
    let original = drills.repo.get(&key);
    let mut manifest: Value = serde_json::from_slice(&original).unwrap();
    manifest["objects"][0]["size"] = Value::from(1u64 << 50);
    drills
        .repo
        .put(&key, &serde_json::to_vec(&manifest).unwrap());
    let out = run(drills.pgkeep(&pg).args(["drill", &logical]));
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains("1.0 PiB") && said.contains("free"), "{said}");
    assert!(said.contains("`[drill] scratch-dir`"), "{said}");
    assert!(drills.records(&logical).is_empty());
    drills.assert_scratch_empty();
    drills.repo.put(&key, &original);

    // A corrupted dump: the drill fails naming the object; the failure is recorded and shown.
    let object = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["database"] == "shop")
        .unwrap()["key"]
        .as_str()
        .unwrap()
        .to_string();
    drills
        .repo
        .put(&object, &flipped(&drills.repo.get(&object)));
    let out = run(drills.pgkeep(&pg).args(["--json", "drill", &logical]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let drill = only(&json(&out)).clone();
    assert_eq!(drill["outcome"], "failed", "{drill:#}");
    assert_eq!(drill["cause"]["kind"], "restore");
    let error = drill["cause"]["error"].as_str().unwrap();
    assert!(error.contains(&object), "{error}");
    assert!(stderr(&out).contains(&object), "{}", stderr(&out));
    drills.assert_scratch_empty();
    assert_eq!(drills.records(&logical).len(), 1);
    let listed = json(&ok(drills.pgkeep(&pg).args(["--json", "list"])));
    let entry = listed["backups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["id"] == logical.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["drills"]["last_failed"], true, "{entry:#}");
    assert!(entry["drills"]["last_passed"].is_null());
    let table = String::from_utf8_lossy(&ok(drills.pgkeep(&pg).arg("list")).stdout).into_owned();
    assert!(table.contains("last drill FAILED"), "{table}");

    // A WAL segment replay needs, gone from the archive: the drill fails naming it.
    let info = json(&ok(drills.pgkeep(&pg).args(["--json", "info", &physical])));
    let stop = info["physical"]["stop_segment"]
        .as_str()
        .unwrap()
        .to_string();
    let wal_dir = drills.repo.root().unwrap().join("main/wal/00000001");
    let mut segments: Vec<String> = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 24 + 4 && n.ends_with(".zst"))
        .collect();
    segments.sort();
    let after = segments
        .iter()
        .find(|n| n[..24] > *stop.as_str())
        .unwrap_or_else(|| panic!("no segment after {stop}: {segments:?}"))
        .clone();
    std::fs::remove_file(wal_dir.join(&after)).unwrap();
    let out = run(drills.pgkeep(&pg).args(["--json", "drill", &physical]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let drill = only(&json(&out)).clone();
    assert_eq!(drill["outcome"], "failed", "{drill:#}");
    let error = drill["cause"]["error"].as_str().unwrap();
    assert!(
        error.contains("missing segment") && error.contains(&after[..24]),
        "{error}"
    );
    drills.assert_scratch_empty();
    assert_eq!(drills.records(&physical).len(), 1);
}

/// `pgkeep drill ID` started in the background, its output thrown away.
fn start_drill(drills: &Drills, pg: &PgCluster, id: &str) -> std::process::Child {
    drills
        .pgkeep(pg)
        .args(["drill", id])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits until a drill's throwaway server is up; returns its drill directory and its pid.
fn wait_for_server(drills: &Drills) -> (PathBuf, u32) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        for dir in drills.scratch_entries() {
            let pid_file =
                std::fs::read_to_string(dir.join("data/postmaster.pid")).unwrap_or_default();
            let lines: Vec<&str> = pid_file.lines().collect();
            if lines.get(7).is_some_and(|s| s.trim() == "ready") {
                return (dir, lines[0].trim().parse().unwrap());
            }
        }
        assert!(Instant::now() < deadline, "no drill server came up");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether process `pid` is gone, or goes within a few seconds (a stopped server exits a moment
/// after its pid file is removed).
fn gone(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn a_drill_stopped_by_sigterm_cleans_up_and_one_killed_by_sigkill_is_cleaned_up_by_the_next() {
    let drills = Drills::new();
    let pg = archiving_cluster(&drills.repo);
    populate(&pg);
    let logical = backup(&drills, &pg, &["logical", "--all"]);

    // SIGTERM while the throwaway server runs: stopped, removed, exit 143, nothing recorded.
    let mut child = start_drill(&drills, &pg, &logical);
    let (_, server) = wait_for_server(&drills);
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + 15));
    assert!(gone(server), "the drill's server {server} still runs");
    drills.assert_scratch_empty();
    assert!(drills.records(&logical).is_empty());

    // SIGKILL: its directory and its server stay behind ...
    let mut child = start_drill(&drills, &pg, &logical);
    let (left, server) = wait_for_server(&drills);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(left.exists());
    assert!(alive(server), "the server outlives a killed drill");

    // ... until the next drill, which stops that server, removes the directory, and passes.
    let run = drills.drill(&pg, &[&logical]);
    let swept = run["swept"].as_array().unwrap();
    let name = left.file_name().unwrap().to_str().unwrap();
    assert!(
        swept.iter().any(|s| s.as_str().unwrap().contains(name)
            && s.as_str().unwrap().contains("stopping its server")),
        "{run:#}"
    );
    assert!(
        gone(server),
        "the killed drill's server {server} still runs"
    );
    assert_eq!(only(&run)["outcome"], "passed", "{run:#}");
    assert_eq!(drills.records(&logical).len(), 1);

    // A killed drill's directory whose owner record is garbage (old), with a "server" (a process
    // working in its data directory) still running: the sweep cannot clean it up, so the run is
    // not ok, and says so (the directory and how to stop the server) under -q too.
    let fake = drills.scratch.join("20200101T000000Z-0000abcd");
    let data = fake.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(fake.join("owner.json"), b"{ garbage").unwrap();
    let mut server = Command::new("sleep")
        .arg("120")
        .current_dir(&data)
        .spawn()
        .unwrap();
    std::fs::write(data.join("postmaster.pid"), format!("{}\n", server.id())).unwrap();
    let old = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::open(&fake)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = repo::run(drills.pgkeep(&pg).args(["-q", "drill", &logical]));
    server.kill().unwrap();
    server.wait().unwrap();
    let said = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(fake.to_str().unwrap()), "{said}");
    assert!(
        said.contains(&format!("`pg_ctl -D {} stop -m immediate`", data.display())),
        "{said}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PROBLEM: cannot clean up"),
        "{out:?}"
    );
    // The drill itself ran and passed.
    assert_eq!(drills.records(&logical).len(), 2);
    std::fs::remove_dir_all(&fake).unwrap();
    drills.assert_scratch_empty();

    // --target random with no commit archived after the newest physical backup (a quiet
    // database): that drill aims at latest instead and says so; the logical one runs too.
    let physical = backup(&drills, &pg, &["physical"]);
    let run = drills.drill(&pg, &["--target", "random"]);
    let ran = run["drills"].as_array().unwrap();
    assert_eq!(ran.len(), 2, "{run:#}");
    assert_eq!(ran[0]["backup"], logical.as_str());
    assert_eq!(ran[0]["outcome"], "passed", "{run:#}");
    assert_eq!(ran[1]["backup"], physical.as_str());
    assert_eq!(ran[1]["outcome"], "passed", "{run:#}");
    assert_eq!(ran[1]["target"]["kind"], "latest", "{run:#}");
    assert!(
        ran[1]["notes"].as_array().unwrap().iter().any(|n| n
            .as_str()
            .unwrap()
            .contains("no commit was archived after backup")),
        "{run:#}"
    );
}

/// Every path under `dir`, sorted.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(tree(&path));
        }
        out.push(path);
    }
    out.sort();
    out
}

#[test]
fn a_logical_drill_leaves_the_tablespace_locations_of_the_backups_server_alone() {
    let drills = Drills::new();
    let pg = PgCluster::start();
    let location = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(location.path());
    pg.psql(&format!(
        "CREATE TABLESPACE \"odd ts\" LOCATION '{}'",
        location.path().display()
    ));
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE items (n int PRIMARY KEY) TABLESPACE \"odd ts\";
         INSERT INTO items SELECT generate_series(1, 100)",
    );
    let id = backup(&drills, &pg, &["logical", "--all", "--globals"]);
    let before = tree(location.path());
    // The manifest records each database's size on disk, which the space check counts: more
    // than its dump, as the indexes are not in the dump.
    let manifest = drills
        .repo
        .root()
        .unwrap()
        .join(format!("main/backups/{id}/manifest.json"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(manifest).unwrap()).unwrap();
    let shop = manifest["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["database"] == "shop")
        .unwrap();
    let on_disk = shop["database_info"]["size"].as_u64().unwrap();
    assert!(on_disk > shop["size"].as_u64().unwrap(), "{shop:#}");

    // Before, the drill replayed CREATE TABLESPACE at the server's own location: refused while
    // the server uses it, and files left there once it did not.
    let run = drills.drill(&pg, &[&id]);
    let drill = only(&run);
    assert_eq!(drill["outcome"], "passed", "{drill:#}");
    assert!(
        run.to_string().contains("tablespaces were not recreated"),
        "{run:#}"
    );
    assert_eq!(
        check(drill, "tables", Some("shop"))["result"],
        "passed",
        "{drill:#}"
    );
    assert_eq!(
        tree(location.path()),
        before,
        "the drill wrote at the tablespace's location"
    );
}
