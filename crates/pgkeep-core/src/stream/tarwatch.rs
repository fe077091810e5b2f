//! A reader that watches a tar stream go by and keeps copies of a few small members
//! (`backup_label`, `backup_manifest`) without changing or buffering the stream.

use std::sync::{Arc, Mutex};

use super::tap::{See, Tap};

/// Members larger than this are not kept whole: only their last [`TAIL`] bytes are.
const KEEP_WHOLE: usize = 64 * 1024 * 1024;
/// How much of an oversized member is kept.
const TAIL: usize = 256 * 1024;

/// A captured member.
#[derive(Debug, Clone, Default)]
pub(crate) struct Captured {
    /// The content, or its last [`TAIL`] bytes when `truncated`.
    pub(crate) bytes: Vec<u8>,
    /// Whether the start was dropped.
    pub(crate) truncated: bool,
    /// When its header went by.
    pub(crate) seen_at: Option<std::time::Instant>,
}

#[derive(Debug, Default)]
struct State {
    header: Vec<u8>,
    /// Bytes of the current member's content still to come.
    content_left: u64,
    /// Padding bytes after the content.
    padding_left: u64,
    /// Index into `wanted` of the member being captured.
    capturing: Option<usize>,
    wanted: Vec<(String, Captured)>,
    ended: bool,
}

impl State {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.ended {
            if self.content_left > 0 {
                let n = (self.content_left as usize).min(data.len());
                if let Some(i) = self.capturing {
                    let cap = &mut self.wanted[i].1;
                    cap.bytes.extend_from_slice(&data[..n]);
                    if cap.bytes.len() > KEEP_WHOLE + TAIL {
                        let cut = cap.bytes.len() - TAIL;
                        cap.bytes.drain(..cut);
                        cap.truncated = true;
                    }
                }
                self.content_left -= n as u64;
                data = &data[n..];
                if self.content_left == 0 {
                    self.capturing = None;
                }
                continue;
            }
            if self.padding_left > 0 {
                let n = (self.padding_left as usize).min(data.len());
                self.padding_left -= n as u64;
                data = &data[n..];
                continue;
            }
            let n = (512 - self.header.len()).min(data.len());
            self.header.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.header.len() == 512 {
                self.parse_header();
                self.header.clear();
            }
        }
    }

    fn parse_header(&mut self) {
        let h = &self.header;
        if h.iter().all(|b| *b == 0) {
            // An end-of-archive block; a second one ends the archive.
            return;
        }
        let size = parse_size(&h[124..136]);
        let name = cstr(&h[..100]);
        let prefix = if &h[257..262] == b"ustar" {
            cstr(&h[345..500])
        } else {
            String::new()
        };
        let full = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}/{name}")
        };
        let typeflag = h[156];
        let Some(size) = size else {
            // Not a header we understand: stop watching rather than guess.
            self.ended = true;
            return;
        };
        self.content_left = size;
        self.padding_left = (512 - size % 512) % 512;
        self.capturing = None;
        if matches!(typeflag, b'0' | 0) {
            let full = full.trim_start_matches("./");
            if let Some(i) = self.wanted.iter().position(|(n, _)| n == full) {
                self.wanted[i].1 = Captured {
                    seen_at: Some(std::time::Instant::now()),
                    ..Captured::default()
                };
                self.capturing = (size > 0).then_some(i);
            }
        }
    }
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Octal, or base-256 when the top bit of the first byte is set (GNU, for sizes of 8 GiB and more).
fn parse_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(n);
    }
    let text = cstr(field);
    let text = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if text.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(text, 8).ok()
}

/// A reader of a tar stream that keeps the members it watches for; [`TarWatch::handle`] gives
/// them afterwards.
pub(crate) type TarWatch<R> = Tap<R, Watched>;

/// Access to what a [`TarWatch`] captured.
#[derive(Clone)]
pub(crate) struct Watched(Arc<Mutex<State>>);

impl Watched {
    /// The last copy of member `name`, if it went by.
    pub(crate) fn get(&self, name: &str) -> Option<Captured> {
        let state = self.0.lock().expect("not poisoned");
        state
            .wanted
            .iter()
            .find(|(n, c)| n == name && (!c.bytes.is_empty() || c.truncated))
            .map(|(_, c)| c.clone())
    }
}

impl See for Watched {
    fn see(&mut self, data: &[u8]) {
        self.0.lock().expect("not poisoned").feed(data);
    }
}

impl<R> TarWatch<R> {
    /// Watches `inner` for the members named in `wanted`.
    pub(crate) fn new(inner: R, wanted: &[&str]) -> TarWatch<R> {
        let state = State {
            wanted: wanted
                .iter()
                .map(|n| (n.to_string(), Captured::default()))
                .collect(),
            ..State::default()
        };
        Tap::with(inner, Watched(Arc::new(Mutex::new(state))))
    }

    /// A handle to read the captures once the stream has been consumed.
    pub(crate) fn handle(&self) -> Watched {
        self.observer().clone()
    }
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context, Poll};

    use tokio::io::{AsyncRead, ReadBuf};

    use super::*;

    fn header(name: &str, size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        let size = format!("{size:011o}\0");
        h[124..136].copy_from_slice(size.as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h
    }

    fn member(name: &str, content: &[u8]) -> Vec<u8> {
        let mut out = header(name, content.len() as u64);
        out.extend_from_slice(content);
        out.resize(out.len() + (512 - content.len() % 512) % 512, 0);
        out
    }

    #[tokio::test]
    async fn captures_named_members_in_any_chunking() {
        let mut tar = member("PG_VERSION", b"15\n");
        tar.extend(member("backup_label", b"START WAL LOCATION: 0/2000028\n"));
        tar.extend(member("base/1/1234", &vec![7u8; 5000]));
        tar.extend(member("backup_manifest", b"{\"WAL-Ranges\": []}"));
        tar.extend(vec![0u8; 1024]);
        for chunk in [1, 7, 511, 512, 4096] {
            let reader = ChunkedReader {
                data: tar.clone(),
                pos: 0,
                chunk,
            };
            let mut watch = TarWatch::new(reader, &["backup_label", "backup_manifest"]);
            let handle = watch.handle();
            let mut out = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut watch, &mut out)
                .await
                .unwrap();
            assert_eq!(out, tar, "the stream passes unchanged");
            assert_eq!(
                handle.get("backup_label").unwrap().bytes,
                b"START WAL LOCATION: 0/2000028\n"
            );
            assert_eq!(
                handle.get("backup_manifest").unwrap().bytes,
                b"{\"WAL-Ranges\": []}"
            );
            assert!(handle.get("PG_VERSION").is_none());
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size(b"00000001750\0"), Some(1000));
        let mut big = [0u8; 12];
        big[0] = 0x80;
        big[7] = 0x02; // 2 << 32
        assert_eq!(parse_size(&big), Some(2 << 32));
    }

    struct ChunkedReader {
        data: Vec<u8>,
        pos: usize,
        chunk: usize,
    }

    impl AsyncRead for ChunkedReader {
        fn poll_read(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let n = self
                .chunk
                .min(self.data.len() - self.pos)
                .min(buf.remaining());
            let pos = self.pos;
            buf.put_slice(&self.data[pos..pos + n]);
            self.pos += n;
            Poll::Ready(Ok(()))
        }
    }
}
