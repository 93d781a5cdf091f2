//! The PostgreSQL store against a real server on 127.0.0.1 (started by
//! `scripts/test.sh`): the store contract where it differs from a map, and
//! the schema's versioning. The whole session API on it is checked by the
//! conformance suite (`conformance::component_on_postgres`).

use std::sync::{Arc, Barrier};

use agent_session_core::{SessionRef, Store, StoreError};
use agent_session_host::{Outbox as _, PG_SCHEMA_VERSION, PgStore};

use crate::common::{fresh_database, fresh_database_with};

fn conflict<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    matches!(r, Err(StoreError::Conflict(_)))
}

#[test]
fn positions_are_enforced_by_the_database() {
    let store = PgStore::connect(&fresh_database("pg_positions")).unwrap();
    let rec = |s: &str| s.as_bytes().to_vec();
    store
        .append("sessions", "k", 0, &[rec("a"), rec("b")], b"s2")
        .unwrap();
    assert!(conflict(store.append("sessions", "k", 0, &[rec("x")], b"")));
    assert!(conflict(store.append("sessions", "k", 1, &[rec("x")], b"")));
    assert!(conflict(store.append("sessions", "k", 3, &[rec("x")], b"")));
    assert!(conflict(store.append(
        "sessions",
        "new",
        1,
        &[rec("x")],
        b""
    )));
    store
        .append("sessions", "k", 2, &[rec("c")], b"s3")
        .unwrap();
    assert_eq!(
        store.read("sessions", "k", 1, 10).unwrap(),
        [rec("b"), rec("c")]
    );
    assert_eq!(store.read("sessions", "k", 0, 1).unwrap(), [rec("a")]);
    assert!(store.read("sessions", "absent", 0, 10).unwrap().is_empty());
    let index = store.scan("sessions", None, 10).unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index[0].summary, b"s3");

    // Only a key with a history is indexed: a summary for a session
    // removed meanwhile does not bring it back.
    assert!(conflict(store.reindex("sessions", "ghost", b"s")));
    store.reindex("sessions", "ghost", b"").unwrap();
    assert_eq!(store.scan("sessions", None, 10).unwrap().len(), 1);
    assert!(conflict(store.put("sessions", "ghost", b"snap", 0, false)));

    // Removal names the length it expects.
    assert!(conflict(store.remove("sessions", "k", 2)));
    store.remove("sessions", "k", 3).unwrap();
    assert!(store.read("sessions", "k", 0, 10).unwrap().is_empty());
    assert!(store.scan("sessions", None, 10).unwrap().is_empty());
    store.remove("sessions", "k", 3).unwrap();
}

#[test]
fn of_writers_racing_for_one_position_exactly_one_wins() {
    let url = fresh_database("pg_race");
    let store = Arc::new(PgStore::connect(&url).unwrap());
    for seq in 0..5u64 {
        let start = Arc::new(Barrier::new(4));
        let wins: usize = (0..4)
            .map(|w| {
                let (store, start) = (store.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    let record = format!("writer {w} at {seq}").into_bytes();
                    match store.append("sessions", "race", seq, &[record], b"x") {
                        Ok(()) => 1,
                        Err(StoreError::Conflict(_)) => 0,
                        Err(e) => panic!("{e}"),
                    }
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(wins, 1, "position {seq}");
    }
    assert_eq!(store.read("sessions", "race", 0, 100).unwrap().len(), 5);
}

#[test]
fn documents_replace_only_the_version_expected() {
    let store = PgStore::connect(&fresh_database("pg_documents")).unwrap();
    assert_eq!(store.get("config", "webhook").unwrap(), None);
    assert_eq!(store.put("config", "webhook", b"v1", 0, true).unwrap(), 1);
    assert!(conflict(store.put("config", "webhook", b"again", 0, true)));
    assert!(conflict(store.put("config", "webhook", b"stale", 5, true)));
    assert_eq!(store.put("config", "webhook", b"v2", 1, true).unwrap(), 2);
    let doc = store.get("config", "webhook").unwrap().unwrap();
    assert_eq!((doc.version, doc.data.as_slice()), (2, &b"v2"[..]));
    store.remove("config", "webhook", 0).unwrap();
    assert_eq!(store.get("config", "webhook").unwrap(), None);

    // A snapshot (not durable) never creates a key: a late one must not
    // bring a removed session back.
    assert!(conflict(store.put("sessions", "gone", b"snap", 0, false)));
    store
        .append("sessions", "s", 0, &[b"r".to_vec()], b"x")
        .unwrap();
    assert_eq!(store.put("sessions", "s", b"snap", 0, false).unwrap(), 1);
    store.remove("sessions", "s", 1).unwrap();
    assert!(conflict(store.put("sessions", "s", b"late", 1, false)));

    // The filesystem store's size limit holds here too, so anything stored
    // can move to a directory.
    let huge = vec![0u8; (64 << 20) + 1];
    let full = |r: Result<_, StoreError>| matches!(r, Err(StoreError::Full(_)));
    assert!(full(store.put("config", "big", &huge, 0, true).map(drop)));
    assert!(full(store.append("sessions", "big", 0, &[huge], b"x")));
    assert_eq!(
        store.keys("sessions", None, 10).unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn keys_sort_bytewise_whatever_the_database_collation() {
    // A database whose collation is a language's, where "a-b", "a_b" and
    // "ab" sort by their letters first.
    let url = fresh_database_with(
        "pg_order",
        "TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
    );
    let store = PgStore::connect(&url).unwrap();
    let keys = ["A", "B", "a", "a-b", "a_b", "ab", "b", "0"];
    for k in keys {
        store.append("c", k, 0, &[b"r".to_vec()], b"s").unwrap();
    }
    let mut want: Vec<&str> = keys.to_vec();
    want.sort_unstable_by(|a, b| b.cmp(a));
    let scanned: Vec<String> = store
        .scan("c", None, 100)
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(scanned, want);
    assert_eq!(store.keys("c", None, 100).unwrap(), want);
    assert_eq!(store.keys("c", Some("a_b"), 2).unwrap(), ["a-b", "a"]);
    // Taken out of the index, still in the histories.
    store.reindex("c", "b", b"").unwrap();
    assert_eq!(store.scan("c", None, 1).unwrap()[0].key, "ab");
    assert_eq!(store.keys("c", None, 1).unwrap(), ["b"]);
    assert!(matches!(
        store.append("c", "../x", 0, &[b"r".to_vec()], b""),
        Err(StoreError::InvalidKey(_))
    ));
}

#[test]
fn the_schema_is_versioned_and_a_newer_one_is_refused() {
    let url = fresh_database("pg_schema");
    let first = PgStore::connect(&url).unwrap();
    assert_eq!(first.schema_version().unwrap(), PG_SCHEMA_VERSION);
    first.append("c", "k", 0, &[b"r".to_vec()], b"s").unwrap();
    // Hosts starting at once on the same database: one migrates, the
    // others wait and find it done.
    let opened: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url).map(|_| ()))
        })
        .collect();
    for t in opened {
        t.join().unwrap().unwrap();
    }
    assert_eq!(first.read("c", "k", 0, 10).unwrap().len(), 1, "data kept");

    // A database of schema 1 (before the outbox) is brought up to date.
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(
            "DROP TABLE agent_session_outbox; UPDATE agent_session_schema SET version = 1",
        )
        .unwrap();
    let upgraded = PgStore::connect(&url).unwrap();
    assert_eq!(upgraded.schema_version().unwrap(), PG_SCHEMA_VERSION);
    assert!(upgraded.outbox().deliveries().unwrap().is_empty());
    assert_eq!(
        upgraded.read("c", "k", 0, 10).unwrap().len(),
        1,
        "data kept"
    );

    admin
        .execute(
            "UPDATE agent_session_schema SET version = $1",
            &[&(PG_SCHEMA_VERSION + 1)],
        )
        .unwrap();
    let refused = PgStore::connect(&url)
        .err()
        .expect("a newer schema is refused");
    assert!(
        format!("{refused:#}").contains("newer agent-session"),
        "{refused:#}"
    );
    let bad = PgStore::connect("postgres://agent@127.0.0.1:1/none")
        .err()
        .unwrap();
    assert!(format!("{bad:#}").contains("connecting to"), "{bad:#}");
}

#[test]
fn migrate_copies_a_directory_into_postgres_and_back() {
    use crate::common::{cli, cli_json};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let first = cli_json(root, &["start", "long one", "--user", "ana"]);
    let first = first["id"].as_str().unwrap().to_owned();
    for i in 0..20 {
        // Past a snapshot (every 16 events), which is copied too.
        cli_json(
            root,
            &["iterate", &first, "--data", &format!("{{\"i\":{i}}}")],
        );
    }
    cli_json(root, &["complete", &first, "--result", r#"{"ok":true}"#]);
    let second = cli_json(root, &["start", "short one"]);
    cli_json(root, &["pause", second["id"].as_str().unwrap()]);
    // A session named by a key, holding a value too large for an event
    // (kept in its blob log, in records of at most 1 MiB).
    let big = serde_json::json!({ "text": "x".repeat(1_500_000) });
    let keyed = {
        let host = crate::common::host_at(root);
        host.start(agent_session_core::StartOptions {
            task: "keyed".into(),
            key: Some("thread/α".into()),
            ..Default::default()
        })
        .unwrap();
        host.add_items(SessionRef::key("thread/α"), std::slice::from_ref(&big))
            .unwrap()
    };
    cli_json(
        root,
        &[
            "--webhook-allow",
            "127.0.0.1",
            "webhook",
            "set",
            "http://127.0.0.1:9/hook",
            "--secret",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        ],
    );

    let url = fresh_database("pg_migrate");
    let to = cli_json(root, &["migrate", "--to", &url]);
    assert_eq!(to["copied"]["sessions"], 3, "{to}");
    assert_eq!(to["copied"]["records"], 1 + 20 + 1 + 1 + 1 + 2, "{to}");
    assert_eq!(to["copied"]["blob_records"], 2, "{to}");
    assert_eq!(to["copied"]["documents"], 1, "{to}");
    assert_eq!(to["indexed"], 3, "{to}");
    assert_eq!(to["unreadable"], serde_json::json!([]), "{to}");

    // The database serves the same sessions through the component.
    let host = agent_session_host::SessionHost::builder(
        Arc::new(PgStore::connect(&url).unwrap()),
        Arc::new(agent_session_core::memory::MemoryOutbox::new()),
    )
    .cache(agent_session_host::CacheDir::At(crate::common::cache_dir()))
    .build()
    .unwrap();
    let in_db = host
        .list(&agent_session_core::SessionFilter::default(), None, 10)
        .unwrap();
    let in_dir = cli_json(root, &["list"]);
    let ids = |v: &serde_json::Value| -> Vec<(String, String)> {
        v["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["id"].as_str().unwrap().into(),
                    s["status"].as_str().unwrap().into(),
                )
            })
            .collect()
    };
    assert_eq!(ids(&serde_json::to_value(&in_db).unwrap()), ids(&in_dir));
    let events = host.events(&first, 0, 100).unwrap();
    assert_eq!(
        serde_json::to_value(&events.events).unwrap(),
        cli_json(root, &["events", &first, "--limit", "100"])["events"]
    );
    assert!(host.get_webhook().unwrap().is_some());
    // The key was bound again (the index and keys are derived), and the
    // large value came along.
    assert_eq!(host.get(SessionRef::key("thread/α")).unwrap().id, keyed.id);
    assert_eq!(
        host.items(SessionRef::key("thread/α"), None).unwrap(),
        vec![big.clone()]
    );

    // And back into a new directory, with the same checksum.
    let back = tempfile::tempdir().unwrap();
    let from = cli_json(back.path(), &["migrate", "--from", &url]);
    assert_eq!(from["copied"], to["copied"], "{from}");
    assert_eq!(ids(&cli_json(back.path(), &["list"])), ids(&in_dir));
    assert!(cli(back.path(), &["fsck"]).status.success());
    let back_host = crate::common::host_at(back.path());
    assert_eq!(
        back_host.items(SessionRef::key("thread/α"), None).unwrap(),
        vec![big]
    );

    // A copy never merges into a store that holds sessions.
    let again = cli(root, &["migrate", "--to", &url]);
    assert_eq!(again.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
    let nowhere = cli(root, &["migrate", "--to", "postgres://agent@127.0.0.1:1/x"]);
    assert!(!nowhere.status.success());
    assert!(String::from_utf8_lossy(&nowhere.stderr).contains("connecting to"));
}

/// Three host processes on one database and the same sessions, one of
/// them killed mid-run. The two others also deliver webhooks as they go.
/// (The killed one only queues: a sender killed between sending and
/// recording sends again after its lease, which `pg_outbox` shows.)
#[test]
fn three_host_processes_share_sessions_and_one_is_killed() {
    use std::collections::{BTreeMap, BTreeSet};
    use std::ffi::OsStr;
    use std::time::Duration;

    use agent_session_host::{DeliveryState, Outbox as _};

    use crate::crash::{all_events, recorded_in, run_load_with};
    use crate::receiver::{Receiver, Reply};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let url = fresh_database("pg_hosts");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let receiver = rt.block_on(Receiver::start(|_| Reply::Status(200)));
    let (host, outbox) = agent_session_host::SessionHost::open_postgres(
        &url,
        agent_session_host::CacheDir::At(crate::common::cache_dir()),
    )
    .unwrap();
    host.set_webhook(&agent_session_core::WebhookConfig {
        url: receiver.url(),
        secret: SECRET.into(),
        event_kinds: Vec::new(),
        enabled: true,
    })
    .unwrap();
    // The sessions all three work on (each takes the newest open ones).
    for _ in 0..3 {
        host.start(agent_session_core::StartOptions {
            task: "shared".into(),
            max_iterations: Some(1_000_000),
            ..Default::default()
        })
        .unwrap();
    }
    // The second host has far more to do than the time it is given.
    let runs: Vec<_> = [
        (150, None),
        (5000, Some(Duration::from_millis(1500))),
        (150, None),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (ops, kill))| {
        let url = url.clone();
        std::thread::spawn(move || {
            let (tag, ops) = (format!("h{i}"), ops.to_string());
            let mut args: Vec<&OsStr> = [
                "--store",
                &url,
                "--sessions",
                "3",
                "--threads",
                "2",
                "--ops",
                &ops,
                "--tag",
                &tag,
            ]
            .into_iter()
            .map(OsStr::new)
            .collect();
            if kill.is_none() {
                args.extend([OsStr::new("--deliver"), OsStr::new("127.0.0.1")]);
            }
            run_load_with(&args, kill)
        })
    })
    .collect();
    let lines: Vec<_> = runs.into_iter().map(|r| r.join().unwrap()).collect();
    assert!(lines[1].killed, "the second host was killed mid-run");
    for l in [&lines[0], &lines[2]] {
        let answered = l.acked.len() + l.refused.len() + l.conflicts as usize;
        assert_eq!(
            answered,
            2 * 150,
            "every operation of a surviving host was answered"
        );
    }
    let (ops, sessions) = recorded_in(&host);
    assert_eq!(sessions.len(), 3, "no host started sessions of its own");
    let mut acked = 0;
    for l in &lines {
        for (op, (kind, _)) in &l.acked {
            if kind == "resume" {
                continue; // a resume names no op
            }
            assert_eq!(ops.get(op), Some(&1), "{kind} {op} was acknowledged");
            acked += 1;
        }
    }
    let conflicts: u64 = lines.iter().map(|l| l.conflicts).sum();
    assert!(conflicts > 0, "6 writers on 3 sessions met no conflict");
    // Nothing that was not acknowledged, except what the killed host
    // had in flight (at most one per thread).
    let unacked = ops.len() - acked;
    assert!(
        unacked <= 2,
        "{unacked} recorded operations were never acknowledged"
    );

    // Webhooks: every lifecycle event in the histories was delivered, once,
    // signed; nothing else was. What the killed host queued for an
    // operation it never completed was discarded, not sent.
    // A survivor that ran out of work before the killed host stopped
    // queueing may have left the newest notifications: this process sends
    // those (as a fourth host would).
    let sender = agent_session_host::webhook::Sender::new(
        host.clone(),
        outbox.clone(),
        agent_session_host::webhook::DeliveryConfig {
            policy: agent_session_host::webhook::AddressPolicy::from_list("127.0.0.1").unwrap(),
            ..Default::default()
        },
    )
    .unwrap();
    let started = std::time::Instant::now();
    let mut left_over = 0;
    loop {
        let pass = rt.block_on(sender.deliver_due()).unwrap();
        left_over += pass.delivered;
        if pass.pending == 0 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "not drained");
        std::thread::sleep(Duration::from_millis(200));
    }
    let deliveries = outbox.deliveries().unwrap();
    let by_state = |s: DeliveryState| deliveries.iter().filter(move |d| d.state == s);
    assert_eq!(by_state(DeliveryState::Pending).count(), 0, "all drained");
    assert_eq!(by_state(DeliveryState::Failed).count(), 0);
    // Discarded: the notifications of operations that lost a race (they
    // got `conflict`), and of what the killed host had in flight.
    let mut never = 0;
    for d in by_state(DeliveryState::Discarded) {
        let why = d.reason.as_deref().unwrap_or_default();
        if why.contains("never recorded") {
            never += 1;
        } else {
            assert!(why.contains("lost a race"), "discarded: {why}");
        }
    }
    assert!(never <= 2, "{never} discarded as never recorded");
    let mut lifecycle = BTreeSet::new();
    for id in sessions.keys() {
        for e in all_events(&host, id) {
            if matches!(e.kind.as_str(), "start" | "pause" | "resume") {
                lifecycle.insert((id.clone(), e.seq));
            }
        }
    }
    let delivered: BTreeSet<(String, u64)> = by_state(DeliveryState::Delivered)
        .map(|d| (d.notification.session_id.clone(), d.notification.seq))
        .collect();
    assert_eq!(delivered, lifecycle, "one delivery per lifecycle event");
    assert!(
        left_over < delivered.len(),
        "the hosts delivered as they worked ({left_over} of {} were left over)",
        delivered.len()
    );
    assert!(lifecycle.len() > 3, "pauses and resumes were notified");
    let mut received: BTreeMap<String, usize> = BTreeMap::new();
    for r in receiver.requests() {
        r.verify(SECRET);
        *received.entry(r.id()).or_default() += 1;
    }
    let sent: BTreeSet<String> = by_state(DeliveryState::Delivered)
        .map(|d| d.id().to_owned())
        .collect();
    assert_eq!(
        received.keys().cloned().collect::<BTreeSet<_>>(),
        sent,
        "the receiver got exactly the delivered webhook-ids"
    );
    let twice: Vec<_> = received.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
}

#[test]
fn tls_is_used_when_asked_for_and_the_server_is_verified() {
    use crate::common::postgres_ca;

    let url = fresh_database("pg_tls");
    let encrypted = |admin: &mut postgres::Client| -> i64 {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
                 WHERE a.datname = 'pg_tls' AND s.ssl",
                &[],
            )
            .unwrap()
            .get(0)
    };
    let mut admin =
        postgres::Client::connect(&crate::common::postgres_url(), postgres::NoTls).unwrap();
    let tls_url = format!("{url}?sslmode=verify-full&sslrootcert={}", postgres_ca());
    let store = PgStore::connect(&tls_url).unwrap();
    store.append("c", "k", 0, &[b"r".to_vec()], b"s").unwrap();
    assert!(encrypted(&mut admin) > 0, "the store's connections use TLS");
    let outbox = store.outbox();
    assert!(outbox.deliveries().unwrap().is_empty());
    drop((store, outbox));

    // Without the CA, the server's certificate is not trusted.
    let untrusted = PgStore::connect(&format!("{url}?sslmode=require"))
        .err()
        .expect("an unknown issuer is refused");
    assert!(
        format!("{untrusted:#}")
            .to_lowercase()
            .contains("certificate"),
        "{untrusted:#}"
    );
    // The host name is checked too: the certificate names 127.0.0.1 and
    // localhost (`hostaddr` dials 127.0.0.1 under another name).
    let mut named = url::Url::parse(&url).unwrap();
    let tls_as = |named: &url::Url| {
        PgStore::connect(&format!(
            "{named}?hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={}",
            postgres_ca()
        ))
    };
    named.set_host(Some("db.invalid")).unwrap();
    let misnamed = tls_as(&named).err().expect("another name is refused");
    assert!(
        format!("{misnamed:#}").contains("not valid for name"),
        "{misnamed:#}"
    );
    named.set_host(Some("localhost")).unwrap();
    tls_as(&named).unwrap();

    // Plain unless asked for.
    let plain = PgStore::connect(&url).unwrap();
    plain.read("c", "k", 0, 10).unwrap();
    let bad = PgStore::connect(&format!("{url}?sslmode=sometimes"))
        .err()
        .unwrap();
    assert!(format!("{bad:#}").contains("sslmode=sometimes"), "{bad:#}");
    let missing = PgStore::connect(&format!("{url}?sslrootcert=/nonexistent/ca.pem"))
        .err()
        .unwrap();
    assert!(
        format!("{missing:#}").contains("/nonexistent/ca.pem"),
        "{missing:#}"
    );
}
