//! Rejoin after the WAL moved on, end to end: the archiving pair of tests/common/pair.rs; after a
//! switchover and after a SIGKILLed master, the new master's base backup taken, its WAL switched and
//! recycled, the old master rejoins without --reclone by fetching WAL from the shared repository.
//!
//! The failover commands run as the test's user (root in CI, as in production); the servers, their
//! archive_command and restore_command, and the backups run as the servers' OS user.

mod common;
#[path = "common/pair.rs"]
mod pair;

use common::json;
use pair::{Setup, said, setup};
use pgkeep_testkit::PgCluster;
use serde_json::Value;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The problems `failover status --json` named, one a line.
fn problems(status: &Value) -> String {
    status["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

impl Setup {
    /// The configuration without `[repository]`: rejoined nodes get no restore_command.
    fn no_repo(&self) -> std::path::PathBuf {
        self.path("no-repo.toml")
    }

    fn node_status(&self, node: &str) -> Value {
        let (_, status) = self.status();
        status["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == node)
            .unwrap()
            .clone()
    }

    /// A physical base backup of `node`'s server, as the servers' OS user.
    fn backup_physical(&self, node: &str) {
        let mut cmd = self.command(
            &self.config,
            &["backup", "physical", "--wal-timeout", "120"],
        );
        cmd.env("HOME", self.dir.path())
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", self.pg(node).port().to_string())
            .env("PGUSER", "postgres")
            .current_dir(self.dir.path());
        PgCluster::as_server(&mut cmd);
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "backup physical: {}", said(&out));
    }

    /// The WAL segment names of `timeline` in `node`'s pg_wal.
    fn segments(&self, node: &str, timeline: u32) -> Vec<String> {
        let prefix = format!("{timeline:08X}");
        let mut names: Vec<String> = fs::read_dir(self.pg(node).data_dir().join("pg_wal"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.len() == 24 && n.starts_with(&prefix))
            .collect();
        names.sort();
        names
    }

    /// Moves `node`'s (a primary's) WAL on by several segments and waits until they are
    /// archived; with `checkpoint`, checkpoints so that the older segments are recycled.
    fn move_wal_on(&self, node: &str, checkpoint: bool) {
        let pg = self.pg(node);
        for i in 0..4 {
            pg.psql(&format!("INSERT INTO t SELECT 60000 + {i}"));
            let segment = pg.psql("SELECT pg_walfile_name(pg_current_wal_lsn())");
            pg.psql("SELECT pg_switch_wal()");
            self.wait_for("the segment to be archived", || {
                pg.psql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver") >= segment
            });
        }
        if checkpoint {
            pg.psql("CHECKPOINT");
            pg.psql("CHECKPOINT");
        }
    }

    /// Rows of `t` that `node` has replayed: the test's writes since the rejoin.
    fn replays(&self, node: &str, row: u32) -> bool {
        self.pg(node)
            .try_psql_db(
                "postgres",
                &format!("SELECT count(*) FROM t WHERE g = {row}"),
            )
            .as_deref()
            == Ok("1")
    }
}

#[test]
fn rejoin_after_a_switchover_catches_up_from_the_archive_when_the_master_recycled_its_wal() {
    let s = setup(false);
    s.ok(&["failover", "switchover", "--to", "b"]);
    assert_eq!(s.b.psql("SELECT pg_is_in_recovery()"), "f");
    // The timeline shown is b's current one, even before its first checkpoint on it.
    assert_eq!(s.node_status("b")["timeline"], 2);
    let first = s.segments("b", 2)[0].clone();

    // While a is stopped and replaced, status never advises starting it (two primaries).
    let (out, status) = s.status();
    assert_eq!(out.status.code(), Some(3), "{status:#}");
    let text = problems(&status);
    assert!(
        !text.contains("start it,") && !text.contains(": start it"),
        "{text}"
    );
    assert!(
        text.contains("node a: PostgreSQL does not answer")
            && text.contains("do not start it as it is")
            && text.contains("`pgkeep failover rejoin a`"),
        "{text}"
    );
    // Without the record (status run on the other server, whose state directory lacks it): a
    // has no standby.signal, which decides.
    let record = s.path("state/must-rejoin.json");
    fs::rename(&record, s.path("must-rejoin.json")).unwrap();
    let out = s.run(&["--json", "failover", "status", "--node", "b"]);
    fs::rename(s.path("must-rejoin.json"), &record).unwrap();
    let text = problems(&json(&out));
    assert!(
        text.contains("no standby.signal, so it would start as a second primary beside b"),
        "{text}"
    );

    // The runbook: a fresh base backup on the new master; the WAL moves on and b recycles the
    // new timeline's first segment.
    s.backup_physical("b");
    s.move_wal_on("b", true);
    assert!(
        !s.segments("b", 2).contains(&first),
        "{first} still in b's pg_wal"
    );

    // Without a repository the rejoined standby has no restore_command: the rejoin stops as soon
    // as its log shows the permanent error, quotes it and names the fix.
    let begun = Instant::now();
    let out = s
        .command(&s.no_repo(), &["failover", "rejoin", "a"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(text.contains("has already been removed"), "{text}");
    assert!(text.contains("no [repository] is configured"), "{text}");
    assert!(
        text.contains("`pgkeep failover rejoin a --reclone`"),
        "{text}"
    );
    assert!(
        begun.elapsed() < Duration::from_secs(60),
        "the rejoin waited {:?}",
        begun.elapsed()
    );

    // With the shared repository: restore_command = pgkeep wal-fetch, and it catches up without
    // --reclone.
    let out = s.ok(&["--json", "failover", "rejoin", "a"]);
    let report = json(&out);
    let command = report["restore_command"].as_str().unwrap();
    assert!(command.contains(" wal-fetch %f %p"), "{report:#}");
    let auto = fs::read_to_string(s.a.data_dir().join("postgresql.auto.conf")).unwrap();
    assert_eq!(
        auto.lines()
            .filter(|l| l.starts_with("restore_command"))
            .count(),
        1,
        "{auto}"
    );
    assert_eq!(s.a.psql("SELECT pg_is_in_recovery()"), "t");
    assert!(s.streams("a"));
    s.b.psql("INSERT INTO t SELECT 20000");
    s.wait_for("a to replay b's writes", || s.replays("a", 20000));
    let (out, status) = s.status();
    assert!(out.status.success(), "{status:#}");
    assert_eq!(s.node_status("a")["timeline"], 2, "{status:#}");

    // The repository fails while a falls back to the archive (its WAL receiver ends): wal-fetch
    // fails, and the standby retries instead of stopping on the failure.
    use std::os::unix::fs::PermissionsExt as _;
    let repo = s.path("repo");
    fs::set_permissions(&repo, fs::Permissions::from_mode(0o000)).unwrap();
    let log = s.path("a/server.log");
    let before = fs::read_to_string(&log).unwrap().len();
    let receiver = s.a.psql("SELECT pid FROM pg_stat_wal_receiver");
    assert!(
        Command::new("kill")
            .args(["-TERM", &receiver])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !fs::read_to_string(&log).unwrap()[before..].contains("pgkeep: error") {
        assert!(
            Instant::now() < deadline,
            "a never tried the archive: {}",
            &fs::read_to_string(&log).unwrap()[before..]
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    fs::set_permissions(&repo, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(
        s.a.try_psql_db("postgres", "SELECT pg_is_in_recovery()")
            .as_deref(),
        Ok("t"),
        "{}",
        &fs::read_to_string(&log).unwrap()[before..]
    );
    s.wait_for("a to stream again", || s.streams("a"));
}

/// The children of process `pid`.
fn children(pid: &str) -> Vec<String> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().to_string_lossy().into_owned();
            let stat = fs::read_to_string(format!("/proc/{name}/stat")).ok()?;
            let ppid = stat
                .rsplit(')')
                .next()?
                .split_whitespace()
                .nth(1)?
                .to_string();
            (ppid == pid).then_some(name)
        })
        .collect()
}

#[test]
fn rejoin_after_a_sigkilled_master_rewinds_with_archived_wal() {
    let s = setup(false);
    // A checkpoint, then WAL over several archived segments that b receives: the last common
    // checkpoint lies segments back when a dies.
    s.a.psql("CHECKPOINT");
    s.move_wal_on("a", false);
    s.a.psql("INSERT INTO t SELECT 30000");
    s.wait_for("b to replay", || s.replays("b", 30000));

    // a dies (SIGKILL of the postmaster); its backends exit when they notice.
    let pid = fs::read_to_string(s.a.data_dir().join("postmaster.pid")).unwrap();
    let pid = pid.lines().next().unwrap().trim().to_string();
    let orphans = children(&pid);
    assert!(
        Command::new("kill")
            .args(["-9", &pid])
            .status()
            .unwrap()
            .success()
    );
    s.wait_for("a's processes to exit", || {
        orphans
            .iter()
            .all(|p| !Path::new(&format!("/proc/{p}")).exists())
    });
    let promoted = json(&s.ok(&["--json", "failover", "promote", "--node", "b"]));
    // The new timeline is recorded as started on purpose: a fork with a's last WAL is a note.
    assert_eq!(promoted["timeline"], 2, "{promoted:#}");
    s.backup_physical("b");
    s.move_wal_on("b", true);

    // pg_rewind first recovers a from its crash (which recycles a's own WAL back to the last
    // common checkpoint), then needs that WAL. Without a repository it cannot find it...
    let out = s
        .command(&s.no_repo(), &["failover", "rejoin", "a", "--node", "b"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    let text = said(&out);
    assert!(
        text.contains("could not find previous WAL record"),
        "{text}"
    );
    assert!(text.contains("configure [repository]"), "{text}");
    // ...with one, it fetches it with --restore-target-wal.
    let out = s.ok(&["--json", "failover", "rejoin", "a", "--node", "b"]);
    let report = json(&out);
    assert_eq!(report["method"], "rewind", "{report:#}");
    assert_eq!(s.a.psql("SELECT pg_is_in_recovery()"), "t");
    s.b.psql("INSERT INTO t SELECT 40000");
    s.wait_for("a to replay b's writes", || s.replays("a", 40000));
    let (out, status) = s.status();
    assert!(out.status.success(), "{status:#}");
    let wal = json(&s.ok(&["--json", "verify", "--wal"]));
    assert_eq!(wal["problems"], serde_json::json!([]), "{wal:#}");
}
