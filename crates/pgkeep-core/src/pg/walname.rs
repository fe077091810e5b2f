//! The names of the files PostgreSQL writes into pg_wal and archives: segments, `.partial`
//! segments, timeline `.history` files and `.backup` history files.

/// The WAL segment size unless a backup recorded another one.
pub const DEFAULT_SEGMENT_SIZE: u64 = 16 * 1024 * 1024;

/// The name of segment `segno` of timeline `tli`.
pub fn segment_name(tli: u32, segno: u64, segment_size: u64) -> String {
    let per_id = 0x1_0000_0000 / segment_size;
    format!("{tli:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The kinds of file PostgreSQL archives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WalFile {
    /// A full segment, `000000010000000A000000FF`.
    Segment {
        /// Timeline.
        tli: u32,
        /// Segment number (`log * segments_per_id + seg`; needs the segment size to compute, so
        /// kept as the two name halves).
        log: u32,
        /// Low half of the name.
        seg: u32,
    },
    /// The last, incomplete segment of a timeline that a promotion ended, `<segment>.partial`.
    Partial {
        /// Timeline.
        tli: u32,
        /// The segment's name without `.partial`.
        segment: String,
    },
    /// A timeline history file, `00000002.history`.
    History {
        /// The timeline it describes.
        tli: u32,
    },
    /// A backup history file, `<segment>.<offset>.backup`.
    BackupHistory {
        /// Timeline.
        tli: u32,
    },
}

fn hex8(text: &str) -> Option<u32> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| u32::from_str_radix(text, 16).ok())
        .flatten()
}

fn is_segment_name(text: &str) -> bool {
    text.len() == 24 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl WalFile {
    /// Recognizes a file name PostgreSQL archives or asks for; `None` for anything else.
    pub fn parse(name: &str) -> Option<WalFile> {
        if is_segment_name(name) {
            return Some(WalFile::Segment {
                tli: hex8(&name[..8])?,
                log: hex8(&name[8..16])?,
                seg: hex8(&name[16..])?,
            });
        }
        if let Some(segment) = name.strip_suffix(".partial")
            && is_segment_name(segment)
        {
            return Some(WalFile::Partial {
                tli: hex8(&segment[..8])?,
                segment: segment.to_string(),
            });
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return Some(WalFile::History { tli: hex8(tli)? });
        }
        if let Some(rest) = name.strip_suffix(".backup")
            && let Some((segment, offset)) = rest.split_once('.')
            && is_segment_name(segment)
            && hex8(offset).is_some()
        {
            return Some(WalFile::BackupHistory {
                tli: hex8(&segment[..8])?,
            });
        }
        None
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match self {
            WalFile::Segment { tli, .. }
            | WalFile::Partial { tli, .. }
            | WalFile::History { tli }
            | WalFile::BackupHistory { tli } => *tli,
        }
    }

    /// For a full segment, its number.
    pub fn segno(&self, segment_size: u64) -> Option<u64> {
        match self {
            WalFile::Segment { log, seg, .. } => {
                Some(u64::from(*log) * (0x1_0000_0000 / segment_size) + u64::from(*seg))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pg::Lsn;

    #[test]
    fn names() {
        let seg = WalFile::parse("000000020000000A000000FF").unwrap();
        assert_eq!(seg.timeline(), 2);
        let segno = seg.segno(DEFAULT_SEGMENT_SIZE).unwrap();
        assert_eq!(segno, 0xA * 256 + 0xFF);
        assert_eq!(
            segment_name(2, segno, DEFAULT_SEGMENT_SIZE),
            "000000020000000A000000FF"
        );
        assert_eq!(
            segment_name(
                1,
                Lsn::parse("0/3000028").unwrap().segno(DEFAULT_SEGMENT_SIZE),
                DEFAULT_SEGMENT_SIZE
            ),
            "000000010000000000000003"
        );
        assert!(matches!(
            WalFile::parse("000000010000000000000003.partial"),
            Some(WalFile::Partial { tli: 1, .. })
        ));
        assert_eq!(
            WalFile::parse("00000003.history"),
            Some(WalFile::History { tli: 3 })
        );
        assert_eq!(
            WalFile::parse("000000010000000000000002.00000028.backup"),
            Some(WalFile::BackupHistory { tli: 1 })
        );
        for bad in [
            "RECOVERYXLOG",
            "0000000100000000000000",
            "../etc/passwd",
            "00000001.histor",
        ] {
            assert_eq!(WalFile::parse(bad), None, "{bad}");
        }
    }
}
