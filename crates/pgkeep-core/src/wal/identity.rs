//! The identity guard: a cluster name belongs to one PostgreSQL cluster. `<cluster>/cluster.json`
//! records it on the first backup, and is checked against what the repository already holds — the
//! system identifier in the manifests and in the archived WAL's page headers — so that a lost
//! record cannot hand the name to the next writer. Here because the WAL's own evidence needs the
//! archive's decoding.

use std::collections::BTreeSet;

use serde::Serialize;

use super::codec::decode;
use super::push::segment_header;
use crate::error::Error;
use crate::pg::WalFile;
use crate::repo::scan::read_catalog;
use crate::repo::{ClusterIdentity, Repository};
use crate::storage::PutMode;

/// What the repository holds under a cluster name, as evidence of whose name it is.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IdentityEvidence {
    /// Backups whose manifest reads.
    pub backups: usize,
    /// Backups whose manifest cannot be used.
    pub damaged_backups: usize,
    /// The distinct `(system identifier, PostgreSQL major)` pairs in the readable manifests.
    pub manifest_identities: BTreeSet<(String, u32)>,
    /// Archived WAL files.
    pub wal_files: usize,
    /// The system identifier in the newest archived segment's page header.
    pub wal_system_identifier: Option<String>,
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
            manifest_identities: catalog
                .backups
                .iter()
                .map(|m| (m.system_identifier.clone(), m.server_version_num / 10_000))
                .collect(),
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
                .iter()
                .map(|(id, _)| id.as_str())
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

    fn missing(&self, repo: &Repository) -> Error {
        Error::IdentityMissing {
            key: repo.identity_key(),
            repo: repo.storage().url(),
            cluster: repo.cluster().to_string(),
            evidence: self.describe(),
        }
    }

    /// [`Error::ArchiveMismatch`] when the archived WAL belongs to another server.
    fn check_wal(&self, repo: &Repository, system_identifier: &str) -> Result<(), Error> {
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

/// What is wrong with the identity record, for `verify`: damaged, or missing while backups exist
/// (a record missing before the first backup is not a problem). Only a storage failure is an error.
pub(crate) async fn identity_problem(repo: &Repository) -> Result<Option<String>, Error> {
    match repo.identity().await {
        Ok(Some(_)) => Ok(None),
        Ok(None) => {
            let evidence = IdentityEvidence::gather(repo).await?;
            Ok(evidence
                .holds_backups()
                .then(|| evidence.missing(repo).to_string()))
        }
        Err(e @ Error::BadRecord { .. }) => Ok(Some(e.to_string())),
        Err(e) => Err(e),
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
/// name the same server (and the archived WAL, if any, too). A damaged record is kept beside it
/// (`cluster.json.damaged-<time>`) before it is replaced; a readable one is never touched.
pub async fn repair_identity(repo: &Repository) -> Result<IdentityRepair, Error> {
    let key = repo.identity_key();
    let damaged = match repo.identity().await {
        Ok(Some(identity)) => {
            return Err(Error::IdentityRepair {
                key,
                problem: format!(
                    "it is readable and names system identifier {} (PostgreSQL {}); nothing to repair",
                    identity.system_identifier, identity.pg_major
                ),
            });
        }
        Ok(None) => None,
        Err(Error::BadRecord { .. }) => Some(repo.storage().get_bytes(&key).await?),
        Err(e) => return Err(e),
    };
    let evidence = IdentityEvidence::gather(repo).await?;
    let mut identities = evidence.manifest_identities.iter();
    let (system_identifier, pg_major) = match (identities.next(), identities.next()) {
        (Some(one), None) => one.clone(),
        (None, _) => {
            return Err(Error::IdentityRepair {
                key,
                problem: format!(
                    "no readable manifest to rebuild it from (the repository holds {}); the next backup records it",
                    match evidence.describe() {
                        text if text.is_empty() => "nothing".to_string(),
                        text => text,
                    }
                ),
            });
        }
        (Some(_), Some(_)) => {
            return Err(Error::IdentityRepair {
                key,
                problem: format!(
                    "the manifests name more than one server ({:?}): two clusters were mixed under this name",
                    evidence.manifest_identities
                ),
            });
        }
    };
    evidence.check_wal(repo, &system_identifier)?;
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
