//! The recovery settings a restored data directory gets in postgresql.auto.conf: a
//! `restore_command` that runs this very pgkeep binary with the same repository, the target, the
//! timeline, what to do at the target, and (unless kept) archiving switched off.

use std::path::{Path, PathBuf};

use chrono::Utc;

use super::restore::PhysicalRestoreOptions;
use super::target::RecoveryTarget;
use crate::error::{Error, PitrError};
use crate::exec::shell_quote;
use crate::pg::{command_percent, conf_quote};
use crate::repo::Repository;
use crate::settings::Settings;

/// The `restore_command` for the restored server: `program` (default: this very binary) running
/// `wal-fetch` with this repository.
pub(crate) fn restore_command(
    settings: &Settings,
    repo: &Repository,
    program: Option<&Path>,
) -> Result<String, Error> {
    let exe = match program {
        Some(program) => program.to_path_buf(),
        None => {
            let exe = std::env::current_exe().map_err(|source| PitrError::OwnBinary { source })?;
            // Replaced while running (a package upgrade, a rebuild): the path still names the
            // new binary.
            exe.to_str()
                .and_then(|p| p.strip_suffix(" (deleted)"))
                .map_or(exe.clone(), PathBuf::from)
        }
    };
    let config = settings
        .config_path
        .as_ref()
        .map(|config| std::fs::canonicalize(config).unwrap_or_else(|_| config.clone()));
    Ok(command_line(
        &exe,
        config.as_deref(),
        &repo.storage().url(),
        repo.cluster(),
    ))
}

/// `EXE [--config CONFIG] --repo URL --cluster NAME wal-fetch %f %p`: each value quoted the way
/// `/bin/sh` reads it, and its `%` doubled so that PostgreSQL's `%f`/`%p` substitution leaves it
/// alone.
fn command_line(exe: &Path, config: Option<&Path>, url: &str, cluster: &str) -> String {
    let arg = |value: &str| command_percent(&shell_quote(value));
    let mut parts = vec![arg(&exe.to_string_lossy())];
    if let Some(config) = config {
        parts.push("--config".into());
        parts.push(arg(&config.to_string_lossy()));
    }
    parts.push("--repo".into());
    parts.push(arg(url));
    parts.push("--cluster".into());
    parts.push(arg(cluster));
    parts.push("wal-fetch %f %p".into());
    parts.join(" ")
}

/// Settings this restore overrides, removed from postgresql.auto.conf before its own are added.
fn overridden(key: &str) -> bool {
    key.starts_with("recovery_target") || matches!(key, "restore_command" | "archive_mode" | "port")
}

/// The setting that names `target`, and its value; `None` for [`RecoveryTarget::Latest`].
fn target_setting(target: &RecoveryTarget) -> Option<(&'static str, String)> {
    match target {
        RecoveryTarget::Time(t) => Some((
            "recovery_target_time",
            t.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
        )),
        RecoveryTarget::Lsn(l) => Some(("recovery_target_lsn", l.to_string())),
        RecoveryTarget::Xid(x) => Some(("recovery_target_xid", x.clone())),
        RecoveryTarget::Name(n) => Some(("recovery_target_name", n.clone())),
        RecoveryTarget::Immediate => Some(("recovery_target", "immediate".to_string())),
        RecoveryTarget::Latest => None,
    }
}

/// The new postgresql.auto.conf: the `existing` one without the settings this restore overrides,
/// then recovery from `backup` to `target` on `timeline` (its `recovery_target_timeline` value)
/// with `restore_command`.
pub(crate) fn recovery_settings(
    existing: &str,
    restore_command: &str,
    backup: &str,
    target: &RecoveryTarget,
    timeline: &str,
    options: &PhysicalRestoreOptions,
) -> String {
    let mut out: Vec<String> = existing
        .lines()
        .filter(|line| {
            let key = line.split('=').next().unwrap_or("").trim();
            let replaced = options.server_settings.iter().any(|(k, _)| k == key);
            !replaced && (!overridden(key) || options.keep_archiving && key == "archive_mode")
        })
        .map(str::to_string)
        .collect();
    out.push(format!(
        "# Added by pgkeep restore at {}: backup {backup}, recovery to {target}.",
        Utc::now().format("%Y-%m-%d %H:%M:%S UTC"),
    ));
    out.push(format!("restore_command = {}", conf_quote(restore_command)));
    if let Some((key, value)) = target_setting(target) {
        out.push(format!("{key} = {}", conf_quote(&value)));
        out.push(format!(
            "recovery_target_action = {}",
            conf_quote(options.target_action.setting())
        ));
    }
    out.push(format!(
        "recovery_target_timeline = {}",
        conf_quote(timeline)
    ));
    if !options.keep_archiving {
        out.push(
            "# The restored copy does not archive into the repository it came from (--keep-archiving keeps the backup's settings)."
                .into(),
        );
        out.push("archive_mode = 'off'".into());
    }
    if let Some(port) = options.port {
        out.push(format!("port = {port}"));
    }
    for (key, value) in &options.server_settings {
        out.push(format!("{key} = {}", conf_quote(value)));
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;
    use crate::pitr::TargetAction;

    const COMMAND: &str = "'/usr/bin/pgkeep' --repo 'file:///r' --cluster 'main' wal-fetch %f %p";

    fn options(action: TargetAction) -> PhysicalRestoreOptions {
        PhysicalRestoreOptions {
            start: false,
            target_action: action,
            port: None,
            keep_archiving: false,
            owner: None,
            wal_fetch_program: None,
            server_settings: Vec::new(),
        }
    }

    /// The settings lines, without comments.
    fn lines(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn each_target_kind_writes_its_setting_and_the_action() {
        let at = "2026-11-25T14:04:30.5Z".parse().unwrap();
        for (target, setting) in [
            (
                RecoveryTarget::Time(at),
                "recovery_target_time = '2026-11-25 14:04:30.500000+00'",
            ),
            (
                RecoveryTarget::Lsn(Lsn(0x300_0060)),
                "recovery_target_lsn = '0/3000060'",
            ),
            (
                RecoveryTarget::Xid("742".into()),
                "recovery_target_xid = '742'",
            ),
            (
                RecoveryTarget::Name("before it's gone".into()),
                "recovery_target_name = 'before it''s gone'",
            ),
            (RecoveryTarget::Immediate, "recovery_target = 'immediate'"),
        ] {
            let text = recovery_settings(
                "",
                COMMAND,
                "20261125T140000Z",
                &target,
                "latest",
                &options(TargetAction::Promote),
            );
            assert_eq!(
                lines(&text),
                [
                    "restore_command = '''/usr/bin/pgkeep'' --repo ''file:///r'' --cluster ''main'' wal-fetch %f %p'",
                    setting,
                    "recovery_target_action = 'promote'",
                    "recovery_target_timeline = 'latest'",
                    "archive_mode = 'off'",
                ],
                "{target}"
            );
            assert!(text.contains(&format!("recovery to {target}.")), "{text}");
        }
    }

    #[test]
    fn latest_has_no_target_and_no_action() {
        let text = recovery_settings(
            "",
            COMMAND,
            "b",
            &RecoveryTarget::Latest,
            "3",
            &options(TargetAction::Pause),
        );
        let lines = lines(&text);
        assert!(
            !lines.iter().any(|l| l.starts_with("recovery_target ")),
            "{text}"
        );
        assert!(!text.contains("recovery_target_action"), "{text}");
        assert!(lines.contains(&"recovery_target_timeline = '3'"), "{text}");
    }

    #[test]
    fn overridden_settings_of_the_backup_are_replaced_and_the_rest_kept() {
        let existing = "# Do not edit this file manually!\nshared_buffers = '1GB'\n\
                        restore_command = 'cp /old/%f %p'\nrecovery_target_time = 'x'\n\
                        archive_mode = 'on'\nport = '5432'\nprimary_conninfo = 'host=a'\n";
        let mut opts = options(TargetAction::Shutdown);
        opts.port = Some(5499);
        let text = recovery_settings(
            existing,
            COMMAND,
            "b",
            &RecoveryTarget::Immediate,
            "current",
            &opts,
        );
        let lines = lines(&text);
        assert_eq!(
            lines[..2],
            ["shared_buffers = '1GB'", "primary_conninfo = 'host=a'"]
        );
        assert!(!text.contains("cp /old"), "{text}");
        assert!(!text.contains("archive_mode = 'on'"), "{text}");
        assert!(
            lines.contains(&"recovery_target_action = 'shutdown'"),
            "{text}"
        );
        assert!(lines.contains(&"archive_mode = 'off'"), "{text}");
        assert_eq!(lines.last(), Some(&"port = 5499"), "{text}");
        assert_eq!(lines.iter().filter(|l| l.starts_with("port")).count(), 1);

        // --keep-archiving keeps the backup's archive_mode and adds none.
        opts.keep_archiving = true;
        let text = recovery_settings(
            existing,
            COMMAND,
            "b",
            &RecoveryTarget::Immediate,
            "current",
            &opts,
        );
        assert!(text.contains("archive_mode = 'on'"), "{text}");
        assert!(!text.contains("archive_mode = 'off'"), "{text}");
    }

    /// The words `/bin/sh` makes of `command` once PostgreSQL replaced `%f`, `%p` and `%%`.
    fn shell_words(command: &str) -> Vec<String> {
        // One pass, as PostgreSQL's BuildRestoreCommand does it.
        let mut substituted = String::new();
        let mut chars = command.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                substituted.push(c);
                continue;
            }
            match chars.next() {
                Some('f') => substituted.push('F'),
                Some('p') => substituted.push('P'),
                Some('%') => substituted.push('%'),
                other => panic!("PostgreSQL would keep %{other:?} as it is: {command}"),
            }
        }
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(format!(
                "for a in {substituted}; do printf '%s\\0' \"$a\"; done"
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout)
            .unwrap()
            .split_terminator('\0')
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn restore_command_survives_the_shell_and_the_percent_substitution() {
        let odd = r"/srv/a b/it's/back\slash/$HOME/`x`/100%p/näïve";
        let command = command_line(
            Path::new(&format!("{odd}/pgkeep")),
            Some(Path::new(&format!("{odd}/pgkeep.toml"))),
            &format!("file://{odd}/repo"),
            "main",
        );
        assert_eq!(
            shell_words(&command),
            [
                format!("{odd}/pgkeep"),
                "--config".into(),
                format!("{odd}/pgkeep.toml"),
                "--repo".into(),
                format!("file://{odd}/repo"),
                "--cluster".into(),
                "main".into(),
                "wal-fetch".into(),
                "F".into(),
                "P".into(),
            ]
        );
        // The postgresql.auto.conf line holds it as the configuration parser reads it back.
        let text = recovery_settings(
            "",
            &command,
            "b",
            &RecoveryTarget::Latest,
            "latest",
            &options(TargetAction::Pause),
        );
        let line = text
            .lines()
            .find(|l| l.starts_with("restore_command = "))
            .unwrap();
        assert_eq!(line, format!("restore_command = {}", conf_quote(&command)));
        assert!(line.contains(r"back\\slash"), "{line}");
    }

    #[test]
    fn server_settings_come_last_and_replace_the_backups_own() {
        let mut opts = options(TargetAction::Promote);
        opts.server_settings = vec![
            ("listen_addresses".into(), String::new()),
            (
                "unix_socket_directories".into(),
                "/tmp/d r'ill/socket".into(),
            ),
        ];
        let text = recovery_settings(
            "listen_addresses = '*'\nwork_mem = '4MB'\n",
            COMMAND,
            "b",
            &RecoveryTarget::Latest,
            "latest",
            &opts,
        );
        let lines = lines(&text);
        assert_eq!(lines[0], "work_mem = '4MB'", "{text}");
        assert_eq!(
            lines[lines.len() - 2..],
            [
                "listen_addresses = ''",
                "unix_socket_directories = '/tmp/d r''ill/socket'"
            ],
            "{text}"
        );
    }

    #[test]
    fn overridden_keys() {
        assert!(overridden("recovery_target_time"));
        assert!(overridden("restore_command"));
        assert!(!overridden("shared_buffers"));
    }
}
