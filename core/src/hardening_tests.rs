//! Imports held to the live rules, exact JSON numbers, checked list
//! cursors and webhook url shapes. Public API only.

use serde_json::{Value, json};

use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
use crate::*;

type TestEngine = Engine<MemoryStore, MemoryOutbox, ManualEnvironment>;

const T0: u64 = 1_700_000_000_000;
const ID: &str = "01890000-0000-7000-8000-000000000001";

fn engine() -> TestEngine {
    Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(T0),
    )
}

fn start_data(max: u32) -> Value {
    json!({"task": "t", "mode": "default", "user_id": null, "channel_id": null,
           "max_iterations": max, "context": {}})
}

/// A document whose `session` is what `fold` makes of `events` (timestamps
/// T0, T0+1, ..., a timeout sharing its predecessor's): exactly what a
/// schema-2 import checked before it ran the live operations.
fn forged(events: &[(&str, Value)]) -> Value {
    let mut t = T0;
    let events: Vec<Event> = events
        .iter()
        .enumerate()
        .map(|(i, (kind, data))| {
            if i > 0 && *kind != "timeout" {
                t += 1;
            }
            Event {
                seq: i as u64,
                kind: (*kind).to_owned(),
                timestamp: t,
                data: data.clone(),
            }
        })
        .collect();
    forged_events(events)
}

fn forged_events(events: Vec<Event>) -> Value {
    let session = replay(ID, &events).unwrap().unwrap();
    json!({"format": EXPORT_FORMAT, "schema": 2, "session": session, "events": events})
}

fn refused(doc: Value) -> String {
    let m = refused_text(&engine(), &doc.to_string());
    assert!(m.starts_with("export document: "), "{m}");
    m
}

/// A session with nothing but a task.
fn started(e: &TestEngine) -> Session {
    e.start(StartOptions {
        task: "t".into(),
        ..Default::default()
    })
    .unwrap()
}

fn iteration(n: u32) -> (&'static str, Value) {
    ("iteration", json!({"iteration": n, "data": null}))
}

#[test]
fn imported_iterations_follow_the_live_counter_and_bound() {
    let timeout = |n: u32, max: u32| ("timeout", json!({"iteration": n, "max_iterations": max}));
    let start = |max| ("start", start_data(max));
    // 0 → 10 on a max of 10.
    let m = refused(forged(&[start(10), iteration(10), timeout(10, 10)]));
    assert!(m.contains("event 1 (iteration)"), "{m}");
    // Counting down, skipping.
    refused(forged(&[
        start(10),
        iteration(1),
        iteration(2),
        iteration(1),
    ]));
    refused(forged(&[start(10), iteration(1), iteration(3)]));
    // The bound reached without its timeout, at the end or before more.
    let m = refused(forged(&[start(2), iteration(1), iteration(2)]));
    assert!(m.contains("followed by its timeout"), "{m}");
    refused(forged(&[
        start(2),
        iteration(1),
        iteration(2),
        ("learning", json!({"insight": "i", "expertise_file": null})),
        timeout(2, 2),
    ]));
    // A timeout on its own.
    let m = refused(forged(&[start(5), iteration(1), timeout(1, 5)]));
    assert!(m.contains("event 2 (timeout)"), "{m}");
    // The real thing is accepted.
    engine()
        .import(forged(&[
            start(2),
            iteration(1),
            iteration(2),
            timeout(2, 2),
        ]))
        .unwrap();
}

#[test]
fn imported_transitions_follow_the_status_machine() {
    let start = ("start", start_data(10));
    let pause = ("pause", json!({"reason": null}));
    let timeout = ("timeout", json!({"iteration": 0, "max_iterations": 10}));
    let error = ("error", json!({"error": "e", "iteration": 0}));
    let complete = ("complete", json!({"result": null, "iteration": 0}));
    refused(forged(&[
        start.clone(),
        pause.clone(),
        timeout,
        error.clone(),
    ]));
    let m = refused(forged(&[start.clone(), complete.clone(), error]));
    assert!(
        m.contains("event 2 (error)") && m.contains("cannot fail"),
        "{m}"
    );
    let m = refused(forged(&[
        start.clone(),
        ("resume", json!({"iteration": 0})),
    ]));
    assert!(m.contains("cannot resume"), "{m}");
    for after in [
        ("note", json!({})),
        ("learning", json!({"insight": "i", "expertise_file": null})),
        ("context", json!({"patch": {"a": 1}})),
        pause,
    ] {
        refused(forged(&[start.clone(), complete.clone(), after]));
    }
}

#[test]
fn imported_events_are_held_to_the_argument_checks() {
    let start = ("start", start_data(10));
    for kind in ["../../etc/passwd", "", "START", "iteration x"] {
        refused(forged(&[start.clone(), (kind, json!({}))]));
    }
    let mut big_user = start_data(10);
    big_user["user_id"] = json!("u".repeat(300));
    let m = refused(forged(&[("start", big_user.clone())]));
    assert!(m.contains("event 0 (start): user id"), "{m}");
    let m = refused(forged(&[
        start.clone(),
        ("note", json!({"blob": "x".repeat(70 << 10)})),
    ]));
    assert!(m.contains("event 1 (note): event data is"), "{m}");
    // Far beyond what any operation records: refused before the data is
    // copied into the operation's arguments.
    big_user["user_id"] = json!("u".repeat(1 << 20));
    let m = refused(forged(&[("start", big_user)]));
    assert!(m.contains("event 0 (start): its data is"), "{m}");
    let m = refused(forged(&[
        start.clone(),
        ("note", json!({"blob": "x".repeat(60 << 20)})),
    ]));
    // So large it is not even parsed.
    assert!(m.contains("event 1: it is 629"), "{m}");
    refused(forged(&[
        start.clone(),
        ("pause", json!({"reason": "   "})),
    ]));
    refused(forged(&[
        start.clone(),
        (
            "tool_call",
            json!({"name": "ls", "input": {}, "output": {}, "duration_ms": u64::MAX}),
        ),
    ]));
}

#[test]
fn imported_built_in_events_hold_exactly_what_their_operation_writes() {
    let start = ("start", start_data(10));
    let m = refused(forged(&[
        start.clone(),
        ("pause", json!({"reason": null, "extra": 1})),
    ]));
    assert!(m.contains("\"extra\""), "{m}");
    let mut extra = start_data(10);
    extra["admin"] = json!(true);
    refused(forged(&[("start", extra)]));
    refused(forged(&[start.clone(), ("resume", json!({}))]));
    refused(forged(&[
        start.clone(),
        ("iteration", json!({"iteration": 1})),
    ]));
    // A lifecycle event may name its notification, in the shape `commit`
    // writes; nothing else may.
    let with_id = |id: Value| {
        forged(&[
            start.clone(),
            ("pause", json!({"reason": null, "webhook_id": id})),
        ])
    };
    engine().import(with_id(json!("msg_abc-DEF_1"))).unwrap();
    for id in [json!(5), json!("abc"), json!("msg_"), json!("msg_a/b")] {
        refused(with_id(id));
    }
    refused(forged(&[
        start.clone(),
        (
            "learning",
            json!({"insight": "i", "expertise_file": null, "webhook_id": "msg_a"}),
        ),
    ]));
}

#[test]
fn imported_timestamps_are_ordered_and_sane() {
    let events = |ts: [u64; 2]| {
        forged_events(vec![
            Event {
                seq: 0,
                kind: "start".into(),
                timestamp: ts[0],
                data: start_data(10),
            },
            Event {
                seq: 1,
                kind: "note".into(),
                timestamp: ts[1],
                data: json!({}),
            },
        ])
    };
    let m = refused(events([T0 + 5, T0]));
    assert!(m.contains("event 1 (note)") && m.contains("before"), "{m}");
    refused(events([T0, u64::MAX]));
    refused(events([T0, T0 + 86_400_001]));
    refused(events([T0, 1 << 53]));
    engine().import(events([T0, T0 + 86_400_000])).unwrap();
    // An iteration and its timeout are one operation: one timestamp.
    let mut doc = forged(&[
        ("start", start_data(1)),
        iteration(1),
        ("timeout", json!({"iteration": 1, "max_iterations": 1})),
    ]);
    doc["events"][2]["timestamp"] = json!(T0 + 3);
    doc["session"]["updated_at"] = json!(T0 + 3);
    doc["session"]["ended_at"] = json!(T0 + 3);
    assert!(engine().import(doc.clone()).is_err());
    doc["events"][2]["timestamp"] = json!(T0 + 1);
    doc["session"]["updated_at"] = json!(T0 + 1);
    doc["session"]["ended_at"] = json!(T0 + 1);
    engine().import(doc.clone()).unwrap();
    doc["events"][2]["timestamp"] = json!(T0 + 3);
    doc["session"]["updated_at"] = json!(T0 + 3);
    doc["session"]["ended_at"] = json!(T0 + 3);
    refused(doc);
}

#[test]
fn schema_1_documents_are_replayed_too() {
    // A "completed" session with only its start event.
    let mut doc = forged(&[("start", start_data(10))]);
    doc["schema"] = json!(1);
    doc["session"]["status"] = json!("completed");
    doc["session"]["ended_at"] = json!(T0);
    let m = refused(doc);
    assert!(m.contains("does not match its own history"), "{m}");
    // Its context events name keys: the document's context is trusted.
    let mut doc = forged(&[
        ("start", start_data(10)),
        ("context", json!({"keys": ["a"]})),
        iteration(1),
    ]);
    doc["schema"] = json!(1);
    doc["session"]["context"] = json!({"a": 1});
    let s = engine().import(doc.clone()).unwrap();
    assert_eq!(s.context["a"], 1);
    for keys in [
        json!({"keys": [1]}),
        json!({"keys": ["a"], "x": 1}),
        json!({}),
    ] {
        let mut bad = doc.clone();
        bad["events"][1]["data"] = keys;
        refused(bad);
    }
    // A schema-2 document has no such events.
    doc["schema"] = json!(2);
    refused(doc);
}

#[test]
fn exports_of_live_sessions_import_back_unchanged() {
    let e = engine();
    e.set_webhook(WebhookConfig {
        url: "https://hooks.example.com/x".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_kinds: vec![],
        enabled: true,
    })
    .unwrap();
    let s = e
        .start(StartOptions {
            task: "t".into(),
            user_id: Some("u".into()),
            max_iterations: Some(3),
            context: Some(json!({"k": [1, 2.5, "x"]})),
            ..Default::default()
        })
        .unwrap();
    e.update_context(&s.id, json!({"k": null, "n": 9007199254740992u64}))
        .unwrap();
    e.iterate(&s.id, Some(json!({"step": 1}))).unwrap();
    e.record_tool_call(
        &s.id,
        ToolCall {
            name: "ls".into(),
            input: json!({}),
            output: json!(["a"]),
            duration_ms: 3,
        },
    )
    .unwrap();
    e.pause(&s.id, Some("wait".into())).unwrap();
    e.record_event(&s.id, "note", json!({"webhook_id": 1}))
        .unwrap();
    e.resume(&s.id).unwrap();
    e.iterate(&s.id, None).unwrap();
    e.iterate(&s.id, None).unwrap();
    let doc = e.export(&s.id).unwrap();
    assert!(doc["events"][0]["data"]["webhook_id"].is_string());
    // Through text, as a host hands it over.
    let text = doc.to_string();
    let other = engine();
    other.import_text(&text).unwrap();
    assert_eq!(other.export(&s.id).unwrap(), doc);
}

#[test]
fn inexact_json_numbers_are_refused() {
    let m = validate::json("data", r#"{"a":123456789012345678901234567890}"#).unwrap_err();
    assert_eq!(
        m,
        SessionError::InvalidInput(
            "data: the number 123456789012345678901234567890 cannot be stored exactly; send it as a string"
                .into()
        )
    );
    for bad in [
        "1.0000000000000001",
        "9007199254740993",
        "-9007199254740993",
        "18446744073709551616",
        "1152921504606846976",
        "1e-400",
        "[1, {\"a\": [0.30000000000000001]}]",
    ] {
        assert!(
            matches!(validate::json("v", bad), Err(SessionError::InvalidInput(m)) if m.contains("cannot be stored exactly")),
            "{bad}"
        );
    }
    for good in [
        "0.1",
        "1e21",
        "-0",
        "12.50",
        "1E+2",
        "-1.5e-7",
        "9007199254740992",
        "18446744073709552000",
        "5e-324",
        "1.7976931348623157e308",
        r#"{"s": "\"123456789012345678901234567890\\", "t": 1}"#,
    ] {
        assert!(validate::json("v", good).is_ok(), "{good}");
    }
    let long = format!("[{}]", "1".repeat(500));
    let m = validate::json("v", &long).unwrap_err();
    assert!(m.message().len() < 150, "{m}");
    let big = format!("[\"{}\"]", "x".repeat(100_000));
    assert!(validate::json("v", &big).is_err());
}

#[test]
fn native_integers_beyond_what_hosts_hold_are_refused() {
    let e = engine();
    let s = started(&e);
    for bad in [
        json!(u64::MAX),
        json!(9007199254740993u64),
        json!({"a": [i64::MIN + 1]}),
    ] {
        let r = e.record_event(&s.id, "note", bad.clone());
        assert!(
            matches!(&r, Err(SessionError::InvalidInput(m)) if m.starts_with("event data: the number")),
            "{bad}: {r:?}"
        );
        assert!(e.update_context(&s.id, json!({ "k": bad })).is_err());
        assert!(e.iterate(&s.id, Some(bad.clone())).is_err());
    }
    for good in [
        json!(9007199254740991u64),
        json!(-9007199254740991i64),
        json!(9007199254740992u64),
        json!(1e300),
    ] {
        e.record_event(&s.id, "note", good).unwrap();
    }
    let call = |duration_ms| ToolCall {
        name: "ls".into(),
        input: json!({}),
        output: json!({}),
        duration_ms,
    };
    assert!(matches!(
        e.record_tool_call(&s.id, call(u64::MAX)),
        Err(SessionError::InvalidInput(_))
    ));
    e.record_tool_call(&s.id, call(validate::MAX_SAFE_INTEGER))
        .unwrap();
    // The same in an imported document, anywhere in it.
    let mut doc = e.export(&s.id).unwrap();
    doc["extra"] = json!([u64::MAX]);
    e.delete(&s.id).unwrap();
    let m = refused(doc);
    assert!(m.contains("the number 18446744073709551615"), "{m}");
}

#[test]
fn list_cursors_are_checked() {
    let e = engine();
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(started(&e).id);
        e.env().advance(1);
    }
    let p1 = e.list(&SessionFilter::default(), None, 2).unwrap();
    let cursor = p1.next_cursor.unwrap();
    let p2 = e.list(&SessionFilter::default(), Some(&cursor), 2).unwrap();
    assert_eq!(p2.sessions.len(), 1);
    assert_eq!(p2.sessions[0].id, ids[0]);
    let mut tampered = cursor.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == '0' { '1' } else { '0' });
    let other_id = format!("{}{}", ids[0], &cursor[ids[1].len()..]);
    for bad in [
        "garbage".to_owned(),
        "".to_owned(),
        ids[1].clone(),
        tampered,
        other_id,
        format!("{cursor}.00000000"),
        format!("../x.{}", &cursor[cursor.len() - 8..]),
    ] {
        let r = e.list(&SessionFilter::default(), Some(&bad), 2);
        assert!(
            matches!(&r, Err(SessionError::InvalidInput(m)) if m.ends_with("is not a cursor returned by list")),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn webhook_urls_are_checked_to_the_port() {
    let config = |url: &str| WebhookConfig {
        url: url.into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_kinds: vec![],
        enabled: true,
    };
    for bad in [
        "http://example.com:99999/",
        "http://example.com:0/",
        "http://example.com:http/",
        "http://example.com:-1/",
        "http://[fe80::1%25lo]:18080/",
        "http://[fe80::1",
        "http://[::1]x/",
        "http://[]/",
        "http://user:pass@example.com/",
        "http://example.com@10.0.0.1/",
        "http://:80/",
        "http://a]b/",
    ] {
        assert!(
            matches!(
                webhook::validate_config(&config(bad)),
                Err(SessionError::InvalidInput(_))
            ),
            "{bad}"
        );
    }
    for good in [
        "http://example.com:65535/",
        "http://example.com:1",
        "https://[::1]:8080/hooks",
        "http://[::ffff:127.0.0.1]:8080/x",
        "http://127.0.0.1:18080/hooks?a=b@c",
        "https://hooks.example.com/path/with@sign",
        "http://example.com:/",
    ] {
        assert!(webhook::validate_config(&config(good)).is_ok(), "{good}");
    }
}

#[test]
fn format_1_exports_of_the_fixture_import() {
    let fixture: Value =
        serde_json::from_str(include_str!("../../tests/fixtures/format-1.expected.json")).unwrap();
    let e = Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(1_795_838_159_633),
    );
    for (name, doc) in fixture["exports"].as_object().unwrap() {
        assert_eq!(doc["schema"], 1);
        let s = e
            .import(doc.clone())
            .unwrap_or_else(|err| panic!("{name}: {err}"));
        // Format 1 counted changes; the version is now the history length.
        let mut doc = doc.clone();
        doc["session"]["version"] = doc["session"]["event_count"].clone();
        assert_eq!(serde_json::to_value(&s).unwrap(), doc["session"], "{name}");
        // Exported again, the format-1 events keep the document at schema 1,
        // and it imports again.
        let again = e.export(&s.id).unwrap();
        assert_eq!(again, doc, "{name}");
        e.delete(&s.id).unwrap();
        e.import(again).unwrap();
    }
}

#[test]
fn documents_are_read_one_event_at_a_time() {
    // 12 MiB of small values where a document has no use for them: skipped
    // unparsed, or refused at the first one.
    let zeros = format!("[{}0]", "0,".repeat(6 << 20));
    let e = engine();
    let m = refused_text(&e, &format!("{{\"a\":{zeros}}}"));
    assert!(m.contains("\"format\" must be"), "{m}");
    let head = r#""format":"agent-session/export","schema":2"#;
    let m = refused_text(&e, &format!("{{{head},\"session\":{zeros}}}"));
    assert!(m.contains("\"session\" is"), "{m}");
    let m = refused_text(
        &e,
        &format!("{{{head},\"session\":{{}},\"events\":{zeros}}}"),
    );
    assert!(m.contains("\"session\":"), "{m}");
    // A real history, then garbage: refused at the first bad event.
    let s = started(&e);
    let mut doc = e.export(&s.id).unwrap();
    doc["events"].as_array_mut().unwrap().push(json!(0));
    e.delete(&s.id).unwrap();
    let m = refused_text(&e, &doc.to_string());
    assert!(m.contains("event 1: invalid type"), "{m}");
    // Not an object at all.
    assert!(refused_text(&e, "[1, 2]").contains("must be a JSON object"));
}

fn refused_text(e: &TestEngine, text: &str) -> String {
    match e.import_text(text) {
        Err(SessionError::InvalidInput(m)) => m,
        other => panic!("expected invalid-input, got {other:?}"),
    }
}

#[test]
fn pretty_printed_exports_of_deeply_nested_values_import() {
    // Each value near its 64 KiB cap when compact, nested 20 deep: pretty
    // printed, every element gets a line indented 40 spaces deeper.
    let mut value = json!(vec![0; 30_000]);
    for _ in 0..20 {
        value = json!([value]);
    }
    let e = engine();
    let s = started(&e);
    e.record_tool_call(
        &s.id,
        ToolCall {
            name: "deep".into(),
            input: value.clone(),
            output: value,
            duration_ms: 1,
        },
    )
    .unwrap();
    let doc = e.export(&s.id).unwrap();
    let pretty = serde_json::to_string_pretty(&doc).unwrap();
    assert!(pretty.len() > 3 << 20, "{} bytes", pretty.len());
    let other = engine();
    other.import_text(&pretty).unwrap();
    assert_eq!(other.export(&s.id).unwrap(), doc);
}
