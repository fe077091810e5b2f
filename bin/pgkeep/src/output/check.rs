//! `pgkeep check` for people.

use std::fmt::Write;

use pgkeep_core::{CheckReport, PasswordSource, Severity};

/// `pgkeep check` as aligned lines, then the problems with their fixes, then a verdict.
pub fn check_report(report: &CheckReport) -> String {
    let mut out = String::new();
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "{label:<16} {value}");
    };
    let password = match &report.connection.password_source {
        PasswordSource::None => "none".to_string(),
        PasswordSource::ConnString => "from the connection string".to_string(),
        PasswordSource::Environment => "from PGPASSWORD".to_string(),
        PasswordSource::PassFile(path) => format!("from {}", path.display()),
    };
    line(
        "connection",
        format!(
            "{} (password: {password}) {}",
            report.connection.conninfo,
            if report.connection.connected {
                "ok"
            } else {
                "FAILED"
            }
        ),
    );
    if let Some(server) = &report.server {
        line(
            "server",
            format!(
                "PostgreSQL {}, {}",
                server.version,
                if server.in_recovery {
                    "standby"
                } else {
                    "primary"
                }
            ),
        );
        line("system id", server.system_identifier.clone());
        line("wal_level", server.wal_level.clone());
        line("archive_mode", server.archive_mode.clone());
        line(
            "archive_command",
            if server.archive_command.is_empty() {
                "(empty)".into()
            } else {
                server.archive_command.clone()
            },
        );
    }
    if let Some(dir) = &report.data_directory {
        line(
            "data directory",
            match (&dir.mode, dir.present_here) {
                (Some(mode), true) => format!("{} (mode {mode})", dir.path),
                _ => format!("{} (not on this host)", dir.path),
            },
        );
    }
    tool_lines(report, &mut line);
    repository_line(report, &mut line);
    if !report.problems.is_empty() {
        out.push_str("\nproblems:\n");
        for p in &report.problems {
            let tag = match p.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            let _ = writeln!(out, "  {tag:<8}{}: {}", p.item, p.problem);
            let _ = writeln!(out, "  {:<8}fix: {}", "", p.fix);
        }
    }
    let errors = report
        .problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let warnings = report.problems.len() - errors;
    let _ = writeln!(
        out,
        "\ncheck: {} ({errors} errors, {warnings} warnings)",
        if report.ok { "OK" } else { "FAILED" }
    );
    out
}

fn tool_lines(report: &CheckReport, line: &mut impl FnMut(&str, String)) {
    for tool in &report.tools {
        line(
            &tool.name,
            match (&tool.path, &tool.version) {
                (Some(path), Some(version)) => format!(
                    "{} — {version}{}",
                    path.display(),
                    if tool.fits { "" } else { " (DOES NOT FIT)" }
                ),
                (Some(path), None) => format!("{} (no version)", path.display()),
                _ => "NOT FOUND".into(),
            },
        );
    }
}

fn repository_line(report: &CheckReport, line: &mut impl FnMut(&str, String)) {
    if let Some(repo) = &report.repository {
        let identity = match &repo.identity {
            Some(id) => format!(
                "system id {}, PostgreSQL {}",
                id.system_identifier, id.pg_major
            ),
            None => "no identity record yet (the first backup writes it; a problem below says if one is missing)".into(),
        };
        line(
            "repository",
            format!(
                "{} cluster {}: {}, {}; {identity}",
                repo.url,
                repo.cluster,
                if repo.reachable {
                    "reachable"
                } else {
                    "UNREACHABLE"
                },
                if repo.writable {
                    "writable"
                } else {
                    "NOT WRITABLE"
                },
            ),
        );
    }
}
