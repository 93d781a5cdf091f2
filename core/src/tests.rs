//! Unit tests of every engine operation against the in-memory store.

use serde_json::json;

use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
use crate::*;

type TestEngine = Engine<MemoryStore, MemoryOutbox, ManualEnvironment>;

const T0: u64 = 1_700_000_000_000;
const DAY: u64 = 86_400_000;

fn engine() -> TestEngine {
    Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        ManualEnvironment::at(T0),
    )
}

fn start(e: &TestEngine, task: &str) -> Session {
    e.start(StartOptions {
        task: task.into(),
        ..Default::default()
    })
    .unwrap()
}

fn kinds(e: &TestEngine, id: &str) -> Vec<String> {
    e.events(id, 0, 1000)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn is_transition(r: Result<impl std::fmt::Debug, SessionError>) -> bool {
    matches!(r, Err(SessionError::InvalidTransition(_)))
}

fn is_input(r: Result<impl std::fmt::Debug, SessionError>) -> bool {
    matches!(r, Err(SessionError::InvalidInput(_)))
}

#[test]
fn start_sets_defaults_and_records_start_event() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "Implement feature X".into(),
            user_id: Some("u1".into()),
            context: Some(json!({"repo": "x"})),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(s.status, SessionStatus::Active);
    assert_eq!(s.mode, DEFAULT_MODE);
    assert_eq!(s.max_iterations, DEFAULT_MAX_ITERATIONS);
    assert_eq!(s.context["repo"], "x");
    assert_eq!((s.version, s.event_count, s.created_at), (1, 1, T0));
    assert_eq!(uuid::Uuid::parse_str(&s.id).unwrap().get_version_num(), 7);
    assert_eq!(e.get(&s.id).unwrap(), s);
    let ev = &e.events(&s.id, 0, 10).unwrap().events[0];
    assert_eq!((ev.seq, ev.kind.as_str()), (0, "start"));
    assert_eq!(ev.data["task"], "Implement feature X");
}

#[test]
fn iterations_reach_the_bound_and_time_out() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "t".into(),
            max_iterations: Some(3),
            ..Default::default()
        })
        .unwrap();
    let s1 = e.iterate(&s.id, Some(json!({"step": 1}))).unwrap();
    assert_eq!((s1.iteration, s1.status), (1, SessionStatus::Active));
    assert!((s1.progress() - 100.0 / 3.0).abs() < 1e-9);
    e.iterate(&s.id, None).unwrap();
    let s3 = e.iterate(&s.id, None).unwrap();
    assert_eq!((s3.iteration, s3.status), (3, SessionStatus::Timeout));
    assert!(s3.ended_at.is_some());
    assert_eq!(e.progress(&s.id).unwrap(), 100.0);
    assert!(!e.is_resumable(&s.id).unwrap());
    assert_eq!(
        kinds(&e, &s.id),
        ["start", "iteration", "iteration", "iteration", "timeout"]
    );
    assert!(is_transition(e.iterate(&s.id, None)));
}

#[test]
fn pause_resume_complete() {
    let e = engine();
    let s = start(&e, "t");
    let p = e.pause(&s.id, Some("waiting for approval".into())).unwrap();
    assert_eq!(p.status, SessionStatus::Paused);
    assert_eq!(p.pause_reason.as_deref(), Some("waiting for approval"));
    assert!(e.is_resumable(&s.id).unwrap());
    let r = e.resume(&s.id).unwrap();
    assert_eq!((r.status, r.pause_reason), (SessionStatus::Active, None));
    let c = e.complete(&s.id, Some(json!({"pr": 42}))).unwrap();
    assert_eq!(c.status, SessionStatus::Completed);
    assert_eq!(c.result, Some(json!({"pr": 42})));
    assert_eq!(kinds(&e, &s.id), ["start", "pause", "resume", "complete"]);
}

#[test]
fn complete_and_fail_from_paused() {
    let e = engine();
    let a = start(&e, "a");
    e.pause(&a.id, None).unwrap();
    assert_eq!(
        e.complete(&a.id, None).unwrap().status,
        SessionStatus::Completed
    );
    let b = start(&e, "b");
    e.pause(&b.id, None).unwrap();
    let f = e.fail(&b.id, "boom".into()).unwrap();
    assert_eq!(
        (f.status, f.error.as_deref()),
        (SessionStatus::Failed, Some("boom"))
    );
}

#[test]
fn every_invalid_transition_is_a_typed_error() {
    let e = engine();
    let active = start(&e, "active");
    assert!(is_transition(e.resume(&active.id)));

    let paused = start(&e, "paused");
    e.pause(&paused.id, None).unwrap();
    assert!(is_transition(e.pause(&paused.id, None)));
    assert!(is_transition(e.iterate(&paused.id, None)));
    assert!(is_transition(e.record_tool_call(
        &paused.id,
        ToolCall {
            name: "x".into(),
            input: json!(null),
            output: json!(null),
            duration_ms: 1
        }
    )));

    for end in ["completed", "failed", "timeout"] {
        let s = start(&e, end);
        match end {
            "completed" => drop(e.complete(&s.id, None).unwrap()),
            "failed" => drop(e.fail(&s.id, "x".into()).unwrap()),
            _ => {
                let t = e
                    .start(StartOptions {
                        task: "t".into(),
                        max_iterations: Some(1),
                        ..Default::default()
                    })
                    .unwrap();
                e.iterate(&t.id, None).unwrap();
                e.delete(&s.id).unwrap();
                check_terminal(&e, &t.id);
                continue;
            }
        }
        check_terminal(&e, &s.id);
    }
}

fn check_terminal(e: &TestEngine, id: &str) {
    let before = e.get(id).unwrap();
    assert!(is_transition(e.pause(id, None)));
    assert!(is_transition(e.resume(id)));
    assert!(is_transition(e.complete(id, None)));
    assert!(is_transition(e.fail(id, "x".into())));
    assert!(is_transition(e.iterate(id, None)));
    assert!(is_transition(e.update_context(id, json!({"a": 1}))));
    assert!(is_transition(e.record_learning(
        id,
        Learning {
            insight: "x".into(),
            expertise_file: None
        }
    )));
    assert!(is_transition(e.record_event(id, "custom", json!({}))));
    assert_eq!(
        e.get(id).unwrap(),
        before,
        "a refused operation changed nothing"
    );
}

#[test]
fn tool_calls_learnings_and_custom_events() {
    let e = engine();
    let s = start(&e, "t");
    let tc = e
        .record_tool_call(
            &s.id,
            ToolCall {
                name: "grep".into(),
                input: json!({"q": "fn"}),
                output: json!(["a.rs"]),
                duration_ms: 12,
            },
        )
        .unwrap();
    assert_eq!((tc.seq, tc.kind.as_str()), (1, "tool_call"));
    assert_eq!(tc.data["duration_ms"], 12);
    e.pause(&s.id, None).unwrap();
    let l = e
        .record_learning(
            &s.id,
            Learning {
                insight: "tests live in tests/".into(),
                expertise_file: Some("EXPERTISE.md".into()),
            },
        )
        .unwrap();
    assert_eq!((l.seq, l.kind.as_str()), (3, "learning"));
    let c = e
        .record_event(&s.id, "deploy.started", json!({"env": "staging"}))
        .unwrap();
    assert_eq!(c.seq, 4);
    assert!(is_input(e.record_event(&s.id, "start", json!({}))));
    assert!(is_input(e.record_event(&s.id, "Bad Kind", json!({}))));
}

#[test]
fn context_merges_and_removes_keys() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "t".into(),
            context: Some(json!({"a": 1, "b": 2})),
            ..Default::default()
        })
        .unwrap();
    let u = e
        .update_context(&s.id, json!({"b": null, "c": {"d": 3}}))
        .unwrap();
    assert_eq!(
        serde_json::Value::Object(u.context),
        json!({"a": 1, "c": {"d": 3}})
    );
    assert!(is_input(e.update_context(&s.id, json!([1, 2]))));
    assert!(is_input(e.update_context(&s.id, json!("x"))));
    let big = "x".repeat(40_000);
    e.update_context(&s.id, json!({ "big1": big })).unwrap();
    assert!(matches!(
        e.update_context(&s.id, json!({ "big2": big })),
        Err(SessionError::LimitExceeded(_))
    ));
}

#[test]
fn recent_history_and_paged_events() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "t".into(),
            max_iterations: Some(50),
            ..Default::default()
        })
        .unwrap();
    for _ in 0..24 {
        e.iterate(&s.id, None).unwrap();
    }
    let recent = e.recent_events(&s.id).unwrap();
    assert_eq!(recent.len(), 10);
    assert_eq!((recent[0].seq, recent[9].seq), (15, 24));
    let p1 = e.events(&s.id, 0, 10).unwrap();
    assert_eq!((p1.events.len(), p1.next_seq), (10, Some(10)));
    let p3 = e.events(&s.id, 20, 10).unwrap();
    assert_eq!((p3.events.len(), p3.next_seq), (5, None));
    assert!(e.events(&s.id, 100, 10).unwrap().events.is_empty());
    assert!(is_input(e.events(&s.id, 0, 0)));
    let r = e.resumption_context(&s.id).unwrap();
    assert!(r.resumable);
    assert_eq!(r.session.iteration, 24);
    assert_eq!(r.recent_events, recent);
}

#[test]
fn list_filters_and_paginates_newest_first() {
    let e = engine();
    let mut ids = Vec::new();
    for i in 0..7 {
        let s = e
            .start(StartOptions {
                task: format!("t{i}"),
                mode: Some(if i % 2 == 0 { "developer" } else { "chat" }.into()),
                user_id: Some(format!("u{}", i % 3)),
                channel_id: Some("c1".into()),
                ..Default::default()
            })
            .unwrap();
        ids.push(s.id);
        e.env().advance(1000);
    }
    e.pause(&ids[0], None).unwrap();
    let all = e.list(&SessionFilter::default(), None, 100).unwrap();
    let listed: Vec<_> = all.sessions.iter().map(|s| s.id.clone()).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    assert_eq!(all.next_cursor, None);

    let dev = SessionFilter {
        mode: Some("developer".into()),
        ..Default::default()
    };
    let p1 = e.list(&dev, None, 2).unwrap();
    assert_eq!(p1.sessions.len(), 2);
    let p2 = e.list(&dev, p1.next_cursor.as_deref(), 2).unwrap();
    assert_eq!(p2.sessions.len(), 2);
    assert_eq!(
        p2.next_cursor, None,
        "4 developer sessions fill exactly two pages"
    );
    assert!(
        p1.sessions
            .iter()
            .chain(&p2.sessions)
            .all(|s| s.mode == "developer")
    );

    let u0_active = SessionFilter {
        user_id: Some("u0".into()),
        status: Some(SessionStatus::Active),
        ..Default::default()
    };
    let got = e.list(&u0_active, None, 100).unwrap().sessions;
    assert_eq!(
        got.iter().map(|s| &s.id).collect::<Vec<_>>(),
        [&ids[6], &ids[3]]
    );

    let paused = e
        .list(&SessionFilter::status(SessionStatus::Paused), None, 10)
        .unwrap();
    assert_eq!(paused.sessions.len(), 1);

    let window = SessionFilter {
        created_after: Some(T0 + 2000),
        created_before: Some(T0 + 4000),
        ..Default::default()
    };
    assert_eq!(e.list(&window, None, 100).unwrap().sessions.len(), 3);
    let inverted = SessionFilter {
        created_after: Some(T0 + 4000),
        created_before: Some(T0),
        ..Default::default()
    };
    assert!(is_input(e.list(&inverted, None, 10)));
    assert!(is_input(e.list(
        &SessionFilter::default(),
        Some("../x"),
        10
    )));
    assert!(is_input(e.list(&SessionFilter::default(), None, 5000)));
}

#[test]
fn stats_count_status_mode_iterations_and_success() {
    let e = engine();
    let mk = |mode: &str| {
        e.start(StartOptions {
            task: "t".into(),
            mode: Some(mode.into()),
            max_iterations: Some(2),
            ..Default::default()
        })
        .unwrap()
    };
    let a = mk("developer");
    e.iterate(&a.id, None).unwrap();
    e.complete(&a.id, None).unwrap();
    let b = mk("developer");
    e.fail(&b.id, "x".into()).unwrap();
    let c = mk("chat");
    e.iterate(&c.id, None).unwrap();
    e.iterate(&c.id, None).unwrap(); // timeout
    let _d = mk("chat");
    let st = e.stats(&SessionFilter::default()).unwrap();
    assert_eq!(st.total, 4);
    assert_eq!(st.by_status[&SessionStatus::Completed], 1);
    assert_eq!(st.by_status[&SessionStatus::Failed], 1);
    assert_eq!(st.by_status[&SessionStatus::Timeout], 1);
    assert_eq!(st.by_status[&SessionStatus::Active], 1);
    assert_eq!(st.by_status[&SessionStatus::Paused], 0);
    assert_eq!((st.by_mode["developer"], st.by_mode["chat"]), (2, 2));
    assert!((st.average_iterations - 0.75).abs() < 1e-9);
    assert!((st.success_rate - 1.0 / 3.0).abs() < 1e-9);
    let empty = engine().stats(&SessionFilter::default()).unwrap();
    assert_eq!(
        (empty.total, empty.success_rate, empty.average_iterations),
        (0, 0.0, 0.0)
    );
}

#[test]
fn cleanup_keeps_live_sessions_and_supports_dry_run() {
    let e = engine();
    let old_done = start(&e, "old done");
    e.complete(&old_done.id, None).unwrap();
    let old_active = start(&e, "old active");
    let old_paused = start(&e, "old paused");
    e.pause(&old_paused.id, None).unwrap();
    e.env().advance(31 * DAY);
    let new_failed = start(&e, "new failed");
    e.fail(&new_failed.id, "x".into()).unwrap();

    let dry = e.cleanup(None, true).unwrap();
    assert_eq!(
        (dry.dry_run, dry.removed.clone()),
        (true, vec![old_done.id.clone()])
    );
    assert!(e.get(&old_done.id).is_ok(), "dry run removes nothing");

    let real = e.cleanup(None, false).unwrap();
    assert_eq!(real.removed, vec![old_done.id.clone()]);
    assert!(matches!(
        e.get(&old_done.id),
        Err(SessionError::NotFound(_))
    ));
    assert!(e.events(&old_done.id, 0, 10).is_err());
    for id in [&old_active.id, &old_paused.id, &new_failed.id] {
        assert!(e.get(id).is_ok());
    }
    assert_eq!(
        e.cleanup(Some(0), false).unwrap().removed,
        vec![new_failed.id]
    );
    assert!(is_input(e.cleanup(Some(100_000), true)));
}

#[test]
fn delete_export_import_round_trip() {
    let e = engine();
    let s = start(&e, "t");
    e.iterate(&s.id, Some(json!({"n": 1}))).unwrap();
    e.pause(&s.id, Some("later".into())).unwrap();
    let doc = e.export(&s.id).unwrap();
    assert!(matches!(
        e.import(doc.clone()),
        Err(SessionError::Conflict(_))
    ));

    let other = engine();
    let imported = other.import(doc.clone()).unwrap();
    let original = e.get(&s.id).unwrap();
    assert_eq!(imported.id, original.id);
    assert_eq!(imported.status, SessionStatus::Paused);
    assert_eq!(
        other.events(&s.id, 0, 100).unwrap().events,
        e.events(&s.id, 0, 100).unwrap().events
    );
    other.resume(&s.id).unwrap();
    assert_eq!(other.iterate(&s.id, None).unwrap().iteration, 2);

    e.delete(&s.id).unwrap();
    assert!(matches!(e.get(&s.id), Err(SessionError::NotFound(_))));
    assert!(matches!(e.delete(&s.id), Err(SessionError::NotFound(_))));

    let mut broken = doc.clone();
    broken["events"].as_array_mut().unwrap().pop();
    assert!(is_input(engine().import(broken)));
    let mut bad_id = doc.clone();
    bad_id["session"]["id"] = json!("../../etc/passwd");
    assert!(is_input(engine().import(bad_id)));
    assert!(is_input(engine().import(json!({"format": "other"}))));
    assert!(is_input(engine().import(json!([1]))));
}

#[test]
fn stale_writes_conflict() {
    let e = engine();
    let s = start(&e, "t");
    // A writer that read the session at version 1 appends after another
    // writer already did: the store refuses the stale position.
    e.iterate(&s.id, None).unwrap();
    let stale = e
        .store()
        .append(SESSIONS, &s.id, s.version, &[b"x".to_vec()], b"{}");
    assert!(matches!(stale, Err(StoreError::Conflict(_))));
    let now = e.get(&s.id).unwrap();
    assert_eq!((now.iteration, now.version), (1, 2));
}

#[test]
fn snapshots_bound_replay_and_match_the_history() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "long".into(),
            max_iterations: Some(1000),
            context: Some(json!({"a": 1})),
            ..Default::default()
        })
        .unwrap();
    for i in 0..150 {
        e.iterate(&s.id, Some(json!({ "i": i }))).unwrap();
        if i == 70 {
            e.update_context(&s.id, json!({"b": 2, "a": null})).unwrap();
        }
    }
    let snap = e
        .store()
        .get(SESSIONS, &s.id)
        .unwrap()
        .expect("a snapshot was written");
    let snapped: Session = codec::decode("snapshot", &snap.data).unwrap();
    assert!(snapped.event_count >= SNAPSHOT_EVERY);
    let loaded = e.get(&s.id).unwrap();
    let all = e.events(&s.id, 0, 1000).unwrap().events;
    assert_eq!(replay(&s.id, &all).unwrap().unwrap(), loaded);
    assert_eq!(loaded.iteration, 150);
    assert_eq!(serde_json::Value::Object(loaded.context), json!({"b": 2}));
}

#[test]
fn bad_input_is_rejected_before_storage() {
    let e = engine();
    for id in [
        "../../etc/passwd",
        "",
        "a/b",
        "a\0b",
        &"x".repeat(65),
        "..",
        "a.b",
    ] {
        assert!(is_input(e.get(id)), "{id:?}");
        assert!(is_input(e.iterate(id, None)), "{id:?}");
    }
    assert!(matches!(
        e.get("0190aaaa-bbbb-7ccc-8ddd-eeeeeeeeeeee"),
        Err(SessionError::NotFound(_))
    ));
    let opts = |task: String| StartOptions {
        task,
        ..Default::default()
    };
    assert!(is_input(e.start(opts(String::new()))));
    assert!(is_input(e.start(opts("   ".into()))));
    assert!(is_input(e.start(opts("x".repeat(100 * 1024)))));
    assert!(is_input(e.start(StartOptions {
        context: Some(json!([1])),
        ..opts("t".into())
    })));
    assert!(is_input(e.start(StartOptions {
        max_iterations: Some(0),
        ..opts("t".into())
    })));
    assert!(is_input(e.start(StartOptions {
        mode: Some("a\nb".into()),
        ..opts("t".into())
    })));
    assert!(is_input(SessionStatus::parse("finished")));
    assert_eq!(
        SessionStatus::parse("paused").unwrap(),
        SessionStatus::Paused
    );
    assert!(
        e.list(&SessionFilter::default(), None, 10)
            .unwrap()
            .sessions
            .is_empty()
    );
}

#[test]
fn webhooks_notify_lifecycle_events_with_filters() {
    let e = engine();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string();
    let s = start(&e, "before webhook");
    assert!(e.store().get(CONFIG, WEBHOOK_KEY).unwrap().is_none());
    assert!(
        e.notifier_queued().is_empty(),
        "no endpoint, no notification"
    );

    e.set_webhook(WebhookConfig {
        url: "https://example.test/hook".into(),
        secret: secret.clone(),
        event_kinds: vec![],
        enabled: true,
    })
    .unwrap();
    assert_eq!(e.get_webhook().unwrap().unwrap().secret, secret);
    e.iterate(&s.id, None).unwrap();
    e.pause(&s.id, None).unwrap();
    e.resume(&s.id).unwrap();
    e.complete(&s.id, Some(json!("done"))).unwrap();
    let kinds: Vec<_> = e.notifier_queued().into_iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        ["session.paused", "session.resumed", "session.completed"]
    );
    let n = &e.notifier_queued()[2];
    let body: serde_json::Value = serde_json::from_str(&n.body).unwrap();
    assert_eq!(body["type"], "session.completed");
    assert_eq!(body["data"]["session"]["id"], s.id.as_str());
    assert_eq!(body["data"]["session"]["status"], "completed");
    assert_eq!(body["data"]["event"]["data"]["result"], "done");
    assert!(n.id.starts_with("msg_"));

    e.set_webhook(WebhookConfig {
        url: "http://example.test/hook".into(),
        secret: secret.clone(),
        event_kinds: vec!["session.failed".into()],
        enabled: true,
    })
    .unwrap();
    let t = start(&e, "filtered");
    e.fail(&t.id, "x".into()).unwrap();
    let last: Vec<_> = e
        .notifier_queued()
        .into_iter()
        .skip(3)
        .map(|n| n.kind)
        .collect();
    assert_eq!(last, ["session.failed"]);

    let bad = |url: &str, secret: &str, kinds: Vec<String>| {
        e.set_webhook(WebhookConfig {
            url: url.into(),
            secret: secret.into(),
            event_kinds: kinds,
            enabled: true,
        })
    };
    assert!(is_input(bad("ftp://x", &secret, vec![])));
    assert!(is_input(bad("https://", &secret, vec![])));
    assert!(is_input(bad("https://x", "secret", vec![])));
    assert!(
        is_input(bad("https://x", "whsec_abcdefghijklmnopq", vec![])),
        "not base64: it could never sign"
    );
    assert!(is_input(bad(
        "https://x",
        &secret,
        vec!["session.exploded".into()]
    )));
    e.clear_webhook().unwrap();
    assert_eq!(e.get_webhook().unwrap(), None);
}

#[test]
fn notifications_name_their_event_and_a_failed_enqueue_changes_nothing() {
    let e = engine();
    let hook = WebhookConfig {
        url: "https://example.test/hook".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_kinds: vec![],
        enabled: true,
    };
    e.set_webhook(hook.clone()).unwrap();
    let s = start(&e, "described");
    e.pause(&s.id, None).unwrap();
    let history = e.events(&s.id, 0, 10).unwrap().events;
    let queued = e.notifier_queued();
    assert_eq!(queued.len(), 2);
    for n in &queued {
        assert_eq!(n.session_id, s.id);
        assert!(webhook::describes(n, &history[n.seq as usize]));
    }
    // A notification is not taken for another event at its position (a
    // writer that lost the append race), nor for an event elsewhere.
    assert!(!webhook::describes(&queued[1], &history[0]));
    let mut raced = history[1].clone();
    raced.data = json!({"reason": "someone else"});
    assert!(!webhook::describes(&queued[1], &raced));

    /// Accepts notifications until told to refuse them.
    #[derive(Default)]
    struct Refusing(std::sync::atomic::AtomicBool);
    impl Notifier for Refusing {
        fn enqueue(&self, _: &Notification) -> Result<(), String> {
            match self.0.load(std::sync::atomic::Ordering::Relaxed) {
                true => Err("outbox full".into()),
                false => Ok(()),
            }
        }
    }
    let e = Engine::new(
        MemoryStore::new(),
        Refusing::default(),
        ManualEnvironment::at(T0),
    );
    e.set_webhook(hook).unwrap();
    let s = e
        .start(StartOptions {
            task: "refused".into(),
            ..Default::default()
        })
        .unwrap();
    e.pause(&s.id, None).unwrap();
    e.notifier()
        .0
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let r = e.resume(&s.id);
    assert!(
        matches!(&r, Err(SessionError::Storage(m)) if m.contains("not changed")),
        "{r:?}"
    );
    assert_eq!(e.get(&s.id).unwrap().status, SessionStatus::Paused);
    e.iterate(&s.id, None)
        .expect_err("a paused session cannot iterate");
}

#[test]
fn duration_runs_until_the_end() {
    let e = engine();
    let s = start(&e, "t");
    e.env().advance(5000);
    assert_eq!(e.duration(&s.id).unwrap(), 5000);
    e.complete(&s.id, None).unwrap();
    e.env().advance(5000);
    assert_eq!(e.duration(&s.id).unwrap(), 5000);
}

#[test]
fn damaged_or_future_records_are_storage_errors_naming_the_session() {
    let e = engine();
    let s = start(&e, "t");
    e.store()
        .append(SESSIONS, &s.id, 1, &[b"{not json".to_vec()], b"{}")
        .unwrap();
    match e.get(&s.id) {
        Err(SessionError::Storage(m)) => assert!(m.contains(&s.id), "{m}"),
        other => panic!("{other:?}"),
    }
    // A snapshot this build cannot read is only a lost shortcut...
    let t = start(&e, "u");
    e.store()
        .put(SESSIONS, &t.id, br#"{"schema":99}"#, 0, true)
        .unwrap();
    assert_eq!(e.get(&t.id).unwrap().task, "u");
    // ...but a history record from the future is an error.
    e.store()
        .append(SESSIONS, &t.id, 1, &[br#"{"schema":99}"#.to_vec()], b"{}")
        .unwrap();
    match e.get(&t.id) {
        Err(SessionError::Storage(m)) => assert!(m.contains("schema version 99"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Other sessions keep working.
    let u = start(&e, "fine");
    assert!(e.iterate(&u.id, None).is_ok());
}

#[test]
fn the_index_can_be_rebuilt_from_the_histories() {
    let e = engine();
    let a = start(&e, "a");
    let b = start(&e, "b");
    e.complete(&b.id, None).unwrap();
    // Damage the index: a stale summary for b.
    let stale = codec::encode_summary(&e.get(&a.id).unwrap().summary());
    e.store().reindex(SESSIONS, &b.id, &stale).unwrap();
    assert_eq!(
        e.stats(&SessionFilter::default()).unwrap().by_status[&SessionStatus::Completed],
        0
    );
    let dry = e.reindex(true).unwrap();
    assert_eq!((dry.sessions, dry.stale.clone()), (2, vec![b.id.clone()]));
    assert_eq!(
        e.stats(&SessionFilter::default()).unwrap().by_status[&SessionStatus::Completed],
        0
    );
    let report = e.reindex(false).unwrap();
    assert_eq!(
        (report.stale, report.unreadable.len()),
        (vec![b.id.clone()], 0)
    );
    assert!(e.reindex(true).unwrap().stale.is_empty());
    assert_eq!(
        e.stats(&SessionFilter::default()).unwrap().by_status[&SessionStatus::Completed],
        1
    );
}

impl TestEngine {
    fn notifier_queued(&self) -> Vec<Notification> {
        self.notifier().queued()
    }
}

#[test]
fn summaries_round_trip_and_damage_is_an_error() {
    let e = engine();
    let s = e
        .start(StartOptions {
            task: "t".into(),
            mode: Some("développeur".into()),
            user_id: Some("u1".into()),
            ..Default::default()
        })
        .unwrap();
    let s = e.complete(&s.id, None).unwrap();
    let bytes = codec::encode_summary(&s.summary());
    assert_eq!(codec::decode_summary("x", &bytes).unwrap(), s.summary());
    assert!(codec::decode_summary("x", &bytes[..bytes.len() - 1]).is_err());
    assert!(codec::decode_summary("x", b"{}").is_err());
}

#[test]
fn a_snapshot_ahead_of_its_history_is_ignored() {
    let e = engine();
    let s = start(&e, "t");
    e.iterate(&s.id, None).unwrap();
    let mut ahead = e.get(&s.id).unwrap();
    ahead.event_count = 100;
    ahead.iteration = 50;
    e.store()
        .put(SESSIONS, &s.id, &codec::encode(&ahead).unwrap(), 0, true)
        .unwrap();
    let now = e.get(&s.id).unwrap();
    assert_eq!((now.event_count, now.iteration), (2, 1));
    assert_eq!(e.iterate(&s.id, None).unwrap().iteration, 2);
    // A late snapshot never brings a removed session back.
    e.delete(&s.id).unwrap();
    let late = e.store().put(SESSIONS, &s.id, b"{}", 0, false);
    assert!(matches!(late, Err(StoreError::Conflict(_))));
    assert!(matches!(e.get(&s.id), Err(SessionError::NotFound(_))));
}

/// Random bits that only go down, at one fixed time: ids made from them
/// alone would list oldest first.
struct Descending(std::sync::atomic::AtomicU8);

impl Environment for Descending {
    fn now_ms(&self) -> u64 {
        T0
    }
    fn fill_random(&self, buf: &mut [u8]) {
        let n = self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        buf.fill(n);
    }
}

#[test]
fn sessions_of_one_millisecond_list_newest_first() {
    let e = Engine::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        Descending(255.into()),
    );
    let started: Vec<String> = (0..20)
        .map(|i| {
            e.start(StartOptions {
                task: format!("task {i}"),
                ..Default::default()
            })
            .unwrap()
            .id
        })
        .collect();
    let listed: Vec<String> = e
        .list(&SessionFilter::default(), None, 100)
        .unwrap()
        .sessions
        .into_iter()
        .map(|s| s.id)
        .collect();
    let newest_first: Vec<String> = started.iter().rev().cloned().collect();
    assert_eq!(listed, newest_first);
    for id in &started {
        let u = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(u.get_version_num(), 7, "{id}");
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122, "{id}");
        let (secs, _) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, T0 / 1000, "{id} keeps its millisecond");
    }
}

#[test]
fn imported_ids_of_other_shapes_do_not_drag_new_ids_along() {
    let e = engine();
    let original = start(&e, "exported");
    let doc = e.export(&original.id).unwrap();
    e.delete(&original.id).unwrap();
    // The same history under ids that sort above every UUID v7 of today:
    // a UUID v4, the largest UUID, and a name.
    // A v7 id an hour ahead (another host's clock far off) is not followed
    // either.
    let ahead = uuid::Builder::from_unix_timestamp_millis(T0 + 3_600_000, &[7; 10]).into_uuid();
    for id in [
        "f47ac10b-58cc-4372-a567-0e02b2c3d479".to_owned(),
        "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
        "zz-legacy".to_owned(),
        ahead.to_string(),
    ] {
        let mut doc = doc.clone();
        doc["session"]["id"] = json!(id);
        e.import(doc).unwrap();
        let s = start(&e, "after the import");
        let u = uuid::Uuid::parse_str(&s.id).unwrap();
        assert_eq!(u.get_version_num(), 7);
        let (secs, _) = u.get_timestamp().unwrap().to_unix();
        assert_eq!(
            secs,
            T0 / 1000,
            "{} (after {id}) keeps this clock's time",
            s.id
        );
        e.delete(&id).unwrap();
        e.delete(&s.id).unwrap();
    }
}
