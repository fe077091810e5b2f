//! The hooks (`failover.hooks`) run after a role change, on the machine where the command runs.

use crate::error::FailoverError;

/// Runs the hooks here, with `PGKEEP_NEW_PRIMARY` and `PGKEEP_OLD_PRIMARY` set.
pub async fn run_hooks(hooks: &[String], new: &str, old: &str) -> Result<(), FailoverError> {
    for hook in hooks {
        let out = tokio::process::Command::new("sh")
            .arg("-c")
            .arg(hook)
            .env("PGKEEP_NEW_PRIMARY", new)
            .env("PGKEEP_OLD_PRIMARY", old)
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| {
                FailoverError::refused(format!("hook `{hook}`: {e}"), "check the hook command")
            })?;
        if !out.status.success() {
            return Err(FailoverError::stopped(
                format!(
                    "hook `{hook}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
                "fix the hook and run it by hand; the role change itself is done",
            ));
        }
    }
    Ok(())
}
