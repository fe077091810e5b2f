//! The PostgreSQL programs pgkeep drives (pg_dump, pg_dumpall, pg_restore, pg_basebackup, psql,
//! pg_ctl, ...): where they are and whether their major version fits the server.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The client programs pgkeep uses.
pub const CLIENT_TOOLS: &[&str] = &["pg_dump", "pg_dumpall", "pg_restore", "pg_basebackup"];

/// One program found (or not).
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    /// Program name.
    pub name: String,
    /// Where it was found.
    pub path: Option<PathBuf>,
    /// Its `--version` line.
    pub version: Option<String>,
    /// Its major version.
    pub major: Option<u32>,
    /// Whether it can work with the server (its major version is at least the server's).
    pub fits: bool,
}

impl ToolInfo {
    /// The path to run: where it was found, else its bare name (for `PATH`).
    pub(crate) fn program(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name))
    }
}

/// A PostgreSQL program that is missing or does not fit the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolError {
    /// It was found nowhere.
    NotFound {
        /// The program.
        tool: String,
        /// The server's major version, if known (it names the package to install).
        major: Option<u32>,
    },
    /// It did not answer `--version`.
    NoVersion {
        /// The program.
        tool: String,
        /// Where it was found.
        path: PathBuf,
    },
    /// Its major version is older than the server's.
    TooOld {
        /// The program.
        tool: String,
        /// Where it was found.
        path: PathBuf,
        /// Its major version.
        major: u32,
        /// The server's.
        server: u32,
    },
}

impl ToolError {
    /// The program.
    pub fn tool(&self) -> &str {
        match self {
            ToolError::NotFound { tool, .. }
            | ToolError::NoVersion { tool, .. }
            | ToolError::TooOld { tool, .. } => tool,
        }
    }

    /// What is wrong.
    pub fn problem(&self) -> String {
        match self {
            ToolError::NotFound { .. } => "not found".into(),
            ToolError::NoVersion { path, .. } => {
                format!("{} did not report its version", path.display())
            }
            ToolError::TooOld {
                path,
                major,
                server,
                ..
            } => format!(
                "{} is version {major}, older than the server's {server}",
                path.display()
            ),
        }
    }

    /// What to do.
    pub fn fix(&self) -> String {
        match self {
            ToolError::NotFound { major, .. } => install_fix(*major),
            ToolError::NoVersion { .. } => {
                "check that the program runs (try it with --version), or set postgres.bin-dir"
                    .into()
            }
            ToolError::TooOld { server, .. } => install_fix(Some(*server)),
        }
    }
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}\n  fix: {}",
            self.tool(),
            self.problem(),
            self.fix()
        )
    }
}

impl std::error::Error for ToolError {}

/// Where a program is: `bin_dir` if configured, else the server's major version directory under
/// `/usr/lib/postgresql`, else `PATH`.
pub(crate) fn locate(
    name: &str,
    bin_dir: Option<&Path>,
    server_major: Option<u32>,
) -> Option<PathBuf> {
    if let Some(dir) = bin_dir {
        let path = dir.join(name);
        return path.is_file().then_some(path);
    }
    if let Some(major) = server_major {
        let path = PathBuf::from(format!("/usr/lib/postgresql/{major}/bin/{name}"));
        if path.is_file() {
            return Some(path);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)` into 15.
pub(crate) fn parse_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1)?.trim_start();
    let number: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    number.parse().ok()
}

/// Finds `name` and asks it for its version.
pub(crate) async fn inspect(
    name: &str,
    bin_dir: Option<&Path>,
    server_major: Option<u32>,
) -> ToolInfo {
    let path = locate(name, bin_dir, server_major);
    let version = match &path {
        Some(path) => tokio::process::Command::new(path)
            .arg("--version")
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        None => None,
    };
    let major = version.as_deref().and_then(parse_major);
    let fits = match (major, server_major) {
        (Some(tool), Some(server)) => tool >= server,
        (Some(_), None) => true,
        _ => false,
    };
    ToolInfo {
        name: name.to_string(),
        path,
        version,
        major,
        fits,
    }
}

/// How to get the client programs for a server of `major` (or of the server's version).
fn install_fix(major: Option<u32>) -> String {
    match major {
        Some(m) => format!(
            "install postgresql-client-{m} and set postgres.bin-dir = \"/usr/lib/postgresql/{m}/bin\""
        ),
        None => {
            "install the PostgreSQL client package matching the server, or set postgres.bin-dir"
                .into()
        }
    }
}

/// What keeps `tool` from working with a server of `server_major`; `None` if it fits. `check`
/// reports these, and the commands that run the tool refuse with them.
pub(crate) fn misfit(tool: &ToolInfo, server_major: Option<u32>) -> Option<ToolError> {
    match (&tool.path, tool.major, server_major) {
        (None, _, _) => Some(ToolError::NotFound {
            tool: tool.name.clone(),
            major: server_major,
        }),
        (Some(path), None, _) => Some(ToolError::NoVersion {
            tool: tool.name.clone(),
            path: path.clone(),
        }),
        (Some(path), Some(major), Some(server)) if !tool.fits => Some(ToolError::TooOld {
            tool: tool.name.clone(),
            path: path.clone(),
            major,
            server,
        }),
        _ => None,
    }
}

/// A program that must fit a server of `server_major`, found in `bin_dir` or the usual places.
pub(crate) async fn fitting_tool(
    bin_dir: Option<&Path>,
    name: &str,
    server_major: u32,
) -> Result<ToolInfo, ToolError> {
    let tool = inspect(name, bin_dir, Some(server_major)).await;
    match misfit(&tool, Some(server_major)) {
        Some(e) => Err(e),
        None => Ok(tool),
    }
}

/// Where a program for (a backup of) PostgreSQL `major` is, without asking its version.
pub(crate) fn located(
    bin_dir: Option<&Path>,
    name: &str,
    major: u32,
) -> Result<PathBuf, ToolError> {
    locate(name, bin_dir, Some(major)).ok_or_else(|| ToolError::NotFound {
        tool: name.into(),
        major: Some(major),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_version_lines() {
        assert_eq!(
            parse_major("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)"),
            Some(15)
        );
        assert_eq!(parse_major("pg_basebackup (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("garbage"), None);
    }
}
