//! Storage faults and formats: torn and damaged files, a lost or damaged
//! index, full and read-only filesystems, the migration from format 1.

use std::path::Path;

use agent_session_core::{SessionError, SessionFilter, SessionStatus, StartOptions, ToolCall};
use agent_session_host::Error;
use serde_json::{Value, json};

use crate::common::{Tmpfs, cli, cli_json, host_at, open_at};

fn start(h: &agent_session_host::SessionHost, task: &str) -> String {
    h.start(StartOptions {
        task: task.into(),
        max_iterations: Some(1000),
        ..Default::default()
    })
    .unwrap()
    .id
}

fn log_of(root: &Path, id: &str) -> std::path::PathBuf {
    root.join("sessions").join(id).join("events.log")
}

fn storage_error(r: Result<impl std::fmt::Debug, Error>) -> String {
    match r {
        Err(Error::Session(SessionError::Storage(m))) => m,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn a_truncated_log_opens_at_its_last_whole_append() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_at(dir.path());
    let id = start(&h, "torn");
    for _ in 0..5 {
        h.iterate(&id, None).unwrap();
    }
    let log = log_of(dir.path(), &id);
    let len = std::fs::metadata(&log).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    let s = h.get(&id).unwrap();
    assert_eq!(
        (s.iteration, s.event_count),
        (4, 5),
        "the torn last append is not there"
    );
    let fsck = cli_json(dir.path(), &["fsck"]);
    assert_eq!(fsck["store"]["torn_tails"].as_array().unwrap().len(), 1);
    assert_eq!(fsck["damaged"], false);
    assert_eq!(
        h.iterate(&id, None).unwrap().iteration,
        5,
        "the next append cuts the tail"
    );
    let fsck = cli_json(dir.path(), &["fsck"]);
    assert!(fsck["store"]["torn_tails"].as_array().unwrap().is_empty());
}

#[test]
fn a_flipped_byte_names_the_session_and_others_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_at(dir.path());
    let bad = start(&h, "bad");
    let good = start(&h, "good");
    h.iterate(&bad, None).unwrap();
    let log = log_of(dir.path(), &bad);
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[30] ^= 0x20; // inside the first record
    std::fs::write(&log, &bytes).unwrap();
    let msg = storage_error(h.get(&bad));
    assert!(msg.contains(&bad), "{msg}");
    assert_eq!(h.iterate(&good, None).unwrap().iteration, 1);
    let listed = h
        .list(&SessionFilter::default(), None, 10)
        .unwrap()
        .sessions;
    assert_eq!(
        listed.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [good.as_str()]
    );
    let out = cli(dir.path(), &["show", &bad]);
    assert_eq!(out.status.code(), Some(8));
    let fsck = cli(dir.path(), &["--json", "fsck"]);
    assert_eq!(fsck.status.code(), Some(8), "fsck reports damage");
    let report: Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(report["store"]["damaged"][0][0], format!("sessions/{bad}"));
}

#[test]
fn a_garbage_snapshot_falls_back_to_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_at(dir.path());
    let id = start(&h, "snapshotted");
    for i in 0..100 {
        h.iterate(&id, Some(&json!({ "i": i }))).unwrap();
    }
    let before = h.get(&id).unwrap();
    let doc = dir.path().join("sessions").join(&id).join("doc");
    assert!(doc.exists(), "100 events wrote a snapshot");
    std::fs::write(&doc, b"garbage").unwrap();
    assert_eq!(h.get(&id).unwrap(), before);
    assert_eq!(h.iterate(&id, None).unwrap().iteration, 101);
    let repaired = cli_json(dir.path(), &["fsck", "--repair"]);
    assert_eq!(
        repaired["store"]["dropped_snapshots"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn a_lost_index_is_rebuilt_and_a_damaged_one_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let h = host_at(dir.path());
    let ids: Vec<String> = (0..5).map(|i| start(&h, &format!("s{i}"))).collect();
    h.complete(&ids[0], None).unwrap();
    drop(h);
    let index = dir.path().join("index").join("sessions.log");
    std::fs::remove_file(&index).unwrap();
    let h = host_at(dir.path());
    let listed = h
        .list(&SessionFilter::default(), None, 50)
        .unwrap()
        .sessions;
    assert_eq!(listed.len(), 5);
    assert_eq!(
        h.stats(&SessionFilter::default()).unwrap().by_status[&SessionStatus::Completed],
        1
    );

    // A damaged frame (as a writer killed mid-write leaves) is skipped;
    // fsck names the entry it held and --repair restores it.
    let mut bytes = std::fs::read(&index).unwrap();
    let first = bytes.windows(4).position(|w| w == b"ASIX").unwrap();
    bytes[first + 14] ^= 0xff;
    std::fs::write(&index, &bytes).unwrap();
    let h = host_at(dir.path());
    assert_eq!(
        h.list(&SessionFilter::default(), None, 50)
            .unwrap()
            .sessions
            .len(),
        4
    );
    let check = cli_json(dir.path(), &["fsck"]);
    assert_eq!(
        check["index"]["stale"].as_array().unwrap().len(),
        1,
        "{check}"
    );
    let repaired = cli_json(dir.path(), &["fsck", "--repair"]);
    assert_eq!(repaired["index"]["sessions"], 5);
    assert_eq!(
        cli_json(dir.path(), &["list"])["sessions"]
            .as_array()
            .unwrap()
            .len(),
        5
    );
}

#[test]
fn a_full_disk_is_an_error_and_loses_nothing() {
    let fs = Tmpfs::mount("512k");
    let root = fs.path().join("root");
    let h = host_at(&root);
    let id = start(&h, "fill the disk");
    let mut acked = 0;
    let err = loop {
        let call = ToolCall {
            name: "fill".into(),
            input: json!({ "n": acked }),
            output: json!("x".repeat(60_000)),
            duration_ms: 1,
        };
        match h.record_tool_call(&id, &call) {
            Ok(_) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 100, "a 512k filesystem must fill up");
    };
    match err {
        Error::Session(SessionError::Storage(m)) => assert!(m.contains("full"), "{m}"),
        other => panic!("expected a storage error, got {other:?}"),
    }
    let s = h.get(&id).unwrap();
    assert_eq!(s.event_count, 1 + acked, "every acknowledged call is there");
    let events = h.events(&id, 1, 1000).unwrap().events;
    let ns: Vec<u64> = events
        .iter()
        .map(|e| e.data["input"]["n"].as_u64().unwrap())
        .collect();
    assert_eq!(ns, (0..acked).collect::<Vec<_>>());
}

#[test]
fn a_read_only_root_reads_and_refuses_writes() {
    let fs = Tmpfs::mount("4m");
    let root = fs.path().join("root");
    let h = host_at(&root);
    let id = start(&h, "frozen");
    h.iterate(&id, None).unwrap();
    drop(h);
    fs.remount_read_only();
    let (h, _) = open_at(&root).expect("a read-only root opens");
    assert_eq!(h.get(&id).unwrap().iteration, 1);
    assert_eq!(
        h.list(&SessionFilter::default(), None, 10)
            .unwrap()
            .sessions
            .len(),
        1
    );
    let msg = storage_error(h.iterate(&id, None));
    assert!(msg.to_lowercase().contains("read-only"), "{msg}");
    assert_eq!(cli(&root, &["iterate", &id]).status.code(), Some(8));
    assert!(cli(&root, &["show", &id]).status.success());
}

#[test]
fn a_format_1_root_is_migrated_and_keeps_working() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(fixture.join("format-1.expected.json")).unwrap())
            .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    copy_dir(&fixture.join("format-1"), &root);

    let h = host_at(&root);
    assert_eq!(
        std::fs::read_to_string(root.join("FORMAT")).unwrap(),
        "agent-session-fs 2\n"
    );
    // A migration cut short by a crash runs again over logs it already
    // rewrote: they must survive.
    drop(h);
    std::fs::write(root.join("FORMAT"), "agent-session-fs 1\n").unwrap();
    let h = host_at(&root);
    for (name, id) in expected["ids"].as_object().unwrap() {
        let id = id.as_str().unwrap();
        let old = &expected["exports"][name];
        let mut now = serde_json::to_value(h.get(id).unwrap()).unwrap();
        let mut was = old["session"].clone();
        now["version"] = Value::Null;
        was["version"] = Value::Null;
        assert_eq!(now, was, "{name} reads as it was written");
        let events = serde_json::to_value(h.events(id, 0, 1000).unwrap().events).unwrap();
        assert_eq!(
            events, old["events"],
            "{name}'s history reads as it was written"
        );
    }
    let st = h.stats(&SessionFilter::default()).unwrap();
    assert_eq!(st.total, 4);
    assert_eq!(st.by_status[&SessionStatus::Timeout], 1);
    assert_eq!(
        h.get_webhook().unwrap().unwrap().event_kinds,
        ["session.completed"]
    );
    // Old sessions go on in the new format.
    let active = expected["ids"]["active"].as_str().unwrap();
    let s = h.iterate(active, None).unwrap();
    assert_eq!(s.iteration, 2);
    assert_eq!(
        s.context,
        expected["exports"]["active"]["session"]["context"]
            .as_object()
            .unwrap()
            .clone()
    );
    let paused = expected["ids"]["paused"].as_str().unwrap();
    h.resume(paused).unwrap();
    let fsck = cli_json(&root, &["fsck"]);
    assert_eq!(fsck["damaged"], false);
    assert!(fsck["index"]["stale"].as_array().unwrap().is_empty());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
