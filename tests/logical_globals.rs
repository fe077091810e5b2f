//! `restore --globals` into a live cluster whose roles changed since the backup (a role locked by
//! the incident runbook, a role dropped), end to end with the built binary and real clusters
//! (issue 9, point 10).

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;

use common::{json, stderr};
use repo::{fails, flipped, local_repo, ok, pgkeep};

use pgkeep_testkit::PgCluster;

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
fn existing_roles_are_found_in_a_dump_of_another_encoding() {
    let dir = tempfile::tempdir().unwrap();
    let repo = local_repo(dir.path());
    let src = PgCluster::builder()
        .initdb_arg("--encoding=LATIN1")
        .initdb_arg("--locale=C")
        .start();
    // The names as UTF-8 text; the server stores them in LATIN1.
    let utf8_psql = |sql: &str| {
        let out = src
            .client("psql")
            .args([
                "-X",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .env("PGCLIENTENCODING", "UTF8")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    utf8_psql("CREATE ROLE \"café\" LOGIN PASSWORD 'pw'");
    utf8_psql("CREATE ROLE \"naïve\" NOLOGIN");
    assert_eq!(
        utf8_psql(
            "SELECT octet_length(convert_to(rolname::text, 'LATIN1')) FROM pg_roles WHERE rolname = 'café'"
        ),
        "4"
    );
    let m = json(&ok(pgkeep(&src, &repo).args([
        "--json",
        "backup",
        "logical",
        "--globals",
    ])));
    let id = m["id"].as_str().unwrap().to_string();

    // A UTF8 cluster where `café` exists, locked, and a role LATIN1 cannot spell.
    let dst = PgCluster::start();
    dst.psql("CREATE ROLE \"café\" NOLOGIN");
    dst.psql("CREATE ROLE \"日本\" NOLOGIN");
    let report = json(&ok(pgkeep(&dst, &repo).args([
        "--json",
        "restore",
        "--globals",
        "--backup",
        &id,
    ])));
    assert_eq!(report["created_roles"], serde_json::json!(["naïve"]));
    assert_eq!(
        report["skipped_roles"],
        serde_json::json!(["café", "postgres"])
    );
    assert_eq!(
        dst.psql("SELECT rolcanlogin, rolpassword IS NULL FROM pg_authid WHERE rolname = 'café'"),
        "f|t"
    );
}
