//! Running a child program with a stored object decompressed into its stdin (pg_restore, psql,
//! tar): the object's checksums are checked to its end even when the child stops reading early.

use std::sync::Arc;

use tokio::io::AsyncWriteExt;

use crate::error::Error;
use crate::exec::ProcessError;
use crate::storage::Storage;
use crate::stream::{Progress, ProgressWriter, StoredObject, fetch_object};

/// What a child fed from a stored object did.
pub(crate) struct Fed {
    pub(crate) bytes: u64,
    pub(crate) status: std::process::ExitStatus,
    pub(crate) stderr: String,
}

/// Runs `cmd` with `object` decompressed into its stdin. A failed read of the object kills the
/// child (it must not finish its work on bad data) and is the error; a child that stops reading
/// early is reported through its exit status and stderr.
pub(crate) async fn feed_child(
    mut cmd: tokio::process::Command,
    program: &std::path::Path,
    storage: &dyn Storage,
    object: &StoredObject,
    progress: &Arc<dyn Progress>,
    item: &str,
) -> Result<Fed, Error> {
    cmd.stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| {
        Error::Process(ProcessError::Spawn {
            program: program.to_path_buf(),
            source,
        })
    })?;
    let stderr = child.stderr.take();
    let stderr_text = tokio::spawn(async move {
        let mut text = String::new();
        if let Some(mut e) = stderr {
            let _ = tokio::io::AsyncReadExt::read_to_string(&mut e, &mut text).await;
        }
        text
    });
    let fetched = match child.stdin.take() {
        Some(mut stdin) => {
            let mut counted = ProgressWriter::new(&mut stdin, progress.clone(), item);
            let fetched = fetch_object(storage, object, &mut counted).await;
            let _ = stdin.shutdown().await;
            fetched
        }
        None => Err(Error::Output {
            key: object.key.clone(),
            source: std::io::Error::other("no stdin pipe"),
        }),
    };
    if matches!(&fetched, Err(e) if !matches!(e, Error::Output { .. })) {
        let _ = child.kill().await;
    }
    let status = child.wait().await.map_err(|source| Error::Output {
        key: object.key.clone(),
        source,
    })?;
    let stderr = stderr_text.await.unwrap_or_default().trim().to_string();
    match fetched {
        Ok(bytes) => Ok(Fed {
            bytes,
            status,
            stderr,
        }),
        // The child stopped reading: its exit status and stderr say why.
        Err(Error::Output { .. }) if !status.success() => Ok(Fed {
            bytes: 0,
            status,
            stderr,
        }),
        Err(e) => Err(e),
    }
}
