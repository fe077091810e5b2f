//! GNU tar, which unpacks base backups into a data directory.

use std::path::Path;

/// GNU tar extracting stdin into `dir`, reading 1 MiB records: with tar's default 10 KiB ones,
/// every write into its pipe would be cut to 10 KiB.
pub(crate) fn tar_extract(dir: &Path, same_permissions: bool) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new("tar");
    cmd.args([
        "--extract",
        "--file=-",
        "--blocking-factor=2048",
        "--read-full-records",
        "--no-same-owner",
    ]);
    if same_permissions {
        cmd.arg("--same-permissions");
    }
    cmd.arg("--directory")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    cmd
}
