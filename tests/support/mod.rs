//! Test harness for the integration tests and benches (`mod support;`): the real parts on loopback,
//! one file per party. Each is a child process with its own temp dir and its output in files there
//! (proc.rs): the test OpenID provider ([`Op`], tests/op), Envoy ([`Envoy`], from the venv that
//! `scripts/setup` makes), the portcullis binary ([`Portcullis`]), Redis ([`Redis`]), Chromium
//! ([`Browser`]), nginx ([`Nginx`], deploy/nginx) and the real Amundsen ([`Amundsen`]), plus an in-process [`EchoUpstream`] that
//! records what reached it. Every child is killed on drop; when the test fails (panics) its stdout
//! and stderr are printed. Set `PORTCULLIS_TEST_LOGS=1` to print them always.
// Every test binary compiles the whole harness and uses a different part of it.
#![allow(dead_code)]

mod amundsen;
mod browser;
mod envoy;
mod nginx;
mod op;
mod portcullis;
mod proc;
mod redis;
mod upstream;

// A test names `support::Envoy`, whichever file holds it; each test binary uses only some.
#[allow(unused_imports)]
pub use {
    ::portcullis::testing::mint, amundsen::*, browser::*, envoy::*, nginx::*, op::*, portcullis::*,
    proc::*, redis::*, upstream::*,
};

use std::net::TcpListener as StdListener;
use std::path::PathBuf;
use std::time::Duration;

/// The repository root (where Cargo.toml is).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that is free now, for a process started later to listen on. Taken from below
/// the range the kernel hands out for port 0 and for outgoing connections (32768 and up): a port
/// from that range, released, was once given to a connection before Envoy could bind it. Ports
/// are picked in turn from a random start, so two picks in one process never collide.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    const LOW: u16 = 10_000;
    const SPAN: u16 = 22_768; // up to 32767
    static NEXT: AtomicU16 = AtomicU16::new(u16::MAX);
    let _ = NEXT.compare_exchange(
        u16::MAX,
        rand::random::<u16>() % SPAN,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..SPAN {
        let port = LOW + NEXT.fetch_add(1, Ordering::SeqCst) % SPAN;
        if StdListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port from {LOW} to {}", LOW + SPAN - 1);
}

/// An HTTP client for tests: no proxy from the environment, no redirects followed (a test wants
/// to see the 302), a 10 s limit per request.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// What a script (`Accept: application/json`) gets for `GET url` with `cookie` (and `host` as the
/// Host header, when given): 200, or the 401 that a missing or refused session gets.
pub async fn status_with_cookie(url: &str, host: Option<&str>, cookie: &str) -> u16 {
    let mut request = http_client()
        .get(url)
        .header("cookie", cookie)
        .header("accept", "application/json");
    if let Some(host) = host {
        request = request.header("host", host);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Sends `GET <path> HTTP/1.1` to 127.0.0.1:`port` with `path` exactly as given (HTTP clients
/// resolve "..", "%2e" and "//" before sending, which would hide what the server does with them)
/// and returns the status code.
pub async fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    raw_head(port, path, headers).await.status
}

/// The status line and headers of an answer read off the wire.
pub struct RawHead {
    pub status: u16,
    /// `(lowercase name, value)`, in the order sent.
    pub headers: Vec<(String, String)>,
}

impl RawHead {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// [`raw_get`], with the answer's headers. A `host` among `headers` replaces the default
/// `127.0.0.1:<port>`, exactly as given.
pub async fn raw_head(port: u16, path: &str, headers: &[(&str, &str)]) -> RawHead {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut request = format!("GET {path} HTTP/1.1\r\nconnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        request.push_str(&format!("host: 127.0.0.1:{port}\r\n"));
    }
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // Only the head: a server that refuses may hold the connection open for a while.
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !response.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("response within 10 s");
    let head = String::from_utf8_lossy(&response);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {head:?}"));
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    RawHead { status, headers }
}

/// Seconds since the epoch, for `iat`/`exp`.
pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// A fresh `session.secret`: base64 of 32 random bytes.
pub fn session_secret() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>())
}
