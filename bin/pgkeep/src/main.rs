//! `pgkeep`: the command line over `pgkeep-core`. It parses flags, prints human or JSON output, and
//! maps failures to the exit codes documented in docs/cli.md.

mod exit;
mod output;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgAction, Parser, Subcommand};
use pgkeep_core::{Overrides, Settings};

/// PostgreSQL backup, restore and failover.
#[derive(Debug, Parser)]
#[command(name = "pgkeep", version, about, propagate_version = true)]
struct Cli {
    /// Configuration file [default: ./pgkeep.toml, then /etc/pgkeep/pgkeep.toml].
    #[arg(long, global = true, env = "PGKEEP_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Repository: file:///path or s3://bucket/prefix (overrides repository.url).
    #[arg(long, global = true, env = "PGKEEP_REPO", value_name = "URL")]
    repo: Option<String>,

    /// Cluster name inside the repository (overrides repository.cluster; default main).
    #[arg(long, global = true, env = "PGKEEP_CLUSTER", value_name = "NAME")]
    cluster: Option<String>,

    /// Print machine-readable JSON on stdout.
    #[arg(long, global = true)]
    json: bool,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, global = true, action = ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,

    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Preflight: connection, server settings, client programs and repository, each problem with
    /// its fix. Exits 3 when something the configured jobs need is wrong.
    Check,
}

fn init_logging(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PGKEEP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(&Overrides {
        config: cli.config.clone(),
        repo: cli.repo.clone(),
        cluster: cli.cluster.clone(),
    })?;
    match cli.command {
        Command::Check => {
            let report = pgkeep_core::check(&settings).await;
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", output::check_report(&report));
            }
            Ok(if report.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(exit::CHECK_FAILED)
            })
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("pgkeep: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILURE);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pgkeep: error: {e:#}");
            ExitCode::from(exit::code_for(&e))
        }
    }
}
