//! The file list of a local-mode base backup (`files.json.zst`): every entry of the data directory
//! in the order a restore creates them, and for each file where its chunks lie. A chunk is one
//! zstd frame (with zstd's content checksum) inside a bundle object; a bundle's frames, decoded one
//! after the other, give the bytes whose size and sha256 its manifest entry records.

use serde::{Deserialize, Serialize};

/// The file list's format version.
pub(crate) const LIST_VERSION: u32 = 1;

/// Bytes of a file read, compressed and stored as one frame.
pub(crate) const CHUNK_SIZE: u64 = 4 << 20;

/// A bundle is sealed and stored once it holds this many compressed bytes.
pub(crate) const BUNDLE_TARGET: usize = 8 << 20;

/// The whole list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileList {
    /// [`LIST_VERSION`].
    pub(crate) version: u32,
    /// The bundles' keys; a chunk names its bundle by position here.
    pub(crate) bundles: Vec<String>,
    /// Parents before children.
    pub(crate) entries: Vec<Listed>,
}

/// One entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Listed {
    /// Below the data directory, `/`-separated.
    pub(crate) path: String,
    /// Permission bits.
    pub(crate) mode: u32,
    /// What it is.
    #[serde(flatten)]
    pub(crate) kind: ListedKind,
}

/// A directory, a file and its chunks, or a symbolic link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ListedKind {
    Dir,
    File { size: u64, chunks: Vec<Chunk> },
    Link { target: String },
}

/// Where one chunk of a file is: `[bundle, at, stored, offset, size]` — the bundle's position in
/// [`FileList::bundles`], the frame's start and length in it, and the bytes' place in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Chunk(
    pub(crate) u32,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
);

impl Chunk {
    pub(crate) fn bundle(&self) -> usize {
        self.0 as usize
    }
    pub(crate) fn frame(&self) -> std::ops::Range<usize> {
        self.1 as usize..(self.1 + self.2) as usize
    }
    pub(crate) fn offset(&self) -> u64 {
        self.3
    }
    pub(crate) fn size(&self) -> u64 {
        self.4
    }
}

/// Whether a listed path is safe to create below a target directory: relative, `/`-separated, no
/// empty, `.` or `..` part.
pub(crate) fn is_clean_path(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_reads_back_and_paths_are_checked() {
        let list = FileList {
            version: LIST_VERSION,
            bundles: vec!["main/backups/x/files/000000.zst".into()],
            entries: vec![
                Listed {
                    path: "base".into(),
                    mode: 0o700,
                    kind: ListedKind::Dir,
                },
                Listed {
                    path: "base/1/1259".into(),
                    mode: 0o600,
                    kind: ListedKind::File {
                        size: 8192,
                        chunks: vec![Chunk(0, 0, 120, 0, 8192)],
                    },
                },
            ],
        };
        let text = serde_json::to_string(&list).unwrap();
        assert!(
            text.contains(r#""type":"file","size":8192,"chunks":[[0,0,120,0,8192]]"#),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<FileList>(&text).unwrap(), list);
        for bad in ["", "/etc/passwd", "base/../../x", "a//b", "./a", "a/."] {
            assert!(!is_clean_path(bad), "{bad:?}");
        }
        assert!(is_clean_path("base/1/1259") && is_clean_path("pg_wal"));
    }
}
