//! Webhook senders of the three hosts, side by side, against one receiver
//! on 127.0.0.1 that takes `BENCH_RECEIVER_MS` (20) per request.
//!
//! ```sh
//! cargo bench -p agent-session-host --bench senders
//! BENCH_DELIVERIES=2000 BENCH_SESSIONS=200 cargo bench -p agent-session-host --bench senders
//! ```
//!
//! 1. Deliveries per second with 16 requests in flight: `BENCH_DELIVERIES`
//!    (1000) sessions are started on a fresh root (one `session.started`
//!    each, so per-session order holds nothing back), then each host's
//!    sender process delivers them in one pass (`agent-session deliver
//!    --once`, `agent-session-deliver --once`, `python -m
//!    agent_session.deliver --once`). The time is the pass's wall time less
//!    that of the same pass on an empty root (the process starting), and
//!    every `webhook-id` must have arrived exactly once.
//! 2. Operation latency with an endpoint and an in-process sender, next to
//!    no endpoint: `BENCH_SESSIONS` (100) x start, iterate, complete, each
//!    timed alone, in this process (Rust), in `packages/node/bench/
//!    senders.mjs` (the async API: the sender runs in the worker) and in
//!    `packages/python/bench/senders.py` (the sender's own thread).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_session_core::{StartOptions, WebhookConfig};
use agent_session_host::webhook::{AddressPolicy, DeliveryConfig, Sender};
use agent_session_host::{CacheDir, DeliveryState, Durability, FsOutbox, Outbox as _, SessionHost};
use common::machine;
use serde_json::{Value, json};

mod common;
#[allow(dead_code)] // the tests use more of it
#[path = "../../tests/it/receiver.rs"]
mod receiver;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn main() -> anyhow::Result<()> {
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let deliveries = env("BENCH_DELIVERIES", 1000) as usize;
    let sessions = env("BENCH_SESSIONS", 100) as usize;
    let receiver_ms = env("BENCH_RECEIVER_MS", 20);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = repo.join("target/bench-senders");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    machine(&base);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rx = rt.block_on(receiver::Receiver::start(move |_| {
        receiver::Reply::Slow(Duration::from_millis(receiver_ms))
    }));
    println!(
        "receiver: {receiver_ms} ms per request; {deliveries} deliveries, 16 in flight; \
         {sessions} sessions x (start, iterate, complete)\n"
    );

    let node_pkg = repo.join("packages/node");
    let python = repo.join("target/py-host-venv/bin/python");
    let sender = |kind: &str, root: &Path| -> Command {
        let mut c = match kind {
            "rust" => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_agent-session"));
                c.arg("--dir").arg(root).args([
                    "--webhook-allow",
                    "127.0.0.1",
                    "--json",
                    "deliver",
                    "--once",
                ]);
                return c;
            }
            "node" => {
                let mut c = Command::new("node");
                c.arg(node_pkg.join("bin/agent-session-deliver.mjs"));
                c
            }
            _ => {
                let mut c = Command::new(&python);
                c.args(["-m", "agent_session.deliver"])
                    .env("PYTHONPATH", repo.join("packages/python"));
                c
            }
        };
        c.arg("--dir")
            .arg(root)
            .args(["--allow", "127.0.0.1", "--once", "--concurrency", "16"]);
        c
    };

    // 1. Deliveries per second.
    println!(
        "{:<8} {:>12} {:>14} {:>10} {:>9}",
        "sender", "pass", "process start", "per second", "x Rust"
    );
    let mut rust_rate = None;
    for kind in ["rust", "node", "python"] {
        let empty = base.join(format!("{kind}-empty"));
        let full = base.join(format!("{kind}-full"));
        let host = SessionHost::open_dir(&full, Durability::Durable, CacheDir::Default)?.0;
        host.set_webhook(&WebhookConfig {
            url: rx.url(),
            secret: SECRET.into(),
            event_kinds: vec!["session.started".into()],
            enabled: true,
        })?;
        for i in 0..deliveries {
            host.start(StartOptions {
                task: format!("deliver {i}"),
                ..Default::default()
            })?;
        }
        drop(host);
        SessionHost::open_dir(&empty, Durability::Durable, CacheDir::Default)?;
        let before = rx.requests().len();
        let time = |root: &Path| -> anyhow::Result<(Duration, Value)> {
            let t = Instant::now();
            let out = sender(kind, root).output()?;
            let took = t.elapsed();
            anyhow::ensure!(
                out.status.success(),
                "{kind} sender: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Ok((took, serde_json::from_slice(&out.stdout)?))
        };
        let (start, _) = time(&empty)?;
        let (pass, report) = time(&full)?;
        let got = rx.requests();
        let mut ids: HashMap<String, usize> = HashMap::new();
        for r in &got[before..] {
            *ids.entry(r.id()).or_default() += 1;
        }
        anyhow::ensure!(
            report["delivered"] == deliveries
                && ids.len() == deliveries
                && ids.values().all(|&n| n == 1),
            "{kind}: {report}, {} distinct ids arrived",
            ids.len()
        );
        let rate = deliveries as f64 / pass.saturating_sub(start).as_secs_f64();
        let ratio = rate / *rust_rate.get_or_insert(rate);
        println!(
            "{kind:<8} {:>9.0} ms {:>11.0} ms {:>10.0} {:>8.2}x",
            pass.as_secs_f64() * 1e3,
            start.as_secs_f64() * 1e3,
            rate,
            ratio
        );
    }

    // 2. Operation latency.
    println!(
        "\n{:<8} {:>22} {:>26} {:>12}",
        "host", "no endpoint (med/p99)", "endpoint+sender (med/p99)", "drained in"
    );
    for kind in ["rust", "node", "python"] {
        let mut row = Vec::new();
        for hook in [false, true] {
            let dir = base.join(format!("{kind}-latency-{hook}"));
            std::fs::create_dir_all(&dir)?;
            let url = if hook { rx.url() } else { "none".into() };
            let v = match kind {
                "rust" => rust_latency(&rt, &dir, hook.then_some(url.as_str()), sessions)?,
                "node" => script(
                    Command::new("node")
                        .arg(node_pkg.join("bench/senders.mjs"))
                        .arg(&dir)
                        .arg(&url)
                        .arg(sessions.to_string()),
                )?,
                _ => script(
                    Command::new(&python)
                        .arg(repo.join("packages/python/bench/senders.py"))
                        .arg(&dir)
                        .arg(&url)
                        .arg(sessions.to_string()),
                )?,
            };
            row.push(v);
        }
        let cell = |v: &Value| {
            format!(
                "{:.0} / {:.0} us",
                v["op_us"]["median"].as_f64().unwrap_or(f64::NAN),
                v["op_us"]["p99"].as_f64().unwrap_or(f64::NAN)
            )
        };
        println!(
            "{kind:<8} {:>22} {:>26} {:>9.0} ms",
            cell(&row[0]),
            cell(&row[1]),
            row[1]["drain_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn script(c: &mut Command) -> anyhow::Result<Value> {
    let out = c.output()?;
    anyhow::ensure!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// The latency workload in this process, with the Rust sender spawned on
/// `rt` when there is an endpoint.
fn rust_latency(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    url: Option<&str>,
    sessions: usize,
) -> anyhow::Result<Value> {
    let host = SessionHost::open_dir(dir, Durability::Durable, CacheDir::Default)?.0;
    let task = match url {
        Some(url) => {
            host.set_webhook(&WebhookConfig {
                url: url.into(),
                secret: SECRET.into(),
                event_kinds: vec![],
                enabled: true,
            })?;
            let outbox = Arc::new(FsOutbox::open(dir)?);
            let config = DeliveryConfig {
                policy: AddressPolicy::from_list("127.0.0.1").map_err(anyhow::Error::msg)?,
                ..DeliveryConfig::default()
            };
            let sender = Sender::new(host.clone(), outbox, config)?;
            let _guard = rt.enter();
            Some(sender.spawn())
        }
        None => None,
    };
    let mut times = Vec::new();
    let mut timed = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed());
        Ok(())
    };
    for i in 0..sessions {
        let mut id = String::new();
        timed(&mut || {
            id = host
                .start(StartOptions {
                    task: format!("bench {i}"),
                    ..Default::default()
                })?
                .id;
            Ok(())
        })?;
        timed(&mut || Ok(host.iterate(&id, Some(&json!({ "step": 1 }))).map(drop)?))?;
        timed(&mut || Ok(host.complete(&id, None).map(drop)?))?;
    }
    let last = Instant::now();
    let mut drain_ms = Value::Null;
    if let Some(task) = task {
        let outbox = FsOutbox::open(dir)?;
        loop {
            let all = outbox.deliveries()?;
            if all.len() == 2 * sessions && all.iter().all(|d| d.state != DeliveryState::Pending) {
                break;
            }
            anyhow::ensure!(
                last.elapsed() < Duration::from_secs(60),
                "not drained in 60 s"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        drain_ms = json!(last.elapsed().as_secs_f64() * 1e3);
        rt.block_on(task.stop())?;
    }
    times.sort();
    let n = times.len();
    let at = |p: f64| times[((p * n as f64) as usize).min(n - 1)].as_secs_f64() * 1e6;
    Ok(json!({ "op_us": { "median": at(0.5), "p99": at(0.99), "n": n }, "drain_ms": drain_ms }))
}
