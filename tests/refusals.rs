//! Smaller failure paths: two backups started in the same second, a repository directory that does
//! not exist, a configuration file others can read that holds a PostgreSQL password, and `-q`
//! printing only what went wrong. The built binary, a real cluster, local and Garage repositories.

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use std::os::unix::fs::PermissionsExt as _;

use common::{json, stderr};
use repo::{Repo, ok, pgkeep, repos, run};

use pgkeep_testkit::PgCluster;

fn cluster_with_shop() -> PgCluster {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE items AS SELECT generate_series(1, 1000) AS n",
    );
    pg
}

#[test]
fn backups_started_in_the_same_second_get_their_own_ids() {
    let pg = cluster_with_shop();
    for repo in repos("same-second") {
        let children: Vec<_> = (0..3)
            .map(|_| {
                pgkeep(&pg, &repo)
                    .args(["--json", "backup", "logical", "--db", "shop"])
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut ids: Vec<String> = children
            .into_iter()
            .map(|child| {
                let out = child.wait_with_output().unwrap();
                assert!(out.status.success(), "{}", stderr(&out));
                json(&out)["id"].as_str().unwrap().to_string()
            })
            .collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 3, "{ids:?}");
        let listed = json(&ok(pgkeep(&pg, &repo).args(["--json", "list"])));
        assert_eq!(listed["backups"].as_array().unwrap().len(), 3, "{listed:#}");
        assert_eq!(listed["leftovers"], serde_json::json!([]), "{listed:#}");
    }
}

#[test]
fn a_repository_directory_that_does_not_exist_is_an_error_for_reads() {
    let pg = cluster_with_shop();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not-mounted/pgkeep");
    let repo = Repo::at(format!("file://{}", missing.display()));
    for args in [
        vec!["list"],
        vec!["verify", "--all"],
        vec![
            "restore",
            "--db",
            "shop",
            "--into",
            "x",
            "--at",
            "2099-01-01 00:00:00+00",
        ],
    ] {
        let out = run(pgkeep(&pg, &repo).args(&args));
        assert_eq!(out.status.code(), Some(1), "{args:?}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{} does not exist", missing.display())),
            "{args:?}: {}",
            stderr(&out)
        );
        assert!(stderr(&out).contains("mounted"), "{}", stderr(&out));
    }
    assert!(!missing.exists());
    // The first backup creates it.
    ok(pgkeep(&pg, &repo).args(["backup", "logical", "--db", "shop"]));
    assert!(missing.is_dir());
    ok(pgkeep(&pg, &repo).arg("list"));
}

#[test]
fn a_configuration_file_others_can_read_may_not_hold_a_password() {
    let pg = cluster_with_shop();
    let repo = Repo::local();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("pgkeep.toml");
    let secret = "s3cr3t-'pw";
    for (key, text) in [
        (
            "postgres.conninfo",
            format!(
                "[postgres]\nconninfo = \"host=127.0.0.1 port={} user=postgres password=s3cr3t-\\\\'pw\"\n",
                pg.port()
            ),
        ),
        (
            "failover.nodes.b.conninfo",
            format!(
                "[failover.nodes.b]\nconninfo = \"postgresql://postgres:{secret}@127.0.0.1:{}/postgres\"\n",
                pg.port()
            ),
        ),
    ] {
        std::fs::write(&config, &text).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = run(pgkeep(&pg, &repo).arg("--config").arg(&config).arg("list"));
        assert_eq!(out.status.code(), Some(2), "{key}: {}", stderr(&out));
        assert!(stderr(&out).contains(key), "{}", stderr(&out));
        assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
        assert!(
            !stderr(&out).contains(secret) && !stderr(&out).contains("s3cr3t"),
            "{}",
            stderr(&out)
        );
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        ok(pgkeep(&pg, &repo)
            .arg("--config")
            .arg(&config)
            .args(["backup", "logical", "--db", "shop"]));
    }
}

#[test]
fn quiet_prints_only_what_went_wrong() {
    let pg = cluster_with_shop();
    let repo = Repo::local();
    let silent = |args: &[&str]| {
        let out = ok(pgkeep(&pg, &repo).arg("-q").args(args));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{args:?}");
        assert_eq!(stderr(&out), "", "{args:?}");
    };
    silent(&["backup", "logical", "--db", "shop"]);
    silent(&["verify", "--all"]);
    silent(&[
        "restore",
        "--db",
        "shop",
        "--into",
        "shop_copy",
        "--at",
        "2099-01-01 00:00:00+00",
    ]);
    // A damaged object: the report and the error, even with -q.
    let root = repo.root().unwrap();
    let dump = walk(&root)
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("-shop.dump.zst"))
        .unwrap();
    let mut bytes = std::fs::read(&dump).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&dump, bytes).unwrap();
    let out = run(pgkeep(&pg, &repo).args(["-q", "verify", "--all"]));
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAILED"));
    assert!(stderr(&out).contains("damaged object"), "{}", stderr(&out));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
