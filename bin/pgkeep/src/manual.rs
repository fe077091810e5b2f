//! `pgkeep manual DIR` (hidden): the man pages and shell completions, generated from the clap
//! definitions in [`crate::args`] so that they never drift from the binary. `bin/package` runs
//! it to build the .deb's assets.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_complete::Shell;

use crate::args::Cli;

/// Writes `DIR/man1/pgkeep.1` and one page per subcommand (`pgkeep-backup-logical.1`, ...), and
/// `DIR/completions/{pgkeep.bash,_pgkeep,pgkeep.fish}`; prints what it wrote.
pub fn write(dir: &Path) -> anyhow::Result<ExitCode> {
    let man = dir.join("man1");
    let completions = dir.join("completions");
    for path in [&man, &completions] {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
    }
    // generate_to walks the subcommands itself, hidden ones (this one) left out.
    clap_mangen::generate_to(Cli::command(), &man)
        .with_context(|| format!("cannot write the man pages into {}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), "pgkeep", &completions)
            .with_context(|| format!("cannot write the {shell} completions"))?;
    }
    for path in [man, completions] {
        let files = std::fs::read_dir(&path)
            .with_context(|| format!("cannot list {}", path.display()))?
            .count();
        println!("{}: {files} files", path.display());
    }
    Ok(ExitCode::SUCCESS)
}
