//! Tests of the throwaway PostgreSQL clusters.

use std::process::Command;
use std::time::Instant;

use pgkeep_testkit::PgCluster;

#[test]
fn start_and_select_one() {
    let t = Instant::now();
    let pg = PgCluster::start();
    eprintln!("cluster started in {:?}", t.elapsed());
    assert_eq!(pg.psql("select 1"), "1");
    assert_eq!(pg.host(), "127.0.0.1");
    assert_eq!(
        pg.conninfo(),
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            pg.port()
        )
    );
    let version_num: u32 = pg.psql("show server_version_num").parse().unwrap();
    assert_eq!(version_num / 10000, pg.major());
    assert_eq!(pg.psql("show server_encoding"), "UTF8");
    assert_eq!(pg.psql("show fsync"), "off");
    assert!(pg.data_dir().join("PG_VERSION").is_file());
    assert!(pg.bin_dir().join("pg_basebackup").is_file());
    // Multi-column, multi-row output is unaligned and |-separated.
    assert_eq!(
        pg.psql("select g, g * 2 from generate_series(1, 2) g"),
        "1|2\n2|4"
    );
    assert!(pg.log_contents().contains("database system is ready"));
    let root = pg.data_dir().parent().unwrap().to_owned();
    drop(pg);
    assert!(
        !root.exists(),
        "{} should be removed on drop",
        root.display()
    );
}

#[test]
fn two_clusters_at_once() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(PgCluster::start);
        let b = s.spawn(PgCluster::start);
        (a.join().unwrap(), b.join().unwrap())
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("create table only_in_a (x int)");
    assert_eq!(
        a.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "1"
    );
    assert_eq!(
        b.psql("select count(*) from pg_tables where tablename = 'only_in_a'"),
        "0"
    );
}

#[test]
fn settings_restart_and_errors() {
    let mut pg = PgCluster::builder()
        .setting("work_mem", "7MB")
        .setting("application_name", "it's quoted")
        .setting("fsync", "on")
        .initdb_arg("--data-checksums")
        .start();
    assert_eq!(pg.psql("show work_mem"), "7MB");
    assert_eq!(pg.psql("show fsync"), "on");
    assert_eq!(pg.psql("show data_checksums"), "on");

    pg.psql("create database other");
    pg.psql_db("other", "create table t as select 42 as x");

    pg.set_setting("work_mem", "9MB");
    pg.reload();
    // Reload is asynchronous in the backends; a new session sees it.
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while pg.psql("show work_mem") != "9MB" {
        assert!(Instant::now() < deadline, "reload did not apply");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    pg.stop();
    assert!(!pg.is_running());
    assert!(pg.try_psql_db("postgres", "select 1").is_err());
    pg.start_again();
    assert_eq!(pg.psql_db("other", "select x from t"), "42");

    pg.stop_immediate();
    pg.start_again();
    assert_eq!(pg.psql_db("other", "select x from t"), "42");
    assert!(
        pg.log_contents()
            .contains("database system was interrupted")
    );

    pg.restart();
    let err = pg
        .try_psql_db("postgres", "select * from no_such_table")
        .unwrap_err();
    assert!(err.contains("no_such_table"), "{err}");
}

#[test]
fn populate_from_a_base_backup() {
    let primary = PgCluster::start();
    primary.psql("create table t as select generate_series(1, 1000) as x");
    let port = primary.port().to_string();
    let pg_basebackup = primary.bin("pg_basebackup");
    let restored = PgCluster::builder()
        .populate_with(move |dir| {
            let out = Command::new(pg_basebackup)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-D",
                ])
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .start();
    assert_ne!(restored.port(), primary.port());
    assert_eq!(restored.psql("select count(*) from t"), "1000");
}
