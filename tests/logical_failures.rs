//! Logical restores when something is already wrong, end to end with the built binary, real
//! clusters and real repositories (a local directory and a real Garage S3): a dump that is
//! missing, truncated or damaged, a failing or killed pg_restore, a database another client made
//! meanwhile (issue 9, point 2).

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use common::json;
use repo::{Repo, exists, fails, flipped, local_repo, ok, pgkeep, repos};

use std::process::{Command, Stdio};
use std::time::Duration;

use pgkeep_testkit::PgCluster;

/// `restore --db shop --backup ID` with `extra` arguments.
fn restore(pg: &PgCluster, repo: &Repo, id: &str, extra: &[&str]) -> Command {
    let mut cmd = pgkeep(pg, repo);
    cmd.args(["restore", "--db", "shop", "--backup", id])
        .args(extra);
    cmd
}

#[test]
fn a_bad_dump_leaves_no_half_made_database() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE items AS SELECT g AS id, md5(g::text) AS name FROM generate_series(1, 20000) g;
         CREATE TABLE orders (id int PRIMARY KEY, item int);
         INSERT INTO orders SELECT g, g FROM generate_series(1, 20000) g;",
    );
    for repo in repos("logical-bad-dump") {
        let url = &repo.url;
        let m = json(&ok(
            pgkeep(&pg, &repo).args(["--json", "backup", "logical", "--db", "shop"])
        ));
        let id = m["id"].as_str().unwrap().to_string();
        let key = m["objects"][0]["key"].as_str().unwrap().to_string();
        let stored_size = m["objects"][0]["stored_size"].as_u64().unwrap();
        let good = repo.get(&key);
        assert_eq!(good.len() as u64, stored_size);

        // Missing or truncated: refused before anything is created, with or without --jobs.
        for (case, damage) in [
            ("missing", None),
            ("truncated", Some(&good[..good.len() / 2])),
        ] {
            match damage {
                None => repo.delete(&key),
                Some(bytes) => repo.put(&key, bytes),
            }
            for jobs in ["1", "2"] {
                let said = fails(&mut restore(
                    &pg,
                    &repo,
                    &id,
                    &["--into", "shop_new", "-j", jobs],
                ));
                let problem = match damage {
                    None => "is missing from the repository".to_string(),
                    Some(b) => format!(
                        "is {} bytes in the repository but the backup stored {stored_size}: it is truncated",
                        b.len()
                    ),
                };
                assert!(said.contains(&problem), "{url} {case} -j{jobs}: {said}");
                assert!(said.contains(&key), "{url} {case}: {said}");
                assert!(
                    said.contains("nothing was created or changed"),
                    "{url}: {said}"
                );
                assert!(said.contains("`pgkeep list`"), "{url}: {said}");
                assert!(!exists(&pg, "shop_new"), "{url} {case} -j{jobs}: created");
            }
        }

        // Damaged in the middle (same size): streamed, the database is created first and dropped
        // again; with --jobs the staged archive is checked before anything is created.
        repo.put(&key, &flipped(&good));
        let said = fails(&mut restore(&pg, &repo, &id, &["--into", "shop_new"]));
        assert!(
            said.contains(
                "removed: database `shop_new`, which this restore had created, was dropped again"
            ),
            "{url}: {said}"
        );
        assert!(!exists(&pg, "shop_new"), "{url}: left behind");
        let said = fails(&mut restore(
            &pg,
            &repo,
            &id,
            &["--into", "shop_new", "-j", "2"],
        ));
        assert!(said.contains("checksum mismatch"), "{url}: {said}");
        assert!(
            said.contains("database `shop_new` was not created or changed"),
            "{url}: {said}"
        );
        assert!(!exists(&pg, "shop_new"), "{url}: created");

        // The original lost too: pg_restore --create makes it; a failure leaves nothing behind.
        pg.psql("ALTER DATABASE shop RENAME TO shop_original");
        let said = fails(&mut restore(&pg, &repo, &id, &[]));
        assert!(
            said.contains("which this restore had created, was dropped again")
                || said.contains("database `shop` was not created;"),
            "{url}: {said}"
        );
        assert!(!exists(&pg, "shop"), "{url}: left behind");

        // Repaired: the same commands now succeed.
        repo.put(&key, &good);
        ok(&mut restore(&pg, &repo, &id, &["--into", "shop_new"]));
        ok(&mut restore(&pg, &repo, &id, &[]));
        for db in ["shop_new", "shop"] {
            assert_eq!(pg.psql_db(db, "SELECT count(*) FROM orders"), "20000");
        }

        // A target that existed before is never dropped: refused without --clean; with --clean a
        // failure midway leaves it, and says plainly that it is partly restored.
        repo.put(&key, &flipped(&good));
        let said = fails(&mut restore(&pg, &repo, &id, &["--into", "shop_new"]));
        assert!(
            said.contains("database `shop_new` already exists"),
            "{said}"
        );
        let said = fails(&mut restore(
            &pg,
            &repo,
            &id,
            &["--into", "shop_new", "--clean"],
        ));
        assert!(
            said.contains("database `shop_new` existed before and is now PARTLY RESTORED"),
            "{url}: {said}"
        );
        assert!(said.contains("it was not dropped"), "{url}: {said}");
        assert!(
            exists(&pg, "shop_new"),
            "{url}: an existing database was dropped"
        );
        let said = fails(&mut restore(&pg, &repo, &id, &["--clean", "-j", "2"]));
        assert!(
            said.contains("database `shop` was not created or changed"),
            "{said}"
        );
        assert_eq!(pg.psql_db("shop", "SELECT count(*) FROM orders"), "20000");

        repo.put(&key, &good);
        ok(&mut restore(
            &pg,
            &repo,
            &id,
            &["--into", "shop_new", "--clean"],
        ));
        assert_eq!(
            pg.psql_db("shop_new", "SELECT count(*) FROM orders"),
            "20000"
        );
        for db in ["shop", "shop_new"] {
            pg.psql(&format!("DROP DATABASE {db}"));
        }
        pg.psql("ALTER DATABASE shop_original RENAME TO shop");
    }
}

#[test]
fn a_killed_restore_drops_nothing_and_the_retry_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path());
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db(
        "shop",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 7)::text) AS payload
           FROM generate_series(1, 1000000) g",
    );
    let m = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "logical", "--db", "shop"])
    ));
    let id = m["id"].as_str().unwrap().to_string();

    let mut child = restore(&pg, &repo, &id, &["--into", "shop_new"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = std::io::BufRead::lines(std::io::BufReader::new(child.stderr.take().unwrap()));
    let mut lines = lines.map_while(Result::ok);
    assert!(
        lines.any(|l| l.contains("restore shop_new: started")),
        "the restore did not start"
    );
    std::thread::sleep(Duration::from_millis(700));
    child.kill().unwrap();
    child.wait().unwrap();
    // pgkeep cannot clean up after SIGKILL: the half-made database stays, nothing else is touched.
    assert!(exists(&pg, "shop_new"));
    assert_eq!(pg.psql_db("shop", "SELECT count(*) FROM t"), "1000000");

    // The retry refuses, never drops it, and names the fix.
    let said = fails(&mut restore(&pg, &repo, &id, &["--into", "shop_new"]));
    assert!(
        said.contains("database `shop_new` already exists; nothing was changed"),
        "{said}"
    );
    assert!(
        said.contains(
            "if it was left by an interrupted restore, drop it first (DROP DATABASE \"shop_new\")"
        ),
        "{said}"
    );
    assert!(exists(&pg, "shop_new"));
    pg.psql("DROP DATABASE shop_new");
    ok(&mut restore(&pg, &repo, &id, &["--into", "shop_new"]));
    assert_eq!(pg.psql_db("shop_new", "SELECT count(*) FROM t"), "1000000");
}

#[test]
fn a_failing_pg_restore_drops_what_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path());
    let src = PgCluster::start();
    src.psql("CREATE ROLE app_owner LOGIN");
    src.psql("CREATE DATABASE shop OWNER app_owner");
    src.psql_db(
        "shop",
        "CREATE TABLE items AS SELECT g AS id FROM generate_series(1, 1000) g;
         ALTER TABLE items OWNER TO app_owner;",
    );
    let m = json(&ok(pgkeep(&src, &repo).args([
        "--json",
        "backup",
        "logical",
        "--db",
        "shop",
        "--globals",
    ])));
    let id = m["id"].as_str().unwrap().to_string();

    // A new cluster without the roles: pg_restore stops at the first statement naming the owner.
    let dst = PgCluster::start();
    for (target, extra) in [
        ("shop", &[][..]),
        ("shop_copy", &["--into", "shop_copy"][..]),
        ("shop_copy", &["--into", "shop_copy", "-j", "2"][..]),
    ] {
        let said = fails(&mut restore(&dst, &repo, &id, extra));
        assert!(
            said.contains("role \"app_owner\" does not exist"),
            "{extra:?}: {said}"
        );
        assert!(said.contains("`pgkeep restore --globals`"), "{said}");
        assert!(
            said.contains(&format!(
                "removed: database `{target}`, which this restore had created, was dropped again"
            )),
            "{extra:?}: {said}"
        );
        assert!(!exists(&dst, target), "{extra:?}: left behind");
    }
    ok(pgkeep(&dst, &repo).args(["restore", "--globals", "--backup", &id]));
    ok(&mut restore(&dst, &repo, &id, &[]));
    assert_eq!(
        dst.psql("SELECT datdba::regrole FROM pg_database WHERE datname = 'shop'"),
        "app_owner"
    );
}

/// A configuration whose pg_restore is a wrapper around the real one that first runs the
/// statements `sql` (as another client would at that moment), then fails if `fail`.
fn pg_restore_wrapper(pg: &PgCluster, dir: &std::path::Path, sql: &[&str], fail: bool) -> String {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let wrapper = bin.join("pg_restore");
    let run = if fail {
        "exit 1".to_string()
    } else {
        format!("exec {} \"$@\"", pg.bin("pg_restore").display())
    };
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && exec {} --version\n{} -X -q -d postgres{} || exit 3\n{run}\n",
            pg.bin("pg_restore").display(),
            pg.bin("psql").display(),
            sql.iter().map(|s| format!(" -c '{s}'")).collect::<String>(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = dir.join("pgkeep.toml");
    std::fs::write(
        &config,
        format!("[postgres]\nbin-dir = \"{}\"\n", bin.display()),
    )
    .unwrap();
    config.to_str().unwrap().to_string()
}

#[test]
fn a_database_another_client_made_meanwhile_is_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path());
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db("shop", "CREATE TABLE t AS SELECT 1 AS n");
    let m = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "logical", "--db", "shop"])
    ));
    let id = m["id"].as_str().unwrap().to_string();
    pg.psql("DROP DATABASE shop");

    // Someone creates `shop` between pgkeep's look-up and pg_restore's CREATE DATABASE.
    let config = pg_restore_wrapper(&pg, dir.path(), &["CREATE DATABASE shop"], false);
    let said = fails(
        pgkeep(&pg, &repo)
            .args(["--config", &config])
            .args(["restore", "--db", "shop", "--backup", &id]),
    );
    assert!(said.contains("already exists"), "{said}");
    assert!(
        said.contains(
            "a database `shop` exists that this restore did not create; it was left as it is"
        ),
        "{said}"
    );
    assert!(exists(&pg, "shop"), "another client's database was dropped");

    // Someone replaces the database pgkeep created under --into before pg_restore fails.
    let config = pg_restore_wrapper(
        &pg,
        dir.path(),
        &["DROP DATABASE shop_copy", "CREATE DATABASE shop_copy"],
        true,
    );
    let said = fails(pgkeep(&pg, &repo).args(["--config", &config]).args([
        "restore",
        "--db",
        "shop",
        "--backup",
        &id,
        "--into",
        "shop_copy",
    ]));
    assert!(
        said.contains("a database `shop_copy` exists that this restore did not create"),
        "{said}"
    );
    assert!(
        exists(&pg, "shop_copy"),
        "another client's database was dropped"
    );
}
