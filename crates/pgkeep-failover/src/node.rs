//! The nodes of the pair, from `[failover.nodes.NAME]`, and running commands on them.
//!
//! Every action on a node is a shell command run locally (`sh -c`) or over ssh with BatchMode (no
//! password prompt can hang a cron job or a switchover), so the same code serves both transports.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use pgkeep_core::{ConnInfo, NodeConfig, Settings, SyncConfig, command_percent, shell_quote};

use crate::error::FailoverError;

/// The marker file's default path.
pub const DEFAULT_MARKER: &str = "/primary_server";
/// How long a command on a node may take before it counts as failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// How a node is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// This machine.
    Local,
    /// ssh with BatchMode.
    Ssh {
        /// Host name or address.
        host: String,
        /// User, if not ssh's default.
        user: Option<String>,
        /// Port, if not 22.
        port: Option<u16>,
    },
}

/// One node of the pair.
#[derive(Debug, Clone)]
pub struct Node {
    /// Its name in the configuration.
    pub name: String,
    /// How to reach it.
    pub transport: Transport,
    /// How to connect to its PostgreSQL.
    pub conninfo: ConnInfo,
    /// Its data directory.
    pub pgdata: PathBuf,
    /// Its PostgreSQL programs, if configured.
    pub bin_dir: Option<PathBuf>,
    /// The marker file.
    pub marker: PathBuf,
    /// Starts PostgreSQL.
    pub start_postgres: String,
    /// Stops PostgreSQL.
    pub stop_postgres: String,
    /// Application services, in start order.
    pub services: Vec<String>,
    /// Starts a service (`{service}` replaced).
    pub start_service: String,
    /// Stops a service.
    pub stop_service: String,
    /// Prefix of the sync paths on this node.
    pub sync_root: PathBuf,
}

/// The nodes, which one this machine is, and the sync settings.
#[derive(Debug, Clone)]
pub struct Pair {
    /// Every node, in name order.
    pub nodes: Vec<Node>,
    /// The index of this machine's node in `nodes`.
    pub local: usize,
    /// `[sync]`.
    pub sync: SyncConfig,
    /// Directory of the lock and journal.
    pub state_dir: PathBuf,
    /// Largest replay lag for a switchover target.
    pub max_lag_bytes: u64,
    /// How long a switchover waits for the target to replay the old master's last checkpoint.
    pub catch_up_timeout: Duration,
    /// Commands run after a role change (`failover.hooks`).
    pub hooks: Vec<String>,
    /// How a rejoined standby (and pg_rewind) fetches archived WAL; `None` without a repository.
    pub wal_fetch: Option<WalFetch>,
}

/// The `restore_command` a rejoined node gets: this pgkeep binary's `wal-fetch` with this
/// configuration file and repository. Both are expected at the same paths on every node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFetch {
    /// The pgkeep binary.
    pub program: PathBuf,
    /// The command line, quoted the way /bin/sh reads it, with PostgreSQL's `%f %p`; every
    /// failure exits 1, so that a standby retries rather than stops.
    pub command: String,
}

impl WalFetch {
    /// The `restore_command` for `settings`' repository, running `program` (default: this very
    /// binary) with the same configuration file, repository and cluster; `None` when no repository
    /// is configured.
    pub fn from_settings(settings: &Settings, program: Option<&Path>) -> Option<WalFetch> {
        let repo = settings.repo.as_ref()?;
        let program = match program {
            Some(p) => p.to_path_buf(),
            None => {
                let exe = std::env::current_exe().ok()?;
                // Replaced while running (an upgrade, a rebuild): the path names the new binary.
                exe.to_str()
                    .and_then(|p| p.strip_suffix(" (deleted)"))
                    .map_or(exe.clone(), PathBuf::from)
            }
        };
        // Each argument quoted for /bin/sh, its `%` doubled so PostgreSQL's %f/%p substitution
        // leaves it alone.
        let mut parts = vec![command_percent(&quoted(&program))];
        if let Some(config) = &settings.config_path {
            let config = std::fs::canonicalize(config).unwrap_or_else(|_| config.clone());
            parts.push("--config".into());
            parts.push(command_percent(&quoted(&config)));
        }
        parts.push("--repo".into());
        parts.push(command_percent(&shell_quote(&repo.to_string())));
        parts.push("--cluster".into());
        parts.push(command_percent(&shell_quote(&settings.cluster)));
        parts.push("wal-fetch %f %p".into());
        // wal-fetch exits above 125 on a real failure so that a restore stops; a standby would
        // stop too (PostgreSQL takes such codes as fatal). A standby retries instead: the error
        // stays in its log, and it goes on streaming.
        parts.push("|| exit 1".into());
        Some(WalFetch {
            program,
            command: parts.join(" "),
        })
    }
}

impl Pair {
    /// Validates `[failover]` and `[sync]`; `local` (`--node`) overrides `failover.local-node`.
    pub fn from_settings(settings: &Settings, local: Option<&str>) -> Result<Pair, FailoverError> {
        let origin = settings.config_path.as_ref().map_or_else(
            || "(no configuration file)".to_string(),
            |p| p.display().to_string(),
        );
        let config_error = |key: &str, problem: String, fix: &str| FailoverError::Config {
            origin: origin.clone(),
            key: key.to_string(),
            problem,
            fix: fix.to_string(),
        };
        let failover = &settings.failover;
        if failover.nodes.len() < 2 {
            return Err(config_error(
                "failover.nodes",
                format!("{} node(s) configured", failover.nodes.len()),
                "describe both servers as [failover.nodes.NAME] tables; config/two-servers.example.toml shows the whole setup",
            ));
        }
        let mut nodes = Vec::new();
        for (name, config) in &failover.nodes {
            nodes.push(node_from_config(name, config, &config_error)?);
        }
        let local_name = local
            .map(str::to_string)
            .or_else(|| failover.local_node.clone())
            .ok_or_else(|| {
                config_error(
                    "failover.local-node",
                    "which node this machine is is not known".into(),
                    "set failover.local-node on each server, or pass --node NAME",
                )
            })?;
        let local = nodes
            .iter()
            .position(|n| n.name == local_name)
            .ok_or_else(|| {
                config_error(
                    "failover.local-node",
                    format!(
                        "`{local_name}` is not one of the nodes ({})",
                        nodes
                            .iter()
                            .map(|n| n.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    "use the name of a [failover.nodes.NAME] table",
                )
            })?;
        // This machine's node is reached directly, even when its ssh-host is set (both servers
        // share one configuration file).
        nodes[local].transport = Transport::Local;
        Ok(Pair {
            nodes,
            local,
            sync: settings.sync.clone(),
            state_dir: failover
                .state_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("/var/lib/pgkeep")),
            max_lag_bytes: failover.max_lag_bytes.unwrap_or(16 * 1024 * 1024),
            catch_up_timeout: Duration::from_secs(failover.catch_up_timeout.unwrap_or(60)),
            hooks: failover.hooks.clone(),
            wal_fetch: WalFetch::from_settings(settings, None),
        })
    }

    /// The node named `name`, or a refusal listing the names.
    pub fn node(&self, name: &str) -> Result<&Node, FailoverError> {
        self.nodes.iter().find(|n| n.name == name).ok_or_else(|| {
            FailoverError::refused(
                format!("there is no node `{name}`"),
                &format!(
                    "use one of: {}",
                    self.nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        })
    }

    /// This machine's node.
    pub fn local(&self) -> &Node {
        &self.nodes[self.local]
    }

    /// The other nodes.
    pub fn peers(&self) -> impl Iterator<Item = &Node> {
        self.nodes
            .iter()
            .enumerate()
            .filter(move |(i, _)| *i != self.local)
            .map(|(_, n)| n)
    }

    /// Takes the failover lock (shared by switchover and file sync), failing at once if another
    /// pgkeep holds it. Held until the returned file is dropped.
    pub fn lock(&self, what: &str) -> Result<std::fs::File, FailoverError> {
        std::fs::create_dir_all(&self.state_dir).map_err(|e| {
            FailoverError::refused(
                format!("cannot create {}: {e}", self.state_dir.display()),
                "create it, writable by the user pgkeep runs as, or set failover.state-dir",
            )
        })?;
        let path = self.state_dir.join("failover.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| {
                FailoverError::refused(
                    format!("cannot open {}: {e}", path.display()),
                    "check the permissions of failover.state-dir",
                )
            })?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(FailoverError::refused(
                format!(
                    "another pgkeep switchover or file sync holds {} ({what} would run beside it)",
                    path.display()
                ),
                "wait for it to finish (see `pgkeep failover status`), then run this again",
            )),
            Err(std::fs::TryLockError::Error(e)) => Err(FailoverError::refused(
                format!("cannot lock {}: {e}", path.display()),
                "check the file system of failover.state-dir",
            )),
        }
    }
}

fn node_from_config(
    name: &str,
    config: &NodeConfig,
    config_error: &impl Fn(&str, String, &str) -> FailoverError,
) -> Result<Node, FailoverError> {
    let key = |k: &str| format!("failover.nodes.{name}.{k}");
    let conninfo = ConnInfo::from_conninfo_and_env(Some(config.conninfo.as_deref().ok_or_else(
        || {
            config_error(
                &key("conninfo"),
                "missing".into(),
                "give the node's PostgreSQL connection, e.g. `host=10.0.0.2 port=5432 user=postgres`",
            )
        },
    )?))
    .map_err(|problem| {
        config_error(
            &key("conninfo"),
            problem.to_string(),
            "write it as libpq does: key=value pairs or a postgresql:// URL",
        )
    })?;
    let pgdata = config.pgdata.clone().ok_or_else(|| {
        config_error(
            &key("pgdata"),
            "missing".into(),
            "give the node's data directory, e.g. /var/lib/postgresql/15/main",
        )
    })?;
    let transport = match &config.ssh_host {
        None => Transport::Local,
        Some(host) => Transport::Ssh {
            host: host.clone(),
            user: config.ssh_user.clone(),
            port: config.ssh_port,
        },
    };
    Ok(Node {
        name: name.to_string(),
        transport,
        conninfo,
        pgdata,
        bin_dir: config.bin_dir.clone(),
        marker: config
            .marker
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_MARKER)),
        start_postgres: config
            .start_postgres
            .clone()
            .unwrap_or_else(|| "systemctl start postgresql".into()),
        stop_postgres: config
            .stop_postgres
            .clone()
            .unwrap_or_else(|| "systemctl stop postgresql".into()),
        services: config.services.clone(),
        start_service: config
            .start_service
            .clone()
            .unwrap_or_else(|| "systemctl start {service}".into()),
        stop_service: config
            .stop_service
            .clone()
            .unwrap_or_else(|| "systemctl stop {service}".into()),
        sync_root: config
            .sync_root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/")),
    })
}

impl Node {
    /// Runs `script` with `sh -c` on the node; the output whatever the exit status. Fails only when
    /// the command cannot be run or reached (ssh's own failures exit 255).
    pub async fn shell(&self, script: &str) -> Result<Output, FailoverError> {
        self.shell_within(script, Some(COMMAND_TIMEOUT)).await
    }

    /// [`shell`](Self::shell) for long work (pg_rewind, pg_basebackup): no time limit.
    pub async fn shell_unbounded(&self, script: &str) -> Result<Output, FailoverError> {
        self.shell_within(script, None).await
    }

    async fn shell_within(
        &self,
        script: &str,
        limit: Option<Duration>,
    ) -> Result<Output, FailoverError> {
        let mut cmd = match &self.transport {
            Transport::Local => {
                let mut cmd = tokio::process::Command::new("sh");
                cmd.arg("-c").arg(script);
                cmd
            }
            Transport::Ssh { host, user, port } => {
                let mut cmd = tokio::process::Command::new("ssh");
                cmd.args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]);
                if let Some(port) = port {
                    cmd.arg("-p").arg(port.to_string());
                }
                cmd.arg(match user {
                    Some(user) => format!("{user}@{host}"),
                    None => host.clone(),
                })
                .arg("--")
                .arg(script);
                cmd
            }
        };
        cmd.stdin(std::process::Stdio::null()).kill_on_drop(true);
        let out = match limit {
            Some(limit) => tokio::time::timeout(limit, cmd.output())
                .await
                .map_err(|_| {
                    self.failed(
                        "running a command",
                        format!("`{script}` did not finish within {} s", limit.as_secs()),
                    )
                })?,
            None => cmd.output().await,
        }
        .map_err(|e| self.failed("running a command", format!("`{script}`: {e}")))?;
        if matches!(self.transport, Transport::Ssh { .. }) && out.status.code() == Some(255) {
            return Err(self.failed(
                "reaching it over ssh",
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(out)
    }

    /// Runs `script` and fails unless it exits 0.
    pub async fn run(&self, what: &str, script: &str) -> Result<String, FailoverError> {
        let out = self.shell(script).await?;
        self.check_output(what, script, out)
    }

    /// [`run`](Self::run) without a time limit.
    pub async fn run_unbounded(&self, what: &str, script: &str) -> Result<String, FailoverError> {
        let out = self.shell_unbounded(script).await?;
        self.check_output(what, script, out)
    }

    fn check_output(&self, what: &str, script: &str, out: Output) -> Result<String, FailoverError> {
        if !out.status.success() {
            return Err(FailoverError::Node {
                node: self.name.clone(),
                what: what.to_string(),
                detail: format!(
                    "`{script}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                fix: "run the command by hand on that node to see why; check the node's commands in [failover.nodes]".into(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn failed(&self, what: &str, detail: String) -> FailoverError {
        FailoverError::Node {
            node: self.name.clone(),
            what: what.to_string(),
            detail,
            fix: match self.transport {
                Transport::Local => "check the command and its permissions".into(),
                Transport::Ssh { .. } => "check that `ssh -o BatchMode=yes` to the node works without a password (keys, known_hosts)".into(),
            },
        }
    }

    /// A shell command running PostgreSQL's `program` with `args` on the node: from its bin-dir,
    /// else the Debian location for the data directory's major version, else the PATH; as the
    /// data directory's owner when run as root (pg_rewind and initdb-made files refuse root).
    pub fn pg_program(&self, program: &str, args: &str) -> String {
        let pgdata = quoted(&self.pgdata);
        let path = match &self.bin_dir {
            Some(dir) => quoted(&dir.join(program)),
            None => format!(
                "\"$(P=/usr/lib/postgresql/$(cat {pgdata}/PG_VERSION 2>/dev/null)/bin/{program}; [ -x \"$P\" ] && echo \"$P\" || echo {program})\""
            ),
        };
        format!(
            "cd / && if [ \"$(id -u)\" = 0 ]; then runuser -u \"$(stat -c %U {pgdata})\" -- {path} {args}; else {path} {args}; fi"
        )
    }

    /// Whether the node's PostgreSQL is a primary (`Some(false)` in recovery, `None` when it does
    /// not answer).
    pub async fn is_primary(&self) -> Option<bool> {
        let client = pgkeep_core::connect(&self.conninfo, None).await.ok()?;
        let row = client
            .query_one("SELECT pg_is_in_recovery()", &[])
            .await
            .ok()?;
        Some(!row.get::<_, bool>(0))
    }

    /// Starts the application services, in order.
    pub async fn start_services(&self) -> Result<(), FailoverError> {
        for service in &self.services {
            self.run(
                &format!("starting {service}"),
                &self.start_service.replace("{service}", service),
            )
            .await?;
        }
        Ok(())
    }

    /// Stops the application services, in reverse order.
    pub async fn stop_services(&self) -> Result<(), FailoverError> {
        for service in self.services.iter().rev() {
            self.run(
                &format!("stopping {service}"),
                &self.stop_service.replace("{service}", service),
            )
            .await?;
        }
        Ok(())
    }

    /// Whether the marker file exists.
    pub async fn has_marker(&self) -> Result<bool, FailoverError> {
        let out = self
            .shell(&format!("test -e {}", quoted(&self.marker)))
            .await?;
        Ok(out.status.success())
    }

    /// Where a `[sync]` path lives on this node.
    pub fn sync_path(&self, path: &Path) -> PathBuf {
        self.sync_root.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// A path quoted for the shell.
pub fn quoted(path: &Path) -> String {
    shell_quote(&path.to_string_lossy())
}
