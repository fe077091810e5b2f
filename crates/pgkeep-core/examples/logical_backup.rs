//! Back up one database into a repository and list the repository's backups, through the
//! `pgkeep-core` library alone — a starting point for another tool that embeds pgkeep.
//!
//! ```sh
//! PGHOST=/var/run/postgresql PGUSER=postgres \
//!     cargo run -p pgkeep-core --example logical_backup -- file:///var/lib/pgkeep/repo mydb
//! ```
//!
//! The connection comes from the libpq variables (PGHOST, PGPORT, PGUSER, PGPASSFILE, ...) and the
//! configuration file if there is one (./pgkeep.toml, /etc/pgkeep/pgkeep.toml); S3 settings from
//! the AWS variables.

use std::sync::Arc;

use pgkeep_core::{
    LogicalBackupOptions, NoProgress, Overrides, Repository, Settings, backup_logical, read_catalog,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(repo_url), Some(database)) = (args.next(), args.next()) else {
        eprintln!("usage: logical_backup REPO_URL DATABASE");
        std::process::exit(2);
    };

    let settings = Settings::load(&Overrides {
        repo: Some(repo_url),
        ..Overrides::default()
    })?;
    let repo = Repository::open(&settings).await?;

    let options = LogicalBackupOptions {
        databases: vec![database],
        jobs: 1,
        ..LogicalBackupOptions::default()
    };
    let manifest = backup_logical(&settings, &repo, &options, Arc::new(NoProgress)).await?;
    println!(
        "backed up {} as {}: {} bytes, {} stored",
        manifest.databases().join(", "),
        manifest.id,
        manifest.size(),
        manifest.stored_size()
    );

    for backup in read_catalog(&repo).await?.backups {
        println!(
            "{}  {:?}  {}",
            backup.id,
            backup.kind,
            backup.databases().join(", ")
        );
    }
    Ok(())
}
