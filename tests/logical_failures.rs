//! Logical restores when something is already wrong, end to end with the built binary, real
//! clusters and real repositories (a local directory and a real Garage S3): a dump that is
//! missing, truncated or damaged, a killed restore, and `restore --globals` into a live cluster
//! whose roles were changed since the backup (issue 9, points 2 and 10).

mod common;

use common::{json, stderr};

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use pgkeep_core::{LocalStorage, PutMode, S3Settings, S3Storage, Storage};
use pgkeep_testkit::{Garage, PgCluster};

/// A repository for a test, and direct access to its objects for damaging them.
struct Repo {
    url: String,
    env: Vec<(String, String)>,
    storage: Arc<dyn Storage>,
    _dir: Option<tempfile::TempDir>,
}

/// A local-directory repository under `dir`.
fn local_repo(dir: &std::path::Path) -> Repo {
    let root = dir.join("repo");
    Repo {
        url: format!("file://{}", root.display()),
        env: vec![],
        storage: Arc::new(LocalStorage::new(root)),
        _dir: None,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A local-directory repository and, when Garage runs (always under CI), a fresh S3 prefix.
fn repos(test: &str) -> Vec<Repo> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let mut out = vec![Repo {
        url: format!("file://{}", root.display()),
        env: vec![],
        storage: Arc::new(LocalStorage::new(root)),
        _dir: Some(dir),
    }];
    if let Some(garage) = Garage::shared() {
        let prefix = garage.unique_prefix(test);
        let settings = S3Settings {
            region: Some(garage.region().to_string()),
            endpoint: Some(garage.endpoint()),
            force_path_style: Some(true),
            credentials: Some((
                garage.access_key_id().to_string(),
                garage.secret_access_key().to_string(),
            )),
            ..S3Settings::default()
        };
        let storage = runtime().block_on(S3Storage::new(&settings, garage.bucket(), &prefix));
        out.push(Repo {
            url: format!("s3://{}/{prefix}", garage.bucket()),
            env: garage.env_vars(),
            storage: Arc::new(storage),
            _dir: None,
        });
    }
    out
}

impl Repo {
    fn get(&self, key: &str) -> Vec<u8> {
        runtime().block_on(self.storage.get_bytes(key)).unwrap()
    }

    fn put(&self, key: &str, bytes: &[u8]) {
        runtime()
            .block_on(self.storage.put_bytes(key, bytes, PutMode::Overwrite))
            .unwrap();
    }

    fn delete(&self, key: &str) {
        runtime().block_on(self.storage.delete(key)).unwrap();
    }
}

/// `pgkeep` against `pg` and `repo`, with a clean environment.
fn pgkeep(pg: &PgCluster, repo: &Repo) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgkeep"));
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .env("PGKEEP_REPO", &repo.url)
        .envs(repo.env.iter().cloned());
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
    out
}

/// Runs a command that must fail with exit code 1; returns its stderr.
fn fails(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{cmd:?}: {}", stderr(&out));
    stderr(&out)
}

fn exists(pg: &PgCluster, db: &str) -> bool {
    pg.psql(&format!(
        "SELECT count(*) FROM pg_database WHERE datname = '{db}'"
    )) == "1"
}

/// Flips a byte in the middle: same size, so only reading the object finds it.
fn flipped(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let middle = out.len() / 2;
    out[middle] ^= 0x5a;
    out
}

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

/// A role's login flag and stored password hash.
fn role(pg: &PgCluster, name: &str) -> String {
    pg.psql(&format!(
        "SELECT rolcanlogin, rolpassword FROM pg_authid WHERE rolname = '{name}'"
    ))
}

/// How many roles `app` is a member of.
fn memberships(pg: &PgCluster) -> String {
    pg.psql("SELECT count(*) FROM pg_auth_members WHERE member = 'app'::regrole")
}

#[test]
fn restore_globals_leaves_existing_roles_alone_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path());
    let pg = PgCluster::start();
    pg.psql("CREATE ROLE app LOGIN PASSWORD 'app-pw'");
    pg.psql("CREATE ROLE \"Report \"\"ing\"\"\" NOLOGIN");
    pg.psql("GRANT \"Report \"\"ing\"\"\" TO app");
    let m = json(&ok(pgkeep(&pg, &repo).args([
        "--json",
        "backup",
        "logical",
        "--globals",
    ])));
    let id = m["id"].as_str().unwrap().to_string();
    let key = m["objects"][0]["key"].as_str().unwrap().to_string();
    let at_backup = role(&pg, "app");

    // The incident runbook locks the application's role out; someone also dropped a role.
    pg.psql("ALTER ROLE app NOLOGIN PASSWORD 'new-pw'");
    pg.psql("DROP ROLE \"Report \"\"ing\"\"\"");
    let locked = role(&pg, "app");
    assert!(locked.starts_with("f|"), "{locked}");

    let out = ok(pgkeep(&pg, &repo).args(["--json", "restore", "--globals", "--backup", &id]));
    let report = json(&out);
    assert_eq!(
        report["created_roles"],
        serde_json::json!(["Report \"ing\""])
    );
    assert_eq!(
        report["skipped_roles"],
        serde_json::json!(["app", "postgres"])
    );
    assert_eq!(report["overwritten_roles"], serde_json::json!([]));
    assert_eq!(role(&pg, "app"), locked, "the locked role was changed");
    assert_eq!(
        pg.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = 'Report \"ing\"'"),
        "f"
    );
    // app's membership was skipped with app itself.
    assert_eq!(memberships(&pg), "0");

    // The human report names them and the flag that would overwrite them; repeating is safe.
    let out = ok(pgkeep(&pg, &repo).args(["restore", "--globals", "--backup", &id]));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        said.contains("skipped existing roles (attributes, passwords, LOGIN/NOLOGIN, settings and memberships left as they are): Report \"ing\", app, postgres"),
        "{said}"
    );
    assert!(said.contains("--overwrite-roles"), "{said}");
    assert_eq!(role(&pg, "app"), locked);

    // Asked for: the backup's attributes and password are applied, and the report says so.
    let out =
        ok(pgkeep(&pg, &repo).args(["restore", "--globals", "--backup", &id, "--overwrite-roles"]));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("overwrote existing roles"), "{said}");
    assert!(said.contains("may be able to log in again"), "{said}");
    assert!(said.contains("app"), "{said}");
    assert_eq!(role(&pg, "app"), at_backup);
    assert_eq!(memberships(&pg), "1");

    // The flag only goes with --globals.
    let out = pgkeep(&pg, &repo)
        .args(["restore", "--db", "x", "--backup", &id, "--overwrite-roles"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));

    // A damaged globals dump is refused before psql runs anything.
    pg.psql("ALTER ROLE app NOLOGIN");
    let good = repo.get(&key);
    repo.put(&key, &flipped(&good));
    let said = fails(pgkeep(&pg, &repo).args([
        "restore",
        "--globals",
        "--backup",
        &id,
        "--overwrite-roles",
    ]));
    assert!(said.contains("checksum mismatch"), "{said}");
    assert!(role(&pg, "app").starts_with("f|"));
    repo.put(&key, &good[..10]);
    let said = fails(pgkeep(&pg, &repo).args(["restore", "--globals", "--backup", &id]));
    assert!(said.contains("nothing was created or changed"), "{said}");
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
