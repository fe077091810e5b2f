//! The throwaway cluster a drill restores into: reachable only through its own socket directory
//! (`listen_addresses = ''`, `unix_socket_directories` = the drill's, mode 0700, trust
//! authentication over it alone), with the settings that would reach outside the drill directory
//! switched off. A physical drill's cluster is the restored data directory, configured through
//! `PhysicalRestoreOptions::server_settings`; a logical drill's is a fresh `initdb`, started here.

use std::path::Path;

use super::scratch::DrillDir;
use crate::error::{DrillError, Error};
use crate::exec::{self, ProcessError, euid, lookup_user};
use crate::pg::{ConnInfo, conf_quote};
use crate::repo::catalog::Manifest;
use crate::settings::Settings;

/// The OS user a server runs as when pgkeep runs as root (PostgreSQL refuses root): the same
/// default as `restore --pgdata`.
const SERVER_USER: &str = "postgres";
/// The bootstrap superuser of a logical drill's fresh cluster.
pub(crate) const SUPERUSER: &str = "postgres";
/// The drill's own pg_hba.conf: trust, over its private socket only.
const HBA: &str = "# pgkeep drill: the server listens on no TCP address; its socket directory is mode 0700.\nlocal all all trust\n";
/// How long `pg_ctl start` waits for a fresh cluster.
const START_TIMEOUT_SECS: &str = "120";

/// The uid and gid the throwaway server runs as: `postgres` when this process is root, else
/// this process's own user (`None`).
pub(crate) fn server_user() -> Result<Option<(u32, u32)>, Error> {
    match euid() {
        Some(0) => lookup_user(SERVER_USER).map(Some).ok_or_else(|| {
            DrillError::NoServerUser {
                user: SERVER_USER.to_string(),
            }
            .into()
        }),
        _ => Ok(None),
    }
}

/// A TCP port that was free a moment ago (else a random high one). The server listens on no TCP
/// address, so the port only names its socket file in the drill's own socket directory, where no
/// other server can hold it.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map_or_else(|_| rand::random_range(49152..65535), |a| a.port())
}

/// Writes the drill's pg_hba.conf into its directory (owned by `user` when given) and returns the
/// server settings that confine the throwaway server to the drill directory.
pub(crate) fn confine(
    dir: &DrillDir,
    user: Option<(u32, u32)>,
) -> Result<Vec<(String, String)>, Error> {
    let hba = dir.path().join("pg_hba.conf");
    let cannot = |source| DrillError::Scratch {
        what: "cannot write the drill's pg_hba.conf in",
        dir: dir.path().to_path_buf(),
        source,
    };
    std::fs::write(&hba, HBA).map_err(cannot)?;
    if let Some((uid, gid)) = user {
        std::os::unix::fs::chown(&hba, Some(uid), Some(gid)).map_err(cannot)?;
    }
    let path = |p: &Path| p.to_string_lossy().into_owned();
    Ok([
        ("listen_addresses", String::new()),
        ("unix_socket_directories", path(&dir.socket())),
        ("unix_socket_permissions", "0700".into()),
        ("hba_file", path(&hba)),
        ("cluster_name", "pgkeep-drill".into()),
        // Nothing of the original's reaches outside the drill: no pid file where the original
        // keeps its own, no log collector (the start log says why a server stopped), no archive,
        // no commands of its own, no wait for a synchronous standby on a write.
        ("external_pid_file", String::new()),
        ("logging_collector", "off".into()),
        ("archive_mode", "off".into()),
        ("recovery_end_command", String::new()),
        ("archive_cleanup_command", String::new()),
        ("synchronous_standby_names", String::new()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect())
}

/// `initdb` arguments for a fresh cluster like the backup's `postgres` database (its encoding and
/// locale), else UTF-8 with the C locale.
fn initdb_args(backup: &Manifest) -> Vec<String> {
    let mut args = vec![
        format!("--username={SUPERUSER}"),
        "--auth=trust".to_string(),
        "--no-sync".to_string(),
    ];
    match backup
        .database("postgres")
        .and_then(|o| o.database_info.as_ref())
    {
        Some(info) => args.extend([
            format!("--encoding={}", info.encoding),
            format!("--lc-collate={}", info.collate),
            format!("--lc-ctype={}", info.ctype),
        ]),
        None => args.extend(["--encoding=UTF8".into(), "--locale=C".into()]),
    }
    args
}

/// A fresh cluster for a logical drill: `initdb` into the drill's data directory (as `user`),
/// confined to the drill directory, started on `port`. Returns how to reach it as its superuser.
pub(crate) async fn fresh_cluster(
    settings: &Settings,
    backup: &Manifest,
    dir: &DrillDir,
    port: u16,
    user: Option<(u32, u32)>,
) -> Result<ConnInfo, Error> {
    let major = backup.server_version_num / 10_000;
    let bin_dir = settings.bin_dir.as_deref();
    let initdb = exec::located(bin_dir, "initdb", major)?;
    let pg_ctl = exec::located(bin_dir, "pg_ctl", major)?;
    let data = dir.data();
    let mut cmd = tokio::process::Command::new(&initdb);
    cmd.arg("--pgdata")
        .arg(&data)
        .args(initdb_args(backup))
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some((uid, gid)) = user {
        cmd.uid(uid).gid(gid);
    }
    exec::run(cmd, &initdb).await?;
    let mut conf = format!("\n# pgkeep drill\nport = {port}\n");
    for (key, value) in confine(dir, user)? {
        conf.push_str(&format!("{key} = {}\n", conf_quote(&value)));
    }
    let auto_conf = data.join("postgresql.auto.conf");
    append(&auto_conf, &conf).map_err(|source| DrillError::Scratch {
        what: "cannot write the drill's settings into",
        dir: auto_conf.clone(),
        source,
    })?;
    let log = dir.path().join("server.log");
    let args = [
        "--log".as_ref(),
        log.as_os_str(),
        "--wait".as_ref(),
        "--timeout".as_ref(),
        START_TIMEOUT_SECS.as_ref(),
        "start".as_ref(),
    ];
    let out = exec::pg_ctl(&pg_ctl, &data, &args, user).await?;
    if !out.status.success() {
        let log_text = std::fs::read_to_string(&log).unwrap_or_default();
        let tail: Vec<&str> = log_text.lines().rev().take(8).collect();
        return Err(ProcessError::Failed {
            program: pg_ctl,
            status: out.status,
            stderr: format!(
                "{}; the end of {}:\n    {}",
                String::from_utf8_lossy(&out.stderr).trim(),
                log.display(),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n    ")
            ),
        }
        .into());
    }
    Ok(ConnInfo::local_socket(&dir.socket(), port, SUPERUSER))
}

/// Appends `text` to the file at `path` (the file keeps its owner and mode).
fn append(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_confining_settings_leave_no_way_in_but_the_socket() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("20261125T150430Z-00000000");
        let dir = DrillDir::create(&path, "b", Path::new("/bin/false"), None).unwrap();
        let settings = confine(&dir, None).unwrap();
        let get = |key: &str| {
            settings
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("listen_addresses"), Some(""));
        assert_eq!(
            get("unix_socket_directories"),
            Some(path.join("socket").to_str().unwrap())
        );
        assert_eq!(get("unix_socket_permissions"), Some("0700"));
        let hba = std::fs::read_to_string(path.join("pg_hba.conf")).unwrap();
        assert!(
            hba.lines()
                .filter(|l| !l.starts_with('#'))
                .all(|l| l.starts_with("local ")),
            "{hba}"
        );
    }
}
