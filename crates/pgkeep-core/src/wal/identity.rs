//! The identity guard: a cluster name belongs to one PostgreSQL cluster. `<cluster>/cluster.json`
//! records it on the first backup, and is checked against what the repository already holds — the
//! system identifier in the manifests and in the archived WAL's page headers — so that a lost
//! record cannot hand the name to the next writer. Here because the WAL's own evidence needs the
//! archive's decoding.

use std::collections::BTreeMap;

use serde::Serialize;

use super::codec::decode;
use super::push::segment_header;
use crate::error::Error;
use crate::pg;
use crate::pg::WalFile;
use crate::repo::scan::read_catalog;
use crate::repo::{ClusterIdentity, Repository};
use crate::settings::Settings;
use crate::storage::PutMode;

/// What the repository holds under a cluster name, as evidence of whose name it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdentityEvidence {
    /// Backups whose manifest reads.
    pub backups: usize,
    /// Backups whose manifest cannot be used.
    pub damaged_backups: usize,
    /// The servers the readable manifests name: system identifier → its backups.
    pub manifest_identities: BTreeMap<String, ManifestOwner>,
    /// Archived WAL files.
    pub wal_files: usize,
    /// The system identifier in the newest archived segment's page header.
    pub wal_system_identifier: Option<String>,
}

/// One server named by manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ManifestOwner {
    /// Its PostgreSQL major version.
    pub pg_major: u32,
    /// The ids of its backups.
    pub backups: Vec<String>,
}

impl IdentityEvidence {
    /// Reads the evidence: the catalog, and the newest archived segment's header.
    pub(crate) async fn gather(repo: &Repository) -> Result<IdentityEvidence, Error> {
        let catalog = read_catalog(repo).await?;
        let wal = repo.storage().list(&repo.key("wal/")).await?;
        let newest_segment = wal
            .iter()
            .filter(|o| {
                let name = o.key.rsplit('/').next().unwrap_or("");
                let name = name.strip_suffix(".zst").unwrap_or(name);
                matches!(WalFile::parse(name), Some(WalFile::Segment { .. }))
            })
            .max_by(|a, b| a.key.cmp(&b.key));
        let wal_system_identifier = match newest_segment {
            Some(object) => {
                let stored = repo.storage().get_bytes(&object.key).await?;
                let raw = decode(&object.key, &stored)?;
                segment_header(&raw).map(|h| h.system_identifier.to_string())
            }
            None => None,
        };
        Ok(IdentityEvidence {
            backups: catalog.backups.len(),
            damaged_backups: catalog.damaged.len(),
            manifest_identities: catalog.backups.iter().fold(BTreeMap::new(), |mut out, m| {
                let owner: &mut ManifestOwner = out.entry(m.system_identifier.clone()).or_default();
                owner.pg_major = m.server_version_num / 10_000;
                owner.backups.push(m.id.clone());
                out
            }),
            wal_files: wal.len(),
            wal_system_identifier,
        })
    }

    /// Whether the repository holds backups under the name: then only a restored or rebuilt
    /// record may be used, never a new one.
    pub fn holds_backups(&self) -> bool {
        self.backups + self.damaged_backups > 0
    }

    /// What the repository holds, for messages: `2 backups of system identifier 73..., 40 WAL files`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.holds_backups() {
            let ids: Vec<&str> = self
                .manifest_identities
                .keys()
                .map(String::as_str)
                .collect();
            parts.push(format!(
                "{} backup(s){}",
                self.backups + self.damaged_backups,
                match ids.is_empty() {
                    true => String::new(),
                    false => format!(" of system identifier {}", ids.join(", ")),
                }
            ));
        }
        if self.wal_files > 0 {
            parts.push(format!(
                "{} WAL file(s){}",
                self.wal_files,
                self.wal_system_identifier
                    .as_ref()
                    .map(|id| format!(" of system identifier {id}"))
                    .unwrap_or_default()
            ));
        }
        parts.join(" and ")
    }

    /// [`Error::IdentityMissing`], naming this evidence.
    pub(crate) fn missing(&self, repo: &Repository) -> Error {
        repo.identity_missing(self.describe())
    }

    /// [`Error::ArchiveMismatch`] when the archived WAL belongs to another server.
    pub(crate) fn check_wal(
        &self,
        repo: &Repository,
        system_identifier: &str,
    ) -> Result<(), Error> {
        match &self.wal_system_identifier {
            Some(wal) if wal != system_identifier => Err(Error::ArchiveMismatch {
                repo: repo.storage().url(),
                cluster: repo.cluster().to_string(),
                archived: wal.clone(),
                actual: system_identifier.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// Makes sure this cluster name belongs to the server with `system_identifier` and `pg_major`
/// before anything of it is written: compares against `cluster.json`; without one, records it
/// (create-if-absent, so two first writers cannot both win) only when the repository holds no
/// backup under the name and its archived WAL (if any) is this server's. A missing record with
/// backups present is [`Error::IdentityMissing`]; a damaged one is the record's parse error.
pub async fn ensure_identity(
    repo: &Repository,
    system_identifier: &str,
    pg_major: u32,
) -> Result<ClusterIdentity, Error> {
    repo.storage().create_root().await?;
    let stored = match repo.identity().await? {
        Some(stored) => stored,
        None => {
            let evidence = IdentityEvidence::gather(repo).await?;
            if evidence.holds_backups() {
                return Err(evidence.missing(repo));
            }
            evidence.check_wal(repo, system_identifier)?;
            repo.record_identity(system_identifier, pg_major).await?
        }
    };
    repo.check_identity(&stored, system_identifier, pg_major)?;
    Ok(stored)
}

/// For `wal-push` of a segment from `system_identifier`: with `cluster.json`, the same check as
/// [`ensure_identity`] (the major version is not in a segment); without one, refused while
/// backups exist, and compared with the archived WAL otherwise. Records nothing: the first backup
/// does.
pub(crate) async fn check_wal_identity(
    repo: &Repository,
    system_identifier: &str,
) -> Result<(), Error> {
    repo.storage().create_root().await?;
    match repo.identity().await? {
        Some(stored) => repo.check_identity(&stored, system_identifier, stored.pg_major),
        None => {
            let evidence = IdentityEvidence::gather(repo).await?;
            if evidence.holds_backups() {
                return Err(evidence.missing(repo));
            }
            evidence.check_wal(repo, system_identifier)
        }
    }
}

/// What `pgkeep repair-identity` did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IdentityRepair {
    /// The record written.
    pub identity: ClusterIdentity,
    /// Where the damaged record it replaced was kept, if there was one.
    pub kept_damaged: Option<String>,
    /// The evidence it was rebuilt from.
    pub evidence: IdentityEvidence,
}

/// Rebuilds a missing or damaged `cluster.json` from the manifests: every readable manifest must
/// name the same server (and the archived WAL, if any, too). Without a readable manifest the
/// server `settings` connect to is asked, and accepted only when the archived WAL (if any) is its
/// own. A damaged record is kept beside it (`cluster.json.damaged-<time>`) before it is replaced;
/// a readable one is never touched.
pub async fn repair_identity(
    settings: &Settings,
    repo: &Repository,
) -> Result<IdentityRepair, Error> {
    let key = repo.identity_key();
    let refuse = |problem: String, fix: &str| Error::IdentityRepair {
        key: key.clone(),
        problem,
        fix: fix.to_string(),
    };
    let damaged = match repo.identity().await {
        Ok(Some(identity)) => {
            return Err(refuse(
                format!(
                    "it is readable and names system identifier {} (PostgreSQL {})",
                    identity.system_identifier, identity.pg_major
                ),
                "nothing to repair",
            ));
        }
        Ok(None) => None,
        Err(Error::BadRecord { .. }) => Some(repo.storage().get_bytes(&key).await?),
        Err(e) => return Err(e),
    };
    let evidence = IdentityEvidence::gather(repo).await?;
    let (system_identifier, pg_major) = match evidence.manifest_identities.len() {
        1 => {
            let (id, owner) = evidence.manifest_identities.iter().next().expect("one");
            (id.clone(), owner.pg_major)
        }
        0 => server_identity(settings, &evidence, &refuse).await?,
        _ => {
            let servers: Vec<String> = evidence
                .manifest_identities
                .iter()
                .map(|(id, o)| format!("{id} (backups {})", o.backups.join(", ")))
                .collect();
            return Err(refuse(
                format!(
                    "the manifests name more than one server: {}; two clusters were mixed under this name",
                    servers.join("; ")
                ),
                "move the other server's backup directories to a cluster name of their own (or out of the repository), then run it again",
            ));
        }
    };
    if let Some(wal) = evidence
        .wal_system_identifier
        .as_ref()
        .filter(|wal| **wal != system_identifier)
    {
        return Err(refuse(
            format!(
                "the archived WAL is from system identifier {wal}, but the backups are from {system_identifier}: two clusters were mixed under this name"
            ),
            "move the other server's WAL out of the cluster's wal/ directory, then run it again",
        ));
    }
    let kept_damaged = match damaged {
        Some(bytes) => {
            let aside = format!(
                "{key}.damaged-{}",
                chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
            );
            repo.storage()
                .put_bytes(&aside, &bytes, PutMode::Create)
                .await?;
            repo.storage().delete(&key).await?;
            Some(aside)
        }
        None => None,
    };
    let identity = repo.record_identity(&system_identifier, pg_major).await?;
    repo.check_identity(&identity, &system_identifier, pg_major)?;
    Ok(IdentityRepair {
        identity,
        kept_damaged,
        evidence,
    })
}

/// Without a readable manifest: the identity of the server `settings` connect to, when the
/// archived WAL (if any) is its own.
async fn server_identity(
    settings: &Settings,
    evidence: &IdentityEvidence,
    refuse: &impl Fn(String, &str) -> Error,
) -> Result<(String, u32), Error> {
    let held = match evidence.describe() {
        text if text.is_empty() => "nothing".to_string(),
        text => text,
    };
    let client = pg::connect(&settings.conninfo, None).await.map_err(|e| {
        refuse(
            format!("no manifest can be read (the repository holds {held}), and the server cannot be asked: {e}"),
            "run it where the cluster's own server answers (postgres.conninfo / PGHOST, PGPORT)",
        )
    })?;
    let server = pg::server_info(&client, &settings.conninfo).await?;
    match &evidence.wal_system_identifier {
        Some(wal) if *wal != server.system_identifier => Err(refuse(
            format!(
                "no manifest can be read, and the server asked ({}) is system identifier {}, not {wal} whose WAL the repository holds",
                settings.conninfo.server(),
                server.system_identifier
            ),
            "run it against the cluster's own server (postgres.conninfo / PGHOST, PGPORT)",
        )),
        _ => Ok((server.system_identifier, server.major)),
    }
}
