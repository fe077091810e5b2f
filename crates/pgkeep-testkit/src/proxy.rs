//! A fault-injecting TCP proxy for failure tests: a real server behind it,
//! faults on top.
//!
//! [`FaultProxy::start`] listens on a free port of 127.0.0.1 and forwards every
//! connection to the target, unless told otherwise with
//! [`FaultProxy::set_mode`]. It runs on its own thread with its own
//! single-threaded tokio runtime, so it works from sync and async tests alike,
//! and stops when dropped.
//!
//! ```no_run
//! # use pgkeep_testkit::{FaultMode, FaultProxy};
//! # let target: std::net::SocketAddr = "127.0.0.1:9000".parse().unwrap();
//! let proxy = FaultProxy::start(target);
//! // point the client at proxy.addr() ...
//! proxy.set_mode(FaultMode::ResetNext(2)); // the next two connections fail
//! ```

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};

/// What the proxy does with connections; see [`FaultProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Forward everything (the default).
    PassThrough,
    /// Accept the next `n` connections and reset them at once (TCP RST,
    /// nothing forwarded), then go back to [`PassThrough`](Self::PassThrough).
    ResetNext(usize),
    /// Reset every connection, new and already open: the target looks
    /// unreachable.
    ResetAll,
    /// Forward, but reset each connection once the client has sent `n` bytes
    /// through it (the first `n` bytes reach the target): interrupts an upload
    /// midway. With `0`, the reset comes with the client's first bytes.
    CutAfterBytes(u64),
    /// Forward, but end each connection once the target has sent `n` bytes back through it:
    /// interrupts a download midway, as a server or load balancer that drops a response does.
    /// The client receives exactly those `n` bytes and then an early end of stream (a FIN, not a
    /// reset: a reset would make the client's kernel discard bytes it has not read yet, so how
    /// much arrives would depend on timing).
    CutDownAfterBytes(u64),
    /// Answer the next `n` connections' first HTTP request with `503 Slow Down` and an S3
    /// `SlowDown` error body, as a throttling S3 store does, then go back to
    /// [`PassThrough`](Self::PassThrough).
    SlowDownNext(usize),
}

/// State shared between the test and the proxy thread.
#[derive(Debug)]
struct Shared {
    mode: Mutex<FaultMode>,
    /// Bumped to make every open connection reset.
    kill_epoch: watch::Sender<u64>,
    connections: AtomicUsize,
    bytes_to_target: AtomicU64,
}

/// What to do with one accepted connection.
#[derive(Debug, Clone, Copy)]
enum Action {
    Reset,
    SlowDown,
    Forward {
        cut_after: Option<u64>,
        cut_down_after: Option<u64>,
    },
}

impl Shared {
    /// Decides the fate of a newly accepted connection, counting down
    /// `ResetNext`.
    fn next_action(&self) -> Action {
        let mut mode = self.mode.lock().unwrap_or_else(|p| p.into_inner());
        match *mode {
            FaultMode::PassThrough => Action::Forward {
                cut_after: None,
                cut_down_after: None,
            },
            FaultMode::ResetNext(0) => {
                *mode = FaultMode::PassThrough;
                Action::Forward {
                    cut_after: None,
                    cut_down_after: None,
                }
            }
            FaultMode::ResetNext(n) => {
                *mode = if n == 1 {
                    FaultMode::PassThrough
                } else {
                    FaultMode::ResetNext(n - 1)
                };
                Action::Reset
            }
            FaultMode::ResetAll => Action::Reset,
            FaultMode::SlowDownNext(0) => {
                *mode = FaultMode::PassThrough;
                Action::Forward {
                    cut_after: None,
                    cut_down_after: None,
                }
            }
            FaultMode::SlowDownNext(n) => {
                *mode = if n == 1 {
                    FaultMode::PassThrough
                } else {
                    FaultMode::SlowDownNext(n - 1)
                };
                Action::SlowDown
            }
            FaultMode::CutAfterBytes(n) => Action::Forward {
                cut_after: Some(n),
                cut_down_after: None,
            },
            FaultMode::CutDownAfterBytes(n) => Action::Forward {
                cut_after: None,
                cut_down_after: Some(n),
            },
        }
    }
}

/// A fault-injecting TCP proxy; see the [module documentation](self).
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    target: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FaultProxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1, in
    /// [`FaultMode::PassThrough`]. Panics if it cannot bind or start.
    pub fn start(target: SocketAddr) -> FaultProxy {
        let listener = std::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap_or_else(|e| panic!("pgkeep-testkit: FaultProxy cannot bind: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("pgkeep-testkit: FaultProxy local_addr: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("pgkeep-testkit: FaultProxy set_nonblocking: {e}"));
        let shared = Arc::new(Shared {
            mode: Mutex::new(FaultMode::PassThrough),
            kill_epoch: watch::Sender::new(0),
            connections: AtomicUsize::new(0),
            bytes_to_target: AtomicU64::new(0),
        });
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("pgkeep-testkit: FaultProxy runtime: {e}"));
        let thread_shared = Arc::clone(&shared);
        let thread = thread::Builder::new()
            .name(format!("pgkeep-fault-proxy-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            eprintln!("pgkeep-testkit: FaultProxy cannot listen: {e}");
                            return;
                        }
                    };
                    tokio::select! {
                        _ = shutdown_rx => {}
                        _ = accept_loop(listener, target, thread_shared) => {}
                    }
                });
                // Dropping the runtime drops every connection task and socket.
                drop(runtime);
            })
            .unwrap_or_else(|e| panic!("pgkeep-testkit: FaultProxy thread: {e}"));
        FaultProxy {
            addr,
            target,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// The address clients should connect to instead of the target.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`, for pointing an HTTP/S3 client at the proxy.
    pub fn http_endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The address connections are forwarded to.
    pub fn target(&self) -> SocketAddr {
        self.target
    }

    /// Switches behaviour. It applies to connections accepted from now on;
    /// [`FaultMode::ResetAll`] also resets every connection already open.
    pub fn set_mode(&self, mode: FaultMode) {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner()) = mode;
        if mode == FaultMode::ResetAll {
            self.reset_open_connections();
        }
    }

    /// The current mode (`ResetNext` counts down as connections come in).
    pub fn mode(&self) -> FaultMode {
        *self.shared.mode.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resets every connection open right now, whatever the mode (e.g. to
    /// break a client's pooled keep-alive connections).
    pub fn reset_open_connections(&self) {
        self.shared.kill_epoch.send_modify(|e| *e += 1);
    }

    /// How many connections the proxy has accepted so far (reset or not).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// How many bytes have been forwarded from clients to the target.
    pub fn bytes_to_target(&self) -> u64 {
        self.shared.bytes_to_target.load(Ordering::SeqCst)
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn accept_loop(listener: TcpListener, target: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // E.g. EMFILE: back off a little rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        match shared.next_action() {
            Action::Reset => reset(client),
            Action::SlowDown => {
                tokio::spawn(slow_down(client));
            }
            Action::Forward {
                cut_after,
                cut_down_after,
            } => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    forward(client, target, cut_after, cut_down_after, shared).await;
                });
            }
        }
    }
}

/// Reads one HTTP request head and answers it with S3's throttling error, then closes.
async fn slow_down(mut client: TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match client.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>\
                <Message>Please reduce your request rate.</Message></Error>";
    let response = format!(
        "HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = client.write_all(response.as_bytes()).await;
    let _ = client.shutdown().await;
}

/// Closes `stream` with a TCP RST rather than a FIN.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

/// The error a pump returns at a deliberate cut.
#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("pgkeep-testkit: cut by FaultProxy")
    }
}

impl std::error::Error for Cut {}

fn cut_error() -> io::Error {
    io::Error::other(Cut)
}

fn is_cut(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<Cut>())
}

async fn forward(
    mut client: TcpStream,
    target: SocketAddr,
    cut_after: Option<u64>,
    cut_down_after: Option<u64>,
    shared: Arc<Shared>,
) {
    let mut kill = shared.kill_epoch.subscribe();
    kill.mark_unchanged();
    let Ok(mut server) = TcpStream::connect(target).await else {
        reset(client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let ending = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = pump(
            &mut client_read,
            &mut server_write,
            cut_after,
            &shared.bytes_to_target,
        );
        let bytes_from_target = AtomicU64::new(0);
        let down = pump(
            &mut server_read,
            &mut client_write,
            cut_down_after,
            &bytes_from_target,
        );
        tokio::select! {
            _ = kill.changed() => Ending::Reset,
            res = try_join(up, async { down.await.map_err(|e| (e, Ending::EndEarly)) }) => match res {
                Ok(()) => Ending::Clean,
                Err((e, ending)) if is_cut(&e) => ending,
                Err(_) => Ending::Reset,
            },
        }
    };
    match ending {
        Ending::Clean => {}
        Ending::EndEarly => {
            let _ = client.shutdown().await;
            reset(server);
        }
        Ending::Reset => {
            reset(client);
            reset(server);
        }
    }
}

/// How a forwarded connection ends.
#[derive(Debug, Clone, Copy)]
enum Ending {
    /// Both sides finished on their own.
    Clean,
    /// A downstream cut: FIN to the client, so it reads every byte sent before the cut.
    EndEarly,
    /// An upstream cut, a kill, or a broken side: RST both ways.
    Reset,
}

/// Runs both pumps to completion, or until the first error; an upstream error means a reset.
async fn try_join(
    up: impl Future<Output = io::Result<()>>,
    down: impl Future<Output = Result<(), (io::Error, Ending)>>,
) -> Result<(), (io::Error, Ending)> {
    let up = async { up.await.map_err(|e| (e, Ending::Reset)) };
    tokio::try_join!(up, down).map(|_| ())
}

/// Copies `from` to `to` until EOF (then shuts `to` down for writing), or
/// until `limit` bytes have been copied (then fails with [`cut_error`]).
async fn pump(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
    limit: Option<u64>,
    counter: &AtomicU64,
) -> io::Result<()> {
    let mut buf = vec![0u8; 32 * 1024];
    let mut sent: u64 = 0;
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            to.shutdown().await?;
            return Ok(());
        }
        let allowed = match limit {
            Some(limit) => (limit.saturating_sub(sent)).min(n as u64) as usize,
            None => n,
        };
        if allowed > 0 {
            to.write_all(&buf[..allowed]).await?;
            sent += allowed as u64;
            counter.fetch_add(allowed as u64, Ordering::SeqCst);
        }
        if limit.is_some_and(|limit| sent >= limit) {
            to.flush().await?;
            return Err(cut_error());
        }
    }
}
