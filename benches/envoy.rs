//! Through Envoy (issue: performance). Run: `cargo bench --bench envoy`.
//!
//! One Envoy (one worker thread) with a listener per variant built from the shipped
//! envoy/envoy.yaml, each answering 200 itself (direct_response), so that only the auth filter
//! differs:
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
//! and the native fast path (`portcullis envoy-config` on a third portcullis, passes on, sessions
//! in Redis as in deploy/fast-path.portcullis.yaml: its generated listener and routes, every route
//! answering 200 itself):
//!   f  bearer token (Envoy's jwt_authn verifies it; ext_authz skipped)
//!   g  browser with a valid pass beside its Redis session cookie (the same, with the pass)
//!   gc g with e's cookie-store session (3.2 KB) instead: what a bigger request costs Envoy
//!   gs gc with the Lua step's cookie strip taken out: gc/gs is what stripping costs
//!   h  browser whose pass ran out: jwt_authn fails it, ext_authz asks portcullis, which allows
//!      on the Redis session and issues a new pass (today's path for that browser: er)
//!   fn, gn, gcn, hn  f, g, gc and h with `--fast-path-filter native`: portcullis's Envoy filter
//!      (envoy-module/, built with `cargo build --release -p portcullis-envoy-module` for
//!      `cargo bench`) in place of the Lua step and jwt_authn's payload metadata
//! wrk (Debian's, `scripts/setup` installs it) drives each in turn, -t1 -c32, BENCH_SECONDS (5)
//! per run, BENCH_ROUNDS (3) rounds interleaved so that drift on a shared machine hits all alike.
//! The median round per listener is reported with Envoy's and the authorizer's CPU time per
//! request, and the ratios c/b, d/b, e/b, d/c, e/c, e/ce, er/c, c'/c, d/c', f/b, g/b, gc/b,
//! gc/gs, h/er, f/d, g/er, fn/b, gn/b, hn/er, fn/f, gn/g, gcn/gc, hn/h; then the ratios taken
//! within each round, median and range. Every response must be a 200, or the run fails.
//!
//! With `BENCH_MEASURE=instructions`, Envoy runs under callgrind instead and each listener gets
//! BENCH_REQUESTS (1000) requests one after another: Envoy's instructions per request, the same
//! from run to run on a machine too noisy for a 5 % difference in rate to show.
//!
//! The shipped config's access log is left out of every listener: it costs the same in each and
//! would blur the difference between filters. The machinery is in benches/common: the variants
//! and the config (envoy.rs), wrk.rs, callgrind.rs, and the modes and ratios (measure.rs).

#[path = "../tests/support/mod.rs"]
mod support;

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::callgrind::count_instructions;
use common::envoy::{Cluster, CookieStrip, Filter, Variant, envoy_config};
use common::measure::{Measure, print_ratios, spread};
use common::wrk::{Run, WRK, wrk};
use common::{ProcStats, mib, setting};
use support::{Envoy, EnvoyPorts, Op, OpOptions};

/// Where a variant's browser keeps its session.
#[derive(Clone, Copy)]
enum Session {
    Redis,
    Cookie,
}

/// Whether a variant's pass has run out.
#[derive(Clone, Copy)]
enum Expired {
    No,
    Yes,
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
    let redis_store = format!(", store: redis, redis: {{url: '{}'}}", redis.url);
    let portcullis_redis = rt.block_on(common::start_portcullis_with(&op, &secret, &redis_store));
    let portcullis_fast = rt.block_on(common::start_portcullis_fast(&op, &secret, &redis_store));
    let fast_ports = EnvoyPorts::free(portcullis_fast.grpc_port, support::free_port());
    let fast_path = support::fast_path_config_with(&portcullis_fast, fast_ports, "lua");
    let fast_path_native = support::fast_path_config_with(&portcullis_fast, fast_ports, "native");
    let fast_path_callout = support::fast_path_config_with(&portcullis_fast, fast_ports, "callout");
    let token = common::access_token(&op, 1);
    let answer = rt.block_on(common::portcullis_answer(portcullis.grpc_port, &token));
    // The no-op authorizers, served in this process.
    let serve = |noop| {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        rt.spawn(common::serve_noop(listener, noop));
        port
    };
    let clusters = [
        Cluster::noop("noop", serve(common::Noop::default())),
        Cluster::noop("noop-like", serve(common::Noop::like_portcullis(answer))),
        Cluster::portcullis("portcullis-redis", portcullis_redis.grpc_port),
    ];

    // Each listener's filter and the authorizer process whose CPU time is reported.
    let to = |cluster, pid| (Filter::ExtAuthz { cluster }, Some(pid));
    let (none, jwt) = ((Filter::None, None), (Filter::JwtAuthn, None));
    let noop = to("noop", std::process::id());
    let noop_like = to("noop-like", std::process::id());
    let ours = to("portcullis", portcullis.proc.pid());
    let ours_redis = to("portcullis-redis", portcullis_redis.proc.pid());
    // What is sent: a bearer token to the api, or to a page a session cookie sealed for each run.
    let api = "/api/metadata/v0/table/gold.core.users";
    let page = "/table_detail/gold/hive/core/users";
    let bearer: (&dyn Fn() -> String, _) = (&|| format!("authorization: Bearer {token}"), api);
    let cookie: (&dyn Fn() -> String, _) = (
        &|| {
            let cookie = common::fresh_session_cookie(&op.issuer, &secret, &token);
            format!("cookie: {}", rt.block_on(cookie))
        },
        page,
    );
    let redis_cookie: (&dyn Fn() -> String, _) = (
        &|| {
            let cookie =
                common::fresh_redis_session_cookie(&redis.url, &op.issuer, &secret, &token);
            format!("cookie: {}", rt.block_on(cookie))
        },
        page,
    );
    // A Redis session's cookie and the pass portcullis gives it (or that pass, run out), sent
    // beside that cookie or beside a cookie-store session's.
    let with_pass = |session: Session, expired| {
        let redis_cookie =
            common::fresh_redis_session_cookie(&redis.url, &op.issuer, &secret, &token);
        let redis_cookie = rt.block_on(redis_cookie);
        let pass = rt.block_on(common::fresh_pass(portcullis_fast.grpc_port, &redis_cookie));
        let pass = match expired {
            Expired::No => pass,
            Expired::Yes => common::expired_pass(&secret, &pass),
        };
        let cookie = match session {
            Session::Redis => redis_cookie,
            Session::Cookie => {
                rt.block_on(common::fresh_session_cookie(&op.issuer, &secret, &token))
            }
        };
        format!("cookie: {cookie}; {pass}")
    };
    let pass: (&dyn Fn() -> String, _) = (&|| with_pass(Session::Redis, Expired::No), page);
    let pass_big: (&dyn Fn() -> String, _) = (&|| with_pass(Session::Cookie, Expired::No), page);
    let expired_pass: (&dyn Fn() -> String, _) =
        (&|| with_pass(Session::Redis, Expired::Yes), page);
    let fast = |strip| (Filter::FastPath(strip), Some(portcullis_fast.proc.pid()));
    let native = (Filter::FastPathNative, Some(portcullis_fast.proc.pid()));
    let callout = (Filter::FastPathCallout, Some(portcullis_fast.proc.pid()));
    let variants: Vec<Variant> = [
        ("a", "no auth filter", none, bearer),
        ("b", "jwt_authn (Envoy's own)", jwt, bearer),
        ("c", "ext_authz to a no-op", noop, bearer),
        ("c'", "ext_authz, no-op answering as d", noop_like, bearer),
        ("d", "ext_authz to portcullis, bearer", ours, bearer),
        ("ce", "ext_authz to a no-op, e's request", noop, cookie),
        ("e", "ext_authz to portcullis, cookie", ours, cookie),
        (
            "er",
            "ext_authz to portcullis, Redis session",
            ours_redis,
            redis_cookie,
        ),
        ("f", "fast path, bearer", fast(CookieStrip::On), bearer),
        ("g", "fast path, pass", fast(CookieStrip::On), pass),
        (
            "gc",
            "fast path, pass, cookie-store session",
            fast(CookieStrip::On),
            pass_big,
        ),
        (
            "gs",
            "gc, no cookie strip",
            fast(CookieStrip::Off),
            pass_big,
        ),
        (
            "h",
            "fast path, pass expired",
            fast(CookieStrip::On),
            expired_pass,
        ),
        ("fn", "fast path native, bearer", native, bearer),
        ("gn", "fast path native, pass", native, pass),
        (
            "gcn",
            "fast path native, pass, cookie-store session",
            native,
            pass_big,
        ),
        ("hn", "fast path native, pass expired", native, expired_pass),
        // No (gc) for the callout form: its first request asks portcullis, which has no session for
        // a cookie-store cookie beside a Redis session's pass (that pass alone is not a login).
        ("fm", "fast path callout, bearer", callout, bearer),
        ("gm", "fast path callout, pass", callout, pass),
        (
            "hm",
            "fast path callout, pass expired",
            callout,
            expired_pass,
        ),
    ]
    .into_iter()
    .map(
        |(key, label, (filter, authorizer_pid), (header, path))| Variant {
            key,
            label,
            port: support::free_port(),
            filter,
            authorizer_pid,
            header,
            path,
        },
    )
    .collect();
    // The ratios x/y printed, in both modes.
    let ratios = [
        ("c", "b"),
        ("d", "b"),
        ("e", "b"),
        ("d", "c"),
        ("e", "c"),
        ("e", "ce"),
        ("er", "c"),
        ("c'", "c"),
        ("d", "c'"),
        ("f", "b"),
        ("g", "b"),
        ("gc", "b"),
        ("gc", "gs"),
        ("h", "er"),
        ("f", "d"),
        ("g", "er"),
        ("fn", "b"),
        ("gn", "b"),
        ("hn", "er"),
        ("fn", "f"),
        ("gn", "g"),
        ("gcn", "gc"),
        ("hn", "h"),
        ("fm", "b"),
        ("gm", "b"),
        ("hm", "er"),
        ("fm", "fn"),
        ("gm", "gn"),
        ("hm", "hn"),
    ];

    let config = envoy_config(
        &op,
        portcullis.grpc_port,
        &clusters,
        &variants,
        &fast_path,
        &fast_path_native,
        &fast_path_callout,
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
        let header = (v.header)();
        let (name, value) = header.split_once(": ").unwrap();
        let url = format!("http://127.0.0.1:{}{}", v.port, v.path);
        // The first check of a listener opens its gRPC connection, which under valgrind on a busy
        // machine can outlast ext_authz's timeout (a fail-closed 403): a few tries before judging.
        let (mut status, mut body) = (0, String::new());
        for _ in 0..5 {
            (status, body) = rt.block_on(async {
                let r = http.get(&url).header(name, value).send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap_or_default())
            });
            if status == 200 {
                break;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        assert_eq!(status, 200, "{v}: {body}");
        wrk(v, 1, envoy_pid);
    }
    if measure == Measure::Instructions {
        let requests: usize = setting("BENCH_REQUESTS", 1000);
        count_instructions(&rt, &variants, envoy_pid, rounds, requests, &ratios);
        return;
    }
    let mut runs: BTreeMap<&str, Vec<Run>> = BTreeMap::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for v in &variants {
            runs.entry(v.key)
                .or_default()
                .push(wrk(v, seconds, envoy_pid));
        }
    }

    println!(
        "\nThrough Envoy (one worker), wrk -t1 -c32, {seconds} s x {rounds} rounds, median round:\n"
    );
    println!(
        "{:<46} {:>10} {:>8} {:>8} {:>12} {:>14}",
        "", "req/s", "p50 us", "p99 us", "Envoy us/req", "authz us/req"
    );
    let mut median = BTreeMap::new();
    for v in &variants {
        let mut r = runs[v.key].clone();
        r.sort_by(|x, y| x.rate.total_cmp(&y.rate));
        let m = r[r.len() / 2];
        median.insert(v.key, m);
        println!(
            "{v:<46} {:>10.0} {:>8.0} {:>8.0} {:>12.1} {:>14}",
            m.rate,
            m.p50_us,
            m.p99_us,
            m.envoy_cpu_us,
            m.authorizer_cpu_us
                .map_or(String::new(), |c| format!("{c:.1}"))
        );
    }
    print_ratios("ratios of the median rounds", &ratios, |x, y| {
        median[x].rate / median[y].rate
    });
    // Runs of one round are minutes apart at most, so a ratio within a round is less exposed to
    // the machine's drift than a ratio of medians taken from different rounds.
    println!("ratios within each round (median, lowest-highest):");
    for (x, y) in ratios {
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
