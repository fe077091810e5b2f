//! Rejoin after the WAL moved on, and switchovers killed at any instant, end to end: two real
//! PostgreSQL clusters on one machine archiving through `pgkeep wal-push` into one shared local
//! repository, per-node markers and service files under a temporary directory, real rsync.
//!
//! The failover commands run as the test's user (root in CI, as in production); the servers, their
//! archive_command and restore_command, and the backups run as the servers' OS user.

mod common;

use common::json;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgkeep_core::shell_quote;
use pgkeep_testkit::PgCluster;
use serde_json::Value;

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");

/// The pair, the shared repository and the configuration files.
struct Setup {
    a: PgCluster,
    b: PgCluster,
    dir: tempfile::TempDir,
    /// With `[repository]`: rejoined nodes get a restore_command.
    config: PathBuf,
    /// The same without `[repository]`.
    no_repo: PathBuf,
}

/// `slow` makes every node command that changes something wait half a second after its change,
/// so that a kill on seeing the change lands inside the step, before the journal records it.
fn setup(slow: bool) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(dir.path());
    let repo = dir.path().join("repo");
    fs::create_dir(&repo).unwrap();
    PgCluster::chown_for_server(&repo);
    let config = dir.path().join("pgkeep.toml");
    let archive = format!(
        "{} --config {} wal-push %p",
        shell_quote(PGKEEP),
        shell_quote(&config.to_string_lossy())
    );
    // No wal_keep_size and no slot: the new master recycles WAL as soon as it is archived and
    // checkpointed, as a production server does.
    let builder = || {
        PgCluster::builder()
            .setting("wal_log_hints", "on")
            .setting("hot_standby", "on")
            .setting("archive_mode", "on")
            .setting("archive_command", archive.clone())
    };
    let a = builder().start();
    a.psql("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g");
    let b = builder().standby_of(&a).start();
    for node in ["a", "b"] {
        fs::create_dir_all(dir.path().join(node).join("www")).unwrap();
        fs::write(dir.path().join(node).join("www/.pgkeep-sync"), "").unwrap();
    }
    PgCluster::chown_for_server(dir.path());
    let pause = if slow { " && sleep 0.5" } else { "" };
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
             stop-postgres = \"{pg_ctl} -m fast stop{pause}\"\nstart-postgres = \"{pg_ctl} -l {} start\"\n\
             services = [\"nginx\"]\nstart-service = \"touch {}/{{service}}.running{pause}\"\nstop-service = \"rm -f {}/{{service}}.running{pause}\"\n",
            pg.port(),
            pg.data_dir().display(),
            here.join("primary_server").display(),
            here.display(),
            here.join("server.log").display(),
            here.display(),
            here.display(),
        )
    };
    let failover = format!(
        "[failover]\nlocal-node = \"a\"\nstate-dir = \"{}\"\ncatch-up-timeout = 60\nmax-lag-bytes = 1048576\nhooks = [\"echo $PGKEEP_NEW_PRIMARY >> {}{pause}\"]\n\n{}\n{}\n[sync]\npaths = [\"/www\"]\n",
        dir.path().join("state").display(),
        dir.path().join("hook.out").display(),
        node("a", &a),
        node("b", &b),
    );
    fs::write(
        &config,
        format!(
            "[repository]\nurl = \"file://{}\"\n\n{failover}",
            repo.display()
        ),
    )
    .unwrap();
    let no_repo = dir.path().join("no-repo.toml");
    fs::write(&no_repo, failover).unwrap();
    fs::write(dir.path().join("a/primary_server"), "").unwrap();
    fs::write(dir.path().join("a/nginx.running"), "").unwrap();
    let s = Setup {
        a,
        b,
        dir,
        config,
        no_repo,
    };
    s.wait_for("b to stream from a", || s.streams("b"));
    s
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

impl Setup {
    /// `pgkeep --config FILE ARGS`, without the caller's PG* variables.
    fn command(&self, config: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(PGKEEP);
        for (key, _) in std::env::vars() {
            if key.starts_with("PG") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--config").arg(config).args(args);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(&self.config, args).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "pgkeep {args:?}: {}", said(&out));
        out
    }

    fn pg(&self, node: &str) -> &PgCluster {
        match node {
            "a" => &self.a,
            _ => &self.b,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn status(&self) -> (Output, Value) {
        let out = self.run(&["--json", "failover", "status"]);
        let value = json(&out);
        (out, value)
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

    fn streams(&self, node: &str) -> bool {
        self.pg(node)
            .try_psql_db(
                "postgres",
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            )
            .as_deref()
            == Ok("1")
    }

    fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
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
        .command(&s.no_repo, &["failover", "rejoin", "a"])
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
    s.ok(&["failover", "promote", "--node", "b"]);
    s.backup_physical("b");
    s.move_wal_on("b", true);

    // pg_rewind first recovers a from its crash (which recycles a's own WAL back to the last
    // common checkpoint), then needs that WAL. Without a repository it cannot find it...
    let out = s
        .command(&s.no_repo, &["failover", "rejoin", "a", "--node", "b"])
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
}

/// Where a kill lands: a description; the sign, seen on the nodes or in the journal, that the
/// switchover from `from` to `to` has reached that instant; and for a kill inside a step (the
/// node commands wait half a second after their change), the step the journal must not list yet.
type KillPoint = (
    &'static str,
    fn(&Setup, &str, &str) -> bool,
    Option<&'static str>,
);

impl Setup {
    fn journal(&self) -> Option<Value> {
        let text = fs::read_to_string(self.path("state/switchover.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the unfinished journal of the switchover from `from` lists `step` as done.
    fn journaled(&self, from: &str, step: &str) -> bool {
        self.journal().is_some_and(|j| {
            j["from"] == from
                && j["finished"] == false
                && j["done"].as_array().unwrap().iter().any(|s| s == step)
        })
    }

    fn hook_runs(&self) -> usize {
        fs::read_to_string(self.path("hook.out"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

const KILL_POINTS: [KillPoint; 10] = [
    (
        "during the final file sync",
        |s, from, _| {
            s.journal()
                .is_some_and(|j| j["from"] == from && j["finished"] == false)
        },
        None,
    ),
    (
        "services stopped, not yet journaled",
        |s, from, _| !s.path(&format!("{from}/nginx.running")).exists(),
        Some("stop-services"),
    ),
    (
        "while PostgreSQL checkpoints and stops",
        |s, from, _| s.journaled(from, "stop-services"),
        None,
    ),
    (
        "PostgreSQL stopped, not yet journaled",
        |s, from, _| !s.pg(from).data_dir().join("postmaster.pid").exists(),
        Some("stop-postgres"),
    ),
    (
        "while the target catches up",
        |s, from, _| s.journaled(from, "read-checkpoint"),
        None,
    ),
    (
        "marker removed",
        |s, from, _| !s.path(&format!("{from}/primary_server")).exists(),
        None,
    ),
    (
        "target promoted",
        |s, _, to| !s.pg(to).data_dir().join("standby.signal").exists(),
        None,
    ),
    (
        "target's marker created",
        |s, _, to| s.path(&format!("{to}/primary_server")).exists(),
        None,
    ),
    (
        "target's services started, not yet journaled",
        |s, _, to| s.path(&format!("{to}/nginx.running")).exists(),
        Some("start-services"),
    ),
    (
        "hook ran, not yet journaled",
        |s, _, _| s.hook_runs() > 0,
        Some("hooks"),
    ),
];

#[test]
fn a_switchover_killed_at_any_instant_resumes_and_a_finished_one_says_so() {
    let s = setup(true);
    for (i, (point, reached, inside)) in KILL_POINTS.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        let _ = fs::remove_file(s.path("hook.out"));
        // The switchover runs on the master (it syncs files from there); killed at the point.
        let mut child = s
            .command(
                &s.config,
                &["failover", "switchover", "--to", to, "--node", from],
            )
            .stdout(Stdio::null())
            .stderr(fs::File::create(s.path("killed.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if reached(&s, from, to) {
                child.kill().unwrap();
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{point}: the switchover ended before the kill: {}",
                fs::read_to_string(s.path("killed.err")).unwrap()
            );
            assert!(Instant::now() < deadline, "{point}: never reached");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        if let Some(step) = inside {
            assert!(
                !s.journaled(from, step),
                "{point}: the kill came after the journal recorded {step}"
            );
        }

        // The same command again finishes it, whatever the instant of the kill.
        let out = s.run(&["failover", "switchover", "--to", to, "--node", from]);
        assert!(
            out.status.success(),
            "{point} ({from} -> {to}): the rerun failed: {}",
            said(&out)
        );
        assert!(s.path(&format!("{to}/primary_server")).exists(), "{point}");
        assert!(
            !s.path(&format!("{from}/primary_server")).exists(),
            "{point}"
        );
        assert!(s.path(&format!("{to}/nginx.running")).exists(), "{point}");
        assert!(
            !s.path(&format!("{from}/nginx.running")).exists(),
            "{point}"
        );
        assert_eq!(s.pg(to).psql("SELECT pg_is_in_recovery()"), "f", "{point}");
        assert!(
            s.pg(from).try_psql_db("postgres", "SELECT 1").is_err(),
            "{point}"
        );
        assert!(s.hook_runs() >= 1, "{point}");

        // Once more: it says the switchover already finished, changes nothing, exits 0.
        let out = s.run(&["failover", "switchover", "--to", to, "--node", from]);
        assert!(out.status.success(), "{point}: {}", said(&out));
        assert!(
            said(&out).contains(&format!(
                "the switchover from {from} to {to} already finished"
            )),
            "{point}: {}",
            said(&out)
        );
        assert!(
            s.pg(from).try_psql_db("postgres", "SELECT 1").is_err(),
            "{point}"
        );

        s.ok(&["failover", "rejoin", from, "--node", to]);
        let (out, status) = s.status();
        assert!(out.status.success(), "{point}: {status:#}");
    }
}
