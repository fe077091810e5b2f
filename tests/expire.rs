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
use std::time::Duration;

use common::{json, stderr};
use expire_helpers::{config_file, snapshot, verdicts};
use repo::{Repo, archiving_cluster, fails, free_port, ok, pgkeep, pgkeep_as_server, repos, run};

use pgkeep_testkit::PgCluster;
use serde_json::Value;

/// `backup logical --db <db>`, then a second's pause (ids are UTC seconds); returns the id.
fn backup(pg: &PgCluster, repo: &Repo, db: &str) -> String {
    let made = json(&ok(pgkeep(pg, repo).args(["--json", "backup", "logical", "--db", db])));
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
        let a1 = backup(&pg, &repo, "a");
        let a2 = backup(&pg, &repo, "a");
        let a3 = backup(&pg, &repo, "a");
        let b1 = backup(&pg, &repo, "b");
        let b2 = backup(&pg, &repo, "b");
        let b3 = backup(&pg, &repo, "b");
        // a1..a3 all end on 2026-03-29 in Belgrade (in UTC a1 is on 03-28). b1 and b2 end before
        // every backup of a although they were taken after them: ids say nothing.
        set_end(&repo, &a1, "2026-03-28T23:30:00Z"); // 03-29 00:30 CET
        set_end(&repo, &a2, "2026-03-29T00:30:00Z"); // 03-29 01:30 CET
        set_end(&repo, &a3, "2026-03-29T01:30:00Z"); // 03-29 03:30 CEST
        set_end(&repo, &b1, "2026-03-27T12:00:00Z");
        set_end(&repo, &b2, "2026-03-28T12:00:00Z");
        set_end(&repo, &b3, "2026-03-29T22:30:00Z"); // 03-30 00:30 CEST
        // A damaged backup and a leftover of a killed run, written just now.
        repo.put("main/backups/20200101T000000Z/manifest.json", b"{ not json");
        repo.put("main/backups/20200102T000000Z/db-0001-a.dump.zst", &[7u8; 1000]);

        // Pins: unknown and damaged ids are refused; pinning twice is fine.
        let said = fails(pgkeep(&pg, &repo).args(["pin", "20991231T000000Z"]));
        assert!(said.contains("no backup `20991231T000000Z`"), "{said}");
        let said = fails(pgkeep(&pg, &repo).args(["pin", "20200101T000000Z"]));
        assert!(said.contains("backup 20200101T000000Z cannot be used"), "{said}");
        ok(pgkeep(&pg, &repo).args(["pin", &a2]));
        let pinned = json(&ok(pgkeep(&pg, &repo).args([
            "--json", "pin", &a2, "--reason", "audit",
        ])));
        assert_eq!(pinned["pin"]["reason"], "audit", "{pinned:#}");

        // The dry run: exactly the expected verdicts, and not one byte changed.
        let before = repo.root().map(|root| snapshot(&root));
        let dry = expire(&pg, &repo, &config, &[]);
        assert_eq!(repo.root().map(|root| snapshot(&root)), before, "{}", repo.url);
        let plan = &dry["plan"];
        let (kept, expired) = verdicts(plan);
        let kept_expected = [
            (b2.clone(), "keep-daily 2026-03-28 (database b)".to_string()),
            (a2.clone(), "pinned: audit".to_string()),
            (a3.clone(), "keep-daily 2026-03-29 (database a)".to_string()),
            (b3.clone(), "newest, keep-daily 2026-03-30 (database b)".to_string()),
        ];
        assert_eq!(kept, kept_expected, "{plan:#}");
        assert_eq!(expired, [b1.clone(), a1.clone()], "{plan:#}");
        assert_eq!(dry["confirmed"], false);
        assert_eq!(plan["damaged"][0]["id"], "20200101T000000Z", "{plan:#}");
        assert_eq!(plan["leftovers"][0]["action"], "young", "{plan:#}");
        assert!(plan["to_free"]["backups"].as_u64().unwrap() > 0, "{plan:#}");
        assert_eq!(plan["wal"]["left_alone"].as_str().is_some(), true);
        let human = ok(pgkeep(&pg, &repo).arg("--config").arg(&config).arg("expire"));
        let human = String::from_utf8_lossy(&human.stdout);
        assert!(human.contains(&format!("EXPIRE  {a1}")), "{human}");
        assert!(human.contains("nothing was changed"), "{human}");
        assert!(human.contains("damaged backups, left alone"), "{human}");

        // --confirm: the two expired backups are gone, manifest and all; the rest is listed.
        let done = expire(&pg, &repo, &config, &["--confirm"]);
        assert_eq!(done["deleted"]["backups"], serde_json::json!([b1, a1]), "{done:#}");
        assert_eq!(done["deleted"]["leftovers"], 0, "{done:#}");
        for id in [&a1, &b1] {
            assert!(!stored(&repo, &format!("main/backups/{id}/")), "{id}");
        }
        if let Some(root) = repo.root() {
            assert!(!root.join(format!("main/backups/{a1}")).exists());
        }
        // (`list` orders by id.)
        assert_eq!(listed(&pg, &repo), [a2.clone(), a3.clone(), b2.clone(), b3.clone()]);
        // The leftover goes once older than the grace (here none); the damaged backup stays.
        let done = expire(&pg, &repo, &config, &["--confirm", "--grace", "0s"]);
        assert_eq!(done["deleted"]["leftovers"], 1, "{done:#}");
        assert!(!stored(&repo, "main/backups/20200102T000000Z/"));
        assert!(stored(&repo, "main/backups/20200101T000000Z/manifest.json"));

        // Unpinned, a2 is one more backup of 2026-03-29 in database a: it expires next.
        let unpinned = json(&ok(pgkeep(&pg, &repo).args(["--json", "unpin", &a2])));
        assert_eq!(unpinned["removed"]["reason"], "audit", "{unpinned:#}");
        let again = ok(pgkeep(&pg, &repo).args(["unpin", &a2]));
        assert!(String::from_utf8_lossy(&again.stdout).contains("was not pinned"));
        let (_, expired) = verdicts(&expire(&pg, &repo, &config, &[])["plan"]);
        assert_eq!(expired, [a2.clone()]);
        // A bad --grace is a usage error.
        let out = run(pgkeep(&pg, &repo).args(["expire", "--grace", "6"]));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(stderr(&out).contains("--grace: `6` is not a duration"), "{}", stderr(&out));
    }
}
