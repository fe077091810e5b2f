//! The failover crate's error type: what failed, on which node, and what to do next.

/// Errors of failover operations.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FailoverError {
    /// The `[failover]` or `[sync]` configuration is incomplete or wrong.
    #[error("{origin}: `{key}`: {problem}\n  fix: {fix}")]
    Config {
        /// The configuration file.
        origin: String,
        /// The dotted key.
        key: String,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// Running something on a node failed.
    #[error("node {node}: {what}: {detail}\n  fix: {fix}")]
    Node {
        /// The node's name.
        node: String,
        /// What was being done.
        what: String,
        /// The error or the command's output.
        detail: String,
        /// What to do.
        fix: String,
    },
    /// An operation stopped partway; the message says in which state it left the nodes.
    #[error("{problem}\n  fix: {fix}")]
    Stopped {
        /// What happened and where things stand.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// A state file (the switchover journal, the must-rejoin record) cannot be read or written.
    #[error("{}: {problem}\n  fix: {fix}", path.display())]
    State {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The pair is not in a state that allows the operation; nothing was changed.
    #[error("{problem}; nothing was changed\n  fix: {fix}")]
    Refused {
        /// Why.
        problem: String,
        /// What to do.
        fix: String,
    },
}

impl FailoverError {
    /// An operation that stopped partway; `problem` says where things stand.
    pub(crate) fn stopped(problem: String, fix: &str) -> FailoverError {
        FailoverError::Stopped {
            problem,
            fix: fix.to_string(),
        }
    }

    /// A refusal: nothing was changed.
    pub(crate) fn refused(problem: String, fix: &str) -> FailoverError {
        FailoverError::Refused {
            problem,
            fix: fix.to_string(),
        }
    }
}
