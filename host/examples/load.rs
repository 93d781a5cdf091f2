//! A load generator: threads that hammer a few sessions of one root with
//! tool calls, iterations and pause/resume, through the session component.
//!
//! ```sh
//! cargo run --release --example load -- --dir /tmp/root --threads 4 --ops 200
//! cargo run --release --example load -- --store postgres://agent@127.0.0.1/db --threads 4
//! cargo run --release --example load -- --store postgres://... --deliver 127.0.0.1
//! ```
//!
//! With `--deliver ADDRS`, the process also delivers webhooks while it
//! works (a sender in the same process, allowed to dial ADDRS), and goes
//! on until nothing is pending (at most 60 s more).
//!
//! Every operation the host acknowledged is printed as one line on stdout
//! (`ack <op-id> <kind> <session>`), every refused one as `conflict ...`
//! or `error ...`, flushed at once, so a test can kill this process at any
//! moment and still know exactly what was acknowledged. The crash and
//! concurrency tests in `tests/it` are built on it.

use std::io::Write;
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};

use agent_session_core::{SessionError, SessionStatus, StartOptions, ToolCall};
use agent_session_host::webhook::{AddressPolicy, DeliveryConfig, Sender};
use agent_session_host::{CacheDir, Error, FsOutbox, Outbox, SessionHost};
use serde_json::json;

struct Args {
    dir: String,
    /// A PostgreSQL URL: the sessions live there instead of in `dir`.
    store: Option<String>,
    sessions: usize,
    threads: usize,
    ops: usize,
    tag: String,
    /// Deliver webhooks too, allowing these addresses.
    deliver: Option<String>,
}

fn parse() -> anyhow::Result<Args> {
    let mut a = Args {
        dir: "./.agent-sessions".into(),
        store: None,
        sessions: 3,
        threads: 2,
        ops: 100,
        tag: std::process::id().to_string(),
        deliver: None,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    for pair in argv.chunks(2) {
        let [flag, value] = pair else {
            anyhow::bail!("{} needs a value", pair[0]);
        };
        let number = || {
            value
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag} needs a number, got {value:?}"))
        };
        match flag.as_str() {
            "--dir" => a.dir = value.clone(),
            "--store" => a.store = Some(value.clone()),
            "--sessions" => a.sessions = number()?,
            "--threads" => a.threads = number()?,
            "--ops" => a.ops = number()?,
            "--tag" => a.tag = value.clone(),
            "--deliver" => a.deliver = Some(value.clone()),
            other => anyhow::bail!(
                "unknown argument {other}; expected --dir, --store, --sessions, --threads, --ops, \
                 --tag, --deliver"
            ),
        }
    }
    if a.sessions == 0 {
        anyhow::bail!("--sessions must be at least 1");
    }
    Ok(a)
}

fn main() -> anyhow::Result<()> {
    let args = parse()?;
    let (host, outbox): (SessionHost, Arc<dyn Outbox>) = match &args.store {
        None => (
            SessionHost::open(&args.dir)?,
            Arc::new(FsOutbox::open(&args.dir)?),
        ),
        Some(url) => {
            let (host, outbox) = SessionHost::open_postgres(url, CacheDir::Default)?;
            (host, outbox)
        }
    };
    let sender = match &args.deliver {
        None => None,
        Some(allow) => {
            let config = DeliveryConfig {
                policy: AddressPolicy::from_list(allow).map_err(anyhow::Error::msg)?,
                poll_interval: Duration::from_millis(100),
                ..DeliveryConfig::default()
            };
            let sender = Sender::new(host.clone(), outbox.clone(), config)?;
            let rt = tokio::runtime::Runtime::new()?;
            let task = rt.block_on(async { sender.spawn() });
            Some((rt, task))
        }
    };
    let out = Arc::new(Mutex::new(std::io::stdout()));
    let say = |out: &Mutex<std::io::Stdout>, line: String| {
        let mut o = out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(o, "{line}");
        let _ = o.flush();
    };
    // The sessions to work on: the newest active or paused ones, topped
    // up with new ones.
    let mut ids: Vec<String> = host
        .list(&Default::default(), None, 100)?
        .sessions
        .into_iter()
        .filter(|s| s.is_resumable())
        .map(|s| s.id)
        .take(args.sessions)
        .collect();
    while ids.len() < args.sessions {
        let s = host.start(StartOptions {
            task: "load".into(),
            max_iterations: Some(1_000_000),
            ..Default::default()
        })?;
        say(&out, format!("ack start-{} start {}", args.tag, s.id));
        ids.push(s.id);
    }
    let threads: Vec<_> = (0..args.threads)
        .map(|t| {
            let (host, ids, out, tag) = (host.clone(), ids.clone(), out.clone(), args.tag.clone());
            let ops = args.ops;
            std::thread::spawn(move || {
                for n in 0..ops {
                    let id = &ids[(n + t) % ids.len()];
                    let op = format!("{tag}-{t}-{n}");
                    let (kind, result) = match n % 5 {
                        0 | 1 => (
                            "tool",
                            host.record_tool_call(
                                id,
                                &ToolCall {
                                    name: "load".into(),
                                    input: json!({ "op": op }),
                                    output: json!({ "pad": "x".repeat(n % 7 * 300) }),
                                    duration_ms: n as u64,
                                },
                            )
                            .map(|_| ()),
                        ),
                        2 | 3 => (
                            "iterate",
                            host.iterate(id, Some(&json!({ "op": op }))).map(|_| ()),
                        ),
                        _ => match host.get(id).map(|s| s.status) {
                            Ok(SessionStatus::Paused) => ("resume", host.resume(id).map(|_| ())),
                            Ok(_) => ("pause", host.pause(id, Some(&op)).map(|_| ())),
                            Err(e) => ("get", Err(e)),
                        },
                    };
                    let line = match result {
                        Ok(()) => format!("ack {op} {kind} {id}"),
                        Err(Error::Session(SessionError::Conflict(_))) => {
                            format!("conflict {op} {kind} {id}")
                        }
                        // Another thread paused (or resumed) first.
                        Err(Error::Session(SessionError::InvalidTransition(_))) => {
                            format!("refused {op} {kind} {id}")
                        }
                        Err(e) => format!("error {op} {kind} {id} {e}"),
                    };
                    say(&out, line);
                }
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))?;
    }
    if let Some((rt, task)) = sender {
        let until = Instant::now() + Duration::from_secs(60);
        while !outbox.pending()?.is_empty() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(100));
        }
        rt.block_on(task.stop())?;
    }
    Ok(())
}
