//! Crashes and concurrent writers, with real processes: the load generator
//! example is killed with SIGKILL at random moments, or run as several
//! processes at once, and afterwards the histories are held against what
//! was acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use agent_session_core::{SessionFilter, StartOptions};
use agent_session_host::SessionHost;
use serde_json::Value;

use crate::common::{cache_dir, cli_json, host_at, load_bin};
use crate::receiver::{Receiver, Reply};

/// What the load generator printed.
#[derive(Default)]
pub struct Lines {
    /// op id -> (kind, session)
    pub acked: BTreeMap<String, (String, String)>,
    pub refused: BTreeSet<String>,
    pub conflicts: u64,
    /// Whether the kill ended it (rather than it finishing first).
    pub killed: bool,
}

fn run_load(root: &Path, args: &[&str], kill_after: Option<Duration>) -> Lines {
    let mut all = vec![std::ffi::OsStr::new("--dir"), root.as_os_str()];
    all.extend(args.iter().map(std::ffi::OsStr::new));
    run_load_with(&all, kill_after)
}

/// Run the load generator with `args` (which name the store), killing it
/// with SIGKILL `kill_after` its first acknowledgement. Counting from the
/// first acknowledgement rather than from the spawn keeps the kill in the
/// middle of work however slowly a busy machine starts the process.
pub fn run_load_with(args: &[&std::ffi::OsStr], kill_after: Option<Duration>) -> Lines {
    let mut cmd = Command::new(load_bin());
    cmd.args(args);
    run_writer(cmd, kill_after)
}

/// Run a load generator (the Rust one, or the Node or Python package's,
/// which print the same lines) as [`run_load_with`] does.
pub fn run_writer(mut cmd: Command, kill_after: Option<Duration>) -> Lines {
    let mut child = cmd
        .env("AGENT_SESSION_CACHE_DIR", cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (first_ack, working) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if line.starts_with("ack ") {
                let _ = first_ack.send(());
            }
            s.push_str(&line);
            s.push('\n');
        }
        s
    });
    if let Some(d) = kill_after {
        // A child that never acknowledges anything is killed all the same.
        let _ = working.recv_timeout(Duration::from_secs(60));
        std::thread::sleep(d);
        let _ = child.kill(); // SIGKILL
    }
    let status = child.wait().unwrap();
    if kill_after.is_none() {
        assert!(status.success(), "the load generator failed: {cmd:?}");
    }
    let mut lines = Lines {
        killed: std::os::unix::process::ExitStatusExt::signal(&status) == Some(9),
        ..Lines::default()
    };
    for line in reader.join().unwrap().lines() {
        let parts: Vec<&str> = line.splitn(5, ' ').collect();
        match parts.as_slice() {
            ["ack", op, kind, session] => {
                lines
                    .acked
                    .insert(op.to_string(), (kind.to_string(), session.to_string()));
            }
            ["conflict", ..] => lines.conflicts += 1,
            ["refused", op, ..] => {
                lines.refused.insert(op.to_string());
            }
            // A line cut by the kill is not an acknowledgement.
            _ if kill_after.is_some() && !line.starts_with("error") => {}
            _ => panic!("unexpected output: {line}"),
        }
    }
    lines
}

/// Every op id recorded in every history, with how often.
fn recorded(root: &Path) -> (BTreeMap<String, u32>, BTreeMap<String, Value>) {
    recorded_in(&host_at(root))
}

/// [`recorded`], on any host.
pub fn recorded_in(h: &SessionHost) -> (BTreeMap<String, u32>, BTreeMap<String, Value>) {
    let mut ops = BTreeMap::new();
    let mut sessions = BTreeMap::new();
    for s in h
        .list(&SessionFilter::default(), None, 1000)
        .unwrap()
        .sessions
    {
        for e in &all_events(h, &s.id) {
            let op = match e.kind.as_str() {
                "tool_call" => e.data["input"]["op"].as_str(),
                "iteration" => e.data["data"]["op"].as_str(),
                "pause" => e.data["reason"].as_str(),
                _ => None,
            };
            if let Some(op) = op {
                *ops.entry(op.to_owned()).or_default() += 1;
            }
        }
        sessions.insert(s.id.clone(), serde_json::to_value(&s).unwrap());
    }
    (ops, sessions)
}

#[test]
fn sigkill_at_random_moments_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let mut acked = BTreeMap::new();
    // Lifecycle notifications are queued too; nothing sends them before the
    // last kill (see `committed_events_are_notified_once`). The receiver
    // listens from the start so that no other test can take its port.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(Receiver::start(|_| Reply::Status(200)));
    crate::senders::hook(&host_at(root), &rx.url(), &[]);
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let rounds = 200;
    for round in 0..rounds {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = Duration::from_millis(3 + seed % 45);
        let tag = format!("r{round}");
        let lines = run_load(
            root,
            &[
                "--threads",
                "2",
                "--ops",
                "5000",
                "--sessions",
                "3",
                "--tag",
                &tag,
            ],
            Some(delay),
        );
        acked.extend(lines.acked);
    }
    // A child killed between a history append and its index entry left an
    // intent in the index, which the next reader settles from the history:
    // right after the kills, with no repair, the index agrees.
    let fsck = cli_json(root, &["fsck"]);
    assert_eq!(fsck["damaged"], false, "{fsck}");
    assert!(fsck["index"]["unreadable"].as_array().unwrap().is_empty());
    assert_eq!(fsck["index"]["stale"], serde_json::json!([]), "{fsck}");
    let (ops, sessions) = recorded(root);
    assert_eq!(
        sessions.len() as u64,
        fsck["index"]["sessions"].as_u64().unwrap(),
        "every history is listed"
    );
    assert!(
        acked.len() > rounds,
        "the children got work done: {} acks",
        acked.len()
    );
    for (op, (kind, session)) in &acked {
        if kind == "resume" || kind == "start" {
            assert!(
                sessions.contains_key(session),
                "{op}: session {session} is there"
            );
            continue;
        }
        assert_eq!(
            ops.get(op),
            Some(&1),
            "acknowledged {kind} {op} is recorded once"
        );
    }
    assert!(
        ops.values().all(|n| *n == 1),
        "no operation is recorded twice"
    );
    committed_events_are_notified_once(root, &rt, &rx);
}

/// Every lifecycle event in the histories reaches the receiver exactly
/// once, and nothing else does: not the notifications of operations that
/// lost a race or were killed between queueing and appending.
fn committed_events_are_notified_once(root: &Path, rt: &tokio::runtime::Runtime, rx: &Receiver) {
    use agent_session_host::webhook::{AddressPolicy, DeliveryConfig, Sender};
    let host = host_at(root);
    let outbox = std::sync::Arc::new(agent_session_host::FsOutbox::open(root).unwrap());
    let config = DeliveryConfig {
        policy: AddressPolicy::from_list("127.0.0.1").unwrap(),
        schedule: vec![],
        ..DeliveryConfig::default()
    };
    let sender = Sender::new(host.clone(), outbox.clone(), config).unwrap();
    // A notification a child queued just before it was killed waits out
    // the sender's 10 s grace before it is discarded: passes until none
    // is pending.
    let started = std::time::Instant::now();
    loop {
        let report = rt.block_on(sender.deliver_due()).unwrap();
        assert_eq!(report.failed, 0, "{report:?}");
        if report.pending == 0 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "still pending: {report:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_notified_once(&host, rx);
}

/// Passes of a `kind` sender process until nothing is pending (bounded):
/// what killed writers queued and never appended waits out the 10 s grace.
pub fn deliver_all(kind: crate::senders::Kind, root: &Path, rt: &tokio::runtime::Runtime) {
    let flags = crate::senders::Flags {
        schedule: "",
        ..Default::default()
    };
    let started = std::time::Instant::now();
    loop {
        let report = rt.block_on(kind.once(root, &flags));
        assert_eq!(report["failed"], 0, "{kind:?}: {report}");
        if report["pending"] == 0 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{kind:?}: still pending: {report}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every lifecycle event in the histories has reached `rx` exactly once
/// (one request per webhook-id), in the order of its session's events,
/// and nothing else has.
pub fn assert_notified_once(host: &SessionHost, rx: &Receiver) {
    let histories: BTreeMap<String, Vec<agent_session_core::Event>> = host
        .list(&SessionFilter::default(), None, 1000)
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| {
            let events = all_events(host, &s.id);
            (s.id, events)
        })
        .collect();
    let mut seen: BTreeMap<(String, u64), u32> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for r in rx.requests() {
        assert!(ids.insert(r.id()), "{} arrived twice", r.id());
        let body = r.json();
        let (sid, seq) = (
            body["data"]["session"]["id"].as_str().unwrap().to_owned(),
            body["data"]["event"]["seq"].as_u64().unwrap(),
        );
        // Arrival order is request order: one receiver, and the next of a
        // session is sent only once the previous was answered.
        if let Some(before) = last.insert(sid.clone(), seq) {
            assert!(
                before < seq,
                "session {sid}: event {seq} arrived after {before}"
            );
        }
        let event = &histories[&sid][seq as usize];
        assert_eq!(
            serde_json::to_value(event).unwrap(),
            body["data"]["event"],
            "a notification names an event of the history"
        );
        *seen.entry((sid, seq)).or_default() += 1;
    }
    let mut lifecycle = 0;
    for (id, history) in &histories {
        for e in history {
            if agent_session_core::webhook::notification_kind(&e.kind).is_some() {
                lifecycle += 1;
                assert_eq!(
                    seen.get(&(id.clone(), e.seq)),
                    Some(&1),
                    "{} event {} of {id} notified once: {e:?}",
                    e.kind,
                    e.seq,
                );
            }
        }
    }
    assert_eq!(seen.len(), lifecycle);
    assert!(lifecycle > 20, "the load paused and resumed: {lifecycle}");
}

#[test]
fn four_processes_of_four_threads_agree_with_what_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let h = host_at(root);
    let ids: Vec<String> = (0..2)
        .map(|i| {
            h.start(StartOptions {
                task: format!("shared {i}"),
                max_iterations: Some(1_000_000),
                ..Default::default()
            })
            .unwrap()
            .id
        })
        .collect();
    drop(h);
    let children: Vec<_> = (0..4)
        .map(|p| {
            let root = root.to_path_buf();
            std::thread::spawn(move || {
                let tag = format!("p{p}");
                run_load(
                    &root,
                    &[
                        "--threads",
                        "4",
                        "--ops",
                        "60",
                        "--sessions",
                        "2",
                        "--tag",
                        &tag,
                    ],
                    None,
                )
            })
        })
        .collect();
    let mut acked = BTreeMap::new();
    let mut conflicts = 0;
    let mut refused = BTreeSet::new();
    for c in children {
        let lines = c.join().unwrap();
        acked.extend(lines.acked);
        conflicts += lines.conflicts;
        refused.extend(lines.refused);
    }
    assert!(conflicts > 0, "the writers really raced");
    let (ops, sessions) = recorded(root);
    assert_eq!(
        sessions.len(),
        2,
        "every process worked on the same two sessions"
    );
    let landed: BTreeSet<&String> = ops.keys().collect();
    let expected: BTreeSet<&String> = acked
        .iter()
        .filter(|(_, (kind, _))| kind != "resume")
        .map(|(op, _)| op)
        .collect();
    assert_eq!(
        landed, expected,
        "exactly the acknowledged operations landed"
    );
    assert!(ops.values().all(|n| *n == 1));
    for id in &ids {
        let iterations = acked
            .values()
            .filter(|(kind, s)| kind == "iterate" && s == id)
            .count();
        assert_eq!(sessions[id]["iteration"], iterations, "iterations of {id}");
        let resumes = acked
            .values()
            .filter(|(k, s)| k == "resume" && s == id)
            .count();
        let h = host_at(root);
        let events = all_events(&h, id);
        assert_eq!(
            events.iter().filter(|e| e.kind == "resume").count(),
            resumes
        );
        assert_eq!(
            events.len() as u64,
            sessions[id]["event_count"].as_u64().unwrap()
        );
    }
}

pub fn all_events(h: &agent_session_host::SessionHost, id: &str) -> Vec<agent_session_core::Event> {
    let mut events = Vec::new();
    let mut from = Some(0);
    while let Some(f) = from {
        let page = h.events(id, f, 1000).unwrap();
        events.extend(page.events);
        from = page.next_seq;
    }
    events
}

/// Writers of the three hosts on the same sessions at once, each killed
/// with SIGKILL at a random moment: every acknowledged operation is in the
/// histories exactly once, nothing is recorded twice, and the root is
/// clean for fsck (index included) with no repair.
#[test]
fn rust_node_and_python_writers_killed_at_random_lose_nothing() {
    let var = |name: &str| {
        std::path::PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set; ./scripts/test.sh sets up the Node and Python hosts")
        }))
    };
    let (node_pkg, python) = (var("AGENT_SESSION_NODE_PKG"), var("AGENT_SESSION_PYTHON"));
    let py_load = Path::new(env!("CARGO_MANIFEST_DIR")).join("../packages/python/examples/load.py");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    // Lifecycle notifications are queued by every writer; the Node sender
    // delivers what the first half of the rounds left, the Python sender
    // the rest, and each arrives once (see `assert_notified_once`).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let rx = rt.block_on(Receiver::start(|_| Reply::Status(200)));
    crate::senders::hook(&host_at(&root), &rx.url(), &[]);
    // The sessions every writer picks up (the newest resumable ones).
    let mut acked = run_load(
        &root,
        &["--sessions", "3", "--ops", "0", "--tag", "setup"],
        None,
    )
    .acked;
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let rounds = 8;
    for round in 0..rounds {
        let mut writers = Vec::new();
        for host in ["rust", "node", "python"] {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let delay = Duration::from_millis(20 + seed % 400);
            let tag = format!("r{round}{host}");
            let args = [
                "--dir",
                root.to_str().unwrap(),
                "--sessions",
                "3",
                "--threads",
                "2",
                "--ops",
                "3000",
                "--tag",
                &tag,
            ]
            .map(str::to_owned);
            let mut cmd = match host {
                "rust" => Command::new(load_bin()),
                "node" => {
                    let mut c = Command::new("node");
                    c.arg(node_pkg.join("examples/load.mjs"));
                    c
                }
                _ => {
                    let mut c = Command::new(&python);
                    c.arg(&py_load);
                    c
                }
            };
            cmd.args(&args);
            writers.push(std::thread::spawn(move || {
                (host, run_writer(cmd, Some(delay)))
            }));
        }
        for w in writers {
            let (host, lines) = w.join().unwrap();
            assert!(
                !lines.acked.is_empty() && lines.killed,
                "round {round}: the {host} writer acknowledged nothing or was not killed"
            );
            acked.extend(lines.acked);
        }
        if round == rounds / 2 - 1 {
            deliver_all(crate::senders::Kind::Node, &root, &rt);
        }
    }
    deliver_all(crate::senders::Kind::Python, &root, &rt);
    assert_notified_once(&host_at(&root), &rx);
    let fsck = cli_json(&root, &["fsck"]);
    assert_eq!(fsck["damaged"], false, "{fsck}");
    assert_eq!(fsck["index"]["stale"], serde_json::json!([]), "{fsck}");
    let (ops, sessions) = recorded(&root);
    assert_eq!(sessions.len(), 3, "the writers shared three sessions");
    let by_host = |h: &str| acked.keys().filter(|op| op.contains(h)).count();
    assert!(
        by_host("rust") > 0 && by_host("node") > 0 && by_host("python") > 0,
        "every host got work done"
    );
    for (op, (kind, _)) in &acked {
        if kind == "resume" || kind == "start" {
            continue;
        }
        assert_eq!(
            ops.get(op),
            Some(&1),
            "acknowledged {kind} {op} is recorded once"
        );
    }
    assert!(
        ops.values().all(|n| *n == 1),
        "no operation is recorded twice"
    );
}
