//! `pgkeep failover status` and `pgkeep sync files` end to end: two real PostgreSQL clusters on
//! one machine (a primary and a standby made by pg_basebackup -R), per-node marker files and web
//! roots under a temporary directory, and real rsync.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use pgkeep_testkit::PgCluster;
use serde_json::Value;

/// The pair: clusters, the directory holding markers and web roots, and the configuration.
struct Setup {
    primary: PgCluster,
    standby: PgCluster,
    dir: tempfile::TempDir,
    config: PathBuf,
}

fn standby_of(primary: &PgCluster) -> PgCluster {
    let pg_basebackup = primary.bin("pg_basebackup");
    let port = primary.port();
    PgCluster::builder()
        .populate_with(move |dir| {
            let out = Command::new(&pg_basebackup)
                .args([
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "-R",
                ])
                .arg("-p")
                .arg(port.to_string())
                .arg("-D")
                .arg(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "pg_basebackup: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        })
        .start()
}

fn setup() -> Setup {
    let primary = PgCluster::start();
    primary.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let standby = standby_of(&primary);
    let dir = tempfile::tempdir().unwrap();
    for node in ["a", "b"] {
        fs::create_dir_all(dir.path().join(node).join("www")).unwrap();
    }
    let config = dir.path().join("pgkeep.toml");
    let node = |name: &str, pg: &PgCluster| {
        format!(
            "[failover.nodes.{name}]\nconninfo = \"host=127.0.0.1 port={} user=postgres dbname=postgres\"\npgdata = \"{}\"\nmarker = \"{}\"\nsync-root = \"{}\"\n",
            pg.port(),
            pg.data_dir().display(),
            dir.path().join(name).join("primary_server").display(),
            dir.path().join(name).display(),
        )
    };
    fs::write(
        &config,
        format!(
            "[failover]\nlocal-node = \"a\"\nstate-dir = \"{}\"\n\n{}\n{}\n[sync]\npaths = [\"/www\"]\nexclude = [\"*.tmp\"]\nmax-delete = 3\n",
            dir.path().join("state").display(),
            node("a", &primary),
            node("b", &standby),
        ),
    )
    .unwrap();
    Setup {
        primary,
        standby,
        dir,
        config,
    }
}

impl Setup {
    fn pgkeep(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgkeep"));
        for (key, _) in std::env::vars() {
            if key.starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    fn marker(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("primary_server")
    }

    fn www(&self, node: &str) -> PathBuf {
        self.dir.path().join(node).join("www")
    }

    fn status(&self) -> (Output, Value) {
        let out = self
            .pgkeep()
            .args(["--json", "failover", "status"])
            .output()
            .unwrap();
        let value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
        (out, value)
    }
}

fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn problems(status: &Value) -> String {
    status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn status_names_roles_lag_and_every_inconsistency() {
    let s = setup();
    fs::write(s.marker("a"), "").unwrap();
    // The standby streams and catches up.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let (out, status) = s.status();
        if out.status.success() && status["nodes"][1]["lag_bytes"] == 0 {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the pair never became consistent: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(status["master"], "a", "{status:#}");
    assert_eq!(status["local"], "a", "{status:#}");
    let (a, b) = (&status["nodes"][0], &status["nodes"][1]);
    assert_eq!(a["in_recovery"], false, "{status:#}");
    assert_eq!(b["in_recovery"], true, "{status:#}");
    assert_eq!(b["streaming"], true, "{status:#}");
    assert_eq!(b["replay_paused"], false, "{status:#}");
    assert_eq!(a["timeline"], 1, "{status:#}");
    assert!(
        a["current_lsn"].is_string() && b["replayed_lsn"].is_string(),
        "{status:#}"
    );

    // Markers on both; on none; only on the standby; replay paused: each named, exit 3.
    fs::write(s.marker("b"), "").unwrap();
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        problems(&status).contains("marker is on 2 nodes"),
        "{status:#}"
    );
    assert!(
        problems(&status).contains("node b holds the marker but its PostgreSQL is a standby"),
        "{status:#}"
    );
    fs::remove_file(s.marker("a")).unwrap();
    fs::remove_file(s.marker("b")).unwrap();
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        problems(&status).contains("no node holds the marker"),
        "{status:#}"
    );
    fs::write(s.marker("a"), "").unwrap();
    s.standby.psql("SELECT pg_wal_replay_pause()");
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        problems(&status).contains("node b has WAL replay paused"),
        "{status:#}"
    );
    s.standby.psql("SELECT pg_wal_replay_resume()");

    // Two primaries: split brain.
    s.standby.psql("SELECT pg_promote()");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = s.status();
        if problems(&status).contains("split brain") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no split brain reported: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Human form: one line per node and the problems.
    let out = s.pgkeep().args(["failover", "status"]).output().unwrap();
    let text = said(&out);
    assert!(
        text.contains("a*") && text.contains("PROBLEM: split brain"),
        "{text}"
    );
    let _ = &s.primary;
}

fn tree(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

#[test]
fn sync_files_only_from_the_master_and_never_wipes_a_peer() {
    let s = setup();
    fs::write(s.marker("a"), "").unwrap();
    let (src, dst) = (s.www("a"), s.www("b"));
    for f in [
        "index.html",
        "app.js",
        "logo.png",
        "old-1",
        "old-2",
        "old-3",
        "old-4",
    ] {
        fs::write(src.join(f), format!("content of {f}")).unwrap();
    }
    fs::write(src.join("scratch.tmp"), "excluded").unwrap();

    // Without the sentinel: refused, nothing copied.
    let out = s.pgkeep().args(["sync", "files"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains(".pgkeep-sync"), "{}", said(&out));
    assert!(tree(&dst).is_empty());
    fs::write(src.join(".pgkeep-sync"), "").unwrap();

    // A dry run copies nothing; the real run copies everything but the excluded file.
    let out = s
        .pgkeep()
        .args(["sync", "files", "--dry-run"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(tree(&dst).is_empty());
    let out = s
        .pgkeep()
        .args(["--json", "sync", "files"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ran"], true, "{report:#}");
    assert_eq!(report["copies"][0]["files_transferred"], 8, "{report:#}");
    let mut expected = tree(&src);
    expected.retain(|f| f != "scratch.tmp");
    assert_eq!(tree(&dst), expected);
    assert_eq!(
        fs::read_to_string(dst.join("app.js")).unwrap(),
        "content of app.js"
    );

    // Deletions follow, up to max-delete (3): four at once are refused by rsync.
    fs::remove_file(src.join("old-1")).unwrap();
    let out = s.pgkeep().args(["sync", "files"]).output().unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(!dst.join("old-1").exists());
    for f in ["old-2", "old-3", "old-4", "logo.png"] {
        fs::remove_file(src.join(f)).unwrap();
    }
    let out = s.pgkeep().args(["sync", "files"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("max-delete"), "{}", said(&out));

    // On the node without the marker: nothing, exit 0, saying why.
    let out = s
        .pgkeep()
        .args(["sync", "files", "--node", "b"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("does not hold the marker"),
        "{}",
        said(&out)
    );

    // Markers on both: refused, nothing changes.
    fs::write(s.marker("b"), "").unwrap();
    fs::write(src.join("new.html"), "new").unwrap();
    let out = s.pgkeep().args(["sync", "files"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("both look like the master"),
        "{}",
        said(&out)
    );
    assert!(!dst.join("new.html").exists());

    // The marker on the standby only: refused there too.
    fs::remove_file(s.marker("a")).unwrap();
    let out = s
        .pgkeep()
        .args(["sync", "files", "--node", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("PostgreSQL is a standby"),
        "{}",
        said(&out)
    );
    let _ = (&s.primary, &s.standby);
}
