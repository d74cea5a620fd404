//! The soak mode of the load bench (issue 13): hours-shaped traffic at a steady rate well below
//! saturation, against the portcullis binary, looking for leaks and drift rather than speed.
//!
//! The mix, by the request: 40 % a cached bearer token, 10 % unique bearer tokens (each one cold,
//! minted as the soak goes), 30 % cookie sessions (16 browsers, every cookie resealed each 30 s as a
//! browser takes up the reissued one), 20 % garbage in six kinds taken in turn: no credential (API
//! and browser paths), malformed tokens (junk, truncated, two tokens, a forged signature, an unknown
//! `kid`, `alg: none`, expired, wrong audience or issuer), bad paths, random headers (names, values,
//! cookies, host, method), the login callback and logout with junk, and checks abandoned after 0-3
//! ms (as Envoy cancels them). The checks go over `BENCH_CONNECTIONS` HTTP/2 connections, one of
//! which is replaced every 15 s, so connections come and go as well.
//!
//! Every sample interval (a minute) it prints portcullis's VmRSS and VmHWM, its open file
//! descriptors and threads, the checks answered in the interval, their p50 and p99, errors (a check
//! that failed at the gRPC level, as opposed to a deny) and wrong answers (a credential that should
//! pass not allowed, garbage allowed), and at the end the table again and a verdict: whether the
//! last third's RSS, fds and threads stay within the first third's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hdrhistogram::Histogram;
use portcullis::proto::{AuthorizationClient, CheckRequest, CheckResponse, check_response};
use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::Channel;

use super::{ProcStats, mib, setting};
use crate::support::{self, AUDIENCE, Op, OpOptions};

/// The last third's peak RSS may exceed the first third's by this much and still count as bounded.
const RSS_TOLERANCE_PERCENT: f64 = 10.0;
/// File descriptors and threads may exceed the first third's peak by this many (a connection being
/// replaced, a blocking-pool thread of the runtime that comes and goes).
const FD_SLACK: u64 = 2;
const THREAD_SLACK: u64 = 2;
/// Browser sessions, and how often their cookies are sealed afresh (portcullis reissues a cookie
/// whose last activity is 60 s old or more).
const BROWSERS: usize = 16;
const RESEAL_EVERY: Duration = Duration::from_secs(30);
/// The cached bearer token is replaced this often (each lives an hour).
const REMINT_EVERY: Duration = Duration::from_secs(20 * 60);
/// One of the connections is replaced this often, at an offset that keeps it away from samples.
const RECONNECT_EVERY: Duration = Duration::from_secs(15);
/// Checks in flight at most; a check the generator cannot start for it is counted as skipped.
const MAX_IN_FLIGHT: usize = 1024;

/// Whether the load bench runs as a soak: `BENCH_MODE=soak`, or `BENCH_SOAK_MINUTES` set without
/// `BENCH_MODE=load`.
pub fn wanted() -> bool {
    match std::env::var("BENCH_MODE").as_deref() {
        Ok("soak") => true,
        Ok("load") => false,
        Ok("") | Err(_) => std::env::var_os("BENCH_SOAK_MINUTES").is_some(),
        Ok(other) => panic!("BENCH_MODE={other:?}: expected load or soak"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Cached,
    Unique,
    Cookie,
    Garbage,
}

const CLASSES: [Class; 4] = [Class::Cached, Class::Unique, Class::Cookie, Class::Garbage];

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::Cached => "cached bearer",
            Class::Unique => "unique bearer (cold)",
            Class::Cookie => "cookie session",
            Class::Garbage => "garbage",
        }
    }
}

/// 20 requests: 8 cached, 2 unique, 6 cookie, 4 garbage, interleaved.
const SCHEDULE: [Class; 20] = {
    use Class::*;
    [
        Cached, Cookie, Cached, Garbage, Unique, Cached, Cookie, Garbage, Cached, Cookie, Cached,
        Garbage, Unique, Cookie, Cached, Cookie, Cached, Garbage, Cookie, Cached,
    ]
};

/// What a check must be answered.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Allow,
    /// Anything but an allow.
    NotAllow,
}

/// The credentials in use now; replaced as they age.
struct Creds {
    /// The cached bearer token.
    token: String,
    /// Each browser's `Cookie` header.
    cookies: Vec<String>,
}

/// Tokens minted once at the start that must be refused.
struct BadTokens {
    expired: String,
    wrong_audience: String,
    wrong_issuer: String,
    /// A token of another key of the same shape (whose `kid` the provider does not publish).
    other_key: String,
}

/// What one sample interval counted besides latency; normally all zero but errors aside.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    errors: u64,
    wrong: u64,
    reissued: u64,
    cancelled: u64,
    skipped: u64,
    unique_short: u64,
}

/// What one sample interval collected.
struct Window {
    latency: Histogram<u64>,
    counts: Counts,
}

impl Window {
    fn new() -> Self {
        Self {
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
            counts: Counts::default(),
        }
    }
}

/// What the load tasks share.
struct Shared {
    issuer: String,
    creds: RwLock<Arc<Creds>>,
    bad: BadTokens,
    /// Fresh unique tokens from the minting thread.
    unique: Mutex<mpsc::Receiver<String>>,
    channels: RwLock<Vec<Channel>>,
    window: Mutex<Window>,
    in_flight: Arc<Semaphore>,
    sent: [AtomicU64; 4],
    first_error: Mutex<Option<String>>,
    first_wrong: Mutex<Option<String>>,
}

/// One row of the table.
#[derive(Debug, Clone)]
struct Sample {
    /// Time since the load started; zero for the row taken before it.
    at: Duration,
    checks: u64,
    rate: f64,
    p50: u64,
    p99: u64,
    counts: Counts,
    /// portcullis's memory and threads at the end of the interval.
    stats: ProcStats,
    fds: u64,
    /// portcullis's CPU time per check answered in the interval, in microseconds.
    cpu_us: f64,
}

/// Access tokens like [`super::access_token`]'s, signed with fixture key rs256-a parsed once (the
/// fixture helper reads and parses the key for every token, which a minute of unique tokens cannot
/// afford on the debug build).
struct Minter {
    key: aws_lc_rs::signature::RsaKeyPair,
    issuer: String,
    header: String,
}

impl Minter {
    fn new(issuer: &str) -> Self {
        let pem = portcullis::testing::fixture("rs256-a.pem");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .expect("fixture PEM");
        Self {
            key: aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der).expect("fixture key"),
            issuer: issuer.to_owned(),
            header: B64.encode(r#"{"typ":"JWT","alg":"RS256","kid":"rs256-a"}"#),
        }
    }

    fn mint(&self, jti: u64) -> String {
        let claims = super::access_claims(&self.issuer, jti);
        let signing_input = format!("{}.{}", self.header, B64.encode(claims.to_string()));
        let mut sig = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_lc_rs::rand::SystemRandom::new(),
                signing_input.as_bytes(),
                &mut sig,
            )
            .expect("signing");
        format!("{signing_input}.{}", B64.encode(sig))
    }
}

/// Random letters and digits, `len` of them (a length picked from the range).
fn alnum(rng: &mut impl Rng, len: std::ops::Range<usize>) -> String {
    let len = rng.random_range(len);
    (0..len)
        .map(|_| char::from(rng.sample(rand::distr::Alphanumeric)))
        .collect()
}

/// Characters that parsers trip on, and some plain ones.
const JUNK: &[char] = &[
    'a', 'Z', '0', '/', '.', '%', ';', ',', '=', '"', '\'', ' ', '\t', '\\', '?', '#', '&', '\0',
    '\u{7f}', 'é', 'ß', '🦀', '\u{202e}', '\u{feff}', '~', '*', ':', '@', '[', ']', '{', '}',
];

fn junk(rng: &mut impl Rng, len: std::ops::Range<usize>) -> String {
    let len = rng.random_range(len);
    (0..len).map(|_| *JUNK.choose(rng).unwrap()).collect()
}

fn with_method(mut req: CheckRequest, method: &str) -> CheckRequest {
    if let Some(http) = req
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
    {
        http.method = method.to_owned();
    }
    req
}

const HOST: &str = "amundsen.example.com";

fn api_path(rng: &mut impl Rng) -> String {
    format!(
        "/api/metadata/v0/table/gold.core.t{}",
        rng.random_range(0..1000)
    )
}

fn browser_path(rng: &mut impl Rng) -> String {
    format!(
        "/table_detail/gold/hive/core/t{}",
        rng.random_range(0..1000)
    )
}

/// A request with `header` (and accept), as Envoy sends them.
fn request(path: &str, header: Option<(&str, &str)>) -> CheckRequest {
    let mut headers = vec![("accept", "application/json")];
    headers.extend(header);
    support::check_request(HOST, path, &headers)
}

impl Shared {
    /// The request to send as the `n`th of `class`, what it must be answered, and for garbage that
    /// is abandoned, after how long.
    fn build(&self, class: Class, n: u64) -> (CheckRequest, Expect, Option<Duration>) {
        let rng = &mut rand::rng();
        let creds = self.creds.read().unwrap().clone();
        match class {
            Class::Cached => (
                request(
                    &api_path(rng),
                    Some(("authorization", &bearer_of(&creds.token))),
                ),
                Expect::Allow,
                None,
            ),
            Class::Unique => {
                let token = self.unique.lock().unwrap().try_recv().ok();
                let token = token.unwrap_or_else(|| {
                    self.window.lock().unwrap().counts.unique_short += 1;
                    creds.token.clone()
                });
                (
                    request(&api_path(rng), Some(("authorization", &bearer_of(&token)))),
                    Expect::Allow,
                    None,
                )
            }
            Class::Cookie => {
                let cookie = &creds.cookies[n as usize % creds.cookies.len()];
                (
                    request(&browser_path(rng), Some(("cookie", cookie))),
                    Expect::Allow,
                    None,
                )
            }
            Class::Garbage => self.garbage(rng, n / SCHEDULE.len() as u64, &creds),
        }
    }

    /// The `g`th garbage request: six kinds in turn, each varied at random.
    fn garbage(
        &self,
        rng: &mut impl Rng,
        g: u64,
        creds: &Creds,
    ) -> (CheckRequest, Expect, Option<Duration>) {
        let refuse = |req| (req, Expect::NotAllow, None);
        let token = &creds.token;
        match g % 6 {
            // No credential: a 401 on the API, a login redirect (and a sealed login cookie) elsewhere.
            0 => refuse(if rng.random_bool(0.5) {
                request(&api_path(rng), None)
            } else {
                request(&browser_path(rng), None)
            }),
            // Malformed and refused tokens.
            1 => {
                let mut parts = token.splitn(3, '.');
                let (header, payload, sig) = (
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                    parts.next().unwrap(),
                );
                let value = match rng.random_range(0..13) {
                    0 => format!("Bearer {}", alnum(rng, 1..3000)),
                    1 => "Bearer a.b.c".to_owned(),
                    2 => "Bearer".to_owned(),
                    3 => format!("Bearer {token}x"),
                    4 => format!("Basic {}", B64.encode(alnum(rng, 20..21))),
                    5 => format!(
                        "Bearer {}.{}.{}",
                        alnum(rng, 40..41),
                        alnum(rng, 300..301),
                        alnum(rng, 342..343)
                    ),
                    6 => format!("Bearer {token},{token}"),
                    7 => format!("Bearer {}", &token[..token.len() / 2]),
                    // The payload changed under the signature: a signature check that fails.
                    8 => {
                        let claims = serde_json::json!({"iss": self.issuer,
                            "aud": [AUDIENCE], "sub": "auth0|mallory", "iat": support::now(),
                            "exp": support::now() + 3600, "email": "mallory@example.com",
                            "jti": alnum(rng, 16..17)});
                        format!("Bearer {header}.{}.{sig}", B64.encode(claims.to_string()))
                    }
                    // A `kid` nobody publishes: the key set is refetched at most every 30 s.
                    9 => {
                        let h = format!(
                            r#"{{"alg":"RS256","typ":"JWT","kid":"{}"}}"#,
                            alnum(rng, 8..9)
                        );
                        format!("Bearer {}.{payload}.{sig}", B64.encode(h))
                    }
                    10 => format!("Bearer {}.{payload}.", B64.encode(r#"{"alg":"none"}"#)),
                    11 => format!(
                        "Bearer {}",
                        [
                            &self.bad.expired,
                            &self.bad.wrong_audience,
                            &self.bad.wrong_issuer,
                            &self.bad.other_key,
                        ]
                        .choose(rng)
                        .unwrap()
                    ),
                    _ => format!("Negotiate {}", alnum(rng, 100..101)),
                };
                refuse(request(&api_path(rng), Some(("authorization", &value))))
            }
            // Bad paths, no credential.
            2 => {
                let path = match rng.random_range(0..13) {
                    0 => String::new(),
                    1 => "*".to_owned(),
                    2 => "//..//".to_owned(),
                    3 => "/api/%zz".to_owned(),
                    4 => "/api/../../etc/passwd".to_owned(),
                    5 => "/api/\0x".to_owned(),
                    6 => format!("/{}", "a".repeat(8000)),
                    7 => format!("/api/{}", junk(rng, 50..51)),
                    8 => format!("/?{}", junk(rng, 200..201)),
                    9 => "http://evil.example/api/x".to_owned(),
                    10 => "/%2e%2e/%2e%2e/api/x".to_owned(),
                    11 => "/API/metadata".to_owned(),
                    _ => junk(rng, 1..100),
                };
                refuse(request(&path, None))
            }
            // Random headers (and cookies, host, method), no credential.
            3 => {
                let mut headers: Vec<(String, String)> = (0..rng.random_range(1..20))
                    .map(|_| {
                        let name = if rng.random_bool(0.7) {
                            alnum(rng, 1..30).to_lowercase()
                        } else {
                            format!("x-{}", junk(rng, 10..11))
                        };
                        (name, junk(rng, 0..500))
                    })
                    .collect();
                let cookie = match rng.random_range(0..3) {
                    0 => format!("portcullis={}", alnum(rng, 0..4000)),
                    1 => format!("a=b; c; =; ;;{}", junk(rng, 30..31)),
                    _ => junk(rng, 200..201),
                };
                headers.push(("cookie".to_owned(), cookie));
                let headers: Vec<(&str, &str)> = headers
                    .iter()
                    .map(|(n, v)| (n.as_str(), v.as_str()))
                    .collect();
                let host = if rng.random_bool(0.5) {
                    HOST.to_owned()
                } else {
                    junk(rng, 30..31)
                };
                let path = if rng.random_bool(0.5) {
                    api_path(rng)
                } else {
                    browser_path(rng)
                };
                let method = ["GET", "POST", "BREW", "", "get", "CONNECT", "OPTIONS"]
                    .choose(rng)
                    .unwrap();
                refuse(with_method(
                    support::check_request(&host, &path, &headers),
                    method,
                ))
            }
            // The login callback and logout, with junk and no session.
            4 => {
                let login_cookie = format!(
                    "portcullis-login-{}={}",
                    alnum(rng, 16..17),
                    alnum(rng, 300..301)
                );
                let req = match rng.random_range(0..4) {
                    0 => request(
                        &format!(
                            "/authorization-code/callback?code={}&state={}",
                            alnum(rng, 30..31),
                            alnum(rng, 43..44)
                        ),
                        None,
                    ),
                    1 => request(
                        &format!(
                            "/authorization-code/callback?code={}&state={}",
                            alnum(rng, 30..31),
                            alnum(rng, 43..44)
                        ),
                        Some(("cookie", &login_cookie)),
                    ),
                    2 => request("/authorization-code/callback", None),
                    _ => request("/logout", None),
                };
                refuse(req)
            }
            // A cached-bearer check abandoned after 0-3 ms, as Envoy cancels checks.
            _ => (
                request(&api_path(rng), Some(("authorization", &bearer_of(token)))),
                Expect::Allow,
                Some(Duration::from_micros(rng.random_range(0..3000))),
            ),
        }
    }

    fn channel(&self, n: u64) -> Channel {
        let channels = self.channels.read().unwrap();
        channels[n as usize % channels.len()].clone()
    }

    fn note(slot: &Mutex<Option<String>>, what: impl FnOnce() -> String) {
        let mut slot = slot.lock().unwrap();
        if slot.is_none() {
            *slot = Some(what());
        }
    }
}

fn bearer_of(token: &str) -> String {
    format!("Bearer {token}")
}

/// Sends one check and records its outcome in the current window.
async fn one(shared: Arc<Shared>, class: Class, n: u64, _permit: OwnedSemaphorePermit) {
    let (req, expect, abandon_after) = shared.build(class, n);
    // What garbage was sent, to name it when it is answered wrongly.
    let sent = (class == Class::Garbage).then(|| {
        let http = req
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref()?.http.as_ref());
        format!("{http:?}").chars().take(600).collect::<String>()
    });
    let mut client = AuthorizationClient::new(shared.channel(n));
    let t = Instant::now();
    let answer = match abandon_after {
        Some(after) => match tokio::time::timeout(after, client.check(req)).await {
            Ok(answer) => answer,
            Err(_) => {
                shared.window.lock().unwrap().counts.cancelled += 1;
                return;
            }
        },
        None => client.check(req).await,
    };
    let micros = t.elapsed().as_micros() as u64;
    let answer: Result<CheckResponse, tonic::Status> = answer.map(|r| r.into_inner());
    let (allowed, reissued) = match &answer {
        Ok(r) => match &r.http_response {
            Some(check_response::HttpResponse::OkResponse(ok)) => (
                Some(true),
                ok.response_headers_to_add.iter().any(|h| {
                    h.header
                        .as_ref()
                        .is_some_and(|h| h.key.eq_ignore_ascii_case("set-cookie"))
                }),
            ),
            Some(check_response::HttpResponse::DeniedResponse(_)) => (Some(false), false),
            None => (None, false),
        },
        Err(_) => (None, false),
    };
    let error = answer.is_err();
    let wrong = !error
        && match expect {
            Expect::Allow => allowed != Some(true),
            Expect::NotAllow => allowed != Some(false),
        };
    {
        let mut w = shared.window.lock().unwrap();
        w.latency.saturating_record(micros);
        w.counts.errors += u64::from(error);
        w.counts.wrong += u64::from(wrong);
        w.counts.reissued += u64::from(reissued && class == Class::Cookie);
    }
    if error {
        Shared::note(&shared.first_error, || {
            format!("{} #{n}: {answer:?}", class.label())
        });
    }
    if wrong {
        Shared::note(&shared.first_wrong, || {
            let sent = sent.map(|s| format!(" to {s}")).unwrap_or_default();
            format!("{} #{n}{sent}: {answer:?}", class.label())
        });
    }
}

/// Starts checks at `rate` per second (every 10 ms, as many as are due) until `until`.
async fn generate(shared: Arc<Shared>, rate: f64, until: tokio::time::Instant) {
    let tick = Duration::from_millis(10);
    let mut ticks = tokio::time::interval(tick);
    let per_tick = rate * tick.as_secs_f64();
    let (mut owed, mut n) = (0.0, 0u64);
    loop {
        let now = ticks.tick().await;
        if now >= until {
            return;
        }
        owed += per_tick;
        while owed >= 1.0 {
            owed -= 1.0;
            let class = SCHEDULE[(n % SCHEDULE.len() as u64) as usize];
            match shared.in_flight.clone().try_acquire_owned() {
                Ok(permit) => {
                    shared.sent[class as usize].fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(one(shared.clone(), class, n, permit));
                }
                Err(_) => shared.window.lock().unwrap().counts.skipped += 1,
            }
            n += 1;
        }
    }
}

async fn connect(port: u16) -> Channel {
    Channel::from_shared(format!("http://127.0.0.1:{port}"))
        .unwrap()
        .tcp_nodelay(true)
        .connect()
        .await
        .expect("connect to portcullis")
}

/// Replaces one connection every [`RECONNECT_EVERY`], in turn, until `until`.
async fn churn(shared: Arc<Shared>, port: u16, until: tokio::time::Instant) {
    let start = tokio::time::Instant::now() + RECONNECT_EVERY / 2;
    let mut ticks = tokio::time::interval_at(start, RECONNECT_EVERY);
    for i in 0.. {
        if ticks.tick().await >= until {
            return;
        }
        let fresh = connect(port).await;
        let mut channels = shared.channels.write().unwrap();
        let len = channels.len();
        channels[i % len] = fresh;
    }
}

/// `BROWSERS` session cookies sealed now, and a new cached token when the one in use is old.
async fn refresh_creds(
    shared: Arc<Shared>,
    secret: String,
    minter: Arc<Minter>,
    until: tokio::time::Instant,
) {
    let mut ticks =
        tokio::time::interval_at(tokio::time::Instant::now() + RESEAL_EVERY, RESEAL_EVERY);
    let (mut minted, mut remints) = (Instant::now(), 0);
    loop {
        if ticks.tick().await >= until {
            return;
        }
        let old = shared.creds.read().unwrap().clone();
        let token = if minted.elapsed() >= REMINT_EVERY {
            (minted, remints) = (Instant::now(), remints + 1);
            minter.mint(u64::MAX - remints)
        } else {
            old.token.clone()
        };
        // Sealing mints an ID token (an RSA signature) per browser: off the generator's thread.
        let (issuer, secret, t) = (shared.issuer.clone(), secret.clone(), token.clone());
        let cookies = tokio::task::spawn_blocking(move || {
            let handle = tokio::runtime::Handle::current();
            (0..BROWSERS)
                .map(|_| handle.block_on(super::fresh_session_cookie(&issuer, &secret, &t)))
                .collect()
        })
        .await
        .unwrap();
        *shared.creds.write().unwrap() = Arc::new(Creds { token, cookies });
    }
}

fn take_sample(
    shared: &Shared,
    pid: u32,
    at: Duration,
    interval: Duration,
    before: &ProcStats,
) -> Sample {
    let w = std::mem::replace(&mut *shared.window.lock().unwrap(), Window::new());
    let stats = ProcStats::read(pid);
    let checks = w.latency.len();
    let cpu = stats.cpu.saturating_sub(before.cpu);
    Sample {
        at,
        checks,
        rate: checks as f64 / interval.as_secs_f64(),
        p50: w.latency.value_at_quantile(0.5),
        p99: w.latency.value_at_quantile(0.99),
        counts: w.counts,
        stats,
        fds: ProcStats::open_fds(pid),
        cpu_us: if checks == 0 {
            0.0
        } else {
            cpu.as_micros() as f64 / checks as f64
        },
    }
}

const COLUMNS: [&str; 14] = [
    "t",
    "checks",
    "checks/s",
    "p50 us",
    "p99 us",
    "errors",
    "wrong",
    "VmRSS",
    "VmHWM",
    "RssAnon",
    "fds",
    "threads",
    "CPU us/ck",
    "abandoned",
];

fn line(cells: [String; 14], notes: &str) -> String {
    let widths = [6, 8, 8, 7, 7, 6, 5, 10, 10, 10, 4, 7, 9, 9];
    let mut out: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, w)| format!("{c:>w$}"))
        .collect();
    if !notes.is_empty() {
        out.push(format!(" {notes}"));
    }
    out.join(" ")
}

fn header() -> String {
    line(COLUMNS.map(str::to_owned), "")
}

fn row(s: &Sample) -> String {
    let mib = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    if s.at.is_zero() {
        let dash = || "-".to_owned();
        return line(
            [
                "start".to_owned(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                dash(),
                mib(s.stats.rss_kib),
                mib(s.stats.peak_rss_kib),
                mib(s.stats.rss_anon_kib),
                s.fds.to_string(),
                s.stats.threads.to_string(),
                dash(),
                dash(),
            ],
            "",
        );
    }
    // What is normally zero, noted only when it is not.
    let notes: Vec<String> = [
        (s.counts.reissued, "cookies reissued"),
        (s.counts.skipped, "skipped (in flight at the cap)"),
        (s.counts.unique_short, "unique tokens short (cached sent)"),
    ]
    .into_iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    line(
        [
            row_time(s),
            s.checks.to_string(),
            format!("{:.1}", s.rate),
            s.p50.to_string(),
            s.p99.to_string(),
            s.counts.errors.to_string(),
            s.counts.wrong.to_string(),
            mib(s.stats.rss_kib),
            mib(s.stats.peak_rss_kib),
            mib(s.stats.rss_anon_kib),
            s.fds.to_string(),
            s.stats.threads.to_string(),
            format!("{:.1}", s.cpu_us),
            s.counts.cancelled.to_string(),
        ],
        &notes.join(", "),
    )
}

/// How the last third of `values` compares with the first third's maximum.
fn judge(first_max: u64, last_max: u64, allowed: u64) -> &'static str {
    if last_max <= first_max {
        "flat"
    } else if last_max <= allowed {
        "bounded"
    } else {
        "GROWING"
    }
}

/// Least-squares slope of `points` (minutes, value), per minute.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// Prints the verdict on `samples` (the rows taken under load); false if anything grew.
fn verdict(samples: &[Sample]) -> bool {
    let n = samples.len();
    let third = (n / 3).max(1);
    let (first, last) = (&samples[..third], &samples[n - third..]);
    let max = |rows: &[Sample], f: fn(&Sample) -> u64| rows.iter().map(f).max().unwrap_or(0);
    let span = |rows: &[Sample]| {
        format!(
            "{}-{}",
            row_time(rows.first().unwrap()),
            row_time(rows.last().unwrap())
        )
    };
    println!(
        "\nverdict over {n} samples (first third: {}, last third: {}):",
        span(first),
        span(last)
    );
    let rss_first = max(first, |s| s.stats.rss_kib);
    let rss_last = max(last, |s| s.stats.rss_kib);
    let rss_allowed = (rss_first as f64 * (1.0 + RSS_TOLERANCE_PERCENT / 100.0)) as u64;
    let rss = judge(rss_first, rss_last, rss_allowed);
    println!(
        "  VmRSS    first third max {}, last third max {} ({:+.1} %, bounded within +{RSS_TOLERANCE_PERCENT} %): {rss}",
        mib(rss_first),
        mib(rss_last),
        (rss_last as f64 / rss_first as f64 - 1.0) * 100.0
    );
    let fds_first = max(first, |s| s.fds);
    let fds_last = max(last, |s| s.fds);
    let fds = judge(fds_first, fds_last, fds_first + FD_SLACK);
    println!(
        "  fds      first third max {fds_first}, last third max {fds_last} (bounded within +{FD_SLACK}): {fds}"
    );
    let th_first = max(first, |s| s.stats.threads);
    let th_last = max(last, |s| s.stats.threads);
    let threads = judge(th_first, th_last, th_first + THREAD_SLACK);
    println!(
        "  threads  first third max {th_first}, last third max {th_last} (bounded within +{THREAD_SLACK}): {threads}"
    );
    // The trend after the first third (caches filling), for a slow leak inside the tolerance.
    let rest = &samples[third.min(n - 1)..];
    let trend = slope(
        &rest
            .iter()
            .map(|s| (s.at.as_secs_f64() / 60.0, s.stats.rss_kib as f64))
            .collect::<Vec<_>>(),
    );
    let anon_trend = slope(
        &rest
            .iter()
            .map(|s| (s.at.as_secs_f64() / 60.0, s.stats.rss_anon_kib as f64))
            .collect::<Vec<_>>(),
    );
    println!(
        "  VmRSS trend after the first third: {trend:+.0} KiB/min, RssAnon {anon_trend:+.0} KiB/min (least squares over {} samples); VmHWM at the end {}",
        rest.len(),
        mib(samples.last().unwrap().stats.peak_rss_kib)
    );
    let p99 = |rows: &[Sample]| median(rows.iter().map(|s| s.p99).collect());
    let p50 = |rows: &[Sample]| median(rows.iter().map(|s| s.p50).collect());
    let cpu = |rows: &[Sample]| rows.iter().map(|s| s.cpu_us).sum::<f64>() / rows.len() as f64;
    println!(
        "  latency  p50 {} -> {} us, p99 {} -> {} us (median of the first third -> of the last third); CPU per check {:.1} -> {:.1} us",
        p50(first),
        p50(last),
        p99(first),
        p99(last),
        cpu(first),
        cpu(last)
    );
    let total = |f: fn(&Sample) -> u64| samples.iter().map(f).sum::<u64>();
    let (errors, wrong) = (total(|s| s.counts.errors), total(|s| s.counts.wrong));
    println!(
        "  errors {errors}, wrong answers {wrong}, cookies reissued {}, checks abandoned {}, skipped {}, unique tokens short {}",
        total(|s| s.counts.reissued),
        total(|s| s.counts.cancelled),
        total(|s| s.counts.skipped),
        total(|s| s.counts.unique_short)
    );
    let all = [rss, fds, threads];
    let overall = if all.contains(&"GROWING") {
        "GROWING"
    } else if all.contains(&"bounded") {
        "bounded"
    } else {
        "flat"
    };
    let grown: Vec<&str> = ["VmRSS", "fds", "threads"]
        .into_iter()
        .zip(all)
        .filter(|(_, v)| *v == "GROWING")
        .map(|(name, _)| name)
        .collect();
    println!(
        "  => {overall}{}{}",
        if grown.is_empty() {
            String::new()
        } else {
            format!(" ({})", grown.join(", "))
        },
        if errors + wrong > 0 {
            format!("; {errors} errors and {wrong} wrong answers")
        } else {
            ", no errors".to_owned()
        }
    );
    if n < 3 {
        println!(
            "  (with fewer than 3 samples the thirds overlap: this only proves the soak runs)"
        );
    }
    overall != "GROWING"
}

fn row_time(s: &Sample) -> String {
    format!("{}:{:02}", s.at.as_secs() / 60, s.at.as_secs() % 60)
}

/// The soak. Settings: BENCH_SOAK_MINUTES (30), BENCH_SOAK_RATE (500 checks/s; 100 on the debug
/// build), BENCH_SOAK_SAMPLE_SECONDS (60), BENCH_CONNECTIONS (4).
pub async fn run() {
    let minutes: f64 = setting("BENCH_SOAK_MINUTES", 30.0);
    // The debug build (`cargo test`) saturates near 300 checks/s on two cores.
    let rate: f64 = setting(
        "BENCH_SOAK_RATE",
        if cfg!(debug_assertions) { 100.0 } else { 500.0 },
    );
    let interval = Duration::from_secs(setting("BENCH_SOAK_SAMPLE_SECONDS", 60));
    let connections: usize = setting("BENCH_CONNECTIONS", 4);
    let samples = ((minutes * 60.0 / interval.as_secs_f64()).ceil() as u32).max(1);
    let duration = interval * samples;

    let op = Op::start(OpOptions::auth0()).await;
    let secret = support::session_secret();
    let mut portcullis = super::start_portcullis(&op, &secret).await;
    let pid = portcullis.proc.pid();

    let minter = Arc::new(Minter::new(&op.issuer));
    let t = Instant::now();
    let token = minter.mint(u64::MAX);
    let mut cookies = Vec::new();
    for _ in 0..BROWSERS {
        cookies.push(super::fresh_session_cookie(&op.issuer, &secret, &token).await);
    }
    let now = support::now();
    let claims = |iss: &str, aud: &str, exp: u64| {
        serde_json::json!({"iss": iss, "aud": aud, "sub": "auth0|5f7c8ec7c33c6c004bbafe82",
            "iat": now, "exp": exp, "email": "alice@example.com", "groups": ["ops"]})
    };
    let bad = BadTokens {
        expired: support::mint("rs256-a", &claims(&op.issuer, AUDIENCE, now - 600)),
        wrong_audience: support::mint(
            "rs256-a",
            &claims(&op.issuer, "https://other/api", now + 3600),
        ),
        wrong_issuer: support::mint(
            "rs256-a",
            &claims("https://evil.example/", AUDIENCE, now + 3600),
        ),
        other_key: support::mint("rs256-b", &claims(&op.issuer, AUDIENCE, now + 3600)),
    };
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(connect(portcullis.grpc_port).await);
    }

    // Unique tokens: minted on a thread of their own, a second's worth ahead.
    let unique_rate = rate * 2.0 / SCHEDULE.len() as f64;
    let (tx, rx) = mpsc::sync_channel::<String>((unique_rate.ceil() as usize).max(1));
    {
        let minter = minter.clone();
        std::thread::spawn(move || {
            for jti in 0.. {
                if tx.send(minter.mint(jti)).is_err() {
                    return; // the soak is over
                }
            }
        });
    }
    eprintln!(
        "set up in {:.1} s (one token, {BROWSERS} session cookies, 4 refused tokens)",
        t.elapsed().as_secs_f64()
    );

    let shared = Arc::new(Shared {
        issuer: op.issuer.clone(),
        creds: RwLock::new(Arc::new(Creds { token, cookies })),
        bad,
        unique: Mutex::new(rx),
        channels: RwLock::new(channels),
        window: Mutex::new(Window::new()),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        sent: Default::default(),
        first_error: Mutex::new(None),
        first_wrong: Mutex::new(None),
    });

    // A second of the first requests, uncounted, so that connections and allocators are warm.
    let warm_until = tokio::time::Instant::now() + Duration::from_secs(1);
    generate(shared.clone(), rate, warm_until).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    *shared.window.lock().unwrap() = Window::new();
    for s in &shared.sent {
        s.store(0, Ordering::Relaxed);
    }

    println!(
        "\nportcullis soak: {} x {} s, {rate} checks/s over {connections} connections \
         (40 % cached bearer, 10 % unique bearer, 30 % cookie sessions, 20 % garbage)\n",
        samples,
        interval.as_secs()
    );
    println!("{}", header());
    let start_stats = ProcStats::read(pid);
    let mut rows = vec![Sample {
        at: Duration::ZERO,
        checks: 0,
        rate: 0.0,
        p50: 0,
        p99: 0,
        counts: Counts::default(),
        stats: start_stats,
        fds: ProcStats::open_fds(pid),
        cpu_us: 0.0,
    }];
    println!("{}", row(&rows[0]));

    let start = tokio::time::Instant::now();
    let until = start + duration;
    let tasks = [
        tokio::spawn(generate(shared.clone(), rate, until)),
        tokio::spawn(churn(shared.clone(), portcullis.grpc_port, until)),
        tokio::spawn(refresh_creds(
            shared.clone(),
            secret.clone(),
            minter.clone(),
            until,
        )),
    ];
    let mut before = start_stats;
    for k in 1..=samples {
        tokio::time::sleep_until(start + interval * k).await;
        let sample = take_sample(&shared, pid, interval * k, interval, &before);
        before = sample.stats;
        println!("{}", row(&sample));
        rows.push(sample);
        portcullis.proc.assert_running("in the soak");
    }
    for task in tasks {
        task.await.unwrap();
    }
    portcullis.proc.assert_running("in the soak");

    println!("\n{}", header());
    for r in &rows {
        println!("{}", row(r));
    }
    let sent: Vec<String> = CLASSES
        .iter()
        .map(|c| {
            format!(
                "{} {}",
                c.label(),
                shared.sent[*c as usize].load(Ordering::Relaxed)
            )
        })
        .collect();
    println!("\nchecks started: {}", sent.join(", "));
    let metrics = portcullis.metrics().await;
    println!("portcullis's own counters:");
    for line in metrics.lines().filter(|l| {
        (l.starts_with("portcullis_checks_total")
            || l.starts_with("portcullis_jwks_fetches_total")
            || l.starts_with("portcullis_token_cache_requests_total"))
            && !l.ends_with(" 0")
    }) {
        println!("  {line}");
    }
    let held = verdict(&rows[1..]);
    if let Some(e) = shared.first_error.lock().unwrap().take() {
        println!("first error: {e}");
    }
    if let Some(w) = shared.first_wrong.lock().unwrap().take() {
        println!("first wrong answer: {w}");
    }
    let total = |f: fn(&Sample) -> u64| rows.iter().map(f).sum::<u64>();
    assert!(
        total(|s| s.counts.errors) + total(|s| s.counts.wrong) == 0,
        "the soak had errors or wrong answers (above)"
    );
    if !held {
        println!("(growth is reported, not failed: a short soak may still be filling its caches)");
    }
}
