//! Storage failures under a local repository, end to end with the built binary and a real
//! cluster: a really full filesystem (a 3 MiB tmpfs mounted for the test) and directories the
//! pgkeep user may not write into (mode 0555, pgkeep running as the servers' OS user, for whom
//! permission bits are enforced). Backups (logical and physical), wal-push and check must name the
//! storage's own error, the path and the right fix, and leave nothing of their own behind.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use pgkeep_testkit::PgCluster;

const PGKEEP: &str = env!("CARGO_BIN_EXE_pgkeep");

/// A tmpfs of a few MiB, unmounted when dropped.
struct SmallFs {
    path: PathBuf,
}

impl SmallFs {
    fn mount(path: PathBuf) -> SmallFs {
        fs::create_dir_all(&path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=3m,mode=0700", "tmpfs"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs (it needs root): {}",
            common::stderr(&out)
        );
        PgCluster::chown_for_server(&path);
        SmallFs { path }
    }

    /// Writes a filler file until the filesystem is full.
    fn fill(&self) {
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", self.path.join("filler").display()))
            .arg("bs=4k")
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A cluster that refuses nothing a physical backup checks (archive_mode on; its WAL goes
/// nowhere, the backups here fail long before they wait for it).
fn cluster() -> PgCluster {
    let pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", "/bin/true")
        .start();
    pg.psql("CREATE DATABASE big");
    pg.psql_db(
        "big",
        "CREATE TABLE t AS SELECT g, md5(g::text) || md5((g * 3)::text) AS payload
           FROM generate_series(1, 300000) g",
    );
    pg
}

/// `pgkeep --repo file://<root>` against `pg`, as the servers' OS user.
fn pgkeep(pg: &PgCluster, root: &Path, home: &Path) -> Command {
    let mut cmd = Command::new(PGKEEP);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .env("HOME", home)
        .arg("--repo")
        .arg(format!("file://{}", root.display()))
        .stdin(Stdio::null());
    PgCluster::as_server(&mut cmd);
    cmd
}

/// Runs `cmd`; returns its exit code and stdout and stderr together.
fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out: Output = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        common::stderr(&out)
    );
    (out.status.code(), text)
}

/// A complete WAL segment of `pg` (the one a switch just ended: a recycled segment ahead of the
/// current one still has its old header, which wal-push refuses), copied out of its pg_wal into
/// `dir`.
fn a_segment(pg: &PgCluster, dir: &Path) -> PathBuf {
    let name = pg.psql("SELECT pg_walfile_name(pg_switch_wal())");
    let segment = pg.data_dir().join("pg_wal").join(name);
    let copy = dir.join(segment.file_name().unwrap());
    fs::copy(&segment, &copy).unwrap();
    PgCluster::chown_for_server(&copy);
    copy
}

/// Every file and directory under `dir`.
fn contents(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(contents(&path));
            }
            out.push(path);
        }
    }
    out
}

/// The message names the cause, the place and a fix, never the symptom or a made-up command.
fn assert_names(text: &str, cause: &str, path: &Path, fix: &str) {
    assert!(text.contains(cause), "no `{cause}`: {text}");
    assert!(
        text.contains(&path.display().to_string()),
        "no path {}: {text}",
        path.display()
    );
    assert!(text.contains(fix), "no fix `{fix}`: {text}");
    assert!(!text.contains("consumer stopped"), "{text}");
    assert!(!text.contains("compressing failed"), "{text}");
    assert!(!text.contains("pgkeep expire"), "{text}");
}

#[test]
fn a_full_filesystem_is_named_with_the_path_and_the_fix() {
    let pg = cluster();
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    let small = SmallFs::mount(home.path().join("small"));
    let root = small.path.join("repo");
    let backups = root.join("main/backups");
    let full = "No space left on device";
    let fix = "free space on the filesystem holding the repository";

    for kind in ["logical", "physical"] {
        let mut cmd = pgkeep(&pg, &root, home.path());
        cmd.args(["backup", kind]);
        if kind == "logical" {
            cmd.args(["--db", "big"]);
        }
        let (code, text) = run(&mut cmd);
        assert_eq!(code, Some(1), "{kind}: {text}");
        assert_names(&text, full, &backups, fix);
        assert!(text.contains("cleanup: "), "{kind}: {text}");
        assert_eq!(contents(&backups), Vec::<PathBuf>::new(), "{kind}");
    }

    small.fill();
    let segment = a_segment(&pg, home.path());
    let (code, text) = run(pgkeep(&pg, &root, home.path())
        .arg("wal-push")
        .arg(&segment));
    assert_eq!(code, Some(1), "{text}");
    assert_names(&text, full, &root.join("main/wal"), fix);
    let wal: Vec<_> = contents(&root.join("main/wal"))
        .into_iter()
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(wal, Vec::<PathBuf>::new(), "nothing of the push is left");

    let (code, text) = run(pgkeep(&pg, &root, home.path()).arg("check"));
    assert_eq!(code, Some(3), "{text}");
    assert_names(&text, full, &root.join("main"), fix);
    let left: Vec<_> = contents(&root)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".check-"))
        .collect();
    assert_eq!(left, Vec::<PathBuf>::new(), "check's probes are removed");
}

#[test]
fn unwritable_directories_are_named_and_check_fails() {
    let pg = cluster();
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    let root = home.path().join("repo");
    // A repository that worked, whose backups/ and wal/ directories pgkeep's user can no longer
    // write into (the cluster directory itself still can: check must look further).
    let (code, text) = run(pgkeep(&pg, &root, home.path()).arg("check"));
    assert_eq!(code, Some(0), "{text}");
    let backups = root.join("main/backups");
    let wal = root.join("main/wal");
    for dir in [&backups, &wal] {
        fs::create_dir_all(dir).unwrap();
        PgCluster::chown_for_server(dir);
        fs::set_permissions(dir, fs::Permissions::from_mode(0o555)).unwrap();
    }
    let denied = "Permission denied";
    let fix = "run pgkeep as the user that owns the repository directory, or fix its permissions";

    let out = pgkeep(&pg, &root, home.path())
        .args(["--json", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", common::stderr(&out));
    let report = common::json(&out);
    assert_eq!(report["repository"]["writable"], false, "{report}");
    let problems = report["problems"].to_string();
    assert_names(&problems, denied, &backups, fix);
    assert_names(&problems, denied, &wal, fix);

    for kind in ["logical", "physical"] {
        let mut cmd = pgkeep(&pg, &root, home.path());
        cmd.args(["backup", kind]);
        if kind == "logical" {
            cmd.args(["--db", "big"]);
        }
        let (code, text) = run(&mut cmd);
        assert_eq!(code, Some(1), "{kind}: {text}");
        assert_names(&text, denied, &backups, fix);
    }
    assert_eq!(contents(&backups), Vec::<PathBuf>::new());

    let segment = a_segment(&pg, home.path());
    let (code, text) = run(pgkeep(&pg, &root, home.path())
        .arg("wal-push")
        .arg(&segment));
    assert_eq!(code, Some(1), "{text}");
    assert_names(&text, denied, &wal, fix);
    assert_eq!(contents(&wal), Vec::<PathBuf>::new());
}

#[test]
fn a_physical_restore_that_fails_leaves_the_target_as_it_found_it() {
    let home = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(home.path());
    let root = home.path().join("repo");
    let pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting(
            "archive_command",
            format!(
                "{} --repo {} wal-push %p",
                pgkeep_core::shell_quote(PGKEEP),
                pgkeep_core::shell_quote(&format!("file://{}", root.display()))
            ),
        )
        .start();
    let (code, text) = run(pgkeep(&pg, &root, home.path()).args(["backup", "physical"]));
    assert_eq!(code, Some(0), "{text}");
    let small = SmallFs::mount(home.path().join("small"));
    let full = "No space left on device";

    // A directory the restore creates is removed again; tar's complaint is not repeated per file.
    let target = small.path.join("pg");
    let (code, text) = run(pgkeep(&pg, &root, home.path())
        .args(["restore", "--immediate", "--pgdata"])
        .arg(&target));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains(full), "{text}");
    assert!(
        text.contains("more lines)") || text.lines().count() < 20,
        "{text}"
    );
    assert!(text.contains("was removed again"), "{text}");
    assert!(!target.exists(), "{text}");
    // An empty directory that existed (here the mount point itself) is emptied again.
    let (code, text) = run(pgkeep(&pg, &root, home.path())
        .args(["restore", "--immediate", "--pgdata"])
        .arg(&small.path));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("was emptied again"), "{text}");
    assert_eq!(contents(&small.path), Vec::<PathBuf>::new(), "{text}");

    // A directory pg_ctl's shell would mangle is refused for --start before anything is written.
    let odd = home.path().join("price $HOME");
    let (code, text) = run(pgkeep(&pg, &root, home.path())
        .args(["restore", "--immediate", "--start", "--pgdata"])
        .arg(&odd));
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("pg_ctl starts the server through /bin/sh"),
        "{text}"
    );
    assert!(!odd.exists(), "{text}");
}
