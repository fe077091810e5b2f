//! `[[job]]`, `[schedule]` and `[notify]` checked: the shipped example gives its jobs, and every
//! mistake is a configuration error naming the file, the job, the key and the fix.

use pgkeep_core::{Config, Overrides, Settings};
use pgkeep_scheduler::{Action, Jobs};

fn jobs(text: &str) -> Result<Jobs, String> {
    let config = Config::parse(text, "pgkeep.toml").map_err(|e| e.to_string())?;
    let settings = Settings::resolve(config, Some("pgkeep.toml".into()), &Overrides::default())
        .map_err(|e| e.to_string())?;
    Jobs::from_settings(&settings).map_err(|e| e.to_string())
}

fn refused(text: &str) -> String {
    match jobs(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

#[test]
fn the_example_configuration_gives_its_jobs() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/pgkeep.example.toml"
    );
    let jobs = jobs(&std::fs::read_to_string(path).unwrap()).unwrap();
    let names: Vec<&str> = jobs.jobs.iter().map(|j| j.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "nightly-dump",
            "weekly-base",
            "expire",
            "drill",
            "verify-wal",
            "site-files"
        ]
    );
    let nightly = jobs.get("nightly-dump").unwrap();
    assert!(matches!(
        nightly.action,
        Action::BackupLogical {
            all: true,
            globals: true,
            ..
        }
    ));
    assert_eq!(
        nightly.timeout,
        Some(std::time::Duration::from_secs(4 * 3600))
    );
    assert_eq!(jobs.settings.overdue.len(), 2);
}

const JOB: &str = "[[job]]\nname = \"nightly\"\nschedule = \"30 2 * * *\"\naction = \"backup logical\"\nall = true\n";

#[test]
fn each_mistake_names_the_job_the_key_and_the_fix() {
    let cases = [
        (
            JOB.replace("30 2 * * *", "30 2 * *"),
            "job.nightly.schedule",
            "fields",
        ),
        (
            JOB.replace("30 2 * * *", "61 2 * * *"),
            "job.nightly.schedule",
            "61",
        ),
        (
            JOB.replace("30 2 * * *", "@fortnightly"),
            "job.nightly.schedule",
            "@fortnightly",
        ),
        (
            JOB.to_string() + "timezone = \"Mars/Olympus\"\n",
            "job.nightly.timezone",
            "IANA",
        ),
        (
            JOB.replace("backup logical", "backup everything"),
            "job.nightly.action",
            "sync files",
        ),
        (
            JOB.to_string() + "compress = true\n",
            "job.nightly",
            "exclude-table",
        ),
        (
            JOB.replace("all = true", ""),
            "job.nightly.db",
            "all = true",
        ),
        (
            JOB.to_string() + "timeout = \"soon\"\n",
            "job.nightly.timeout",
            "soon",
        ),
        (
            JOB.to_string() + "timeout = \"0s\"\n",
            "job.nightly.timeout",
            "leave `timeout` out",
        ),
        (JOB.to_string() + JOB, "job.nightly.name", "own name"),
        (JOB.replace("name = \"nightly\"\n", ""), "job[0]", "name ="),
        (JOB.replace("nightly", "night ly"), "job[0].name", "letters"),
        (
            JOB.replace("\"nightly\"", "\"..\""),
            "job[0].name",
            "not starting with",
        ),
        (
            JOB.replace("backup logical", "drill")
                .replace("all = true", "target = \"soon\""),
            "job.nightly.target",
            "random",
        ),
        (
            JOB.replace("backup logical", "backup physical")
                .replace("all = true", "mode = \"fast\""),
            "job.nightly.mode",
            "`local` or `stream`",
        ),
        (
            format!("timezone = \"Nowhere/Land\"\n{JOB}"),
            "timezone",
            "IANA",
        ),
        (
            format!("{JOB}[schedule]\ncatch-up = \"a while\"\n"),
            "schedule.catch-up",
            "while",
        ),
        (
            format!("{JOB}[notify]\nwebhook = \"ftp://x\"\n"),
            "notify.webhook",
            "http",
        ),
    ];
    for (text, key, fix) in cases {
        let e = refused(&text);
        assert!(e.starts_with("pgkeep.toml: "), "{e}");
        assert!(e.contains(&format!("`{key}`")), "expected key {key}: {e}");
        assert!(e.contains(fix), "expected {fix:?}: {e}");
        assert!(e.contains("fix: "), "{e}");
    }
}

#[test]
fn a_job_zone_defaults_to_the_top_level_timezone() {
    let text = format!("timezone = \"Europe/Belgrade\"\n{JOB}");
    let jobs = jobs(&text).unwrap();
    assert_eq!(jobs.jobs[0].schedule.zone().to_string(), "Europe/Belgrade");
    let own = jobs_with_zone();
    assert_eq!(own.jobs[0].schedule.zone().to_string(), "America/New_York");
}

fn jobs_with_zone() -> Jobs {
    jobs(&format!(
        "timezone = \"Europe/Belgrade\"\n{JOB}timezone = \"America/New_York\"\n"
    ))
    .unwrap()
}

#[test]
fn the_deploy_files_run_the_example_jobs_and_the_daemon() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let example = std::fs::read_to_string(format!("{root}/config/pgkeep.example.toml")).unwrap();
    let jobs = jobs(&example).unwrap();
    let cron = std::fs::read_to_string(format!("{root}/deploy/pgkeep.cron")).unwrap();
    let named: Vec<&str> = cron
        .lines()
        .filter_map(|l| l.split_once("schedule once ").map(|(_, job)| job.trim()))
        .filter(|job| !job.contains(' '))
        .collect();
    assert!(named.len() >= 5, "{named:?}");
    for job in named {
        assert!(
            jobs.get(job).is_some(),
            "deploy/pgkeep.cron runs `{job}`, which the example lacks"
        );
    }
    // Installing the file runs nothing until a line is uncommented.
    assert!(
        cron.lines()
            .all(|l| l.trim().is_empty() || l.starts_with('#') || l.contains('='))
    );
    let unit = std::fs::read_to_string(format!("{root}/deploy/pgkeep-scheduler.service")).unwrap();
    assert!(
        unit.contains("ExecStart=/usr/bin/pgkeep -v schedule run"),
        "{unit}"
    );
    assert!(unit.contains("User=postgres") && unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
}
