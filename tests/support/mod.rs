//! The end-to-end harness: real processes on loopback (the OpenID provider, portcullis, Envoy) and
//! an in-process upstream that records what it received. Every child is killed on drop, and its
//! log is printed when a test fails.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use serde_yaml_ng::Value;

pub const AUDIENCE: &str = "https://amundsen.example/api";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn need(path: &Path) -> PathBuf {
    assert!(
        path.exists(),
        "{} is missing: run scripts/setup first",
        path.display()
    );
    path.to_owned()
}

pub fn envoy_bin() -> PathBuf {
    need(&repo().join(".venv/bin/envoy"))
}

/// A child process with its output in a log file; killed on drop, log printed if the test failed.
pub struct Proc {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
    _dir: Arc<tempfile::TempDir>,
}

impl Proc {
    pub fn spawn(name: &'static str, cmd: &mut Command, dir: Arc<tempfile::TempDir>) -> Self {
        let log = dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Self {
            name,
            child,
            log,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (at most 15 s) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- {} log -----\n{}", self.name, self.log());
        }
    }
}

/// Polls `url` until it answers 200.
pub async fn wait_for(url: &str, what: &str, procs: &mut [&mut Proc]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(r) = reqwest::get(url).await
            && r.status() == 200
        {
            return;
        }
        for p in procs.iter_mut() {
            assert!(
                p.is_running(),
                "{} exited while waiting for {what}:\n{}",
                p.name,
                p.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not come up at {url}");
}

pub fn tempdir() -> Arc<tempfile::TempDir> {
    Arc::new(tempfile::tempdir().unwrap())
}

/// The test OpenID provider (tests/op), shaped like an Auth0 tenant, signing with fixture key rs256-a.
pub struct Op {
    pub proc: Proc,
    pub issuer: String,
}

impl Op {
    pub async fn start(dir: Arc<tempfile::TempDir>) -> Self {
        let port = free_port();
        let issuer = format!("http://127.0.0.1:{port}/");
        need(&repo().join("tests/op/node_modules"));
        let mut proc = Proc::spawn(
            "op",
            Command::new("node")
                .arg(repo().join("tests/op/op.mjs"))
                .env("OP_PORT", port.to_string())
                .env("OP_AUTH0_PATHS", "1")
                .env("OP_AUDIENCE", AUDIENCE)
                .env(
                    "OP_JWKS_FILE",
                    repo().join("tests/fixtures/keys/op-jwks.json"),
                ),
            dir,
        );
        wait_for(
            &format!("{issuer}.well-known/openid-configuration"),
            "the OpenID provider",
            &mut [&mut proc],
        )
        .await;
        Self { proc, issuer }
    }
}

/// portcullis itself, the binary under test.
pub struct Portcullis {
    pub proc: Proc,
    pub grpc_port: u16,
    pub admin: String,
}

impl Portcullis {
    /// `config` is YAML without `listen`; the ports are chosen here.
    pub async fn start(config: &str, dir: Arc<tempfile::TempDir>) -> Self {
        let grpc_port = free_port();
        let admin_port = free_port();
        let path = dir.path().join(format!("portcullis-{grpc_port}.yaml"));
        std::fs::write(
            &path,
            format!(
                "listen: {{grpc: 127.0.0.1:{grpc_port}, admin: 127.0.0.1:{admin_port}}}\n{config}"
            ),
        )
        .unwrap();
        let mut proc = Proc::spawn(
            "portcullis",
            Command::new(env!("CARGO_BIN_EXE_portcullis"))
                .args(["serve", "--config"])
                .arg(&path)
                .env("RUST_LOG", "portcullis=debug"),
            dir,
        );
        let admin = format!("http://127.0.0.1:{admin_port}");
        wait_for(&format!("{admin}/readyz"), "portcullis", &mut [&mut proc]).await;
        Self {
            proc,
            grpc_port,
            admin,
        }
    }
}

/// Envoy running a shipped config, with its ports moved to free loopback ones.
pub struct Envoy {
    pub proc: Proc,
    pub url: String,
}

impl Envoy {
    pub async fn shipped(
        file: &str,
        portcullis_port: u16,
        upstream_port: u16,
        dir: Arc<tempfile::TempDir>,
    ) -> Self {
        let text = std::fs::read_to_string(repo().join(file)).unwrap();
        let mut config: Value = serde_yaml_ng::from_str(&text).unwrap();
        let listen = free_port();
        let admin = free_port();
        set_port(&mut config["admin"]["address"]["socket_address"], admin);
        let listener = &mut config["static_resources"]["listeners"][0]["address"]["socket_address"];
        set_port(listener, listen);
        let Value::Sequence(clusters) = &mut config["static_resources"]["clusters"] else {
            panic!("{file}: no clusters");
        };
        for cluster in clusters {
            let port = match cluster["name"].as_str() {
                Some("portcullis") => portcullis_port,
                Some(_) => upstream_port,
                None => continue,
            };
            let endpoint =
                &mut cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"];
            set_port(&mut endpoint["address"]["socket_address"], port);
        }
        let path = dir.path().join(format!("envoy-{listen}.yaml"));
        std::fs::write(&path, serde_yaml_ng::to_string(&config).unwrap()).unwrap();
        let mut proc = Proc::spawn(
            "envoy",
            Command::new(envoy_bin()).arg("-c").arg(&path).args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "-l",
                "warn",
            ]),
            dir,
        );
        wait_for(
            &format!("http://127.0.0.1:{admin}/ready"),
            "Envoy",
            &mut [&mut proc],
        )
        .await;
        Self {
            proc,
            url: format!("http://127.0.0.1:{listen}"),
        }
    }
}

impl Envoy {
    /// Waits (up to 5 s: Envoy flushes its access log about once a second) for `text` in its log.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.proc.log().contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{text:?} not in Envoy's log:\n{}", self.proc.log());
    }
}

fn set_port(socket_address: &mut Value, port: u16) {
    socket_address["address"] = Value::String("127.0.0.1".into());
    socket_address["port_value"] = Value::Number(port.into());
}

/// An upstream that answers 200 and remembers the headers of every request it got.
#[derive(Clone, Default)]
pub struct Upstream {
    pub seen: Arc<Mutex<Vec<(String, HeaderMap)>>>,
    pub port: u16,
}

impl Upstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut up = Upstream {
            port: listener.local_addr().unwrap().port(),
            ..Default::default()
        };
        let seen = up.seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let seen = seen.clone();
            async move {
                seen.lock()
                    .unwrap()
                    .push((req.uri().to_string(), req.headers().clone()));
                "upstream ok\n"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        up.seen = up.seen.clone();
        up
    }

    /// The headers of the last request that reached the upstream.
    pub fn last(&self) -> HeaderMap {
        self.seen
            .lock()
            .unwrap()
            .last()
            .expect("the upstream saw no request")
            .1
            .clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

/// A JWT signed with a fixture key (kid = the key's name).
pub fn mint(key: &str, claims: &serde_json::Value) -> String {
    let pem = std::fs::read(repo().join(format!("tests/fixtures/keys/{key}.pem"))).unwrap();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some(key.to_owned());
    jsonwebtoken::encode(
        &header,
        claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap()
}

pub fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}
