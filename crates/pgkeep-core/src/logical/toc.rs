//! pg_dump custom-format archives: giving a staged archive the data offsets that a dump written to a
//! pipe lacks.
//!
//! pg_dump can only record where each table's data starts when it writes to a seekable file. pgkeep
//! streams pg_dump's stdout, so its archives say "offset not set" for every data entry, and a
//! parallel `pg_restore -j` must scan the archive, one seek per data chunk (one chunk per row
//! without compression), to find each table's data. When a restore stages the archive in a file,
//! [`add_data_offsets`] walks it once and writes the offsets into the table of contents, exactly
//! where and how pg_dump writes them itself.
//!
//! The walk checks everything it reads (magic, format, version, every block's entry); anything it
//! does not understand leaves the file untouched, which is always safe: pg_restore still reads an
//! archive without offsets.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::storage::FileError;

/// `K_OFFSET_POS_NOT_SET`: the entry has data, but where is unknown.
const OFFSET_NOT_SET: u8 = 1;
/// `K_OFFSET_POS_SET`: the offset is known.
const OFFSET_SET: u8 = 2;
/// `BLK_DATA`: a table's data.
const BLOCK_DATA: u8 = 1;
/// `BLK_BLOBS`: large objects.
const BLOCK_BLOBS: u8 = 3;
/// `archCustom`.
const FORMAT_CUSTOM: u8 = 1;

const fn version(major: u8, minor: u8) -> u32 {
    (major as u32) << 16 | (minor as u32) << 8
}

/// One data entry of an archive's table of contents.
#[cfg(test)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DataEntry {
    /// pg_dump's id of the entry.
    pub dump_id: i64,
    /// Where its data block starts, if the table of contents says.
    pub offset: Option<u64>,
}

struct Walker<'a> {
    inner: BufReader<&'a mut File>,
    pos: u64,
    int_size: usize,
    off_size: usize,
    version: u32,
}

/// Why an archive's table of contents cannot be walked (the file is then left as it is).
#[derive(Debug, thiserror::Error)]
pub(crate) enum TocError {
    /// Reading failed.
    #[error("at byte {at}: {source}")]
    Read {
        /// Where.
        at: u64,
        /// Why.
        source: std::io::Error,
    },
    /// Opening, seeking or writing the file failed.
    #[error(transparent)]
    File(#[from] FileError),
    /// Something the walk does not understand.
    #[error("{0}")]
    Format(String),
}

type Walked<T> = Result<T, TocError>;

impl Walker<'_> {
    fn byte(&mut self) -> Walked<u8> {
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(|source| TocError::Read {
                at: self.pos,
                source,
            })?;
        self.pos += 1;
        Ok(b[0])
    }

    /// A byte, or `None` at the end of the file.
    fn byte_or_end(&mut self) -> Walked<Option<u8>> {
        let mut b = [0u8; 1];
        match self.inner.read(&mut b) {
            Ok(0) => Ok(None),
            Ok(_) => {
                self.pos += 1;
                Ok(Some(b[0]))
            }
            Err(source) => Err(TocError::Read {
                at: self.pos,
                source,
            }),
        }
    }

    /// `WriteInt`: a sign byte, then `int_size` bytes, least significant first.
    fn int(&mut self) -> Walked<i64> {
        let negative = self.byte()? != 0;
        let mut value: i64 = 0;
        for i in 0..self.int_size {
            value |= i64::from(self.byte()?) << (8 * i);
        }
        Ok(if negative { -value } else { value })
    }

    /// `WriteStr`: a length (-1 for NULL), then the bytes.
    fn string(&mut self) -> Walked<Option<Vec<u8>>> {
        let len = self.int()?;
        if len < 0 {
            return Ok(None);
        }
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|source| TocError::Read {
                at: self.pos,
                source,
            })?;
        self.pos += len as u64;
        Ok(Some(buf))
    }

    fn skip(&mut self, len: i64) -> Walked<()> {
        if len < 0 {
            return Err(TocError::Format(format!(
                "negative length {len} at byte {}",
                self.pos
            )));
        }
        // Within the buffer this is no system call; `seek` would drop the buffer every time, and
        // uncompressed archives have one chunk per row.
        self.inner
            .seek_relative(len)
            .map_err(|source| TocError::Read {
                at: self.pos,
                source,
            })?;
        self.pos += len as u64;
        Ok(())
    }

    /// `ReadOffset`: a flag byte, then `off_size` bytes, least significant first.
    fn offset(&mut self) -> Walked<(u8, u64)> {
        let flag = self.byte()?;
        let mut value: u64 = 0;
        for i in 0..self.off_size {
            value |= u64::from(self.byte()?) << (8 * i);
        }
        Ok((flag, value))
    }
}

/// The table of contents of an archive: each entry's id, where its offset field is, and what it
/// holds; plus where each data block actually starts.
struct Layout {
    off_size: usize,
    /// dump id -> (position of the offset flag, flag, offset)
    toc: HashMap<i64, (u64, u8, u64)>,
    /// dump id -> position of its data block, in file order
    blocks: Vec<(i64, u64)>,
}

fn walk(file: &mut File) -> Walked<Layout> {
    file.seek(SeekFrom::Start(0))
        .map_err(|source| TocError::Read { at: 0, source })?;
    let mut w = Walker {
        inner: BufReader::with_capacity(1 << 20, &mut *file),
        pos: 0,
        int_size: 4,
        off_size: 8,
        version: 0,
    };
    w.header()?;
    let toc = w.toc()?;
    let blocks = w.blocks(&toc)?;
    Ok(Layout {
        off_size: w.off_size,
        toc,
        blocks,
    })
}

impl Walker<'_> {
    /// The archive header, up to the table of contents; sets the version and integer sizes.
    fn header(&mut self) -> Walked<()> {
        let mut magic = [0u8; 5];
        for b in &mut magic {
            *b = self.byte()?;
        }
        if &magic != b"PGDMP" {
            return Err(TocError::Format(
                "not a pg_dump custom-format archive".into(),
            ));
        }
        let (major, minor, _rev) = (self.byte()?, self.byte()?, self.byte()?);
        self.version = version(major, minor);
        // 1.12 is PostgreSQL 9.5's format; 1.16 is PostgreSQL 17's. Others are left alone.
        if !(version(1, 12)..=version(1, 16)).contains(&self.version) {
            return Err(TocError::Format(format!(
                "archive version {major}.{minor} is not one pgkeep knows"
            )));
        }
        self.int_size = usize::from(self.byte()?);
        self.off_size = usize::from(self.byte()?);
        if !(1..=8).contains(&self.int_size) || !(1..=8).contains(&self.off_size) {
            return Err(TocError::Format("implausible integer sizes".into()));
        }
        if self.byte()? != FORMAT_CUSTOM {
            return Err(TocError::Format("not the custom format".into()));
        }
        if self.version >= version(1, 15) {
            self.byte()?; // compression algorithm
        } else {
            self.int()?; // compression level
        }
        for _ in 0..7 {
            self.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
        }
        self.string()?; // database name
        self.string()?; // server version
        self.string()?; // pg_dump version
        Ok(())
    }

    /// The table of contents: dump id -> (position of the offset flag, flag, offset).
    fn toc(&mut self) -> Walked<HashMap<i64, (u64, u8, u64)>> {
        let count = self.int()?;
        let mut toc = HashMap::new();
        for _ in 0..count {
            let dump_id = self.int()?;
            self.int()?; // had dumper
            self.string()?; // table oid
            self.string()?; // oid
            self.string()?; // tag
            self.string()?; // desc
            self.int()?; // section
            self.string()?; // defn
            self.string()?; // drop statement
            self.string()?; // copy statement
            self.string()?; // namespace
            self.string()?; // tablespace
            if self.version >= version(1, 14) {
                self.string()?; // table access method
            }
            if self.version >= version(1, 16) {
                self.int()?; // relkind
            }
            self.string()?; // owner
            self.string()?; // "false": no OIDs
            while self.string()?.is_some() {} // dependencies, ended by NULL
            let flag_pos = self.pos;
            let (flag, offset) = self.offset()?;
            toc.insert(dump_id, (flag_pos, flag, offset));
        }
        Ok(toc)
    }

    /// The data blocks after the table of contents: (dump id, position), in file order.
    fn blocks(&mut self, toc: &HashMap<i64, (u64, u8, u64)>) -> Walked<Vec<(i64, u64)>> {
        let mut blocks = Vec::new();
        while let Some(kind) = self.byte_or_end()? {
            let start = self.pos - 1;
            let dump_id = self.int()?;
            match kind {
                BLOCK_DATA => self.chunks()?,
                BLOCK_BLOBS => {
                    while self.int()? != 0 {
                        self.chunks()?;
                    }
                }
                other => {
                    return Err(TocError::Format(format!(
                        "unknown block type {other} at byte {start}"
                    )));
                }
            }
            if !toc.contains_key(&dump_id) {
                return Err(TocError::Format(format!(
                    "data block for unknown entry {dump_id} at byte {start}"
                )));
            }
            blocks.push((dump_id, start));
        }
        Ok(blocks)
    }

    /// Skips a block's chunks, up to the zero length that ends them.
    fn chunks(&mut self) -> Walked<()> {
        loop {
            let len = self.int()?;
            if len == 0 {
                return Ok(());
            }
            self.skip(len)?;
        }
    }
}

/// The data entries of an archive and the offsets its table of contents records.
#[cfg(test)]
fn data_offsets(path: &Path) -> Result<Vec<DataEntry>, TocError> {
    let mut file = File::open(path).map_err(|e| FileError::new("opening", path, e))?;
    let layout = walk(&mut file)?;
    let mut entries: Vec<DataEntry> = layout
        .blocks
        .iter()
        .map(|(id, _)| {
            let (_, flag, offset) = layout.toc[id];
            DataEntry {
                dump_id: *id,
                offset: (flag == OFFSET_SET).then_some(offset),
            }
        })
        .collect();
    entries.sort_by_key(|e| e.dump_id);
    Ok(entries)
}

/// Writes the data offsets into an archive's table of contents, where pg_dump left them unset.
/// Returns how many it wrote; on any doubt it writes nothing and says why.
pub(crate) fn add_data_offsets(path: &Path) -> Result<usize, TocError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| FileError::new("opening", path, e))?;
    let layout = walk(&mut file)?;
    let mut patches = Vec::new();
    for (dump_id, start) in &layout.blocks {
        let (flag_pos, flag, _) = layout.toc[dump_id];
        match flag {
            OFFSET_NOT_SET => patches.push((flag_pos, *start)),
            OFFSET_SET => {}
            other => {
                return Err(TocError::Format(format!(
                    "entry {dump_id} has data but offset flag {other}"
                )));
            }
        }
    }
    if layout.off_size < 8
        && patches
            .iter()
            .any(|(_, start)| *start >> (8 * layout.off_size) != 0)
    {
        return Err(TocError::Format(
            "an offset does not fit the archive's offset size".into(),
        ));
    }
    for (flag_pos, start) in &patches {
        let mut field = vec![OFFSET_SET];
        field.extend_from_slice(&start.to_le_bytes()[..layout.off_size]);
        file.seek(SeekFrom::Start(*flag_pos))
            .and_then(|_| file.write_all(&field))
            .map_err(|e| FileError::new("writing", path, e))?;
    }
    file.flush()
        .map_err(|e| FileError::new("writing", path, e))?;
    Ok(patches.len())
}

/// Data offsets added to a piped pg_dump archive match what pg_dump writes into a file itself, and
/// pg_restore -j restores the patched archive.
#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use pgkeep_testkit::PgCluster;

    use super::*;

    fn pg_dump(pg: &PgCluster, args: &[&str]) -> Command {
        let mut cmd = pg.client("pg_dump");
        cmd.args(["--format=custom", "--compress=0"]).args(args);
        cmd
    }

    #[test]
    fn offsets_of_a_piped_dump_match_pg_dumps_own() {
        let pg = PgCluster::start();
        pg.psql("CREATE DATABASE app");
        pg.psql_db(
            "app",
            "CREATE TABLE a AS SELECT g, md5(g::text) FROM generate_series(1, 20000) g;
             CREATE TABLE b AS SELECT g FROM generate_series(1, 10) g;
             CREATE TABLE empty (x int);
             SELECT lo_from_bytea(0, '\\x0102');",
        );
        let dir = tempfile::tempdir().unwrap();

        // Written to a pipe: no offsets.
        let piped = dir.path().join("piped.dump");
        let out = pg_dump(&pg, &["app"])
            .stdout(Stdio::piped())
            .output()
            .unwrap();
        assert!(out.status.success());
        std::fs::write(&piped, &out.stdout).unwrap();
        let before = data_offsets(&piped).unwrap();
        assert!(before.len() >= 3, "{before:?}");
        assert!(before.iter().all(|e| e.offset.is_none()), "{before:?}");

        // Written to a file by pg_dump itself: offsets set.
        let direct = dir.path().join("direct.dump");
        assert!(
            pg_dump(&pg, &["-f", direct.to_str().unwrap(), "app"])
                .status()
                .unwrap()
                .success()
        );
        let expected = data_offsets(&direct).unwrap();
        assert!(expected.iter().all(|e| e.offset.is_some()), "{expected:?}");

        assert_eq!(add_data_offsets(&piped).unwrap(), before.len());
        assert_eq!(data_offsets(&piped).unwrap(), expected);
        assert_eq!(
            add_data_offsets(&piped).unwrap(),
            0,
            "a second pass changes nothing"
        );

        // pg_restore -j reads the patched archive.
        pg.psql("CREATE DATABASE copy");
        let restored = pg
            .client("pg_restore")
            .args(["--jobs=2", "--exit-on-error", "-d", "copy"])
            .arg(&piped)
            .output()
            .unwrap();
        assert!(
            restored.status.success(),
            "{}",
            String::from_utf8_lossy(&restored.stderr)
        );
        assert_eq!(pg.psql_db("copy", "SELECT count(*) FROM a"), "20000");

        // Not an archive: refused, file untouched.
        let other = dir.path().join("other");
        std::fs::write(&other, b"hello").unwrap();
        assert!(add_data_offsets(&other).is_err());
        assert_eq!(std::fs::read(&other).unwrap(), b"hello");
    }
}
