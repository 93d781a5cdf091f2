//! One directory, three hosts: sessions started by the Rust CLI are
//! continued from Node (jco) and from Python (wasmtime-py), each running
//! the same component on its own store implementation, and read back by
//! the CLI. Their notifications go through the shared outbox and are
//! delivered by the Rust sender.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::common::{cli, cli_json};
use crate::receiver::{Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ALLOW: [&str; 2] = ["--webhook-allow", "127.0.0.1"];

/// `packages/node`, built (`npm ci && npm run build`), and the Python
/// interpreter that has `packages/python`'s requirements; both set up by
/// `scripts/test.sh`.
fn hosts() -> (PathBuf, PathBuf) {
    let var = |name: &str| {
        PathBuf::from(std::env::var(name).unwrap_or_else(|_| {
            panic!("{name} is not set; ./scripts/test.sh sets up the Node and Python hosts")
        }))
    };
    (var("AGENT_SESSION_NODE_PKG"), var("AGENT_SESSION_PYTHON"))
}

/// Run one of the packages' `continue-session` examples on `root`; it
/// prints the session it leaves.
fn continue_with(program: &Path, script: &Path, root: &Path, id: &str, then: &str) -> Value {
    let out = Command::new(program)
        .arg(script)
        .arg(root)
        .arg(id)
        .arg(then)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {} {then} failed: {}",
        program.display(),
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no session ({e}): {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_node_and_python_take_turns_on_one_directory() {
    let (node_pkg, python) = hosts();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let node = move |root: &Path, id: &str, then: &str| {
        continue_with(
            Path::new("node"),
            &node_pkg.join("examples/continue-session.mjs"),
            root,
            id,
            then,
        )
    };
    let py = move |root: &Path, id: &str, then: &str| {
        continue_with(
            &python,
            &repo.join("packages/python/examples/continue_session.py"),
            root,
            id,
            then,
        )
    };

    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let url = rx.url();
    let (first, second) = tokio::task::spawn_blocking(move || {
        let rust = |args: &[&str]| {
            let mut all = ALLOW.to_vec();
            all.extend_from_slice(args);
            cli_json(&root, &all)
        };
        rust(&["webhook", "set", &url, "--secret", SECRET]);

        // Rust → Node → Python.
        let s = rust(&[
            "start",
            "cross-host",
            "--user",
            "ana",
            "--mode",
            "developer",
        ]);
        let first = s["id"].as_str().unwrap().to_owned();
        rust(&["iterate", &first, "--data", r#"{"host":"rust"}"#]);
        rust(&["pause", &first, "--reason", "handed on by rust"]);
        let by_node = node(&root, &first, "pause");
        assert_eq!(by_node["status"], "paused", "{by_node}");
        assert_eq!(by_node["iteration"], 2, "{by_node}");
        let by_python = py(&root, &first, "complete");
        assert_eq!(by_python["status"], "completed", "{by_python}");
        assert_eq!(by_python["iteration"], 3, "{by_python}");

        // Rust → Python → Node.
        let s = rust(&["start", "the other way round", "--user", "bo"]);
        let second = s["id"].as_str().unwrap().to_owned();
        let by_python = py(&root, &second, "pause");
        assert_eq!(by_python["status"], "paused", "{by_python}");
        let by_node = node(&root, &second, "complete");
        assert_eq!(by_node["status"], "completed", "{by_node}");

        // Read back by the CLI: state, history, index, files.
        let got = rust(&["show", &first]);
        assert_eq!(got["status"], "completed");
        assert_eq!(got["result"], serde_json::json!({"by": "python"}));
        let events = rust(&["events", &first]);
        let kinds: Vec<&str> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "start",
                "iteration",
                "pause",
                "resume",
                "iteration",
                "learning",
                "pause",
                "resume",
                "iteration",
                "learning",
                "complete"
            ],
            "{events}"
        );
        let hosts: Vec<&Value> = events["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "iteration")
            .map(|e| &e["data"]["data"]["host"])
            .collect();
        assert_eq!(hosts, ["rust", "node", "python"]);
        assert_eq!(rust(&["show", &second])["result"]["by"], "node");
        let listed = rust(&["list", "--status", "completed"]);
        assert_eq!(listed["sessions"].as_array().unwrap().len(), 2, "{listed}");
        let stats = rust(&["stats"]);
        assert_eq!(stats["success_rate"], 1.0, "{stats}");
        let check = cli(&root, &["fsck"]);
        assert!(
            check.status.success(),
            "fsck: {}",
            String::from_utf8_lossy(&check.stdout)
        );

        // Every host queued its notifications in the shared outbox.
        let pass = rust(&["deliver", "--once"]);
        assert_eq!(pass["delivered"], 10, "{pass}");
        (first, second)
    })
    .await
    .unwrap();

    let got = rx.wait_for(10).await;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for r in &got {
        r.verify(SECRET);
        let body = r.json();
        let session = body["data"]["session"]["id"].as_str().unwrap().to_owned();
        seen.entry(session)
            .or_default()
            .push(body["type"].as_str().unwrap().to_owned());
    }
    let ids: std::collections::HashSet<String> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), got.len(), "each notification once");
    let mut kinds = |id: &str| {
        let mut k = seen.remove(id).unwrap_or_default();
        k.sort();
        k
    };
    assert_eq!(
        kinds(&first),
        [
            "session.completed",
            "session.paused",
            "session.paused",
            "session.resumed",
            "session.resumed",
            "session.started"
        ]
    );
    assert_eq!(
        kinds(&second),
        [
            "session.completed",
            "session.paused",
            "session.resumed",
            "session.started"
        ]
    );
}

/// What a host reads in `root`, as the packages' `dump` examples print it:
/// the listing, every history, the stats.
fn dump_rust(root: &Path) -> Value {
    use agent_session_core::SessionFilter;
    let h = crate::common::host_at(root);
    let page = h.list(&SessionFilter::default(), None, 1000).unwrap();
    let mut events = serde_json::Map::new();
    for s in &page.sessions {
        let es = h.events(&s.id, 0, 1000).unwrap().events;
        let es: Vec<Value> = es
            .iter()
            .map(|e| serde_json::json!([e.seq, e.kind, e.data]))
            .collect();
        events.insert(s.id.clone(), Value::Array(es));
    }
    let st = h.stats(&SessionFilter::default()).unwrap();
    let sessions: Vec<Value> = page
        .sessions
        .iter()
        .map(|s| {
            let v = serde_json::to_value(s).unwrap();
            serde_json::json!([
                v["id"],
                v["status"],
                v["iteration"],
                v["event_count"],
                v["version"],
                v["task"]
            ])
        })
        .collect();
    serde_json::json!({
        "sessions": sessions,
        "unreadable": page.unreadable,
        "events": events,
        "stats": {
            "total": st.total,
            "by_status": serde_json::to_value(&st.by_status).unwrap(),
            "by_mode": st.by_mode,
            "average_iterations": st.average_iterations,
            "success_rate": st.success_rate,
        },
    })
}

/// `v` with every number as an `f64` (JavaScript prints `0.0` as `0`),
/// and of each unreadable session its id only (the reason names the file
/// as each host's own `root` module does).
fn numbers_as_f64(mut v: Value) -> Value {
    if let Some(Value::Array(u)) = v.get_mut("unreadable") {
        for entry in u.iter_mut() {
            let id = entry
                .as_str()
                .and_then(|s| s.split(':').next())
                .unwrap_or_default()
                .to_owned();
            *entry = Value::String(id);
        }
    }
    match v {
        Value::Number(n) => serde_json::json!(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(numbers_as_f64).collect()),
        Value::Object(o) => {
            Value::Object(o.into_iter().map(|(k, v)| (k, numbers_as_f64(v))).collect())
        }
        other => other,
    }
}

/// Run a package's example with `args`; its stdout as JSON.
fn example(program: &Path, script: &Path, args: &[&str]) -> Value {
    let out = Command::new(program)
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "{} {args:?}: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{}: {e}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Names and contents under `dir`, links not followed.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        let m = std::fs::symlink_metadata(&p).unwrap();
        if m.is_dir() {
            out.extend(tree(&p));
        } else {
            out.push((
                p.display().to_string(),
                std::fs::read(&p).unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

/// The on-disk format is one implementation in every host: a root the Rust
/// host wrote through everything the format has (snapshots past 16 events,
/// a deleted session, a compacted index, an ended intake segment, a torn
/// tail) reads the same in Node and Python; roots each host wrote are
/// clean for the Rust fsck and read the same everywhere; and a session
/// folder symlinked out of the root is refused by every host, which
/// touches nothing outside.
#[test]
fn every_host_reads_and_writes_the_same_directory_format() {
    let (node_pkg, python) = hosts();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let py_examples = repo.join("packages/python/examples");
    let node_dump = |root: &Path| {
        example(
            Path::new("node"),
            &node_pkg.join("examples/dump.mjs"),
            &[root.to_str().unwrap()],
        )
    };
    let py_dump = |root: &Path| {
        example(
            &python,
            &py_examples.join("dump.py"),
            &[root.to_str().unwrap()],
        )
    };
    let all_alike = |root: &Path, what: &str| {
        let rust = numbers_as_f64(dump_rust(root));
        assert_eq!(
            numbers_as_f64(node_dump(root)),
            rust,
            "{what}: Node reads what Rust reads"
        );
        assert_eq!(
            numbers_as_f64(py_dump(root)),
            rust,
            "{what}: Python reads what Rust reads"
        );
        rust
    };
    let tmp = tempfile::tempdir().unwrap();

    // Written by the Rust host.
    let root = tmp.path().join("rust");
    let h = crate::common::host_at(&root);
    h.set_webhook(&agent_session_core::WebhookConfig {
        url: "https://hooks.example.com/agent".into(),
        secret: SECRET.into(),
        event_kinds: vec![],
        enabled: true,
    })
    .unwrap();
    let start = |task: &str| {
        h.start(agent_session_core::StartOptions {
            task: task.into(),
            max_iterations: Some(100),
            ..Default::default()
        })
        .unwrap()
        .id
    };
    let long = start("past a snapshot");
    for i in 0..20 {
        h.iterate(&long, Some(&serde_json::json!({ "i": i })))
            .unwrap();
    }
    assert!(
        root.join(format!("sessions/{long}/doc")).exists(),
        "a snapshot was written"
    );
    let gone = start("deleted");
    h.iterate(&gone, None).unwrap();
    h.delete(&gone).unwrap();
    let torn = start("torn tail");
    h.iterate(&torn, None).unwrap();
    h.pause(&torn, Some("later")).unwrap();
    drop(h);
    let compacted = cli_json(&root, &["compact"]);
    assert!(compacted.is_object(), "{compacted}");
    // An ended intake segment (its process gone), as a rotation leaves one.
    let intake = root.join("outbox/intake");
    let segment = std::fs::read_dir(&intake)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "log"))
        .expect("an intake segment");
    std::fs::copy(&segment, intake.join("1-00000000000000aa.log")).unwrap();
    // An append cut short: a frame header and half a payload.
    let log = root.join(format!("sessions/{torn}/events.log"));
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut f, &[40, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]).unwrap();
    drop(f);
    let read = all_alike(&root, "the Rust root");
    assert_eq!(read["sessions"].as_array().unwrap().len(), 2, "{read}");
    assert_eq!(read["events"][&long].as_array().unwrap().len(), 21);
    assert_eq!(read["sessions"][1][4], 21.0, "the snapshot's version");
    // Readers leave the torn tail to the next writer; Node and Python
    // write on, the Rust fsck finds the root clean.
    continue_with(
        Path::new("node"),
        &node_pkg.join("examples/continue-session.mjs"),
        &root,
        &torn,
        "pause",
    );
    continue_with(
        &python,
        &py_examples.join("continue_session.py"),
        &root,
        &long,
        "complete",
    );
    let check = cli(&root, &["fsck"]);
    assert!(
        check.status.success(),
        "fsck: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    all_alike(&root, "the root after Node and Python wrote");

    // Written by each of the other hosts.
    for (name, program, script) in [
        (
            "node",
            PathBuf::from("node"),
            node_pkg.join("examples/load.mjs"),
        ),
        ("python", python.clone(), py_examples.join("load.py")),
    ] {
        let root = tmp.path().join(name);
        let out = Command::new(&program)
            .arg(&script)
            .args([
                "--dir",
                root.to_str().unwrap(),
                "--sessions",
                "2",
                "--threads",
                "2",
                "--ops",
                "40",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let check = cli(&root, &["fsck"]);
        assert!(
            check.status.success(),
            "{name}'s root: fsck: {}",
            String::from_utf8_lossy(&check.stdout)
        );
        let read = all_alike(&root, name);
        assert!(
            read["events"]
                .as_object()
                .unwrap()
                .values()
                .any(|e| e.as_array().unwrap().len() > 16),
            "{name} wrote past a snapshot: {read}"
        );
    }

    // A session folder that is a symlink out of the root.
    let root = tmp.path().join("hostile");
    let outside = tmp.path().join("outside");
    let h = crate::common::host_at(&root);
    let kept = start_in(&h, "kept");
    let moved = start_in(&h, "moved out");
    drop(h);
    std::fs::create_dir(&outside).unwrap();
    std::fs::rename(root.join(format!("sessions/{moved}")), outside.join(&moved)).unwrap();
    std::os::unix::fs::symlink(outside.join(&moved), root.join(format!("sessions/{moved}")))
        .unwrap();
    let before = tree(&outside);
    let read = all_alike(&root, "a root with a symlinked session");
    assert_eq!(read["sessions"].as_array().unwrap().len(), 1, "{read}");
    assert_eq!(read["sessions"][0][0], kept.as_str());
    assert_eq!(read["unreadable"].as_array().unwrap().len(), 1, "{read}");
    for (program, script) in [
        (
            PathBuf::from("node"),
            node_pkg.join("examples/continue-session.mjs"),
        ),
        (python.clone(), py_examples.join("continue_session.py")),
    ] {
        let out = Command::new(&program)
            .arg(&script)
            .args([root.to_str().unwrap(), &moved, "pause"])
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{}: wrote through the symlink",
            script.display()
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("symbolic link"),
            "{}: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(tree(&outside), before, "nothing outside the root changed");
}

fn start_in(h: &agent_session_host::SessionHost, task: &str) -> String {
    h.start(agent_session_core::StartOptions {
        task: task.into(),
        ..Default::default()
    })
    .unwrap()
    .id
}
