//! gRPC load on the portcullis binary (issue: performance). Run: `cargo bench --bench load`.
//!
//! Many concurrent Check RPCs over a few HTTP/2 connections, as Envoy sends them, for four kinds of
//! request: a cached bearer token, unique bearer tokens (every one cold: signature checked, then
//! cached, so the token cache also fills to its bound), a cookie session, and a request with no
//! credential (denied). Each is run against a no-op authorizer first (the same tonic server
//! doing nothing, in a child process), then against portcullis, and reported as requests/s,
//! latency percentiles (HDR histogram), the server's CPU time per check and the ratio to the no-op
//! run. portcullis's resident memory is read after each kind and its peak at the end.
//!
//! The provider is the test OpenID provider (tests/op, `scripts/setup` installs it); it is asked
//! for discovery and keys at start only. Settings, from the environment: BENCH_SECONDS (5) per run,
//! BENCH_ROUNDS (3, interleaved; the median round is reported),
//! BENCH_CONCURRENCY (64 requests in flight), BENCH_CONNECTIONS (4), BENCH_UNIQUE_TOKENS (20000),
//! BENCH_KINDS (all; a comma-separated list of label prefixes, e.g. `cached,cookie`).
//! The load generator runs on one thread, so the server has the other core of a two-core machine.
//!
//! Soak mode (`BENCH_MODE=soak`, or `BENCH_SOAK_MINUTES` set; common/soak.rs): a steady mix of all
//! of the above and garbage at a rate well below saturation for BENCH_SOAK_MINUTES (30), sampling
//! portcullis's memory, file descriptors, threads, latency and errors every minute, then a verdict
//! on leaks and drift. Settings: BENCH_SOAK_RATE (500 checks/s), BENCH_SOAK_SAMPLE_SECONDS (60),
//! BENCH_CONNECTIONS. E.g. `BENCH_SOAK_MINUTES=30 cargo bench --bench load`.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use portcullis::proto::{AuthorizationClient, CheckRequest, check_response};
use tonic::transport::Channel;

use common::{ProcStats, mib, setting};
use support::{Op, OpOptions, Proc};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("noop-server") {
        let port: u16 = args[2].parse().expect("port");
        return tokio::runtime::Runtime::new().unwrap().block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .unwrap();
            common::serve_noop(listener, common::Noop::default()).await;
        });
    }
    // `cargo bench` passes `--bench`; a bench without a harness has nothing else to read.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    if common::soak::wanted() {
        return runtime.block_on(common::soak::run());
    }
    runtime.block_on(run());
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    CachedBearer,
    UniqueBearer,
    CookieSession,
    NoCredential,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::CachedBearer => "cached bearer",
            Kind::UniqueBearer => "unique bearer (cold)",
            Kind::CookieSession => "cookie session",
            Kind::NoCredential => "no credential (401)",
        }
    }

    /// What portcullis must answer; the no-op server allows everything.
    fn expected_status(self) -> u32 {
        match self {
            Kind::NoCredential => 401,
            _ => 200,
        }
    }
}

/// The requests of one kind, sent in order (round-robin when there are fewer than sent).
fn requests(kind: Kind, token: &str, unique: &[String], cookie: &str) -> Vec<CheckRequest> {
    // What Envoy sends with the shipped allowed_headers: the credential and accept.
    let make = |path: &str, header: Option<(&str, String)>| {
        let mut headers = vec![("accept", "application/json")];
        headers.extend(header.as_ref().map(|(n, v)| (*n, v.as_str())));
        support::check_request("amundsen.example.com", path, &headers)
    };
    let api = "/api/metadata/v0/table/gold.core.users";
    match kind {
        Kind::CachedBearer => vec![make(
            api,
            Some(("authorization", format!("Bearer {token}"))),
        )],
        Kind::UniqueBearer => unique
            .iter()
            .map(|t| make(api, Some(("authorization", format!("Bearer {t}")))))
            .collect(),
        Kind::CookieSession => vec![make(
            "/table_detail/gold/hive/core/users",
            Some(("cookie", cookie.to_owned())),
        )],
        Kind::NoCredential => vec![make(api, None)],
    }
}

/// One run's numbers.
#[derive(Debug, Clone, Copy)]
struct Measured {
    sent: usize,
    rate: f64,
    p50: u64,
    p99: u64,
    p999: u64,
    /// The server's CPU time per check, in microseconds.
    cpu_us: f64,
}

struct Outcome {
    sent: usize,
    elapsed: Duration,
    latency: Histogram<u64>,
    /// Answers that were not the expected decision (or not an answer at all).
    wrong: usize,
    first_wrong: Option<String>,
}

impl Outcome {
    fn rate(&self) -> f64 {
        self.sent as f64 / self.elapsed.as_secs_f64()
    }
}

/// Sends `requests` from `concurrency` tasks over `connections` channels for `duration`, or until
/// each request was sent once when `once` (unique tokens).
async fn drive(
    port: u16,
    requests: Arc<Vec<CheckRequest>>,
    expected: u32,
    once: bool,
    duration: Duration,
) -> Outcome {
    let concurrency: usize = setting("BENCH_CONCURRENCY", 64);
    let connections: usize = setting("BENCH_CONNECTIONS", 4);
    let mut channels = Vec::new();
    for _ in 0..connections {
        channels.push(
            Channel::from_shared(format!("http://127.0.0.1:{port}"))
                .unwrap()
                .tcp_nodelay(true)
                .connect()
                .await
                .expect("connect"),
        );
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for i in 0..concurrency {
        let mut client = AuthorizationClient::new(channels[i % connections].clone());
        let (next, requests) = (next.clone(), requests.clone());
        tasks.push(tokio::spawn(async move {
            let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
            let (mut wrong, mut first_wrong) = (0, None);
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if (once && n >= requests.len()) || (!once && Instant::now() >= deadline) {
                    break;
                }
                let req = requests[n % requests.len()].clone();
                let t = Instant::now();
                let answer = client.check(req).await;
                latency.saturating_record(t.elapsed().as_micros() as u64);
                let status = match &answer {
                    Ok(r) => match &r.get_ref().http_response {
                        Some(check_response::HttpResponse::OkResponse(_)) => 200,
                        Some(check_response::HttpResponse::DeniedResponse(d)) => {
                            d.status.as_ref().map_or(0, |s| s.code as u32)
                        }
                        None => 0,
                    },
                    Err(_) => 0,
                };
                if status != expected {
                    wrong += 1;
                    first_wrong.get_or_insert_with(|| format!("{status}: {answer:?}"));
                }
            }
            (latency, wrong, first_wrong)
        }));
    }
    let mut out = Outcome {
        sent: 0,
        elapsed: Duration::ZERO,
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).unwrap(),
        wrong: 0,
        first_wrong: None,
    };
    for task in tasks {
        let (latency, wrong, first_wrong) = task.await.unwrap();
        out.latency.add(&latency).unwrap();
        out.wrong += wrong;
        out.first_wrong = out.first_wrong.or(first_wrong);
    }
    out.elapsed = started.elapsed();
    out.sent = out.latency.len() as usize;
    out
}

async fn run() {
    let seconds: u64 = setting("BENCH_SECONDS", 5);
    let duration = Duration::from_secs(seconds);
    let unique_count: u64 = setting("BENCH_UNIQUE_TOKENS", 20_000);
    let rounds: usize = setting("BENCH_ROUNDS", 3);

    let op = Op::start(OpOptions::auth0()).await;
    let secret = support::session_secret();
    let mut portcullis = common::start_portcullis(&op, &secret).await;
    let pid = portcullis.proc.pid();
    let noop_port = support::free_port();
    let mut noop_cmd = Command::new(std::env::current_exe().unwrap());
    noop_cmd.args(["noop-server", &noop_port.to_string()]);
    let noop = Proc::spawn("noop-authorizer", noop_cmd, tempfile::tempdir().unwrap());
    common::wait_for_port(noop_port).await;

    let t = Instant::now();
    let token = common::access_token(&op, u64::MAX);
    let unique = common::access_tokens(&op, unique_count);
    eprintln!(
        "signed {} tokens in {:.1} s",
        unique.len() + 1,
        t.elapsed().as_secs_f64()
    );
    let idle = ProcStats::read(pid);

    // Warm both servers' connections and allocators before anything is counted.
    let warm = Arc::new(requests(Kind::CachedBearer, &token, &[], ""));
    for port in [noop_port, portcullis.grpc_port] {
        drive(port, warm.clone(), 200, false, Duration::from_secs(1)).await;
    }

    println!(
        "\nportcullis gRPC load: {} s per run, median of {rounds} rounds, {} in flight over {} connections\n",
        seconds,
        setting("BENCH_CONCURRENCY", 64),
        setting("BENCH_CONNECTIONS", 4)
    );
    println!(
        "{:<22} {:>10} {:>9} {:>12} {:>8} {:>8} {:>8} {:>10} {:>11}",
        "kind",
        "server",
        "checks",
        "checks/s",
        "p50 us",
        "p99 us",
        "p99.9 us",
        "CPU us/ck",
        "vs no-op"
    );
    let kinds = [
        Kind::CachedBearer,
        Kind::UniqueBearer,
        Kind::CookieSession,
        Kind::NoCredential,
    ];
    let only = std::env::var("BENCH_KINDS").unwrap_or_default();
    let kinds: Vec<Kind> = kinds
        .into_iter()
        .filter(|k| only.is_empty() || only.split(',').any(|o| k.label().starts_with(o)))
        .collect();
    let kinds = &kinds[..];
    // Rounds interleave the servers and kinds, so that drift on a shared machine hits all alike;
    // each round sends its own share of the unique tokens (to both servers).
    let mut runs: Vec<(Kind, &str, Measured)> = Vec::new();
    let mut after = Vec::new();
    for round in 0..rounds {
        let share = unique.len() / rounds;
        let unique = &unique[round * share..(round + 1) * share];
        for &kind in kinds {
            let cookie = match kind {
                Kind::CookieSession => {
                    common::fresh_session_cookie(&op.issuer, &secret, &token).await
                }
                _ => String::new(),
            };
            let reqs = Arc::new(requests(kind, &token, unique, &cookie));
            let once = kind == Kind::UniqueBearer;
            for (server, port, expected, server_pid) in [
                ("no-op", noop_port, 200, noop.pid()),
                (
                    "portcullis",
                    portcullis.grpc_port,
                    kind.expected_status(),
                    pid,
                ),
            ] {
                let before = ProcStats::read(server_pid);
                let out = drive(port, reqs.clone(), expected, once, duration).await;
                let cpu = ProcStats::read(server_pid).cpu - before.cpu;
                assert_eq!(
                    out.wrong,
                    0,
                    "{}: {server} gave {} wrong answers, first: {}",
                    kind.label(),
                    out.wrong,
                    out.first_wrong.unwrap_or_default()
                );
                runs.push((
                    kind,
                    server,
                    Measured {
                        sent: out.sent,
                        rate: out.rate(),
                        p50: out.latency.value_at_quantile(0.5),
                        p99: out.latency.value_at_quantile(0.99),
                        p999: out.latency.value_at_quantile(0.999),
                        cpu_us: cpu.as_micros() as f64 / out.sent as f64,
                    },
                ));
            }
            if round == rounds - 1 {
                after.push((kind, ProcStats::read(pid)));
            }
        }
    }
    for &kind in kinds {
        let mut noop_rate = 0.0;
        for server in ["no-op", "portcullis"] {
            let mut mine: Vec<Measured> = runs
                .iter()
                .filter(|(k, s, _)| *k == kind && *s == server)
                .map(|(_, _, m)| *m)
                .collect();
            mine.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            let m = mine[mine.len() / 2];
            let ratio = if server == "no-op" {
                noop_rate = m.rate;
                String::new()
            } else {
                format!("{:.2}", m.rate / noop_rate)
            };
            println!(
                "{:<22} {:>10} {:>9} {:>12.0} {:>8} {:>8} {:>8} {:>10.1} {:>11}",
                kind.label(),
                server,
                m.sent,
                m.rate,
                m.p50,
                m.p99,
                m.p999,
                m.cpu_us,
                ratio
            );
        }
    }
    portcullis.proc.assert_running("under load");

    println!(
        "\nportcullis resident memory (in the last round; {unique_count} unique tokens in all, the token cache keeps 10000):"
    );
    println!("  idle after start          {}", mib(idle.rss_kib));
    for (kind, stats) in &after {
        println!("  after {:<20} {}", kind.label(), mib(stats.rss_kib));
    }
    let last = after.last().map_or(idle, |(_, s)| *s);
    println!("  peak (VmHWM)              {}", mib(last.peak_rss_kib));
}
