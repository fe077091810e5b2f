//! A switchover killed at any instant, end to end: the archiving pair of tests/common/pair.rs, its
//! node commands made to wait half a second after each change so that a kill on seeing the change
//! lands inside the step; every kill is followed by a rerun that must finish the switchover, and one
//! more that must say it already finished.

mod common;
#[path = "common/pair.rs"]
mod pair;

use pair::{Setup, said, setup};

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;

impl Setup {
    /// The switchover journal, if there is one.
    fn journal(&self) -> Option<Value> {
        let text = fs::read_to_string(self.path("state/switchover.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the unfinished journal of the switchover from `from` lists `step` as done.
    fn journaled(&self, from: &str, step: &str) -> bool {
        self.journal().is_some_and(|j| {
            j["from"] == from
                && j["finished"] == false
                && j["done"].as_array().unwrap().iter().any(|s| s == step)
        })
    }

    /// How many times the hook ran.
    fn hook_runs(&self) -> usize {
        fs::read_to_string(self.path("hook.out"))
            .map(|t| t.lines().count())
            .unwrap_or(0)
    }
}

/// Where a kill lands: a description; the sign, seen on the nodes or in the journal, that the
/// switchover from `from` to `to` has reached that instant; and for a kill inside a step (the
/// node commands wait half a second after their change), the step the journal must not list yet.
type KillPoint = (
    &'static str,
    fn(&Setup, &str, &str) -> bool,
    Option<&'static str>,
);

const KILL_POINTS: [KillPoint; 10] = [
    (
        "during the final file sync",
        |s, from, _| {
            s.journal()
                .is_some_and(|j| j["from"] == from && j["finished"] == false)
        },
        None,
    ),
    (
        "services stopped, not yet journaled",
        |s, from, _| !s.path(&format!("{from}/nginx.running")).exists(),
        Some("stop-services"),
    ),
    (
        "while PostgreSQL checkpoints and stops",
        |s, from, _| s.journaled(from, "stop-services"),
        None,
    ),
    (
        "PostgreSQL stopped, not yet journaled",
        |s, from, _| !s.pg(from).data_dir().join("postmaster.pid").exists(),
        Some("stop-postgres"),
    ),
    (
        "while the target catches up",
        |s, from, _| s.journaled(from, "read-checkpoint"),
        None,
    ),
    (
        "marker removed",
        |s, from, _| !s.path(&format!("{from}/primary_server")).exists(),
        None,
    ),
    (
        "target promoted",
        |s, _, to| !s.pg(to).data_dir().join("standby.signal").exists(),
        None,
    ),
    (
        "target's marker created",
        |s, _, to| s.path(&format!("{to}/primary_server")).exists(),
        None,
    ),
    (
        "target's services started, not yet journaled",
        |s, _, to| s.path(&format!("{to}/nginx.running")).exists(),
        Some("start-services"),
    ),
    (
        "hook ran, not yet journaled",
        |s, _, _| s.hook_runs() > 0,
        Some("hooks"),
    ),
];

#[test]
fn a_switchover_killed_at_any_instant_resumes_and_a_finished_one_says_so() {
    let s = setup(true);
    for (i, (point, reached, inside)) in KILL_POINTS.iter().enumerate() {
        let (from, to) = if i % 2 == 0 { ("a", "b") } else { ("b", "a") };
        let _ = fs::remove_file(s.path("hook.out"));
        // The switchover runs on the master (it syncs files from there); killed at the point.
        let mut child = s
            .command(
                &s.config,
                &["failover", "switchover", "--to", to, "--node", from],
            )
            .stdout(Stdio::null())
            .stderr(fs::File::create(s.path("killed.err")).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if reached(&s, from, to) {
                child.kill().unwrap();
                break;
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "{point}: the switchover ended before the kill: {}",
                fs::read_to_string(s.path("killed.err")).unwrap()
            );
            assert!(Instant::now() < deadline, "{point}: never reached");
            std::thread::sleep(Duration::from_millis(5));
        }
        child.wait().unwrap();
        if let Some(step) = inside {
            assert!(
                !s.journaled(from, step),
                "{point}: the kill came after the journal recorded {step}"
            );
        }

        // The same command again finishes it, whatever the instant of the kill.
        let out = s.run(&["failover", "switchover", "--to", to, "--node", from]);
        assert!(
            out.status.success(),
            "{point} ({from} -> {to}): the rerun failed: {}",
            said(&out)
        );
        assert!(s.path(&format!("{to}/primary_server")).exists(), "{point}");
        assert!(
            !s.path(&format!("{from}/primary_server")).exists(),
            "{point}"
        );
        assert!(s.path(&format!("{to}/nginx.running")).exists(), "{point}");
        assert!(
            !s.path(&format!("{from}/nginx.running")).exists(),
            "{point}"
        );
        assert_eq!(s.pg(to).psql("SELECT pg_is_in_recovery()"), "f", "{point}");
        assert!(
            s.pg(from).try_psql_db("postgres", "SELECT 1").is_err(),
            "{point}"
        );
        assert!(s.hook_runs() >= 1, "{point}");

        // Once more: it says the switchover already finished, changes nothing, exits 0.
        let out = s.run(&["failover", "switchover", "--to", to, "--node", from]);
        assert!(out.status.success(), "{point}: {}", said(&out));
        assert!(
            said(&out).contains(&format!(
                "the switchover from {from} to {to} already finished"
            )),
            "{point}: {}",
            said(&out)
        );
        assert!(
            s.pg(from).try_psql_db("postgres", "SELECT 1").is_err(),
            "{point}"
        );

        s.ok(&["failover", "rejoin", from, "--node", to]);
        let (out, status) = s.status();
        assert!(out.status.success(), "{point}: {status:#}");
    }
}
