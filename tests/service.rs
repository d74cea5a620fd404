//! The service seen from outside: a real HTTP JWKS server on loopback, portcullis's gRPC service
//! in-process, and real tonic clients (ext_authz and grpc.health.v1). Fetches are counted at the server.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use jsonwebtoken::Algorithm;
use portcullis::config::{Config, Env};
use portcullis::proto::AuthorizationClient;
use portcullis::testing::{jwks, sign};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::{Mutex, oneshot};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const AUD: &str = "https://amundsen.example/api";
/// A little more than the `jwks_min_refetch_interval: 2s` the harness configures.
const REFETCH_INTERVAL_PASSED: Duration = Duration::from_millis(2100);

#[derive(Default)]
struct Idp {
    issuer: Mutex<String>,
    jwks: Mutex<String>,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    down: AtomicBool,
    delay_ms: AtomicU64,
}

async fn discovery(State(idp): State<Arc<Idp>>) -> impl IntoResponse {
    idp.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if idp.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, String::new());
    }
    let issuer = idp.issuer.lock().await.clone();
    (
        StatusCode::OK,
        json!({"issuer": issuer, "jwks_uri": format!("{issuer}/jwks"),
               "authorization_endpoint": format!("{issuer}/authorize"), "token_endpoint": format!("{issuer}/token")})
        .to_string(),
    )
}

async fn keys(State(idp): State<Arc<Idp>>) -> impl IntoResponse {
    idp.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    let delay = idp.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    if idp.down.load(Ordering::SeqCst) {
        return (StatusCode::BAD_GATEWAY, String::new());
    }
    (StatusCode::OK, idp.jwks.lock().await.clone())
}

struct Harness {
    idp: Arc<Idp>,
    issuer: String,
    client: AuthorizationClient<tonic::transport::Channel>,
    health: HealthClient<tonic::transport::Channel>,
    admin: String,
    grpc: std::net::SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Harness {
    /// Starts the IdP with `initial` keys, then portcullis; returns once portcullis is ready
    /// (`wait_ready`) or right away.
    async fn start(initial: &[&str], delay_ms: u64, wait_ready: bool) -> Self {
        let h = Self::start_with(initial, delay_ms, false).await;
        if wait_ready {
            h.wait_ready().await;
        }
        h
    }

    /// Like `start`, with the IdP failing from the beginning when `down`.
    async fn start_with(initial: &[&str], delay_ms: u64, down: bool) -> Self {
        Self::start_listening(initial, delay_ms, down, "").await
    }

    /// Like `start_with`, with more `listen` keys (`, key: value` each).
    async fn start_listening(initial: &[&str], delay_ms: u64, down: bool, listen: &str) -> Self {
        let idp = Arc::new(Idp::default());
        idp.down.store(down, Ordering::SeqCst);
        *idp.jwks.lock().await = jwks(initial);
        idp.delay_ms.store(delay_ms, Ordering::SeqCst);
        let idp_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", idp_listener.local_addr().unwrap());
        *idp.issuer.lock().await = issuer.clone();
        let app = Router::new()
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/jwks", get(keys))
            .with_state(idp.clone());
        tokio::spawn(async move { axum::serve(idp_listener, app).await });

        let yaml = format!(
            "listen: {{drain_delay: 1s{listen}}}\n\
             provider: {{issuer: '{issuer}', client_id: amundsen, jwks_min_refetch_interval: 2s}}\n\
             bearer: [{{issuer: '{issuer}', audiences: ['{AUD}']}}]\n\
             routes: [{{name: api, path_prefix: /, action: api}}]\n"
        );
        let config = Config::from_yaml(&yaml, &Env::new(), None).unwrap();
        let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc_addr = grpc.local_addr().unwrap();
        let admin_addr = format!("http://{}", admin.local_addr().unwrap());
        let (stop, stopped) = oneshot::channel::<()>();
        let listeners = portcullis::app::Listeners {
            grpc,
            admin,
            http_authz: None,
        };
        let served = tokio::spawn(portcullis::app::run(config, listeners, async move {
            let _ = stopped.await;
        }));
        let channel = tonic::transport::Channel::from_shared(format!("http://{grpc_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let client = AuthorizationClient::new(channel.clone());
        let health = HealthClient::new(channel);
        Self {
            idp,
            issuer,
            client,
            health,
            admin: admin_addr,
            grpc: grpc_addr,
            stop: Some(stop),
            served,
        }
    }

    async fn wait_ready(&self) {
        for _ in 0..100 {
            if let Ok(r) = reqwest::get(format!("{}/readyz", self.admin)).await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("portcullis did not become ready");
    }

    fn token(&self, key: &str, kid: &str) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({"iss": self.issuer, "aud": AUD, "sub": "u1", "email": "u1@example.com",
                            "iat": now, "exp": now + 300, "jti": rand_jti()});
        sign(key, Algorithm::RS256, Some(kid), &claims)
    }

    /// The HTTP status Envoy would answer with (200 for allow).
    async fn check(&self, token: &str) -> i32 {
        check(self.client.clone(), token).await
    }

    fn jwks_fetches(&self) -> usize {
        self.idp.jwks_fetches.load(Ordering::SeqCst)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.served.await.unwrap().unwrap();
    }
}

async fn check(mut client: AuthorizationClient<tonic::transport::Channel>, token: &str) -> i32 {
    let req = support::check_request(
        "amundsen.example",
        "/api/x",
        &[("authorization", &format!("Bearer {token}"))],
    );
    let resp = client.check(req).await.unwrap().into_inner();
    match resp.http_response {
        Some(portcullis::proto::check_response::HttpResponse::OkResponse(_)) => 200,
        Some(portcullis::proto::check_response::HttpResponse::DeniedResponse(d)) => {
            d.status.unwrap().code
        }
        None => panic!("no http_response"),
    }
}

/// Makes every minted token unique, so none is served from the token cache.
fn rand_jti() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

#[tokio::test]
async fn rotation_is_picked_up_on_the_first_token_with_the_new_kid() {
    let h = Harness::start(&["rs256-a"], 0, true).await;
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 200);
    assert_eq!(h.jwks_fetches(), 1);

    // The IdP rotates: b is published, a withdrawn.
    *h.idp.jwks.lock().await = jwks(&["rs256-b"]);
    tokio::time::sleep(REFETCH_INTERVAL_PASSED).await;
    assert_eq!(h.check(&h.token("rs256-b", "rs256-b")).await, 200);
    assert_eq!(h.jwks_fetches(), 2, "one refetch for the new kid");
    // A fresh token with the withdrawn key is refused: the set was replaced whole.
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 401);
    assert_eq!(
        h.jwks_fetches(),
        2,
        "the refused kid is within the refetch interval"
    );
    h.stop().await;
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_at_most_one_fetch_per_interval() {
    let h = Harness::start(&["rs256-a"], 0, true).await;
    tokio::time::sleep(REFETCH_INTERVAL_PASSED).await;
    let before = h.jwks_fetches();
    let tokens: Vec<String> = (0..200)
        .map(|i| h.token("rs256-b", &format!("attacker-{i}")))
        .collect();
    let tasks: Vec<_> = tokens.iter().map(|t| h.check(t)).collect();
    let statuses = futures::future::join_all(tasks).await;
    assert!(statuses.iter().all(|s| *s == 401), "{statuses:?}");
    let used = h.jwks_fetches() - before;
    assert_eq!(
        used, 1,
        "200 unknown kids in one interval: exactly one refetch"
    );
    // A second wave within the interval fetches nothing at all.
    assert_eq!(h.check(&h.token("rs256-b", "attacker-x")).await, 401);
    assert_eq!(h.jwks_fetches() - before, 1);
    // Valid tokens were never blocked by the flood.
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 200);
    h.stop().await;
}

#[tokio::test]
async fn the_last_good_keys_are_kept_when_the_idp_goes_down() {
    let h = Harness::start(&["rs256-a"], 0, true).await;
    h.idp.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(REFETCH_INTERVAL_PASSED).await;
    // An unknown kid makes portcullis try the (now failing) IdP once...
    assert_eq!(h.check(&h.token("rs256-b", "rs256-b")).await, 401);
    assert_eq!(h.jwks_fetches(), 2);
    // ...and the failed fetch did not throw away the keys it had.
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 200);
    let metrics = reqwest::get(format!("{}/metrics", h.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .contains("portcullis_jwks_fetches_total{trigger=\"unknown_kid\",result=\"error\"} 1"),
        "{metrics}"
    );
    h.stop().await;
}

#[tokio::test]
async fn a_concurrent_cold_start_fetches_once() {
    // The JWKS answer is slow, so every check below arrives while the first fetch is under way.
    let h = Harness::start(&["rs256-a"], 400, false).await;
    let token = h.token("rs256-a", "rs256-a");
    let tasks: Vec<_> = (0..50).map(|_| h.check(&token)).collect();
    let statuses = futures::future::join_all(tasks).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(
        h.jwks_fetches(),
        1,
        "50 concurrent cold checks share one fetch"
    );
    assert_eq!(h.idp.discovery_fetches.load(Ordering::SeqCst), 1);
    h.stop().await;
}

#[tokio::test]
async fn an_idp_down_at_start_means_not_ready_and_503_until_it_answers() {
    let h = Harness::start_with(&["rs256-a"], 0, true).await;
    let ready = reqwest::get(format!("{}/readyz", h.admin))
        .await
        .unwrap()
        .status();
    assert_eq!(ready, 503);
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 503);
    h.idp.down.store(false, Ordering::SeqCst);
    h.wait_ready().await; // the background retry loads the keys
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 200);
    h.stop().await;
}

impl Harness {
    async fn health(&self) -> ServingStatus {
        let r = self
            .health
            .clone()
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .unwrap();
        r.into_inner().status()
    }

    async fn readyz(&self) -> u16 {
        reqwest::get(format!("{}/readyz", self.admin))
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

#[tokio::test]
async fn health_follows_readiness() {
    let h = Harness::start_with(&["rs256-a"], 0, true).await;
    assert_eq!(h.health().await, ServingStatus::NotServing, "no keys yet");
    h.idp.down.store(false, Ordering::SeqCst);
    h.wait_ready().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.health().await, ServingStatus::Serving);
    h.stop().await;
}

#[tokio::test]
async fn shutdown_reports_not_serving_then_lets_in_flight_checks_finish() {
    let mut h = Harness::start(&["rs256-a"], 0, true).await;
    tokio::time::sleep(REFETCH_INTERVAL_PASSED).await;
    assert_eq!(h.health().await, ServingStatus::Serving);
    // A check that waits on a slow IdP (an unknown kid refetches) is in flight when the signal comes.
    h.idp.delay_ms.store(1500, Ordering::SeqCst);
    let (client, token) = (h.client.clone(), h.token("rs256-b", "rs256-b"));
    let slow = tokio::spawn(async move { check(client, &token).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = h.stop.take().unwrap().send(());
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Draining (listen.drain_delay: 1s): NOT_SERVING and not ready, but checks are still answered.
    assert_eq!(h.health().await, ServingStatus::NotServing);
    assert_eq!(h.readyz().await, 503);
    assert_eq!(h.check(&h.token("rs256-a", "rs256-a")).await, 200);
    // The in-flight check gets its answer, and the service exits cleanly.
    assert_eq!(slow.await.unwrap(), 401);
    h.served.await.unwrap().unwrap();
}

/// Envoy cancels the checks in flight for clients that went away or whose ext_authz timeout fired,
/// often many at once, and all of one Envoy worker's checks share a connection. A burst of
/// cancelled checks must not make portcullis close it: h2's guard against the rapid-reset attack
/// does that after 20 streams reset before they were picked up, unless told otherwise. The frames
/// are written by hand so that each reset arrives together with its request, as under load.
#[tokio::test]
async fn a_burst_of_cancelled_checks_keeps_the_connection_open() {
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let h = Harness::start(&["rs256-a"], 0, true).await;
    let check = support::check_request(
        "amundsen.example",
        "/api/x",
        &[(
            "authorization",
            &format!("Bearer {}", h.token("rs256-a", "rs256-a")),
        )],
    )
    .encode_to_vec();
    let frame = |out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]| {
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
    };
    // HPACK literals without indexing or Huffman: every name and value is under 127 bytes.
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/envoy.service.auth.v3.Authorization/Check"),
        (":authority", "portcullis"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ] {
        headers.extend_from_slice(&[0, name.len() as u8]);
        headers.extend_from_slice(name.as_bytes());
        headers.push(value.len() as u8);
        headers.extend_from_slice(value.as_bytes());
    }
    let mut message = vec![0u8];
    message.extend_from_slice(&(check.len() as u32).to_be_bytes());
    message.extend_from_slice(&check);
    const HEADERS: u8 = 1;
    const DATA: u8 = 0;
    const RST_STREAM: u8 = 3;
    const SETTINGS: u8 = 4;
    const GOAWAY: u8 = 7;
    const END_STREAM: u8 = 1;
    const END_HEADERS: u8 = 4;
    const CANCEL: [u8; 4] = 8u32.to_be_bytes();

    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    frame(&mut out, SETTINGS, 0, 0, &[]);
    // 40 checks, each cancelled right after it was sent, then one that waits for its answer; all
    // within the 64 KiB a client may send before the server's first WINDOW_UPDATE.
    let last = 81;
    assert!((last as usize / 2 + 1) * (message.len() + 9) < 65_535);
    for stream in (1..last).step_by(2) {
        frame(&mut out, HEADERS, END_HEADERS, stream, &headers);
        frame(&mut out, DATA, END_STREAM, stream, &message);
        frame(&mut out, RST_STREAM, 0, stream, &CANCEL);
    }
    frame(&mut out, HEADERS, END_HEADERS, last, &headers);
    frame(&mut out, DATA, END_STREAM, last, &message);
    let mut tcp = tokio::net::TcpStream::connect(h.grpc).await.unwrap();
    tcp.write_all(&out).await.unwrap();

    let mut answer = Vec::new();
    let mut trailers = false;
    while !trailers {
        let mut head = [0u8; 9];
        tcp.read_exact(&mut head)
            .await
            .expect("the connection stays open");
        let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.unwrap();
        assert_ne!(
            head[3],
            GOAWAY,
            "portcullis closed the connection: error code {}, {:?}",
            payload
                .get(4..8)
                .map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap())),
            String::from_utf8_lossy(payload.get(8..).unwrap_or_default())
        );
        if head[3] == SETTINGS && head[4] == 0 {
            let mut ack = Vec::new();
            frame(&mut ack, SETTINGS, 1, 0, &[]);
            // Ignored when it fails: a closed connection is reported by its GOAWAY, read next.
            let _ = tcp.write_all(&ack).await;
        }
        if stream == last {
            match head[3] {
                DATA => answer.extend_from_slice(&payload),
                HEADERS => trailers = head[4] & END_STREAM != 0,
                other => panic!("frame type {other} on the last stream"),
            }
        }
    }
    let response = portcullis::proto::CheckResponse::decode(&answer[5..]).unwrap();
    assert!(matches!(
        response.http_response,
        Some(portcullis::proto::check_response::HttpResponse::OkResponse(
            _
        ))
    ));
    drop(tcp);
    h.stop().await;
}

/// Connections that never send anything, on either port, are closed after the handshake timeout,
/// while real checks go on; at the connection cap the next client waits for a free place instead
/// of being refused.
#[tokio::test]
async fn connections_that_never_speak_are_closed_while_checks_go_on() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;
    let h = Harness::start_listening(
        &["rs256-a"],
        0,
        false,
        ", handshake_timeout: 1s, idle_timeout: 2s, max_connections: 12",
    )
    .await;
    h.wait_ready().await;
    let admin = h.admin.trim_start_matches("http://").to_owned();
    let mut silent = Vec::new();
    for _ in 0..10 {
        silent.push(TcpStream::connect(h.grpc).await.unwrap());
        silent.push(TcpStream::connect(&admin).await.unwrap());
    }
    let token = h.token("rs256-a", "rs256-a");
    for _ in 0..5 {
        assert_eq!(h.check(&token).await, 200, "checks go on meanwhile");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    for mut conn in silent {
        // The gRPC port sends its HTTP/2 settings first; then the connection must end.
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut sink))
            .await
            .expect("a silent connection is closed (configured: after 1 s)");
        assert!(
            read.is_err() || !sink.starts_with(b"HTTP/"),
            "closed, not answered: {read:?}"
        );
    }
    // The admin port at its cap of 12: a client beyond it is served once a place is free.
    let mut held = Vec::new();
    for _ in 0..12 {
        held.push(TcpStream::connect(&admin).await.unwrap());
    }
    let mut late = TcpStream::connect(&admin).await.unwrap();
    late.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), late.read_to_string(&mut answer))
        .await
        .expect("served once the held connections time out")
        .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(held);
}
