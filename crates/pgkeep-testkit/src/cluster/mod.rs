//! Throwaway PostgreSQL clusters.
//!
//! [`PgCluster::builder()`] runs `initdb` into a fresh directory under
//! `$TMPDIR`, writes a small test configuration and starts the server with
//! `pg_ctl start -w` on a free port of 127.0.0.1. Dropping the [`PgCluster`]
//! stops the server (`pg_ctl stop -m immediate`) and removes the directory; if
//! the test is panicking, the tail of the server log is printed first.
//!
//! The server binaries come from `PGKEEP_PG_BIN` if set, else from the highest
//! `/usr/lib/postgresql/<major>/bin` that contains `initdb`.
//!
//! PostgreSQL refuses to run as root. When the tests run as root, the cluster
//! directory is chowned to the `postgres` OS user and `initdb` / `pg_ctl` run as
//! that user (so `$TMPDIR` must be traversable by it; `/tmp` is). Everything
//! the server runs itself (`archive_command`, `restore_command`) therefore runs
//! as `postgres` too, and needs to be able to read and execute what it calls.
//! Use [`PgCluster::chown_for_server`] on files a test creates for the server.
//!
//! Set `PGKEEP_KEEP_TEST_DIRS=1` to keep the directories for debugging.
//! Directories left behind by killed test processes are cleaned up (and their
//! servers stopped) the next time a test process starts a cluster.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::util;

mod server;

/// Fills a data directory instead of `initdb` (see [`PgClusterBuilder::populate_with`]).
type Populate = Box<dyn FnOnce(&Path)>;

use server::{
    DIR_KIND, LOG_TAIL_LINES, PG_ENV_VARS, PgBins, START_ATTEMPTS, TESTKIT_CONF, chown_tree,
    describe_output, pg_bins, quote_conf_value, run, server_command, server_user,
    sweep_stale_clusters,
};

#[must_use = "call .start() to create and start the cluster"]
/// Builder for a [`PgCluster`]; see [`PgCluster::builder`].
pub struct PgClusterBuilder {
    settings: Vec<(String, String)>,
    initdb_args: Vec<OsString>,
    populate: Option<Populate>,
}

impl fmt::Debug for PgClusterBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgClusterBuilder")
            .field("settings", &self.settings)
            .field("initdb_args", &self.initdb_args)
            .field("populate", &self.populate.is_some())
            .finish()
    }
}

impl PgClusterBuilder {
    /// Adds a server setting, written into the harness's configuration file
    /// (included from `postgresql.conf`) before the server starts. The value is
    /// quoted for you (`'...'`); pass it as you would to `ALTER SYSTEM SET`,
    /// e.g. `.setting("wal_level", "replica")` or
    /// `.setting("archive_command", "pgkeep wal-push %p")`.
    /// Later calls for the same name win; test settings override the harness
    /// defaults (including `fsync = off`).
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((name.into(), value.into()));
        self
    }

    /// Adds an extra `initdb` argument (after the harness's own, so it can
    /// override them), e.g. `.initdb_arg("--data-checksums")`.
    pub fn initdb_arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.initdb_args.push(arg.as_ref().to_owned());
        self
    }

    /// Instead of running `initdb`, calls `populate` with the path of an empty
    /// data directory to fill, e.g. by restoring a backup into it. Afterwards
    /// the harness fixes ownership and permissions, adds its configuration and
    /// starts the server as usual (so a `recovery.signal` left by `populate`
    /// makes the server start in recovery; pass `restore_command` etc. with
    /// [`setting`](Self::setting)). `initdb_arg`s are ignored.
    pub fn populate_with(mut self, populate: impl FnOnce(&Path) + 'static) -> Self {
        self.populate = Some(Box::new(populate));
        self
    }

    /// A streaming standby of `primary` instead of a new cluster: the data directory is filled by
    /// `pg_basebackup -R -X stream` from it (run as the current user, before the harness fixes
    /// ownership), so the server starts as its standby.
    pub fn standby_of(self, primary: &PgCluster) -> Self {
        let pg_basebackup = primary.bin("pg_basebackup");
        let port = primary.port();
        self.populate_with(move |dir| {
            let out = run(Command::new(&pg_basebackup)
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
                .arg(dir));
            if !out.status.success() {
                panic!(
                    "pgkeep-testkit: pg_basebackup for a standby of port {port} failed: {}",
                    describe_output(&out)
                );
            }
        })
    }

    /// Creates the cluster and starts the server. Panics with the `initdb` /
    /// `pg_ctl` output and the server log if anything fails.
    pub fn start(self) -> PgCluster {
        sweep_stale_clusters();
        let bins = pg_bins();
        let root = util::make_test_dir(DIR_KIND);
        let mut cluster = PgCluster {
            data_dir: root.join("data"),
            socket_dir: root.join("sock"),
            log_path: root.join("server.log"),
            root,
            port: 0,
            settings: Vec::new(),
            bins,
            running: false,
            log_reported: AtomicBool::new(false),
        };
        for (name, value) in self.settings {
            cluster.put_setting(name, value);
        }
        // From here on, a panic drops `cluster`, which cleans up.
        fs::create_dir(&cluster.socket_dir).unwrap_or_else(|e| {
            panic!(
                "pgkeep-testkit: cannot create {}: {e}",
                cluster.socket_dir.display()
            )
        });
        match self.populate {
            Some(populate) => {
                fs::create_dir(&cluster.data_dir).unwrap_or_else(|e| {
                    panic!(
                        "pgkeep-testkit: cannot create {}: {e}",
                        cluster.data_dir.display()
                    )
                });
                populate(&cluster.data_dir);
                if !cluster.data_dir.join("postgresql.conf").is_file() {
                    panic!(
                        "pgkeep-testkit: populate_with left no postgresql.conf in {}",
                        cluster.data_dir.display()
                    );
                }
                fs::set_permissions(&cluster.data_dir, fs::Permissions::from_mode(0o700))
                    .unwrap_or_else(|e| {
                        panic!(
                            "pgkeep-testkit: chmod 0700 {}: {e}",
                            cluster.data_dir.display()
                        )
                    });
                PgCluster::chown_for_server(&cluster.root);
            }
            None => {
                PgCluster::chown_for_server(&cluster.root);
                cluster.initdb(&self.initdb_args);
            }
        }
        cluster.include_testkit_conf();
        cluster.start_server(true);
        cluster
    }
}

/// A running (or stopped) throwaway PostgreSQL cluster. See the
/// [module documentation](self).
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    data_dir: PathBuf,
    socket_dir: PathBuf,
    log_path: PathBuf,
    port: u16,
    settings: Vec<(String, String)>,
    bins: &'static PgBins,
    running: bool,
    log_reported: AtomicBool,
}

impl PgCluster {
    /// Starts building a cluster: `PgCluster::builder().setting(..).start()`.
    pub fn builder() -> PgClusterBuilder {
        PgClusterBuilder {
            settings: Vec::new(),
            initdb_args: Vec::new(),
            populate: None,
        }
    }

    /// A cluster with the default settings, started.
    pub fn start() -> PgCluster {
        Self::builder().start()
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The host to connect to: always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The data directory (`PGDATA`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The directory holding the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The directory holding the PostgreSQL binaries this cluster runs.
    pub fn bin_dir(&self) -> &Path {
        &self.bins.dir
    }

    /// The path of a PostgreSQL binary next to this cluster's server,
    /// e.g. `cluster.bin("pg_basebackup")`.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.bins.dir.join(name)
    }

    /// A client program of this cluster's version (`pg_dump`, `pg_restore`, ...) connected to it
    /// as `postgres` through `PGHOST`/`PGPORT`/`PGUSER` (the caller's `PG*` variables removed).
    pub fn client(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin(program));
        for (key, _) in std::env::vars_os() {
            if key.to_str().is_some_and(|k| k.starts_with("PG")) {
                cmd.env_remove(key);
            }
        }
        cmd.env("PGHOST", self.host())
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres");
        cmd
    }

    /// The PostgreSQL major version, e.g. `15`.
    pub fn major(&self) -> u32 {
        self.bins.major
    }

    /// A libpq connection string for the `postgres` database as the
    /// `postgres` superuser: `host=127.0.0.1 port=N user=postgres dbname=postgres`.
    pub fn conninfo(&self) -> String {
        self.conninfo_db("postgres")
    }

    /// Like [`conninfo`](Self::conninfo), for database `db`.
    pub fn conninfo_db(&self, db: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={db}",
            self.host(),
            self.port
        )
    }

    /// The server log file (`pg_ctl -l`); every start appends to it.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The whole server log so far (empty if there is none yet).
    pub fn log_contents(&self) -> String {
        util::read_lossy(&self.log_path)
    }

    /// Whether the harness believes the server is running.
    pub fn is_running(&self) -> bool {
        self.running
    }

    /// Runs `sql` in the `postgres` database with
    /// `psql -X -A -t -v ON_ERROR_STOP=1 -c` and returns its output (unaligned,
    /// tuples only, `|`-separated, trailing newline removed). Panics with psql's
    /// stderr on failure.
    pub fn psql(&self, sql: &str) -> String {
        self.psql_db("postgres", sql)
    }

    /// Like [`psql`](Self::psql), in database `db`.
    pub fn psql_db(&self, db: &str, sql: &str) -> String {
        self.try_psql_db(db, sql).unwrap_or_else(|e| {
            panic!(
                "pgkeep-testkit: psql on port {} (db {db}) failed for {sql:?}:\n{e}",
                self.port
            )
        })
    }

    /// Like [`psql_db`](Self::psql_db), but returns psql's exit status and
    /// stderr as the error instead of panicking.
    pub fn try_psql_db(&self, db: &str, sql: &str) -> Result<String, String> {
        let mut cmd = Command::new(self.bin("psql"));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.host())
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-c", sql])
            .env("PGCONNECT_TIMEOUT", "10");
        for var in PG_ENV_VARS {
            cmd.env_remove(var);
        }
        let out = run(&mut cmd);
        if out.status.success() {
            let stdout = String::from_utf8_lossy(&out.stdout);
            Ok(stdout.strip_suffix('\n').unwrap_or(&stdout).to_string())
        } else {
            Err(format!(
                "psql {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim_end()
            ))
        }
    }

    /// Sets (or replaces) a server setting in the harness's configuration
    /// file. It takes effect at the next [`reload`](Self::reload) or
    /// [`restart`](Self::restart), as PostgreSQL decides for that setting.
    pub fn set_setting(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.put_setting(name.into(), value.into());
        self.write_testkit_conf();
    }

    /// `pg_ctl reload`: makes the server re-read its configuration.
    pub fn reload(&self) {
        self.pg_ctl_checked("reload", &["reload"]);
    }

    /// `pg_ctl stop -m fast`: a clean shutdown. Panics if it fails.
    pub fn stop(&mut self) {
        self.pg_ctl_checked("stop", &["stop", "-m", "fast", "-w", "-t", "60"]);
        self.running = false;
    }

    /// `pg_ctl stop -m immediate`: stops the server without a shutdown
    /// checkpoint, like a crash; the next start runs crash recovery.
    pub fn stop_immediate(&mut self) {
        self.pg_ctl_checked("stop", &["stop", "-m", "immediate", "-w", "-t", "60"]);
        self.running = false;
    }

    /// Starts the server again after [`stop`](Self::stop), on the same port
    /// if it is still free (else on a new one; see [`port`](Self::port)).
    pub fn start_again(&mut self) {
        self.start_server(false);
    }

    /// [`stop`](Self::stop) then [`start_again`](Self::start_again).
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// The OS user the servers run as, `(uid, gid)` of `postgres`, when the tests run as root;
    /// `None` otherwise (then everything runs as the current user).
    pub fn server_user() -> Option<(u32, u32)> {
        server_user()
    }

    /// `cmd` made to run as the server's OS user (`postgres` when the tests run as root), as the
    /// server itself runs `archive_command` and `restore_command`.
    pub fn as_server(cmd: &mut Command) -> &mut Command {
        if let Some((uid, gid)) = server_user() {
            cmd.uid(uid).gid(gid);
        }
        cmd
    }

    /// Gives `path` (recursively) to the OS user the server runs as, so the
    /// server can use files a test created as root. A no-op unless this
    /// process runs as root.
    pub fn chown_for_server(path: &Path) {
        if let Some((uid, gid)) = server_user() {
            chown_tree(path, uid, gid).unwrap_or_else(|e| {
                panic!(
                    "pgkeep-testkit: cannot chown {} to postgres: {e}",
                    path.display()
                )
            });
        }
    }

    fn put_setting(&mut self, name: String, value: String) {
        self.settings.retain(|(n, _)| *n != name);
        self.settings.push((name, value));
    }

    fn pg_ctl(&self) -> Command {
        let mut cmd = server_command(&self.bin("pg_ctl"), &self.root);
        cmd.arg("-D").arg(&self.data_dir);
        cmd
    }

    fn pg_ctl_checked(&self, what: &str, args: &[&str]) {
        let out = run(self.pg_ctl().args(args));
        if !out.status.success() {
            self.fail(&format!("`pg_ctl {what}` failed"), Some(&out), None);
        }
    }

    /// Panics with `msg`, the command output and the tail of the server log
    /// (from `log_offset` if given), marking the log as reported so that
    /// `Drop` does not print it a second time.
    fn fail(&self, msg: &str, out: Option<&Output>, log_offset: Option<usize>) -> ! {
        self.log_reported.store(true, Ordering::Relaxed);
        let log = self.log_contents();
        let log = log.get(log_offset.unwrap_or(0)..).unwrap_or(&log);
        panic!(
            "pgkeep-testkit: {msg} (cluster {}, port {})\n{}\n--- server log (last {LOG_TAIL_LINES} lines) ---\n{}\n--- end of server log ---",
            self.data_dir.display(),
            self.port,
            out.map(describe_output).unwrap_or_default(),
            util::tail_lines(log, LOG_TAIL_LINES),
        );
    }

    fn initdb(&self, extra: &[OsString]) {
        let out = run(server_command(&self.bin("initdb"), &self.root)
            .arg("-D")
            .arg(&self.data_dir)
            .args([
                "--auth=trust",
                "-U",
                "postgres",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ])
            .args(extra));
        if !out.status.success() {
            self.fail("initdb failed", Some(&out), None);
        }
    }

    /// Makes postgresql.conf include the harness's configuration file.
    fn include_testkit_conf(&mut self) {
        let conf = self.data_dir.join("postgresql.conf");
        let text = fs::read_to_string(&conf)
            .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot read {}: {e}", conf.display()));
        let include = format!("include '{TESTKIT_CONF}'");
        if !text.lines().any(|l| l.trim() == include) {
            let mut text = text;
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "\n# Added by pgkeep-testkit: test settings (port, sockets, ...).\n{include}\n"
            ));
            fs::write(&conf, text)
                .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot write {}: {e}", conf.display()));
        }
    }

    fn write_testkit_conf(&self) {
        let mut text = String::from(
            "# Written by pgkeep-testkit and rewritten on every start: edit the test instead.\n",
        );
        let defaults = [
            ("port", self.port.to_string()),
            ("listen_addresses", "127.0.0.1".to_string()),
            (
                "unix_socket_directories",
                self.socket_dir.to_string_lossy().into_owned(),
            ),
            ("fsync", "off".to_string()),
            ("shared_buffers", "16MB".to_string()),
            ("logging_collector", "off".to_string()),
        ];
        for (name, value) in &defaults {
            text.push_str(&format!("{name} = {}\n", quote_conf_value(value)));
        }
        text.push_str("# Settings from the test:\n");
        for (name, value) in &self.settings {
            text.push_str(&format!("{name} = {}\n", quote_conf_value(value)));
        }
        let path = self.data_dir.join(TESTKIT_CONF);
        fs::write(&path, text)
            .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot write {}: {e}", path.display()));
        if let Some((uid, gid)) = server_user() {
            let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        }
    }

    /// `pg_ctl start -w`, picking a new port and retrying when the port
    /// turned out to be taken.
    fn start_server(&mut self, new_port: bool) {
        for attempt in 0..START_ATTEMPTS {
            if new_port || attempt > 0 || self.port == 0 {
                self.port = util::free_port();
            }
            self.write_testkit_conf();
            let log_offset = fs::metadata(&self.log_path).map_or(0, |m| m.len() as usize);
            let out = run(self
                .pg_ctl()
                .arg("-l")
                .arg(&self.log_path)
                .args(["start", "-w", "-t", "60"]));
            if out.status.success() {
                self.running = true;
                return;
            }
            let log = self.log_contents();
            let new_log = log.get(log_offset..).unwrap_or("");
            let port_taken = new_log.contains("Address already in use")
                || new_log.contains("could not create any TCP/IP sockets");
            if !(port_taken && attempt + 1 < START_ATTEMPTS) {
                self.fail("`pg_ctl start` failed", Some(&out), Some(log_offset));
            }
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.log_reported.load(Ordering::Relaxed) {
            eprintln!(
                "===== pgkeep-testkit: PostgreSQL server log of port {} ({}), last {LOG_TAIL_LINES} lines =====\n{}\n===== end of PostgreSQL server log =====",
                self.port,
                self.data_dir.display(),
                util::tail_lines(&self.log_contents(), LOG_TAIL_LINES)
            );
        }
        if self.running || self.data_dir.join("postmaster.pid").exists() {
            let _ = self
                .pg_ctl()
                .args(["stop", "-m", "immediate", "-w", "-t", "30"])
                .output();
        }
        util::remove_or_keep(&self.root, "PostgreSQL cluster");
    }
}
