//! LangGraph's checkpointer rules, as the core keeps them (the
//! frameworks' own suites run against the Python and Node adapters).

use serde_json::{Value, json};

use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
use crate::*;

type TestEngine = Engine<MemoryStore, MemoryOutbox, ManualEnvironment>;

fn engine() -> TestEngine {
    Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(1_700_000_000_000),
    )
}

fn thread(e: &TestEngine, key: &str) -> SessionRef {
    e.start(StartOptions {
        task: "thread".into(),
        mode: Some("langgraph".into()),
        key: Some(key.into()),
        ..Default::default()
    })
    .unwrap();
    SessionRef::key(key)
}

fn tv(s: &str) -> TypedValue {
    TypedValue {
        type_: "json".into(),
        bytes: s.as_bytes().to_vec(),
    }
}

fn text(t: &TypedValue) -> String {
    String::from_utf8(t.bytes.clone()).unwrap()
}

fn cp(
    ns: &str,
    id: &str,
    parent: Option<&str>,
    versions: Value,
    new: &[(&str, Value, Option<&str>)],
) -> NewCheckpoint {
    NewCheckpoint {
        ns: ns.into(),
        id: id.into(),
        parent_id: parent.map(str::to_owned),
        checkpoint: tv(&format!("skeleton {id}")),
        metadata: json!({ "source": "loop", "step": 1, "run_id": format!("run-{id}") }),
        channel_versions: versions,
        new_values: new
            .iter()
            .map(|(c, v, value)| ChannelValue {
                channel: (*c).into(),
                version: v.clone(),
                value: value.map(tv),
            })
            .collect(),
    }
}

fn values(t: &CheckpointTuple) -> Vec<(String, String)> {
    t.channel_values
        .iter()
        .map(|(c, v)| (c.clone(), text(v)))
        .collect()
}

#[test]
fn channel_values_follow_their_versions() {
    let e = engine();
    let t = thread(&e, "t1");
    e.put_checkpoint(
        &t,
        cp(
            "",
            "1",
            None,
            json!({"a": 1, "b": 1}),
            &[("a", json!(1), Some("a1")), ("b", json!(1), Some("b1"))],
        ),
    )
    .unwrap();
    // Only `a` moves; `b` comes from checkpoint 1.
    e.put_checkpoint(
        &t,
        cp(
            "",
            "2",
            Some("1"),
            json!({"a": 2, "b": 1}),
            &[("a", json!(2), Some("a2"))],
        ),
    )
    .unwrap();
    // `b` is emptied, `c` named without a value: both left out.
    e.put_checkpoint(
        &t,
        cp(
            "",
            "3",
            Some("2"),
            json!({"a": 2, "b": 2, "c": 1}),
            &[("b", json!(2), None)],
        ),
    )
    .unwrap();
    let latest = e.get_checkpoint(&t, "", None).unwrap().unwrap();
    assert_eq!(latest.id, "3");
    assert_eq!(latest.parent_id.as_deref(), Some("2"));
    assert_eq!(values(&latest), [("a".into(), "a2".into())]);
    let two = e.get_checkpoint(&t, "", Some("2")).unwrap().unwrap();
    assert_eq!(
        values(&two),
        [("a".into(), "a2".into()), ("b".into(), "b1".into())]
    );
    let one = e.get_checkpoint(&t, "", Some("1")).unwrap().unwrap();
    assert_eq!(
        values(&one),
        [("a".into(), "a1".into()), ("b".into(), "b1".into())]
    );
    assert_eq!(text(&one.checkpoint), "skeleton 1");
    assert_eq!(one.key.as_deref(), Some("t1"));
    // A parent that is not in the thread: the value is found by its
    // version all the same.
    e.put_checkpoint(
        &t,
        cp("", "4", Some("elsewhere"), json!({"a": 2, "b": 1}), &[]),
    )
    .unwrap();
    let four = e.get_checkpoint(&t, "", Some("4")).unwrap().unwrap();
    assert_eq!(
        values(&four),
        [("a".into(), "a2".into()), ("b".into(), "b1".into())]
    );
    assert!(e.get_checkpoint(&t, "", Some("9")).unwrap().is_none());
    assert!(e.get_checkpoint(&t, "child", None).unwrap().is_none());
    assert!(
        e.get_checkpoint(SessionRef::key("nope"), "", None)
            .unwrap()
            .is_none()
    );
}

#[test]
fn values_are_found_however_long_ago_they_were_put() {
    let e = engine();
    let t = thread(&e, "long");
    e.put_checkpoint(
        &t,
        cp(
            "",
            "0000",
            None,
            json!({"big": 1, "n": 0}),
            &[
                ("big", json!(1), Some("put once")),
                ("n", json!(0), Some("0")),
            ],
        ),
    )
    .unwrap();
    for i in 1..300u32 {
        let id = format!("{i:04}");
        let parent = format!("{:04}", i - 1);
        e.put_checkpoint(
            &t,
            cp(
                "",
                &id,
                Some(&parent),
                json!({"big": 1, "n": i}),
                &[("n", json!(i), Some(&i.to_string()))],
            ),
        )
        .unwrap();
    }
    let before = e.store().reads();
    let latest = e.get_checkpoint(&t, "", None).unwrap().unwrap();
    assert_eq!(
        values(&latest),
        [
            ("big".into(), "put once".into()),
            ("n".into(), "299".into())
        ]
    );
    assert!(
        e.store().reads() - before <= 6,
        "{} reads",
        e.store().reads() - before
    );
}

#[test]
fn writes_keep_the_first_regular_and_the_last_special() {
    let e = engine();
    let t = thread(&e, "w");
    e.put_checkpoint(&t, cp("", "1", None, json!({}), &[]))
        .unwrap();
    e.put_writes(
        &t,
        "",
        "1",
        "task-b",
        "p1",
        vec![("a".into(), tv("1")), ("__error__".into(), tv("e1"))],
    )
    .unwrap();
    e.put_writes(
        &t,
        "",
        "1",
        "task-b",
        "p1",
        vec![
            ("a".into(), tv("2")),
            ("__error__".into(), tv("e2")),
            ("__interrupt__".into(), tv("i")),
        ],
    )
    .unwrap();
    e.put_writes(&t, "", "1", "task-z", "", vec![("x".into(), tv("X"))])
        .unwrap();
    e.put_writes(&t, "", "1", "task-a", "p2", vec![("y".into(), tv("Y"))])
        .unwrap();
    e.put_writes(
        &t,
        "child",
        "1",
        "task-c",
        "",
        vec![("y".into(), tv("other ns"))],
    )
    .unwrap();
    let got = e.get_checkpoint(&t, "", Some("1")).unwrap().unwrap();
    let w: Vec<(String, String, String)> = got
        .pending_writes
        .iter()
        .map(|w| (w.task_id.clone(), w.channel.clone(), text(&w.value)))
        .collect();
    let expect = [
        ("task-z", "x", "X"),
        ("task-b", "__interrupt__", "i"),
        ("task-b", "__error__", "e2"),
        ("task-b", "a", "1"),
        ("task-a", "y", "Y"),
    ];
    assert_eq!(
        w,
        expect.map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
    );
    // A new checkpoint starts with none.
    e.put_checkpoint(&t, cp("", "2", Some("1"), json!({}), &[]))
        .unwrap();
    assert!(
        e.get_checkpoint(&t, "", None)
            .unwrap()
            .unwrap()
            .pending_writes
            .is_empty()
    );
}

#[test]
fn lists_filter_page_and_honour_drops() {
    let e = engine();
    let t = thread(&e, "l");
    for (i, ns) in ["", "", "child", "", "child"].iter().enumerate() {
        let id = format!("{i}");
        e.put_checkpoint(&t, cp(ns, &id, None, json!({}), &[]))
            .unwrap();
    }
    let ids = |q: &CheckpointQuery| -> Vec<String> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = e.list_checkpoints(q, cursor.as_deref()).unwrap();
            out.extend(page.checkpoints.into_iter().map(|c| c.id));
            match page.next_cursor {
                Some(c) => cursor = Some(c),
                None => return out,
            }
        }
    };
    let mut q = CheckpointQuery {
        session: Some(t.clone()),
        ..Default::default()
    };
    assert_eq!(ids(&q), ["4", "3", "2", "1", "0"]);
    q.ns = Some(String::new());
    assert_eq!(ids(&q), ["3", "1", "0"]);
    q.before = Some("3".into());
    q.limit = Some(1);
    assert_eq!(ids(&q), ["1"]);
    let q2 = CheckpointQuery {
        session: None,
        threads: SessionFilter {
            mode: Some("langgraph".into()),
            ..Default::default()
        },
        metadata: Some(
            json!({"run_id": "run-2", "missing": null, "step": 1.0})
                .as_object()
                .unwrap()
                .clone(),
        ),
        ..Default::default()
    };
    assert_eq!(ids(&q2), ["2"]);
    // delete_for_runs
    assert_eq!(
        e.drop_runs(&q2.threads, &["run-2".into(), "run-4".into()])
            .unwrap(),
        1
    );
    q = CheckpointQuery {
        session: Some(t.clone()),
        ..Default::default()
    };
    assert_eq!(ids(&q), ["3", "1", "0"]);
    assert!(e.get_checkpoint(&t, "child", Some("2")).unwrap().is_none());
    // A re-put of a dropped id is back.
    e.put_checkpoint(&t, cp("child", "2", None, json!({}), &[]))
        .unwrap();
    assert_eq!(ids(&q), ["2", "3", "1", "0"]);
    // prune keeps the latest of each namespace.
    e.prune_checkpoints(&t).unwrap();
    assert_eq!(ids(&q), ["2", "3"]);
    // Pages of many.
    let p = thread(&e, "paged");
    for i in 0..250 {
        e.put_checkpoint(&p, cp("", &format!("{i:03}"), None, json!({}), &[]))
            .unwrap();
    }
    let all = ids(&CheckpointQuery {
        session: Some(p.clone()),
        ..Default::default()
    });
    assert_eq!(all.len(), 250);
    assert_eq!(all[0], "249");
    assert_eq!(all[249], "000");
    assert!(matches!(
        e.list_checkpoints(&q, Some("../../x.1.2")),
        Err(SessionError::InvalidInput(_))
    ));
}

#[test]
fn copies_keep_ids_values_and_writes() {
    let e = engine();
    let src = thread(&e, "src");
    let big = "v".repeat(3 << 20);
    e.put_checkpoint(
        &src,
        cp(
            "",
            "1",
            None,
            json!({"a": 1, "big": 1}),
            &[("a", json!(1), Some("a1")), ("big", json!(1), Some(&big))],
        ),
    )
    .unwrap();
    e.put_checkpoint(
        &src,
        cp(
            "",
            "2",
            Some("1"),
            json!({"a": 2, "big": 1}),
            &[("a", json!(2), Some("a2"))],
        ),
    )
    .unwrap();
    e.put_writes(&src, "", "2", "t", "", vec![("ch".into(), tv(&big))])
        .unwrap();
    let dst = thread(&e, "dst");
    e.put_checkpoint(&dst, cp("", "0", None, json!({}), &[]))
        .unwrap();
    e.copy_checkpoints(&src, &dst).unwrap();
    let got = e.get_checkpoint(&dst, "", None).unwrap().unwrap();
    assert_eq!(got.id, "2");
    assert_eq!(
        values(&got),
        [("a".into(), "a2".into()), ("big".into(), big.clone())]
    );
    assert_eq!(text(&got.pending_writes[0].value), big);
    assert_eq!(got.key.as_deref(), Some("dst"));
    // The source is unchanged and the copy is independent of it.
    e.delete(&src).unwrap();
    let again = e.get_checkpoint(&dst, "", Some("1")).unwrap().unwrap();
    assert_eq!(
        values(&again),
        [("a".into(), "a1".into()), ("big".into(), big)]
    );
    // Export and import carry the values.
    let doc = e.export(&dst).unwrap().to_string();
    e.delete(&dst).unwrap();
    e.import_text(&doc).unwrap();
    assert_eq!(
        e.get_checkpoint(SessionRef::key("dst"), "", None)
            .unwrap()
            .unwrap()
            .id,
        "2"
    );
}

#[test]
fn hostile_checkpoint_input_is_refused() {
    let e = engine();
    let t = thread(&e, "h");
    let mut bad = cp("", "", None, json!({}), &[]);
    assert!(matches!(
        e.put_checkpoint(&t, bad.clone()),
        Err(SessionError::InvalidInput(_))
    ));
    bad.id = "x".into();
    bad.metadata = json!([1]);
    assert!(matches!(
        e.put_checkpoint(&t, bad.clone()),
        Err(SessionError::InvalidInput(_))
    ));
    bad.metadata = json!({});
    bad.channel_versions = json!({"a": {"nested": 1}});
    assert!(matches!(
        e.put_checkpoint(&t, bad.clone()),
        Err(SessionError::InvalidInput(_))
    ));
    bad.channel_versions = json!({});
    bad.ns = "a\u{0}b".into();
    assert!(matches!(
        e.put_checkpoint(&t, bad.clone()),
        Err(SessionError::InvalidInput(_))
    ));
    // Forged checkpoint events cannot be recorded as custom events.
    assert!(matches!(
        e.record_event(&t, "checkpoint", json!({})),
        Err(SessionError::InvalidInput(_))
    ));
    // Ended threads take no more checkpoints.
    e.complete(&t, None).unwrap();
    bad.ns = String::new();
    assert!(matches!(
        e.put_checkpoint(&t, bad),
        Err(SessionError::InvalidTransition(_))
    ));
}

#[test]
fn writes_recorded_before_their_checkpoint_are_found() {
    // LangGraph puts a step's writes while the checkpoint's put is still
    // on its way.
    let e = engine();
    let t = thread(&e, "early");
    e.put_checkpoint(&t, cp("", "1", None, json!({}), &[]))
        .unwrap();
    e.put_writes(&t, "", "2", "task", "", vec![("early".into(), tv("w"))])
        .unwrap();
    e.put_checkpoint(&t, cp("", "2", Some("1"), json!({}), &[]))
        .unwrap();
    e.put_writes(
        &t,
        "",
        "2",
        "task",
        "",
        vec![("early".into(), tv("ignored")), ("late".into(), tv("x"))],
    )
    .unwrap();
    let got = e.get_checkpoint(&t, "", None).unwrap().unwrap();
    let writes: Vec<(String, String)> = got
        .pending_writes
        .iter()
        .map(|w| (w.channel.clone(), text(&w.value)))
        .collect();
    // Position 0 of the task was taken by the early write; position 1 is
    // the late one's.
    assert_eq!(
        writes,
        [("early".into(), "w".into()), ("late".into(), "x".into())]
    );
    let listed = e
        .list_checkpoints(
            &CheckpointQuery {
                session: Some(t.clone()),
                limit: Some(1),
                ..Default::default()
            },
            None,
        )
        .unwrap();
    assert_eq!(listed.checkpoints[0].pending_writes.len(), 2);
}

#[test]
fn values_come_from_the_checkpoints_own_lineage() {
    // Whole-number versions (LangGraph's JavaScript default): a fork from
    // an older checkpoint puts another value at the same version.
    let e = engine();
    let t = thread(&e, "fork");
    e.put_checkpoint(
        &t,
        cp(
            "",
            "1",
            None,
            json!({"a": 1}),
            &[("a", json!(1), Some("one"))],
        ),
    )
    .unwrap();
    e.put_checkpoint(
        &t,
        cp(
            "",
            "2",
            Some("1"),
            json!({"a": 2}),
            &[("a", json!(2), Some("A"))],
        ),
    )
    .unwrap();
    e.put_checkpoint(
        &t,
        cp(
            "",
            "2b",
            Some("1"),
            json!({"a": 2}),
            &[("a", json!(2), Some("X"))],
        ),
    )
    .unwrap();
    e.put_checkpoint(&t, cp("", "3", Some("2"), json!({"a": 2}), &[]))
        .unwrap();
    let three = e.get_checkpoint(&t, "", Some("3")).unwrap().unwrap();
    assert_eq!(values(&three), [("a".into(), "A".into())]);
}

#[test]
fn a_copy_keeps_the_targets_own_checkpoints_and_metadata_as_it_is() {
    let e = engine();
    let src = thread(&e, "pruned");
    let mut first = cp("", "s1", None, json!({}), &[]);
    first.metadata = json!({ "type": "x", "blob": 3, "run_id": "r" });
    e.put_checkpoint(&src, first).unwrap();
    e.put_checkpoint(&src, cp("", "s2", None, json!({}), &[]))
        .unwrap();
    e.prune_checkpoints(&src).unwrap();
    let dst = thread(&e, "target");
    e.put_checkpoint(&dst, cp("", "d1", None, json!({}), &[]))
        .unwrap();
    e.copy_checkpoints(&src, &dst).unwrap();
    let ids: Vec<String> = e
        .list_checkpoints(
            &CheckpointQuery {
                session: Some(dst.clone()),
                ..Default::default()
            },
            None,
        )
        .unwrap()
        .checkpoints
        .into_iter()
        .map(|c| c.id)
        .collect();
    // s1 was pruned in the source, and stays so; d1 is the target's own.
    assert_eq!(ids, ["s2", "d1"]);
    // The metadata that looks like a value reference is copied as it is.
    let e2 = engine();
    let a = thread(&e2, "a");
    let mut m = cp("", "m", None, json!({}), &[]);
    m.metadata = json!({ "type": "x", "blob": 3 });
    e2.put_checkpoint(&a, m).unwrap();
    let b = thread(&e2, "b");
    e2.copy_checkpoints(&a, &b).unwrap();
    assert_eq!(
        e2.get_checkpoint(&b, "", None).unwrap().unwrap().metadata,
        json!({ "type": "x", "blob": 3 })
    );
}

#[test]
fn an_event_larger_than_an_import_takes_is_refused() {
    let e = engine();
    let t = thread(&e, "huge");
    let versions: serde_json::Map<String, Value> = (0..3000)
        .map(|i| {
            (
                format!("channel-with-a-long-name-{i:05}-{}", "x".repeat(40)),
                json!(1),
            )
        })
        .collect();
    let c = cp("", "1", None, Value::Object(versions), &[]);
    assert!(matches!(
        e.put_checkpoint(&t, c),
        Err(SessionError::InvalidInput(_) | SessionError::LimitExceeded(_))
    ));
}

#[test]
fn a_cursor_outlives_its_thread() {
    let e = engine();
    let threads = SessionFilter {
        mode: Some("langgraph".into()),
        ..Default::default()
    };
    let names = ["t0", "t1", "t2"];
    for name in names {
        let t = thread(&e, name);
        for i in 0..60 {
            e.put_checkpoint(&t, cp("", &format!("{i:03}"), None, json!({}), &[]))
                .unwrap();
        }
    }
    let q = CheckpointQuery {
        threads,
        ..Default::default()
    };
    let first = e.list_checkpoints(&q, None).unwrap();
    assert_eq!(first.checkpoints.len(), 100);
    // The page ended inside the second thread (the newest first: t2, t1).
    assert_eq!(first.checkpoints[99].key.as_deref(), Some("t1"));
    e.delete(SessionRef::key("t1")).unwrap();
    let rest = e
        .list_checkpoints(&q, first.next_cursor.as_deref())
        .unwrap();
    assert_eq!(rest.checkpoints.len(), 60);
    assert!(
        rest.checkpoints
            .iter()
            .all(|c| c.key.as_deref() == Some("t0"))
    );
}

#[test]
fn writes_too_large_for_their_event_write_no_values() {
    let e = engine();
    let t = thread(&e, "w");
    e.put_checkpoint(&t, cp("", "1", None, json!({}), &[]))
        .unwrap();
    // Each value goes to the blob log, but their channel names cannot fit
    // in the one event that names them all.
    let writes: Vec<(String, TypedValue)> = (0..100)
        .map(|i| (format!("{i:0>4000}"), tv(&"v".repeat(20_000))))
        .collect();
    let r = e.put_writes(&t, "", "1", "task", "", writes);
    assert!(matches!(r, Err(SessionError::LimitExceeded(_))), "{r:?}");
    let id = e.get(&t).unwrap().id;
    assert!(e.store().read(BLOBS, &id, 0, 1).unwrap().is_empty());
    let mut c = cp("", "2", Some("1"), json!({}), &[]);
    c.new_values = (0..100)
        .map(|i| ChannelValue {
            channel: format!("{i:0>4000}"),
            version: json!(1),
            value: Some(tv(&"v".repeat(20_000))),
        })
        .collect();
    let r = e.put_checkpoint(&t, c);
    assert!(matches!(r, Err(SessionError::LimitExceeded(_))), "{r:?}");
    assert!(e.store().read(BLOBS, &id, 0, 1).unwrap().is_empty());
}

#[test]
fn forged_cursors_are_refused() {
    let e = engine();
    let t = thread(&e, "f");
    e.put_checkpoint(&t, cp("", "1", None, json!({}), &[]))
        .unwrap();
    let id = e.get(&t).unwrap().id;
    let q = CheckpointQuery {
        session: Some(t),
        ..Default::default()
    };
    for bad in [
        format!("{id}.0.18446744073709551615"),
        format!("{id}.5.2"),
        format!("{id}.-1.0"),
        format!("{id}.0"),
        "..".into(),
    ] {
        assert!(
            matches!(
                e.list_checkpoints(&q, Some(&bad)),
                Err(SessionError::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    assert_eq!(
        e.list_checkpoints(&q, Some(&format!("{id}.0.0")))
            .unwrap()
            .checkpoints
            .len(),
        1
    );
}

#[test]
fn a_page_of_large_values_closes_at_its_byte_bound() {
    let e = engine();
    let t = thread(&e, "big");
    // Twelve checkpoints of 1 MiB each, kept in the blob log: their events
    // are small, their values are not.
    let mut parent: Option<String> = None;
    for i in 0..12 {
        let id = format!("{i:02}");
        let mut c = cp("", &id, parent.as_deref(), json!({ "state": i + 1 }), &[]);
        c.new_values = vec![ChannelValue {
            channel: "state".into(),
            version: json!(i + 1),
            value: Some(tv(&format!("{i}").repeat(1 << 20))),
        }];
        e.put_checkpoint(&t, c).unwrap();
        parent = Some(id);
    }
    let q = CheckpointQuery {
        session: Some(t),
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = e.list_checkpoints(&q, cursor.as_deref()).unwrap();
        pages += 1;
        let bytes: usize = page
            .checkpoints
            .iter()
            .flat_map(|c| c.channel_values.iter().map(|(_, v)| v.bytes.len()))
            .sum();
        assert!(bytes <= 9 << 20, "a page of {bytes} bytes");
        seen.extend(page.checkpoints.iter().map(|c| c.id.clone()));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let expected: Vec<String> = (0..12).rev().map(|i| format!("{i:02}")).collect();
    assert_eq!(seen, expected);
    assert!(pages >= 2);
}
