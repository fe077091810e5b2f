//! The scratch directory the drills restore into (`[drill] scratch-dir`): a fresh subdirectory
//! per drill, named `<UTC time>-<random>`, holding the throwaway cluster's data directory, its own
//! socket directory and its `pg_hba.conf`. Each one carries an owner record (`owner.json`: the
//! drill's pid and that process's start time) written before anything else goes in.
//!
//! The ordering rule: a drill directory is removed only after its server is stopped, and only by
//! its own drill or once its owner is gone. A drill removes its directory when it ends, whatever
//! the outcome (and when dropped, so an interrupted or panicking drill does too); a drill killed
//! outright (SIGKILL) leaves it, and the next drill finds the owner dead (no process with that pid
//! and start time), stops the server still running in it (`pg_ctl stop -m immediate`), and
//! removes it. A directory without a readable owner record is a drill killed while it was being
//! made, removed once it is older than [`UNOWNED_GRACE`] (younger, it may be one being made now).

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{DrillError, Error};
use crate::exec::{euid, stop_immediate};

/// The owner record's name in a drill directory.
const OWNER: &str = "owner.json";
/// How old a drill directory without a readable owner record must be before a sweep removes it.
const UNOWNED_GRACE: Duration = Duration::from_secs(600);
/// The longest path a Unix socket may have (`sun_path` less its terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Who made a drill directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OwnerRecord {
    /// The drill's process id.
    pid: u32,
    /// That process's start time (clock ticks since boot, from /proc), so that a reused pid is
    /// not taken for the drill.
    process_start: u64,
    /// When the drill began.
    started_at: DateTime<Utc>,
    /// The backup drilled.
    backup: String,
    /// The pg_ctl that stops its server.
    pg_ctl: PathBuf,
}

/// The start time of process `pid` (field 22 of /proc/PID/stat), `None` when there is none.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses itself.
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the drill that wrote `record` still runs: a process with its pid and start time. When
/// /proc hides the process (another user's, under `hidepid`), `kill(pid, 0)` still says whether
/// one with that pid exists, and it is taken for the drill.
fn owner_alive(record: &OwnerRecord) -> bool {
    match process_start(record.pid) {
        Some(start) => start == record.process_start,
        None => i32::try_from(record.pid)
            .ok()
            .filter(|pid| *pid > 0)
            .and_then(rustix::process::Pid::from_raw)
            .is_some_and(|pid| {
                rustix::process::test_kill_process(pid) != Err(rustix::io::Errno::SRCH)
            }),
    }
}

/// Whether a directory name is one a drill makes: `20261125T150430Z-1a2b3c4d`.
fn is_drill_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.len() == 25
        && bytes[8] == b'T'
        && bytes[15] == b'Z'
        && bytes[16] == b'-'
        && name[..8]
            .bytes()
            .chain(name[9..15].bytes())
            .all(|b| b.is_ascii_digit())
        && name[17..].bytes().all(|b| b.is_ascii_hexdigit())
}

/// The pid of the server running in data directory `data`: the one `postmaster.pid` names, if
/// that process still runs there (its working directory is the data directory).
fn running_server(data: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).ok()?;
    let pid: u32 = text.lines().next()?.trim().parse().ok()?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?;
    let data = std::fs::canonicalize(data).ok()?;
    (cwd == data).then_some(pid)
}

/// The uid and gid that own `path`.
fn owner_of(path: &Path) -> Option<(u32, u32)> {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata(path).ok().map(|m| (m.uid(), m.gid()))
}

/// Stops the server running in `data` with `pg_ctl stop -m immediate`, as the data directory's
/// owner when this process is root. Returns its pid when there was one.
fn stop_server(data: &Path, pg_ctl: &Path) -> Result<Option<u32>, String> {
    let Some(pid) = running_server(data) else {
        return Ok(None);
    };
    let owner = match euid() {
        Some(0) => owner_of(data),
        _ => None,
    };
    stop_immediate(pg_ctl, data, owner)
        .map(|()| Some(pid))
        .map_err(|e| {
            format!(
                "the server (pid {pid}) in {} still runs: {e}",
                data.display()
            )
        })
}

/// The scratch directory, created if need be.
#[derive(Debug)]
pub(crate) struct ScratchRoot {
    dir: PathBuf,
}

impl ScratchRoot {
    /// The scratch directory `dir`, created (with its parents) when it does not exist. Refused
    /// before anything is created when a drill's socket path under it would be too long, or when
    /// it holds a character the server's settings or pg_ctl cannot carry.
    pub(crate) fn open(dir: &Path) -> Result<ScratchRoot, Error> {
        check_dir(dir)?;
        std::fs::create_dir_all(dir).map_err(|source| DrillError::Scratch {
            what: "cannot create the scratch directory",
            dir: dir.to_path_buf(),
            source,
        })?;
        Ok(ScratchRoot {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Bytes free in the scratch directory's filesystem for this user.
    pub(crate) fn available(&self) -> Result<u64, Error> {
        let stat = rustix::fs::statvfs(&self.dir).map_err(|e| DrillError::Scratch {
            what: "cannot read the free space of the scratch directory",
            dir: self.dir.clone(),
            source: e.into(),
        })?;
        Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
    }

    /// A drill directory's path under this one, named `<UTC time>-<random>`.
    fn drill_path(&self) -> PathBuf {
        self.dir.join(format!(
            "{}-{:08x}",
            Utc::now().format("%Y%m%dT%H%M%SZ"),
            rand::random::<u32>()
        ))
    }

    /// A fresh drill directory's path (not created yet), refused when its socket's path would be
    /// too long for a Unix socket.
    pub(crate) fn new_path(&self, port: u16) -> Result<PathBuf, Error> {
        let path = self.drill_path();
        check_socket(&path, port)?;
        Ok(path)
    }

    /// Removes what drills that no longer run left behind, stopping their servers first. Says
    /// what it removed, and what it could not (with the fix).
    pub(crate) fn sweep(&self) -> Sweep {
        let mut sweep = Sweep::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return sweep;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
            if !is_dir || !entry.file_name().to_str().is_some_and(is_drill_name) {
                continue;
            }
            match sweep_one(&path) {
                Some(Ok(removed)) => sweep.removed.push(removed),
                Some(Err(problem)) => sweep.problems.push(problem),
                None => {}
            }
        }
        sweep
    }
}

/// What a sweep of the scratch directory did.
#[derive(Debug, Default)]
pub(crate) struct Sweep {
    /// The directories removed, and whose they were.
    pub(crate) removed: Vec<String>,
    /// The directories that could not be cleaned up, each with its fix.
    pub(crate) problems: Vec<String>,
}

/// The fix of a drill directory `path` a sweep could not clean up.
fn clean_up_fix(path: &Path) -> String {
    format!(
        "fix: stop its server by hand with `pg_ctl -D {} stop -m immediate` (as the server's OS user), then remove {}",
        data_dir(path).display(),
        path.display()
    )
}

/// Removes the drill directory `path` if its drill no longer runs: what it removed, or why it
/// could not (with the fix); `None` when it leaves the directory alone.
fn sweep_one(path: &Path) -> Option<Result<String, String>> {
    let record: Option<OwnerRecord> = std::fs::read(path.join(OWNER))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok());
    let (who, pg_ctl) = match &record {
        Some(r) if owner_alive(r) => return None,
        Some(r) => (
            format!(
                "the drill of backup {} (pid {}, started {}), which no longer runs",
                r.backup,
                r.pid,
                r.started_at.format("%Y-%m-%d %H:%M:%S UTC")
            ),
            Some(r.pg_ctl.clone()),
        ),
        None => {
            let age = std::fs::metadata(path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok());
            if age.is_none_or(|age| age < UNOWNED_GRACE) {
                return None;
            }
            ("a drill killed while it was starting".to_string(), None)
        }
    };
    let data = data_dir(path);
    let fix = clean_up_fix(path);
    let stopped = match pg_ctl {
        Some(pg_ctl) => match stop_server(&data, &pg_ctl) {
            Ok(stopped) => stopped,
            Err(e) => {
                return Some(Err(format!(
                    "cannot clean up {}, left by {who}: {e}\n  {fix}",
                    path.display()
                )));
            }
        },
        None if running_server(&data).is_some() => {
            return Some(Err(format!(
                "cannot clean up {}: a server still runs in it and its owner record (which names the pg_ctl to stop it with) is unreadable\n  {fix}",
                path.display()
            )));
        }
        None => None,
    };
    let stopped = stopped.map_or(String::new(), |pid| {
        format!(", after stopping its server (pid {pid})")
    });
    Some(match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(format!(
            "removed {}, left by {who}{stopped}",
            path.display()
        )),
        Err(e) => Err(format!(
            "cannot remove {}, left by {who}{stopped}: {e}\n  fix: remove it by hand (as root or its owner)",
            path.display()
        )),
    })
}

/// Characters a scratch directory's path may not hold: `,` splits `unix_socket_directories`,
/// `"` ends its quoting, and pg_ctl passes the data directory to a shell in double quotes, where
/// `"`, `$`, `` ` `` and `\\` mean something. Control characters (a newline) are refused too.
const REFUSED_CHARS: &[char] = &[',', '"', '$', '`', '\\'];

/// Refuses scratch directory `dir` when a drill's socket path under it would be too long (with a
/// port of five digits), or when it holds a character of [`REFUSED_CHARS`] or a control character.
fn check_dir(dir: &Path) -> Result<(), Error> {
    let text = dir.to_string_lossy();
    if let Some(ch) = text
        .chars()
        .find(|c| REFUSED_CHARS.contains(c) || c.is_control())
    {
        return Err(DrillError::ScratchDirCharacter {
            dir: dir.to_path_buf(),
            ch,
        }
        .into());
    }
    let root = ScratchRoot {
        dir: dir.to_path_buf(),
    };
    check_socket(&root.drill_path(), u16::MAX)
}

/// Refuses drill directory `path` when its server's socket on `port` would have a path longer
/// than a Unix socket's may be.
fn check_socket(path: &Path, port: u16) -> Result<(), Error> {
    let socket = socket_dir(path).join(format!(".s.PGSQL.{port}"));
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(DrillError::SocketPathTooLong { path: socket, len }.into());
    }
    Ok(())
}

/// The data directory inside drill directory `path`.
pub(crate) fn data_dir(path: &Path) -> PathBuf {
    path.join("data")
}

/// The socket directory inside drill directory `path`.
fn socket_dir(path: &Path) -> PathBuf {
    path.join("socket")
}

/// One drill's directory: stopped and removed by [`DrillDir::remove`], or when dropped.
#[derive(Debug)]
pub(crate) struct DrillDir {
    path: PathBuf,
    pg_ctl: PathBuf,
    removed: bool,
}

impl DrillDir {
    /// Creates drill directory `path` (mode 0700) with its owner record and an empty socket
    /// directory; both directories belong to `server_user` (uid, gid) when given, so that a server
    /// running as that user can use them. `pg_ctl` is what stops its server.
    pub(crate) fn create(
        path: &Path,
        backup: &str,
        pg_ctl: &Path,
        server_user: Option<(u32, u32)>,
    ) -> Result<DrillDir, Error> {
        use std::os::unix::fs::DirBuilderExt as _;
        let cannot = |what, dir: &Path| {
            let dir = dir.to_path_buf();
            move |source| DrillError::Scratch { what, dir, source }
        };
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(cannot("cannot create the drill directory", path))?;
        let dir = DrillDir {
            path: path.to_path_buf(),
            pg_ctl: pg_ctl.to_path_buf(),
            removed: false,
        };
        let record = OwnerRecord {
            pid: std::process::id(),
            process_start: process_start(std::process::id()).unwrap_or_default(),
            started_at: Utc::now(),
            backup: backup.to_string(),
            pg_ctl: pg_ctl.to_path_buf(),
        };
        let json = serde_json::to_vec_pretty(&record).map_err(|e| Error::encode(OWNER, e))?;
        std::fs::write(path.join(OWNER), json)
            .map_err(cannot("cannot write the owner record in", path))?;
        let socket = dir.socket();
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&socket)
            .map_err(cannot("cannot create the socket directory", &socket))?;
        if let Some((uid, gid)) = server_user {
            for owned in [path, socket.as_path()] {
                std::os::unix::fs::chown(owned, Some(uid), Some(gid))
                    .map_err(cannot("cannot hand to the server's user", owned))?;
            }
        }
        Ok(dir)
    }

    /// The drill directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The throwaway cluster's data directory (not created here).
    pub(crate) fn data(&self) -> PathBuf {
        data_dir(&self.path)
    }

    /// The throwaway server's socket directory, its only way in.
    pub(crate) fn socket(&self) -> PathBuf {
        socket_dir(&self.path)
    }

    /// Stops the server if one runs in it, then removes the directory. A server that cannot be
    /// stopped keeps its directory (the next drill tries again).
    pub(crate) fn remove(&mut self) -> Result<(), String> {
        self.removed = true;
        stop_server(&self.data(), &self.pg_ctl)?;
        std::fs::remove_dir_all(&self.path)
            .map_err(|e| format!("cannot remove {}: {e}", self.path.display()))
    }
}

impl Drop for DrillDir {
    fn drop(&mut self) {
        if !self.removed
            && let Err(e) = self.remove()
        {
            tracing::warn!("drill directory: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drill_names_and_process_start_times() {
        assert!(is_drill_name("20261125T150430Z-1a2b3c4d"));
        for other in [
            "20261125T150430Z",
            "lost+found",
            "20261125T150430Z-1a2b3c4g",
            "x",
        ] {
            assert!(!is_drill_name(other), "{other}");
        }
        let own = process_start(std::process::id()).unwrap();
        assert!(own > 0);
        assert_eq!(process_start(u32::MAX), None);
    }

    #[test]
    fn a_dead_drills_directory_is_swept_and_a_live_ones_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let scratch = ScratchRoot::open(&root.path().join("scratch")).unwrap();
        let live_path = scratch.new_path(5432).unwrap();
        let live = DrillDir::create(&live_path, "b1", Path::new("/bin/false"), None).unwrap();
        // A drill that died: its owner record names a process that is gone.
        let dead = scratch.dir().join("20200101T000000Z-00000001");
        std::fs::create_dir_all(dead.join("data")).unwrap();
        let record = OwnerRecord {
            pid: u32::MAX,
            process_start: 1,
            started_at: Utc::now(),
            backup: "b0".into(),
            pg_ctl: "/bin/false".into(),
        };
        std::fs::write(dead.join(OWNER), serde_json::to_vec(&record).unwrap()).unwrap();
        // One killed while it was being made, young: kept for now.
        let young = scratch.dir().join("20200101T000000Z-00000002");
        std::fs::create_dir(&young).unwrap();
        // Not a drill's at all: never touched.
        let other = scratch.dir().join("keep-me");
        std::fs::create_dir(&other).unwrap();
        let swept = scratch.sweep();
        assert!(swept.problems.is_empty(), "{swept:?}");
        let notes = swept.removed;
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("backup b0") && notes[0].contains("no longer runs"),
            "{notes:?}"
        );
        assert!(!dead.exists());
        assert!(young.exists() && other.exists() && live.path().exists());
        drop(live);
        assert!(
            !live_path.exists(),
            "dropped, the drill directory is removed"
        );
    }

    #[test]
    fn a_directory_whose_server_cannot_be_stopped_is_a_problem_with_its_fix() {
        let root = tempfile::tempdir().unwrap();
        let scratch = ScratchRoot::open(&root.path().join("scratch")).unwrap();
        // A drill killed while it was starting, long ago: its owner record is garbage, and a
        // "server" (a process whose working directory is the data directory) still runs.
        let dead = scratch.dir().join("20200101T000000Z-00000003");
        let data = data_dir(&dead);
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(dead.join(OWNER), b"garbage").unwrap();
        let mut server = std::process::Command::new("sleep")
            .arg("60")
            .current_dir(&data)
            .spawn()
            .unwrap();
        std::fs::write(data.join("postmaster.pid"), format!("{}\n", server.id())).unwrap();
        let old = std::time::SystemTime::now() - 2 * UNOWNED_GRACE;
        std::fs::File::open(&dead)
            .unwrap()
            .set_modified(old)
            .unwrap();
        let swept = scratch.sweep();
        server.kill().unwrap();
        server.wait().unwrap();
        assert!(swept.removed.is_empty(), "{swept:?}");
        assert_eq!(swept.problems.len(), 1, "{swept:?}");
        let problem = &swept.problems[0];
        assert!(problem.contains(&dead.display().to_string()), "{problem}");
        assert!(
            problem.contains(&format!("`pg_ctl -D {} stop -m immediate`", data.display())),
            "{problem}"
        );
        assert!(dead.exists(), "a directory whose server runs is kept");
    }

    #[test]
    fn a_socket_path_too_long_is_refused() {
        let long = PathBuf::from(format!("/tmp/{}", "d".repeat(90)));
        let scratch = ScratchRoot { dir: long };
        let e = scratch.new_path(54321).unwrap_err().to_string();
        assert!(e.contains("more than the 107"), "{e}");
        assert!(e.contains("`[drill] scratch-dir`"), "{e}");
        // Refused up front, before the directory is created.
        let root = tempfile::tempdir().unwrap();
        let long = root.path().join("d".repeat(100));
        let e = ScratchRoot::open(&long).unwrap_err().to_string();
        assert!(e.contains("more than the 107"), "{e}");
        assert!(!long.exists());
    }

    #[test]
    fn a_scratch_dir_with_a_character_the_server_cannot_carry_is_refused_before_it_is_made() {
        let root = tempfile::tempdir().unwrap();
        for (name, shown) in [
            ("a,b", "`,`"),
            ("a\"b", "`\"`"),
            ("a\nb", "`\\n`"),
            ("a$b", "`$`"),
        ] {
            let dir = root.path().join(name);
            let e = ScratchRoot::open(&dir).unwrap_err().to_string();
            assert!(
                e.contains(&format!("the character {shown},")),
                "{name:?}: {e}"
            );
            assert!(e.contains("`[drill] scratch-dir`"), "{e}");
            assert!(!dir.exists(), "{name:?} was created");
        }
        let fine = root.path().join("with space's");
        ScratchRoot::open(&fine).unwrap();
        assert!(fine.is_dir());
    }
}
