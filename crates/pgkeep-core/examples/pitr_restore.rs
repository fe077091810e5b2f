//! Plan a point-in-time restore and carry it out, through the `pgkeep-core` library alone: the
//! incident-time job of another tool that embeds pgkeep.
//!
//! ```sh
//! PGKEEP_BIN=/usr/local/bin/pgkeep \
//!     cargo run -p pgkeep-core --example pitr_restore -- \
//!     file:///var/lib/pgkeep/repo "2026-11-25 15:04:30" /srv/restore 5433
//! ```
//!
//! The plan (which base backup, which WAL, proven present in the archive) is printed before
//! anything is written; then the backup is restored into the directory, started on the port, and
//! left paused at the target for inspection. The restored server fetches its WAL with the pgkeep
//! command line program (`PGKEEP_BIN`, else `pgkeep` on the server's PATH).

use std::sync::Arc;

use pgkeep_core::{
    NoProgress, Overrides, PhysicalRestoreOptions, PhysicalRestoreRequest, RecoveryTarget,
    Repository, Settings, TargetAction, TimelineChoice, parse_time, plan_physical_restore,
    restore_physical,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo_url, time, pgdata, port] = args.as_slice() else {
        eprintln!("usage: pitr_restore REPO_URL TIME PGDATA PORT");
        std::process::exit(2);
    };

    let settings = Settings::load(&Overrides {
        repo: Some(repo_url.clone()),
        ..Overrides::default()
    })?;
    let repo = Repository::open(&settings).await?;

    let request = PhysicalRestoreRequest {
        target: RecoveryTarget::Time(parse_time(time)?),
        backup: None,
        timeline: TimelineChoice::Latest,
        pgdata: std::path::absolute(pgdata)?,
        force: false,
        bin_dir: settings.bin_dir.clone(),
    };
    let plan = plan_physical_restore(&repo, &request).await?;
    println!(
        "plan: backup {} (consistent from {}), WAL {} to {} ({} segments), window {}",
        plan.backup,
        plan.backup_stop_time,
        plan.wal_from,
        plan.wal_to,
        plan.wal_segments,
        plan.window
    );

    let options = PhysicalRestoreOptions {
        start: true,
        target_action: TargetAction::Pause,
        port: Some(port.parse()?),
        keep_archiving: false,
        owner: None,
        wal_fetch_program: Some(
            std::env::var_os("PGKEEP_BIN")
                .unwrap_or_else(|| "pgkeep".into())
                .into(),
        ),
        server_settings: Vec::new(),
    };
    let report = restore_physical(&settings, &repo, &plan, &options, Arc::new(NoProgress)).await?;
    println!(
        "restored: the server is {} at LSN {}, last commit {}",
        report.state,
        report.reached_lsn.as_deref().unwrap_or("?"),
        report
            .reached_time
            .map_or("-".to_string(), |t| t.to_rfc3339())
    );
    Ok(())
}
