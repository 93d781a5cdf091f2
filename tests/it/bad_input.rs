//! Bad input through the component and the CLI: typed errors, nonzero exit
//! codes, and nothing outside the root touched.

use agent_session_core::{SessionError, StartOptions};
use agent_session_host::Error;
use serde_json::json;

use crate::common::{cli, host_at, snapshot};

fn code(r: Result<impl std::fmt::Debug, Error>) -> &'static str {
    match r {
        Err(Error::Session(e)) => e.code(),
        other => panic!("expected a session error, got {other:?}"),
    }
}

#[test]
fn api_rejects_bad_input_with_typed_errors_and_touches_nothing_outside() {
    let outer = tempfile::tempdir().unwrap();
    std::fs::write(outer.path().join("sentinel"), b"keep").unwrap();
    std::fs::create_dir(outer.path().join("etc")).unwrap();
    let root = outer.path().join("root");
    let h = host_at(&root);
    let before_outside = || {
        snapshot(outer.path())
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&root))
            .collect::<Vec<_>>()
    };
    let outside = before_outside();

    for id in [
        "../../etc/passwd",
        "../sentinel",
        "..",
        "/etc/passwd",
        "a\0b",
        "",
        &"x".repeat(200),
    ] {
        assert_eq!(code(h.get(id)), "invalid-input", "{id:?}");
        assert_eq!(code(h.iterate(id, None)), "invalid-input", "{id:?}");
        assert_eq!(code(h.delete(id)), "invalid-input", "{id:?}");
        assert_eq!(
            code(h.list(&Default::default(), Some(id), 10)),
            "invalid-input",
            "{id:?}"
        );
    }
    let start = |task: String| {
        h.start(StartOptions {
            task,
            ..Default::default()
        })
    };
    assert_eq!(code(start(String::new())), "invalid-input");
    assert_eq!(code(start("x".repeat(100 * 1024))), "invalid-input");
    let bad_context = h.start(StartOptions {
        task: "t".into(),
        context: Some(json!(["not", "an", "object"])),
        ..Default::default()
    });
    assert_eq!(code(bad_context), "invalid-input");

    let s = start("real".into()).unwrap();
    assert_eq!(code(h.update_context(&s.id, &json!(42))), "invalid-input");
    assert_eq!(code(h.events(&s.id, 0, 0)), "invalid-input");
    assert_eq!(
        code(h.record_event(&s.id, "../x", &json!({}))),
        "invalid-input"
    );
    let mut doc = h.export(&s.id).unwrap();
    doc["session"]["id"] = json!("../../etc/passwd");
    assert_eq!(code(h.import(&doc)), "invalid-input");
    assert_eq!(code(h.import(&json!("junk"))), "invalid-input");
    h.complete(&s.id, None).unwrap();
    assert_eq!(code(h.iterate(&s.id, None)), "invalid-transition");
    assert_eq!(
        code(h.get("01900000-0000-7000-8000-000000000000")),
        "not-found"
    );
    assert!(matches!(
        agent_session_core::SessionStatus::parse("finished"),
        Err(SessionError::InvalidInput(_))
    ));

    assert_eq!(
        before_outside(),
        outside,
        "nothing outside the root changed"
    );
}

#[test]
fn cli_bad_input_exits_nonzero_with_distinct_codes() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("root");
    let big = "x".repeat(100 * 1024);
    let cases: Vec<(Vec<&str>, i32)> = vec![
        (vec!["show", "../../etc/passwd"], 4),
        (vec!["iterate", "../../etc/passwd"], 4),
        (vec!["start", ""], 4),
        (vec!["start", &big], 4),
        (vec!["start", "t", "--context", "[1,2]"], 4),
        (vec!["start", "t", "--context", "{not json"], 4),
        (vec!["list", "--status", "finished"], 4),
        (vec!["list", "--created-after", "yesterday"], 4),
        (
            vec![
                "list",
                "--created-after",
                "2026-02-01",
                "--created-before",
                "2026-01-01",
            ],
            4,
        ),
        (vec!["show", "01900000-0000-7000-8000-000000000000"], 3),
        (
            vec![
                "webhook",
                "set",
                "ftp://x",
                "--secret",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ],
            4,
        ),
        (vec!["bogus-subcommand"], 2),
    ];
    for (args, expected) in cases {
        let out = cli(&root, &args);
        let shown: Vec<_> = args.iter().map(|a| &a[..a.len().min(40)]).collect();
        assert_eq!(
            out.status.code(),
            Some(expected),
            "{shown:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stderr.is_empty(), "{shown:?} explains itself");
    }
    let entries: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(entries, ["root"], "nothing but the root was created");
}
