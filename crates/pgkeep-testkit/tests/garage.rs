//! Tests of the shared Garage S3 server.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use pgkeep_testkit::{FaultMode, FaultProxy, Garage};

/// A raw, unsigned HTTP/1.1 GET; returns the whole response.
fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    response
}

#[test]
fn garage_starts_with_bucket_and_key() {
    let t = Instant::now();
    let Some(garage) = Garage::shared() else {
        return;
    };
    eprintln!(
        "Garage ready in {:?} (startup {:?})",
        t.elapsed(),
        garage.startup_time()
    );
    assert!(std::ptr::eq(garage, Garage::shared().unwrap()));
    assert_eq!(garage.region(), "garage");
    assert_eq!(garage.bucket(), "pgkeep-test");
    assert_eq!(garage.endpoint(), format!("http://{}", garage.s3_addr()));

    let info = garage.cli(&["bucket", "info", garage.bucket()]);
    assert!(info.contains("pgkeep-test"), "{info}");
    assert!(info.contains(garage.access_key_id()), "{info}");
    let key = garage.cli(&["key", "info", garage.access_key_id()]);
    assert!(key.contains("pgkeep-test"), "{key}");

    // The S3 API answers (an unsigned request is refused, S3-style).
    let response = http_get(garage.s3_addr(), "/pgkeep-test/");
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    assert!(response.contains("AccessDenied"), "{response}");

    let env = garage.env_vars();
    let names: Vec<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_REGION",
            "AWS_ENDPOINT_URL"
        ]
    );

    let a = garage.unique_prefix("tests::my_test");
    let b = garage.unique_prefix("tests::my_test");
    assert_ne!(a, b);
    assert!(a.starts_with("tests--my_test-"), "{a}");
}

#[test]
fn garage_own_bucket() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let name = garage.create_bucket("My_Test::Bucket");
    assert!(name.starts_with("my-test--bucket-"), "{name}");
    let info = garage.cli(&["bucket", "info", &name]);
    assert!(info.contains(garage.access_key_id()), "{info}");
}

#[test]
fn garage_behind_proxy() {
    let Some(garage) = Garage::shared() else {
        return;
    };
    let proxy = FaultProxy::start(garage.s3_addr());
    let response = http_get(proxy.addr(), "/pgkeep-test/");
    assert!(response.starts_with("HTTP/1.1 403"), "{response}");
    proxy.set_mode(FaultMode::ResetNext(1));
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut buf = [0u8; 64];
    assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    assert_eq!(proxy.connections(), 2);
}
