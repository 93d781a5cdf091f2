//! The webhook outbox in PostgreSQL: claims shared by several senders,
//! leases taken over, writers known alive or gone, and the CLI on
//! `--store`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_session_core::{Notification, Notifier as _, Store as _};
use agent_session_host::{DeliveryState, Outbox, PgOutbox, PgStore};

use crate::common::{cli, fresh_database};
use crate::receiver::{Receiver, Reply};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn note(id: &str, at: u64) -> Notification {
    Notification {
        id: id.into(),
        session_id: String::new(),
        seq: 0,
        url: "http://127.0.0.1:9/hooks".into(),
        secret: SECRET.into(),
        kind: "session.started".into(),
        timestamp: at,
        body: "{}".into(),
    }
}

fn outbox(url: &str) -> Arc<PgOutbox> {
    Arc::new(PgStore::connect(url).unwrap().outbox())
}

#[test]
fn senders_claim_each_delivery_once_and_take_over_expired_claims() {
    let url = fresh_database("pg_claims");
    let writer = outbox(&url);
    for i in 0..40 {
        writer
            .enqueue(&note(&format!("msg_{i:02}"), 1000 + i))
            .unwrap();
    }
    // Queued twice (a retried enqueue): still one delivery.
    writer.enqueue(&note("msg_00", 1000)).unwrap();
    assert_eq!(writer.pending().unwrap().len(), 40);

    // Four senders in four threads claim in small bites at once.
    let lease = Duration::from_secs(60);
    let claimed: Vec<Vec<String>> = (0..4)
        .map(|_| {
            let claims = outbox(&url).sender(lease, "").unwrap().unwrap();
            std::thread::spawn(move || {
                let mut mine = Vec::new();
                loop {
                    let c = claims.claim_due(u64::MAX / 2, 3).unwrap();
                    if c.due.is_empty() {
                        return mine;
                    }
                    mine.extend(c.due.into_iter().map(|d| d.id().to_owned()));
                }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let all: Vec<&String> = claimed.iter().flatten().collect();
    let distinct: HashSet<&String> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every delivery claimed: {claimed:?}");
    assert_eq!(distinct.len(), 40, "no delivery claimed twice: {claimed:?}");

    // A sender that dies holding claims: nobody else gets them until the
    // lease ends; then another sender does, and the dead one's late
    // record is refused.
    let url2 = fresh_database("pg_lease");
    let queue = outbox(&url2);
    queue.enqueue(&note("msg_lease", 1000)).unwrap();
    let dying = queue
        .clone()
        .sender(Duration::from_secs(10), "")
        .unwrap()
        .unwrap();
    let taken = dying.claim_due(u64::MAX / 2, 10).unwrap();
    assert_eq!(taken.due.len(), 1);
    let other = outbox(&url2).sender(lease, "").unwrap().unwrap();
    let early = other.claim_due(u64::MAX / 2, 10).unwrap();
    assert!(early.due.is_empty(), "a live claim is not taken over");
    assert_eq!(early.waiting, 1, "it is counted as waiting");
    let started = Instant::now();
    let took_over = loop {
        let c = other.claim_due(u64::MAX / 2, 10).unwrap();
        if !c.due.is_empty() {
            break c.due;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "never taken over"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(took_over[0].id(), "msg_lease");
    let mut late = taken.due[0].clone();
    late.state = DeliveryState::Delivered;
    let refused = dying.save(&late).unwrap_err();
    assert!(refused.to_string().contains("took it over"), "{refused}");
    let mut done = took_over[0].clone();
    done.state = DeliveryState::Failed;
    done.reason = Some("test".into());
    other.save(&done).unwrap();
    let stored = queue.find("msg_lease").unwrap().unwrap();
    assert_eq!(
        stored.state,
        DeliveryState::Failed,
        "the new holder's record"
    );

    // Retention removes finished deliveries only; requeue brings one back.
    assert_eq!(queue.prune(2000, true).unwrap(), ["msg_lease"]);
    let again = queue.requeue(&stored, 5000).unwrap();
    assert_eq!(again.state, DeliveryState::Pending);
    assert!(
        queue.prune(2000, false).unwrap().is_empty(),
        "pending stays"
    );
    assert_eq!(queue.pending().unwrap().len(), 1);
}

#[test]
fn a_writer_is_alive_while_its_process_holds_its_connection() {
    let url = fresh_database("pg_writers");
    let writer = outbox(&url);
    writer.enqueue(&note("msg_w", 1000)).unwrap();
    let queued = writer.find("msg_w").unwrap().unwrap();
    let name = queued.writer.clone().expect("the writer is recorded");
    let sender = outbox(&url);
    assert!(sender.writer_alive(&name).unwrap());
    assert!(!sender.writer_alive("pg-12345").unwrap(), "never was");
    assert!(!sender.writer_alive("1234-abc.log").unwrap(), "not ours");
    drop(writer);
    // The server lets the lock go once it sees the connection closed.
    let started = Instant::now();
    while sender.writer_alive(&name).unwrap() {
        assert!(started.elapsed() < Duration::from_secs(30), "still alive");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The CLI on `--store`: session commands, webhooks queued in and sent
/// from the database, the directory untouched, directory-only commands
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_works_on_postgres_and_a_dead_senders_claim_is_taken_over() {
    // The synchronous client may not run on the async threads.
    let url = tokio::task::spawn_blocking(|| fresh_database("pg_cli"))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("unused");
    let run = |args: &[&str]| pg_cli(&url, &root, args);
    let ok = {
        let (url, root) = (url.clone(), root.clone());
        move |args: &[&str]| pg_ok(&url, &root, args)
    };
    // The first request hangs (its sender is killed meanwhile); later
    // ones are answered.
    let receiver = Receiver::start(|n| match n {
        0 => Reply::Hang,
        _ => Reply::Status(200),
    })
    .await;
    let hook = receiver.url();
    let started = tokio::task::spawn_blocking({
        let ok = ok.clone();
        move || {
            ok(&[
                "webhook",
                "set",
                &hook,
                "--secret",
                SECRET,
                "--events",
                "session.started",
            ]);
            ok(&["start", "on postgres", "--user", "ann"])
        }
    })
    .await
    .unwrap();
    let id = started["id"].as_str().unwrap().to_owned();
    assert_eq!(ok(&["list"])["sessions"][0]["id"], id.as_str());
    assert_eq!(ok(&["stats"])["total"], 1);
    assert!(!root.exists(), "--store leaves the directory alone");

    for refused in [&["fsck"][..], &["compact"], &["migrate", "--to", &url]] {
        let out = run(refused);
        assert_eq!(out.status.code(), Some(4), "{refused:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("directory store (--dir) only"));
    }
    let short = run(&["deliver", "--once", "--timeout", "5s", "--lease", "5s"]);
    assert_eq!(short.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&short.stderr).contains("must be longer than --timeout"));
    let bad = cli(&root, &["--store", "/tmp/somewhere", "list"]);
    assert_eq!(bad.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("postgres:// URL"));

    // A sender that is killed while its request hangs.
    let mut first = std::process::Command::new(env!("CARGO_BIN_EXE_agent-session"))
        .args(["--store", &url, "--webhook-allow", "127.0.0.1", "deliver"])
        .args(["--timeout", "10s", "--lease", "12s"])
        .env("AGENT_SESSION_CACHE_DIR", crate::common::cache_dir())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    receiver.wait_for(1).await;
    first.kill().unwrap();
    first.wait().unwrap();
    // Another host takes the claim over once its lease has ended.
    let delivered = loop {
        let pass = tokio::task::spawn_blocking({
            let ok = ok.clone();
            move || ok(&["deliver", "--once", "--timeout", "10s", "--lease", "12s"])
        })
        .await
        .unwrap();
        if pass["delivered"] == 1 {
            break pass;
        }
        assert_eq!(pass["pending"], 1, "{pass}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(delivered["failed"], 0);
    let requests = receiver.requests();
    assert_eq!(requests.len(), 2, "the hung attempt and the one after");
    assert_eq!(requests[0].id(), requests[1].id(), "the same webhook-id");
    requests[1].verify(SECRET);
    assert_eq!(requests[1].json()["data"]["session"]["id"], id.as_str());
    let shown = tokio::task::spawn_blocking(move || ok(&["deliveries"]))
        .await
        .unwrap();
    assert_eq!(shown.as_array().unwrap().len(), 1);
    assert_eq!(shown[0]["state"], "delivered");
    assert_eq!(
        shown[0]["attempts"].as_array().unwrap().len(),
        1,
        "the killed sender recorded nothing"
    );
}

/// Run the CLI on the database at `url` (with `--dir root`, which it must
/// leave alone).
fn pg_cli(url: &str, root: &std::path::Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["--store", url, "--webhook-allow", "127.0.0.1"];
    all.extend_from_slice(args);
    cli(root, &all)
}

/// [`pg_cli`] with `--json`, expecting success.
fn pg_ok(url: &str, root: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = pg_cli(url, root, &all);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A `postgres` client's drop blocks on a runtime of its own; a store and
/// an outbox dropped on an async thread must not take that thread down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_and_its_outbox_can_be_dropped_on_an_async_thread() {
    let (store, outbox) = tokio::task::spawn_blocking(|| {
        let store = PgStore::connect(&fresh_database("pg_drop")).unwrap();
        let outbox = store.outbox();
        outbox.enqueue(&note("msg_drop", 1000)).unwrap();
        store.append("c", "k", 0, &[b"r".to_vec()], b"s").unwrap();
        (store, outbox)
    })
    .await
    .unwrap();
    drop(outbox);
    drop(store);
}

#[test]
fn a_sessions_deliveries_are_claimed_in_order_and_a_refusal_waits_for_another_sender() {
    use agent_session_core::Attempt;
    use agent_session_core::delivery::HOLD_BACK_MS;
    let url = fresh_database("pg_order");
    let queue = outbox(&url);
    let of = |session: &str, id: &str, seq: u64| Notification {
        session_id: session.into(),
        seq,
        ..note(id, 1000)
    };
    queue.enqueue(&of("s1", "msg_a0", 0)).unwrap();
    queue.enqueue(&of("s1", "msg_a1", 1)).unwrap();
    queue.enqueue(&of("s2", "msg_b0", 0)).unwrap();
    let lease = Duration::from_secs(60);
    let claims = queue.clone().sender(lease, "").unwrap().unwrap();
    let ids = |c: agent_session_core::Claimed| {
        let mut ids: Vec<String> = c.due.iter().map(|d| d.id().to_owned()).collect();
        ids.sort();
        ids
    };
    let now = 1000 + 60_000;
    let mut first = claims.claim_due(now, 10).unwrap();
    let a0 = first.due.iter().position(|d| d.id() == "msg_a0").unwrap();
    let mut a0 = first.due.remove(a0);
    assert_eq!(ids(first), ["msg_b0"], "a1 waits for a0; s2 does not");
    // a0 refused by this sender's policy: pending, for an hour.
    a0.attempts.push(Attempt {
        at: now,
        duration_ms: 0,
        status: None,
        error: Some("refused: loopback".into()),
        refused: true,
        policy: Some(String::new()),
    });
    a0.next_attempt_at = now + 3_600_000;
    claims.save(&a0).unwrap();
    assert!(
        claims.claim_due(now, 10).unwrap().due.is_empty(),
        "a1 still held"
    );
    // Held back longer than the hold-back since a0's first attempt: a1
    // goes on its own.
    assert!(
        claims
            .claim_due(now + HOLD_BACK_MS - 1, 10)
            .unwrap()
            .due
            .is_empty()
    );
    let later = now + HOLD_BACK_MS;
    assert_eq!(ids(claims.claim_due(later, 10).unwrap()), ["msg_a1"]);
    // A sender restarted with the same policy waits its turn; one with
    // another (allowed to dial, say) takes the refused one at once.
    let same = queue.clone().sender(lease, "").unwrap().unwrap();
    assert!(same.claim_due(later, 10).unwrap().due.is_empty());
    drop(same);
    let other = queue
        .clone()
        .sender(lease, "127.0.0.1/32")
        .unwrap()
        .unwrap();
    assert_eq!(ids(other.claim_due(later, 10).unwrap()), ["msg_a0"]);
}
