//! The pair of the failover end-to-end tests that archive: two real PostgreSQL clusters on one
//! machine archiving through `pgkeep wal-push` into one shared local repository, per-node markers
//! and service files under a temporary directory. Included with `#[path]` by
//! tests/failover_rejoin.rs and tests/failover_kill.rs (each also declares `mod common;`).

use crate::common::json;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pgkeep_core::shell_quote;
use pgkeep_testkit::PgCluster;
use serde_json::Value;

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");

/// The pair, the shared repository and the configuration files.
pub struct Setup {
    /// Node a's cluster (the first master).
    pub a: PgCluster,
    /// Node b's cluster (its standby).
    pub b: PgCluster,
    /// Markers, service files, web roots, the repository, the state directory.
    pub dir: tempfile::TempDir,
    /// With `[repository]`: rejoined nodes get a restore_command.
    pub config: PathBuf,
}

/// `slow` makes every node command that changes something wait half a second after its change,
/// so that a kill on seeing the change lands inside the step, before the journal records it.
pub fn setup(slow: bool) -> Setup {
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
    fs::write(dir.path().join("no-repo.toml"), failover).unwrap();
    fs::write(dir.path().join("a/primary_server"), "").unwrap();
    fs::write(dir.path().join("a/nginx.running"), "").unwrap();
    let s = Setup { a, b, dir, config };
    s.wait_for("b to stream from a", || s.streams("b"));
    s
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

pub fn said(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

impl Setup {
    /// `pgkeep --config FILE ARGS`, without the caller's PG* variables.
    pub fn command(&self, config: &Path, args: &[&str]) -> Command {
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

    /// `pgkeep --config <with repository> ARGS` to its end.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(&self.config, args).output().unwrap()
    }

    /// [`run`](Self::run), which must succeed.
    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "pgkeep {args:?}: {}", said(&out));
        out
    }

    /// The cluster of node `a` or `b`.
    pub fn pg(&self, node: &str) -> &PgCluster {
        match node {
            "a" => &self.a,
            _ => &self.b,
        }
    }

    /// A path in the test's directory.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `failover status --json`.
    pub fn status(&self) -> (Output, Value) {
        let out = self.run(&["--json", "failover", "status"]);
        let value = json(&out);
        (out, value)
    }

    /// Whether `node` is a standby whose WAL receiver streams.
    pub fn streams(&self, node: &str) -> bool {
        self.pg(node)
            .try_psql_db(
                "postgres",
                "SELECT count(*) FROM pg_stat_wal_receiver WHERE status = 'streaming'",
            )
            .as_deref()
            == Ok("1")
    }

    /// Waits up to 90 s until `done`.
    pub fn wait_for(&self, what: &str, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(90);
        while !done() {
            assert!(Instant::now() < deadline, "waited in vain for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
