//! Storage benchmark: the figures of README "Performance", side by side in
//! one run, on one disk.
//!
//! ```sh
//! cargo bench -p agent-session-host --bench storage
//! BENCH_SESSIONS=10000 BENCH_DIR=/some/disk cargo bench -p agent-session-host --bench storage
//! ```
//!
//! 1. a durable event append (`record_tool_call`) through the component,
//!    next to a raw 512-byte append + fdatasync on the same disk;
//! 2. that append at event 10 and at event 100 000 of a session;
//! 3. durable appends per second with 1 and 8 concurrent writers;
//! 4. `list` (first page of 50, filtered) and `stats` over 100 000 sessions;
//!
//! each next to the same workload on a plain SQLite table (WAL,
//! synchronous=FULL).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use agent_session_core::memory::MemoryOutbox;
use agent_session_core::{Engine, SessionFilter, SessionStatus, StartOptions, ToolCall};
use agent_session_host::{CacheDir, Durability, FsOutbox, FsStore, SessionHost};
use common::{WallClock, fmt, machine, ratio, time, time_pair};
use serde_json::json;

mod common;

const APPENDS: usize = 300;
const LONG_HISTORY: u64 = 100_000;
const USERS: usize = 100;

fn main() -> anyhow::Result<()> {
    let sessions: usize = std::env::var("BENCH_SESSIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let base = std::env::var_os("BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/bench-storage")
        });
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base)?;
    machine(&base);

    let mut rows: Vec<(String, String, String)> = Vec::new();
    let mut row = |what: &str, ours: String, baseline: String| {
        println!("  {what:<44} {ours:>14} {baseline:>14}");
        rows.push((what.into(), ours, baseline));
    };
    println!("\n  {:<44} {:>14} {:>14}", "", "agent-session", "baseline");

    // 1. Durable append through the component vs raw append + fdatasync,
    //    interleaved so that both see the same disk (its latency drifts).
    let root = base.join("root");
    let host = SessionHost::open_dir(&root, Durability::Durable, CacheDir::Default)?.0;
    let short = host.start(StartOptions {
        task: "bench".into(),
        max_iterations: Some(1_000_000),
        ..Default::default()
    })?;
    for _ in 0..9 {
        append(&host, &short.id)?;
    }
    let mut raw = RawLog::open(&base.join("raw.log"))?;
    let (ours, raw) = time_pair(APPENDS, || append(&host, &short.id), || raw.append())?;
    row(
        "durable append, component vs raw+fdatasync",
        fmt(ours.median),
        fmt(raw.median),
    );
    println!(
        "  {:<44} {:>14}",
        "  ratio (target <= 1.3)",
        format!("{:.2}x", ratio(ours.median, raw.median))
    );

    // 2. The append at event 10 and at event 100 000, interleaved (the
    //    long history is written relaxed, by the native core over the
    //    same store, to save time).
    let long = prefill_history(&root, LONG_HISTORY)?;
    let fresh = host.start(StartOptions {
        task: "short".into(),
        max_iterations: Some(1_000_000),
        ..Default::default()
    })?;
    for _ in 0..9 {
        append(&host, &fresh.id)?;
    }
    let sqlite = Sqlite::open(&base.join("baseline.sqlite"))?;
    let mut sq_short = sqlite.session_with(1, 10)?;
    let mut sq_long = sqlite.session_with(2, LONG_HISTORY)?;
    settle();
    let (at_10, at_100k) = time_pair(
        APPENDS,
        || append(&host, &fresh.id),
        || append(&host, &long),
    )?;
    let (sq_10, sq_100k) = time_pair(
        APPENDS,
        || sqlite.append(&mut sq_short),
        || sqlite.append(&mut sq_long),
    )?;
    row("append at event 10", fmt(at_10.median), fmt(sq_10.median));
    row(
        "append at event 100 000",
        fmt(at_100k.median),
        fmt(sq_100k.median),
    );
    println!(
        "  {:<44} {:>14} {:>14}",
        "  growth 10 -> 100 000 (target flat)",
        format!("{:.2}x", ratio(at_100k.median, at_10.median)),
        format!("{:.2}x", ratio(sq_100k.median, sq_10.median))
    );

    // 3. Concurrent writers on different sessions: their fdatasyncs share
    //    journal commits (the filesystem's group commit), so throughput
    //    grows with writers instead of staying at 1 / latency.
    for writers in [1, 8] {
        let ours = throughput(writers, |_| {
            let id = host
                .start(StartOptions {
                    task: "writer".into(),
                    max_iterations: Some(1_000_000),
                    ..Default::default()
                })?
                .id;
            let host = host.clone();
            Ok(Box::new(move || append(&host, &id)))
        })?;
        let db_path = base.join("baseline.sqlite");
        let theirs = throughput(writers, |w| {
            let db = Sqlite::connect(&db_path)?;
            let mut session = db.session_with(100 + (writers * 10 + w) as i64, 10)?;
            Ok(Box::new(move || db.append(&mut session)))
        })?;
        row(
            &format!("durable appends/s, {writers} writer(s), own sessions"),
            format!("{ours:.0}/s"),
            format!("{theirs:.0}/s"),
        );
    }

    // 4. list and stats over many sessions.
    eprintln!("creating {sessions} sessions (relaxed durability; this takes a while)...");
    let many = base.join("many");
    prefill_sessions(&many, sessions)?;
    sqlite.prefill_sessions(sessions)?;
    settle();
    let filter = SessionFilter {
        user_id: Some("u7".into()),
        status: Some(SessionStatus::Active),
        ..Default::default()
    };
    let cold = Instant::now();
    let host = SessionHost::open_dir(&many, Durability::Durable, CacheDir::Default)?.0;
    let first = host.list(&filter, None, 50)?;
    let cold = cold.elapsed();
    assert!(!first.sessions.is_empty(), "the filter selects sessions");
    let list = time(50, || {
        host.list(&filter, None, 50).map(|_| ()).map_err(Into::into)
    })?;
    let sq_list = time(50, || sqlite.list("u7"))?;
    let label = format!("list, first page of 50 of {sessions}, filtered");
    row(&label, fmt(list.median), fmt(sq_list.median));
    row(
        "  same, new process (index load included)",
        fmt(cold),
        String::new(),
    );
    let stats = time(10, || {
        host.stats(&SessionFilter::default())
            .map(|_| ())
            .map_err(Into::into)
    })?;
    let sq_stats = time(10, || sqlite.stats())?;
    row(
        &format!("stats over {sessions}"),
        fmt(stats.median),
        fmt(sq_stats.median),
    );
    println!("\n  targets: list <= 20 ms, stats <= 100 ms (BRIEF section 7); medians shown");
    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}

type Op = Box<dyn FnMut() -> anyhow::Result<()> + Send>;

/// Operations per second of `writers` threads, each running the operation
/// `make` gives it for a fixed number of rounds.
fn throughput(
    writers: usize,
    mut make: impl FnMut(usize) -> anyhow::Result<Op>,
) -> anyhow::Result<f64> {
    const ROUNDS: usize = 150;
    let ops: Vec<Op> = (0..writers).map(&mut make).collect::<anyhow::Result<_>>()?;
    let start = Instant::now();
    let threads: Vec<_> = ops
        .into_iter()
        .map(|mut op| {
            std::thread::spawn(move || -> anyhow::Result<()> {
                for _ in 0..ROUNDS {
                    op()?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    Ok((writers * ROUNDS) as f64 / start.elapsed().as_secs_f64())
}

/// Write back what the unsynced prefills left in the page cache, so that
/// background writeback does not land in the measurements.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

fn append(host: &SessionHost, id: &str) -> anyhow::Result<()> {
    host.record_tool_call(
        id,
        &ToolCall {
            name: "grep".into(),
            input: json!({ "pattern": "fn main", "path": "src/" }),
            output: json!({ "matches": ["src/main.rs:12", "src/bin/cli.rs:40"], "pad": "x".repeat(300) }),
            duration_ms: 12,
        },
    )?;
    Ok(())
}

/// 512-byte append + fdatasync: the floor of a durable append on this disk.
struct RawLog(std::fs::File);

impl RawLog {
    fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        ))
    }

    fn append(&mut self) -> anyhow::Result<()> {
        self.0.write_all(&[7u8; 512])?;
        self.0.sync_data()?;
        Ok(())
    }
}

fn relaxed_engine(root: &Path) -> anyhow::Result<Engine<FsStore, MemoryOutbox, WallClock>> {
    let store = FsStore::open_with(root, Durability::Relaxed)?;
    Ok(Engine::new(store, MemoryOutbox::new(), WallClock))
}

fn prefill_history(root: &Path, events: u64) -> anyhow::Result<String> {
    eprintln!("writing a history of {events} events (relaxed durability)...");
    let engine = relaxed_engine(root)?;
    let s = engine.start(StartOptions {
        task: "long history".into(),
        max_iterations: Some(1_000_000),
        ..Default::default()
    })?;
    for i in 1..events {
        engine.record_tool_call(
            &s.id,
            ToolCall {
                name: "grep".into(),
                input: json!({ "i": i }),
                output: json!({ "pad": "x".repeat(300) }),
                duration_ms: 1,
            },
        )?;
    }
    Ok(s.id)
}

fn prefill_sessions(root: &Path, n: usize) -> anyhow::Result<()> {
    let engine = relaxed_engine(root)?;
    let _outbox = FsOutbox::open(root)?;
    for i in 0..n {
        let s = engine.start(StartOptions {
            task: format!("task {i}"),
            mode: Some(["developer", "chat", "review"][i % 3].into()),
            user_id: Some(format!("u{}", i % USERS)),
            channel_id: Some(format!("c{}", i % 10)),
            max_iterations: Some(100),
            ..Default::default()
        })?;
        match i % 4 {
            0 => drop(engine.complete(&s.id, None)?),
            1 => drop(engine.iterate(&s.id, None)?),
            _ => {}
        }
    }
    Ok(())
}

/// The baseline: one table of sessions, one of events, WAL and
/// synchronous=FULL, the indexes a list and a history need.
struct Sqlite {
    db: rusqlite::Connection,
}

impl Sqlite {
    /// Another connection to an existing database (one per writer thread).
    fn connect(path: &Path) -> anyhow::Result<Self> {
        let db = rusqlite::Connection::open(path)?;
        db.execute_batch("PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;")?;
        Ok(Self { db })
    }

    fn open(path: &Path) -> anyhow::Result<Self> {
        let db = rusqlite::Connection::open(path)?;
        db.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA busy_timeout=10000;
             CREATE TABLE sessions(id INTEGER PRIMARY KEY, task TEXT, mode TEXT, user_id TEXT,
                channel_id TEXT, status TEXT, iteration INTEGER, event_count INTEGER,
                created_at INTEGER, updated_at INTEGER);
             CREATE INDEX sessions_user ON sessions(user_id, id);
             CREATE TABLE events(session_id INTEGER, seq INTEGER, kind TEXT, ts INTEGER, data TEXT,
                PRIMARY KEY(session_id, seq)) WITHOUT ROWID;",
        )?;
        Ok(Self { db })
    }

    /// Session `id` with `history` events (written without sync); returns
    /// (id, next position).
    fn session_with(&self, id: i64, history: u64) -> anyhow::Result<(i64, i64)> {
        self.db.execute(
            "INSERT INTO sessions VALUES (?1, 'bench', 'developer', 'u1', 'c1', 'active', 0, ?2, 0, 0)",
            (id, history as i64),
        )?;
        self.db.execute_batch("PRAGMA synchronous=OFF; BEGIN")?;
        {
            let mut ins = self
                .db
                .prepare("INSERT INTO events VALUES (?1, ?2, 'tool_call', 0, ?3)")?;
            let pad = "x".repeat(400);
            for seq in 0..history {
                ins.execute((id, seq as i64, &pad))?;
            }
        }
        self.db.execute_batch("COMMIT; PRAGMA synchronous=FULL")?;
        Ok((id, history as i64))
    }

    /// One durable append: the event and the session's new length.
    fn append(&self, session: &mut (i64, i64)) -> anyhow::Result<()> {
        let (id, seq) = *session;
        let data = json!({ "name": "grep", "output": "x".repeat(300) }).to_string();
        let tx = self.db.unchecked_transaction()?;
        tx.execute(
            "INSERT INTO events VALUES (?1, ?2, 'tool_call', 0, ?3)",
            (id, seq, &data),
        )?;
        tx.execute(
            "UPDATE sessions SET event_count = ?2, updated_at = ?2 WHERE id = ?1",
            (id, seq + 1),
        )?;
        tx.commit()?;
        session.1 += 1;
        Ok(())
    }

    fn prefill_sessions(&self, n: usize) -> anyhow::Result<()> {
        self.db.execute_batch("DELETE FROM sessions; BEGIN")?;
        {
            let mut ins = self
                .db
                .prepare("INSERT INTO sessions VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1, ?1, ?1)")?;
            for i in 0..n {
                let status = match i % 4 {
                    0 => "completed",
                    _ => "active",
                };
                ins.execute((
                    i as i64,
                    format!("task {i}"),
                    ["developer", "chat", "review"][i % 3],
                    format!("u{}", i % USERS),
                    format!("c{}", i % 10),
                    status,
                    (i % 4 == 1) as i64,
                ))?;
            }
        }
        self.db.execute_batch("COMMIT")?;
        Ok(())
    }

    fn list(&self, user: &str) -> anyhow::Result<()> {
        let mut q = self.db.prepare_cached(
            "SELECT * FROM sessions WHERE user_id = ?1 AND status = 'active' ORDER BY id DESC LIMIT 50",
        )?;
        let rows = q.query_map([user], |r| r.get::<_, i64>(0))?.count();
        assert!(rows > 0);
        Ok(())
    }

    fn stats(&self) -> anyhow::Result<()> {
        self.db
            .prepare_cached("SELECT status, count(*) FROM sessions GROUP BY status")?
            .query_map([], |r| r.get::<_, i64>(1))?
            .for_each(drop);
        self.db
            .prepare_cached("SELECT mode, count(*) FROM sessions GROUP BY mode")?
            .query_map([], |r| r.get::<_, i64>(1))?
            .for_each(drop);
        self.db
            .query_row("SELECT avg(iteration) FROM sessions", [], |r| {
                r.get::<_, f64>(0)
            })?;
        Ok(())
    }
}
