//! Webhook benchmark: does a slow receiver slow session operations down,
//! and does every notification of a burst arrive exactly once?
//!
//! ```sh
//! cargo bench -p agent-session-host --bench webhooks
//! BENCH_OPS=2000 BENCH_RECEIVER_MS=50 cargo bench -p agent-session-host --bench webhooks
//! ```
//!
//! The same burst of session operations (start, iterate, pause, resume,
//! iterate, complete per session: 4 notifications per 6 operations) runs
//! three times, each on a fresh root on the same disk:
//!
//! 1. no webhook endpoint (baseline);
//! 2. an endpoint, no sender running (the operations queue durably);
//! 3. an endpoint and the sender running in the same process, delivering
//!    to a receiver on 127.0.0.1 that takes `BENCH_RECEIVER_MS` per request.
//!
//! Operation latency (median, p99, max) is printed side by side; then the
//! outbox of run 3 is drained and the receiver's log is checked: every
//! `webhook-id` exactly once, or recorded as failed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_session_core::{StartOptions, WebhookConfig};
use agent_session_host::webhook::{AddressPolicy, DeliveryConfig, Sender};
use agent_session_host::{CacheDir, DeliveryState, Durability, FsOutbox, Outbox as _, SessionHost};
use common::{fmt, machine};

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
    let ops = env("BENCH_OPS", 10_000) as usize;
    let receiver_ms = env("BENCH_RECEIVER_MS", 20);
    let base = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-webhooks");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    machine(&base);
    println!(
        "burst: {ops} operations; receiver: {receiver_ms} ms per request, 16 requests in flight"
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let rx = rt.block_on(receiver::Receiver::start(move |_| {
        receiver::Reply::Slow(Duration::from_millis(receiver_ms))
    }));

    let baseline = burst(&base.join("no-endpoint"), ops, None)?;
    let queued = burst(&base.join("queued"), ops, Some(&rx.url()))?;
    let root = base.join("delivering");
    let host = open(&root)?;
    let sender = Sender::new(
        host.clone(),
        Arc::new(FsOutbox::open(&root)?),
        DeliveryConfig {
            policy: AddressPolicy::from_list("127.0.0.1").map_err(anyhow::Error::msg)?,
            ..DeliveryConfig::default()
        },
    )?;
    let task = {
        let _in_rt = rt.enter();
        sender.spawn()
    };
    let started = Instant::now();
    let delivering = run_ops(&host, ops, Some(&rx.url()))?;

    println!(
        "\n  {:<34} {:>12} {:>12} {:>12}",
        "operation latency", "median", "p99", "max"
    );
    for (what, t) in [
        ("no endpoint", &baseline),
        ("endpoint, queued only", &queued),
        ("endpoint, slow receiver, sending", &delivering),
    ] {
        println!(
            "  {what:<34} {:>12} {:>12} {:>12}",
            fmt(t.median),
            fmt(t.p99),
            fmt(t.max)
        );
    }
    println!(
        "  {:<34} {:>12}",
        "  sending vs queued only (median)",
        format!(
            "{:.2}x",
            delivering.median.as_secs_f64() / queued.median.as_secs_f64()
        )
    );

    let outbox = FsOutbox::open(&root)?;
    let deadline = Instant::now() + Duration::from_secs(1800);
    loop {
        let pending = outbox.pending()?.len();
        if pending == 0 {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{pending} deliveries still pending after 30 min"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained = started.elapsed();
    rt.block_on(task.stop())?;

    let records = outbox.deliveries()?;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        *seen.entry(r.id()).or_default() += 1;
    }
    let count = |s: DeliveryState| records.iter().filter(|d| d.state == s).count();
    let (delivered, failed) = (
        count(DeliveryState::Delivered),
        count(DeliveryState::Failed),
    );
    let twice = seen.values().filter(|&&n| n > 1).count();
    let unrecorded = records
        .iter()
        .filter(|d| d.state == DeliveryState::Delivered && seen.get(d.id()) != Some(&1))
        .count();
    println!(
        "\n  notifications {}: delivered {delivered}, failed {failed}; the receiver saw {} ids, \
         {twice} more than once; delivered but not seen exactly once: {unrecorded}",
        records.len(),
        seen.len()
    );
    println!(
        "  burst + drain took {} ({:.0} deliveries/s)",
        fmt(drained),
        records.len() as f64 / drained.as_secs_f64()
    );
    anyhow::ensure!(
        twice == 0 && unrecorded == 0 && delivered + failed == records.len(),
        "delivery was not exactly once"
    );
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

struct Latency {
    median: Duration,
    p99: Duration,
    max: Duration,
}

fn open(root: &Path) -> anyhow::Result<SessionHost> {
    Ok(SessionHost::open_dir(root, Durability::Durable, CacheDir::Default)?.0)
}

fn burst(root: &Path, ops: usize, url: Option<&str>) -> anyhow::Result<Latency> {
    run_ops(&open(root)?, ops, url)
}

/// `ops` operations in sessions of six, each timed.
fn run_ops(host: &SessionHost, ops: usize, url: Option<&str>) -> anyhow::Result<Latency> {
    if let Some(url) = url {
        host.set_webhook(&WebhookConfig {
            url: url.into(),
            secret: SECRET.into(),
            event_kinds: vec![],
            enabled: true,
        })?;
    }
    let mut samples = Vec::with_capacity(ops);
    let mut id = String::new();
    for i in 0..ops {
        let t = Instant::now();
        match i % 6 {
            0 => {
                id = host
                    .start(StartOptions {
                        task: format!("burst {i}"),
                        ..Default::default()
                    })?
                    .id;
            }
            1 | 4 => drop(host.iterate(&id, None)?),
            2 => drop(host.pause(&id, Some("approval"))?),
            3 => drop(host.resume(&id)?),
            _ => drop(host.complete(&id, None)?),
        }
        samples.push(t.elapsed());
    }
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    Ok(Latency {
        median: at(0.5),
        p99: at(0.99),
        max: samples[samples.len() - 1],
    })
}
