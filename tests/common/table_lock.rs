//! A psql session holding an ACCESS EXCLUSIVE lock on table `items` of database `shop`, on which
//! a pg_dump of `shop` waits: how the tests make a backup slow, or stop it midway.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pgkeep_testkit::PgCluster;

/// Polls `done` every 100 ms for up to a minute.
pub fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A session holding an ACCESS EXCLUSIVE lock on `shop.items` until [`unlock`].
pub fn lock(pg: &PgCluster) -> Child {
    let mut session = Command::new(pg.bin_dir().join("psql"))
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-d",
            "shop",
            "-p",
        ])
        .arg(pg.port().to_string())
        .env_remove("PGHOST")
        .env_remove("PGPORT")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = session.stdin.as_mut().unwrap();
    stdin
        .write_all(b"BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE;\n")
        .unwrap();
    stdin.flush().unwrap();
    wait_for("the lock", || locks(pg, "l.granted") == "1");
    session
}

pub fn unlock(mut session: Child) {
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"COMMIT;\n").unwrap();
    drop(stdin);
    session.wait().unwrap();
}

/// How many locks on `shop.items` match `condition`.
pub fn locks(pg: &PgCluster, condition: &str) -> String {
    pg.psql_db(
        "shop",
        &format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
              WHERE c.relname = 'items' AND {condition}"
        ),
    )
}
