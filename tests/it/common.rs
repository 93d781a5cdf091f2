//! Shared fixtures.

use std::path::{Path, PathBuf};
use std::process::Output;

use agent_session_host::{CacheDir, Durability, FsStore, SessionHost};

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

/// A host on the store at `root`, opened as `SessionHost::open` does.
pub fn host_at(root: &Path) -> SessionHost {
    open_at(root).unwrap().0
}

/// [`host_at`], also returning the store, or the error.
pub fn open_at(root: &Path) -> anyhow::Result<(SessionHost, std::sync::Arc<FsStore>)> {
    SessionHost::open_dir(root, Durability::Durable, CacheDir::At(cache_dir()))
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

/// The load generator example (`host/examples/load.rs`), built by
/// `cargo test` next to the test binaries.
pub fn load_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("examples").join("load");
    assert!(bin.exists(), "{} is built by `cargo test`", bin.display());
    bin
}

/// A small tmpfs mounted for one test: a real full disk and a real
/// read-only filesystem. Needs root, as the test command runs here.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test command runs as root)"
        );
        Tmpfs { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn remount_read_only(&self) {
        let status = std::process::Command::new("mount")
            .args(["-o", "remount,ro"])
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// The PostgreSQL server of the tests (`scripts/postgres.sh start`, run
/// by `scripts/test.sh`).
pub fn postgres_url() -> String {
    std::env::var("AGENT_SESSION_TEST_POSTGRES").expect(
        "AGENT_SESSION_TEST_POSTGRES names the test PostgreSQL server; ./scripts/test.sh \
         starts one (scripts/postgres.sh start)",
    )
}

/// The CA file that the test server's TLS certificate is issued by.
pub fn postgres_ca() -> String {
    std::env::var("AGENT_SESSION_TEST_POSTGRES_CA").expect(
        "AGENT_SESSION_TEST_POSTGRES_CA names the test server's CA; ./scripts/test.sh sets it",
    )
}

/// A new, empty database `name` on the test server (dropped first if a
/// previous run left it); its URL.
pub fn fresh_database(name: &str) -> String {
    fresh_database_with(name, "")
}

/// [`fresh_database`] with `options` for `CREATE DATABASE`.
pub fn fresh_database_with(name: &str, options: &str) -> String {
    let base = postgres_url();
    let mut admin = postgres::Client::connect(&base, postgres::NoTls)
        .unwrap_or_else(|e| panic!("connecting to the test server {base}: {e}"));
    // One statement each: neither may run in a transaction block.
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name} {options}"))
        .unwrap();
    let mut url = url::Url::parse(&base).unwrap();
    url.set_path(name);
    url.to_string()
}
