//! `pgkeep failover status` and `pgkeep sync files` end to end: two real PostgreSQL clusters on
//! one machine (a primary and a standby made by pg_basebackup -R), per-node marker files and web
//! roots under a temporary directory, and real rsync.

mod common;

use common::json;

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

fn setup() -> Setup {
    // wal_log_hints: pg_rewind can bring a former master back as a standby; wal_keep_size keeps
    // the WAL it reads back to the last common checkpoint (these tests archive no WAL).
    let primary = PgCluster::builder()
        .setting("wal_log_hints", "on")
        .setting("wal_keep_size", "256MB")
        .start();
    primary.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let standby = PgCluster::builder()
        .setting("hot_standby", "on")
        .setting("wal_log_hints", "on")
        .setting("wal_keep_size", "256MB")
        .standby_of(&primary)
        .start();
    let dir = tempfile::tempdir().unwrap();
    for node in ["a", "b"] {
        fs::create_dir_all(dir.path().join(node).join("www")).unwrap();
    }
    // The servers' OS user writes its logs here when the node commands start PostgreSQL.
    PgCluster::chown_for_server(dir.path());
    let config = dir.path().join("pgkeep.toml");
    // PostgreSQL runs as the postgres OS user when the tests run as root.
    let as_server = if is_root() {
        "runuser -u postgres -- "
    } else {
        ""
    };
    let node = |name: &str, pg: &PgCluster| {
        let pg_ctl = format!(
            "{as_server}{} -D {} -w",
            pg.bin("pg_ctl").display(),
            pg.data_dir().display()
        );
        let here = dir.path().join(name);
        format!(
            "[failover.nodes.{name}]\nconninfo = \"host=127.0.0.1 port={} user=postgres dbname=postgres\"\npgdata = \"{}\"\nmarker = \"{}\"\nsync-root = \"{}\"\n\
             stop-postgres = \"{pg_ctl} -m fast stop\"\nstart-postgres = \"{pg_ctl} -l {} start\"\n\
             services = [\"nginx\"]\nstart-service = \"touch {}/{{service}}.running\"\nstop-service = \"rm {}/{{service}}.running\"\n",
            pg.port(),
            pg.data_dir().display(),
            here.join("primary_server").display(),
            here.display(),
            here.join("server.log").display(),
            here.display(),
            here.display(),
        )
    };
    fs::write(
        &config,
        format!(
            "[failover]\nlocal-node = \"a\"\nstate-dir = \"{}\"\ncatch-up-timeout = 60\nmax-lag-bytes = 4096\nhooks = [\"echo $PGKEEP_NEW_PRIMARY > {}\"]\n\n{}\n{}\n[sync]\npaths = [\"/www\"]\nexclude = [\"*.tmp\"]\nmax-delete = 3\n",
            dir.path().join("state").display(),
            dir.path().join("hook.out").display(),
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

/// The pair as it was before a refused switchover: a the master, b its standby.
fn unchanged(s: &Setup) {
    assert!(s.marker("a").exists() && s.dir.path().join("a/nginx.running").exists());
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "t");
}

impl Setup {
    fn switchover(&self, args: &[&str]) -> Output {
        self.pgkeep()
            .args(["failover", "switchover"])
            .args(args)
            .output()
            .unwrap()
    }

    /// `pgkeep ARGS` to its end.
    fn run(&self, args: &[&str]) -> Output {
        self.pgkeep().args(args).output().unwrap()
    }

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
        let out = self.run(&["--json", "failover", "status"]);
        let value = json(&out);
        (out, value)
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
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
    let out = s.run(&["failover", "status"]);
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
    let out = s.run(&["sync", "files"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains(".pgkeep-sync"), "{}", said(&out));
    assert!(tree(&dst).is_empty());
    fs::write(src.join(".pgkeep-sync"), "").unwrap();

    // While another switchover or sync holds the lock: refused at once.
    fs::create_dir_all(s.dir.path().join("state")).unwrap();
    // (-o: the lock stays with flock itself, so killing it releases the lock)
    let mut holder = Command::new("flock")
        .arg("-o")
        .arg(s.dir.path().join("state/failover.lock"))
        .args(["sleep", "30"])
        .spawn()
        .unwrap();
    // Wait until flock holds it (probing with a lock of our own, released at once), so that the
    // sync below cannot run before it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let held = || {
        fs::File::open(s.dir.path().join("state/failover.lock"))
            .is_ok_and(|f| f.try_lock().is_err())
    };
    while !held() {
        assert!(Instant::now() < deadline, "flock did not take the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = s.run(&["sync", "files"]);
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("another pgkeep switchover or file sync holds"),
        "{}",
        said(&out)
    );
    assert!(tree(&dst).is_empty());

    // A dry run copies nothing; the real run copies everything but the excluded file.
    let out = s.run(&["sync", "files", "--dry-run"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(tree(&dst).is_empty());
    let out = s.run(&["--json", "sync", "files"]);
    assert!(out.status.success(), "{}", said(&out));
    let report = json(&out);
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
    let out = s.run(&["sync", "files"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(!dst.join("old-1").exists());
    for f in ["old-2", "old-3", "old-4", "logo.png"] {
        fs::remove_file(src.join(f)).unwrap();
    }
    let out = s.run(&["sync", "files"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("max-delete"), "{}", said(&out));

    // rsync's exit 24 (files vanished while copying, e.g. a cache file deleted meanwhile) is a
    // warning, not a failure: a wrapper around the real rsync reports it.
    let wrapper = s.dir.path().join("rsync-vanished");
    fs::write(&wrapper, "#!/bin/sh\nrsync \"$@\" || exit $?\nexit 24\n").unwrap();
    fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let config = fs::read_to_string(&s.config).unwrap().replace(
        "[sync]\n",
        &format!("[sync]\nrsync = \"{}\"\n", wrapper.display()),
    );
    fs::write(&s.config, &config).unwrap();
    fs::write(src.join("vanishing.html"), "x").unwrap();
    let out = s.run(&["--json", "sync", "files"]);
    assert!(out.status.success(), "{}", said(&out));
    let report = json(&out);
    assert!(
        report["copies"][0]["warning"]
            .as_str()
            .unwrap()
            .contains("vanished"),
        "{report:#}"
    );
    assert!(dst.join("vanishing.html").exists());

    // On the node without the marker: nothing, exit 0, saying why.
    let out = s.run(&["sync", "files", "--node", "b"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("does not hold the marker"),
        "{}",
        said(&out)
    );

    // Markers on both: refused, nothing changes.
    fs::write(s.marker("b"), "").unwrap();
    fs::write(src.join("new.html"), "new").unwrap();
    let out = s.run(&["sync", "files"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("both look like the master"),
        "{}",
        said(&out)
    );
    assert!(!dst.join("new.html").exists());

    // The marker on the standby only: refused there too.
    fs::remove_file(s.marker("a")).unwrap();
    let out = s.run(&["sync", "files", "--node", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("PostgreSQL is a standby"),
        "{}",
        said(&out)
    );
    let _ = (&s.primary, &s.standby);
}

#[test]
fn switchover_checks_first_then_moves_marker_roles_and_services_and_resumes_after_a_kill() {
    let mut s = setup();
    fs::write(s.marker("a"), "").unwrap();
    fs::write(s.dir.path().join("a/nginx.running"), "").unwrap();
    fs::write(s.www("a").join(".pgkeep-sync"), "").unwrap();
    fs::write(s.www("a").join("index.html"), "the site").unwrap();
    s.primary
        .psql("INSERT INTO t SELECT 1000 + g FROM generate_series(1, 10) g");
    // Refusals change nothing: the target is the master; replay paused; markers on both.
    let out = s.switchover(&["--to", "a"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains("already the master"), "{}", said(&out));
    s.standby.psql("SELECT pg_wal_replay_pause()");
    let out = s.switchover(&["--to", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("WAL replay is paused on b"),
        "{}",
        said(&out)
    );
    s.standby.psql("SELECT pg_wal_replay_resume()");
    fs::write(s.marker("b"), "").unwrap();
    let out = s.switchover(&["--to", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("marker is on a and b"),
        "{}",
        said(&out)
    );
    fs::remove_file(s.marker("b")).unwrap();
    unchanged(&s);

    // Replay lagging more than max-lag-bytes (4096; the standby delays applying commits).
    s.standby.set_setting("recovery_min_apply_delay", "1h");
    s.standby.reload();
    // Replay stops before the first delayed commit; the second transaction is all behind.
    s.primary.psql("INSERT INTO t SELECT 1");
    s.primary
        .psql("INSERT INTO t SELECT g FROM generate_series(1, 1000) g");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = s.status();
        if status["nodes"][1]["lag_bytes"]
            .as_u64()
            .is_some_and(|l| l > 4096)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no lag: {status:#}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = s.switchover(&["--to", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("more than failover.max-lag-bytes"),
        "{}",
        said(&out)
    );
    s.standby.set_setting("recovery_min_apply_delay", "0");
    s.standby.reload();
    // A target that is not a running standby.
    s.standby.stop();
    let out = s.switchover(&["--to", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("b is not a streaming standby"),
        "{}",
        said(&out)
    );
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3));
    assert!(
        problems(&status).contains("node b: PostgreSQL does not answer"),
        "{status:#}"
    );
    let out = s.switchover(&["--to", "c"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("there is no node `c`"),
        "{}",
        said(&out)
    );
    s.standby.start_again();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (out, status) = s.status();
        if out.status.success() && status["nodes"][1]["lag_bytes"] == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the standby does not catch up: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    unchanged(&s);

    // The dry run prints the plan and changes nothing.
    let out = s.switchover(&["--to", "b", "--dry-run"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("stop services on a: nginx"),
        "{}",
        said(&out)
    );
    unchanged(&s);

    // Killed while waiting for the standby to replay the master's last checkpoint (its replay is
    // paused by node a's stop-service command, after the checks): the journal shows where it
    // stopped, and the rerun finishes the job.
    let pause = format!(
        " && {} -h 127.0.0.1 -p {} -U postgres -d postgres -c 'SELECT pg_wal_replay_pause()'",
        s.standby.bin("psql").display(),
        s.standby.port()
    );
    let mut paused_once = false;
    let config: Vec<String> = fs::read_to_string(&s.config)
        .unwrap()
        .lines()
        .map(|line| match line.strip_suffix('"') {
            Some(command) if line.starts_with("stop-service = ") && !paused_once => {
                paused_once = true;
                format!("{command}{pause}\"")
            }
            _ => line.to_string(),
        })
        .collect();
    let config = config.join("\n");
    fs::write(&s.config, config).unwrap();
    let mut child = s
        .pgkeep()
        .args(["failover", "switchover", "--to", "b"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let journal = s.dir.path().join("state/switchover.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = fs::read_to_string(&journal).unwrap_or_default();
        if text.contains("read-checkpoint") {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the switchover ended early: {text}"
        );
        assert!(
            Instant::now() < deadline,
            "the switchover did not stop the master: {text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        s.marker("a").exists(),
        "the marker stays until the standby caught up"
    );
    assert!(
        !s.primary.data_dir().join("postmaster.pid").exists(),
        "the master is stopped"
    );
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "t");
    s.standby.psql("SELECT pg_wal_replay_resume()");
    let out = s.switchover(&["--to", "b"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(
        said(&out).contains("resuming the switchover from a to b"),
        "{}",
        said(&out)
    );

    // The marker, the roles and the service moved; the data and the files are there.
    assert!(!s.marker("a").exists() && s.marker("b").exists());
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(
        s.standby.psql("SELECT count(*) FROM t WHERE g > 1000"),
        "10"
    );
    s.standby.psql("CREATE TABLE after_switchover (x int)");
    assert!(!s.dir.path().join("a/nginx.running").exists());
    assert!(s.dir.path().join("b/nginx.running").exists());
    assert_eq!(
        fs::read_to_string(s.www("b").join("index.html")).unwrap(),
        "the site"
    );
    assert_eq!(
        fs::read_to_string(s.dir.path().join("hook.out"))
            .unwrap()
            .trim(),
        "b"
    );
    let (out, status) = s.status();
    assert_eq!(status["master"], "b", "{}", said(&out));
    assert!(
        problems(&status).contains("node a was replaced by b"),
        "{status:#}"
    );

    // The old master comes back as a standby of the new one; then a switchover goes back.
    let out = s.run(&["failover", "rejoin", "a"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(s.primary.data_dir().join("standby.signal").exists());
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "t");
    let (_, status) = s.status();
    assert_eq!(status["problems"], serde_json::json!([]), "{status:#}");
    let out = s.switchover(&["--to", "a"]);
    assert!(out.status.success(), "{}", said(&out));
    assert!(s.marker("a").exists() && !s.marker("b").exists());
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "f");
    assert_eq!(s.primary.psql("SELECT count(*) FROM after_switchover"), "0");
    assert!(s.dir.path().join("a/nginx.running").exists());
}

#[test]
fn promote_when_the_master_is_gone_then_rejoin_it_with_pg_rewind() {
    let s = setup();
    fs::write(s.marker("a"), "").unwrap();
    s.primary.psql("INSERT INTO t SELECT 5000");
    let deadline = Instant::now() + Duration::from_secs(60);
    while s.standby.psql("SELECT count(*) FROM t WHERE g = 5000") != "1" {
        assert!(Instant::now() < deadline, "the standby does not replay");
        std::thread::sleep(Duration::from_millis(100));
    }

    // While the master answers as a primary: refused, nothing changes.
    let out = s.run(&["failover", "promote", "--node", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("still answers as a primary"),
        "{}",
        said(&out)
    );
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "t");

    // The master dies (SIGKILL of the postmaster): promote the standby.
    let pid = fs::read_to_string(s.primary.data_dir().join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.primary.try_psql_db("postgres", "SELECT 1").is_ok() {
        assert!(Instant::now() < deadline, "the master does not die");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A must-rejoin record that cannot be read is refused before anything changes, never taken
    // for an empty one.
    let record = s.dir.path().join("state/must-rejoin.json");
    fs::write(&record, "{damaged").unwrap();
    let out = s.run(&["failover", "promote", "--node", "b"]);
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        said(&out).contains("must-rejoin.json: cannot be parsed"),
        "{}",
        said(&out)
    );
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "t");
    assert!(!s.marker("b").exists());
    assert_eq!(fs::read_to_string(&record).unwrap(), "{damaged");
    fs::remove_file(&record).unwrap();

    let out = s.run(&["failover", "promote", "--node", "b"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "f");
    assert!(s.marker("b").exists());
    assert!(s.dir.path().join("b/nginx.running").exists());
    assert_eq!(
        fs::read_to_string(s.dir.path().join("hook.out"))
            .unwrap()
            .trim(),
        "b"
    );
    s.standby
        .psql("CREATE TABLE after_promote AS SELECT 1 AS x");

    // The old master comes back as a primary and takes a write of its own: split histories.
    let start = fs::read_to_string(&s.config).unwrap();
    let start = start
        .lines()
        .find(|l| l.starts_with("start-postgres = "))
        .unwrap()
        .trim_start_matches("start-postgres = ")
        .trim_matches('"')
        .to_string();
    // Its orphaned backends notice the postmaster's death and exit within moments; until then
    // the shared memory is still in use and it cannot start.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new("sh").arg("-c").arg(&start).output().unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the old master does not start: {}",
            said(&out)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    s.primary.psql("CREATE TABLE split_write AS SELECT 1 AS x");
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3));
    assert!(problems(&status).contains("split brain"), "{status:#}");

    // rejoin rewinds it: the split write is gone, it streams from the new master.
    let out = s.run(&["--json", "failover", "rejoin", "a", "--node", "b"]);
    assert!(out.status.success(), "{}", said(&out));
    let report = json(&out);
    assert_eq!(report["method"], "rewind", "{report:#}");
    assert!(!s.marker("a").exists());
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(
        s.primary.psql("SELECT to_regclass('split_write') IS NULL"),
        "t"
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while s
        .primary
        .try_psql_db("postgres", "SELECT count(*) FROM after_promote")
        .as_deref()
        != Ok("1")
    {
        assert!(
            Instant::now() < deadline,
            "the rejoined node does not replay"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // --reclone copies the master afresh (for when pg_rewind cannot), keeping the node's own
    // configuration files.
    let out = s.run(&[
        "--json",
        "failover",
        "rejoin",
        "a",
        "--node",
        "b",
        "--reclone",
    ]);
    assert!(out.status.success(), "{}", said(&out));
    let report = json(&out);
    assert_eq!(report["method"], "reclone", "{report:#}");
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "t");
    assert_eq!(s.primary.psql("SELECT count(*) FROM after_promote"), "1");
    let (_, status) = s.status();
    assert_eq!(status["problems"], serde_json::json!([]), "{status:#}");

    // --force promotes even though the master answers (the operator knows it is cut off): two
    // primaries until the old one is rejoined.
    let out = s.run(&["failover", "promote", "--node", "a", "--force"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(s.primary.psql("SELECT pg_is_in_recovery()"), "f");
    let (_, status) = s.status();
    assert!(problems(&status).contains("split brain"), "{status:#}");
    assert!(
        problems(&status).contains("node b was replaced by a"),
        "{status:#}"
    );
    let out = s.run(&["failover", "rejoin", "b", "--node", "a"]);
    assert!(out.status.success(), "{}", said(&out));
    assert_eq!(s.standby.psql("SELECT pg_is_in_recovery()"), "t");
    let (_, status) = s.status();
    assert_eq!(status["problems"], serde_json::json!([]), "{status:#}");
    assert_eq!(status["master"], "a", "{status:#}");
}
