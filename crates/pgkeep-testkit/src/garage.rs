//! A real single-node [Garage](https://garagehq.deuxfleurs.fr/) S3 server on
//! loopback, shared by all the tests of a test process.
//!
//! [`Garage::shared()`] starts the server on first use and returns the same
//! instance afterwards. It has one bucket, [`Garage::bucket()`], that the one
//! access key may read, write and own; tests sharing it keep out of each
//! other's way by working under [`Garage::unique_prefix()`], or make their own
//! bucket with [`Garage::create_bucket()`].
//!
//! The binary is `PGKEEP_GARAGE_BIN` if set, else `garage` on `PATH`, else
//! `~/.cargo/bin/garage` (install it with `cargo install garage --locked`). If
//! it is missing, `shared()` prints a `SKIPPED` line and returns `None` so the
//! test can return early -- except under `CI=true`, where it panics: CI never
//! skips.
//!
//! The server is started from a dedicated thread that stays parked for the
//! life of the process, with `PR_SET_PDEATHSIG = SIGKILL`, so it dies with the
//! test process however that ends. Its directory (config, metadata, data,
//! `garage.log`) is left behind and removed by the next test process that
//! starts a Garage (or kept, with `PGKEEP_KEEP_TEST_DIRS=1`).
//!
//! Clients must use path-style addressing (`force_path_style(true)` in the AWS
//! SDK): the endpoint is an IP address.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use crate::sys;
use crate::util;

/// Kind prefix of Garage directories under `$TMPDIR`.
const DIR_KIND: &str = "pgkeep-garage";
/// The S3 region the server is configured with.
const REGION: &str = "garage";
/// The shared bucket.
const BUCKET: &str = "pgkeep-test";
/// How long a single `garage` CLI call may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to answer `garage status` after spawning.
const BOOT_TIMEOUT: Duration = Duration::from_secs(30);

/// A running single-node Garage S3 server. See the [module documentation](self).
#[derive(Debug)]
pub struct Garage {
    dir: PathBuf,
    bin: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    s3_addr: SocketAddr,
    access_key_id: String,
    secret_access_key: String,
    startup: Duration,
    child: Mutex<Child>,
}

impl Garage {
    /// The Garage server of this test process, started on first call.
    ///
    /// Returns `None` (after printing a `SKIPPED: garage not found ...` line to
    /// stderr) when the `garage` binary is missing and `CI` is not `true`; with
    /// `CI=true` a missing binary panics. Panics if the server fails to start.
    ///
    /// ```no_run
    /// # use pgkeep_testkit::Garage;
    /// let Some(garage) = Garage::shared() else { return };
    /// let prefix = garage.unique_prefix("my_test");
    /// ```
    pub fn shared() -> Option<&'static Garage> {
        static SHARED: OnceLock<Result<Option<Garage>, String>> = OnceLock::new();
        match SHARED.get_or_init(Self::init_shared) {
            Ok(Some(garage)) => Some(garage),
            Ok(None) => {
                let test = thread::current().name().unwrap_or("?").to_string();
                // Straight to the stderr fd: the test harness's output capture
                // would otherwise hide this line for passing tests.
                let _ = writeln!(
                    io::stderr(),
                    "SKIPPED: garage not found (test {test}): set PGKEEP_GARAGE_BIN or install \
                     it with `cargo install garage --locked`; under CI=true this is an error"
                );
                None
            }
            Err(msg) => panic!("{msg}"),
        }
    }

    fn init_shared() -> Result<Option<Garage>, String> {
        match find_garage()? {
            Some(bin) => Garage::launch(bin).map(Some),
            None if crate::is_ci() => Err(
                "pgkeep-testkit: the `garage` binary was not found and CI=true, so S3 tests may \
                 not be skipped: install it with `cargo install garage --locked` (or set \
                 PGKEEP_GARAGE_BIN to its path)"
                    .to_string(),
            ),
            None => Ok(None),
        }
    }

    /// Spawns the server, waits for it and creates the layout, key and bucket.
    fn launch(bin: PathBuf) -> Result<Garage, String> {
        let started = Instant::now();
        for dir in util::stale_test_dirs(DIR_KIND) {
            let _ = fs::remove_dir_all(dir);
        }
        let dir = util::make_test_dir(DIR_KIND);
        let config_path = dir.join("garage.toml");
        let log_path = dir.join("garage.log");
        let mut last_error = String::new();
        for _attempt in 0..3 {
            let rpc_port = util::free_port();
            let s3_addr = SocketAddr::from((Ipv4Addr::LOCALHOST, util::free_port()));
            fs::write(&config_path, config_toml(&dir, rpc_port, s3_addr))
                .map_err(|e| format!("pgkeep-testkit: cannot write garage config: {e}"))?;
            let child = spawn_server(&bin, &config_path, &log_path)?;
            let mut garage = Garage {
                dir: dir.clone(),
                bin: bin.clone(),
                config_path: config_path.clone(),
                log_path: log_path.clone(),
                s3_addr,
                access_key_id: format!("GK{}", util::random_hex(12)),
                secret_access_key: util::random_hex(32),
                startup: Duration::ZERO,
                child: Mutex::new(child),
            };
            match garage.wait_for_boot() {
                Ok(()) => {
                    if let Err(e) = garage.setup() {
                        let msg = garage.failure(&e);
                        garage.kill();
                        return Err(msg);
                    }
                    garage.startup = started.elapsed();
                    if util::keep_test_dirs() {
                        let _ = fs::write(dir.join(util::KEEP_MARKER), b"");
                        eprintln!("pgkeep-testkit: Garage directory (kept): {}", dir.display());
                    }
                    return Ok(garage);
                }
                Err(e) => {
                    let log = garage.log_contents();
                    last_error = garage.failure(&e);
                    garage.kill();
                    if !log.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        Err(last_error)
    }

    /// Polls `garage status` until the server answers.
    fn wait_for_boot(&self) -> Result<(), String> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut delay = Duration::from_millis(20);
        loop {
            if let Some(status) = self.child_exit_status() {
                return Err(format!("garage server exited during startup ({status})"));
            }
            let last = match self.try_cli(&["status"]) {
                Ok(_) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() > deadline {
                return Err(format!(
                    "garage server did not answer `garage status` within {BOOT_TIMEOUT:?}; last \
                     error: {last}"
                ));
            }
            thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_millis(200));
        }
    }

    /// Layout, key, bucket and permissions.
    fn setup(&self) -> Result<(), String> {
        let node = self.try_cli(&["node", "id", "-q"])?;
        let node_id = node
            .lines()
            .next()
            .and_then(|l| l.split('@').next())
            .map(str::trim)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| format!("cannot parse `garage node id -q` output: {node:?}"))?
            .to_string();
        self.try_cli(&["layout", "assign", "-z", "dc1", "-c", "1G", &node_id])?;
        self.try_cli(&["layout", "apply", "--version", "1"])?;
        self.try_cli(&[
            "key",
            "import",
            "--yes",
            "-n",
            "pgkeep-test",
            &self.access_key_id,
            &self.secret_access_key,
        ])?;
        self.try_cli(&["bucket", "create", BUCKET])?;
        self.try_cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            BUCKET,
            "--key",
            &self.access_key_id,
        ])?;
        // The S3 API listens as soon as the server is up; make sure.
        TcpStream::connect_timeout(&self.s3_addr, Duration::from_secs(5))
            .map_err(|e| format!("cannot connect to the S3 API at {}: {e}", self.s3_addr))?;
        Ok(())
    }

    fn failure(&self, what: &str) -> String {
        format!(
            "pgkeep-testkit: starting Garage failed: {what}\n(binary {}, directory {})\n\
             --- garage.log (last 100 lines) ---\n{}\n--- end of garage.log ---",
            self.bin.display(),
            self.dir.display(),
            util::tail_lines(&self.log_contents(), 100)
        )
    }

    fn child_exit_status(&self) -> Option<ExitStatus> {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        child.try_wait().ok().flatten()
    }

    fn kill(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The S3 endpoint URL, e.g. `http://127.0.0.1:39123`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.s3_addr)
    }

    /// The S3 API's socket address (e.g. the target of a
    /// [`FaultProxy`](crate::FaultProxy)).
    pub fn s3_addr(&self) -> SocketAddr {
        self.s3_addr
    }

    /// The S3 region the server expects in signatures: `"garage"`.
    pub fn region(&self) -> &str {
        REGION
    }

    /// The shared bucket, `"pgkeep-test"`.
    pub fn bucket(&self) -> &str {
        BUCKET
    }

    /// The access key id, allowed to read, write and own the shared bucket.
    pub fn access_key_id(&self) -> &str {
        &self.access_key_id
    }

    /// The secret access key that goes with [`access_key_id`](Self::access_key_id).
    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    /// A key prefix no other test uses: `test_name` (with characters other
    /// than `[A-Za-z0-9._-]` replaced by `-`), a dash and 8 random hex digits,
    /// e.g. `backup_roundtrip-3fa81c07`. No trailing slash.
    pub fn unique_prefix(&self, test_name: &str) -> String {
        let clean: String = test_name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        format!("{clean}-{}", util::random_hex(4))
    }

    /// Environment variables for a child process to use this server and key:
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT_URL`.
    pub fn env_vars(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.access_key_id.clone()),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                self.secret_access_key.clone(),
            ),
            ("AWS_REGION".into(), REGION.into()),
            ("AWS_ENDPOINT_URL".into(), self.endpoint()),
        ]
    }

    /// Creates a new, empty bucket the key may read, write and own, named
    /// after `prefix` (lowercased, other characters than `[a-z0-9-]` replaced
    /// by `-`) plus a random suffix, and returns its name. For tests that need
    /// a bucket of their own (e.g. to list everything in it).
    pub fn create_bucket(&self, prefix: &str) -> String {
        let mut clean: String = prefix
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_lowercase() || c.is_ascii_digit() {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        clean.truncate(50);
        let clean = clean.trim_matches('-');
        let clean = if clean.is_empty() { "bucket" } else { clean };
        let name = format!("{clean}-{}", util::random_hex(4));
        self.cli(&["bucket", "create", &name]);
        self.cli(&[
            "bucket",
            "allow",
            "--read",
            "--write",
            "--owner",
            &name,
            "--key",
            &self.access_key_id,
        ]);
        name
    }

    /// Runs `garage -c <config> <args...>` against this server and returns
    /// its stdout; panics with its stderr on failure. E.g.
    /// `garage.cli(&["bucket", "info", garage.bucket()])`.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|e| panic!("pgkeep-testkit: {e}"))
    }

    /// Like [`cli`](Self::cli), returning the failure instead of panicking.
    pub fn try_cli(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("-c").arg(&self.config_path).args(args);
        clean_garage_env(&mut cmd);
        cmd.env("RUST_LOG", "garage=warn,netapp=warn");
        let (status, stdout, stderr) = output_with_timeout(&mut cmd, CLI_TIMEOUT)
            .map_err(|e| format!("`garage {}`: {e}", args.join(" ")))?;
        if status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "`garage {}` failed ({status}):\n{}{}",
                args.join(" "),
                stdout.trim_end(),
                stderr.trim_end()
            ))
        }
    }

    /// The server's log file (stdout and stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's log so far.
    pub fn log_contents(&self) -> String {
        util::read_lossy(&self.log_path)
    }

    /// The server's configuration file.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// How long starting and setting up the server took.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }
}

/// Finds the garage binary: `Ok(None)` if there is none.
fn find_garage() -> Result<Option<PathBuf>, String> {
    if let Some(bin) = std::env::var_os("PGKEEP_GARAGE_BIN") {
        let bin = PathBuf::from(bin);
        return if bin.is_file() {
            Ok(Some(bin))
        } else {
            Err(format!(
                "pgkeep-testkit: PGKEEP_GARAGE_BIN={} is not a file",
                bin.display()
            ))
        };
    }
    if let Some(bin) = util::find_on_path("garage") {
        return Ok(Some(bin));
    }
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    Ok(cargo_home
        .map(|h| h.join("bin").join("garage"))
        .filter(|p| p.is_file()))
}

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn config_toml(dir: &Path, rpc_port: u16, s3_addr: SocketAddr) -> String {
    format!(
        r#"# Written by pgkeep-testkit.
metadata_dir = {meta}
data_dir = {data}
db_engine = "sqlite"
replication_factor = 1

rpc_bind_addr = "127.0.0.1:{rpc_port}"
rpc_public_addr = "127.0.0.1:{rpc_port}"
rpc_secret = "{secret}"

[s3_api]
s3_region = "{REGION}"
api_bind_addr = "{s3_addr}"
root_domain = ".s3.garage.localhost"
"#,
        meta = toml_string(&dir.join("meta").to_string_lossy()),
        data = toml_string(&dir.join("data").to_string_lossy()),
        secret = util::random_hex(32),
    )
}

/// Removes `GARAGE_*` variables (RPC host, secrets, config file) that would
/// point the CLI or server elsewhere.
fn clean_garage_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("GARAGE_") {
            cmd.env_remove(name);
        }
    }
    cmd.env("NO_COLOR", "1");
}

/// Spawns `garage server` from a thread that then parks forever, with
/// PDEATHSIG so the server dies with the test process.
fn spawn_server(bin: &Path, config: &Path, log_path: &Path) -> Result<Child, String> {
    let log = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(|e| format!("pgkeep-testkit: cannot create {}: {e}", log_path.display()))?;
    let log_err = log
        .try_clone()
        .map_err(|e| format!("pgkeep-testkit: cannot dup log fd: {e}"))?;
    let mut cmd = Command::new(bin);
    cmd.arg("-c")
        .arg(config)
        .arg("server")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    clean_garage_env(&mut cmd);
    cmd.env("RUST_LOG", "garage=info,netapp=info");
    sys::kill_when_parent_thread_exits(&mut cmd);

    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("pgkeep-garage-parent".into())
        .spawn(move || {
            let spawned = cmd.spawn();
            let ok = spawned.is_ok();
            let _ = tx.send(spawned);
            if ok {
                // PR_SET_PDEATHSIG fires when this thread exits: never exit.
                loop {
                    thread::park();
                }
            }
        })
        .map_err(|e| format!("pgkeep-testkit: cannot spawn a thread: {e}"))?;
    rx.recv()
        .map_err(|_| "pgkeep-testkit: garage spawner thread died".to_string())?
        .map_err(|e| format!("pgkeep-testkit: cannot run {}: {e}", bin.display()))
}

/// Runs `cmd` to completion, killing it after `timeout`.
fn output_with_timeout(
    cmd: &mut Command,
    timeout: Duration,
) -> Result<(ExitStatus, String, String), String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run: {e}"))?;
    let reader = |mut pipe: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped stdout")));
    let err = reader(Box::new(child.stderr.take().expect("piped stderr")));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("timed out after {timeout:?}"));
            }
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("wait: {e}")),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok((status, stdout, stderr))
}
