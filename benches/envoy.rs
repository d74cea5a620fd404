//! Through Envoy (issue: performance). Run: `cargo bench --bench envoy`.
//!
//! One Envoy (one worker thread) with five listeners built from the shipped envoy/envoy.yaml, each
//! answering 200 itself (direct_response), so that only the auth filter differs:
//!   a  no auth filter
//!   b  Envoy's own jwt_authn filter with its JWT cache, bearer token
//!   c  ext_authz to a no-op authorizer (tonic, in this process): the cost of the hop itself
//!   c' the same no-op answering what portcullis answers for the token of d (identity headers,
//!      client copies removed, dynamic metadata): what that answer costs Envoy
//!   d  ext_authz to portcullis, bearer token
//!   ce ext_authz to the no-op with e's request (its 3.9 KB session cookie): what that request
//!      costs Envoy whoever answers it
//!   e  ext_authz to portcullis, cookie session
//!   er ext_authz to a second portcullis whose sessions are in Redis (the cookie holds their id)
//! wrk (Debian's, `scripts/setup` installs it) drives each in turn, -t1 -c32, BENCH_SECONDS (5)
//! per run, BENCH_ROUNDS (3) rounds interleaved so that drift on a shared machine hits all alike.
//! The median round per listener is reported with Envoy's and the authorizer's CPU time per
//! request, and the ratios d/b, e/b, d/c, e/c, e/ce; then the ratios taken within each round,
//! median and range. Every response must be a 200, or the run fails.
//!
//! With `BENCH_MEASURE=instructions`, Envoy runs under callgrind instead and each listener gets
//! BENCH_REQUESTS (1000) requests one after another: Envoy's instructions per request, the same
//! from run to run on a machine too noisy for a 5 % difference in rate to show.
//!
//! The shipped config's access log is left out of every listener: it costs the same in each and
//! would blur the difference between filters.

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis::proto::{AuthorizationClient, CheckResponse, check_response};
use serde_yaml_ng::Value;

use common::{ProcStats, mib, setting};
use support::{AUDIENCE, Envoy, EnvoyPorts, Op, OpOptions};

const WRK: &str = "/usr/bin/wrk";

#[derive(Clone)]
struct Variant {
    key: &'static str,
    label: &'static str,
    port: u16,
    /// The request header wrk sends.
    header: String,
    path: &'static str,
}

/// One wrk run's numbers.
#[derive(Debug, Clone, Copy)]
struct Run {
    rate: f64,
    p50_us: f64,
    p99_us: f64,
    envoy_cpu_us: f64,
    authorizer_cpu_us: Option<f64>,
}

fn main() {
    assert!(
        Path::new(WRK).exists(),
        "{WRK} is missing: run scripts/setup first"
    );
    let seconds: u64 = setting("BENCH_SECONDS", 5);
    let rounds: usize = setting("BENCH_ROUNDS", 3);
    let rt = tokio::runtime::Runtime::new().unwrap();

    let op = rt.block_on(Op::start(OpOptions::auth0()));
    let secret = support::session_secret();
    let portcullis = rt.block_on(common::start_portcullis(&op, &secret));
    let redis = rt.block_on(support::Redis::start());
    let portcullis_redis = rt.block_on(common::start_portcullis_with(
        &op,
        &secret,
        &format!(", store: redis, redis: {{url: '{}'}}", redis.url),
    ));
    let noop_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let noop_port = noop_listener.local_addr().unwrap().port();
    rt.spawn(common::serve_noop(noop_listener, common::Noop::default()));

    let token = common::access_token(&op, 1);
    let fresh_cookie = || {
        format!(
            "cookie: {}",
            rt.block_on(common::fresh_session_cookie(&op.issuer, &secret, &token))
        )
    };
    let fresh_redis_cookie = || {
        format!(
            "cookie: {}",
            rt.block_on(common::fresh_redis_session_cookie(
                &redis.url, &op.issuer, &secret, &token
            ))
        )
    };
    let bearer = format!("authorization: Bearer {token}");
    let (session, page) = (fresh_cookie(), "/table_detail/gold/hive/core/users");
    let answer = rt.block_on(portcullis_answer(portcullis.grpc_port, &token));
    let like_listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let like_port = like_listener.local_addr().unwrap().port();
    rt.spawn(common::serve_noop(
        like_listener,
        common::Noop::like_portcullis(answer),
    ));
    let api = "/api/metadata/v0/table/gold.core.users";
    let variants: Vec<Variant> = [
        ("a", "no auth filter", bearer.clone(), api),
        ("b", "jwt_authn (Envoy's own)", bearer.clone(), api),
        ("c", "ext_authz to a no-op", bearer.clone(), api),
        ("c'", "ext_authz, no-op answering as d", bearer.clone(), api),
        ("d", "ext_authz to portcullis, bearer", bearer.clone(), api),
        (
            "ce",
            "ext_authz to a no-op, e's request",
            session.clone(),
            page,
        ),
        ("e", "ext_authz to portcullis, cookie", session, page),
        (
            "er",
            "ext_authz to portcullis, Redis session",
            fresh_redis_cookie(),
            page,
        ),
    ]
    .into_iter()
    .map(|(key, label, header, path)| Variant {
        key,
        label,
        port: support::free_port(),
        header,
        path,
    })
    .collect();

    let config = envoy_config(
        &op,
        portcullis.grpc_port,
        [
            ("noop", noop_port),
            ("noop-like", like_port),
            ("portcullis-redis", portcullis_redis.grpc_port),
        ],
        &variants,
    );
    let measure = Measure::from_env();
    let envoy = match measure {
        Measure::Time => rt.block_on(Envoy::start(&config)),
        // Envoy under valgrind starts in about 20 s on this machine.
        Measure::Instructions => rt.block_on(Envoy::start_under(
            &config,
            &[
                "valgrind",
                "--tool=callgrind",
                // .venv/bin/envoy is a Python launcher that execs the binary.
                "--trace-children=yes",
                "--callgrind-out-file=/dev/null",
            ],
            Duration::from_secs(180),
        )),
    };
    let envoy_pid = envoy.proc.pid();

    // One request each, then a short run: connections up, caches warm, every listener a 200.
    let http = support::http_client();
    for v in &variants {
        let (name, value) = v.header.split_once(": ").unwrap();
        let url = format!("http://127.0.0.1:{}{}", v.port, v.path);
        let (status, body) = rt.block_on(async {
            let r = http.get(&url).header(name, value).send().await.unwrap();
            (r.status(), r.text().await.unwrap_or_default())
        });
        assert_eq!(status, 200, "({}) {}: {body}", v.key, v.label);
        wrk(v, 1, envoy_pid, None);
    }
    // wrk cannot take up a reissued cookie: every run gets one sealed just before it.
    let as_sent = |v: &Variant| Variant {
        header: match v.key {
            "ce" | "e" => fresh_cookie(),
            "er" => fresh_redis_cookie(),
            _ => v.header.clone(),
        },
        ..v.clone()
    };
    if measure == Measure::Instructions {
        let requests: usize = setting("BENCH_REQUESTS", 1000);
        count_instructions(&rt, &variants, as_sent, envoy_pid, rounds, requests);
        return;
    }
    let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for v in &variants {
            let authorizer = match v.key {
                "c" | "c'" | "ce" => Some(std::process::id()),
                "d" | "e" => Some(portcullis.proc.pid()),
                "er" => Some(portcullis_redis.proc.pid()),
                _ => None,
            };
            runs.entry(v.key)
                .or_default()
                .push(wrk(&as_sent(v), seconds, envoy_pid, authorizer));
        }
    }

    println!(
        "\nThrough Envoy (one worker), wrk -t1 -c32, {seconds} s x {rounds} rounds, median round:\n"
    );
    println!(
        "{:<36} {:>10} {:>8} {:>8} {:>12} {:>14}",
        "", "req/s", "p50 us", "p99 us", "Envoy us/req", "authz us/req"
    );
    let mut median = BTreeMap::new();
    for v in &variants {
        let mut r = runs[v.key].clone();
        r.sort_by(|x, y| x.rate.total_cmp(&y.rate));
        let m = r[r.len() / 2];
        median.insert(v.key, m);
        println!(
            "{:<36} {:>10.0} {:>8.0} {:>8.0} {:>12.1} {:>14}",
            format!("({}) {}", v.key, v.label),
            m.rate,
            m.p50_us,
            m.p99_us,
            m.envoy_cpu_us,
            m.authorizer_cpu_us
                .map_or(String::new(), |c| format!("{c:.1}"))
        );
    }
    print_ratios("ratios of the median rounds", |x, y| {
        median[x].rate / median[y].rate
    });
    // Runs of one round are minutes apart at most, so a ratio within a round is less exposed to
    // the machine's drift than a ratio of medians taken from different rounds.
    println!("ratios within each round (median, lowest-highest):");
    for (x, y) in RATIOS {
        let (mid, low, high) = spread((0..rounds).map(|i| runs[x][i].rate / runs[y][i].rate));
        println!("  {x}/{y} {mid:.2} ({low:.2}-{high:.2})");
    }
    let stats = ProcStats::read(portcullis.proc.pid());
    println!(
        "portcullis resident memory after the runs: {} (peak {})",
        mib(stats.rss_kib),
        mib(stats.peak_rss_kib)
    );
}

/// What the runs measure (`BENCH_MEASURE`): `time`, wrk's rate and latency; or `instructions`,
/// Envoy's user-space instructions per request counted by callgrind, which are the same from run
/// to run however busy the machine is. The socket reads and writes in the kernel are not in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    Time,
    Instructions,
}

impl Measure {
    fn from_env() -> Self {
        match std::env::var("BENCH_MEASURE").as_deref() {
            Err(_) | Ok("time") => Self::Time,
            Ok("instructions") => Self::Instructions,
            Ok(other) => panic!("BENCH_MEASURE={other}: expected time or instructions"),
        }
    }
}

/// Envoy's instructions per request for each variant: `requests` requests one after another on
/// one connection, between zeroing callgrind's counters and reading them. Printed with the
/// ratios a saturated Envoy worker would show: x/y is y's instructions over x's.
fn count_instructions(
    rt: &tokio::runtime::Runtime,
    variants: &[Variant],
    as_sent: impl Fn(&Variant) -> Variant,
    envoy_pid: u32,
    rounds: usize,
    requests: usize,
) {
    let mut counts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for v in variants {
            let v = as_sent(v);
            let (name, value) = v.header.split_once(": ").unwrap();
            let url = format!("http://127.0.0.1:{}{}", v.port, v.path);
            let http = support::http_client();
            callgrind(envoy_pid, "--zero");
            rt.block_on(async {
                for _ in 0..requests {
                    let r = http.get(&url).header(name, value).send().await.unwrap();
                    assert_eq!(r.status(), 200, "({}) {}", v.key, v.label);
                    r.bytes().await.unwrap();
                }
            });
            let total = instructions_so_far(&callgrind(envoy_pid, "-e"));
            counts
                .entry(v.key)
                .or_default()
                .push(total as f64 / requests as f64);
        }
    }
    println!(
        "\nEnvoy's instructions per request (callgrind, user space), {requests} requests one after \
         another, {rounds} rounds, median (lowest-highest):\n"
    );
    let mut median = BTreeMap::new();
    for v in variants {
        let (mid, low, high) = spread(counts[v.key].iter().copied());
        median.insert(v.key, mid);
        println!(
            "{:<36} {:>10.0} ({low:.0}-{high:.0})",
            format!("({}) {}", v.key, v.label),
            mid
        );
    }
    print_ratios("as rates of a saturated worker", |x, y| {
        median[y] / median[x]
    });
}

/// The ratios x/y printed, in both modes.
const RATIOS: [(&str, &str); 9] = [
    ("c", "b"),
    ("d", "b"),
    ("e", "b"),
    ("d", "c"),
    ("e", "c"),
    ("e", "ce"),
    ("er", "c"),
    ("c'", "c"),
    ("d", "c'"),
];

fn print_ratios(title: &str, ratio: impl Fn(&str, &str) -> f64) {
    let all: Vec<String> = RATIOS
        .iter()
        .map(|&(x, y)| format!("{x}/{y} {:.2}", ratio(x, y)))
        .collect();
    println!("\n{title}: {}", all.join("  "));
}

/// Median, lowest and highest of some numbers.
fn spread(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

/// Runs `callgrind_control <action> <pid>` and returns what it printed.
fn callgrind(pid: u32, action: &str) -> String {
    let out = Command::new("callgrind_control")
        .args([action, &pid.to_string()])
        .output()
        .expect("running callgrind_control");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "callgrind_control {action}: {text}");
    text
}

/// The sum over threads of `callgrind_control -e`'s counts ("   Th 1  272,279,813").
fn instructions_so_far(status: &str) -> u64 {
    let threads: Vec<u64> = status
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Th "))
        .map(|l| {
            let count = l
                .split_whitespace()
                .nth(1)
                .expect("a count after the thread");
            count.replace(',', "").parse().expect("a number")
        })
        .collect();
    assert!(!threads.is_empty(), "no counts in:\n{status}");
    threads.iter().sum()
}

/// Runs wrk on one listener and reads its rate and latency percentiles; panics unless every
/// response was a 200.
fn wrk(v: &Variant, seconds: u64, envoy_pid: u32, authorizer_pid: Option<u32>) -> Run {
    let envoy_before = ProcStats::read(envoy_pid);
    let authorizer_before = authorizer_pid.map(ProcStats::read);
    let out = Command::new(WRK)
        .args(["-t1", "-c32", "--latency", "-d"])
        .arg(format!("{seconds}s"))
        .args(["-H", &v.header])
        .arg(format!("http://127.0.0.1:{}{}", v.port, v.path))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "({}) {}: not every request got a 200:\n{text}",
        v.key,
        v.label
    );
    let requests: f64 = field(&text, "requests in").expect("request count");
    let per_request = |before: ProcStats, pid: u32| {
        (ProcStats::read(pid).cpu - before.cpu).as_micros() as f64 / requests
    };
    Run {
        rate: field(&text, "Requests/sec:").expect("Requests/sec"),
        p50_us: latency(&text, "50%"),
        p99_us: latency(&text, "99%"),
        envoy_cpu_us: per_request(envoy_before, envoy_pid),
        authorizer_cpu_us: authorizer_before.map(|b| per_request(b, authorizer_pid.unwrap())),
    }
}

/// The number right after `label` on its line ("Requests/sec: 123.4"), or, for "requests in",
/// the number at the start of the line ("123456 requests in 5.00s").
fn field(text: &str, label: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.contains(label))?;
    let (before, after) = line.split_once(label)?;
    let word = if label == "requests in" {
        before.split_whitespace().last()?
    } else {
        after.split_whitespace().next()?
    };
    word.parse().ok()
}

/// A percentile of wrk's latency distribution ("     99%    1.23ms"), in microseconds.
fn latency(text: &str, percentile: &str) -> f64 {
    let value = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix(percentile))
        .map(str::trim)
        .next()
        .unwrap_or_else(|| panic!("no {percentile} latency in:\n{text}"));
    let (number, unit) = value.split_at(value.find(|c: char| c.is_alphabetic()).unwrap());
    let n: f64 = number.parse().unwrap();
    n * match unit {
        "us" => 1.0,
        "ms" => 1e3,
        "s" => 1e6,
        other => panic!("latency unit {other:?}"),
    }
}

/// The shipped envoy.yaml, its listener copied once per variant with that variant's filter and a
/// direct 200 instead of the upstream, plus a cluster for the no-op authorizer.
fn envoy_config(
    op: &Op,
    portcullis: u16,
    others: [(&str, u16); 3],
    variants: &[Variant],
) -> String {
    let ports = EnvoyPorts::free(portcullis, support::free_port());
    let mut config: Value =
        serde_yaml_ng::from_str(&support::shipped_config("envoy/envoy.yaml", ports)).unwrap();
    let resources = &mut config["static_resources"];
    let template = resources["listeners"][0].clone();
    let Value::Sequence(shipped) =
        template["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"].clone()
    else {
        panic!("envoy.yaml: no http_filters");
    };
    let ext_authz = shipped[0].clone();
    let router = shipped[shipped.len() - 1].clone();
    assert_eq!(ext_authz["name"], "envoy.filters.http.ext_authz");
    assert_eq!(router["name"], "envoy.filters.http.router");
    let to = |cluster: &str| {
        let mut f = ext_authz.clone();
        f["typed_config"]["grpc_service"]["envoy_grpc"]["cluster_name"] = cluster.into();
        f
    };
    let jwks = format!(
        r#"{{"keys": [{}]}}"#,
        std::fs::read_to_string(
            support::repo_root().join("tests/fixtures/keys/rs256-a.pub.jwk.json")
        )
        .unwrap()
    );
    let jwt_authn: Value = serde_yaml_ng::from_str(&format!(
        r#"
name: envoy.filters.http.jwt_authn
typed_config:
  "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
  providers:
    op:
      issuer: "{}"
      audiences: ["{AUDIENCE}"]
      local_jwks: {{ inline_string: {} }}
      jwt_cache_config: {{ jwt_cache_size: 100 }}
  rules:
  - match: {{ prefix: "/" }}
    requires: {{ provider_name: op }}
"#,
        op.issuer,
        serde_json::to_string(&jwks).unwrap()
    ))
    .unwrap();

    let listeners: Vec<Value> = variants
        .iter()
        .map(|v| {
            let mut l = template.clone();
            l["name"] = format!("bench-{}", v.key.replace('\'', "-prime")).into();
            l["address"]["socket_address"]["port_value"] = v.port.into();
            let hcm = &mut l["filter_chains"][0]["filters"][0]["typed_config"];
            if let Value::Mapping(m) = hcm {
                m.remove("access_log");
            }
            hcm["route_config"]["virtual_hosts"][0]["routes"] = serde_yaml_ng::from_str(
                r#"[{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "ok"}}}]"#,
            )
            .unwrap();
            let chain = match v.key {
                "a" => vec![router.clone()],
                "b" => vec![jwt_authn.clone(), router.clone()],
                "c" | "ce" => vec![to("noop"), router.clone()],
                "c'" => vec![to("noop-like"), router.clone()],
                "er" => vec![to("portcullis-redis"), router.clone()],
                _ => vec![ext_authz.clone(), router.clone()],
            };
            hcm["http_filters"] = Value::Sequence(chain);
            l
        })
        .collect();
    resources["listeners"] = Value::Sequence(listeners);

    let Value::Sequence(clusters) = &mut resources["clusters"] else {
        panic!("envoy.yaml: no clusters");
    };
    let template = clusters
        .iter()
        .find(|c| c["name"] == "portcullis")
        .expect("portcullis cluster")
        .clone();
    for (name, port) in others {
        let mut cluster = template.clone();
        cluster["name"] = name.into();
        cluster["load_assignment"]["cluster_name"] = name.into();
        // The no-op server has no health service; the portcullis cluster's checks run every 5 s.
        if let Value::Mapping(m) = &mut cluster
            && name.starts_with("noop")
        {
            m.remove("health_checks");
        }
        cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
            ["port_value"] = port.into();
        clusters.push(cluster);
    }
    serde_yaml_ng::to_string(&config).unwrap()
}

/// What portcullis answers Envoy for a request with `token` on the api route, asked over gRPC as
/// Envoy asks (only the allowed headers that are present: here the Authorization header).
async fn portcullis_answer(port: u16, token: &str) -> CheckResponse {
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
