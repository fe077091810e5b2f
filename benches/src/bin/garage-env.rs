//! `garage-env`: starts a throwaway single-node Garage S3 server (the test kit's, see
//! `pgkeep_testkit::Garage`), prints shell `export` lines for it on stdout, then `READY`, and keeps
//! it running until this process is killed (the server dies with it).
//!
//! ```sh
//! garage-env > env.sh & pid=$!
//! until grep -q READY env.sh; do sleep 0.2; done; . ./env.sh
//! ...
//! kill $pid; rm -rf "$GARAGE_DIR"
//! ```

use std::io::Write;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(garage) = pgkeep_testkit::Garage::shared() else {
        eprintln!("garage-env: no garage binary (install it with `cargo install garage --locked`)");
        return ExitCode::FAILURE;
    };
    let dir = garage
        .config_path()
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let mut out = std::io::stdout().lock();
    let mut lines: Vec<(String, String)> = garage.env_vars();
    lines.push(("PGKEEP_BENCH_BUCKET".into(), garage.bucket().to_string()));
    lines.push(("GARAGE_DIR".into(), dir));
    lines.push((
        "GARAGE_STARTUP_S".into(),
        format!("{:.2}", garage.startup_time().as_secs_f64()),
    ));
    for (name, value) in lines {
        let _ = writeln!(out, "export {name}={}", pgkeep_core::shell_quote(&value));
    }
    let _ = writeln!(out, "# READY");
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::park();
    }
}
