//! The PostgreSQL client programs pgkeep drives (pg_dump, pg_dumpall, pg_restore, pg_basebackup):
//! where they are and whether their major version fits the server.

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

/// Where a program is: `bin_dir` if configured, else the server's major version directory under
/// `/usr/lib/postgresql`, else `PATH`.
pub fn locate(name: &str, bin_dir: Option<&Path>, server_major: Option<u32>) -> Option<PathBuf> {
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
pub fn parse_major(version_line: &str) -> Option<u32> {
    let after = version_line.split(')').nth(1)?.trim_start();
    let number: String = after.chars().take_while(|c| c.is_ascii_digit()).collect();
    number.parse().ok()
}

/// Finds `name` and asks it for its version.
pub async fn inspect(name: &str, bin_dir: Option<&Path>, server_major: Option<u32>) -> ToolInfo {
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
pub fn install_fix(major: Option<u32>) -> String {
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

/// What keeps `tool` from working with a server of `server_major`, and the fix; `None` if it fits.
/// `check` reports these, and the commands that run the tool refuse with them.
pub fn misfit(tool: &ToolInfo, server_major: Option<u32>) -> Option<(String, String)> {
    match (&tool.path, tool.major, server_major) {
        (None, _, _) => Some((
            format!("{} was not found", tool.name),
            install_fix(server_major),
        )),
        (Some(path), None, _) => Some((
            format!("{} did not report its version", path.display()),
            "check that the program runs (try it with --version), or set postgres.bin-dir".into(),
        )),
        (Some(path), Some(major), Some(server)) if !tool.fits => Some((
            format!(
                "{} is version {major}, older than the server's {server}",
                path.display()
            ),
            install_fix(Some(server)),
        )),
        _ => None,
    }
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
