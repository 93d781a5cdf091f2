//! Helpers shared by the benchmarks (each uses a part of them).
#![allow(dead_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use agent_session_core::Environment;

/// A duration as µs or ms, for the tables.
pub fn fmt(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{:.1} us", d.as_secs_f64() * 1e6)
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Print the machine and the disk under `dir`, so figures can be compared.
pub fn machine(dir: &Path) {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown cpu".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    let fs = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && canonical.starts_with(f[1]))
                .then(|| (f[1].len(), format!("{} {}", f[2], f[0])))
        })
        .max()
        .map(|(_, s)| s)
        .unwrap_or_default();
    println!(
        "machine: {cpu}, {cores} cores; disk: {} ({fs})",
        canonical.display()
    );
}

/// The median of some timed runs.
pub struct Timing {
    pub median: Duration,
}

/// Time `f`, `n` times.
pub fn time(n: usize, mut f: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<Timing> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        samples.push(t.elapsed());
    }
    samples.sort();
    Ok(Timing {
        median: samples[n / 2],
    })
}

/// Time `f` and `g` alternately, `n` times each.
pub fn time_pair(
    n: usize,
    mut f: impl FnMut() -> anyhow::Result<()>,
    mut g: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(Timing, Timing)> {
    let (mut a, mut b) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        f()?;
        a.push(t.elapsed());
        let t = Instant::now();
        g()?;
        b.push(t.elapsed());
    }
    a.sort();
    b.sort();
    Ok((Timing { median: a[n / 2] }, Timing { median: b[n / 2] }))
}

/// `a / b`.
pub fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// The real clock, and cheap randomness for ids.
pub struct WallClock;

impl Environment for WallClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
    fn fill_random(&self, buf: &mut [u8]) {
        // Ids need uniqueness, not secrecy, in a benchmark: xorshift.
        use std::sync::atomic::{AtomicU64, Ordering};
        static STATE: AtomicU64 = AtomicU64::new(0x2545_f491_4f6c_dd1d);
        for b in buf {
            let mut x = STATE.load(Ordering::Relaxed);
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            STATE.store(x, Ordering::Relaxed);
            *b = (x >> 32) as u8;
        }
    }
}
