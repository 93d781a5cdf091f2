//! Webhook delivery against a real HTTP receiver on 127.0.0.1.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use agent_session_core::{StartOptions, WebhookConfig};
use agent_session_host::webhook::{AddressPolicy, DeliveryConfig, EndpointError, Sender};
use agent_session_host::{DeliveryState, FsOutbox, Outbox as _, SessionHost};

use crate::common::{cli, cli_json, host_at};
use crate::receiver::{Receiver, Reply};
use crate::senders::{hook, settled};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(allow: &str, schedule_ms: &[u64]) -> DeliveryConfig {
    DeliveryConfig {
        policy: AddressPolicy::from_list(allow).unwrap(),
        timeout: Duration::from_secs(5),
        schedule: schedule_ms
            .iter()
            .map(|&ms| Duration::from_millis(ms))
            .collect(),
        poll_interval: Duration::from_millis(50),
        concurrency: 8,
        ..DeliveryConfig::default()
    }
}

fn sender(root: &Path, host: &SessionHost, config: DeliveryConfig) -> Sender {
    let outbox = Arc::new(FsOutbox::open(root).unwrap());
    Sender::new(host.clone(), outbox, config).unwrap()
}

fn start(host: &SessionHost, task: &str, max_iterations: Option<u32>) -> String {
    host.start(StartOptions {
        task: task.into(),
        max_iterations,
        ..Default::default()
    })
    .unwrap()
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_lifecycle_event_arrives_once_signed() {
    let rx = Receiver::start(|_| Reply::Status(204)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &[]);
    let task = sender(dir.path(), &host, config("127.0.0.1", &[50])).spawn();

    let a = start(&host, "lifecycle", None);
    host.iterate(&a, None).unwrap();
    host.pause(&a, Some("approval")).unwrap();
    host.resume(&a).unwrap();
    host.complete(&a, Some(&serde_json::json!({"pr": 7})))
        .unwrap();
    let b = start(&host, "fails", None);
    host.fail(&b, "boom").unwrap();
    let c = start(&host, "bounded", Some(1));
    host.iterate(&c, None).unwrap();
    host.iterate(&c, None).unwrap_err();

    let got = rx.wait_for(8).await;
    settled(dir.path(), 8).await;
    task.stop().await.unwrap();
    let got_after = rx.requests();
    assert_eq!(got_after.len(), 8, "nothing arrives twice");

    let ids: HashSet<String> = got.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 8, "one webhook-id per notification");
    let mut kinds = Vec::new();
    for r in &got {
        r.verify(SECRET);
        let body = r.json();
        assert_eq!(r.headers["content-type"], "application/json");
        let session = &body["data"]["session"];
        let expected_status = match body["type"].as_str().unwrap() {
            "session.started" | "session.resumed" => "active",
            "session.paused" => "paused",
            "session.completed" => "completed",
            "session.failed" => "failed",
            "session.timed_out" => "timeout",
            other => panic!("unexpected kind {other}"),
        };
        assert_eq!(session["status"], expected_status, "{body}");
        for field in [
            "id",
            "task",
            "iteration",
            "max_iterations",
            "created_at",
            "updated_at",
        ] {
            assert!(session.get(field).is_some(), "{field} missing in {body}");
        }
        kinds.push((
            session["id"].as_str().unwrap().to_owned(),
            body["type"].as_str().unwrap().to_owned(),
        ));
    }
    kinds.sort();
    let mut expected: Vec<(String, String)> = [
        (&a, "session.started"),
        (&a, "session.paused"),
        (&a, "session.resumed"),
        (&a, "session.completed"),
        (&b, "session.started"),
        (&b, "session.failed"),
        (&c, "session.started"),
        (&c, "session.timed_out"),
    ]
    .iter()
    .map(|(s, k)| (s.to_string(), k.to_string()))
    .collect();
    expected.sort();
    assert_eq!(kinds, expected);
    let completed = got
        .iter()
        .find(|r| r.json()["type"] == "session.completed")
        .unwrap();
    assert_eq!(completed.json()["data"]["event"]["data"]["result"]["pr"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_receiver_gets_the_event_on_the_third_attempt() {
    let rx = Receiver::start(|n| Reply::Status(if n < 2 { 500 } else { 200 })).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &["session.started"]);
    let task = sender(dir.path(), &host, config("127.0.0.1", &[50, 50, 50])).spawn();
    start(&host, "flaky receiver", None);

    let d = settled(dir.path(), 1).await.remove(0);
    task.stop().await.unwrap();
    let statuses: Vec<_> = d.attempts.iter().map(|a| a.status).collect();
    assert_eq!(statuses, [Some(500), Some(500), Some(200)]);
    assert_eq!(d.state, DeliveryState::Delivered);
    let got = rx.requests();
    assert_eq!(got.len(), 3);
    assert!(
        got.iter().all(|r| r.id() == d.id()),
        "the webhook-id is stable across retries"
    );
    got.iter().for_each(|r| r.verify(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_across_a_host_restart_still_gets_the_event() {
    // A port held by a socket that is bound but not listening: connections
    // to it are refused, and no other test can take it before the receiver
    // (which, like this socket, sets SO_REUSEADDR) binds it too.
    let reserved = tokio::net::TcpSocket::new_v4().unwrap();
    reserved.set_reuseaddr(true).unwrap();
    reserved.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = reserved.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hooks");
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let host = host_at(dir.path());
        hook(&host, &url, &[]);
        let task = sender(dir.path(), &host, config("127.0.0.1", &[200; 50])).spawn();
        let id = start(&host, "outlives the host", None);
        host.complete(&id, None).unwrap();
        let outbox = FsOutbox::open(dir.path()).unwrap();
        for _ in 0..600 {
            if outbox
                .pending()
                .unwrap()
                .iter()
                .any(|d| d.attempts.len() >= 2)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        task.stop().await.unwrap();
        let pending = outbox.pending().unwrap();
        assert_eq!(pending.len(), 2, "both notifications wait for the receiver");
        let (started, completed) = (&pending[0], &pending[1]);
        assert_eq!(started.notification.kind, "session.started");
        let error = started.attempts[0].error.as_deref().unwrap();
        assert!(error.contains("connect"), "{error}");
        // In the order of the session's events: the completion waits for
        // the start.
        assert!(completed.attempts.is_empty(), "{completed:?}");
        id
    };

    let rx = Receiver::start_at(port, |_| Reply::Status(200)).await;
    drop(reserved);
    let host = host_at(dir.path());
    let task = sender(dir.path(), &host, config("127.0.0.1", &[200; 50])).spawn();
    let got = rx.wait_for(2).await;
    settled(dir.path(), 2).await;
    task.stop().await.unwrap();
    let kinds: Vec<_> = got
        .iter()
        .map(|r| r.json()["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kinds, ["session.started", "session.completed"]);
    assert!(
        got.iter()
            .all(|r| r.json()["data"]["session"]["id"] == id.as_str())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_disables_the_endpoint() {
    let rx = Receiver::start(|_| Reply::Status(410)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &[]);
    let s = sender(dir.path(), &host, config("127.0.0.1", &[50, 50]));
    let id = start(&host, "gone", None);
    let report = s.deliver_due().await.unwrap();
    assert_eq!((report.failed, report.delivered), (1, 0));
    let d = &FsOutbox::open(dir.path()).unwrap().deliveries().unwrap()[0];
    assert_eq!(d.state, DeliveryState::Failed);
    assert!(d.reason.as_deref().unwrap().contains("410"));
    assert!(
        !host.get_webhook().unwrap().unwrap().enabled,
        "the endpoint is disabled"
    );
    host.complete(&id, None).unwrap();
    assert!(
        s.outbox().pending().unwrap().is_empty(),
        "a disabled endpoint gets nothing"
    );
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redirect_is_not_followed_and_a_hanging_receiver_times_out() {
    let target = Receiver::start(|_| Reply::Status(200)).await;
    let to = target.url();
    let redirecting = Receiver::start(move |_| Reply::Redirect(to.clone())).await;
    let hanging = Receiver::start(|_| Reply::Hang).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    let mut c = config("127.0.0.1", &[]);
    // Long enough that the redirect's 302 always arrives in time, even on a
    // busy machine; only the hanging receiver waits it out.
    c.timeout = Duration::from_secs(3);
    let s = sender(dir.path(), &host, c);

    hook(&host, &redirecting.url(), &[]);
    start(&host, "redirected", None);
    assert_eq!(s.deliver_due().await.unwrap().failed, 1);
    hook(&host, &hanging.url(), &[]);
    start(&host, "hung up on", None);
    assert_eq!(s.deliver_due().await.unwrap().failed, 1);

    let all = s.outbox().deliveries().unwrap();
    let to = |url: String| all.iter().find(|d| d.notification.url == url).unwrap();
    let (redirected, hung) = (to(redirecting.url()), to(hanging.url()));
    assert!(
        redirected.reason.as_deref().unwrap().contains("gave up"),
        "no retries were asked for"
    );
    let redirected = &redirected.attempts[0];
    assert_eq!(redirected.status, Some(302));
    assert!(
        redirected
            .error
            .as_deref()
            .unwrap()
            .contains("not followed")
    );
    assert_eq!(redirecting.requests().len(), 1);
    assert_eq!(
        target.connections(),
        0,
        "the redirect target was never contacted"
    );
    let hung = &hung.attempts[0];
    assert_eq!(hung.status, None);
    assert!(
        hung.error.as_deref().unwrap().contains("timed out"),
        "{hung:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_kind_filters_hold() {
    // The schedule says 100 ms; the endpoint asks for 2 s.
    let rx = Receiver::start(|n| match n {
        0 => Reply::RetryAfter(429, 2),
        _ => Reply::Status(200),
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &["session.completed"]);
    let task = sender(dir.path(), &host, config("127.0.0.1", &[100])).spawn();
    let id = start(&host, "filtered", None);
    host.pause(&id, None).unwrap();
    host.resume(&id).unwrap();
    host.complete(&id, None).unwrap();
    let got = rx.wait_for(2).await;
    let d = settled(dir.path(), 1).await;
    task.stop().await.unwrap();
    assert_eq!(d.len(), 1, "only the completion was queued");
    assert_eq!(
        d[0].attempts.iter().map(|a| a.status).collect::<Vec<_>>(),
        [Some(429), Some(200)]
    );
    assert!(got.iter().all(|r| r.json()["type"] == "session.completed"));
    assert!(
        d[0].attempts[1].at - d[0].attempts[0].at >= 2000,
        "waited as asked"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_addresses_are_refused_without_connecting_unless_allowed() {
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let port = rx.addr.port();
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    let strict = sender(dir.path(), &host, config("", &[]));
    let refused = [
        format!("http://127.0.0.1:{port}/hooks"),
        format!("http://[::1]:{port}/hooks"),
        format!("http://10.0.0.1:{port}/hooks"),
        "http://169.254.169.254/latest/meta-data".to_string(),
        format!("http://[::ffff:127.0.0.1]:{port}/hooks"),
        format!("http://localhost:{port}/hooks"),
    ];
    for url in &refused {
        let e = strict.check_endpoint(url).await.unwrap_err();
        assert!(matches!(e, EndpointError::Refused(_)), "{url}: {e}");
        hook(&host, url, &[]);
        let attempt = strict.test().await.unwrap();
        let error = attempt.error.unwrap();
        assert!(
            error.starts_with("refused to send a webhook"),
            "{url}: {error}"
        );
        assert_eq!(attempt.status, None);
    }
    // A refusal is an attempt like any other: with no retries in the
    // schedule, given up at once, with the reason recorded. (That a
    // refused delivery waits for an allowed sender is `senders.rs`.)
    start(&host, "refused", None);
    assert_eq!(strict.deliver_due().await.unwrap().failed, 1);
    let d = &strict.outbox().deliveries().unwrap()[0];
    assert!(d.attempts[0].refused, "{d:?}");
    let error = d.attempts[0].error.as_deref().unwrap();
    assert!(error.contains("loopback"), "{d:?}");
    assert_eq!(rx.connections(), 0, "no connection was made");

    let allowing = sender(dir.path(), &host, config("127.0.0.1", &[]));
    for url in [&refused[0], &refused[4], &refused[5]] {
        allowing.check_endpoint(url).await.unwrap();
        hook(&host, url, &[]);
        let attempt = allowing.test().await.unwrap();
        assert_eq!(attempt.status, Some(200), "{url}: {attempt:?}");
    }
    let got = rx.wait_for(3).await;
    assert!(got.iter().all(|r| r.json()["type"] == "webhook.test"));
    got.iter().for_each(|r| r.verify(SECRET));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sets_tests_delivers_lists_and_redelivers() {
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let url = rx.url();
    let out = tokio::task::spawn_blocking(move || {
        let refused = cli(&root, &["webhook", "set", &url, "--secret", SECRET]);
        assert_eq!(refused.status.code(), Some(4));
        assert!(String::from_utf8_lossy(&refused.stderr).contains("loopback"));
        let allow = ["--webhook-allow", "127.0.0.1"];
        let ok = |args: &[&str]| {
            let mut all = allow.to_vec();
            all.extend_from_slice(args);
            cli_json(&root, &all)
        };
        ok(&["webhook", "set", &url, "--secret", SECRET]);
        let test = ok(&["webhook", "test"]);
        assert_eq!(test["status"], 200, "{test}");
        let s = ok(&["start", "from the cli"]);
        let id = s["id"].as_str().unwrap().to_owned();
        ok(&["complete", &id]);
        let pass = ok(&["deliver", "--once"]);
        assert_eq!(pass["delivered"], 2, "{pass}");
        let list = ok(&["deliveries"]);
        let list = list.as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert!(list.iter().all(|d| d["state"] == "delivered"));
        let first = list[0]["notification"]["id"].as_str().unwrap().to_owned();
        let one = ok(&["deliveries", &first]);
        assert_eq!(one["attempts"][0]["status"], 200);
        let again = ok(&["redeliver", &first]);
        assert_eq!(again["state"], "delivered");
        assert_eq!(again["attempts"].as_array().unwrap().len(), 2);
        let text = cli(&root, &["deliveries", &first]);
        assert!(String::from_utf8_lossy(&text.stdout).contains("200"));
        let missing = cli(&root, &["redeliver", "msg_nope"]);
        assert_eq!(missing.status.code(), Some(3));
        let newest = ok(&["deliveries", "--limit", "1"]);
        assert_eq!(newest.as_array().unwrap().len(), 1);
        assert_ne!(newest[0]["notification"]["id"], first.as_str());
        assert!(
            !newest.to_string().contains(&SECRET[6..]),
            "secrets are masked"
        );
        let dry = ok(&["cleanup", "--older-than", "0", "--dry-run"]);
        assert_eq!(dry["removed_deliveries"].as_array().unwrap().len(), 2);
        assert_eq!(ok(&["deliveries"]).as_array().unwrap().len(), 2);
        first
    })
    .await
    .unwrap();
    let got = rx.wait_for(4).await;
    assert_eq!(got[0].json()["type"], "webhook.test");
    assert_eq!(
        got.iter().filter(|r| r.id() == out).count(),
        2,
        "redelivered with the same id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_of_operations_that_did_not_commit_are_not_sent() {
    use agent_session_core::Notifier as _;
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &rx.url(), &[]);
    let id = start(&host, "crashes later", None);
    let started = FsOutbox::open(dir.path()).unwrap().pending().unwrap()[0]
        .notification
        .clone();
    // Queued by a process that then ended (its segment is released).
    let outbox = FsOutbox::open(dir.path()).unwrap();

    // As left by a process killed between queueing and appending: a pause
    // at the next position, raised a minute ago, never recorded...
    let mut never = started.clone();
    never.id = "msg_never_recorded".into();
    never.seq = 1;
    never.kind = "session.paused".into();
    never.timestamp -= 60_000;
    outbox.enqueue(&never).unwrap();
    // ...and a start that lost the race for position 0 to another writer.
    let mut raced = started.clone();
    raced.id = "msg_lost_the_race".into();
    raced.body = raced.body.replace("crashes later", "someone else's task");
    outbox.enqueue(&raced).unwrap();
    drop(outbox);
    let outbox = FsOutbox::open(dir.path()).unwrap();

    let s = sender(dir.path(), &host, config("127.0.0.1", &[]));
    let report = s.deliver_due().await.unwrap();
    assert_eq!((report.delivered, report.discarded), (1, 2), "{report:?}");
    let got = rx.requests();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].id(), started.id);
    let reason = |id: &str| outbox.find(id).unwrap().unwrap().reason.unwrap();
    assert!(reason("msg_never_recorded").contains("never recorded event 1"));
    assert!(reason("msg_lost_the_race").contains("lost a race"));
    assert_eq!(host.get(&id).unwrap().event_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_endpoint_gets_what_is_queued_and_a_removed_one_fails_it() {
    let old = Receiver::start(|_| Reply::Status(200)).await;
    let new = Receiver::start(|_| Reply::Status(200)).await;
    let dir = tempfile::tempdir().unwrap();
    let host = host_at(dir.path());
    hook(&host, &old.url(), &[]);
    start(&host, "queued for the old endpoint", None);
    let new_secret = "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXRlc3Rz";
    host.set_webhook(&WebhookConfig {
        url: new.url(),
        secret: new_secret.into(),
        event_kinds: vec![],
        enabled: true,
    })
    .unwrap();
    let s = sender(dir.path(), &host, config("127.0.0.1", &[]));
    assert_eq!(s.deliver_due().await.unwrap().delivered, 1);
    assert_eq!(old.connections(), 0);
    new.requests()[0].verify(new_secret);

    start(&host, "queued, then the endpoint goes", None);
    host.clear_webhook().unwrap();
    assert_eq!(s.deliver_due().await.unwrap().failed, 1);
    let failed = s.outbox().deliveries().unwrap().pop().unwrap();
    assert_eq!(
        failed.reason.as_deref(),
        Some("the webhook endpoint was removed")
    );
    assert_eq!(new.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_killed_mid_delivery_loses_nothing() {
    let rx = Receiver::start(|_| Reply::Slow(Duration::from_millis(200))).await;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let host = host_at(&root);
    hook(&host, &rx.url(), &[]);
    for i in 0..100 {
        let id = start(&host, &format!("kill the sender {i}"), None);
        host.complete(&id, None).unwrap();
    }
    let queued = FsOutbox::open(&root).unwrap().pending().unwrap();
    assert_eq!(queued.len(), 200);

    let bin = env!("CARGO_BIN_EXE_agent-session");
    for round in 0..4u64 {
        let mut child = std::process::Command::new(bin)
            .args(["--webhook-allow", "127.0.0.1", "--dir"])
            .arg(&root)
            .args(["deliver", "--retry-schedule", "100ms"])
            .env("AGENT_SESSION_CACHE_DIR", crate::common::cache_dir())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(150 + round * 100)).await;
        child.kill().unwrap(); // SIGKILL, in the middle of requests
        child.wait().unwrap();
    }
    let s = sender(&root, &host, config("127.0.0.1", &[100; 5]));
    let all = loop {
        let report = s.deliver_due().await.unwrap();
        if report.pending == 0 {
            break s.outbox().deliveries().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(all.len(), 200, "every notification has one record");
    assert!(all.iter().all(|d| d.state == DeliveryState::Delivered));
    let mut arrived: std::collections::HashMap<String, usize> = Default::default();
    for r in rx.requests() {
        *arrived.entry(r.id()).or_default() += 1;
    }
    for d in &queued {
        assert!(arrived.contains_key(d.id()), "{} arrived", d.id());
    }
    // At least once: only what was in flight at a kill arrives twice.
    let twice = arrived.values().filter(|&&n| n > 1).count();
    assert!(
        twice <= 4 * 16,
        "{twice} notifications arrived more than once"
    );
}
