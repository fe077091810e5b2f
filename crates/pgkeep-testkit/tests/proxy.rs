//! Tests of the fault-injecting proxy, against a real echo server and a real
//! PostgreSQL.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use pgkeep_testkit::{FaultMode, FaultProxy, PgCluster};

/// A TCP echo server on a free loopback port, running until the process ends.
fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

fn connect(proxy: &FaultProxy) -> TcpStream {
    let s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Sends `msg` and reads the echo back.
fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg)?;
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

/// Whether the connection is dead: reads fail or return EOF.
fn is_dead(s: &mut TcpStream) -> bool {
    let _ = s.write_all(b"x");
    let mut buf = [0u8; 16];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => {
            assert_ne!(
                e.kind(),
                ErrorKind::WouldBlock,
                "read timed out: still open"
            );
            true
        }
    }
}

#[test]
fn passes_through_and_resets() {
    let proxy = FaultProxy::start(echo_server());
    assert_eq!(proxy.mode(), FaultMode::PassThrough);

    let mut a = connect(&proxy);
    assert_eq!(round_trip(&mut a, b"hello").unwrap(), b"hello");

    proxy.set_mode(FaultMode::ResetNext(2));
    for _ in 0..2 {
        let mut s = connect(&proxy);
        assert!(is_dead(&mut s));
    }
    assert_eq!(proxy.mode(), FaultMode::PassThrough);
    let mut b = connect(&proxy);
    assert_eq!(round_trip(&mut b, b"again").unwrap(), b"again");
    // The connection opened before the faults is unaffected.
    assert_eq!(round_trip(&mut a, b"still").unwrap(), b"still");

    proxy.set_mode(FaultMode::ResetAll);
    assert!(is_dead(&mut a), "ResetAll resets open connections");
    assert!(is_dead(&mut b));
    let mut c = connect(&proxy);
    assert!(is_dead(&mut c));

    proxy.set_mode(FaultMode::PassThrough);
    let mut d = connect(&proxy);
    assert_eq!(round_trip(&mut d, b"back").unwrap(), b"back");
    assert_eq!(proxy.connections(), 6);
}

#[test]
fn cuts_after_bytes() {
    let proxy = FaultProxy::start(echo_server());
    proxy.set_mode(FaultMode::CutAfterBytes(10));
    let mut s = connect(&proxy);
    assert_eq!(round_trip(&mut s, b"12345").unwrap(), b"12345");
    // 5 more bytes reach the echo server, then the connection is reset.
    let _ = s.write_all(&[b'a'; 100]);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    assert!(got.len() <= 5, "got {} bytes back", got.len());
    assert_eq!(proxy.bytes_to_target(), 10);
}

#[test]
fn in_front_of_postgres() {
    let pg = PgCluster::start();
    let proxy = FaultProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, pg.port())));
    let psql = |port: u16| {
        Command::new(pg.bin("psql"))
            .args([
                "-X",
                "-A",
                "-t",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-c",
                "select 7",
            ])
            .arg("-p")
            .arg(port.to_string())
            .env("PGCONNECT_TIMEOUT", "5")
            .output()
            .unwrap()
    };
    let out = psql(proxy.addr().port());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7");

    proxy.set_mode(FaultMode::ResetAll);
    let out = psql(proxy.addr().port());
    assert!(!out.status.success());
    assert!(proxy.connections() >= 2);
}
