//! Every example configuration shipped in config/ parses and validates.

use pgkeep_core::Config;
use pgkeep_core::{Overrides, Settings};

#[test]
fn every_file_in_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).expect("config/ exists") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            continue;
        }
        let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
        Settings::resolve(config, Some(path.clone()), &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}"));
        seen += 1;
    }
    assert!(seen >= 2, "expected the example files in {}", dir.display());
}

#[test]
fn the_example_documents_every_key() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/pgkeep.example.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // Uncomment every `# key = value` line: the result must still parse, so commented-out keys are
    // real keys too, and every key the configuration knows appears in the example.
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest)
                if rest.split_once(" = ").is_some_and(|(key, _)| {
                    !key.is_empty() && key.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
                }) =>
            {
                rest
            }
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n");
    Config::parse(&uncommented, "uncommented example").unwrap_or_else(|e| panic!("{e}"));
    for key in [
        "url",
        "cluster",
        "region",
        "endpoint",
        "profile",
        "force-path-style",
        "access-key-id",
        "secret-access-key",
        "part-size-mib",
        "max-parts-in-flight",
        "max-attempts",
        "conninfo",
        "pgdata",
        "bin-dir",
        "level",
        "threads",
        "archive",
        "time-zone",
        "leftover-grace",
        "lease-ttl",
        "keep-last",
        "keep-daily",
        "keep-weekly",
        "keep-monthly",
        "keep-within",
        "min-keep",
        "scratch-dir",
        "timezone",
        "state-dir",
        "lock-dir",
        "catch-up",
        "lock-wait",
        "stop-grace",
        "check-interval",
        "history-runs",
        "metrics-file",
        "logical",
        "physical",
        "watch",
        "max-age",
        "webhook",
        "webhook-timeout",
        "webhook-attempts",
        "command",
        "on-success",
        "name",
        "schedule",
        "action",
        "timeout",
    ] {
        assert!(
            uncommented
                .lines()
                .any(|l| l.starts_with(&format!("{key} = "))),
            "config/pgkeep.example.toml does not document `{key}`"
        );
    }
}
