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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataEntry {
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

type Walked<T> = Result<T, String>;

impl Walker<'_> {
    fn byte(&mut self) -> Walked<u8> {
        let mut b = [0u8; 1];
        self.inner
            .read_exact(&mut b)
            .map_err(|e| format!("at byte {}: {e}", self.pos))?;
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
            Err(e) => Err(format!("at byte {}: {e}", self.pos)),
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
            .map_err(|e| format!("at byte {}: {e}", self.pos))?;
        self.pos += len as u64;
        Ok(Some(buf))
    }

    fn skip(&mut self, len: i64) -> Walked<()> {
        if len < 0 {
            return Err(format!("negative length {len} at byte {}", self.pos));
        }
        // Within the buffer this is no system call; `seek` would drop the buffer every time, and
        // uncompressed archives have one chunk per row.
        self.inner
            .seek_relative(len)
            .map_err(|e| format!("at byte {}: {e}", self.pos))?;
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
    file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
    let mut w = Walker {
        inner: BufReader::with_capacity(1 << 20, &mut *file),
        pos: 0,
        int_size: 4,
        off_size: 8,
        version: 0,
    };
    let mut magic = [0u8; 5];
    for b in &mut magic {
        *b = w.byte()?;
    }
    if &magic != b"PGDMP" {
        return Err("not a pg_dump custom-format archive".into());
    }
    let (major, minor, _rev) = (w.byte()?, w.byte()?, w.byte()?);
    w.version = version(major, minor);
    // 1.12 is PostgreSQL 9.5's format; 1.16 is PostgreSQL 17's. Others are left alone.
    if !(version(1, 12)..=version(1, 16)).contains(&w.version) {
        return Err(format!(
            "archive version {major}.{minor} is not one pgkeep knows"
        ));
    }
    w.int_size = usize::from(w.byte()?);
    w.off_size = usize::from(w.byte()?);
    if !(1..=8).contains(&w.int_size) || !(1..=8).contains(&w.off_size) {
        return Err("implausible integer sizes".into());
    }
    if w.byte()? != FORMAT_CUSTOM {
        return Err("not the custom format".into());
    }
    if w.version >= version(1, 15) {
        w.byte()?; // compression algorithm
    } else {
        w.int()?; // compression level
    }
    for _ in 0..7 {
        w.int()?; // creation time: sec, min, hour, mday, mon, year, isdst
    }
    w.string()?; // database name
    w.string()?; // server version
    w.string()?; // pg_dump version

    let count = w.int()?;
    let mut toc = HashMap::new();
    for _ in 0..count {
        let dump_id = w.int()?;
        w.int()?; // had dumper
        w.string()?; // table oid
        w.string()?; // oid
        w.string()?; // tag
        w.string()?; // desc
        w.int()?; // section
        w.string()?; // defn
        w.string()?; // drop statement
        w.string()?; // copy statement
        w.string()?; // namespace
        w.string()?; // tablespace
        if w.version >= version(1, 14) {
            w.string()?; // table access method
        }
        if w.version >= version(1, 16) {
            w.int()?; // relkind
        }
        w.string()?; // owner
        w.string()?; // "false": no OIDs
        while w.string()?.is_some() {} // dependencies, ended by NULL
        let flag_pos = w.pos;
        let (flag, offset) = w.offset()?;
        toc.insert(dump_id, (flag_pos, flag, offset));
    }

    let mut blocks = Vec::new();
    while let Some(kind) = w.byte_or_end()? {
        let start = w.pos - 1;
        let dump_id = w.int()?;
        let chunks = |w: &mut Walker| -> Walked<()> {
            loop {
                let len = w.int()?;
                if len == 0 {
                    return Ok(());
                }
                w.skip(len)?;
            }
        };
        match kind {
            BLOCK_DATA => chunks(&mut w)?,
            BLOCK_BLOBS => {
                while w.int()? != 0 {
                    chunks(&mut w)?;
                }
            }
            other => return Err(format!("unknown block type {other} at byte {start}")),
        }
        if !toc.contains_key(&dump_id) {
            return Err(format!(
                "data block for unknown entry {dump_id} at byte {start}"
            ));
        }
        blocks.push((dump_id, start));
    }
    Ok(Layout {
        off_size: w.off_size,
        toc,
        blocks,
    })
}

/// The data entries of an archive and the offsets its table of contents records.
pub fn data_offsets(path: &Path) -> Result<Vec<DataEntry>, String> {
    let mut file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
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
pub fn add_data_offsets(path: &Path) -> Result<usize, String> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    let layout = walk(&mut file)?;
    let mut patches = Vec::new();
    for (dump_id, start) in &layout.blocks {
        let (flag_pos, flag, _) = layout.toc[dump_id];
        match flag {
            OFFSET_NOT_SET => patches.push((flag_pos, *start)),
            OFFSET_SET => {}
            other => return Err(format!("entry {dump_id} has data but offset flag {other}")),
        }
    }
    if layout.off_size < 8
        && patches
            .iter()
            .any(|(_, start)| *start >> (8 * layout.off_size) != 0)
    {
        return Err("an offset does not fit the archive's offset size".into());
    }
    for (flag_pos, start) in &patches {
        let mut field = vec![OFFSET_SET];
        field.extend_from_slice(&start.to_le_bytes()[..layout.off_size]);
        file.seek(SeekFrom::Start(*flag_pos))
            .and_then(|_| file.write_all(&field))
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    file.flush().map_err(|e| e.to_string())?;
    Ok(patches.len())
}
