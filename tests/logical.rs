//! Logical backups and restores end to end, with the built binary, real clusters, a local-directory
//! repository and a real Garage S3 repository.

mod common;

use common::{json, stderr};

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use pgkeep_testkit::{FaultMode, FaultProxy, Garage, PgCluster};
use serde_json::Value;

/// A repository for a test: a local directory, or a fresh prefix on the shared Garage.
struct Repo {
    url: String,
    env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

/// A repository in the local directory `path` (the caller keeps the directory alive).
fn local_repo(path: &Path) -> Repo {
    Repo {
        url: format!("file://{}", path.display()),
        env: vec![],
        _dir: None,
    }
}

fn repos(test: &str) -> Vec<Repo> {
    let dir = tempfile::tempdir().unwrap();
    let mut out = vec![Repo {
        url: format!("file://{}/repo", dir.path().display()),
        env: vec![],
        _dir: Some(dir),
    }];
    if let Some(garage) = Garage::shared() {
        out.push(Repo {
            url: format!("s3://{}/{}", garage.bucket(), garage.unique_prefix(test)),
            env: garage.env_vars(),
            _dir: None,
        });
    }
    out
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

fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap()
}

fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn list(pg: &PgCluster, repo: &Repo) -> Vec<Value> {
    json(&ok(pgkeep(pg, repo).args(["--json", "list"])))["backups"]
        .as_array()
        .unwrap()
        .clone()
}

/// `pg_dumpall` of a cluster, for comparing two clusters.
fn dumpall(pg: &PgCluster) -> String {
    let out = pg.client("pg_dumpall").output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // pg_dumpall (15.14 and later) brackets each part with a random \restrict key.
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("\\restrict ") && !l.starts_with("\\unrestrict "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn populate(pg: &PgCluster) {
    for sql in [
        "CREATE ROLE app_owner LOGIN PASSWORD 'owner-pw'",
        "CREATE ROLE reader NOLOGIN",
        "CREATE DATABASE shop OWNER app_owner",
        "CREATE DATABASE \"Ünïcode db\"",
        "ALTER DATABASE shop SET work_mem = '8MB'",
    ] {
        pg.psql(sql);
    }
    pg.psql_db(
        "shop",
        "CREATE EXTENSION hstore;
         CREATE TABLE items (id serial PRIMARY KEY, name text, attrs hstore);
         INSERT INTO items (name, attrs)
              SELECT 'café crème ☕ ' || g, ('n=>' || g)::hstore FROM generate_series(1, 5000) g;
         ALTER TABLE items OWNER TO app_owner;
         GRANT SELECT ON items TO reader;
         SELECT lo_from_bytea(4242, '\\xdeadbeef00ff');",
    );
    pg.psql_db(
        "Ünïcode db",
        "CREATE TABLE 表 (k text); INSERT INTO 表 VALUES ('日本語'), ('Ελληνικά');",
    );
}

#[test]
fn round_trip_everything_into_a_fresh_cluster() {
    for repo in repos("logical-rt") {
        let src = PgCluster::start();
        populate(&src);
        let before = dumpall(&src);

        let out = ok(pgkeep(&src, &repo).args(["--json", "backup", "logical", "--all", "-j", "2"]));
        let manifest = json(&out);
        let id = manifest["id"].as_str().unwrap().to_string();
        let databases: Vec<&str> = manifest["objects"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o["database"].as_str())
            .collect();
        assert_eq!(
            databases,
            ["postgres", "shop", "Ünïcode db"],
            "{manifest:#}"
        );
        assert_eq!(manifest["objects"][0]["role"], "globals");
        for object in manifest["objects"].as_array().unwrap() {
            assert_eq!(object["compression"], "zstd");
            assert_eq!(object["sha256"].as_str().unwrap().len(), 64);
            assert_eq!(object["stored_sha256"].as_str().unwrap().len(), 64);
        }
        assert!(!out.stdout.windows(8).any(|w| w == b"owner-pw"));

        let dst = PgCluster::start();
        ok(pgkeep(&dst, &repo).args(["restore", "--globals", "--backup", &id]));
        for db in ["shop", "Ünïcode db"] {
            ok(pgkeep(&dst, &repo).args(["restore", "--db", db, "--backup", &id]));
        }
        ok(pgkeep(&dst, &repo).args(["restore", "--db", "postgres", "--backup", &id, "--clean"]));
        let after = dumpall(&dst);
        if before != after {
            let diff: Vec<String> = before
                .lines()
                .zip(after.lines())
                .filter(|(a, b)| a != b)
                .take(10)
                .map(|(a, b)| format!("- {a}\n+ {b}"))
                .collect();
            panic!(
                "{}: pg_dumpall differs after the round trip:\n{}",
                repo.url,
                diff.join("\n")
            );
        }
        assert_eq!(
            dst.psql_db("shop", "SELECT encode(lo_get(4242), 'hex')"),
            "deadbeef00ff"
        );

        // Parallel restore under another name: staged in a temporary file, same contents.
        ok(pgkeep(&dst, &repo).args([
            "restore",
            "--db",
            "shop",
            "--backup",
            &id,
            "--into",
            "shop_copy",
            "-j",
            "2",
        ]));
        assert_eq!(
            dst.psql_db("shop_copy", "SELECT count(*), min(name) FROM items"),
            "5000|café crème ☕ 1"
        );

        // verify: every object re-read and the archives listed by pg_restore.
        let checks = json(&ok(pgkeep(&dst, &repo).args(["--json", "verify", &id])));
        assert_eq!(checks["backups"][0]["ok"], true, "{checks:#}");
        assert_eq!(checks["backups"][0]["objects"].as_array().unwrap().len(), 4);
    }
}

#[test]
fn restore_at_picks_the_newest_backup_before_the_time() {
    for repo in repos("logical-at") {
        let pg = PgCluster::start();
        pg.psql("CREATE DATABASE app");
        pg.psql_db("app", "CREATE TABLE t (n int)");
        let mut finished = Vec::new();
        for n in 1..=3 {
            pg.psql_db("app", &format!("INSERT INTO t VALUES ({n})"));
            let m = json(&ok(
                pgkeep(&pg, &repo).args(["--json", "backup", "logical", "--db", "app"])
            ));
            finished.push((
                m["id"].as_str().unwrap().to_string(),
                chrono::DateTime::parse_from_rfc3339(m["finished_at"].as_str().unwrap()).unwrap(),
            ));
            std::thread::sleep(Duration::from_millis(1100));
        }
        let listed = list(&pg, &repo);
        assert_eq!(listed.len(), 3);
        assert_eq!(listed[1]["databases"], serde_json::json!(["app"]));

        // Between the second and third backup: the second, restored beside the original.
        let between = finished[1].1 + chrono::Duration::milliseconds(500);
        let out = ok(pgkeep(&pg, &repo).args([
            "--json",
            "restore",
            "--db",
            "app",
            "--at",
            &between.to_rfc3339(),
            "--into",
            "app_then",
        ]));
        let result = json(&out);
        assert_eq!(result["plan"]["backup"]["id"], finished[1].0.as_str());
        assert_eq!(pg.psql_db("app_then", "SELECT count(*) FROM t"), "2");
        // The human form says which backup and how far before the time.
        let out = ok(pgkeep(&pg, &repo).args([
            "restore",
            "--db",
            "app",
            "--at",
            &between.to_rfc3339(),
            "--into",
            "app_then2",
        ]));
        let said = stderr(&out);
        assert!(
            said.contains(&finished[1].0) && said.contains("before the requested"),
            "{said}"
        );

        // Before the first backup: a clear error naming the oldest restorable time.
        let early = finished[0].1 - chrono::Duration::hours(1);
        let out = run(pgkeep(&pg, &repo).args([
            "restore",
            "--db",
            "app",
            "--at",
            &early.to_rfc3339(),
            "--into",
            "x",
        ]));
        assert_eq!(out.status.code(), Some(1));
        let said = stderr(&out);
        assert!(said.contains("no logical backup of `app`"), "{said}");
        assert!(said.contains("the oldest restorable time is"), "{said}");
        assert!(
            said.contains(&finished[0].1.format("%Y-%m-%d %H:%M:%S").to_string()),
            "{said}"
        );

        // A bad time is a usage error.
        let out = run(pgkeep(&pg, &repo).args(["restore", "--db", "app", "--at", "last tuesday"]));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    }
}

#[test]
fn restore_refuses_an_existing_database_without_clean() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(&dir.path().join("repo"));
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE app");
    pg.psql_db("app", "CREATE TABLE t AS SELECT 1 AS n");
    ok(pgkeep(&pg, &repo).args(["backup", "logical", "--db", "app"]));
    pg.psql_db("app", "INSERT INTO t VALUES (2)");
    let id = list(&pg, &repo)[0]["id"].as_str().unwrap().to_string();

    let out = run(pgkeep(&pg, &repo).args(["restore", "--db", "app", "--backup", &id]));
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains("database `app` already exists; nothing was changed"),
        "{said}"
    );
    assert!(said.contains("--clean"), "{said}");
    assert_eq!(
        pg.psql_db("app", "SELECT count(*) FROM t"),
        "2",
        "untouched"
    );

    ok(pgkeep(&pg, &repo).args(["restore", "--db", "app", "--backup", &id, "--clean"]));
    assert_eq!(pg.psql_db("app", "SELECT count(*) FROM t"), "1", "replaced");
}

/// Flips one byte in the middle of a local repository file, or cuts its end off.
fn damage(path: &Path, truncate: bool) {
    let mut bytes = std::fs::read(path).unwrap();
    if truncate {
        bytes.truncate(bytes.len() - 10);
    } else {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x20;
    }
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn verify_finds_flipped_and_truncated_objects() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("repo");
    let repo = local_repo(&root);
    let pg = PgCluster::start();
    populate(&pg);
    let m = json(&ok(pgkeep(&pg, &repo).args([
        "--json",
        "backup",
        "logical",
        "--db",
        "shop",
        "--globals",
    ])));
    let id = m["id"].as_str().unwrap().to_string();
    let shop_key = m["objects"][1]["key"].as_str().unwrap().to_string();
    let globals_key = m["objects"][0]["key"].as_str().unwrap().to_string();
    ok(pgkeep(&pg, &repo).args(["verify", &id]));

    damage(&root.join(&shop_key), false);
    let out = run(pgkeep(&pg, &repo).args(["verify", "--all"]));
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(&format!("FAILED  {shop_key}")), "{said}");
    assert!(said.contains("checksum mismatch"), "{said}");
    assert!(said.contains(&format!("ok      {globals_key}")), "{said}");
    assert!(
        stderr(&out).contains("verify found 1 damaged object"),
        "{}",
        stderr(&out)
    );

    damage(&root.join(&globals_key), true);
    let out = run(pgkeep(&pg, &repo).args(["--json", "verify", &id]));
    assert_eq!(out.status.code(), Some(1));
    let checks = json(&out);
    assert_eq!(checks["backups"][0]["ok"], false);
    for object in checks["backups"][0]["objects"].as_array().unwrap() {
        assert_eq!(object["ok"], false, "{object}");
        assert!(
            object["error"]
                .as_str()
                .unwrap()
                .contains("checksum mismatch"),
            "{object}"
        );
    }

    // A restore from the damaged dump fails loudly and names the object.
    let out = run(pgkeep(&pg, &repo).args([
        "restore", "--db", "shop", "--backup", &id, "--into", "shop2",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("checksum mismatch"),
        "{}",
        stderr(&out)
    );
}

/// A database big enough that its dump takes a moment.
fn populate_big(pg: &PgCluster) {
    pg.psql("CREATE DATABASE big");
    pg.psql_db(
        "big",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 7)::text) AS payload
           FROM generate_series(1, 1500000) g",
    );
}

/// Starts a backup and waits until it is dumping `big`.
fn start_backup(pg: &PgCluster, repo: &Repo) -> std::process::Child {
    let mut child = pgkeep(pg, repo)
        .args(["backup", "logical", "--db", "big"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("big: started"))),
        "the backup did not start"
    );
    std::thread::spawn(move || lines.for_each(drop));
    std::thread::sleep(Duration::from_millis(700));
    child
}

fn pg_dump_children(parent: u32) -> Vec<u32> {
    let out = Command::new("pgrep")
        .args(["-P", &parent.to_string(), "pg_dump"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn killed_backups_leave_nothing_listed() {
    let pg = PgCluster::start();
    populate_big(&pg);
    for repo in repos("logical-kill") {
        // SIGKILL of pgkeep itself.
        let mut child = start_backup(&pg, &repo);
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(
            list(&pg, &repo).is_empty(),
            "{}: a killed run is listed",
            repo.url
        );

        // SIGKILL of pg_dump: pgkeep fails and says so.
        let child = start_backup(&pg, &repo);
        let dumps = pg_dump_children(child.id());
        assert_eq!(dumps.len(), 1, "one pg_dump runs");
        Command::new("kill")
            .args(["-9", &dumps[0].to_string()])
            .status()
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            list(&pg, &repo).is_empty(),
            "{}: a failed run is listed",
            repo.url
        );

        // The next run is not disturbed by the leftovers.
        ok(pgkeep(&pg, &repo).args(["backup", "logical", "--db", "big"]));
        assert_eq!(list(&pg, &repo).len(), 1);
    }

    // S3 failing midway: the store becomes unreachable during the upload.
    let Some(garage) = Garage::shared() else {
        return;
    };
    let proxy = FaultProxy::start(garage.s3_addr());
    let mut repo = Repo {
        url: format!(
            "s3://{}/{}",
            garage.bucket(),
            garage.unique_prefix("logical-s3cut")
        ),
        env: garage.env_vars(),
        _dir: None,
    };
    for (key, value) in &mut repo.env {
        if key == "AWS_ENDPOINT_URL" {
            *value = proxy.http_endpoint();
        }
    }
    let child = start_backup(&pg, &repo);
    proxy.set_mode(FaultMode::ResetAll);
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    proxy.set_mode(FaultMode::PassThrough);
    assert!(list(&pg, &repo).is_empty());
    ok(pgkeep(&pg, &repo).args(["backup", "logical", "--db", "big"]));
    assert_eq!(list(&pg, &repo).len(), 1);
}

#[test]
fn a_pg_dump_older_than_the_server_is_refused_with_the_fix() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE app");
    let dir = tempfile::tempdir().unwrap();
    // A wrapper around the real pg_dump that claims to be older, as a leftover client package would.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let wrapper = bin.join("pg_dump");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'pg_dump (PostgreSQL) {}.9'; exit 0; }}\nexec {} \"$@\"\n",
            pg.major() - 1,
            pg.bin("pg_dump").display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = dir.path().join("pgkeep.toml");
    std::fs::write(
        &config,
        format!("[postgres]\nbin-dir = \"{}\"\n", bin.display()),
    )
    .unwrap();
    let repo = local_repo(&dir.path().join("repo"));
    let out = run(pgkeep(&pg, &repo).args([
        "--config",
        config.to_str().unwrap(),
        "backup",
        "logical",
        "--db",
        "app",
    ]));
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    let major = pg.major();
    assert!(
        said.contains(&format!(
            "is version {}, older than the server's {major}",
            major - 1
        )),
        "{said}"
    );
    assert!(
        said.contains(&format!("install postgresql-client-{major}")),
        "{said}"
    );
    assert!(list(&pg, &repo).is_empty());
}

#[test]
fn schema_only_and_excluded_tables() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(&dir.path().join("repo"));
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE app");
    pg.psql_db(
        "app",
        "CREATE TABLE kept AS SELECT 1 AS n; CREATE TABLE audit_log AS SELECT 2 AS n;",
    );
    let schema = json(&ok(pgkeep(&pg, &repo).args([
        "--json",
        "backup",
        "logical",
        "--db",
        "app",
        "--schema-only",
    ])));
    assert_eq!(schema["logical"]["schema_only"], true);
    std::thread::sleep(Duration::from_millis(1100));
    let excluded = json(&ok(pgkeep(&pg, &repo).args([
        "--json",
        "backup",
        "logical",
        "--db",
        "app",
        "--exclude-table",
        "audit_*",
    ])));
    assert_eq!(
        excluded["logical"]["exclude_tables"],
        serde_json::json!(["audit_*"])
    );

    let id = schema["id"].as_str().unwrap();
    ok(pgkeep(&pg, &repo).args([
        "restore",
        "--db",
        "app",
        "--backup",
        id,
        "--into",
        "app_schema",
    ]));
    assert_eq!(pg.psql_db("app_schema", "SELECT count(*) FROM kept"), "0");

    let id = excluded["id"].as_str().unwrap();
    ok(pgkeep(&pg, &repo).args([
        "restore", "--db", "app", "--backup", id, "--into", "app_excl",
    ]));
    assert_eq!(pg.psql_db("app_excl", "SELECT count(*) FROM kept"), "1");
    assert_eq!(
        pg.psql_db(
            "app_excl",
            "SELECT count(*) FROM pg_tables WHERE tablename = 'audit_log'"
        ),
        "0"
    );
}
