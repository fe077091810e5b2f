//! End-to-end tests of the built `pgkeep` binary against real PostgreSQL clusters and a real Garage
//! S3 server: `check`, configuration and flag errors, libpq connection conventions.

mod common;

use common::{json, stderr};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use pgkeep_testkit::{Garage, PgCluster};
use serde_json::Value;

/// A `pgkeep` command with a clean environment: no PG* or AWS* variables leak in from the caller.
fn pgkeep(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pgkeep"));
    cmd.current_dir(dir);
    for (key, _) in std::env::vars() {
        if key.starts_with("PG") || key.starts_with("AWS_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HOME", dir);
    cmd
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pgkeep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn problems(report: &Value) -> Vec<(String, String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["severity"].as_str().unwrap().to_string(),
                p["item"].as_str().unwrap().to_string(),
                p["fix"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn check_json_reports_server_settings_tools_and_repository() {
    let pg = PgCluster::builder().setting("wal_level", "replica").start();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let config = write_config(
        dir.path(),
        &format!(
            "[repository]\nurl = \"file://{}\"\ncluster = \"prod\"\n\n[postgres]\nconninfo = \"{}\"\n",
            repo.display(),
            pg.conninfo()
        ),
    );
    let out = pgkeep(dir.path())
        .args(["--config", config.to_str().unwrap(), "--json", "check"])
        .output()
        .unwrap();
    let report = json(&out);
    // archive_mode is off but WAL archiving is not configured: a warning, not a failure.
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", stderr(&out));
    assert_eq!(report["ok"], true);
    assert_eq!(report["connection"]["connected"], true);
    assert_eq!(report["connection"]["password_source"]["kind"], "none");

    let server = &report["server"];
    assert_eq!(
        server["system_identifier"].as_str().unwrap(),
        pg.psql("select system_identifier from pg_control_system()")
    );
    assert_eq!(
        server["version_num"].as_u64().unwrap().to_string(),
        pg.psql("show server_version_num")
    );
    assert_eq!(server["major"].as_u64().unwrap(), u64::from(pg.major()));
    assert_eq!(server["wal_level"], "replica");
    assert_eq!(server["archive_mode"], "off");
    assert!(server["archive_command"].is_string());
    assert_eq!(server["in_recovery"], false);

    let data_dir = &report["data_directory"];
    assert_eq!(
        Path::new(data_dir["path"].as_str().unwrap()),
        pg.data_dir().canonicalize().unwrap()
    );
    assert_eq!(data_dir["present_here"], true);
    assert_eq!(data_dir["mode"], "0700");

    let tools = report["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["pg_dump", "pg_dumpall", "pg_restore", "pg_basebackup"]
    );
    for tool in tools {
        assert_eq!(tool["fits"], true, "{tool}");
        assert_eq!(tool["major"].as_u64().unwrap(), u64::from(pg.major()));
        assert!(Path::new(tool["path"].as_str().unwrap()).is_file());
    }

    let repository = &report["repository"];
    assert_eq!(
        repository["url"].as_str().unwrap(),
        format!("file://{}", repo.display())
    );
    assert_eq!(repository["cluster"], "prod");
    assert_eq!(repository["reachable"], true);
    assert_eq!(repository["writable"], true);
    assert!(repository["identity"].is_null());
    // The probe object is gone again.
    let leftovers: Vec<_> = walk(&repo);
    assert!(leftovers.is_empty(), "{leftovers:?}");

    let warnings = problems(&report);
    assert!(
        warnings.iter().any(|(sev, item, fix)| sev == "warning"
            && item == "archive_mode"
            && fix.contains("archive_command = 'pgkeep wal-push %p'")),
        "{warnings:?}"
    );

    // The same in human form.
    let out = pgkeep(dir.path())
        .args(["--config", config.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let text = stdout(&out);
    assert!(text.contains("check: OK"), "{text}");
    assert!(text.contains("wal_level        replica"), "{text}");
    assert!(text.contains("fix: set archive_mode = on"), "{text}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn check_fails_when_configured_archiving_is_not_set_up() {
    let dir = tempfile::tempdir().unwrap();
    // `check --json` with `wal.archive = true` against `pg`.
    let check_archiving = |pg: &PgCluster| {
        let config = write_config(
            dir.path(),
            &format!(
                "[repository]\nurl = \"file://{}/repo\"\n[postgres]\nconninfo = \"{}\"\n[wal]\narchive = true\n",
                dir.path().display(),
                pg.conninfo()
            ),
        );
        let out = pgkeep(dir.path())
            .args(["--config", config.to_str().unwrap(), "--json", "check"])
            .output()
            .unwrap();
        let report = json(&out);
        (out.status.code(), report)
    };

    let pg = PgCluster::builder().setting("wal_level", "replica").start();
    let (code, report) = check_archiving(&pg);
    assert_eq!(code, Some(3), "{report:#}");
    assert_eq!(report["ok"], false);
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(sev, item, _)| sev == "error" && item == "archive_mode"),
        "{found:?}"
    );

    // With archiving set up as pgkeep expects, the same configuration passes.
    let pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", "pgkeep wal-push %p")
        .start();
    let (code, report) = check_archiving(&pg);
    assert_eq!(code, Some(0), "{report:#}");
    assert!(problems(&report).is_empty(), "{report:#}");
}

#[test]
fn check_reports_unreachable_server_and_foreign_repository() {
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    // Another cluster already owns the name `main` in this repository.
    std::fs::create_dir_all(repo.join("main")).unwrap();
    std::fs::write(
        repo.join("main/cluster.json"),
        r#"{"system_identifier":"1234","pg_major":15,"created_at":"2026-01-01T00:00:00Z","created_by":"pgkeep 0.1.0"}"#,
    )
    .unwrap();
    let repo_url = format!("file://{}", repo.display());
    let out = pgkeep(dir.path())
        .args(["--repo", &repo_url, "--json", "check"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3), "{report:#}");
    assert_eq!(
        report["connection"]["connected"], true,
        "PGHOST/PGPORT/PGUSER are honoured"
    );
    let found = problems(&report);
    assert!(
        found.iter().any(|(sev, item, fix)| sev == "error"
            && item == "repository"
            && fix.contains("another --cluster name")),
        "{found:?}"
    );

    // Nothing listens on this port.
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = pgkeep(dir.path())
        .args(["--repo", &repo_url, "--cluster", "other", "--json", "check"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", free.to_string())
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(report["connection"]["connected"], false);
    let found = problems(&report);
    assert!(
        found.iter().any(|(sev, item, fix)| sev == "error"
            && item == "connection"
            && fix.contains(&format!("127.0.0.1:{free}"))),
        "{found:?}"
    );
}

#[test]
fn check_against_s3_repository() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "s3://{}/{}",
        garage.bucket(),
        garage.unique_prefix("cli-check")
    );
    let out = pgkeep(dir.path())
        .args(["--repo", &url, "--json", "check"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .env("PGUSER", "postgres")
        .envs(garage.env_vars())
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(0), "{report:#}\n{}", stderr(&out));
    assert_eq!(report["repository"]["url"], url.as_str());
    assert_eq!(report["repository"]["reachable"], true);
    assert_eq!(report["repository"]["writable"], true);

    // Wrong credentials: the repository problem says which and how to fix it.
    let out = pgkeep(dir.path())
        .args(["--repo", &url, "--json", "check"])
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", pg.port().to_string())
        .envs(garage.env_vars())
        .env("AWS_SECRET_ACCESS_KEY", "0".repeat(64))
        .output()
        .unwrap();
    let report = json(&out);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(report["repository"]["reachable"], false);
    let found = problems(&report);
    assert!(
        found
            .iter()
            .any(|(_, item, fix)| item == "repository" && fix.contains("AWS_SECRET_ACCESS_KEY")),
        "{found:?}"
    );
    assert!(!stdout(&out).contains(&"0".repeat(64)));
}

/// A cluster that wants a password over TCP (scram-sha-256) for role postgres.
fn password_cluster(password: &str) -> PgCluster {
    let pg = PgCluster::start();
    pg.psql(&format!("ALTER ROLE postgres PASSWORD '{password}'"));
    std::fs::write(
        pg.data_dir().join("pg_hba.conf"),
        "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
    )
    .unwrap();
    pg.reload();
    pg
}

#[test]
fn passwords_come_from_pgpass_and_never_show() {
    let secret = "Tr0ub4dor-and-3";
    let pg = password_cluster(secret);
    let dir = tempfile::tempdir().unwrap();
    let repo_url = format!("file://{}/repo", dir.path().display());
    let passfile = dir.path().join("pgpass");
    std::fs::write(
        &passfile,
        format!("# comment\n127.0.0.1:{}:*:postgres:{secret}\n", pg.port()),
    )
    .unwrap();
    std::fs::set_permissions(&passfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let run = |extra: &[(&str, String)]| {
        pgkeep(dir.path())
            .args(["--repo", &repo_url, "--json", "-v", "check"])
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg.port().to_string())
            .env("PGUSER", "postgres")
            .envs(extra.iter().map(|(k, v)| (*k, v.clone())))
            .output()
            .unwrap()
    };

    // From PGPASSFILE.
    let out = run(&[("PGPASSFILE", passfile.display().to_string())]);
    let report = json(&out);
    assert_eq!(report["connection"]["connected"], true, "{report:#}");
    assert_eq!(report["connection"]["password_source"]["kind"], "pass-file");

    // From ~/.pgpass (HOME is the test directory).
    std::fs::copy(&passfile, dir.path().join(".pgpass")).unwrap();
    std::fs::set_permissions(
        dir.path().join(".pgpass"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let out = run(&[]);
    assert_eq!(json(&out)["connection"]["connected"], true);
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert!(!all.contains(secret), "password printed:\n{all}");

    // A password file readable by others is ignored, as libpq does, with a warning.
    std::fs::set_permissions(
        dir.path().join(".pgpass"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let out = run(&[]);
    let report = json(&out);
    assert_eq!(report["connection"]["connected"], false, "{report:#}");
    assert!(
        stderr(&out).contains("has group or world access"),
        "{}",
        stderr(&out)
    );
    assert!(
        problems(&report)
            .iter()
            .any(|(_, item, fix)| item == "connection" && fix.contains(".pgpass")),
        "{report:#}"
    );

    // From PGPASSWORD, and from a connection string: connected, and never echoed.
    let out = run(&[("PGPASSWORD", secret.to_string())]);
    assert_eq!(json(&out)["connection"]["connected"], true);
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains(secret));
    let config = write_config(
        dir.path(),
        &format!(
            "[postgres]\nconninfo = \"postgresql://postgres:{secret}@127.0.0.1:{}/postgres\"\n",
            pg.port()
        ),
    );
    // A file that holds a password must be private (tests/refusals.rs shows the refusal).
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = pgkeep(dir.path())
        .args([
            "--config",
            config.to_str().unwrap(),
            "--repo",
            &repo_url,
            "check",
        ])
        .output()
        .unwrap();
    assert!(stdout(&out).contains("password: from the connection string"));
    assert!(!format!("{}{}", stdout(&out), stderr(&out)).contains(secret));
}

/// Runs pgkeep expecting a usage error (exit 2) and returns stderr.
fn usage_error(dir: &Path, args: &[&str]) -> String {
    let out = pgkeep(dir).args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?}: {}{}",
        stdout(&out),
        stderr(&out)
    );
    stderr(&out)
}

#[test]
fn invalid_config_and_flags_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    let config = write_config(d, "[repository]\nurl = \"file:///x\"\nclustr = \"main\"\n");
    let cfg = config.to_str().unwrap();
    let e = usage_error(d, &["--config", cfg, "check"]);
    assert!(e.contains(cfg), "names the file: {e}");
    assert!(e.contains("`repository.clustr`"), "names the key: {e}");
    assert!(e.contains("unknown field"), "{e}");
    assert!(e.contains("fix:"), "{e}");

    write_config(d, "[compression]\nlevel = 99\n");
    let e = usage_error(d, &["--config", cfg, "check"]);
    assert!(e.contains("`compression.level`: 99 is out of range"), "{e}");
    assert!(e.contains("fix: use a value from 1 to 19"), "{e}");

    write_config(d, "[repository\n");
    let e = usage_error(d, &["--config", cfg, "check"]);
    assert!(e.contains(cfg) && e.contains("TOML"), "{e}");

    write_config(d, "[repository.s3]\nendpoint = \"localhost:3900\"\n");
    let e = usage_error(d, &["--config", cfg, "check"]);
    assert!(e.contains("`repository.s3.endpoint`"), "{e}");
    assert!(e.contains("http://"), "{e}");

    // The default ./pgkeep.toml is found without --config.
    let e = usage_error(d, &["check"]);
    assert!(e.contains("./pgkeep.toml"), "{e}");

    let e = usage_error(d, &["--config", "/nonexistent/pgkeep.toml", "check"]);
    assert!(e.contains("/nonexistent/pgkeep.toml"), "{e}");
    assert!(e.contains("fix: check the --config path"), "{e}");

    std::fs::remove_file(&config).unwrap();
    let e = usage_error(d, &["--repo", "ftp://host/x", "check"]);
    assert!(
        e.contains("`--repo`") && e.contains("unsupported scheme `ftp`"),
        "{e}"
    );
    assert!(
        e.contains("fix: give file:///absolute/path or s3://bucket/prefix"),
        "{e}"
    );
    let e = usage_error(d, &["--repo", "file://relative/path", "check"]);
    assert!(e.contains("three slashes"), "{e}");
    let e = usage_error(d, &["--repo", "s3://Bad_Bucket/x", "check"]);
    assert!(e.contains("not a valid S3 bucket name"), "{e}");
    let e = usage_error(d, &["--cluster", "../etc", "check"]);
    assert!(
        e.contains("`--cluster`") && e.contains("not a usable cluster name"),
        "{e}"
    );
    let e = pgkeep(d)
        .env("PGKEEP_REPO", "gopher://x")
        .arg("check")
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(2));
    let e = usage_error(d, &["check", "--no-such-flag"]);
    assert!(e.contains("--no-such-flag"), "{e}");

    // Secrets in a configuration file readable by others are refused.
    let config = write_config(
        d,
        "[repository.s3]\naccess-key-id = \"GK1\"\nsecret-access-key = \"s3cr3t-value\"\n",
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let e = usage_error(d, &["--config", config.to_str().unwrap(), "check"]);
    assert!(e.contains("chmod 600"), "{e}");
    assert!(!e.contains("s3cr3t-value"), "{e}");
}

#[test]
fn s3_settings_from_an_aws_profile() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let pg = PgCluster::start();
    let dir = tempfile::tempdir().unwrap();
    let aws = dir.path().join(".aws");
    std::fs::create_dir(&aws).unwrap();
    std::fs::write(
        aws.join("credentials"),
        format!(
            "[backup]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
            garage.access_key_id(),
            garage.secret_access_key()
        ),
    )
    .unwrap();
    std::fs::write(
        aws.join("config"),
        format!(
            "[profile backup]\nregion = {}\nendpoint_url = {}\n",
            garage.region(),
            garage.endpoint()
        ),
    )
    .unwrap();
    let url = format!(
        "s3://{}/{}",
        garage.bucket(),
        garage.unique_prefix("profile")
    );
    let run = |cmd: &mut Command| {
        let out = cmd
            .env("PGHOST", "127.0.0.1")
            .env("PGPORT", pg.port().to_string())
            .env("PGUSER", "postgres")
            .output()
            .unwrap();
        let report = json(&out);
        assert_eq!(
            report["repository"]["writable"],
            true,
            "{report:#}\n{}",
            stderr(&out)
        );
    };
    // The profile named in the configuration file (HOME is the test directory)...
    let config = write_config(
        dir.path(),
        &format!("[repository]\nurl = \"{url}\"\n[repository.s3]\nprofile = \"backup\"\n"),
    );
    run(pgkeep(dir.path()).args(["--config", config.to_str().unwrap(), "--json", "check"]));
    // ...and the one AWS_PROFILE names.
    std::fs::remove_file(&config).unwrap();
    run(pgkeep(dir.path())
        .args(["--repo", &url, "--json", "check"])
        .env("AWS_PROFILE", "backup"));
}
