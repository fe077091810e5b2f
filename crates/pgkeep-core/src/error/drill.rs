//! Refusals of restore drills: a drill that cannot start (no backup to drill, too little room in
//! the scratch directory, no window to pick a random time from) changes nothing and records
//! nothing. A drill that starts and fails is no error: its report and record say why
//! (`DrillOutcome::Failed`).

use std::path::PathBuf;

const SCRATCH_FIX: &str = "set `[drill] scratch-dir` in the configuration file to a directory on a local filesystem that pgkeep (and, as root, the server's user) can write";

/// A drill cannot start; nothing was restored or recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillError {
    /// The repository holds no backup to drill.
    #[error(
        "{repo} holds no backup of cluster {cluster} to drill\n  fix: take one with `pgkeep backup logical --all` or `pgkeep backup physical`, or check --repo and --cluster"
    )]
    NothingToDrill {
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// `--all-kinds`, but one kind has no backup.
    #[error(
        "--all-kinds: {repo} holds no {kind} backup of cluster {cluster}, so both kinds cannot be drilled; nothing was drilled\n  fix: take one (`pgkeep backup {kind}`), or drop --all-kinds to drill the kinds there are"
    )]
    KindMissing {
        /// The kind without a backup: `logical` or `physical`.
        kind: &'static str,
        /// The repository.
        repo: String,
        /// The cluster name.
        cluster: String,
    },

    /// The scratch filesystem lacks the room the restore needs.
    #[error(
        "the drill of backup {backup} needs about {} in the scratch directory {} ({} of restored data, {} of WAL to replay, {} of margin), but its filesystem has only {} free; nothing was restored\n  fix: free space there, or set `[drill] scratch-dir` in the configuration file to a filesystem with at least {} free",
        human_bytes(*need),
        dir.display(),
        human_bytes(*size),
        human_bytes(*wal),
        human_bytes(*margin),
        human_bytes(*available),
        human_bytes(*need)
    )]
    NoSpace {
        /// The backup.
        backup: String,
        /// The scratch directory (`[drill] scratch-dir`).
        dir: PathBuf,
        /// Bytes needed in all.
        need: u64,
        /// The data the restore writes: a physical backup's original size; for a logical one its
        /// databases' sizes on disk when it was taken (indexes included), or, for a backup that
        /// did not record them, four times its dumps' size.
        size: u64,
        /// The WAL recovery replays.
        wal: u64,
        /// The margin added.
        margin: u64,
        /// Bytes free for this user.
        available: u64,
    },

    /// The scratch directory cannot be made or used.
    #[error("{what} {}: {source}\n  fix: {SCRATCH_FIX}", dir.display())]
    Scratch {
        /// What failed (`cannot create the scratch directory`, ...).
        what: &'static str,
        /// The directory.
        dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },

    /// The server's socket path under the scratch directory would be longer than a Unix socket
    /// path may be.
    #[error(
        "the drill's socket path {} would be {len} bytes long, more than the 107 a Unix socket path may have; nothing was restored\n  fix: set `[drill] scratch-dir` in the configuration file to a shorter path, e.g. /var/tmp/pgkeep-drill",
        path.display()
    )]
    SocketPathTooLong {
        /// The socket's path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },

    /// The scratch directory's path holds a character the throwaway server's settings or pg_ctl
    /// cannot carry (`,` would split `unix_socket_directories`).
    #[error(
        "the scratch directory {} holds the character {}, which the drill's server settings (unix_socket_directories) or pg_ctl cannot carry; nothing was created or restored\n  fix: set `[drill] scratch-dir` in the configuration file to a path without `,` `\"` `$` `` ` `` `\\` or control characters, e.g. /var/tmp/pgkeep-drill",
        dir.display(),
        shown_char(*ch)
    )]
    ScratchDirCharacter {
        /// The scratch directory (`[drill] scratch-dir`).
        dir: PathBuf,
        /// The first character refused.
        ch: char,
    },

    /// pgkeep runs as root, and the OS user the throwaway server would run as does not exist.
    #[error(
        "pgkeep runs as root, which PostgreSQL refuses to run as, and this host has no `{user}` user for the drill's server; nothing was restored\n  fix: run `pgkeep drill` as the PostgreSQL server's OS user, or create the `{user}` user (the PostgreSQL server package does)"
    )]
    NoServerUser {
        /// The user looked for.
        user: String,
    },

    /// `--target random` with no window of commit times the backup can reach.
    #[error(
        "--target random: backup {backup} cannot be recovered to a random time: {why}; nothing was restored\n  fix: {fix}"
    )]
    NoRandomTime {
        /// The backup.
        backup: String,
        /// Why not.
        why: String,
        /// What to do.
        fix: &'static str,
    },
}

/// A character for people, between backticks, escaped when it is a control character: `` `,` ``,
/// `` `\n` ``.
fn shown_char(ch: char) -> String {
    match ch.is_control() {
        true => format!("`{}`", ch.escape_default()),
        false => format!("`{ch}`"),
    }
}

/// `n` bytes for people, with the exact number: `1.5 GiB (1610612736 bytes)`.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {} ({n} bytes)", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_space_refusal_names_both_numbers_and_the_setting() {
        let e = DrillError::NoSpace {
            backup: "20261125T150430Z".into(),
            dir: "/tmp/pgkeep-drill".into(),
            need: 1 << 50,
            size: (1 << 50) - (80 << 20),
            wal: 16 << 20,
            margin: 64 << 20,
            available: 3 << 30,
        }
        .to_string();
        assert!(e.contains("1.0 PiB (1125899906842624 bytes)"), "{e}");
        assert!(e.contains("only 3.0 GiB (3221225472 bytes) free"), "{e}");
        assert!(e.contains("`[drill] scratch-dir`"), "{e}");
        assert_eq!(human_bytes(1023), "1023 bytes");
        let missing = DrillError::KindMissing {
            kind: "physical",
            repo: "file:///r".into(),
            cluster: "main".into(),
        }
        .to_string();
        assert!(missing.contains("`pgkeep backup physical`"), "{missing}");
    }
}
