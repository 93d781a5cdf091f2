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
