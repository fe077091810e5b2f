//! Small helpers shared by the harness modules.

use std::collections::HashSet;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::Rng;

/// Name of the marker file that protects a kept test directory from the sweep.
pub(crate) const KEEP_MARKER: &str = "KEPT-BY-PGKEEP_KEEP_TEST_DIRS";

/// Ports this process has already handed out, so that two servers started at
/// the same moment by parallel tests never get the same one.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// A TCP port on 127.0.0.1 that was free a moment ago: bind port 0, read the
/// port the kernel chose, release it. Never returns the same port twice in
/// one process. Callers must still cope with losing a race to another process.
pub(crate) fn free_port() -> u16 {
    for _ in 0..100 {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot bind 127.0.0.1:0: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("pgkeep-testkit: local_addr: {e}"))
            .port();
        drop(listener);
        let mut guard = HANDED_OUT.lock().unwrap_or_else(|p| p.into_inner());
        if guard.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
    panic!("pgkeep-testkit: could not find a free TCP port on 127.0.0.1");
}

/// `n` random bytes as lowercase hex (`2 * n` characters).
pub(crate) fn random_hex(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Whether `PGKEEP_KEEP_TEST_DIRS` asks to keep test directories.
pub(crate) fn keep_test_dirs() -> bool {
    env_flag("PGKEEP_KEEP_TEST_DIRS")
}

/// Whether an environment variable is set to a true-ish value (`1`, `true`, `yes`).
pub(crate) fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
        .unwrap_or(false)
}

/// Creates a fresh directory `$TMPDIR/<kind>-<pid>-<random>` and returns its path.
/// The caller owns it and removes it (see [`remove_or_keep`]).
pub(crate) fn make_test_dir(kind: &str) -> PathBuf {
    let prefix = format!("{kind}-{}-", std::process::id());
    let dir = tempfile::Builder::new()
        .prefix(&prefix)
        .tempdir()
        .unwrap_or_else(|e| panic!("pgkeep-testkit: cannot create a temp dir: {e}"));
    dir.keep()
}

/// Removes a test directory, or keeps it (with a marker, and says so on stderr)
/// when `PGKEEP_KEEP_TEST_DIRS=1`.
pub(crate) fn remove_or_keep(dir: &Path, what: &str) {
    if keep_test_dirs() {
        let _ = fs::write(dir.join(KEEP_MARKER), b"");
        eprintln!("pgkeep-testkit: keeping {what} directory {}", dir.display());
    } else {
        let _ = fs::remove_dir_all(dir);
    }
}

/// Test directories of kind `kind` left behind by test processes that are
/// gone (killed, or exited without running destructors), excluding kept ones.
pub(crate) fn stale_test_dirs(kind: &str) -> Vec<PathBuf> {
    let prefix = format!("{kind}-");
    let Ok(entries) = fs::read_dir(std::env::temp_dir()) else {
        return Vec::new();
    };
    let mut stale = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let path = entry.path();
        if pid == std::process::id()
            || Path::new(&format!("/proc/{pid}")).exists()
            || path.join(KEEP_MARKER).exists()
            || !path.is_dir()
        {
            continue;
        }
        stale.push(path);
    }
    stale
}

/// The last `n` lines of `text`.
pub(crate) fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Finds an executable called `name` on `PATH`.
pub(crate) fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// A whole text file, lossily decoded; empty if it cannot be read (e.g. not written yet).
pub(crate) fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
