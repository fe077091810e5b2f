//! Shared pieces of pgkeep's benchmarks: a fast source of incompressible bytes and the process
//! statistics (CPU time, peak resident memory, per-thread CPU) that the `pipeline-bench` binary
//! reports next to its throughput numbers.
//!
//! Everything here reads Linux's `/proc/self`; on another OS the statistics come back empty.
//! `benches/foundation.sh` runs the whole benchmark and writes `docs/performance.md`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use rand::rngs::SmallRng;
use rand::{RngCore, SeedableRng};
use tokio::io::{AsyncRead, ReadBuf};

/// One mebibyte.
pub const MIB: u64 = 1024 * 1024;

/// An [`AsyncRead`] yielding `len` pseudo-random (incompressible) bytes from a xoshiro256++
/// generator ([`SmallRng`]), written straight into the caller's buffer: no extra copy, and always
/// ready, so the consumer never waits for it.
#[derive(Debug)]
pub struct RandomReader {
    rng: SmallRng,
    remaining: u64,
}

impl RandomReader {
    /// `len` bytes; the same `seed` gives the same bytes for the same sequence of read sizes.
    pub fn new(len: u64, seed: u64) -> RandomReader {
        RandomReader {
            rng: SmallRng::seed_from_u64(seed),
            remaining: len,
        }
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }
}

impl AsyncRead for RandomReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let n = (out.remaining() as u64).min(this.remaining) as usize;
        if n > 0 {
            let dst = out.initialize_unfilled_to(n);
            this.rng.fill_bytes(dst);
            out.advance(n);
            this.remaining -= n as u64;
        }
        Poll::Ready(Ok(()))
    }
}

/// `len` pseudo-random bytes in memory (a pool that the component benchmarks cycle through).
pub fn random_pool(len: usize, seed: u64) -> Vec<u8> {
    let mut pool = vec![0u8; len];
    SmallRng::seed_from_u64(seed).fill_bytes(&mut pool);
    pool
}

/// Linux's clock ticks per second for `/proc/*/stat` CPU times (`getconf CLK_TCK`; 100 on every
/// mainstream architecture).
const CLK_TCK: f64 = 100.0;

/// CPU time of this process so far: `(user, system)` seconds, from `/proc/self/stat`.
pub fn process_cpu() -> (f64, f64) {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|stat| stat_cpu(&stat))
        .unwrap_or((0.0, 0.0))
}

/// Parses `(user, system)` seconds out of a `/proc/<pid>/stat` line (fields 14 and 15, counted
/// after the parenthesised command name, which may contain spaces).
fn stat_cpu(stat: &str) -> Option<(f64, f64)> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    // after_comm starts at field 3 (state); utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime / CLK_TCK, stime / CLK_TCK))
}

/// A field of `/proc/self/status` given in kB, in bytes (e.g. `VmHWM`, `VmRSS`).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kb: u64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Peak resident set size of this process since it started or since the last
/// [`reset_peak_rss`], in bytes (`VmHWM`); 0 if unknown.
pub fn peak_rss() -> u64 {
    status_kb("VmHWM").unwrap_or(0)
}

/// Current resident set size, in bytes (`VmRSS`); 0 if unknown.
pub fn current_rss() -> u64 {
    status_kb("VmRSS").unwrap_or(0)
}

/// Resets the peak resident set size to the current one (writes `5` to `/proc/self/clear_refs`),
/// so that [`peak_rss`] then measures one phase alone. Returns whether the kernel accepted it.
pub fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// CPU seconds (user + system) of each thread of this process: `(thread name, tid, seconds)`,
/// busiest first. Threads inherit their creator's name, so zstd's workers carry the name of the
/// thread that created the encoder.
pub fn thread_cpu() -> Vec<(String, u32, f64)> {
    let Ok(entries) = std::fs::read_dir("/proc/self/task") else {
        return Vec::new();
    };
    let mut out: Vec<(String, u32, f64)> = entries
        .flatten()
        .filter_map(|entry| {
            let tid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_string();
            let (user, sys) = stat_cpu(&stat)?;
            Some((name, tid, user + sys))
        })
        .collect();
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    out
}

/// Wall time and CPU time of one measured phase.
#[derive(Debug, Clone, Copy)]
pub struct Phase {
    started: Instant,
    cpu: (f64, f64),
}

/// What a [`Phase`] measured.
#[derive(Debug, Clone, Copy)]
pub struct PhaseResult {
    /// Wall-clock seconds.
    pub seconds: f64,
    /// User CPU seconds (all threads).
    pub user: f64,
    /// System CPU seconds (all threads).
    pub sys: f64,
}

impl Phase {
    /// Starts measuring now.
    pub fn start() -> Phase {
        Phase {
            cpu: process_cpu(),
            started: Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn finish(&self) -> PhaseResult {
        let seconds = self.started.elapsed().as_secs_f64();
        let (user, sys) = process_cpu();
        PhaseResult {
            seconds,
            user: user - self.cpu.0,
            sys: sys - self.cpu.1,
        }
    }
}

/// MiB per second for `bytes` in `seconds`.
pub fn mib_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / MIB as f64 / seconds
    } else {
        0.0
    }
}

/// A [`PhaseResult`] over `bytes` as JSON: seconds, MiB/s, CPU seconds and CPU cores busy.
pub fn phase_json(bytes: u64, r: &PhaseResult) -> serde_json::Value {
    let cpu = r.user + r.sys;
    serde_json::json!({
        "seconds": round3(r.seconds),
        "mib_s": round1(mib_per_s(bytes, r.seconds)),
        "cpu_user_s": round3(r.user),
        "cpu_sys_s": round3(r.sys),
        "cores_busy": if r.seconds > 0.0 { round3(cpu / r.seconds) } else { 0.0 },
    })
}

/// Rounds to 1 decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Rounds to 3 decimals.
pub fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn parses_stat_with_spaces_in_the_name() {
        let stat = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0";
        assert_eq!(stat_cpu(stat), Some((2.5, 0.5)));
    }

    #[tokio::test]
    async fn random_reader_yields_exactly_len_incompressible_bytes() {
        let mut data = Vec::new();
        RandomReader::new(3 * MIB + 5, 7)
            .read_to_end(&mut data)
            .await
            .expect("read");
        assert_eq!(data.len() as u64, 3 * MIB + 5);
        let compressed = zstd::encode_all(&data[..], 3).expect("zstd");
        assert!(compressed.len() as u64 > 3 * MIB);
    }
}
