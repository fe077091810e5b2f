//! What a failed or interrupted backup removed of what it had written.

use std::fmt;

/// What a failed or interrupted backup removed of what it had written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupCleanup {
    /// The repository's URL.
    pub url: String,
    /// The backup's directory (`main/backups/<id>/`).
    pub prefix: String,
    /// Objects removed.
    pub removed: usize,
    /// Their size in bytes.
    pub bytes: u64,
    /// Objects that could not be removed, with the first error.
    pub left: Vec<String>,
    /// Why they could not be removed.
    pub error: Option<String>,
}

impl fmt::Display for BackupCleanup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            prefix,
            removed,
            bytes,
            ..
        } = self;
        match (&self.error, removed) {
            (None, 0) => write!(
                f,
                "cleanup: the backup had stored nothing yet; nothing of it is left in {url}"
            ),
            (None, _) => write!(
                f,
                "cleanup: removed the {removed} object(s) ({bytes} bytes) the backup had written \
                 under {url}/{prefix}; nothing of it is left"
            ),
            (Some(error), _) => write!(
                f,
                "cleanup: removed {removed} object(s) but could not remove {} under {url}/{prefix} \
                 ({error}); they are not listed as a backup: delete them by hand",
                self.left.join(", ")
            ),
        }
    }
}
