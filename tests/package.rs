//! The Debian package: `bin/package` builds the .deb with cargo-deb, dpkg installs it on this
//! machine, and the installed files are used the way an operator uses them (`pgkeep --version`,
//! `man pgkeep`, the completions, the unit, the configuration); removal keeps the operator's
//! configuration, and purge never deletes backups. The machine is left as it was found.
//!
//! Needs root, dpkg and cargo-deb: under CI=true a missing one fails the test, elsewhere it skips.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const STATE_DIR: &str = "/var/lib/pgkeep";
const CONFIG: &str = "/etc/pgkeep/pgkeep.toml";
const UNIT: &str = "/usr/lib/systemd/system/pgkeep-scheduler.service";

/// Runs a command to its end with no input; panics naming it and both streams when it fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .env("MANWIDTH", "100")
        .env_remove("MANPAGER")
        .env_remove("PAGER")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn installed() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", "pgkeep"])
        .output()
        .is_ok_and(|out| {
            stdout(&out).contains("installed") && !stdout(&out).contains("not-installed")
        })
}

/// What is missing to run this test, if anything: root, dpkg, cargo-deb, or a machine without
/// pgkeep installed already (the test would replace it).
fn missing() -> Option<String> {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| stdout(&out));
    if uid.map_or(true, |uid| uid.trim() != "0") {
        return Some("root (dpkg -i)".into());
    }
    if Command::new("dpkg").arg("--version").output().is_err() {
        return Some("dpkg".into());
    }
    let deb = Command::new("cargo").args(["deb", "--version"]).output();
    if !deb.is_ok_and(|out| out.status.success()) {
        return Some("cargo-deb (cargo install cargo-deb --locked)".into());
    }
    if installed() || Path::new("/usr/bin/pgkeep").exists() {
        return Some(
            "a machine without pgkeep installed (this test installs and purges it)".into(),
        );
    }
    None
}

/// Purges the package and removes the state directory the test made, however the test ends.
struct Uninstall {
    state_dir_existed: bool,
}

impl Drop for Uninstall {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", "pgkeep"]).output();
        if !self.state_dir_existed {
            let _ = std::fs::remove_dir_all(STATE_DIR);
        }
    }
}

/// `bin/package --no-build` on the binary cargo built for the tests; the .deb's path.
fn build_package() -> String {
    let root = env!("CARGO_MANIFEST_DIR").to_string() + "/../..";
    let out = run(&format!("{root}/bin/package"), &["--no-build"]);
    let text = stdout(&out);
    let deb = text
        .trim()
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    assert!(
        deb.ends_with(".deb") && Path::new(&deb).is_file(),
        "no .deb named in: {text}"
    );
    deb
}

/// The files an operator looks for, and nothing hidden documented.
fn check_installed_files() {
    let version = stdout(&run("/usr/bin/pgkeep", &["--version"]));
    assert_eq!(
        version.trim(),
        format!("pgkeep {}", env!("CARGO_PKG_VERSION"))
    );

    let page = stdout(&run("man", &["-P", "cat", "pgkeep"]));
    for text in [
        "PostgreSQL backup, restore and failover",
        "wal-push",
        "--config",
        "PGKEEP_CONFIG",
    ] {
        assert!(page.contains(text), "man pgkeep lacks {text:?}:\n{page}");
    }
    let page = stdout(&run("man", &["-P", "cat", "pgkeep-backup-logical"]));
    assert!(
        page.contains("--exclude-table"),
        "man pgkeep-backup-logical:\n{page}"
    );

    let files = stdout(&run("dpkg", &["-L", "pgkeep"]));
    for path in [
        "/usr/bin/pgkeep",
        UNIT,
        "/etc/cron.d/pgkeep",
        CONFIG,
        "/usr/share/man/man1/pgkeep.1.gz",
        "/usr/share/man/man1/pgkeep-schedule-run.1.gz",
        "/usr/share/bash-completion/completions/pgkeep",
        "/usr/share/zsh/vendor-completions/_pgkeep",
        "/usr/share/fish/vendor_completions.d/pgkeep.fish",
        "/usr/share/doc/pgkeep/README.Debian",
        "/usr/share/doc/pgkeep/scheduling.md",
    ] {
        assert!(
            files.lines().any(|line| line == path),
            "{path} not in the package:\n{files}"
        );
    }
    assert!(
        !files.contains("pgkeep-manual"),
        "the hidden packaging command has a man page"
    );
    let conffiles = stdout(&run("dpkg-query", &["-W", "-f=${Conffiles}", "pgkeep"]));
    assert!(
        conffiles.contains(CONFIG) && conffiles.contains("/etc/cron.d/pgkeep"),
        "{conffiles}"
    );

    // Installing schedules nothing: the unit is not enabled and every cron line is a comment.
    let cron = std::fs::read_to_string("/etc/cron.d/pgkeep").unwrap();
    let active: Vec<_> = cron
        .lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .filter(|line| !line.starts_with("SHELL=") && !line.starts_with("PATH="))
        .collect();
    assert!(
        active.is_empty(),
        "cron lines active after install: {active:?}"
    );
    assert!(
        !Path::new("/etc/systemd/system/multi-user.target.wants/pgkeep-scheduler.service").exists()
    );
    run("systemd-analyze", &["verify", UNIT]);
    run(
        "bash",
        &[
            "-c",
            ". /usr/share/bash-completion/completions/pgkeep && complete -p pgkeep",
        ],
    );

    // The shipped configuration is the one pgkeep finds without --config, and its jobs parse.
    let jobs = stdout(&run("/usr/bin/pgkeep", &["schedule", "list"]));
    assert!(
        jobs.contains("nightly-dump") && jobs.contains("weekly-base"),
        "{jobs}"
    );
}

/// Root looking (`status`, `schedule list`) leaves nothing in the state directory, and a lock
/// file root left there does not stop the postgres user from recording a run.
fn check_state_dir_shared_with_root() {
    let _ = Command::new("/usr/bin/pgkeep").arg("status").output();
    let left: Vec<_> = std::fs::read_dir(STATE_DIR)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "reading as root left {left:?}");
    std::fs::write(format!("{STATE_DIR}/scheduler.lock"), "").unwrap();
    // The job fails (the example's repository holds no WAL), and the failure is recorded.
    let once = Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "/usr/bin/pgkeep",
            "-q",
            "schedule",
            "once",
            "verify-wal",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&once.stderr);
    assert!(!said.contains("cannot lock"), "{said}");
    let state = std::fs::metadata(format!("{STATE_DIR}/scheduler.json")).expect("run recorded");
    assert_eq!(
        state.uid().to_string(),
        stdout(&run("id", &["-u", "postgres"])).trim()
    );
}

#[test]
fn the_deb_installs_runs_documents_and_is_removed_without_deleting_backups() {
    if let Some(what) = missing() {
        assert!(
            !pgkeep_testkit::is_ci(),
            "the package test needs {what}, and CI=true"
        );
        eprintln!("SKIPPED: the package test needs {what}");
        return;
    }
    let deb = build_package();
    let state_dir_existed = Path::new(STATE_DIR).exists();
    let _uninstall = Uninstall { state_dir_existed };
    run("dpkg", &["-i", &deb]);
    check_installed_files();
    if !state_dir_existed {
        let meta = std::fs::metadata(STATE_DIR).expect("postinst creates the state directory");
        let postgres = stdout(&run("id", &["-u", "postgres"]));
        assert_eq!(
            meta.uid().to_string(),
            postgres.trim(),
            "{STATE_DIR} owned by postgres"
        );
        assert_eq!(meta.mode() & 0o7777, 0o750);
        check_state_dir_shared_with_root();
    }

    // A backup in the example's repository, and an edited configuration.
    std::fs::create_dir_all(format!("{STATE_DIR}/repo")).unwrap();
    std::fs::write(format!("{STATE_DIR}/repo/a-backup"), "kept").unwrap();
    let edited = std::fs::read_to_string(CONFIG).unwrap() + "\n# edited by the operator\n";
    std::fs::write(CONFIG, &edited).unwrap();

    // Remove: the program goes, the configuration stays; reinstalling keeps the edit.
    run("dpkg", &["-r", "pgkeep"]);
    assert!(!Path::new("/usr/bin/pgkeep").exists());
    assert_eq!(std::fs::read_to_string(CONFIG).unwrap(), edited);
    run("dpkg", &["-i", &deb]);
    assert_eq!(
        std::fs::read_to_string(CONFIG).unwrap(),
        edited,
        "reinstall replaced the edit"
    );

    // Purge: the configuration goes, the backups stay.
    let purge = run("dpkg", &["--purge", "pgkeep"]);
    assert!(!Path::new(CONFIG).exists() && !Path::new("/etc/cron.d/pgkeep").exists());
    assert_eq!(
        std::fs::read_to_string(format!("{STATE_DIR}/repo/a-backup")).unwrap(),
        "kept"
    );
    let said = String::from_utf8_lossy(&purge.stderr);
    assert!(
        said.contains("/var/lib/pgkeep is not empty"),
        "purge said: {said}"
    );
    assert!(!installed());
}
