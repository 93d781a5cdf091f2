//! `cargo bench -p agent-session-host --bench postgres`: appends and lists
//! per second through the session component, with 1 and 4 host processes,
//! on the PostgreSQL store next to the filesystem store, in one run.
//!
//! The server: `BENCH_POSTGRES` (a URL), else a throwaway one started with
//! `scripts/postgres.sh` (and stopped at the end). `BENCH_SESSIONS` (default
//! 2000) sessions are made in each store first; `BENCH_SECONDS` (default 3)
//! is how long each measurement runs. Each host process is this binary
//! started again as a worker, with its own component instance and store
//! connection; an append is a tool call on the worker's own session, a list
//! is the first page of 50 of a filtered listing.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use agent_session_core::memory::MemoryOutbox;
use agent_session_core::{SessionFilter, StartOptions, ToolCall};
use agent_session_host::{CacheDir, Durability, PgStore, SessionHost};
use serde_json::json;

use common::machine;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--worker") {
        return worker(&args[at + 1..]);
    }
    let env_num = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let sessions = env_num("BENCH_SESSIONS", 2000);
    let seconds = env_num("BENCH_SECONDS", 3);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let base = repo.join("target/bench-postgres");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    let server = Server::start(&repo)?;
    machine(&base);
    let version = postgres::Client::connect(&server.url, postgres::NoTls)?
        .query_one("SHOW server_version", &[])?
        .get::<_, String>(0);
    println!(
        "PostgreSQL {version} on 127.0.0.1 (fsync on, synchronous_commit on); \
         {sessions} sessions in each store; {seconds} s per figure\n"
    );

    let dir = base.join("root");
    let db = server.database("bench")?;
    let stores = [
        ("filesystem", format!("dir:{}", dir.display())),
        ("PostgreSQL", format!("pg:{db}")),
    ];
    for (name, store) in &stores {
        let host = open(store)?;
        let t = Instant::now();
        for i in 0..sessions {
            host.start(StartOptions {
                task: format!("bench {i}"),
                mode: Some(if i % 2 == 0 { "developer" } else { "review" }.into()),
                user_id: Some(format!("user{}", i % 50)),
                max_iterations: Some(1_000_000),
                ..Default::default()
            })?;
        }
        println!(
            "  made {sessions} sessions in the {name} store in {:.1} s",
            t.elapsed().as_secs_f64()
        );
    }

    println!(
        "\n  {:<40} {:>14} {:>14}",
        "per second", "filesystem", "PostgreSQL"
    );
    for op in ["append", "list"] {
        for processes in [1usize, 4] {
            let mut cells = Vec::new();
            for (_, store) in &stores {
                let n = run_workers(op, store, processes, seconds)?;
                cells.push(format!("{:.0}", n as f64 / seconds as f64));
            }
            let what = match op {
                "append" => format!("appends, {processes} host process(es)"),
                _ => format!("lists (page of 50), {processes} host process(es)"),
            };
            println!("  {what:<40} {:>14} {:>14}", cells[0], cells[1]);
        }
    }
    Ok(())
}

/// A host on `store` (`dir:PATH` or `pg:URL`).
fn open(store: &str) -> anyhow::Result<SessionHost> {
    match store.split_once(':') {
        Some(("dir", path)) => {
            Ok(SessionHost::open_dir(path, Durability::Durable, CacheDir::Default)?.0)
        }
        Some(("pg", url)) => Ok(SessionHost::builder(
            Arc::new(PgStore::connect(url)?),
            Arc::new(MemoryOutbox::new()),
        )
        .build()?),
        _ => anyhow::bail!("unknown store {store}"),
    }
}

/// Start `processes` workers that begin together, wait for them, and
/// return how many operations they made in all.
fn run_workers(op: &str, store: &str, processes: usize, seconds: u64) -> anyhow::Result<u64> {
    // Time for every worker to load the component and connect first.
    let start_at = now_ms() + 2000;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            Command::new(std::env::current_exe()?)
                .args(["--worker", op, store])
                .arg(start_at.to_string())
                .arg(seconds.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .map_err(anyhow::Error::from)
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0;
    for child in children {
        let out = child.wait_with_output()?;
        anyhow::ensure!(out.status.success(), "a {op} worker failed");
        total += String::from_utf8(out.stdout)?.trim().parse::<u64>()?;
    }
    Ok(total)
}

/// Worker mode: `--worker OP STORE START_AT_MS SECONDS`; prints its count.
fn worker(args: &[String]) -> anyhow::Result<()> {
    let [op, store, start_at, seconds] = args else {
        anyhow::bail!("worker arguments: OP STORE START_AT_MS SECONDS");
    };
    let host = open(store)?;
    let session = host.start(StartOptions {
        task: "bench worker".into(),
        max_iterations: Some(1_000_000),
        ..Default::default()
    })?;
    let filter = SessionFilter {
        mode: Some("developer".into()),
        ..Default::default()
    };
    let start_at: u64 = start_at.parse()?;
    std::thread::sleep(Duration::from_millis(start_at.saturating_sub(now_ms())));
    let end = Instant::now() + Duration::from_secs(seconds.parse()?);
    let mut n = 0u64;
    while Instant::now() < end {
        match op.as_str() {
            "append" => {
                host.record_tool_call(
                    &session.id,
                    &ToolCall {
                        name: "grep".into(),
                        input: json!({ "pattern": "fn main", "n": n }),
                        output: json!({ "matches": ["src/main.rs:12"], "pad": "x".repeat(300) }),
                        duration_ms: 3,
                    },
                )?;
            }
            _ => {
                let page = host.list(&filter, None, 50)?;
                anyhow::ensure!(page.sessions.len() == 50, "a full first page");
            }
        }
        n += 1;
    }
    println!("{n}");
    Ok(())
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The PostgreSQL server of the run.
struct Server {
    url: String,
    /// Started here (stopped on drop), or given.
    script: Option<PathBuf>,
}

impl Server {
    fn start(repo: &Path) -> anyhow::Result<Self> {
        if let Ok(url) = std::env::var("BENCH_POSTGRES") {
            return Ok(Self { url, script: None });
        }
        let script = repo.join("scripts/postgres.sh");
        let out = Command::new(&script)
            .args(["start", "bench"])
            .stderr(Stdio::inherit())
            .output()?;
        anyhow::ensure!(out.status.success(), "scripts/postgres.sh start failed");
        Ok(Self {
            url: String::from_utf8(out.stdout)?.trim().to_owned(),
            script: Some(script),
        })
    }

    /// A new empty database; its URL.
    fn database(&self, name: &str) -> anyhow::Result<String> {
        let mut admin = postgres::Client::connect(&self.url, postgres::NoTls)?;
        admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        admin.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let mut url = url::Url::parse(&self.url)?;
        url.set_path(name);
        Ok(url.to_string())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(script) = &self.script {
            let _ = Command::new(script).args(["stop", "bench"]).status();
        }
    }
}
