//! The CI rule: a test whose server is missing fails under CI=true and skips (loudly) otherwise.
//! Each case re-runs this test binary as a child with the server hidden from it.

use std::process::{Command, Output};

use pgkeep_testkit::{Garage, PgCluster};

const CHILD: &str = "PGKEEP_CI_RULE_CHILD";

fn run_child(test: &str, ci: &str, env: &[(&str, &str)]) -> Output {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CI", ci)
        .env_remove("PGKEEP_GARAGE_BIN")
        .env_remove("CARGO_HOME")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn missing_garage_fails_under_ci_and_skips_otherwise() {
    if std::env::var_os(CHILD).is_some() {
        let found = Garage::shared().is_some();
        println!("CHILD-RESULT found={found}");
        return;
    }
    // Hide every place a garage binary could be found.
    let hidden = [("PATH", "/usr/bin:/bin"), ("HOME", "/nonexistent")];
    let out = run_child(
        "missing_garage_fails_under_ci_and_skips_otherwise",
        "true",
        &hidden,
    );
    assert!(!out.status.success(), "must fail under CI:\n{}", text(&out));
    assert!(
        text(&out).contains("cargo install garage --locked"),
        "{}",
        text(&out)
    );

    let out = run_child(
        "missing_garage_fails_under_ci_and_skips_otherwise",
        "false",
        &hidden,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("SKIPPED: garage not found"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains("CHILD-RESULT found=false"),
        "{}",
        text(&out)
    );
}

#[test]
fn missing_postgresql_fails_everywhere() {
    if std::env::var_os(CHILD).is_some() {
        let _cluster = PgCluster::start();
        return;
    }
    for ci in ["true", "false"] {
        let out = run_child(
            "missing_postgresql_fails_everywhere",
            ci,
            &[("PGKEEP_PG_BIN", "/nonexistent/bin")],
        );
        assert!(!out.status.success(), "CI={ci}: must fail:\n{}", text(&out));
        assert!(
            text(&out).contains("does not contain `initdb`"),
            "{}",
            text(&out)
        );
    }
}
