//! `pipeline-bench`: throughput and memory of pgkeep's streaming pipeline, and of its pieces alone.
//!
//! Every run prints one JSON line on stdout. Subcommands:
//!
//! - `store` streams N GiB of incompressible pseudo-random bytes through
//!   `pgkeep_core::store_object` into a repository (`--repo file:///path` or
//!   `--repo s3://bucket/prefix`, the S3 endpoint and keys from flags or the standard `AWS_*`
//!   variables), then with `--fetch` reads it back through `fetch_object` into a sink, and
//!   deletes the object (unless `--keep`). Each phase reports wall time, MiB/s, CPU time, its own
//!   peak resident memory and the busiest threads. With `--keep` it keeps the object and prints
//!   it (`object`), and `fetch --object FILE` then reads it back in a process of its own, so that
//!   an outer `/usr/bin/time -v` measures each phase's peak memory separately.
//! - `gen` measures the random generator alone.
//! - `zstd` / `unzstd` measure zstd compression (multi-threaded, as the pipeline configures it) and
//!   decompression on an in-memory pool of random bytes, the way `zstd -b` does.
//! - `sha256` measures single-threaded sha256 (the `sha2` crate the pipeline uses) on the same pool.
//!
//! `benches/foundation.sh` runs all of them and writes `docs/performance.md`.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{Args, Parser, Subcommand};
use pgkeep_benches::{
    MIB, Phase, PhaseResult, RandomReader, current_rss, mib_per_s, peak_rss, phase_json,
    random_pool, reset_peak_rss, round1, thread_cpu,
};
use pgkeep_core::{
    Compression, PutMode, RepoLocation, S3Settings, Storage, StoredObject, open_storage,
};
use rand::{RngCore, SeedableRng};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "pipeline-bench",
    about = "Benchmarks pgkeep's streaming pipeline"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Store N GiB of random bytes through store_object (and fetch them back with --fetch).
    Store(StoreArgs),
    /// Fetch an object kept by `store --keep` through fetch_object into a sink, and delete it.
    Fetch(FetchArgs),
    /// Measure the random generator alone.
    Gen(SizeArgs),
    /// zstd compression of random bytes with the multi-threaded encoder.
    Zstd(ZstdArgs),
    /// zstd decompression (single-threaded, as in fetch_object) of compressed random bytes.
    Unzstd(ZstdArgs),
    /// Single-threaded sha256 of random bytes.
    Sha256(SizeArgs),
}

#[derive(Debug, Args)]
struct SizeArgs {
    /// How much data to process, in GiB (fractions allowed).
    #[arg(long, default_value_t = 1.0)]
    gib: f64,
    /// Size of the in-memory pool of random bytes cycled through, in MiB.
    #[arg(long, default_value_t = 256)]
    pool_mib: usize,
    /// Runs; the fastest is reported (the others are listed).
    #[arg(long, default_value_t = 3)]
    repeat: u32,
}

#[derive(Debug, Args)]
struct ZstdArgs {
    #[command(flatten)]
    size: SizeArgs,
    /// zstd level.
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// zstd worker threads (0: single-threaded mode, no workers).
    #[arg(long, default_value_t = 2)]
    threads: u32,
}

/// Where to store: the repository and, for S3, how to reach it.
#[derive(Debug, Args)]
struct RepoArgs {
    /// Repository: file:///absolute/path or s3://bucket/prefix.
    #[arg(long)]
    repo: String,
    /// S3 multipart part size, MiB.
    #[arg(long, default_value_t = 16)]
    part_size_mib: usize,
    /// S3 parts uploaded at once.
    #[arg(long, default_value_t = 4)]
    parts_in_flight: usize,
    /// S3 endpoint URL (path-style addressing is used when one is set).
    #[arg(long, env = "AWS_ENDPOINT_URL")]
    endpoint: Option<String>,
    /// S3 region.
    #[arg(long, env = "AWS_REGION")]
    region: Option<String>,
    /// S3 access key id.
    #[arg(long, env = "AWS_ACCESS_KEY_ID", hide_env_values = true)]
    access_key_id: Option<String>,
    /// S3 secret access key.
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_access_key: Option<String>,
}

#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// How much data to store, in GiB (fractions allowed).
    #[arg(long, default_value_t = 2.0)]
    gib: f64,
    /// Read the object back with fetch_object into a sink after storing it, in the same
    /// process. The peak memory of each phase is then measured by resetting the kernel's
    /// high-water mark between them, so an outer `/usr/bin/time` sees only the fetch's peak.
    #[arg(long)]
    fetch: bool,
    /// Keep the object instead of deleting it at the end (for a later `fetch --object`).
    #[arg(long)]
    keep: bool,
    /// zstd level.
    #[arg(long, default_value_t = 3)]
    level: i32,
    /// zstd worker threads; 0 means one per CPU (pgkeep's default).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Seed of the random data.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Debug, Args)]
struct FetchArgs {
    #[command(flatten)]
    repo: RepoArgs,
    /// A file holding the JSON line printed by `store --keep` (or just its `object` field).
    #[arg(long)]
    object: std::path::PathBuf,
    /// Keep the object instead of deleting it at the end.
    #[arg(long)]
    keep: bool,
}

fn bytes_of(gib: f64) -> u64 {
    (gib * 1024.0 * MIB as f64) as u64
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn mib(bytes: u64) -> f64 {
    round1(bytes as f64 / MIB as f64)
}

/// The busiest threads as JSON (name, CPU seconds), at most `n`.
fn busiest_threads(n: usize) -> Value {
    thread_cpu()
        .into_iter()
        .filter(|t| t.2 > 0.0)
        .take(n)
        .map(|(name, tid, cpu)| json!({ "name": name, "tid": tid, "cpu_s": round2(cpu) }))
        .collect()
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    static N: AtomicUsize = AtomicUsize::new(0);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name_fn(|| format!("rt-{}", N.fetch_add(1, Ordering::Relaxed)))
        .build()
}

/// Opens the repository: `(backend name, storage)`.
async fn open(args: &RepoArgs) -> Result<(&'static str, Arc<dyn Storage>), String> {
    let location = RepoLocation::parse(&args.repo).map_err(|e| e.to_string())?;
    let s3 = S3Settings {
        region: args.region.clone(),
        endpoint: args.endpoint.clone(),
        credentials: args
            .access_key_id
            .clone()
            .zip(args.secret_access_key.clone()),
        part_size: args.part_size_mib * MIB as usize,
        max_parts_in_flight: args.parts_in_flight,
        ..S3Settings::default()
    };
    let backend = match location {
        RepoLocation::Local(_) => "local",
        RepoLocation::S3 { .. } => "s3",
    };
    Ok((backend, open_storage(&location, &s3).await))
}

/// Fetches `stored` into a sink, measuring the phase alone (its CPU per thread, and with
/// `reset_rss` its own peak memory).
async fn fetch_phase(
    storage: &dyn Storage,
    stored: &StoredObject,
    reset_rss: bool,
) -> Result<Value, String> {
    let cpu_before = thread_cpu();
    if reset_rss {
        reset_peak_rss();
    }
    let phase = Phase::start();
    let n = pgkeep_core::fetch_object(storage, stored, &mut tokio::io::sink())
        .await
        .map_err(|e| format!("fetch: {e}"))?;
    let result = phase.finish();
    if n != stored.size {
        return Err(format!("fetched {n} bytes, expected {}", stored.size));
    }
    let mut out = phase_json(n, &result);
    out["peak_rss_mib"] = json!(mib(peak_rss()));
    // Per-thread CPU of this phase alone: subtract what each thread had used before.
    let mut threads: Vec<(String, u32, f64)> = thread_cpu()
        .into_iter()
        .map(|(name, tid, cpu)| {
            let before = cpu_before.iter().find(|t| t.1 == tid).map_or(0.0, |t| t.2);
            (name, tid, cpu - before)
        })
        .filter(|t| t.2 > 0.0)
        .collect();
    threads.sort_by(|a, b| b.2.total_cmp(&a.2));
    threads.truncate(6);
    out["threads"] = threads
        .into_iter()
        .map(|(name, tid, cpu)| json!({ "name": name, "tid": tid, "cpu_s": round2(cpu) }))
        .collect();
    Ok(out)
}

async fn store(args: StoreArgs) -> Result<Value, String> {
    let (backend, storage) = open(&args.repo).await?;
    let compression = Compression {
        level: args.level,
        threads: args.threads,
    };
    let len = bytes_of(args.gib);
    let key = format!("bench/{:016x}.zst", rand::random::<u64>());
    let rss_before = current_rss();

    let phase = Phase::start();
    let stored = pgkeep_core::store_object(
        &*storage,
        &key,
        RandomReader::new(len, args.seed),
        PutMode::Create,
        compression,
    )
    .await
    .map_err(|e| format!("store: {e}"))?;
    let result = phase.finish();
    if stored.size != len {
        return Err(format!("stored {} bytes, expected {len}", stored.size));
    }
    let mut store_json = phase_json(len, &result);
    store_json["peak_rss_mib"] = json!(mib(peak_rss()));
    store_json["threads"] = busiest_threads(6);

    let fetch_json = if args.fetch {
        fetch_phase(&*storage, &stored, true).await?
    } else {
        Value::Null
    };
    if !args.keep {
        storage
            .delete(&key)
            .await
            .map_err(|e| format!("delete: {e}"))?;
    }
    Ok(json!({
        "bench": "store",
        "backend": backend,
        "repo": storage.url(),
        "bytes": len,
        "stored_bytes": stored.stored_size,
        "level": compression.level,
        "threads": compression.threads,
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "part_size_mib": args.repo.part_size_mib,
        "parts_in_flight": args.repo.parts_in_flight,
        "rss_before_mib": mib(rss_before),
        "store": store_json,
        "fetch": fetch_json,
        "kept": args.keep,
        "object": serde_json::to_value(&stored).map_err(|e| e.to_string())?,
    }))
}

async fn fetch(args: FetchArgs) -> Result<Value, String> {
    let text = std::fs::read_to_string(&args.object)
        .map_err(|e| format!("{}: {e}", args.object.display()))?;
    let value: Value =
        serde_json::from_str(text.trim()).map_err(|e| format!("{}: {e}", args.object.display()))?;
    let object = value.get("object").cloned().unwrap_or(value);
    let stored: StoredObject = serde_json::from_value(object)
        .map_err(|e| format!("{}: not a stored object: {e}", args.object.display()))?;
    let (backend, storage) = open(&args.repo).await?;
    let rss_before = current_rss();
    let fetch_json = fetch_phase(&*storage, &stored, false).await?;
    if !args.keep {
        storage
            .delete(&stored.key)
            .await
            .map_err(|e| format!("delete: {e}"))?;
    }
    Ok(json!({
        "bench": "fetch",
        "backend": backend,
        "repo": storage.url(),
        "bytes": stored.size,
        "stored_bytes": stored.stored_size,
        "rss_before_mib": mib(rss_before),
        "fetch": fetch_json,
    }))
}

/// Runs `once` `repeat` times (at least once) and returns the fastest run as JSON (`result`) with
/// the throughput of every run (`runs_mib_s`): the first run also pays for first-touching memory,
/// which on some VMs is expensive (see docs/performance.md).
fn best_of(
    repeat: u32,
    mut once: impl FnMut() -> std::io::Result<(u64, PhaseResult)>,
) -> std::io::Result<Value> {
    let mut best: Option<(u64, PhaseResult)> = None;
    let mut runs = Vec::new();
    for _ in 0..repeat.max(1) {
        let (bytes, result) = once()?;
        runs.push(round1(mib_per_s(bytes, result.seconds)));
        if best.is_none_or(|(_, b)| result.seconds < b.seconds) {
            best = Some((bytes, result));
        }
    }
    let (bytes, result) = best.unwrap_or((0, Phase::start().finish()));
    Ok(json!({ "bytes": bytes, "result": phase_json(bytes, &result), "runs_mib_s": runs }))
}

/// The generator alone: filling one 1 MiB buffer over and over, as the pipeline's reads do.
fn generate(args: &SizeArgs) -> std::io::Result<Value> {
    let len = bytes_of(args.gib);
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut buf = vec![0u8; MIB as usize];
    let mut out = best_of(args.repeat, || {
        let mut sink = 0u8;
        let phase = Phase::start();
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(MIB) as usize;
            rng.fill_bytes(&mut buf[..n]);
            sink ^= buf[n - 1];
            done += n as u64;
        }
        let result = phase.finish();
        std::hint::black_box(sink);
        Ok((len, result))
    })?;
    out["bench"] = json!("gen");
    Ok(out)
}

/// Feeds `len` bytes of `pool` (cycled) to `f` in 1 MiB slices.
fn cycle(
    pool: &[u8],
    len: u64,
    mut f: impl FnMut(&[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let mut done = 0u64;
    let mut at = 0usize;
    while done < len {
        if at == pool.len() {
            at = 0;
        }
        let n = ((len - done) as usize)
            .min(MIB as usize)
            .min(pool.len() - at);
        f(&pool[at..at + n])?;
        at += n;
        done += n as u64;
    }
    Ok(())
}

/// Counts what is written to it.
#[derive(Default)]
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn new_encoder<W: Write>(
    out: W,
    level: i32,
    threads: u32,
) -> std::io::Result<zstd::stream::write::Encoder<'static, W>> {
    let mut encoder = zstd::stream::write::Encoder::new(out, level)?;
    if threads > 0 {
        encoder.multithread(threads)?;
    }
    encoder.include_checksum(true)?;
    Ok(encoder)
}

/// zstd compression alone, configured like the pipeline's (checksum on), into a counting sink.
fn compress(args: &ZstdArgs) -> std::io::Result<Value> {
    let len = bytes_of(args.size.gib);
    let pool = random_pool(args.size.pool_mib * MIB as usize, 2);
    let rss_before = current_rss();
    let rss_reset = reset_peak_rss();
    let mut compressed = 0u64;
    let mut out = best_of(args.size.repeat, || {
        let phase = Phase::start();
        let mut encoder = new_encoder(CountingSink::default(), args.level, args.threads)?;
        cycle(&pool, len, |chunk| encoder.write_all(chunk))?;
        compressed = encoder.finish()?.0;
        Ok((len, phase.finish()))
    })?;
    // What the encoder itself took: the peak above what was resident before (the pool).
    out["encoder_peak_rss_mib"] = if rss_reset {
        json!(mib(peak_rss().saturating_sub(rss_before)))
    } else {
        Value::Null
    };
    out["bench"] = json!("zstd");
    out["level"] = json!(args.level);
    out["threads"] = json!(args.threads);
    out["compressed_bytes"] = json!(compressed);
    out["ratio"] = json!((len as f64 / compressed as f64 * 10000.0).round() / 10000.0);
    Ok(out)
}

/// zstd decompression alone: the pool is compressed once, then decompressed until `len` bytes came
/// out, reading through the streaming decoder as `fetch_object` does.
fn decompress(args: &ZstdArgs) -> std::io::Result<Value> {
    let len = bytes_of(args.size.gib);
    let pool = random_pool(args.size.pool_mib * MIB as usize, 2);
    let mut encoder = new_encoder(Vec::new(), args.level, args.threads)?;
    encoder.write_all(&pool)?;
    let compressed = encoder.finish()?;
    drop(pool);
    let mut buf = vec![0u8; MIB as usize];
    let mut out = best_of(args.size.repeat, || {
        let mut done = 0u64;
        let phase = Phase::start();
        while done < len {
            let mut decoder = zstd::stream::read::Decoder::new(&compressed[..])?;
            loop {
                let n = std::io::Read::read(&mut decoder, &mut buf)?;
                if n == 0 || done >= len {
                    break;
                }
                done += n as u64;
            }
        }
        Ok((done, phase.finish()))
    })?;
    out["bench"] = json!("unzstd");
    out["level"] = json!(args.level);
    Ok(out)
}

/// sha256 alone, single-threaded, in 1 MiB updates.
fn sha256(args: &SizeArgs) -> std::io::Result<Value> {
    let len = bytes_of(args.gib);
    let pool = random_pool(args.pool_mib * MIB as usize, 3);
    let mut out = best_of(args.repeat, || {
        let phase = Phase::start();
        let mut hasher = Sha256::new();
        cycle(&pool, len, |chunk| {
            hasher.update(chunk);
            Ok(())
        })?;
        std::hint::black_box(hasher.finalize());
        Ok((len, phase.finish()))
    })?;
    out["bench"] = json!("sha256");
    Ok(out)
}

fn run(cli: Cli) -> Result<Value, String> {
    let io = |e: std::io::Error| e.to_string();
    match cli.command {
        Command::Store(args) => runtime().map_err(io)?.block_on(store(args)),
        Command::Fetch(args) => runtime().map_err(io)?.block_on(fetch(args)),
        Command::Gen(args) => generate(&args).map_err(io),
        Command::Zstd(args) => compress(&args).map_err(io),
        Command::Unzstd(args) => decompress(&args).map_err(io),
        Command::Sha256(args) => sha256(&args).map_err(io),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(value) => {
            println!("{value}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pipeline-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
