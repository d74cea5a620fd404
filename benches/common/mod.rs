//! What the load benchmarks share (`mod common;` beside `mod support;`, the test harness): the
//! portcullis config they run, the credentials they send, a no-op authorizer as the baseline, and
//! a process's CPU time and memory read from /proc; for the Envoy bench, its variants and Envoy
//! config (envoy), its two ways of measuring them (wrk, callgrind) and what both print (measure);
//! for the load bench, its soak mode (soak).
#![allow(dead_code)] // each bench binary uses a different part

pub mod callgrind;
pub mod envoy;
pub mod measure;
pub mod soak;
pub mod wrk;

use std::time::Duration;

use portcullis::proto::{
    Authorization, AuthorizationClient, AuthorizationServer, CheckRequest, CheckResponse,
    OkHttpResponse, RpcStatus, check_response,
};

use crate::support::{self, AUDIENCE, CLIENT_ID, CLIENT_SECRET, Op, Portcullis};

/// The policy the benchmarks exercise: bearer tokens on /api/, browser sessions elsewhere.
pub async fn start_portcullis(op: &Op, secret: &str) -> Portcullis {
    start_portcullis_with(op, secret, "").await
}

/// [`start_portcullis`] with more `session` keys (`store: redis, redis: {...}`, say).
pub async fn start_portcullis_with(op: &Op, secret: &str, session: &str) -> Portcullis {
    // Info level: a log line per check would be part of what is measured.
    Portcullis::start_logging(&bench_config(op, secret, session), "info").await
}

/// [`start_portcullis_with`] as the native fast path needs it: passes on, nothing but identity
/// headers upstream (`support::with_fast_path`).
pub async fn start_portcullis_fast(op: &Op, secret: &str, session: &str) -> Portcullis {
    let mut config = support::with_fast_path(bench_config(op, secret, session));
    // The callout form asks it over HTTP, as a trusted proxy.
    config.push_str(&format!(
        "listen: {{http_authz: '127.0.0.1:{}', trusted_proxies: ['127.0.0.1/32']}}\n",
        support::free_port()
    ));
    Portcullis::start_logging(&config, "info").await
}

fn bench_config(op: &Op, secret: &str, session: &str) -> String {
    format!(
        "provider:\n  issuer: '{}'\n  client_id: {CLIENT_ID}\n  client_secret: {CLIENT_SECRET}\n\
         \x20 audience: '{AUDIENCE}'\n\
         session: {{secret: '{secret}'{session}}}\n\
         routes:\n\
         - {{name: api, path_prefix: /api/, action: api}}\n\
         - {{name: app, path_prefix: /, action: login}}\n",
        op.issuer
    )
}

/// An Auth0-shaped access token from the provider's signing key (fixture rs256-a), unique by
/// `jti`: about 900 bytes, like Auth0's with a few scopes.
pub fn access_token(op: &Op, jti: u64) -> String {
    support::mint("rs256-a", &access_claims(&op.issuer, jti))
}

/// The claims of [`access_token`]: alice's, valid for an hour from now.
pub fn access_claims(issuer: &str, jti: u64) -> serde_json::Value {
    let now = support::now();
    serde_json::json!({"iss": issuer, "aud": [AUDIENCE, format!("{issuer}userinfo")],
        "sub": "auth0|5f7c8ec7c33c6c004bbafe82", "iat": now, "exp": now + 3600,
        "email": "alice@example.com", "email_verified": true, "groups": ["ops"],
        "scope": "openid profile email read:metadata", "azp": CLIENT_ID, "jti": jti.to_string()})
}

/// alice's session cookie in the cookie store, as a login at `issuer` (Auth0) leaves it: an
/// Auth0-shaped ID token (whose claims also make the principal), `token` as the access token, a
/// refresh token. About 3.2 KB, one cookie. Sealed now, as a browser holds one: portcullis
/// reissues a cookie whose last activity is over a minute old and a browser keeps the new one.
/// wrk and the load generator cannot, so each run takes a fresh one; an old one would be reissued
/// on every request (a Set-Cookie as big as the cookie).
pub async fn fresh_session_cookie(issuer: &str, secret: &str, token: &str) -> String {
    let backend = portcullis::session::Backend::Cookie;
    support::store_session(secret, true, &login_session(issuer, token), backend).await
}

/// The same session stored in Redis at `url`, as the `redis` store keeps it: the cookie holds
/// only its sealed id.
pub async fn fresh_redis_session_cookie(
    url: &str,
    issuer: &str,
    secret: &str,
    token: &str,
) -> String {
    let metrics = std::sync::Arc::new(portcullis::metrics::Metrics::new());
    let redis = portcullis::session::RedisStore::connect(url, Duration::from_secs(1), metrics)
        .await
        .expect("connecting to Redis");
    let backend = portcullis::session::Backend::Redis(redis);
    support::store_session(secret, true, &login_session(issuer, token), backend).await
}

/// alice's session as a login at `issuer` (Auth0) leaves it, with `token` as the access token.
fn login_session(issuer: &str, token: &str) -> portcullis::session::Session {
    let now = support::now();
    let sub = "auth0|5f7c8ec7c33c6c004bbafe82";
    let id_claims = serde_json::json!({
        "nickname": "alice", "name": "alice@example.com",
        "picture": "https://s.gravatar.com/avatar/2bd5a4b1d1b3e7c1a0b7c8f9e6d5c4b3?s=480&r=pg&d=https%3A%2F%2Fcdn.auth0.com%2Favatars%2Fal.png",
        "updated_at": "2026-11-28T09:12:44.123Z", "email": "alice@example.com",
        "email_verified": true, "groups": ["ops"], "iss": issuer, "aud": CLIENT_ID,
        "iat": now, "exp": now + 36000, "sub": sub, "sid": "mXl3qTq9aVd0Nf2Kc8RrT1yW5uB7eH4j",
        "nonce": "Vw3n0C6yQk2hJ8sT1pXr5aLd9fGm4bZe",
    });
    // The principal as the login makes it: the ID token's claims less those held apart.
    let claims = portcullis::token::validate::rest_of(id_claims.as_object().unwrap().clone());
    portcullis::session::Session {
        sid: format!("bench-{}", rand::random::<u64>()),
        principal: portcullis::identity::Principal::from_claims(
            sub.to_owned(),
            claims,
            "email",
            "groups",
        ),
        id_token: support::mint("rs256-a", &id_claims),
        access_token: Some(token.to_owned()),
        access_expires_at: now + 3600,
        access_issued_at: now,
        // Auth0's are opaque, about this long.
        refresh_token: Some("v1.M".to_owned() + &"rT0kEn-x".repeat(16)),
        created_at: now,
        seen_at: now,
    }
}

/// `n` unique access tokens, signed on every core (RSA signing is the slow part of setting up).
pub fn access_tokens(op: &Op, n: u64) -> Vec<String> {
    let threads = std::thread::available_parallelism().map_or(2, |p| p.get() as u64);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..n)
                        .step_by(threads as usize)
                        .map(|j| access_token(op, j))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    })
}

/// An authorizer that allows everything without looking: the cost of the ext_authz hop and of
/// tonic itself, the baseline portcullis is measured against. Served like portcullis serves
/// (tonic, TCP_NODELAY, the default multi-threaded runtime). Its fixed answer is an empty allow,
/// or ([`Noop::like_portcullis`]) what portcullis answers for alice's bearer token, which tells
/// what the answer's content costs Envoy apart from the work of deciding it.
pub struct Noop(CheckResponse);

impl Default for Noop {
    fn default() -> Self {
        Self(CheckResponse {
            status: Some(RpcStatus {
                code: 0,
                ..Default::default()
            }),
            http_response: Some(check_response::HttpResponse::OkResponse(
                OkHttpResponse::default(),
            )),
            ..Default::default()
        })
    }
}

impl Noop {
    /// portcullis's answer to a request with alice's token, taken from portcullis itself.
    pub fn like_portcullis(answer: CheckResponse) -> Self {
        Self(answer)
    }
}

#[tonic::async_trait]
impl Authorization for Noop {
    async fn check(
        &self,
        _request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        Ok(tonic::Response::new(self.0.clone()))
    }
}

/// What portcullis on gRPC `port` answers Envoy for a request with `token` on the api route, asked
/// as Envoy asks (only the allowed headers that are present: here the Authorization header): the
/// answer for [`Noop::like_portcullis`].
pub async fn portcullis_answer(port: u16, token: &str) -> CheckResponse {
    let request = support::check_request(
        "127.0.0.1",
        "/api/metadata/v0/table/gold.core.users",
        &[("authorization", &format!("Bearer {token}"))],
    );
    let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to portcullis");
    let answer = client.check(request).await.expect("check").into_inner();
    assert!(
        matches!(
            answer.http_response,
            Some(check_response::HttpResponse::OkResponse(_))
        ),
        "portcullis did not allow the bench token: {answer:?}"
    );
    answer
}

/// The pass (`name=value`) that portcullis on gRPC `port` (passes on) gives the browser whose
/// session `cookie` (`name=value`) it is, asked as Envoy asks.
pub async fn fresh_pass(port: u16, cookie: &str) -> String {
    let request = support::check_request(
        "127.0.0.1",
        "/table_detail/gold/hive/core/users",
        &[("cookie", cookie)],
    );
    let mut client = AuthorizationClient::connect(format!("http://127.0.0.1:{port}"))
        .await
        .expect("connect to portcullis");
    let answer = client.check(request).await.expect("check").into_inner();
    let Some(check_response::HttpResponse::OkResponse(ok)) = &answer.http_response else {
        panic!("portcullis did not allow the bench session: {answer:?}");
    };
    ok.response_headers_to_add
        .iter()
        .filter_map(|h| h.header.as_ref())
        .filter(|h| h.key.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|h| h.value.split(';').next())
        .find(|c| c.contains("-pass="))
        .unwrap_or_else(|| panic!("no pass in portcullis's answer: {answer:?}"))
        .to_owned()
}

/// `pass` (`name=value`) signed again with the same key as it was, run out five minutes ago: what
/// a browser back after a break sends.
pub fn expired_pass(secret: &str, pass: &str) -> String {
    let (name, value) = pass.split_once('=').expect("name=value");
    let keys =
        portcullis::token::pass::PassKeys::derive(&[portcullis::secret::Secret::new(secret)]);
    let mut claims = keys.open(value).expect("the pass opens with its secret");
    let now = support::now();
    (claims.iat, claims.exp) = (now - 600, now - 300);
    format!("{name}={}", keys.sign(&claims).expect("a key"))
}

/// Serves `noop` on `listener` until the process ends.
pub async fn serve_noop(listener: tokio::net::TcpListener, noop: Noop) {
    tonic::transport::Server::builder()
        .add_service(AuthorizationServer::new(noop))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
        .expect("no-op authorizer");
}

/// Waits until something accepts connections on 127.0.0.1:`port`.
pub async fn wait_for_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on 127.0.0.1:{port}");
}

/// A process's CPU time so far, its memory and its threads, from /proc.
#[derive(Debug, Clone, Copy)]
pub struct ProcStats {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size now, and its peak (VmHWM), in KiB.
    pub rss_kib: u64,
    pub peak_rss_kib: u64,
    /// The anonymous part of the resident set (the heap, mostly; the rest is the binary's pages).
    pub rss_anon_kib: u64,
    pub threads: u64,
}

impl ProcStats {
    pub fn read(pid: u32) -> Self {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/pid/stat");
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .expect("stat format")
            .1
            .split_whitespace()
            .collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        // USER_HZ is 100 on Linux for every architecture this runs on.
        let cpu = Duration::from_millis(ticks * 10);
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc/pid/status");
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Self {
            cpu,
            rss_kib: field("VmRSS:"),
            peak_rss_kib: field("VmHWM:"),
            rss_anon_kib: field("RssAnon:"),
            threads: field("Threads:"),
        }
    }

    /// How many file descriptors `pid` has open.
    pub fn open_fds(pid: u32) -> u64 {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("/proc/pid/fd")
            .count() as u64
    }
}

/// A number of bytes in KiB as MiB with one decimal.
pub fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

/// `name` from the environment, or `default`.
pub fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}
