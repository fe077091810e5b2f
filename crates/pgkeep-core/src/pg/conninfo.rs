//! PostgreSQL connection parameters resolved the way libpq resolves them.
//!
//! The order is libpq's: what the connection string says, else the `PG*` environment variables, else
//! the compiled-in defaults (Debian's socket directory `/var/run/postgresql`, port 5432, the operating
//! system user). A password comes from the connection string, else `PGPASSWORD`, else the password
//! file (`PGPASSFILE`, else `~/.pgpass`), which — as libpq does — is ignored with a warning unless it
//! is a plain file without group or world access.
//!
//! A [`ConnInfo`] never prints its password: not in `Debug`, not in `Display`. Child processes get
//! the parameters through their environment ([`ConnInfo::child_env`]), never in argv.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

/// Debian's (and most distributions') default Unix socket directory.
pub const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";
/// The default port.
pub const DEFAULT_PORT: u16 = 5432;

/// Where the password came from, for reports (never the password itself).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind", content = "path")]
pub enum PasswordSource {
    /// No password: trust, peer or certificate authentication is expected.
    None,
    /// From the connection string.
    ConnString,
    /// From `PGPASSWORD`.
    Environment,
    /// From a password file.
    PassFile(PathBuf),
}

/// A connection string or `PG*` variable that cannot be used. The message describes what is wrong
/// without repeating the string (it may hold a password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConnInfoError(String);

/// Resolved connection parameters.
#[derive(Clone)]
pub struct ConnInfo {
    /// Host names, IP addresses or socket directories (starting with `/`).
    pub hosts: Vec<String>,
    /// Ports, one for all hosts or one per host.
    pub ports: Vec<u16>,
    /// The role to connect as.
    pub user: String,
    /// The database for maintenance queries.
    pub dbname: String,
    /// `sslmode`, if given.
    pub sslmode: Option<String>,
    /// `application_name`, if given.
    pub application_name: Option<String>,
    /// `connect_timeout`, if given.
    pub connect_timeout: Option<Duration>,
    /// `options` (server settings), if given.
    pub options: Option<String>,
    password: Option<String>,
    password_source: PasswordSource,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnInfo({self})")
    }
}

impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        write!(
            f,
            "host={} port={} user={} dbname={}",
            self.hosts.join(","),
            ports.join(","),
            self.user,
            self.dbname
        )?;
        if let Some(mode) = &self.sslmode {
            write!(f, " sslmode={mode}")?;
        }
        Ok(())
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn os_user() -> String {
    // libpq asks getpwuid(); USER / LOGNAME name the same user in every login and cron session.
    env("USER")
        .or_else(|| env("LOGNAME"))
        .unwrap_or_else(|| "postgres".to_string())
}

fn home_dir() -> Option<PathBuf> {
    env("HOME").map(PathBuf::from)
}

/// Whether a connection string holds a password (`password=` or a URL's `user:password@`). An
/// invalid string holds none as far as this is concerned (resolving it reports the error).
pub fn conninfo_has_password(conninfo: &str) -> bool {
    tokio_postgres::Config::from_str(conninfo).is_ok_and(|c| c.get_password().is_some())
}

impl ConnInfo {
    /// Resolves a connection string (`key=value` pairs or a `postgresql://` URL; `None` for none) with
    /// the environment. The error describes what is wrong with the string, without repeating it (it
    /// may hold a password).
    pub fn from_conninfo_and_env(conninfo: Option<&str>) -> Result<ConnInfo, ConnInfoError> {
        let parsed = match conninfo {
            Some(s) if !s.trim().is_empty() => {
                tokio_postgres::Config::from_str(s).map_err(|e| {
                    let cause = std::error::Error::source(&e).map(|c| format!(": {c}"));
                    ConnInfoError(format!(
                        "not a valid connection string{}",
                        cause.unwrap_or_default()
                    ))
                })?
            }
            _ => tokio_postgres::Config::new(),
        };
        let (hosts, ports) = hosts_and_ports(&parsed)?;
        let user = parsed
            .get_user()
            .map(str::to_string)
            .or_else(|| env("PGUSER"))
            .unwrap_or_else(os_user);
        let dbname = parsed
            .get_dbname()
            .map(str::to_string)
            .or_else(|| env("PGDATABASE"))
            .unwrap_or_else(|| user.clone());
        let sslmode = match conninfo.map(|s| s.contains("sslmode")) {
            Some(true) => Some(
                match parsed.get_ssl_mode() {
                    SslMode::Disable => "disable",
                    SslMode::Require => "require",
                    _ => "prefer",
                }
                .to_string(),
            ),
            _ => env("PGSSLMODE"),
        };
        let application_name = parsed
            .get_application_name()
            .map(str::to_string)
            .or_else(|| env("PGAPPNAME"));
        let connect_timeout = match parsed.get_connect_timeout() {
            Some(t) => Some(*t),
            None => match env("PGCONNECT_TIMEOUT") {
                Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                    ConnInfoError(format!(
                        "PGCONNECT_TIMEOUT `{t}` is not a number of seconds"
                    ))
                })?)),
                None => None,
            },
        };
        let options = parsed
            .get_options()
            .map(str::to_string)
            .or_else(|| env("PGOPTIONS"));

        let mut info = ConnInfo {
            hosts,
            ports,
            user,
            dbname,
            sslmode,
            application_name,
            connect_timeout,
            options,
            password: None,
            password_source: PasswordSource::None,
        };
        info.find_password(&parsed);
        Ok(info)
    }

    /// A connection through the Unix socket directory `dir` on `port`, as `user` to database
    /// `postgres`, with nothing taken from the environment (no password, no `PG*` variable): a
    /// throwaway cluster reachable only through its own socket.
    pub(crate) fn local_socket(dir: &Path, port: u16, user: &str) -> ConnInfo {
        ConnInfo {
            hosts: vec![dir.to_string_lossy().into_owned()],
            ports: vec![port],
            user: user.to_string(),
            dbname: "postgres".to_string(),
            sslmode: None,
            application_name: None,
            connect_timeout: None,
            options: None,
            password: None,
            password_source: PasswordSource::None,
        }
    }

    /// The password, as libpq finds it: the connection string's, else `PGPASSWORD`, else the
    /// password file.
    fn find_password(&mut self, parsed: &tokio_postgres::Config) {
        if let Some(pw) = parsed.get_password() {
            self.password = Some(String::from_utf8_lossy(pw).into_owned());
            self.password_source = PasswordSource::ConnString;
        } else if let Some(pw) = env("PGPASSWORD") {
            self.password = Some(pw);
            self.password_source = PasswordSource::Environment;
        } else {
            let file = env("PGPASSFILE")
                .map(PathBuf::from)
                .or_else(|| home_dir().map(|h| h.join(".pgpass")));
            if let Some(file) = file
                && let Some(pw) = self.password_from_file(&file)
            {
                self.password = Some(pw);
                self.password_source = PasswordSource::PassFile(file);
            }
        }
    }

    /// Where the password came from.
    pub fn password_source(&self) -> &PasswordSource {
        &self.password_source
    }

    /// The first host and port, as a human would name the server (`/var/run/postgresql:5432`).
    pub fn server(&self) -> String {
        format!("{}:{}", self.hosts[0], self.ports[0])
    }

    /// Looks the password up in a libpq password file (`host:port:db:user:password`, `*` wildcards,
    /// `\` escapes), honouring libpq's refusal of files with group or world access.
    fn password_from_file(&self, file: &Path) -> Option<String> {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(file).ok()?;
        if !meta.is_file() {
            tracing::warn!(
                "password file {} is not a plain file; ignoring it",
                file.display()
            );
            return None;
        }
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(
                "password file {} has group or world access; permissions should be u=rw (0600) or less; ignoring it",
                file.display()
            );
            return None;
        }
        let text = std::fs::read_to_string(file).ok()?;
        let host = &self.hosts[0];
        // For a socket connection libpq matches the entry `localhost`.
        let host_match = if host.starts_with('/') {
            "localhost"
        } else {
            host.as_str()
        };
        let port = self.ports[0].to_string();
        text.lines()
            .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
            .map(split_pgpass_line)
            .find(|fields| {
                fields.len() >= 5
                    && field_matches(&fields[0], host_match)
                    && field_matches(&fields[1], &port)
                    && field_matches(&fields[2], &self.dbname)
                    && field_matches(&fields[3], &self.user)
            })
            .map(|fields| fields[4].clone())
    }

    /// A tokio-postgres configuration for `dbname` (else the configured database).
    pub fn pg_config(&self, dbname: Option<&str>) -> tokio_postgres::Config {
        let mut config = tokio_postgres::Config::new();
        for host in &self.hosts {
            if host.starts_with('/') {
                config.host_path(host);
            } else {
                config.host(host);
            }
        }
        for port in &self.ports {
            config.port(*port);
        }
        config.user(&self.user);
        config.dbname(dbname.unwrap_or(&self.dbname));
        if let Some(pw) = &self.password {
            config.password(pw);
        }
        config.application_name(self.application_name.as_deref().unwrap_or("pgkeep"));
        config.connect_timeout(self.connect_timeout.unwrap_or(Duration::from_secs(10)));
        if let Some(options) = &self.options {
            config.options(options);
        }
        match self.sslmode.as_deref() {
            Some("disable") => {
                config.ssl_mode(SslMode::Disable);
            }
            Some("require" | "verify-ca" | "verify-full") => {
                config.ssl_mode(SslMode::Require);
            }
            _ => {}
        }
        config
    }

    /// Environment variables that give a libpq client program (pg_dump, pg_basebackup, psql) the same
    /// connection, password included. Pass them with `Command::envs`, never as arguments.
    pub fn child_env(&self, dbname: Option<&str>) -> Vec<(&'static str, String)> {
        let ports: Vec<String> = self.ports.iter().map(u16::to_string).collect();
        let mut vars = vec![
            ("PGHOST", self.hosts.join(",")),
            ("PGPORT", ports.join(",")),
            ("PGUSER", self.user.clone()),
            ("PGDATABASE", dbname.unwrap_or(&self.dbname).to_string()),
            (
                "PGAPPNAME",
                self.application_name
                    .clone()
                    .unwrap_or_else(|| "pgkeep".into()),
            ),
        ];
        if let Some(pw) = &self.password {
            vars.push(("PGPASSWORD", pw.clone()));
        }
        if let Some(mode) = &self.sslmode {
            vars.push(("PGSSLMODE", mode.clone()));
        }
        if let Some(t) = self.connect_timeout {
            vars.push(("PGCONNECT_TIMEOUT", t.as_secs().to_string()));
        }
        if let Some(options) = &self.options {
            vars.push(("PGOPTIONS", options.clone()));
        }
        vars
    }
}

fn split_pgpass_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => field.extend(chars.next()),
            ':' if fields.len() < 4 => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn field_matches(field: &str, value: &str) -> bool {
    field == "*" || field == value
}

/// The hosts and ports: the connection string's, else `PGHOST` / `PGPORT`, else the defaults.
fn hosts_and_ports(
    parsed: &tokio_postgres::Config,
) -> Result<(Vec<String>, Vec<u16>), ConnInfoError> {
    let mut hosts: Vec<String> = parsed
        .get_hosts()
        .iter()
        .map(|h| match h {
            Host::Tcp(name) => name.clone(),
            Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    if hosts.is_empty() {
        hosts = env("PGHOST")
            .map(|h| h.split(',').map(str::to_string).collect())
            .unwrap_or_else(|| vec![DEFAULT_SOCKET_DIR.to_string()]);
    }
    let mut ports = parsed.get_ports().to_vec();
    if ports.is_empty() {
        ports = match env("PGPORT") {
            Some(p) => p
                .split(',')
                .map(|p| {
                    p.trim()
                        .parse::<u16>()
                        .map_err(|_| ConnInfoError(format!("PGPORT `{p}` is not a port number")))
                })
                .collect::<Result<_, _>>()?,
            None => vec![DEFAULT_PORT],
        };
    }
    if ports.len() != 1 && ports.len() != hosts.len() {
        return Err(ConnInfoError(format!(
            "{} hosts but {} ports: give one port, or one per host",
            hosts.len(),
            ports.len()
        )));
    }
    Ok((hosts, ports))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgpass_lines_split_with_escapes() {
        assert_eq!(
            split_pgpass_line(r"db\:1:5432:*:u:p\:w\\d"),
            vec!["db:1", "5432", "*", "u", r"p:w\d"]
        );
    }

    #[test]
    fn display_and_debug_never_show_password() {
        let info = ConnInfo::from_conninfo_and_env(Some(
            "host=db1 port=6543 user=alice dbname=app password=s3cr3t-pw",
        ))
        .unwrap();
        assert_eq!(info.hosts, vec!["db1"]);
        assert_eq!(info.ports, vec![6543]);
        assert_eq!(info.password_source(), &PasswordSource::ConnString);
        assert!(!format!("{info} {info:?}").contains("s3cr3t-pw"));
        let url =
            ConnInfo::from_conninfo_and_env(Some("postgresql://bob:pa55@h2:5433/shop")).unwrap();
        assert_eq!((url.user.as_str(), url.dbname.as_str()), ("bob", "shop"));
        assert!(!format!("{url:?}").contains("pa55"));
    }

    #[test]
    fn bad_conninfo_error_does_not_echo_it() {
        let e = ConnInfo::from_conninfo_and_env(Some("host=x password=s3cr3t port=notaport"))
            .unwrap_err()
            .to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
