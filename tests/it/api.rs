//! Every operation of the session API through the component, on the
//! filesystem store: the same scenarios as the core's unit tests.

use agent_session_core::{
    Learning, SessionError, SessionFilter, SessionStatus, StartOptions, ToolCall, WebhookConfig,
};
use agent_session_host::{Error, FsOutbox, Outbox as _};
use serde_json::json;

use crate::common::{host, host_at};

fn opts(task: &str) -> StartOptions {
    StartOptions {
        task: task.into(),
        ..Default::default()
    }
}

fn transition<T: std::fmt::Debug>(r: Result<T, Error>) -> bool {
    matches!(r, Err(Error::Session(SessionError::InvalidTransition(_))))
}

#[test]
fn lifecycle_through_the_component() {
    let (_dir, h) = host();
    let s = h
        .start(StartOptions {
            key: None,
            task: "Implement feature X".into(),
            mode: Some("developer".into()),
            user_id: Some("u1".into()),
            channel_id: Some("c1".into()),
            max_iterations: Some(3),
            context: Some(json!({"repo": "agent-session"})),
        })
        .unwrap();
    assert_eq!(
        (s.status, s.version, s.event_count),
        (SessionStatus::Active, 1, 1)
    );
    assert_eq!(s.context["repo"], "agent-session");

    let p = h.pause(&s.id, Some("approval")).unwrap();
    assert_eq!(p.pause_reason.as_deref(), Some("approval"));
    assert!(transition(h.iterate(&s.id, None)));
    assert!(transition(h.pause(&s.id, None)));
    h.resume(&s.id).unwrap();
    assert!(transition(h.resume(&s.id)));

    h.iterate(&s.id, Some(&json!({"step": 1}))).unwrap();
    assert!((h.progress(&s.id).unwrap() - 100.0 / 3.0).abs() < 1e-9);
    h.iterate(&s.id, None).unwrap();
    let t = h.iterate(&s.id, None).unwrap();
    assert_eq!(t.status, SessionStatus::Timeout);
    assert!(!h.is_resumable(&s.id).unwrap());
    assert!(transition(h.iterate(&s.id, None)));
    assert!(transition(h.complete(&s.id, None)));

    let kinds: Vec<String> = h
        .events(&s.id, 0, 100)
        .unwrap()
        .events
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            "start",
            "pause",
            "resume",
            "iteration",
            "iteration",
            "iteration",
            "timeout"
        ]
    );
}

#[test]
fn complete_fail_and_terminal_states_are_final() {
    let (_dir, h) = host();
    let a = h.start(opts("a")).unwrap();
    let done = h.complete(&a.id, Some(&json!({"pr": 7}))).unwrap();
    assert_eq!(
        (done.status, done.result.clone()),
        (SessionStatus::Completed, Some(json!({"pr": 7})))
    );
    let b = h.start(opts("b")).unwrap();
    h.pause(&b.id, None).unwrap();
    let failed = h.fail(&b.id, "tests broke").unwrap();
    assert_eq!(failed.error.as_deref(), Some("tests broke"));
    for id in [&a.id, &b.id] {
        assert!(transition(h.iterate(id, None)));
        assert!(transition(h.resume(id)));
        assert!(transition(h.pause(id, None)));
        assert!(transition(h.fail(id, "again")));
        assert!(transition(h.complete(id, None)));
        assert!(transition(h.update_context(id, &json!({"x": 1}))));
    }
    assert!(h.duration(&a.id).unwrap() < 60_000);
}

#[test]
fn events_tool_calls_learnings_context() {
    let (_dir, h) = host();
    let s = h.start(opts("t")).unwrap();
    let tc = h
        .record_tool_call(
            &s.id,
            &ToolCall {
                name: "cargo test".into(),
                input: json!({"args": ["--release"]}),
                output: json!({"passed": 12}),
                duration_ms: 1500,
            },
        )
        .unwrap();
    assert_eq!((tc.seq, tc.kind.as_str()), (1, "tool_call"));
    assert_eq!(tc.data["output"]["passed"], 12);
    let l = h
        .record_learning(
            &s.id,
            &Learning {
                insight: "the store needs fsync on the directory".into(),
                expertise_file: Some("docs/storage.md".into()),
            },
        )
        .unwrap();
    assert_eq!(l.kind, "learning");
    let c = h
        .record_event(&s.id, "review.requested", &json!({"by": "ci"}))
        .unwrap();
    assert_eq!(c.seq, 3);

    let u = h
        .update_context(&s.id, &json!({"branch": "main", "n": 1}))
        .unwrap();
    let u = h.update_context(&u.id, &json!({"n": null})).unwrap();
    assert_eq!(
        serde_json::Value::Object(u.context),
        json!({"branch": "main"})
    );

    for i in 0..15 {
        h.iterate(&s.id, Some(&json!({"i": i}))).unwrap();
    }
    let recent = h.recent_events(&s.id).unwrap();
    assert_eq!(recent.len(), 10);
    assert_eq!(recent.last().unwrap().seq, u.event_count + 14);
    let page = h.events(&s.id, 0, 7).unwrap();
    assert_eq!((page.events.len(), page.next_seq), (7, Some(7)));
    let r = h.resumption_context(&s.id).unwrap();
    assert!(r.resumable);
    assert_eq!(r.session.iteration, 15);
    assert_eq!(r.recent_events, recent);
}

#[test]
fn list_stats_cleanup_delete() {
    let (_dir, h) = host();
    let mut ids = Vec::new();
    for i in 0..6 {
        let s = h
            .start(StartOptions {
                task: format!("task {i}"),
                mode: Some(["developer", "chat"][i % 2].into()),
                user_id: Some(format!("u{}", i % 2)),
                max_iterations: Some(5),
                ..Default::default()
            })
            .unwrap();
        ids.push(s.id);
        // Ids are time-ordered to the millisecond.
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    h.complete(&ids[0], None).unwrap();
    h.fail(&ids[1], "x").unwrap();
    h.pause(&ids[2], None).unwrap();
    h.iterate(&ids[3], None).unwrap();

    let all = h.list(&SessionFilter::default(), None, 100).unwrap();
    let listed: Vec<_> = all.sessions.iter().map(|s| s.id.clone()).collect();
    assert_eq!(listed, ids.iter().rev().cloned().collect::<Vec<_>>());

    let u0_active = SessionFilter {
        user_id: Some("u0".into()),
        status: Some(SessionStatus::Active),
        ..Default::default()
    };
    let got: Vec<_> = h.list(&u0_active, None, 100).unwrap().sessions;
    assert_eq!(
        got.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
        [&ids[4]]
    );

    let p1 = h.list(&SessionFilter::default(), None, 4).unwrap();
    let p2 = h
        .list(&SessionFilter::default(), p1.next_cursor.as_deref(), 4)
        .unwrap();
    assert_eq!(
        (p1.sessions.len(), p2.sessions.len(), p2.next_cursor),
        (4, 2, None)
    );

    let st = h.stats(&SessionFilter::default()).unwrap();
    assert_eq!(st.total, 6);
    assert_eq!(st.by_status[&SessionStatus::Active], 3);
    assert_eq!(st.by_mode["chat"], 3);
    assert!((st.success_rate - 0.5).abs() < 1e-9);
    assert!((st.average_iterations - 1.0 / 6.0).abs() < 1e-9);

    let dry = h.cleanup(Some(0), true).unwrap();
    assert_eq!(dry.removed.len(), 2);
    assert_eq!(
        h.list(&SessionFilter::default(), None, 100)
            .unwrap()
            .sessions
            .len(),
        6
    );
    assert!(
        h.cleanup(None, false).unwrap().removed.is_empty(),
        "nothing is 30 days old"
    );
    let removed = h.cleanup(Some(0), false).unwrap().removed;
    assert_eq!(removed.len(), 2);
    assert!(h.get(&ids[0]).is_err() && h.get(&ids[1]).is_err());
    assert!(
        h.get(&ids[2]).is_ok(),
        "paused sessions are never cleaned up"
    );

    h.delete(&ids[5]).unwrap();
    assert!(matches!(
        h.get(&ids[5]),
        Err(Error::Session(SessionError::NotFound(_)))
    ));
}

#[test]
fn export_import_into_another_root() {
    let (_a, h) = host();
    let s = h.start(opts("portable")).unwrap();
    h.iterate(&s.id, Some(&json!({"n": 1}))).unwrap();
    h.pause(&s.id, Some("moving hosts")).unwrap();
    let doc = h.export(&s.id).unwrap();
    assert_eq!(doc["format"], "agent-session/export");

    let (_b, other) = host();
    let imported = other.import(&doc).unwrap();
    assert_eq!(
        (imported.id.as_str(), imported.status),
        (s.id.as_str(), SessionStatus::Paused)
    );
    assert_eq!(
        other.events(&s.id, 0, 100).unwrap(),
        h.events(&s.id, 0, 100).unwrap()
    );
    other.resume(&s.id).unwrap();
    assert_eq!(other.iterate(&s.id, None).unwrap().iteration, 2);
    assert!(matches!(
        other.import(&doc),
        Err(Error::Session(SessionError::Conflict(_)))
    ));
}

#[test]
fn webhook_configuration_and_outbox() {
    let (dir, h) = host();
    assert_eq!(h.get_webhook().unwrap(), None);
    let config = WebhookConfig {
        url: "https://hooks.example.test/agent".into(),
        secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
        event_kinds: vec!["session.started".into(), "session.completed".into()],
        enabled: true,
    };
    h.set_webhook(&config).unwrap();
    assert_eq!(h.get_webhook().unwrap(), Some(config));
    let s = h.start(opts("notify me")).unwrap();
    h.iterate(&s.id, None).unwrap();
    h.pause(&s.id, None).unwrap();
    h.complete(&s.id, None).unwrap();

    let pending = FsOutbox::open(dir.path()).unwrap().pending().unwrap();
    let queued: Vec<_> = pending.iter().map(|d| &d.notification).collect();
    let kinds: Vec<_> = queued.iter().map(|n| n.kind.as_str()).collect();
    assert_eq!(kinds, ["session.started", "session.completed"]);
    let body: serde_json::Value = serde_json::from_str(&queued[1].body).unwrap();
    assert_eq!(body["data"]["session"]["id"], s.id.as_str());
    assert_eq!(
        (queued[1].session_id.as_str(), queued[1].seq),
        (s.id.as_str(), 3)
    );
    assert_ne!(queued[0].id, queued[1].id);

    h.clear_webhook().unwrap();
    assert_eq!(h.get_webhook().unwrap(), None);
}

#[test]
fn two_hosts_on_one_root_share_sessions_and_conflicts_are_typed() {
    let (dir, h) = host();
    let other = host_at(dir.path());
    let s = h
        .start(StartOptions {
            max_iterations: Some(1000),
            ..opts("shared")
        })
        .unwrap();
    other.pause(&s.id, None).unwrap();
    assert_eq!(h.get(&s.id).unwrap().status, SessionStatus::Paused);
    h.resume(&s.id).unwrap();

    // Racing writers: every iterate either lands or fails with conflict,
    // and the count of landed ones is exactly the final iteration.
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let host = if i % 2 == 0 { h.clone() } else { other.clone() };
            let id = s.id.clone();
            std::thread::spawn(move || {
                let mut ok = 0;
                for _ in 0..20 {
                    match host.iterate(&id, None) {
                        Ok(_) => ok += 1,
                        Err(Error::Session(SessionError::Conflict(_))) => {}
                        Err(e) => panic!("unexpected {e}"),
                    }
                }
                ok
            })
        })
        .collect();
    let landed: u32 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let s = h.get(&s.id).unwrap();
    assert_eq!(s.iteration, landed);
    let events = h.events(&s.id, 0, 1000).unwrap().events;
    let iterations = events.iter().filter(|e| e.kind == "iteration").count();
    assert_eq!(iterations as u32, landed);
    assert_eq!(events.len() as u64, s.event_count);
    assert!(events.iter().enumerate().all(|(i, e)| e.seq == i as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usable_from_async_code() {
    let (_dir, h) = host();
    let s = h.run(|h| h.start(opts("async"))).await.unwrap();
    let id = s.id.clone();
    let s = h.run(move |h| h.iterate(&id, None)).await.unwrap();
    assert_eq!(s.iteration, 1);
}
