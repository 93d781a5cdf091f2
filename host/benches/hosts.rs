//! The same workload on every host, side by side in one run, on one disk:
//! the Rust host (the directory store linked natively), the Node host (jco)
//! and the Python host (wasmtime-py), both running the session-on-root
//! component (session + directory store) over their own `root` capability.
//!
//! ```sh
//! ./scripts/node-host.sh && ./scripts/python-host.sh   # once: deps, gen/
//! cargo bench -p agent-session-host --bench hosts
//! BENCH_SESSIONS=20 BENCH_APPENDS=200 BENCH_DIR=/some/disk cargo bench -p agent-session-host --bench hosts
//! ```
//!
//! Workload (identical in `packages/node/bench/workload.mjs` and
//! `packages/python/bench/workload.py`): start N sessions; per session, M
//! durable `record_tool_call`s one at a time, each timed (a 512-byte stored
//! event); then per session 10 reads of its last 10 events. Printed with a
//! raw 512-byte append + `fdatasync` on the same disk, and each host's
//! medians as a ratio of the Rust host's (the disk drifts between days;
//! the ratios are the figures).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use agent_session_core::{StartOptions, ToolCall};
use agent_session_host::{CacheDir, Durability, SessionHost};
use common::{fmt, machine};
use serde_json::{Value, json};

mod common;

const PHRASE: &str = "how do durable agent sessions store tool calls on disk? ";

fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (sessions, appends) = (env("BENCH_SESSIONS", 20), env("BENCH_APPENDS", 200));
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(&base)?;
    machine(tmp.path());
    println!(
        "workload: {sessions} sessions x {appends} durable record_tool_call, then 10 x last-10 reads each\n"
    );

    let raw = raw_appends(tmp.path(), 500)?;
    let rust = rust_workload(&tmp.path().join("rust"), sessions, appends)?;
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let node_dir = tmp.path().join("node");
    let py_dir = tmp.path().join("python");
    let python = repo.join("target/py-host-venv/bin/python");
    let node = spawn(
        Command::new("node")
            .arg(repo.join("packages/node/bench/workload.mjs"))
            .arg(&node_dir),
        &node_dir,
        sessions,
        appends,
    );
    let py = spawn(
        Command::new(&python)
            .arg(repo.join("packages/python/bench/workload.py"))
            .arg(&py_dir),
        &py_dir,
        sessions,
        appends,
    );

    let us = |v: &Value, k: &str| v[k]["median"].as_f64().unwrap_or(f64::NAN);
    println!("raw 512-byte append + fdatasync: median {}", fmt(raw));
    println!(
        "{:<8} {:>16} {:>10} {:>16} {:>10} {:>10}",
        "host", "record (median)", "x Rust", "last 10 (median)", "x Rust", "open"
    );
    let (r_rec, r_read) = (
        us(&rust, "record_tool_call_us"),
        us(&rust, "read_last_10_us"),
    );
    for (name, v) in [("rust", Ok(rust.clone())), ("node", node), ("python", py)] {
        match v {
            Ok(v) => {
                let (rec, read) = (us(&v, "record_tool_call_us"), us(&v, "read_last_10_us"));
                println!(
                    "{name:<8} {:>13.1} us {:>9.2}x {:>13.1} us {:>9.2}x {:>7.0} ms",
                    rec,
                    rec / r_rec,
                    read,
                    read / r_read,
                    v["open_ms"].as_f64().unwrap_or(f64::NAN)
                );
            }
            Err(e) => println!("{name:<8} not run: {e}"),
        }
    }
    Ok(())
}

/// Median of a raw 512-byte append + fdatasync loop on the disk.
fn raw_appends(dir: &Path, n: usize) -> anyhow::Result<Duration> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("raw.log"))?;
    let buf = [7u8; 512];
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let s = Instant::now();
            f.write_all(&buf)?;
            f.sync_data()?;
            Ok(s.elapsed())
        })
        .collect::<std::io::Result<_>>()?;
    t.sort();
    Ok(t[n / 2])
}

fn summary(mut samples: Vec<Duration>) -> Value {
    samples.sort();
    let n = samples.len();
    let at = |p: f64| samples[((p * n as f64) as usize).min(n - 1)].as_secs_f64() * 1e6;
    json!({ "median": at(0.5), "p90": at(0.9), "p99": at(0.99), "n": n })
}

/// The workload on the Rust host, in this process.
fn rust_workload(dir: &Path, sessions: usize, appends: usize) -> anyhow::Result<Value> {
    let opened = Instant::now();
    let host = SessionHost::open_dir(dir, Durability::Durable, CacheDir::Default)?.0;
    let open_ms = opened.elapsed().as_secs_f64() * 1e3;
    let query: String = PHRASE.repeat(347 / PHRASE.len() + 1)[..347].to_owned();
    let call = ToolCall {
        name: "search".into(),
        input: json!({ "q": query }),
        output: json!({ "hits": 3 }),
        duration_ms: 12,
    };
    let start = || {
        host.start(StartOptions {
            task: "bench".into(),
            mode: Some("bench".into()),
            ..Default::default()
        })
    };
    let ids: Vec<String> = (0..sessions)
        .map(|_| start().map(|s| s.id))
        .collect::<Result<_, _>>()?;
    let warm = start()?.id;
    for _ in 0..5 {
        host.record_tool_call(&warm, &call)?;
    }
    let mut record = Vec::with_capacity(sessions * appends);
    for id in &ids {
        for _ in 0..appends {
            let t = Instant::now();
            host.record_tool_call(id, &call)?;
            record.push(t.elapsed());
        }
    }
    let mut read = Vec::with_capacity(sessions * 10);
    for id in &ids {
        let count = host.get(id)?.event_count;
        for _ in 0..10 {
            let t = Instant::now();
            let page = host.events(id, count.saturating_sub(10), 10)?;
            read.push(t.elapsed());
            anyhow::ensure!(page.events.len() == 10, "read {} events", page.events.len());
        }
    }
    Ok(json!({
        "host": "rust",
        "record_tool_call_us": summary(record),
        "read_last_10_us": summary(read),
        "open_ms": open_ms,
    }))
}

/// Run one of the packages' workload scripts; its JSON line.
fn spawn(cmd: &mut Command, dir: &Path, sessions: usize, appends: usize) -> Result<Value, String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let out = cmd
        .arg(sessions.to_string())
        .arg(appends.to_string())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).trim().to_owned());
    }
    serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}
