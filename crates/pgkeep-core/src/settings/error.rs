//! Configuration problems: where, which key, what is wrong, and how to fix it.

use std::path::PathBuf;

/// A value that cannot be used, before it is known where it came from: what is wrong and the fix.
/// [`ConfigError::Invalid`] adds the origin (the file or the flag) and the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{problem}\n  fix: {fix}")]
pub struct InvalidValue {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

impl InvalidValue {
    pub(crate) fn new(problem: impl Into<String>, fix: impl Into<String>) -> InvalidValue {
        InvalidValue {
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

/// A configuration problem: where, which key, what is wrong, and how to fix it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read configuration file {}: {source}\n  fix: {fix}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
        /// What to do.
        fix: String,
    },
    /// A value is missing, unknown, of the wrong type, or out of range.
    #[error("{origin}: `{key}`: {problem}\n  fix: {fix}")]
    Invalid {
        /// The file path, or the flag / environment variable the value came from.
        origin: String,
        /// The key, dotted (`repository.s3.part-size-mib`), or the flag name.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(
        origin: impl Into<String>,
        key: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError::Invalid {
            origin: origin.into(),
            key: key.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

impl ConfigError {
    /// `value`'s problem, found in `origin` under `key`.
    pub(crate) fn at(origin: &str, key: &str, value: InvalidValue) -> ConfigError {
        ConfigError::invalid(origin, key, value.problem, value.fix)
    }
}
