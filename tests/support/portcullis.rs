//! The portcullis binary as a child process, and what it accepts without a login: a sealed session
//! cookie and the Check request Envoy sends.

use std::path::PathBuf;
use std::process::{Command, ExitStatus};
use std::time::Duration;

use serde_yaml_ng::Value;

use super::proc::tempdir;
use super::*;

// portcullis

pub struct Portcullis {
    pub proc: Proc,
    pub grpc_port: u16,
    /// `listen.http_authz`'s port, when it has one.
    pub http_port: Option<u16>,
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
        Self::start_with_env(config, filter, &[]).await
    }

    /// [`Portcullis::start_logging`] with more environment variables (`OTEL_*`, say).
    pub async fn start_with_env(config: &str, filter: &str, env: &[(&str, &str)]) -> Self {
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
        // The callout form of the fast path asks portcullis over HTTP, as Envoy's trusted proxy.
        if super::envoy::fast_path_filter() == Some("callout") {
            listen
                .entry("http_authz".into())
                .or_insert_with(|| format!("127.0.0.1:{}", free_port()).into());
            listen
                .entry("trusted_proxies".into())
                .or_insert_with(|| Value::Sequence(vec!["127.0.0.1/32".into()]));
        }
        let addr = |key: &str| -> std::net::SocketAddr {
            listen[key]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("listen.{key} is not an address: {:?}", listen[key]))
        };
        let (grpc, admin) = (addr("grpc"), addr("admin"));
        let http_port = listen
            .contains_key("http_authz")
            .then(|| addr("http_authz").port());

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
                "OTEL_",
            ]
            .iter()
            .any(|p| var.starts_with(p))
            {
                cmd.env_remove(&*var);
            }
        }
        cmd.env("RUST_LOG", filter);
        cmd.envs(env.iter().copied());
        let mut proc = Proc::spawn("portcullis", cmd, dir);
        let admin_url = format!("http://127.0.0.1:{}", admin.port());
        proc.wait_for_http(&format!("{admin_url}/readyz"), 200, None)
            .await;
        Self {
            proc,
            grpc_port: grpc.port(),
            http_port,
            admin: admin_url,
            config_path,
        }
    }

    /// The port Envoy asks it on: the HTTP port for the callout form of the fast path, else gRPC.
    pub fn authz_port(&self) -> u16 {
        match super::envoy::fast_path_filter() {
            Some("callout") => self
                .http_port
                .expect("listen.http_authz for the callout form"),
            _ => self.grpc_port,
        }
    }

    /// SIGTERM, and its exit status (it must exit within 15 s).
    pub fn stop(&mut self) -> ExitStatus {
        self.proc
            .terminate(Duration::from_secs(15))
            .unwrap_or_else(|| panic!("portcullis ignored SIGTERM\n{}", self.proc.output()))
    }

    /// The value of one series of its scrape (`name{labels}`), 0 when absent.
    pub async fn metric(&self, series: &str) -> u64 {
        self.metrics()
            .await
            .lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
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

/// `portcullis check-config` on the config `yaml` (written to a file of its own): whether it
/// passed, and what it said on stdout and stderr together.
pub fn check_config(yaml: &str) -> (bool, String) {
    let dir = tempdir("check-config");
    let path = dir.path().join("portcullis.yaml");
    std::fs::write(&path, yaml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["check-config", "--config"])
        .arg(&path)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

/// A `Cookie` header carrying a session that portcullis (cookie store, `session.secret` = `secret`,
/// `session.secure` = `secure`, the default cookie name) accepts: sealed by portcullis's own code,
/// as a login through the provider would leave it, for `email` with `access_token` forwarded
/// upstream. Its access token never needs a refresh (no refresh token, expiry an hour away).
pub async fn session_cookie(secret: &str, secure: bool, email: &str, access_token: &str) -> String {
    use ::portcullis::session::{Backend, Session};
    let now = now();
    let claims = serde_json::json!({"email": email, "email_verified": true, "groups": ["ops"]});
    let session = Session {
        sid: format!("bench-{}", rand::random::<u64>()),
        principal: ::portcullis::identity::Principal::from_claims(
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
    session: &::portcullis::session::Session,
    backend: ::portcullis::session::Backend,
) -> String {
    use ::portcullis::session::{Codec, Cookies, SessionStore};
    let store = SessionStore::new(
        Codec::new(&[::portcullis::secret::Secret::new(secret.to_owned())]),
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

// Where the suites and benches look for it; not every test binary uses it.
#[allow(unused_imports)]
pub use ::portcullis::testing::check_request;
