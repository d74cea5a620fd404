//! Envoy's instructions per request, counted by callgrind while Envoy runs under valgrind.

use std::collections::BTreeMap;
use std::process::Command;

use super::envoy::Variant;
use super::measure::{print_ratios, spread};
use crate::support;

/// Envoy's instructions per request for each variant: `requests` requests one after another on
/// one connection, between zeroing callgrind's counters and reading them, `rounds` times. Printed
/// with `ratios` as a saturated Envoy worker would show them: x/y is y's instructions over x's.
pub fn count_instructions(
    rt: &tokio::runtime::Runtime,
    variants: &[Variant],
    envoy_pid: u32,
    rounds: usize,
    requests: usize,
    ratios: &[(&str, &str)],
) {
    let mut counts: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        for v in variants {
            let header = (v.header)();
            let (name, value) = header.split_once(": ").unwrap();
            let url = format!("http://127.0.0.1:{}{}", v.port, v.path);
            let http = support::http_client();
            callgrind(envoy_pid, "--zero");
            rt.block_on(async {
                for _ in 0..requests {
                    let r = http.get(&url).header(name, value).send().await.unwrap();
                    assert_eq!(r.status(), 200, "{v}");
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
        println!("{v:<46} {mid:>10.0} ({low:.0}-{high:.0})");
    }
    print_ratios("as rates of a saturated worker", ratios, |x, y| {
        median[y] / median[x]
    });
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
