//! Child processes: PostgreSQL's programs found and checked against the server ([`ToolInfo`],
//! [`ToolError`]), run with the connection in their environment and their stderr kept
//! ([`ProcessError`]), pg_ctl, GNU tar, shell quoting, and operating system users.

mod interrupt;
mod pg_ctl;
mod process;
mod shell;
mod tar;
mod tools;
mod user;

pub use interrupt::Interrupt;
pub(crate) use pg_ctl::{pg_ctl, stop_immediate};
pub use process::ProcessError;
pub(crate) use process::{BlockingStdout, StdoutStream, output, pg_command, pg_std_command, run};
pub use shell::shell_quote;
pub(crate) use tar::tar_extract;
pub(crate) use tools::{CLIENT_TOOLS, fitting_tool, inspect, located, misfit};
pub use tools::{ToolError, ToolInfo};
pub use user::host_name;
pub(crate) use user::{chown_tree, euid, lookup_user};
