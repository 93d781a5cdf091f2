//! Helpers shared by the benchmarks.

use std::path::Path;
use std::time::Duration;

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
