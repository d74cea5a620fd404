//! wrk (Debian's, `scripts/setup` installs it) on one listener: its rate, latency and CPU time.

use std::process::Command;

use super::ProcStats;
use super::envoy::Variant;

pub const WRK: &str = "/usr/bin/wrk";

/// One wrk run's numbers.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub rate: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub envoy_cpu_us: f64,
    pub authorizer_cpu_us: Option<f64>,
}

/// Runs wrk (-t1 -c32) on one listener for `seconds`, with a header made for this run, and reads
/// its rate and latency percentiles, and the CPU time per request of Envoy and of the variant's
/// authorizer; panics unless every response was a 200.
pub fn wrk(v: &Variant, seconds: u64, envoy_pid: u32) -> Run {
    let header = (v.header)();
    let envoy_before = ProcStats::read(envoy_pid);
    let authorizer_before = v.authorizer_pid.map(ProcStats::read);
    let out = Command::new(WRK)
        .args(["-t1", "-c32", "--latency", "-d"])
        .arg(format!("{seconds}s"))
        .args(["-H", &header])
        .arg(format!("http://127.0.0.1:{}{}", v.port, v.path))
        .output()
        .expect("running wrk");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "wrk failed: {text}");
    assert!(
        !text.contains("Non-2xx") && !text.contains("Socket errors"),
        "{v}: not every request got a 200:\n{text}"
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
        authorizer_cpu_us: authorizer_before.map(|b| per_request(b, v.authorizer_pid.unwrap())),
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
