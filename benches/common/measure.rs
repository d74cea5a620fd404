//! What the Envoy bench measures (time or instructions); the medians, ranges and ratios it prints.

/// What the runs measure (`BENCH_MEASURE`): `time`, wrk's rate and latency; or `instructions`,
/// Envoy's user-space instructions per request counted by callgrind, which are the same from run
/// to run however busy the machine is. The socket reads and writes in the kernel are not in them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Time,
    Instructions,
}

impl Measure {
    pub fn from_env() -> Self {
        match std::env::var("BENCH_MEASURE").as_deref() {
            Err(_) | Ok("time") => Self::Time,
            Ok("instructions") => Self::Instructions,
            Ok(other) => panic!("BENCH_MEASURE={other}: expected time or instructions"),
        }
    }
}

/// Prints the ratios x/y of `ratios` on one line after `title`.
pub fn print_ratios(title: &str, ratios: &[(&str, &str)], ratio: impl Fn(&str, &str) -> f64) {
    let all: Vec<String> = ratios
        .iter()
        .map(|&(x, y)| format!("{x}/{y} {:.2}", ratio(x, y)))
        .collect();
    println!("\n{title}: {}", all.join("  "));
}

/// Median, lowest and highest of some numbers.
pub fn spread(values: impl Iterator<Item = f64>) -> (f64, f64, f64) {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}
