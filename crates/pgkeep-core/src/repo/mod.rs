//! A repository: a [`Storage`] plus the cluster name its objects live under, and the identity record
//! (`<cluster>/cluster.json`) that keeps two PostgreSQL clusters from ever sharing one name; and
//! the catalog of its backups ([`catalog`]), and the leases of running backups and restores
//! ([`lease`]).

pub(crate) mod catalog;
pub(crate) mod lease;
pub(crate) mod scan;
mod written;

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::settings::{RepoLocation, S3Settings, Settings};
use crate::storage::{LocalStorage, PutMode, S3Storage, Storage, StorageError};
pub(crate) use written::BackupWrites;

/// What the repository records about the cluster stored under a name, on its first write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct ClusterIdentity {
    /// `pg_control_system().system_identifier`, as decimal text (it does not fit a JSON number).
    pub system_identifier: String,
    /// PostgreSQL major version (15, 16, ...).
    pub pg_major: u32,
    /// When the record was written.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The pgkeep version that wrote it.
    pub created_by: String,
}

/// Opens the storage for a repository location.
pub async fn open_storage(location: &RepoLocation, s3: &S3Settings) -> Arc<dyn Storage> {
    match location {
        RepoLocation::Local(path) => Arc::new(LocalStorage::new(path.clone())),
        RepoLocation::S3 { bucket, prefix } => Arc::new(S3Storage::new(s3, bucket, prefix).await),
    }
}

/// A repository holding one cluster's backups and WAL.
#[derive(Debug, Clone)]
pub struct Repository {
    storage: Arc<dyn Storage>,
    cluster: String,
}

impl Repository {
    /// The repository on `storage` for cluster name `cluster` (validated by the configuration).
    pub fn new(storage: Arc<dyn Storage>, cluster: impl Into<String>) -> Repository {
        Repository {
            storage,
            cluster: cluster.into(),
        }
    }

    /// The repository the settings name (`--repo` / `repository.url`), or [`Error::NoRepository`].
    pub async fn open(settings: &Settings) -> Result<Repository, Error> {
        let location = settings.repo.as_ref().ok_or(Error::NoRepository)?;
        Ok(Repository::new(
            open_storage(location, &settings.s3).await,
            settings.cluster.clone(),
        ))
    }

    /// The storage.
    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    /// The cluster name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// The full key of `relative` under this cluster.
    pub fn key(&self, relative: &str) -> String {
        format!("{}/{relative}", self.cluster)
    }

    /// The recorded identity, if the cluster name has been used.
    pub async fn identity(&self) -> Result<Option<ClusterIdentity>, Error> {
        let key = self.identity_key();
        match self.storage.get_bytes(&key).await {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                Error::BadRecord {
                    key,
                    record: "cluster identity record",
                    source,
                    fix: "backups and WAL pushes are refused until it is repaired: restore the file from a copy, or rebuild it from the manifests with `pgkeep repair-identity`",
                }
            }),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records `system_identifier` and `pg_major` as this cluster name's owner, create-if-absent:
    /// when another writer recorded one first, theirs is returned (compare it with
    /// [`Repository::check_identity`]). The guard that decides whether recording is safe is
    /// `ensure_identity`.
    pub(crate) async fn record_identity(
        &self,
        system_identifier: &str,
        pg_major: u32,
    ) -> Result<ClusterIdentity, Error> {
        let new = ClusterIdentity {
            system_identifier: system_identifier.to_string(),
            pg_major,
            created_at: chrono::Utc::now(),
            created_by: format!("pgkeep {}", env!("CARGO_PKG_VERSION")),
        };
        let json =
            serde_json::to_vec_pretty(&new).map_err(|e| Error::encode(&self.identity_key(), e))?;
        match self
            .storage
            .put_bytes(&self.identity_key(), &json, PutMode::Create)
            .await
        {
            Ok(_) => Ok(new),
            // Someone else recorded it first: theirs counts.
            Err(StorageError::AlreadyExists { .. }) => self.identity().await?.ok_or_else(|| {
                StorageError::NotFound {
                    key: self.identity_key(),
                }
                .into()
            }),
            Err(e) => Err(e.into()),
        }
    }

    /// [`Error::ClusterMismatch`] unless `stored` is the server with `system_identifier` and
    /// `pg_major`.
    pub(crate) fn check_identity(
        &self,
        stored: &ClusterIdentity,
        system_identifier: &str,
        pg_major: u32,
    ) -> Result<(), Error> {
        if stored.system_identifier != system_identifier || stored.pg_major != pg_major {
            return Err(Error::ClusterMismatch {
                repo: self.storage.url(),
                cluster: self.cluster.clone(),
                stored_system_id: stored.system_identifier.clone(),
                stored_major: stored.pg_major,
                actual_system_id: system_identifier.to_string(),
                actual_major: pg_major,
            });
        }
        Ok(())
    }

    /// [`Error::IdentityMissing`]: no identity record, while the repository holds `evidence`
    /// (`2 backup(s)`, ...) under the cluster name.
    pub(crate) fn identity_missing(&self, evidence: String) -> Error {
        Error::IdentityMissing {
            key: self.identity_key(),
            repo: self.storage.url(),
            cluster: self.cluster.clone(),
            evidence,
        }
    }

    /// The identity record's key, `<cluster>/cluster.json`.
    pub(crate) fn identity_key(&self) -> String {
        self.key("cluster.json")
    }
}
