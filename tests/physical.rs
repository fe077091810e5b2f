//! Physical backups, WAL archiving and point-in-time restores end to end, with the built binary,
//! real clusters archiving through `pgkeep wal-push`, a local-directory repository and a real
//! Garage S3 repository.
//!
//! When the tests run as root the servers run as the `postgres` OS user, and so does their
//! `archive_command`. Every pgkeep command here runs as that user too, as it would in production,
//! with `HOME` in a directory of its own and a per-test configuration file (owned by it, mode 0600,
//! holding Garage's keys for an S3 repository) passed with `--config`.

mod common;
#[allow(dead_code)]
#[path = "common/physical.rs"]
mod physical;

use common::{json, stderr};
use physical::*;

use std::fs;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pgkeep_testkit::{FaultMode, FaultProxy, Garage, PgCluster};
use serde_json::Value;

/// The default WAL segment size: the clusters here are made by a plain initdb.
const SEGMENT_SIZE: usize = 16 * 1024 * 1024;

fn is_segment(name: &str) -> bool {
    name.len() == 24 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `16/B374D848` as a number.
fn lsn(text: &str) -> u64 {
    let (hi, lo) = text
        .split_once('/')
        .unwrap_or_else(|| panic!("not an LSN: {text:?}"));
    (u64::from_str_radix(hi, 16).unwrap() << 32) | u64::from_str_radix(lo, 16).unwrap()
}

fn text(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

/// Whether `message` names the time `rfc3339` (to the second, in UTC, in its own offset or as given).
fn names_time(message: &str, rfc3339: &str) -> bool {
    if message.contains(rfc3339) {
        return true;
    }
    let Ok(time) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return false;
    };
    let utc = time.with_timezone(&chrono::Utc);
    [
        utc.format("%Y-%m-%d %H:%M:%S").to_string(),
        utc.format("%Y-%m-%dT%H:%M:%S").to_string(),
        time.format("%Y-%m-%d %H:%M:%S").to_string(),
        time.format("%Y-%m-%dT%H:%M:%S").to_string(),
    ]
    .iter()
    .any(|t| message.contains(t.as_str()))
}

/// The id of the backup a restore plan chose (the id, or an object with one).
fn plan_backup(result: &Value) -> String {
    let backup = &result["plan"]["backup"];
    backup
        .as_str()
        .or_else(|| backup["id"].as_str())
        .unwrap_or_else(|| panic!("no plan.backup: {result:#}"))
        .to_string()
}

/// Checks the manifest of a physical backup of `pg` (timeline 1).
fn check_manifest(m: &Value, pg: &PgCluster, repo: &Repo) {
    assert_eq!(m["kind"], "physical", "{m:#}");
    for field in ["id", "started_at", "finished_at", "server_version"] {
        assert!(m[field].is_string(), "{field}: {m:#}");
    }
    assert_eq!(
        text(&m["system_identifier"]),
        pg.psql("SELECT system_identifier FROM pg_control_system()"),
        "{m:#}"
    );
    let objects = m["objects"].as_array().unwrap();
    assert!(
        objects
            .iter()
            .any(|o| o["role"] == "base" || o["role"] == "file_list"),
        "no base object: {m:#}"
    );
    for object in objects {
        assert!(object["size"].as_u64().unwrap() > 0, "{object}");
        assert!(object["compression"].is_string(), "{object}");
        for sum in ["sha256", "stored_sha256"] {
            let sum = object[sum].as_str().unwrap();
            assert!(
                sum.len() == 64 && sum.bytes().all(|b| b.is_ascii_hexdigit()),
                "{object}"
            );
        }
        if let Some(root) = &repo.root {
            let stored = root.join(object["key"].as_str().unwrap());
            assert_eq!(
                fs::metadata(&stored)
                    .unwrap_or_else(|e| panic!("{}: {e}", stored.display()))
                    .len(),
                object["stored_size"].as_u64().unwrap(),
                "{object}"
            );
        }
    }
    let p = &m["physical"];
    let (start, stop) = (
        p["start_lsn"].as_str().unwrap(),
        p["stop_lsn"].as_str().unwrap(),
    );
    assert!(lsn(start) <= lsn(stop), "{p:#}");
    let (first, last) = (
        p["start_segment"].as_str().unwrap(),
        p["stop_segment"].as_str().unwrap(),
    );
    assert!(
        is_segment(first) && is_segment(last) && first <= last,
        "{p:#}"
    );
    assert_eq!(p["timeline"], 1, "{p:#}");
    assert_eq!(p["wal_segment_size"], SEGMENT_SIZE, "{p:#}");
    chrono::DateTime::parse_from_rfc3339(p["stop_time"].as_str().unwrap())
        .unwrap_or_else(|e| panic!("stop_time: {e}: {p:#}"));
}

/// Objects of a physical backup whose role is not `base` or `backup_manifest`.
fn role_problems(m: &Value) -> Vec<String> {
    let mode = m["physical"]["mode"].as_str().unwrap_or_default();
    let expected = match mode {
        "local" => ["file_list", "files"],
        _ => ["base", "backup_manifest"],
    };
    m["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| !expected.contains(&o["role"].as_str().unwrap_or_default()))
        .map(|o| {
            format!(
                "backup {} ({mode} mode): object role {} (expected {expected:?}): {o}",
                m["id"], o["role"]
            )
        })
        .collect()
}

/// What is wrong with a window that should have both ends, in order.
fn window_problem(window: &Value, when: &str) -> Option<String> {
    let time = |key: &str| chrono::DateTime::parse_from_rfc3339(window[key].as_str()?).ok();
    match (time("from"), time("to")) {
        (Some(from), Some(to)) if from <= to => None,
        (Some(_), Some(_)) => Some(format!(
            "{when}: the restorable window ends before it begins: {window}"
        )),
        _ => Some(format!("{when}: not a window with two times: {window}")),
    }
}

#[test]
fn point_in_time_restores_by_time_lsn_and_onto_a_new_timeline() {
    let mut problems = Vec::new();
    for repo in repos("physical-pitr") {
        let pg = archiving_cluster(&repo);

        // The first backup through pg_basebackup, the second read by pgkeep itself (the data
        // directory is readable here): the restores below use both.
        let b1 = json(&ok(pgkeep(&pg, &repo).args([
            "--json",
            "backup",
            "physical",
            "--mode",
            "stream",
            "--wal-timeout",
            "120",
        ])));
        check_manifest(&b1, &pg, &repo);
        assert_eq!(b1["physical"]["mode"], "stream", "{b1:#}");
        let b1_id = b1["id"].as_str().unwrap().to_string();
        wait_archived_pg(&pg, b1["physical"]["stop_segment"].as_str().unwrap());

        // Listed, with a restorable window; verify re-reads it and runs pg_verifybackup.
        let listed = list(&pg, &repo);
        let backups = listed["backups"].as_array().unwrap();
        assert_eq!(backups.len(), 1, "{listed:#}");
        assert_eq!(backups[0]["id"], b1_id.as_str(), "{listed:#}");
        assert_eq!(backups[0]["kind"], "physical", "{listed:#}");
        let first_window = listed["window"].clone();
        assert!(
            first_window["from"].is_string() && first_window["to"].is_string(),
            "{listed:#}"
        );
        let checks = json(&ok(pgkeep(&pg, &repo).args(["--json", "verify", &b1_id])));
        assert_eq!(checks["backups"][0]["ok"], true, "{checks:#}");

        // Phases 1 and 2, target A (a time and an LSN), phase 3, a second base backup, phase 4,
        // target B, and the table dropped.
        pg.psql("CREATE TABLE t (phase int, n int)");
        insert(&pg, 1);
        pause(300);
        insert(&pg, 2);
        pause(300);
        let row = pg.psql("SELECT clock_timestamp(), pg_current_wal_lsn()");
        let (time_a, lsn_a) = row.split_once('|').unwrap();
        pause(300);
        insert(&pg, 3);
        pause(1100);
        let b2 = json(&ok(
            pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
        ));
        check_manifest(&b2, &pg, &repo);
        assert_eq!(b2["physical"]["mode"], "local", "{b2:#}");
        let b2_id = b2["id"].as_str().unwrap().to_string();
        let checks = json(&ok(pgkeep(&pg, &repo).args(["--json", "verify", &b2_id])));
        assert_eq!(checks["backups"][0]["ok"], true, "{checks:#}");
        pause(1100);
        insert(&pg, 4);
        pause(300);
        let time_b = pg.psql(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        );
        pause(300);
        pg.psql("SELECT pg_create_restore_point('before_drop')");
        pause(300);
        pg.psql("DROP TABLE t");
        let last = switch_wal(&pg);
        wait_archived_pg(&pg, &last);

        // Target A as PostgreSQL prints a timestamptz: the first backup, phases 1 and 2, paused.
        {
            let (restored, result) = restore(&pg, &repo, "at-a", &["--at", time_a]);
            assert_eq!(plan_backup(&result), b1_id, "{result:#}");
            let plan = &result["plan"];
            assert_eq!(
                plan["wal_from"], b1["physical"]["start_segment"],
                "{result:#}"
            );
            let (from, to) = (
                plan["wal_from"].as_str().unwrap(),
                plan["wal_to"].as_str().unwrap(),
            );
            assert!(is_segment(to) && from <= to, "{result:#}");
            assert_eq!(result["report"]["state"], "paused", "{result:#}");
            assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
            assert_eq!(restored.psql("SELECT pg_is_in_recovery()"), "t");
            assert_eq!(
                restored.psql("SHOW archive_mode"),
                "off",
                "a restored cluster does not archive into the repository by default"
            );
        }

        // Target A as an LSN: the same.
        {
            let (restored, result) = restore(&pg, &repo, "lsn-a", &["--lsn", lsn_a]);
            assert_eq!(plan_backup(&result), b1_id, "{result:#}");
            assert!(
                result.to_string().contains(lsn_a),
                "the plan names the LSN: {result:#}"
            );
            assert_eq!(result["report"]["state"], "paused", "{result:#}");
            let reached = result["report"]["reached_lsn"].as_str().unwrap();
            assert!(lsn(reached) >= lsn(lsn_a), "{result:#}");
            assert_eq!(restored.psql(PHASES), "1:100,2:100", "{}", repo.url);
        }

        // Target B (RFC 3339), after the second backup: that backup, phases 1 to 4. Promoted and
        // still archiving, it starts timeline 2 in the same repository.
        let new_segment = {
            let (restored, result) = restore(
                &pg,
                &repo,
                "promoted",
                &[
                    "--at",
                    &time_b,
                    "--target-action",
                    "promote",
                    "--keep-archiving",
                ],
            );
            assert_eq!(plan_backup(&result), b2_id, "{result:#}");
            assert_eq!(
                result["plan"]["wal_from"], b2["physical"]["start_segment"],
                "{result:#}"
            );
            assert_eq!(result["report"]["state"], "promoted", "{result:#}");
            assert_eq!(
                restored.psql(PHASES),
                "1:100,2:100,3:100,4:100",
                "{}",
                repo.url
            );
            assert_eq!(restored.psql("SELECT pg_is_in_recovery()"), "f");
            assert_eq!(restored.psql("SHOW archive_mode"), "on");
            restored.psql("INSERT INTO t SELECT 5, g FROM generate_series(1, 100) g");
            let segment = restored.psql("SELECT pg_walfile_name(pg_switch_wal())");
            assert!(segment.starts_with("00000002"), "{segment}");
            wait_archived(&restored.bin_dir, restored.port, &segment);
            segment
        };
        let history = repo.scratch("00000002.history");
        ok(pgkeep(&pg, &repo)
            .args(["wal-fetch", "00000002.history"])
            .arg(&history));
        assert!(fs::metadata(&history).unwrap().len() > 0);
        let fetched = repo.scratch(&new_segment);
        ok(pgkeep(&pg, &repo)
            .args(["wal-fetch", &new_segment])
            .arg(&fetched));
        assert_eq!(fs::metadata(&fetched).unwrap().len(), SEGMENT_SIZE as u64);

        // --latest follows the newest timeline and sees the write made on it.
        {
            let (restored, result) = restore(&pg, &repo, "latest", &["--latest"]);
            assert_eq!(plan_backup(&result), b2_id, "{result:#}");
            assert_eq!(result["plan"]["timeline"], 2, "{result:#}");
            let state = result["report"]["state"].as_str().unwrap();
            assert!(["paused", "promoted"].contains(&state), "{result:#}");
            assert_eq!(
                restored.psql(PHASES),
                "1:100,2:100,3:100,4:100,5:100",
                "{}",
                repo.url
            );
        }

        // A restore point made on timeline 1 after timeline 2 forked from it: found by staying on
        // timeline 1.
        {
            let (restored, _) = restore(
                &pg,
                &repo,
                "named",
                &["--name", "before_drop", "--timeline", "1"],
            );
            assert_eq!(
                restored.psql(PHASES),
                "1:100,2:100,3:100,4:100",
                "{}",
                repo.url
            );
        }

        // Timeline 2 (with its history file) beside timeline 1 is a complete archive; a fork, if
        // timeline 1 archived past the switch, is reported as a note, not a failure.
        let checked = json(&ok(pgkeep(&pg, &repo).args(["--json", "verify", "--wal"])));
        assert_eq!(checked["problems"], serde_json::json!([]), "{checked:#}");
        assert!(checked["forks"].is_array(), "{checked:#}");
        assert!(
            checked["timelines"]
                .as_array()
                .unwrap()
                .iter()
                .any(|t| t["timeline"] == 2),
            "{checked:#}"
        );

        // Outside the window: refused, naming the window, nothing written.
        let started =
            chrono::DateTime::parse_from_rfc3339(b1["started_at"].as_str().unwrap()).unwrap();
        let early = (started - chrono::Duration::hours(1)).to_rfc3339();
        let said = refused_restore(&pg, &repo, "too-early", &["--at", &early]);
        let from = first_window["from"].as_str().unwrap();
        assert!(
            names_time(&said, from),
            "{}: the refusal names the window's start {from}:\n{said}",
            repo.url
        );
        let late = (chrono::Utc::now() + chrono::Duration::days(1)).to_rfc3339();
        let said = refused_restore(&pg, &repo, "too-late", &["--at", &late]);
        let window = list(&pg, &repo)["window"].clone();
        let to = window["to"].as_str().unwrap();
        assert!(
            names_time(&said, to),
            "{}: the refusal names the window's end {to}:\n{said}",
            repo.url
        );
        problems.extend(window_problem(&window, &repo.url));

        // The end of the window is the newest archived commit (docs/cli.md): a time at it cannot be
        // reached (recovery stops only at a later commit), and the plan refuses it saying why;
        // tests/pitr_incident.rs covers the refusal and --switch-wal.
        {
            let (restored, out) =
                try_restore_into(&pg, &repo, repo.scratch("window-end"), &["--at", to]);
            if out.status.success() {
                assert_eq!(
                    restored.psql(PHASES),
                    "1:100,2:100,3:100,4:100,5:100",
                    "{}",
                    repo.url
                );
            } else {
                assert!(
                    stderr(&out)
                        .contains("recovery ended before configured recovery target was reached"),
                    "{}: restore --at {to} (the end of the window) failed ({}):\n{}",
                    repo.url,
                    out.status,
                    stderr(&out)
                );
            }
        }

        // Collected, so that a failure here does not hide the rest.
        problems.extend(window_problem(
            &first_window,
            &format!("{}, after the first backup", repo.url),
        ));
        problems.extend(role_problems(&b1));
        problems.extend(role_problems(&b2));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn wal_push_and_wal_fetch_keep_the_archive_and_restore_command_rules() {
    // A real segment, and one with the same name and a byte changed.
    let pg = PgCluster::start();
    pg.psql("CREATE TABLE filler AS SELECT g FROM generate_series(1, 1000) g");
    let name = switch_wal(&pg);
    let original = fs::read(pg.data_dir().join("pg_wal").join(&name)).unwrap();
    assert_eq!(original.len(), SEGMENT_SIZE);
    let mut altered = original.clone();
    altered[4000] ^= 0xff;

    for repo in repos("physical-wal") {
        let first = repo.scratch("first");
        let second = repo.scratch("second");
        let failed = repo.scratch("failed");
        for (dir, bytes) in [(&first, &original), (&second, &altered)] {
            fs::create_dir(dir).unwrap();
            fs::write(dir.join(&name), bytes).unwrap();
        }
        fs::create_dir(&failed).unwrap();
        PgCluster::chown_for_server(repo.dir.path());

        // Stored; the same content again is fine.
        ok(pgkeep(&pg, &repo).arg("wal-push").arg(first.join(&name)));
        ok(pgkeep(&pg, &repo).arg("wal-push").arg(first.join(&name)));
        if repo.root.is_some() {
            assert!(repo.wal_object(&name).is_file(), "{}", repo.url);
        }

        // Different content under the same name: refused, the stored file unchanged.
        let out = run(pgkeep(&pg, &repo).arg("wal-push").arg(second.join(&name)));
        assert_eq!(out.status.code(), Some(1), "{}: {}", repo.url, said(&out));
        let message = stderr(&out).to_lowercase();
        assert!(
            message.contains("already") && message.contains("different"),
            "{}: {}",
            repo.url,
            stderr(&out)
        );
        let dest = repo.scratch("fetched");
        ok(pgkeep(&pg, &repo).args(["wal-fetch", &name]).arg(&dest));
        assert!(
            fs::read(&dest).unwrap() == original,
            "{}: wal-fetch returned other bytes than the pushed segment",
            repo.url
        );

        // Not in the archive: 1, and nothing written.
        for missing in ["0000000100000000000000F0", "00000009.history"] {
            let out = run(pgkeep(&pg, &repo)
                .args(["wal-fetch", missing])
                .arg(failed.join(missing)));
            assert_eq!(out.status.code(), Some(1), "{}: {}", repo.url, said(&out));
        }
        assert_eq!(fs::read_dir(&failed).unwrap().count(), 0, "{}", repo.url);

        // A repository that does not hold this cluster at all (not mounted, a wrong --repo or
        // --cluster) is a failure, not "no such file": recovery must not end there.
        for (wrong, says) in [
            (
                ["--repo", "file:///nonexistent/pgkeep-repo"],
                "/nonexistent/pgkeep-repo does not exist",
            ),
            (["--cluster", "not-this-one"], "holds nothing for cluster"),
        ] {
            let out = run(pgkeep(&pg, &repo)
                .args(wrong)
                .args(["wal-fetch", &name])
                .arg(failed.join(&name)));
            assert_eq!(out.status.code(), Some(200), "{wrong:?}: {}", said(&out));
            assert!(said(&out).contains(says), "{}", said(&out));
        }
        assert_eq!(fs::read_dir(&failed).unwrap().count(), 0, "{}", repo.url);

        // A `.partial` segment (what a promotion archives of the old timeline's last segment) is
        // served when asked for by that name, never in place of the full segment.
        let next = {
            let n = u64::from_str_radix(&name[16..], 16).unwrap() + 1;
            format!("{}{n:08X}", &name[..16])
        };
        let partial = format!("{next}.partial");
        // The segment's copy, its page header moved to the next segment (wal-push checks it).
        let mut partial_bytes = original.clone();
        let page_address = (u64::from_str_radix(&next[8..16], 16).unwrap() << 32)
            + u64::from_str_radix(&next[16..], 16).unwrap() * SEGMENT_SIZE as u64;
        partial_bytes[8..16].copy_from_slice(&page_address.to_le_bytes());
        fs::write(first.join(&partial), &partial_bytes).unwrap();
        PgCluster::chown_for_server(&first.join(&partial));
        ok(pgkeep(&pg, &repo).arg("wal-push").arg(first.join(&partial)));
        let dest = repo.scratch(&partial);
        ok(pgkeep(&pg, &repo).args(["wal-fetch", &partial]).arg(&dest));
        assert!(fs::read(&dest).unwrap() == partial_bytes, "{}", repo.url);
        let out = run(pgkeep(&pg, &repo)
            .args(["wal-fetch", &next])
            .arg(failed.join(&next)));
        assert_eq!(out.status.code(), Some(1), "{}: {}", repo.url, said(&out));
        assert_eq!(fs::read_dir(&failed).unwrap().count(), 0, "{}", repo.url);

        // WAL without a base backup: nothing restorable.
        let listed = list(&pg, &repo);
        assert_eq!(listed["backups"], serde_json::json!([]), "{listed:#}");
        assert!(listed["window"].is_null(), "{listed:#}");

        // A damaged stored object: 200, and nothing written.
        if repo.root.is_some() {
            let object = repo.wal_object(&name);
            let mut bytes = fs::read(&object).unwrap();
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x20;
            fs::write(&object, bytes).unwrap();
            let out = run(pgkeep(&pg, &repo)
                .args(["wal-fetch", &name])
                .arg(failed.join(&name)));
            assert_eq!(out.status.code(), Some(200), "{}: {}", repo.url, said(&out));
            assert_eq!(fs::read_dir(&failed).unwrap().count(), 0, "{}", repo.url);
        }
    }

    // Real failures are 200, never 1 (which would end recovery early), and write nothing.
    let mut broken = vec![(
        "nothing listening",
        Repo::with_config(
            |_| "s3://pgkeep-test/unreachable".to_string(),
            &format!(
                "[repository.s3]\nregion = \"garage\"\nendpoint = \"http://127.0.0.1:{}\"\n\
                 access-key-id = \"GK0123456789\"\nsecret-access-key = \"0123456789abcdef\"\n\
                 max-attempts = 2\n",
                free_port()
            ),
        ),
    )];
    broken.push((
        "unknown configuration key",
        Repo::with_config(
            |dir| format!("file://{}/repo", dir.display()),
            "[wal]\nachive = true\n",
        ),
    ));
    let unsafe_config = Repo::local();
    fs::write(
        &unsafe_config.config,
        format!(
            "[repository]\nurl = {}\n[repository.s3]\naccess-key-id = \"GK1\"\nsecret-access-key = \"s\"\n",
            toml_string(&unsafe_config.url)
        ),
    )
    .unwrap();
    fs::set_permissions(&unsafe_config.config, fs::Permissions::from_mode(0o644)).unwrap();
    broken.push(("a secret in a readable file", unsafe_config));
    let proxy = Garage::shared().map(|garage| FaultProxy::start(garage.s3_addr()));
    if let (Some(garage), Some(proxy)) = (Garage::shared(), &proxy) {
        let repo = Repo::garage(
            garage,
            "physical-wal-reset",
            &proxy.http_endpoint(),
            "max-attempts = 2\n",
        );
        let source = repo.scratch(&name);
        fs::write(&source, &original).unwrap();
        PgCluster::chown_for_server(&source);
        ok(pgkeep(&pg, &repo).arg("wal-push").arg(&source));
        proxy.set_mode(FaultMode::ResetAll);
        broken.push(("connections reset", repo));
    }
    for (why, repo) in &broken {
        let dest = repo.scratch("dest");
        let started = Instant::now();
        let out = run(pgkeep(&pg, repo).args(["wal-fetch", &name]).arg(&dest));
        assert_eq!(out.status.code(), Some(200), "{why}: {}", said(&out));
        assert!(!dest.exists(), "{why}: wal-fetch wrote {}", dest.display());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{why}: wal-fetch took {:?}",
            started.elapsed()
        );
        let source = repo.scratch(&name);
        if !source.exists() {
            fs::write(&source, &original).unwrap();
            PgCluster::chown_for_server(&source);
        }
        let out = run(pgkeep(&pg, repo).arg("wal-push").arg(&source));
        assert!(
            !out.status.success(),
            "{why}: wal-push succeeded:\n{}",
            said(&out)
        );
    }
}

#[test]
fn missing_wal_busy_directories_and_tablespaces_are_refused() {
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    let backup = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
    ));
    let id = backup["id"].as_str().unwrap().to_string();
    let stop_segment = backup["physical"]["stop_segment"].as_str().unwrap();
    wait_archived_pg(&pg, stop_segment);
    pg.psql("CREATE TABLE t (phase int, n int)");
    let xid = pg.psql(
        "INSERT INTO t SELECT 1, g FROM generate_series(1, 100) g; SELECT pg_current_xact_id()",
    );
    let mut segments = vec![switch_wal(&pg)];
    for phase in 2..=4 {
        insert(&pg, phase);
        segments.push(switch_wal(&pg));
    }
    wait_archived_pg(&pg, segments.last().unwrap());
    assert!(
        segments.windows(2).all(|w| w[0] < w[1]) && segments[0].as_str() > stop_segment,
        "{segments:?} after {stop_segment}"
    );
    ok(pgkeep(&pg, &repo).args(["verify", "--wal"]));

    // Up to a transaction, promoted: its rows and nothing later, and no archiving by default.
    {
        let (restored, result) = restore(
            &pg,
            &repo,
            "xid",
            &["--xid", &xid, "--target-action", "promote"],
        );
        assert_eq!(result["report"]["state"], "promoted", "{result:#}");
        assert_eq!(restored.psql(PHASES), "1:100");
        assert_eq!(restored.psql("SELECT pg_is_in_recovery()"), "f");
        assert_eq!(restored.psql("SHOW archive_mode"), "off");
    }

    // A directory with something in it: refused without --force, left as it was.
    let busy = repo.scratch("busy");
    fs::create_dir(&busy).unwrap();
    fs::write(busy.join("keep.txt"), "precious").unwrap();
    PgCluster::chown_for_server(&busy);
    let out = run(pgkeep(&pg, &repo)
        .args(["restore", "--pgdata"])
        .arg(&busy)
        .args(["--latest", "--start", "--port", &free_port().to_string()]));
    assert!(!out.status.success(), "{}", said(&out));
    let names: Vec<String> = fs::read_dir(&busy)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["keep.txt"], "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(busy.join("keep.txt")).unwrap(),
        "precious"
    );
    assert!(
        stderr(&out).contains(busy.to_str().unwrap()) || stderr(&out).contains("--force"),
        "the refusal names the directory or the way out: {}",
        stderr(&out)
    );

    // A segment gone from the middle of the archive: a restore across it is refused before
    // anything is written, naming it; verify --wal reports the gap.
    let gap = segments[1].clone();
    fs::remove_file(repo.wal_object(&gap)).unwrap();
    let said_restore = refused_restore(&pg, &repo, "across-gap", &["--latest"]);
    assert!(said_restore.contains(&gap), "names {gap}: {said_restore}");
    let out = run(pgkeep(&pg, &repo).args(["verify", "--wal"]));
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(said(&out).contains(&gap), "names {gap}: {}", said(&out));
    let out = run(pgkeep(&pg, &repo).args(["--json", "verify", "--wal"]));
    assert_eq!(out.status.code(), Some(1), "{}", said(&out));
    assert!(
        json(&out).to_string().contains(&gap),
        "names {gap}: {}",
        said(&out)
    );

    // The base backup alone needs no WAL past its end: --backup (meaning --immediate) restores it
    // over the busy directory with --force, and the server shuts down once consistent.
    {
        let (restored, result) = restore_into(
            &pg,
            &repo,
            busy.clone(),
            &["--backup", &id, "--force", "--target-action", "shutdown"],
        );
        assert_eq!(plan_backup(&result), id, "{result:#}");
        assert_eq!(result["report"]["state"], "shut down", "{result:#}");
        assert!(!busy.join("keep.txt").exists());
        assert!(busy.join("PG_VERSION").is_file());
        assert!(!busy.join("postmaster.pid").exists(), "{result:#}");
        drop(restored);
    }

    // In stream mode, a cluster with a tablespace outside the data directory is refused, naming
    // it (local mode copies tablespaces: tests/physical_local.rs).
    let location = repo.scratch("tablespace");
    fs::create_dir(&location).unwrap();
    PgCluster::chown_for_server(&location);
    pg.psql(&format!(
        "CREATE TABLESPACE extra_space LOCATION '{}'",
        location.display()
    ));
    let out = run(pgkeep(&pg, &repo).args(["backup", "physical", "--mode", "stream"]));
    assert!(!out.status.success(), "{}", said(&out));
    assert!(
        stderr(&out).contains("tablespace") && stderr(&out).contains("extra_space"),
        "{}",
        stderr(&out)
    );
    let listed = list(&pg, &repo);
    assert_eq!(
        listed["backups"].as_array().unwrap().len(),
        1,
        "only the first backup is listed: {listed:#}"
    );
}

#[test]
fn standby_backups_and_a_failing_archive_stops_recovery() {
    let repo = Repo::local();
    let primary = archiving_cluster(&repo);
    primary.psql("CREATE TABLE s AS SELECT g AS n FROM generate_series(1, 1000) g");
    let standby = PgCluster::builder()
        .setting("hot_standby", "on")
        .standby_of(&primary)
        .start();
    let replayed = |pg: &PgCluster| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg
            .try_psql_db("postgres", "SELECT count(*) FROM s")
            .as_deref()
            != Ok("1000")
        {
            assert!(Instant::now() < deadline, "the standby does not replay");
            pause(100);
        }
    };
    replayed(&standby);

    // The wrong flag either way is refused before anything is stored.
    let out = run(pgkeep(&standby, &repo).args(["backup", "physical"]));
    assert!(!out.status.success());
    assert!(said(&out).contains("--from-standby"), "{}", said(&out));
    let out = run(pgkeep(&primary, &repo).args(["backup", "physical", "--from-standby"]));
    assert!(!out.status.success());
    assert!(said(&out).contains("is a primary"), "{}", said(&out));

    // From the standby: the primary archives the WAL; the backup waits for its last segment, which
    // comes once the primary switches segments.
    let mut cmd = pgkeep(&standby, &repo);
    cmd.args([
        "--json",
        "backup",
        "physical",
        "--from-standby",
        "--wal-timeout",
        "120",
    ]);
    let stdout = tempfile::NamedTempFile::new().unwrap();
    let mut child = cmd
        .stdout(stdout.reopen().unwrap())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "backup --from-standby hangs");
        primary.psql("INSERT INTO s SELECT 0; SELECT pg_switch_wal()");
        pause(500);
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(status.success(), "backup --from-standby: {err}");
    let manifest: Value = serde_json::from_slice(&fs::read(stdout.path()).unwrap()).unwrap();
    assert_eq!(manifest["physical"]["from_standby"], true, "{manifest:#}");
    let id = manifest["id"].as_str().unwrap().to_string();
    let stop_segment = manifest["physical"]["stop_segment"]
        .as_str()
        .unwrap()
        .to_string();
    ok(pgkeep(&primary, &repo).args(["verify", &id]));

    // Restored on its own (to its consistent point), it has the data.
    {
        let (restored, result) = restore(&primary, &repo, "from-standby", &["--backup", &id]);
        assert_eq!(result["report"]["state"], "paused", "{result:#}");
        let n: u64 = restored
            .psql("SELECT count(*) FROM s WHERE n > 0")
            .parse()
            .unwrap();
        assert_eq!(n, 1000);
    }

    // wal-fetch failing for real (a segment recovery needs cannot be read) exits 200: PostgreSQL
    // stops with FATAL instead of taking it for the end of the archive and promoting early.
    primary.psql("INSERT INTO s SELECT 0");
    wait_archived_pg(&primary, &switch_wal(&primary));
    let next = {
        let n = u64::from_str_radix(&stop_segment[16..], 16).unwrap() + 1;
        format!("{}{n:08X}", &stop_segment[..16])
    };
    let object = repo.wal_object(&next);
    assert!(object.exists(), "{} is archived", object.display());
    fs::set_permissions(&object, fs::Permissions::from_mode(0o000)).unwrap();
    let direct = run(pgkeep(&primary, &repo)
        .args(["wal-fetch", &next])
        .arg(repo.scratch("fetched")));
    assert_eq!(direct.status.code(), Some(200), "{}", said(&direct));
    assert!(!repo.scratch("fetched").exists());
    let (restored, out) = try_restore_into(
        &primary,
        &repo,
        repo.scratch("unreadable"),
        &["--backup", &id, "--latest"],
    );
    fs::set_permissions(&object, fs::Permissions::from_mode(0o600)).unwrap();
    let said = said(&out);
    assert!(
        !out.status.success(),
        "recovery went past an unreadable segment:\n{said}"
    );
    assert!(said.contains("could not restore file"), "{said}");
    assert!(said.contains("exit code 200"), "{said}");
    assert!(
        restored.dir.join("recovery.signal").exists(),
        "it was not promoted"
    );
    let control = Command::new(primary.bin("pg_controldata"))
        .arg(&restored.dir)
        .output()
        .unwrap();
    let control = String::from_utf8_lossy(&control.stdout);
    assert!(
        !control.contains("in production"),
        "a failed fetch must not end recovery: {control}"
    );
}

/// Debian keeps postgresql.conf, pg_hba.conf and pg_ident.conf in /etc/postgresql/..., outside the
/// data directory, where pg_basebackup does not look: the backup keeps them, and a restore writes
/// them into the new data directory without the settings that point at the original's files.
#[test]
fn configuration_outside_the_data_directory_is_kept_and_restored() {
    let repo = Repo::local();
    let mut pg = archiving_cluster(&repo);
    pg.psql("CREATE TABLE d AS SELECT g AS n FROM generate_series(1, 500) g");
    pg.stop();
    let data = pg.data_dir().to_path_buf();
    let etc = repo.scratch("etc");
    fs::create_dir(&etc).unwrap();
    for file in ["postgresql.conf", "pg_hba.conf", "pg_ident.conf"] {
        fs::rename(data.join(file), etc.join(file)).unwrap();
    }
    // As Debian's postgresql.conf does; the harness's own settings file stays in the data directory.
    let conf = fs::read_to_string(etc.join("postgresql.conf"))
        .unwrap()
        .replace(
            "include 'pgkeep-testkit.conf'",
            &format!("include '{}'", data.join("pgkeep-testkit.conf").display()),
        );
    fs::write(
        etc.join("postgresql.conf"),
        format!(
            "{conf}\ndata_directory = '{}'\nhba_file = '{}'\nident_file = '{}'\nexternal_pid_file = '{}'\n",
            data.display(),
            etc.join("pg_hba.conf").display(),
            etc.join("pg_ident.conf").display(),
            etc.join("server.pid").display(),
        ),
    )
    .unwrap();
    PgCluster::chown_for_server(&etc);
    let pg_ctl = |args: &[&str]| {
        let out = as_server(&mut Command::new(pg.bin("pg_ctl")))
            .arg("-D")
            .arg(&etc)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "pg_ctl {args:?}: {}", stderr(&out));
    };
    pg_ctl(&[
        "-l",
        &repo.scratch("server.log").to_string_lossy(),
        "-w",
        "start",
    ]);
    let backup = json(&ok(
        pgkeep(&pg, &repo).args(["--json", "backup", "physical"])
    ));
    let mut kept: Vec<(String, String)> = backup["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["role"] == "config")
        .map(|o| (text(&o["format"]), text(&o["path"])))
        .collect();
    kept.sort();
    pg.psql("INSERT INTO d SELECT 0");
    let last = switch_wal(&pg);
    wait_archived_pg(&pg, &last);
    let restored = {
        let (restored, result) = restore(&pg, &repo, "debian", &["--latest"]);
        assert_eq!(result["report"]["state"], "promoted", "{result:#}");
        assert_eq!(restored.psql("SELECT count(*) FROM d"), "501");
        restored
    };
    pg_ctl(&["-m", "fast", "-w", "stop"]);
    assert_eq!(
        kept,
        [
            (
                "pg_hba.conf".to_string(),
                etc.join("pg_hba.conf").display().to_string()
            ),
            (
                "pg_ident.conf".to_string(),
                etc.join("pg_ident.conf").display().to_string()
            ),
            (
                "postgresql.conf".to_string(),
                etc.join("postgresql.conf").display().to_string()
            ),
        ],
        "{backup:#}"
    );
    let written = fs::read_to_string(restored.dir.join("postgresql.conf")).unwrap();
    for original in [
        "data_directory",
        "hba_file",
        "ident_file",
        "external_pid_file",
    ] {
        assert!(
            written.contains(&format!("#pgkeep# (the original's) {original} = ")),
            "{written}"
        );
    }
    assert_eq!(
        fs::read(restored.dir.join("pg_hba.conf")).unwrap(),
        fs::read(etc.join("pg_hba.conf")).unwrap()
    );
}
