//! Where a repository lives: `file:///path` or `s3://bucket/prefix`.

use std::fmt;
use std::path::{Path, PathBuf};

use super::InvalidValue;

/// Where a repository lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoLocation {
    /// A local directory (`file:///path`).
    Local(PathBuf),
    /// A bucket and key prefix (`s3://bucket/prefix`); the prefix has no leading or trailing `/`.
    S3 {
        /// Bucket name.
        bucket: String,
        /// Key prefix, possibly empty.
        prefix: String,
    },
}

impl fmt::Display for RepoLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RepoLocation::Local(path) => write!(f, "file://{}", path.display()),
            RepoLocation::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            RepoLocation::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl RepoLocation {
    /// Parses `file:///absolute/path` or `s3://bucket[/prefix]`.
    pub fn parse(url: &str) -> Result<RepoLocation, InvalidValue> {
        const FIX: &str = "give file:///absolute/path or s3://bucket/prefix";
        if let Some(path) = url.strip_prefix("file://") {
            if !path.starts_with('/') {
                return Err(InvalidValue::new(
                    format!(
                        "`{url}` is not an absolute file URL (file:// must be followed by /path)"
                    ),
                    "write it as file:///absolute/path (three slashes)",
                ));
            }
            let path = Path::new(path);
            if path
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(InvalidValue::new(
                    format!("`{url}` contains `..`"),
                    "give the directory's real absolute path",
                ));
            }
            return Ok(RepoLocation::Local(path.to_path_buf()));
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let valid_bucket = (3..=63).contains(&bucket.len())
                && bucket.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'
                })
                && !bucket.starts_with(['-', '.'])
                && !bucket.ends_with(['-', '.']);
            if !valid_bucket {
                return Err(InvalidValue::new(
                    format!("`{bucket}` in `{url}` is not a valid S3 bucket name"),
                    "use 3 to 63 lowercase letters, digits, `-` and `.`, as in s3://my-backups/pgkeep",
                ));
            }
            let prefix = prefix.trim_matches('/');
            if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
                return Err(InvalidValue::new(
                    format!("the prefix `{prefix}` in `{url}` has an empty, `.` or `..` segment"),
                    "use a plain prefix such as s3://bucket/pgkeep/prod",
                ));
            }
            return Ok(RepoLocation::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.to_string(),
            });
        }
        let scheme = url.split_once("://").map_or(url, |(s, _)| s);
        Err(InvalidValue::new(
            format!("`{url}` has an unsupported scheme `{scheme}`"),
            FIX,
        ))
    }
}
