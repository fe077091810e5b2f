//! Data offsets added to a piped pg_dump archive match what pg_dump writes into a file itself, and
//! pg_restore -j restores the patched archive.

use std::process::{Command, Stdio};

use pgkeep_core::archive::{add_data_offsets, data_offsets};
use pgkeep_testkit::PgCluster;

fn pg_dump(pg: &PgCluster, args: &[&str]) -> Command {
    let mut cmd = pg.client("pg_dump");
    cmd.args(["--format=custom", "--compress=0"]).args(args);
    cmd
}

#[test]
fn offsets_of_a_piped_dump_match_pg_dumps_own() {
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE app");
    pg.psql_db(
        "app",
        "CREATE TABLE a AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
         CREATE TABLE b AS SELECT g FROM generate_series(1, 10) g;
         CREATE TABLE empty (x int);
         SELECT lo_from_bytea(0, '\\x0102');",
    );
    let dir = tempfile::tempdir().unwrap();

    // Written to a pipe: no offsets.
    let piped = dir.path().join("piped.dump");
    let out = pg_dump(&pg, &["app"])
        .stdout(Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&piped, &out.stdout).unwrap();
    let before = data_offsets(&piped).unwrap();
    assert!(before.len() >= 3, "{before:?}");
    assert!(before.iter().all(|e| e.offset.is_none()), "{before:?}");

    // Written to a file by pg_dump itself: offsets set.
    let direct = dir.path().join("direct.dump");
    assert!(
        pg_dump(&pg, &["-f", direct.to_str().unwrap(), "app"])
            .status()
            .unwrap()
            .success()
    );
    let expected = data_offsets(&direct).unwrap();
    assert!(expected.iter().all(|e| e.offset.is_some()), "{expected:?}");

    assert_eq!(add_data_offsets(&piped).unwrap(), before.len());
    assert_eq!(data_offsets(&piped).unwrap(), expected);
    assert_eq!(
        add_data_offsets(&piped).unwrap(),
        0,
        "a second pass changes nothing"
    );

    // pg_restore -j reads the patched archive.
    pg.psql("CREATE DATABASE copy");
    let restored = pg
        .client("pg_restore")
        .args(["--jobs=2", "--exit-on-error", "-d", "copy"])
        .arg(&piped)
        .output()
        .unwrap();
    assert!(
        restored.status.success(),
        "{}",
        String::from_utf8_lossy(&restored.stderr)
    );
    assert_eq!(pg.psql_db("copy", "SELECT count(*) FROM a"), "20000");

    // Not an archive: refused, file untouched.
    let other = dir.path().join("other");
    std::fs::write(&other, b"hello").unwrap();
    assert!(add_data_offsets(&other).is_err());
    assert_eq!(std::fs::read(&other).unwrap(), b"hello");
}
