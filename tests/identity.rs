//! The identity guard: a lost or damaged `cluster.json` does not hand the cluster name to the next
//! writer. Writes are refused while the repository holds backups without a readable record, `check`
//! and `verify` report it, `repair-identity` rebuilds it from the manifests; without backups the
//! archived WAL's page headers are the evidence. `wal-push` also refuses renamed segments and
//! `.history` files that are not timeline histories. Local and Garage repositories, real clusters.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::path::{Path, PathBuf};

use common::{json, stderr};
use repo::{Repo, block_on, ok, pgkeep, repos, run};

use pgkeep_testkit::PgCluster;

const IDENTITY: &str = "main/cluster.json";

fn cluster_with_shop() -> PgCluster {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg
}

fn backup(pg: &PgCluster, repo: &Repo) -> std::process::Output {
    let out = run(pgkeep(pg, repo).args(["backup", "logical", "--db", "shop"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    out
}

fn backups(pg: &PgCluster, repo: &Repo) -> usize {
    json(&run(pgkeep(pg, repo).args(["--json", "list"])))["backups"]
        .as_array()
        .unwrap()
        .len()
}

fn system_identifier(pg: &PgCluster) -> String {
    pg.psql("SELECT system_identifier FROM pg_control_system()")
}

/// A copy of the server's first WAL segment under `name`, in `dir`.
fn segment_copy(pg: &PgCluster, dir: &Path, name: &str) -> PathBuf {
    let first = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
    let path = dir.join(name);
    std::fs::copy(pg.data_dir().join("pg_wal").join(first), &path).unwrap();
    path
}

/// `repair-identity` rebuilds the record as `owner`'s, and `owner` can back up again.
fn repaired_by(owner: &PgCluster, repo: &Repo) -> serde_json::Value {
    let repaired = json(&ok(pgkeep(owner, repo).args(["--json", "repair-identity"])));
    assert_eq!(
        repaired["identity"]["system_identifier"],
        system_identifier(owner)
    );
    assert!(backup(owner, repo).status.success());
    repaired
}

fn refused(out: &std::process::Output, words: &[&str]) {
    assert_eq!(out.status.code(), Some(1), "{}", stderr(out));
    for word in words {
        assert!(stderr(out).contains(word), "{word}: {}", stderr(out));
    }
}

#[test]
fn a_lost_or_damaged_identity_record_refuses_writes_until_repaired() {
    let owner = cluster_with_shop();
    let other = cluster_with_shop();
    let scratch = tempfile::tempdir().unwrap();
    for repo in repos("identity-guard") {
        assert!(backup(&owner, &repo).status.success());
        let recorded = String::from_utf8(repo.get(IDENTITY)).unwrap();
        assert!(recorded.contains(&system_identifier(&owner)), "{recorded}");

        // Lost: nobody may write, whoever they are.
        block_on(repo.storage().delete(IDENTITY)).unwrap();
        let out = backup(&other, &repo);
        refused(
            &out,
            &[
                "main/cluster.json is missing",
                "1 backup(s) of system identifier",
                "repair-identity",
            ],
        );
        refused(&backup(&owner, &repo), &["is missing"]);
        let segment = segment_copy(&other, scratch.path(), "000000010000000000000001");
        refused(
            &run(pgkeep(&other, &repo).arg("wal-push").arg(&segment)),
            &["is missing"],
        );
        assert_eq!(backups(&owner, &repo), 1);
        assert!(
            block_on(repo.storage().head(IDENTITY)).is_err(),
            "nothing recorded it"
        );

        // check and verify report it.
        let out = run(pgkeep(&owner, &repo).arg("check"));
        assert_eq!(
            out.status.code(),
            Some(3),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("repair-identity"));
        let out = run(pgkeep(&owner, &repo).args(["verify", "--all"]));
        assert_eq!(out.status.code(), Some(1));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("PROBLEM: main/cluster.json is missing")
        );

        // Rebuilt from the manifests: the owner writes again, the other server is refused.
        repaired_by(&owner, &repo);
        refused(
            &backup(&other, &repo),
            &["belongs to another PostgreSQL cluster"],
        );
        refused(
            &run(pgkeep(&owner, &repo).arg("repair-identity")),
            &["nothing to repair"],
        );

        // Damaged: refused the same way; the repair keeps the damaged record beside the new one.
        repo.put(IDENTITY, b"{ this is not json");
        refused(
            &backup(&owner, &repo),
            &["not a valid cluster identity record", "repair-identity"],
        );
        let repaired = repaired_by(&owner, &repo);
        let kept = repaired["kept_damaged"].as_str().unwrap();
        assert_eq!(repo.get(kept), b"{ this is not json");
        assert_eq!(backups(&owner, &repo), 3);
    }
}

#[test]
fn without_backups_the_archived_wal_says_whose_name_it_is() {
    let first = cluster_with_shop();
    let second = cluster_with_shop();
    let scratch = tempfile::tempdir().unwrap();
    for repo in repos("identity-wal-evidence") {
        // The first server archives before its first backup: nothing is recorded yet.
        let segment = segment_copy(&first, scratch.path(), "000000010000000000000001");
        ok(pgkeep(&first, &repo).arg("wal-push").arg(&segment));
        assert!(block_on(repo.storage().head(IDENTITY)).is_err());
        // The second server can neither back up nor archive under the name.
        let message = format!("is from system identifier {}", system_identifier(&first));
        refused(&backup(&second, &repo), &[&message]);
        let theirs = segment_copy(&second, scratch.path(), "000000010000000000000001");
        refused(
            &run(pgkeep(&second, &repo).arg("wal-push").arg(&theirs)),
            &[&message],
        );
        // The first server's backup records the identity.
        assert!(backup(&first, &repo).status.success());
        let recorded = String::from_utf8(repo.get(IDENTITY)).unwrap();
        assert!(recorded.contains(&system_identifier(&first)), "{recorded}");
    }
}

#[test]
fn wal_push_refuses_renamed_segments_and_bogus_history_files() {
    let pg = cluster_with_shop();
    let scratch = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let renamed = segment_copy(&pg, scratch.path(), "000000010000000000000007");
    refused(
        &run(pgkeep(&pg, &repo).arg("wal-push").arg(&renamed)),
        &["its header says it is segment 000000010000000000000001"],
    );
    let history = scratch.path().join("00000002.history");
    for bogus in [
        "hello world\n",
        "",
        "2\t0/3000000\tno\n",
        "1\tnot-an-lsn\treason\n",
    ] {
        std::fs::write(&history, bogus).unwrap();
        refused(
            &run(pgkeep(&pg, &repo).arg("wal-push").arg(&history)),
            &["is not a timeline history file"],
        );
    }
    std::fs::write(&history, "1\t0/3000060\tno recovery target specified\n").unwrap();
    ok(pgkeep(&pg, &repo).arg("wal-push").arg(&history));
    assert!(
        json(&ok(pgkeep(&pg, &repo).args(["--json", "verify", "--wal"])))["problems"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !p.as_str().unwrap().contains("history"))
    );
}

#[test]
fn identity_dead_ends_have_a_way_out_and_accept_fork_checks_its_timeline() {
    let owner = cluster_with_shop();
    let other = cluster_with_shop();
    let scratch = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    // The only backup's manifest is damaged and cluster.json is gone: list says so (exit 1), and
    // repair-identity asks the cluster's own server instead.
    let made = backup(&owner, &repo);
    assert!(made.status.success());
    let id = json(&ok(pgkeep(&owner, &repo).args(["--json", "list"])))["backups"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    repo.put(&format!("main/backups/{id}/manifest.json"), b"{");
    block_on(repo.storage().delete(IDENTITY)).unwrap();
    let out = run(pgkeep(&owner, &repo).arg("list"));
    refused(&out, &["main/cluster.json is missing"]);
    // Another server is not taken for the owner when the WAL says otherwise.
    let segment = segment_copy(&owner, scratch.path(), "000000010000000000000001");
    let wal_only = Repo::local();
    ok(pgkeep(&owner, &wal_only).arg("wal-push").arg(&segment));
    let out = run(pgkeep(&other, &wal_only).arg("check"));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!(
            "is from system identifier {}",
            system_identifier(&owner)
        )),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    repaired_by(&owner, &repo);

    // accept-fork: only a timeline the archive has, in a repository that exists.
    refused(
        &run(pgkeep(&owner, &wal_only).args(["accept-fork", "3"])),
        &["timeline 3 has no history file in the archive"],
    );
    let missing = Repo::at(format!("file://{}/nothing-here", scratch.path().display()));
    refused(
        &run(pgkeep(&owner, &missing).args(["accept-fork", "2"])),
        &["does not exist"],
    );
    refused(
        &run(pgkeep(&owner, &missing).args(["info", &id])),
        &["does not exist"],
    );
    assert!(!scratch.path().join("nothing-here").exists());
}
