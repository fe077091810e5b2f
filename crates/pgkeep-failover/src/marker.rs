//! The `/primary_server` marker: the node holding it is the master. Created and removed
//! durably on the node itself (written, synced, renamed, directory synced), locally or over ssh.

use std::path::Path;

use pgkeep_core::shell_quote;

use crate::error::FailoverError;
use crate::node::{Node, quoted};

/// Creates `node`'s marker durably, under a staging name of its own first.
pub async fn create_marker(node: &Node) -> Result<(), FailoverError> {
    let dir = node.marker.parent().unwrap_or(Path::new("/"));
    node.run(
        "creating the marker",
        &format!(
            "tmp=$(mktemp {dir}/.pgkeep-tmp-XXXXXXXX) && chmod 644 \"$tmp\" && printf '%s\\n' {} > \"$tmp\" && sync \"$tmp\" && mv \"$tmp\" {marker} && sync {dir}",
            shell_quote(&node.name),
            marker = quoted(&node.marker),
            dir = quoted(dir)
        ),
    )
    .await
    .map(|_| ())
}

/// Removes `node`'s marker durably.
pub async fn remove_marker(node: &Node) -> Result<(), FailoverError> {
    let dir = node.marker.parent().unwrap_or(Path::new("/"));
    node.run(
        "removing the marker",
        &format!("rm -f {} && sync {}", quoted(&node.marker), quoted(dir)),
    )
    .await
    .map(|_| ())
}
