//! Shared fixtures.

use std::path::{Path, PathBuf};
use std::process::Output;

use agent_session_host::{CacheDir, FsOutbox, FsStore, SessionHost};

/// Compiled components are cached here, not in the user's home.
pub fn cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("component-cache")
}

/// A host on a fresh store; the directory lives as long as the guard.
pub fn host() -> (tempfile::TempDir, SessionHost) {
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    (dir, host)
}

/// A host on the store at `root`.
pub fn host_at(root: &Path) -> SessionHost {
    let store = FsStore::open(root).unwrap();
    let outbox = FsOutbox::open(root).unwrap();
    SessionHost::builder(std::sync::Arc::new(store), std::sync::Arc::new(outbox))
        .cache(CacheDir::At(cache_dir()))
        .build()
        .unwrap()
}

/// Run the CLI on `root`.
pub fn cli(root: &Path, args: &[&str]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .arg("--dir")
        .arg(root)
        .args(args)
        .env("AGENT_SESSION_CACHE_DIR", cache_dir())
        .output()
        .expect("the agent-session binary runs")
}

/// Run the CLI with `--json`, expect success, parse stdout.
pub fn cli_json(root: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = cli(root, &all);
    assert!(
        out.status.success(),
        "agent-session {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Every path under `dir` with its contents, to prove nothing else changed.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
                out.push((p, Vec::new()));
            } else {
                let bytes = std::fs::read(&p).unwrap();
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}
