//! Progress on stderr: a live bar when stderr is a terminal, otherwise a plain line every
//! [`LINE_EVERY`] (cron mails and journald stay readable), and nothing with `-q` or `--json`.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use pgkeep_core::Progress;

const LINE_EVERY: Duration = Duration::from_secs(10);

/// The CLI's [`Progress`].
pub struct CliProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    bytes: AtomicU64,
    started: Instant,
    last_line: Mutex<Instant>,
}

impl CliProgress {
    /// A bar on a terminal, lines otherwise; `silent` shows nothing.
    pub fn new(silent: bool) -> CliProgress {
        let terminal = std::io::stderr().is_terminal();
        let bar = (terminal && !silent).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bytes} read ({bytes_per_sec}) {wide_msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        CliProgress {
            bar,
            lines: !terminal && !silent,
            bytes: AtomicU64::new(0),
            started: Instant::now(),
            last_line: Mutex::new(Instant::now()),
        }
    }

    /// Removes the bar before the final summary is printed.
    pub fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Progress for CliProgress {
    fn start(&self, item: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(item.to_string());
        } else if self.lines {
            eprintln!("pgkeep: {item}: started");
        }
    }

    fn advance(&self, item: &str, bytes: u64) {
        let total = self.bytes.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
            return;
        }
        if !self.lines {
            return;
        }
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        if last.elapsed() >= LINE_EVERY {
            *last = Instant::now();
            let seconds = self.started.elapsed().as_secs_f64();
            eprintln!(
                "pgkeep: {item}: {} read in {seconds:.0} s ({}/s)",
                HumanBytes(total),
                HumanBytes((total as f64 / seconds.max(0.001)) as u64)
            );
        }
    }

    fn finish(&self, item: &str) {
        if self.lines {
            eprintln!("pgkeep: {item}: done");
        }
    }
}
