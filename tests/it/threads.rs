//! Sessions by key, conversations and checkpoints through the Rust host,
//! on both stores; racing `start`s of one key from several processes.

use std::process::{Command, Stdio};

use agent_session_core::{
    ChannelValue, CheckpointQuery, NewCheckpoint, SessionError, SessionFilter, SessionRef,
    StartOptions, TypedValue,
};
use agent_session_host::{CacheDir, Error, SessionHost};
use serde_json::json;

use crate::common::{cache_dir, fresh_database, host};

fn typed(bytes: Vec<u8>) -> TypedValue {
    TypedValue {
        type_: "bytes".into(),
        bytes,
    }
}

/// The same work on any store: keys, items and checkpoints, with values of
/// several MiB.
fn keys_items_and_checkpoints(h: &SessionHost) {
    let key = "thread/../../etc/passwd \u{1F600}";
    let start = |task: &str| {
        h.start(StartOptions {
            task: task.into(),
            key: Some(key.into()),
            mode: Some("langgraph".into()),
            ..Default::default()
        })
        .unwrap()
    };
    let a = start("first");
    assert_eq!(start("second").id, a.id);
    let by_key = SessionRef::key(key);
    // Items, one of them of 3 MiB.
    let big = json!({ "output": "x".repeat(3 << 20) });
    h.add_items(&by_key, &[json!({"role": "user"}), big.clone()])
        .unwrap();
    assert_eq!(h.items(&by_key, Some(1)).unwrap(), vec![big.clone()]);
    assert_eq!(h.pop_item(&by_key).unwrap(), Some(big));
    assert_eq!(
        h.items(&by_key, None).unwrap(),
        vec![json!({"role": "user"})]
    );
    // A checkpoint whose state is 6 MiB, and a later one that reuses it.
    let state: Vec<u8> = (0..6u32 << 20).map(|i| (i % 251) as u8).collect();
    let put = |id: &str, parent: Option<&str>, new: Vec<ChannelValue>| {
        h.put_checkpoint(
            &by_key,
            &NewCheckpoint {
                ns: String::new(),
                id: id.into(),
                parent_id: parent.map(str::to_owned),
                checkpoint: typed(id.as_bytes().to_vec()),
                metadata: json!({"source": "loop", "run_id": format!("run-{id}")}),
                channel_versions: json!({"state": 1, "step": id}),
                new_values: new,
            },
        )
        .unwrap()
    };
    put(
        "1",
        None,
        vec![
            ChannelValue {
                channel: "state".into(),
                version: json!(1),
                value: Some(typed(state.clone())),
            },
            ChannelValue {
                channel: "step".into(),
                version: json!("1"),
                value: Some(typed(b"one".to_vec())),
            },
        ],
    );
    put(
        "2",
        Some("1"),
        vec![ChannelValue {
            channel: "step".into(),
            version: json!("2"),
            value: Some(typed(b"two".to_vec())),
        }],
    );
    h.put_writes(
        &by_key,
        "",
        "2",
        "task",
        "",
        &[("out".into(), typed(b"w".to_vec()))],
    )
    .unwrap();
    let latest = h.get_checkpoint(&by_key, "", None).unwrap().unwrap();
    assert_eq!(
        (latest.id.as_str(), latest.key.as_deref()),
        ("2", Some(key))
    );
    let values: Vec<_> = latest
        .channel_values
        .iter()
        .map(|(c, v)| (c.as_str(), v.bytes.len()))
        .collect();
    assert_eq!(values, [("state", 6 << 20), ("step", 3)]);
    assert_eq!(latest.channel_values[0].1.bytes, state);
    assert_eq!(latest.pending_writes.len(), 1);
    // Copied to another thread, listed across threads, pruned, dropped.
    let other = h
        .start(StartOptions {
            task: "copy".into(),
            key: Some("other".into()),
            mode: Some("langgraph".into()),
            ..Default::default()
        })
        .unwrap();
    h.copy_checkpoints(&by_key, &other.id).unwrap();
    let threads = SessionFilter {
        mode: Some("langgraph".into()),
        ..Default::default()
    };
    // Every page of a listing across threads (a page holds at most 8 MiB
    // of values: these states take one page each).
    let ids = |h: &SessionHost, threads: &SessionFilter| -> Vec<(String, String)> {
        let query = CheckpointQuery {
            threads: threads.clone(),
            ..Default::default()
        };
        let (mut out, mut cursor) = (Vec::new(), None::<String>);
        loop {
            let page = h.list_checkpoints(&query, cursor.as_deref()).unwrap();
            out.extend(
                page.checkpoints
                    .into_iter()
                    .map(|c| (c.key.unwrap_or_default(), c.id)),
            );
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    };
    assert_eq!(ids(h, &threads).len(), 4);
    h.prune_checkpoints(&other.id).unwrap();
    let pair = |k: &str, id: &str| (k.to_owned(), id.to_owned());
    assert_eq!(
        ids(h, &threads),
        [pair("other", "2"), pair(key, "2"), pair(key, "1")]
    );
    // Run 2 is in both threads.
    assert_eq!(h.drop_runs(&threads, &["run-2".into()]).unwrap(), 2);
    assert_eq!(ids(h, &threads), [pair(key, "1")]);
    // Deleting by key frees the key and the values.
    h.delete(&by_key).unwrap();
    assert!(matches!(
        h.get(&by_key),
        Err(Error::Session(SessionError::NotFound(_)))
    ));
    assert_ne!(start("again").id, a.id);
    assert!(h.get_checkpoint(&by_key, "", None).unwrap().is_none());
}

#[test]
fn keys_items_and_checkpoints_on_a_directory() {
    let (dir, h) = host();
    keys_items_and_checkpoints(&h);
    // The key never became a name on disk.
    for entry in walk(dir.path()) {
        let name = entry.to_string_lossy();
        assert!(
            !name.contains("passwd") && !name.contains("thread"),
            "{name}"
        );
    }
}

#[test]
fn keys_items_and_checkpoints_on_postgres() {
    let url = fresh_database("pg_threads");
    let (h, _outbox) = SessionHost::open_postgres(&url, CacheDir::At(cache_dir())).unwrap();
    keys_items_and_checkpoints(&h);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// `start --key` in `n` processes at once on one store: every one prints
/// the same id, and the store holds one session with the key.
fn racing_starts(store_args: &[&str]) {
    const N: usize = 8;
    let children: Vec<_> = (0..N)
        .map(|i| {
            Command::new(env!("CARGO_BIN_EXE_agent-session"))
                .args(store_args)
                .args(["start", "--key", "same-thread", "-q"])
                .arg(format!("racer {i}"))
                .env("AGENT_SESSION_CACHE_DIR", cache_dir())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let out = Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .args(store_args)
        .args(["--json", "list"])
        .env("AGENT_SESSION_CACHE_DIR", cache_dir())
        .output()
        .unwrap();
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sessions = page["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 1, "{page}");
    assert_eq!(sessions[0]["id"], ids[0].as_str());
    assert_eq!(sessions[0]["key"], "same-thread");
    assert_eq!(sessions[0]["event_count"], 1, "one start event");
}

#[test]
fn racing_starts_of_one_key_make_one_session_on_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    racing_starts(&["--dir", dir.path().to_str().unwrap()]);
}

#[test]
fn racing_starts_of_one_key_make_one_session_on_postgres() {
    let url = fresh_database("pg_racing_keys");
    racing_starts(&["--store", &url]);
}
