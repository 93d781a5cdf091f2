//! The webhook senders of the three hosts, as processes, against the same
//! real receiver on 127.0.0.1: the Rust CLI's `agent-session deliver`, the
//! Node package's `agent-session-deliver` and the Python package's
//! `python -m agent_session.deliver`. The Rust host writes the sessions;
//! every sender makes the same decisions (the core's), so every scenario
//! expects the same of each.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use agent_session_core::{StartOptions, WebhookConfig};
use agent_session_host::{Delivery, DeliveryState, FsOutbox, Outbox as _, SessionHost};
use serde_json::Value;

use crate::common::{cache_dir, host_at};
use crate::receiver::{Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rust,
    Node,
    Python,
}

/// How a sender is run.
pub struct Flags<'a> {
    pub allow: &'a str,
    pub schedule: &'a str,
    pub timeout: &'a str,
}

impl Default for Flags<'_> {
    fn default() -> Self {
        Self {
            allow: "127.0.0.1",
            schedule: "100ms",
            timeout: "5s",
        }
    }
}

fn var(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set; ./scripts/test.sh sets up the Node and Python hosts")
    }))
}

impl Kind {
    /// The sender's command on `root`, delivering until SIGINT, or one
    /// pass with `once`.
    pub fn command(self, root: &Path, flags: &Flags<'_>, once: bool) -> Command {
        let mut c = match self {
            Kind::Rust => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_agent-session"));
                c.arg("--dir").arg(root);
                if !flags.allow.is_empty() {
                    c.args(["--webhook-allow", flags.allow]);
                }
                c.args(["deliver", "--retry-schedule", flags.schedule])
                    .args(["--timeout", flags.timeout])
                    .env("AGENT_SESSION_CACHE_DIR", cache_dir());
                if once {
                    c.args(["--once", "--json"]);
                }
                return c;
            }
            Kind::Node => {
                let mut c = Command::new("node");
                c.arg(var("AGENT_SESSION_NODE_PKG").join("bin/agent-session-deliver.mjs"));
                c
            }
            Kind::Python => {
                let mut c = Command::new(var("AGENT_SESSION_PYTHON"));
                c.args(["-m", "agent_session.deliver"]).env(
                    "PYTHONPATH",
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages/python"),
                );
                c
            }
        };
        c.arg("--dir").arg(root);
        if !flags.allow.is_empty() {
            c.args(["--allow", flags.allow]);
        }
        c.args(["--retry-schedule", flags.schedule])
            .args(["--timeout", flags.timeout])
            .args(["--poll", "50ms"]);
        if once {
            c.arg("--once");
        }
        c
    }

    /// One pass (`--once`): its report.
    pub async fn once(self, root: &Path, flags: &Flags<'_>) -> Value {
        let mut c = self.command(root, flags, true);
        let out = tokio::task::spawn_blocking(move || c.output().unwrap())
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{self:?} deliver --once failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{self:?} deliver --once printed {text:?}: {e}"))
    }

    /// A sender delivering until [`Running::stop`].
    pub fn spawn(self, root: &Path, flags: &Flags<'_>) -> Running {
        let mut child = self
            .command(root, flags, false)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {self:?} sender: {e}"));
        // Every sender says "delivering webhooks from ..." on stderr once
        // it has installed its signal handlers.
        let stderr = child.stderr.take().unwrap();
        let ready = Arc::new(AtomicBool::new(false));
        let seen = ready.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if line.contains("delivering webhooks from") {
                    seen.store(true, Ordering::SeqCst);
                }
            }
        });
        Running {
            child,
            kind: self,
            ready,
        }
    }
}

/// A sender process; killed if not stopped.
pub struct Running {
    child: Child,
    kind: Kind,
    ready: Arc<AtomicBool>,
}

impl Running {
    /// SIGINT once it is running, and wait (at most 20 s) for it to finish
    /// what is in flight and exit cleanly.
    pub async fn stop(mut self) {
        for _ in 0..400 {
            if self.ready.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            self.ready.load(Ordering::SeqCst),
            "the {:?} sender never said it was delivering",
            self.kind
        );
        signal(&self.child, rustix::process::Signal::INT);
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(
                    status.success(),
                    "the {:?} sender exited {status}",
                    self.kind
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the {:?} sender did not stop within 20 s", self.kind);
    }

    /// SIGKILL, in the middle of whatever it was doing.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, sig).unwrap();
}

pub fn hook(host: &SessionHost, url: &str, kinds: &[&str]) {
    host.set_webhook(&WebhookConfig {
        url: url.into(),
        secret: SECRET.into(),
        event_kinds: kinds.iter().map(|k| k.to_string()).collect(),
        enabled: true,
    })
    .unwrap();
}

pub fn start(host: &SessionHost, task: &str) -> String {
    host.start(StartOptions {
        task: task.into(),
        ..Default::default()
    })
    .unwrap()
    .id
}

/// Wait until the outbox holds `n` deliveries, none pending (at most 30 s).
pub async fn settled(root: &Path, n: usize) -> Vec<Delivery> {
    let outbox = FsOutbox::open(root).unwrap();
    for _ in 0..600 {
        let all = outbox.deliveries().unwrap();
        if all.len() >= n && all.iter().all(|d| d.state != DeliveryState::Pending) {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "deliveries did not settle: {:#?}",
        outbox.deliveries().unwrap()
    );
}

/// The kinds each session's requests arrived in, in arrival order.
pub fn arrival_order(got: &[crate::receiver::Received]) -> HashMap<String, Vec<String>> {
    let mut order: HashMap<String, Vec<String>> = HashMap::new();
    for r in got {
        let body = r.json();
        order
            .entry(body["data"]["session"]["id"].as_str().unwrap().to_owned())
            .or_default()
            .push(body["type"].as_str().unwrap().to_owned());
    }
    order
}

/// Every lifecycle notification arrives once, signed, in the order of its
/// session's events.
async fn lifecycle(kind: Kind) {
    let rx = Receiver::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &[]);
    let sender = kind.spawn(dir.path(), &Flags::default());
    let a = start(&host, "lifecycle");
    host.iterate(&a, None).unwrap();
    host.pause(&a, Some("approval")).unwrap();
    host.resume(&a).unwrap();
    host.complete(&a, None).unwrap();
    let b = start(&host, "fails");
    host.fail(&b, "boom").unwrap();

    let got = rx.wait_for(6).await;
    settled(dir.path(), 6).await;
    sender.stop().await;
    assert_eq!(rx.requests().len(), 6, "{kind:?}: nothing arrives twice");
    got.iter().for_each(|r| r.verify(SECRET));
    let order = arrival_order(&got);
    assert_eq!(
        order[&a],
        [
            "session.started",
            "session.paused",
            "session.resumed",
            "session.completed"
        ],
        "{kind:?}"
    );
    assert_eq!(order[&b], ["session.started", "session.failed"], "{kind:?}");
}

/// 500, 500, then 200: delivered on the third attempt, one webhook-id.
async fn retries(kind: Kind) {
    let rx = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &["session.started"]);
    start(&host, "flaky receiver");
    let flags = Flags {
        schedule: "50ms,50ms,50ms",
        ..Flags::default()
    };
    let sender = kind.spawn(dir.path(), &flags);
    let d = settled(dir.path(), 1).await.remove(0);
    sender.stop().await;
    let statuses: Vec<_> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)], "{kind:?}");
    assert_eq!(d.state, DeliveryState::Delivered);
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id() == d.id()),
        "{kind:?}: a stable webhook-id"
    );
    got.iter().for_each(|r| r.verify(SECRET));
}

/// 410 fails the delivery and disables the endpoint; a 302 is an answer
/// (not followed); a receiver that never answers times out; `Retry-After`
/// is honoured.
async fn answers(kind: Kind) {
    let gone = Receiver::start(|_| Reply::Status(410)).await;
    let target = Receiver::start(|_| Reply::Status(200)).await;
    let to = target.url();
    let redirecting = Receiver::start(move |_| Reply::Redirect(to.clone())).await;
    let hanging = Receiver::start(|_| Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let host = host_at(root);
    let no_retries = Flags {
        schedule: "",
        timeout: "2s",
        ..Flags::default()
    };

    hook(&host, &gone.url(), &[]);
    start(&host, "gone");
    let report = kind.once(root, &no_retries).await;
    assert_eq!(
        (report["failed"].as_u64(), report["delivered"].as_u64()),
        (Some(1), Some(0)),
        "{kind:?}: {report}"
    );
    assert!(
        !host.get_webhook().unwrap().unwrap().enabled,
        "{kind:?}: disabled after 410"
    );

    hook(&host, &redirecting.url(), &[]);
    start(&host, "redirected");
    hook(&host, &hanging.url(), &[]);
    let hung_session = start(&host, "hung up on");
    let report = kind.once(root, &no_retries).await;
    // The redirect's delivery was aimed at the endpoint as set now.
    assert_eq!(report["failed"].as_u64(), Some(2), "{kind:?}: {report}");
    assert_eq!(redirecting.requests().len(), 0);
    assert_eq!(hanging.connections(), 2, "{kind:?}");
    assert_eq!(target.connections(), 0, "{kind:?}: no redirect followed");
    let all = FsOutbox::open(root).unwrap().deliveries().unwrap();
    let hung = all
        .iter()
        .find(|d| d.notification.session_id == hung_session)
        .unwrap();
    let error = hung.attempts[0].error.as_deref().unwrap();
    assert!(error.contains("timed out"), "{kind:?}: {error}");

    hook(&host, &redirecting.url(), &[]);
    start(&host, "redirected");
    kind.once(root, &no_retries).await;
    let all = FsOutbox::open(root).unwrap().deliveries().unwrap();
    let redirected = all.last().unwrap();
    assert_eq!(redirected.attempts[0].status, Some(302), "{kind:?}");
    assert!(
        redirected.attempts[0]
            .error
            .as_deref()
            .unwrap()
            .contains("not followed"),
        "{kind:?}: {redirected:?}"
    );
    assert_eq!(redirecting.requests().len(), 1);
    assert_eq!(
        target.connections(),
        0,
        "{kind:?}: the redirect target was never contacted"
    );

    // Retry-After: the schedule says 100 ms, the endpoint asks for 2 s.
    let busy = Receiver::start(|n| match n {
        0 => Reply::RetryAfter(429, 2),
        _ => Reply::Status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &busy.url(), &[]);
    start(&host, "busy");
    let sender = kind.spawn(dir.path(), &Flags::default());
    let d = settled(dir.path(), 1).await.remove(0);
    sender.stop().await;
    let statuses: Vec<_> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(429), Some(200)], "{kind:?}");
    assert!(
        d.attempts[1].at - d.attempts[0].at >= 2000,
        "{kind:?}: waited as asked"
    );
}

/// The address policy refuses loopback in every form (a literal, a
/// mapped literal, a name that resolves to it) without connecting; the
/// refused deliveries stay pending with the reason, and a sender allowed
/// to dial the endpoint sends them at once.
async fn refusals(kind: Kind) {
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let port = rx.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let host = host_at(root);
    let urls = [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("http://[::ffff:127.0.0.1]:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
    ];
    let strict = Flags {
        allow: "",
        schedule: "1h",
        ..Flags::default()
    };
    for url in &urls {
        let before = rx.connections();
        hook(&host, url, &["session.started"]);
        start(&host, url);
        let report = kind.once(root, &strict).await;
        assert_eq!(
            report["failed"].as_u64(),
            Some(0),
            "{kind:?} {url}: {report}"
        );
        assert_eq!(
            report["pending"].as_u64(),
            Some(1),
            "{kind:?} {url}: {report}"
        );
        let pending = FsOutbox::open(root).unwrap().pending().unwrap();
        let d = &pending[0];
        assert_eq!(d.attempts.len(), 1);
        assert!(d.attempts[0].refused, "{kind:?} {url}: {d:?}");
        let error = d.attempts[0].error.as_deref().unwrap();
        assert!(error.contains("loopback"), "{kind:?} {url}: {error}");
        assert_eq!(
            rx.connections(),
            before,
            "{kind:?} {url}: no connection was made"
        );

        // Allowed (the name itself for the name): sent now, not in an hour.
        let allow = match url.contains("localhost") {
            true => "localhost",
            false => "127.0.0.1",
        };
        let allowing = Flags {
            allow,
            schedule: "1h",
            ..Flags::default()
        };
        let report = kind.once(root, &allowing).await;
        assert_eq!(
            report["delivered"].as_u64(),
            Some(1),
            "{kind:?} {url}: {report}"
        );
        let d = FsOutbox::open(root).unwrap().find(d.id()).unwrap().unwrap();
        assert_eq!(d.state, DeliveryState::Delivered, "{kind:?} {url}");
        assert_eq!(d.attempts.len(), 2);
    }
    rx.requests().iter().for_each(|r| r.verify(SECRET));
}

/// A sender SIGKILLed in the middle of requests, four times: every
/// notification is delivered in the end, each recorded once.
async fn killed(kind: Kind) {
    let rx = Receiver::start(|_| Reply::Slow(Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let host = host_at(&root);
    hook(&host, &rx.url(), &[]);
    for i in 0..40 {
        let id = start(&host, &format!("kill the sender {i}"));
        host.complete(&id, None).unwrap();
    }
    let queued = FsOutbox::open(&root).unwrap().pending().unwrap();
    assert_eq!(queued.len(), 80);
    for round in 0..4u64 {
        let sender = kind.spawn(&root, &Flags::default());
        tokio::time::sleep(Duration::from_millis(400 + round * 150)).await;
        sender.kill();
    }
    let sender = kind.spawn(&root, &Flags::default());
    let all = settled(&root, 80).await;
    sender.stop().await;
    assert_eq!(all.len(), 80, "{kind:?}: every notification has one record");
    assert!(
        all.iter().all(|d| d.state == DeliveryState::Delivered),
        "{kind:?}"
    );
    let mut arrived: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        *arrived.entry(r.id()).or_default() += 1;
    }
    for d in &queued {
        assert!(arrived.contains_key(d.id()), "{kind:?}: {} arrived", d.id());
    }
    // At least once: only what was in flight at a kill arrives twice.
    let twice = arrived.values().filter(|&&n| n > 1).count();
    assert!(twice <= 4 * 16, "{kind:?}: {twice} arrived more than once");
}

/// Rust, Node and Python writers queue into one root while a Node sender
/// delivers, then a Python one takes over (the Node one stopped, its
/// attempts in flight finished): every committed lifecycle event arrives
/// exactly once, in order per session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_of_every_host_and_a_node_then_a_python_sender() {
    use crate::crash::{assert_notified_once, run_writer};
    let rx = Receiver::start(|_| Reply::Slow(Duration::from_millis(5))).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let host = host_at(&root);
    hook(&host, &rx.url(), &[]);
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let writer = |which: &str, tag: &str| {
        let mut c = match which {
            "rust" => Command::new(crate::common::load_bin()),
            "node" => {
                let mut c = Command::new("node");
                c.arg(var("AGENT_SESSION_NODE_PKG").join("examples/load.mjs"));
                c
            }
            _ => {
                let mut c = Command::new(var("AGENT_SESSION_PYTHON"));
                c.arg(repo.join("packages/python/examples/load.py"));
                c
            }
        };
        c.arg("--dir").arg(&root);
        c.args([
            "--sessions",
            "2",
            "--threads",
            "2",
            "--ops",
            "60",
            "--tag",
            tag,
        ]);
        std::thread::spawn(move || run_writer(c, None))
    };
    let node = Kind::Node.spawn(&root, &Flags::default());
    let first: Vec<_> = ["rust", "node", "python"]
        .iter()
        .map(|w| writer(w, &format!("a{w}")))
        .collect();
    for w in first {
        assert!(!w.join().unwrap().acked.is_empty());
    }
    node.stop().await;
    let switched = chrono::Utc::now().timestamp_millis() as u64;
    let python = Kind::Python.spawn(&root, &Flags::default());
    let second: Vec<_> = ["rust", "node", "python"]
        .iter()
        .map(|w| writer(w, &format!("b{w}")))
        .collect();
    for w in second {
        assert!(!w.join().unwrap().acked.is_empty());
    }
    let n = FsOutbox::open(&root).unwrap().deliveries().unwrap().len();
    let all = settled(&root, n).await;
    python.stop().await;
    // Discarded: operations that lost a race between writers (their
    // notifications were queued, their events never appended).
    assert!(
        all.iter()
            .all(|d| matches!(d.state, DeliveryState::Delivered | DeliveryState::Discarded)),
        "{:?}",
        all.iter().find(|d| d.state == DeliveryState::Failed)
    );
    let delivered: Vec<_> = all
        .iter()
        .filter(|d| d.state == DeliveryState::Delivered)
        .collect();
    let by_node = delivered
        .iter()
        .filter(|d| d.attempts[0].at < switched)
        .count();
    assert!(
        by_node > 0 && by_node < delivered.len(),
        "{by_node} of {} delivered by the Node sender",
        delivered.len()
    );
    assert_notified_once(&host, &rx);
}

macro_rules! for_each_sender {
    ($($scenario:ident),*) => {
        mod rust {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Rust).await
                }
            )*
        }
        mod node {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Node).await
                }
            )*
        }
        mod python {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Kind::Python).await
                }
            )*
        }
    };
}

for_each_sender!(lifecycle, retries, answers, refusals, killed);
