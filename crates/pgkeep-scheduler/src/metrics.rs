//! The Prometheus textfile-collector file: per job, the last success, duration, size and outcome;
//! per cluster, the newest backup's age per kind, the archive lag and the last drill's RTO and
//! RPO. Rewritten atomically (temporary file, fsync, rename, fsync of the directory), so the
//! collector never reads half a file.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The metrics of one job.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobMetrics {
    /// The job's name.
    pub job: String,
    /// When its newest successful run ended.
    pub last_success: Option<DateTime<Utc>>,
    /// How long its newest run took.
    pub last_duration: Option<Duration>,
    /// What its newest run stored or read.
    pub last_bytes: Option<u64>,
    /// How its newest run ended (`succeeded`, `failed`, ...).
    pub last_outcome: Option<String>,
}

/// The metrics of the cluster.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterMetrics {
    /// The cluster's name in the repository.
    pub cluster: String,
    /// The newest backup's age, per kind (`logical`, `physical`).
    pub newest_backup_age: Vec<(String, Duration)>,
    /// The age of the newest archived WAL segment.
    pub archive_lag: Option<Duration>,
    /// The last drill's recovery time.
    pub last_drill_rto: Option<Duration>,
    /// The last drill's recovery point.
    pub last_drill_rpo: Option<Duration>,
}

/// Everything the file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// Per job.
    pub jobs: Vec<JobMetrics>,
    /// The cluster.
    pub cluster: ClusterMetrics,
}

/// A metrics file that cannot be written.
#[derive(Debug, thiserror::Error)]
#[error("cannot write the metrics file {}: {source}\n  fix: make [schedule] metrics-file a path in a directory the scheduler's user may write (node_exporter's textfile directory)", path.display())]
pub struct MetricsError {
    /// The file.
    pub path: std::path::PathBuf,
    /// Why.
    pub source: pgkeep_core::FileError,
}

/// A label value escaped as the exposition format wants it.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// One gauge family: its HELP and TYPE lines and its samples; nothing when it has none.
fn family(out: &mut String, name: &str, help: &str, samples: Vec<(String, f64)>) {
    if samples.is_empty() {
        return;
    }
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (labels, value) in samples {
        let _ = writeln!(out, "{name}{{{labels}}} {value}");
    }
}

/// Renders the text exposition format.
pub fn render(m: &Metrics) -> String {
    let mut out = String::new();
    let job = |j: &JobMetrics| format!("job=\"{}\"", label(&j.job));
    let per_job = |value: &dyn Fn(&JobMetrics) -> Option<f64>| -> Vec<(String, f64)> {
        m.jobs
            .iter()
            .filter_map(|j| Some((job(j), value(j)?)))
            .collect()
    };
    family(
        &mut out,
        "pgkeep_job_last_success_timestamp_seconds",
        "When the job's newest successful run ended (Unix time).",
        per_job(&|j| Some(j.last_success?.timestamp() as f64)),
    );
    family(
        &mut out,
        "pgkeep_job_last_duration_seconds",
        "How long the job's newest run took.",
        per_job(&|j| Some(j.last_duration?.as_secs_f64())),
    );
    family(
        &mut out,
        "pgkeep_job_last_bytes",
        "Bytes the job's newest run stored or read.",
        per_job(&|j| Some(j.last_bytes? as f64)),
    );
    let outcomes = m.jobs.iter().filter_map(|j| {
        let outcome = label(j.last_outcome.as_deref()?);
        Some((format!("{},outcome=\"{outcome}\"", job(j)), 1.0))
    });
    family(
        &mut out,
        "pgkeep_job_last_outcome",
        "1 for how the job's newest run ended.",
        outcomes.collect(),
    );
    render_cluster(&mut out, &m.cluster);
    out
}

fn render_cluster(out: &mut String, c: &ClusterMetrics) {
    let cluster = format!("cluster=\"{}\"", label(&c.cluster));
    let ages = c.newest_backup_age.iter().map(|(kind, age)| {
        (
            format!("{cluster},kind=\"{}\"", label(kind)),
            age.as_secs_f64(),
        )
    });
    family(
        out,
        "pgkeep_backup_newest_age_seconds",
        "Age of the newest backup of each kind.",
        ages.collect(),
    );
    let one = |value: Option<Duration>| {
        value
            .map(|v| vec![(cluster.clone(), v.as_secs_f64())])
            .unwrap_or_default()
    };
    for (name, help, value) in [
        (
            "pgkeep_archive_lag_seconds",
            "Age of the newest archived WAL segment.",
            c.archive_lag,
        ),
        (
            "pgkeep_drill_last_rto_seconds",
            "The last restore drill's recovery time.",
            c.last_drill_rto,
        ),
        (
            "pgkeep_drill_last_rpo_seconds",
            "The last restore drill's recovery point.",
            c.last_drill_rpo,
        ),
    ] {
        family(out, name, help, one(value));
    }
}

/// Writes the file atomically, mode 0644.
pub fn write_textfile(path: &Path, m: &Metrics) -> Result<(), MetricsError> {
    pgkeep_core::write_file(path, render(m).as_bytes(), pgkeep_core::PutMode::Overwrite).map_err(
        |source| MetricsError {
            path: path.to_path_buf(),
            source,
        },
    )?;
    // Readable by the collector whatever the umask (the service's is 0077).
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_with_escaped_labels_and_leave_out_the_unknown() {
        let m = Metrics {
            jobs: vec![
                JobMetrics {
                    job: "nightly".into(),
                    last_success: DateTime::from_timestamp(1_764_000_000, 0),
                    last_duration: Some(Duration::from_millis(1500)),
                    last_bytes: Some(42),
                    last_outcome: Some("succeeded".into()),
                },
                JobMetrics {
                    job: "we\"ird\\\n".into(),
                    ..JobMetrics::default()
                },
            ],
            cluster: ClusterMetrics {
                cluster: "main".into(),
                newest_backup_age: vec![("logical".into(), Duration::from_secs(60))],
                archive_lag: Some(Duration::from_secs(5)),
                last_drill_rto: None,
                last_drill_rpo: None,
            },
        };
        let text = render(&m);
        assert!(
            text.contains(
                "pgkeep_job_last_success_timestamp_seconds{job=\"nightly\"} 1764000000\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pgkeep_job_last_duration_seconds{job=\"nightly\"} 1.5\n"),
            "{text}"
        );
        assert!(
            text.contains("pgkeep_job_last_outcome{job=\"nightly\",outcome=\"succeeded\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "pgkeep_backup_newest_age_seconds{cluster=\"main\",kind=\"logical\"} 60\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("pgkeep_archive_lag_seconds{cluster=\"main\"} 5\n"),
            "{text}"
        );
        assert!(
            !text.contains("we\\\"ird\\\\\\n\"} "),
            "no sample for a job without values: {text}"
        );
        assert!(!text.contains("pgkeep_drill_last_rto_seconds"), "{text}");
        assert_eq!(text.matches("# TYPE").count(), 6, "{text}");
        let escaped = render(&Metrics {
            jobs: vec![JobMetrics {
                job: "we\"ird\\\n".into(),
                last_bytes: Some(1),
                ..JobMetrics::default()
            }],
            ..Metrics::default()
        });
        assert!(
            escaped.contains("{job=\"we\\\"ird\\\\\\n\"} 1"),
            "{escaped}"
        );
        assert_eq!(render(&Metrics::default()), "");
    }

    #[test]
    fn the_file_is_replaced_whole_and_a_missing_directory_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pgkeep.prom");
        std::fs::write(&path, "old").unwrap();
        let m = Metrics {
            cluster: ClusterMetrics {
                archive_lag: Some(Duration::from_secs(1)),
                ..ClusterMetrics::default()
            },
            ..Metrics::default()
        };
        write_textfile(&path, &m).unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .starts_with("# HELP pgkeep_archive_lag_seconds")
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
        let e = write_textfile(&dir.path().join("no/such/dir/x.prom"), &m)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("no/such/dir/x.prom") && e.contains("fix: "),
            "{e}"
        );
    }
}
