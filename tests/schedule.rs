//! The scheduler end to end, with the built binary, a real cluster, a local repository and a
//! webhook receiver on loopback: the daemon runs a per-second backup job and records it, fires
//! the failure webhook for a failing job, raises and clears the overdue alert, writes the metrics
//! file, keeps its configuration on a broken SIGHUP reload and takes a good one, and stops cleanly
//! on SIGTERM (a running job recorded as interrupted); a run whose daemon was killed is recorded
//! as died and alerted at the next start; overlapping runs wait, then fail naming the holder,
//! while wal-push never waits; a failing archive_command raises "archiving stuck".

mod common;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/repo.rs"]
mod repo;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/schedule.rs"]
mod schedule;
#[allow(dead_code)] // shared by several test files, each uses part of it
#[path = "common/table_lock.rs"]
mod table_lock;

use std::path::Path;
use std::process::Command;

use common::{json, stderr};
use pgkeep_testkit::PgCluster;
use repo::{Repo, archiving_cluster, ok, pgkeep, run, switch_and_wait};
use schedule::{Daemon, Webhook, outcomes, state, wait_for};

/// The configuration's head: zone, state and lock directories, a 1s check, no catch-up, a 1s
/// stop grace and lock wait, the metrics file, the webhook.
fn head(dir: &Path, hook: &Webhook) -> String {
    format!(
        r#"timezone = "UTC"
state-dir = "{dir}/state"
lock-dir = "{dir}/locks"

[schedule]
check-interval = "1s"
catch-up = "0s"
stop-grace = "1s"
lock-wait = "1s"
metrics-file = "{dir}/pgkeep.prom"

[notify]
webhook = "{url}"
webhook-attempts = 2
webhook-timeout = "2s"
"#,
        dir = dir.display(),
        url = hook.url
    )
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("pgkeep.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn pgkeep_with(pg: &PgCluster, repo: &Repo, config: &Path) -> Command {
    let mut cmd = pgkeep(pg, repo);
    cmd.arg("--config").arg(config);
    cmd
}

#[test]
fn the_daemon_runs_records_alerts_writes_metrics_reloads_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    let hook = Webhook::start();
    let jobs = r#"
[schedule.overdue]
logical = "1h"

[[job]]
name = "dump"
schedule = "*/2 * * * * *"
action = "backup logical"
db = ["shop"]

[[job]]
name = "broken"
schedule = "*/3 * * * * *"
action = "backup logical"
db = ["no_such_db"]
"#;
    let config = write_config(dir.path(), &(head(dir.path(), &hook) + jobs));
    let state_dir = dir.path().join("state");
    let mut daemon = Daemon::start(
        pgkeep_with(&pg, &repo, &config),
        dir.path().join("daemon.log"),
    );

    // No backup yet: overdue; the first backup clears it.
    wait_for(30, "the overdue alert", || {
        hook.got("alert-raised", "overdue:logical")
    });
    wait_for(60, "a recorded backup run", || {
        outcomes(&state_dir, "dump").contains(&"succeeded".into())
    });
    wait_for(30, "the overdue alert cleared", || {
        hook.got("alert-cleared", "overdue:logical")
    });
    // The failing job: recorded with its cause, and the failure webhook.
    wait_for(30, "the failure webhook", || {
        hook.got("job-failed", "broken")
    });
    let s = state(&state_dir);
    let failed = s["runs"]["broken"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "failed")
        .unwrap();
    assert!(
        failed["error"].as_str().unwrap().contains("no_such_db"),
        "{failed}"
    );
    let made = s["runs"]["dump"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["outcome"] == "succeeded")
        .unwrap();
    let id = made["backup_id"].as_str().unwrap();
    assert!(made["bytes"].as_u64().unwrap() > 0, "{made}");
    let listed = json(&ok(
        pgkeep_with(&pg, &repo, &config).args(["--json", "list"])
    ));
    assert!(
        listed["backups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["id"] == id),
        "{listed}"
    );
    // The metrics file, written atomically.
    wait_for(10, "the metrics", || {
        std::fs::read_to_string(dir.path().join("pgkeep.prom"))
            .is_ok_and(|m| m.contains("pgkeep_job_last_success_timestamp_seconds{job=\"dump\"}"))
    });
    let metrics = std::fs::read_to_string(dir.path().join("pgkeep.prom")).unwrap();
    assert!(
        metrics.contains("pgkeep_backup_newest_age_seconds"),
        "{metrics}"
    );

    // status and schedule list read the same state.
    let status = run(pgkeep_with(&pg, &repo, &config).args(["--json", "status"]));
    let shown = json(&status);
    assert!(
        shown["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["name"] == "dump"),
        "{shown}"
    );
    let listing = json(&ok(
        pgkeep_with(&pg, &repo, &config).args(["--json", "schedule", "list"])
    ));
    let dump = listing
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "dump")
        .unwrap();
    assert_eq!(dump["next"].as_array().unwrap().len(), 5, "{dump}");

    // A broken reload keeps the old configuration; a good one is taken.
    std::fs::write(&config, "this is [ not toml").unwrap();
    daemon.signal("HUP");
    wait_for(10, "the refused reload", || {
        daemon.log().contains("reload refused")
    });
    let good = head(dir.path(), &hook) + &jobs.replace("name = \"broken\"", "name = \"broken2\"");
    std::fs::write(&config, good).unwrap();
    daemon.signal("HUP");
    wait_for(10, "the reload", || {
        daemon.log().contains("configuration reloaded")
    });
    wait_for(30, "a run of the reloaded job", || {
        !outcomes(&state_dir, "broken2").is_empty()
    });

    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
}

#[test]
fn a_stopped_daemon_records_its_run_as_interrupted_and_a_killed_one_as_died() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let pg = PgCluster::start();
    let hook = Webhook::start();
    let jobs = r#"
[[job]]
name = "slow"
schedule = "* * * * * *"
action = "verify"
run-before = "sleep 30"
"#;
    let config = write_config(dir.path(), &(head(dir.path(), &hook) + jobs));
    let state_dir = dir.path().join("state");
    let running = || {
        outcomes(&state_dir, "slow")
            .last()
            .is_some_and(|o| o == "running")
    };

    // SIGTERM: the run may go on for the stop grace (1s), then it is stopped and recorded.
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("a.log"));
    wait_for(30, "the slow run", running);
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
    assert_eq!(outcomes(&state_dir, "slow").last().unwrap(), "interrupted");

    // SIGKILL: nothing is recorded then; the next start finds the run dead and says so.
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("b.log"));
    wait_for(30, "the second slow run", running);
    daemon.signal("KILL");
    daemon.wait_exit(10);
    assert_eq!(outcomes(&state_dir, "slow").last().unwrap(), "running");
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("c.log"));
    wait_for(30, "the died record", || {
        outcomes(&state_dir, "slow").contains(&"died".into())
    });
    wait_for(30, "the alert of the dead run", || {
        hook.got("job-failed", "slow")
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
}

#[test]
fn overlapping_runs_wait_then_fail_naming_the_holder_and_wal_push_never_waits() {
    // Everything as the servers' user: wal-push (archive_command) shares the repository.
    let dir = tempfile::tempdir().unwrap();
    PgCluster::chown_for_server(dir.path());
    let repo = Repo::local();
    let pg = archiving_cluster(&repo);
    pg.psql("CREATE DATABASE shop");
    let hook = Webhook::start();
    let jobs = r#"
[[job]]
name = "dump"
schedule = "@daily"
action = "backup logical"
db = ["shop"]
run-before = "sleep 4"
"#;
    let config = write_config(dir.path(), &(head(dir.path(), &hook) + jobs));
    PgCluster::chown_for_server(&config);
    let as_server = || {
        let mut cmd = repo::pgkeep_as_server(&pg, &repo, dir.path());
        cmd.arg("--config").arg(&config);
        cmd
    };
    let once = || {
        let mut cmd = as_server();
        cmd.args(["schedule", "once", "dump"]);
        cmd
    };
    // Two runs of one job: the second waits for the lock-wait (1s), then fails naming the first.
    let first = once().spawn().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let second = run(&mut once());
    assert_eq!(second.status.code(), Some(1), "{}", stderr(&second));
    let e = stderr(&second);
    assert!(
        e.contains("job dump did not start") && e.contains("still runs"),
        "{e}"
    );
    assert!(first.wait_with_output().unwrap().status.success());

    // A backup by hand shares the cluster's work lock: held elsewhere, it waits, then fails.
    let locks: Vec<_> = std::fs::read_dir(dir.path().join("locks"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(locks.len(), 1, "{locks:?}");
    let holder = Command::new("flock")
        .arg("-x")
        .arg(&locks[0])
        .args(["sleep", "4"])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let by_hand = run(as_server().args(["backup", "logical", "--db", "shop"]));
    assert_eq!(by_hand.status.code(), Some(1), "{}", stderr(&by_hand));
    assert!(
        stderr(&by_hand).contains("backup logical did not start"),
        "{}",
        stderr(&by_hand)
    );
    // WAL archiving goes on meanwhile.
    switch_and_wait(|sql| pg.psql(sql));
    let mut holder = holder;
    holder.wait().unwrap();
    ok(as_server().args(["backup", "logical", "--db", "shop"]));
}

#[test]
fn a_failing_archive_command_raises_archiving_stuck_and_its_fix_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let mut pg = PgCluster::builder()
        .setting("wal_level", "replica")
        .setting("archive_mode", "on")
        .setting("archive_command", "false")
        .start();
    let hook = Webhook::start();
    let jobs = "\n[schedule.archiving]\nwatch = true\n";
    let config = write_config(dir.path(), &(head(dir.path(), &hook) + jobs));
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("d.log"));
    pg.psql("SELECT pg_switch_wal(), txid_current()");
    pg.psql("CREATE TABLE t AS SELECT 1 AS x");
    pg.psql("SELECT pg_switch_wal()");
    wait_for(60, "the archiving-stuck alert", || {
        hook.got("alert-raised", "archiving-stuck")
    });
    let raised = hook
        .bodies()
        .into_iter()
        .find(|b| b["alert"] == "archiving-stuck")
        .unwrap();
    assert!(
        raised["summary"].as_str().unwrap().contains("failing"),
        "{raised}"
    );
    // Fixed: archiving works again and the alert clears, once.
    pg.set_setting("archive_command", repo::archive_command(&repo));
    pg.reload();
    wait_for(120, "the alert cleared", || {
        hook.got("alert-cleared", "archiving-stuck")
    });
    let raised = hook
        .bodies()
        .iter()
        .filter(|b| b["event"] == "alert-raised")
        .count();
    assert_eq!(raised, 1, "{:?}", hook.bodies());
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
}

#[test]
fn a_missed_run_is_caught_up_once_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let pg = PgCluster::start();
    let hook = Webhook::start();
    // Every minute, so that the newest slot is always less than a minute old; catch-up 1h.
    let jobs =
        "\n[[job]]\nname = \"check\"\nschedule = \"* * * * *\"\naction = \"verify\"\nwal = true\n";
    let text = head(dir.path(), &hook).replace("catch-up = \"0s\"", "catch-up = \"1h\"") + jobs;
    let config = write_config(dir.path(), &text);
    let state_dir = dir.path().join("state");
    let triggers = || -> Vec<String> {
        state(&state_dir)["runs"]["check"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|r| r["trigger"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    // Both starts within one minute, so that the second has no newer slot to catch up.
    while chrono::Timelike::second(&chrono::Utc::now()) > 30 {
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("e.log"));
    wait_for(20, "the caught-up run", || {
        triggers().first().is_some_and(|t| t == "catch-up")
    });
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
    // Its slot has a run now: a restart catches nothing up (a scheduled run may still come).
    let mut daemon = Daemon::start(pgkeep_with(&pg, &repo, &config), dir.path().join("f.log"));
    std::thread::sleep(std::time::Duration::from_secs(2));
    daemon.signal("TERM");
    assert_eq!(daemon.wait_exit(30), Some(0), "{}", daemon.log());
    let caught = triggers().iter().filter(|t| *t == "catch-up").count();
    assert_eq!(caught, 1, "{:?}", triggers());
}

#[test]
fn a_run_past_its_timeout_is_stopped_recorded_and_leaves_no_backup() {
    let dir = tempfile::tempdir().unwrap();
    let repo = Repo::local();
    let pg = PgCluster::start();
    pg.psql("CREATE DATABASE shop");
    pg.psql_db("shop", "CREATE TABLE items (n int)");
    let hook = Webhook::start();
    let jobs = "\n[[job]]\nname = \"dump\"\nschedule = \"@daily\"\naction = \"backup logical\"\ndb = [\"shop\"]\ntimeout = \"2s\"\n";
    let config = write_config(dir.path(), &(head(dir.path(), &hook) + jobs));
    // pg_dump waits on a table another session holds: the run cannot end before its timeout.
    let session = table_lock::lock(&pg);
    let out = run(pgkeep_with(&pg, &repo, &config).args(["schedule", "once", "dump"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("stopped after the job's timeout (2s)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(outcomes(&dir.path().join("state"), "dump"), ["timed-out"]);
    assert!(hook.got("job-failed", "dump"), "{:?}", hook.bodies());
    table_lock::unlock(session);
    // Nothing half-made counts as a backup, and nothing of it is left behind.
    let listed = json(&run(
        pgkeep_with(&pg, &repo, &config).args(["--json", "list"])
    ));
    assert_eq!(listed["backups"], serde_json::json!([]), "{listed}");
    assert_eq!(listed["leftovers"], serde_json::json!([]), "{listed}");
}
