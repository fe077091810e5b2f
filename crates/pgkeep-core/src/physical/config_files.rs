//! The configuration files a data directory needs that pg_basebackup does not copy: on Debian,
//! `postgresql.conf`, `pg_hba.conf` and `pg_ident.conf` live in `/etc/postgresql/<major>/<cluster>/`,
//! outside the data directory. A backup keeps them as objects of their own; a restore writes them
//! back into the restored data directory, adapted to it.

use std::path::Path;

use crate::error::Error;
use crate::pg::{conf_quote, query_error};
use crate::repo::Repository;
use crate::repo::catalog::{ConfigFile, Manifest, ManifestObject, ObjectFormat, ObjectRole};
use crate::settings::Settings;
use crate::storage::{FileError, PutMode};
use crate::stream;

/// Stores the configuration files that live outside the data directory (Debian keeps them in
/// /etc/postgresql/<major>/<cluster>/), which pg_basebackup leaves out. Files this process cannot
/// read (a backup taken from another host, or without the rights) are skipped with a warning.
pub(crate) async fn store_outside_config(
    settings: &Settings,
    repo: &Repository,
    client: &tokio_postgres::Client,
    prefix: &str,
) -> Result<Vec<ManifestObject>, Error> {
    let rows = client
        .query(
            "SELECT name, setting, current_setting('data_directory') FROM pg_settings
              WHERE name IN ('config_file', 'hba_file', 'ident_file')",
            &[],
        )
        .await
        .map_err(|e| {
            query_error(
                &settings.conninfo,
                "reading the configuration file paths",
                e,
            )
        })?;
    let mut objects = Vec::new();
    for row in rows {
        let (setting, path, data_dir): (String, String, String) =
            (row.get(0), row.get(1), row.get(2));
        let Some(file) = ConfigFile::ALL.into_iter().find(|f| f.setting() == setting) else {
            continue;
        };
        if Path::new(&path).starts_with(&data_dir) {
            continue;
        }
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(
                    "{setting} {path} is outside the data directory and cannot be read here ({e}): the backup does not hold it; keep a copy of it elsewhere"
                );
                continue;
            }
        };
        let stored = stream::store_object(
            repo.storage(),
            &format!("{prefix}config/{}.zst", file.file_name()),
            std::io::Cursor::new(bytes),
            PutMode::Create,
            settings.compression,
        )
        .await?;
        objects.push(ManifestObject {
            role: ObjectRole::Config,
            database: None,
            format: ObjectFormat::Config(file),
            database_info: None,
            seconds: 0.0,
            path: Some(path),
            stored,
        });
    }
    Ok(objects)
}

/// Settings of an outside postgresql.conf that point at the original server's own files.
const ORIGINAL_FILES: [&str; 4] = [
    "data_directory",
    "hba_file",
    "ident_file",
    "external_pid_file",
];
/// Include directives: relative paths are relative to the original file's directory.
const INCLUDES: [&str; 3] = ["include", "include_dir", "include_if_exists"];

/// An outside postgresql.conf for the restored data directory: the settings that point at the
/// original's files are commented out; includes are made absolute against the original file's
/// directory, and commented out when they do not exist on this host.
fn adapt_config(text: &str, original: &str) -> String {
    let base = Path::new(original).parent().unwrap_or(Path::new("/"));
    let mut out = format!(
        "# postgresql.conf of the backed-up server ({original}), written by pgkeep restore.\n# Lines pgkeep changed or commented out are marked `#pgkeep#`.\n"
    );
    for line in text.lines() {
        let trimmed = line.trim_start();
        let key = trimmed
            .split(|c: char| c == '=' || c.is_whitespace())
            .next()
            .unwrap_or("");
        if ORIGINAL_FILES.contains(&key) {
            out.push_str(&format!("#pgkeep# (the original's) {line}\n"));
            continue;
        }
        if INCLUDES.contains(&key) {
            let value = trimmed[key.len()..]
                .trim_start()
                .trim_start_matches('=')
                .trim();
            let value = value.split('#').next().unwrap_or("").trim();
            let path = value.trim_matches('\'');
            let absolute = base.join(path);
            if absolute.exists() {
                out.push_str(&format!(
                    "#pgkeep# was: {line}\n{key} = {}\n",
                    conf_quote(&absolute.display().to_string())
                ));
            } else {
                out.push_str(&format!("#pgkeep# (not on this host) {line}\n"));
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Minimal files for a data directory whose backup holds no configuration (taken from another
/// host, or before pgkeep kept it): local connections only.
const MINIMAL_HBA: &str = "# Written by pgkeep restore: the backup held no pg_hba.conf.\n# Local connections only; replace with the original's rules.\nlocal   all   all                 peer\nhost    all   all   127.0.0.1/32  scram-sha-256\nhost    all   all   ::1/128       scram-sha-256\n";

/// Writes the configuration files the restored data directory `dir` lacks, from `manifest`'s
/// copies (postgresql.conf adapted to this host), else minimal ones; returns notes for the report.
pub(crate) async fn restore_config(
    repo: &Repository,
    manifest: &Manifest,
    dir: &Path,
) -> Result<Vec<String>, Error> {
    let mut notes = Vec::new();
    for file in ConfigFile::ALL {
        let file_name = file.file_name();
        let target = dir.join(file_name);
        if target.exists() {
            continue;
        }
        let text = match manifest.config_file(file) {
            Some(object) => {
                let mut bytes = Vec::new();
                stream::fetch_object(repo.storage(), &object.stored, &mut bytes).await?;
                let original = object.path.clone().unwrap_or_default();
                notes.push(format!(
                    "{file_name} restored from the backup's copy of {original}"
                ));
                match file {
                    ConfigFile::PostgresqlConf => {
                        adapt_config(&String::from_utf8_lossy(&bytes), &original)
                    }
                    _ => String::from_utf8_lossy(&bytes).into_owned(),
                }
            }
            None => {
                notes.push(format!(
                    "the backup holds no {file_name}: a minimal one was written; compare it with the original server's"
                ));
                match file {
                    ConfigFile::PgHbaConf => MINIMAL_HBA.to_string(),
                    _ => format!("# Written by pgkeep restore: the backup held no {file_name}.\n"),
                }
            }
        };
        tokio::fs::write(&target, text)
            .await
            .map_err(|e| FileError::new("cannot write", &target, e))?;
    }
    Ok(notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_config_is_adapted() {
        let etc = tempfile::tempdir().unwrap();
        std::fs::create_dir(etc.path().join("conf.d")).unwrap();
        let original = etc.path().join("postgresql.conf");
        let text = "data_directory = '/var/lib/postgresql/15/main'\nhba_file = '/etc/x/pg_hba.conf'\n\
                    external_pid_file = '/run/x.pid'\nport = 5432\ninclude_dir = 'conf.d' # tuning\n\
                    include_if_exists = 'missing.conf'\nshared_buffers = 1GB\n";
        let adapted = adapt_config(text, &original.to_string_lossy());
        let active: Vec<&str> = adapted
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert_eq!(
            active,
            [
                "port = 5432",
                &*format!("include_dir = '{}'", etc.path().join("conf.d").display()),
                "shared_buffers = 1GB"
            ],
            "{adapted}"
        );
    }
}
