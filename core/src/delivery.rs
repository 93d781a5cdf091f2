//! What became of a notification, and what happens to it next.
//!
//! The record of a delivery is shared by every outbox (the directory's, the
//! database's). The decisions are here too, as plain functions, so every
//! sender (the Rust host's, and the ones the Node and Python packages run
//! through the component) makes the same ones; a sender only claims, makes
//! the HTTP request and waits:
//!
//! 1. [`check`]: before the first attempt, is the notification's event in
//!    the history (else wait for its writer, or discard it)?
//! 2. [`aim`]: point it at the endpoint as configured now.
//! 3. [`request`]: the Standard Webhooks signed request to make.
//! 4. [`record`]: what the answer means: delivered, retried when (schedule
//!    with jitter, `Retry-After`), given up, or the endpoint disabled (410).
//!
//! And [`HoldBack`]: which pending deliveries wait for an earlier one of
//! their session.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::model::{Event, WebhookConfig};
use crate::{Notification, webhook};

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// The endpoint answered 2xx.
    Delivered,
    /// Given up: retries spent (refusals by a sender's address policy
    /// included), endpoint gone (410), removed or disabled.
    Failed,
    /// Not sent: the operation that queued it did not commit.
    Discarded,
}

impl DeliveryState {
    /// The state's name, as in the records and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Discarded => "discarded",
        }
    }
}

/// One HTTP request to the endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// When it started, milliseconds since the Unix epoch.
    pub at: u64,
    /// How long it took until the response head (or the error).
    pub duration_ms: u64,
    /// The HTTP status, if a response came.
    pub status: Option<u16>,
    /// What went wrong, if anything: connection error, timeout, refused
    /// address, non-2xx status.
    pub error: Option<String>,
    /// The sender's own address policy refused to dial the endpoint: no
    /// request was made, and a sender with another policy may try at once.
    #[serde(default, skip_serializing_if = "is_false")]
    pub refused: bool,
    /// Which policy refused it ([`AddressPolicy::fingerprint`]).
    ///
    /// [`AddressPolicy::fingerprint`]: crate::address::AddressPolicy::fingerprint
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A notification and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// What to send.
    pub notification: Notification,
    /// Where it stands.
    pub state: DeliveryState,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: u64,
    /// Every attempt, oldest first.
    pub attempts: Vec<Attempt>,
    /// Why it failed or was discarded.
    pub reason: Option<String>,
    /// Who queued it, while that may matter: as long as that writer lives,
    /// the event it announces may still be appended. What the name means
    /// is the outbox's own (an intake segment, a database session).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

impl Delivery {
    /// A delivery not attempted yet, due at once.
    pub fn new(notification: Notification) -> Self {
        Self {
            next_attempt_at: notification.timestamp,
            notification,
            state: DeliveryState::Pending,
            attempts: Vec::new(),
            reason: None,
            writer: None,
        }
    }

    /// A delivery of a notification just queued by `writer` (see
    /// [`Delivery::writer`]).
    pub fn queued_by(notification: Notification, writer: &str) -> Self {
        Self {
            writer: Some(writer.to_owned()),
            ..Self::new(notification)
        }
    }

    /// The `webhook-id`.
    pub fn id(&self) -> &str {
        &self.notification.id
    }
}

/// What a sender's look for due deliveries found.
#[derive(Debug, Default)]
pub struct Claimed {
    /// The deliveries claimed, now due.
    pub due: Vec<Delivery>,
    /// Pending deliveries not claimed here (not due yet, or another
    /// sender's).
    pub waiting: usize,
    /// When the earliest pending delivery that nobody has claimed is due,
    /// if there is one.
    pub next_due: Option<u64>,
}

/// How long a pending notification holds back the later ones of its
/// session once its first attempt was made (10 minutes). Past that, a
/// receiver that is down or a sender that may not dial it no longer stops
/// the rest: they go out, and the late one follows when it can. One not
/// attempted yet always holds (a backlog keeps its order).
pub const HOLD_BACK_MS: u64 = 10 * 60_000;

/// The longest delay a retry schedule may hold (30 days).
pub const MAX_STEP_MS: u64 = 30 * 24 * 3_600_000;

/// How old a notification whose event is missing must be, its writer gone,
/// before it is discarded (far longer than an operation takes between
/// queueing and appending).
pub const WRITER_GRACE_MS: u64 = 10_000;

/// The longest `Retry-After` honoured (a day).
pub const MAX_RETRY_AFTER_MS: u64 = 24 * 3_600_000;

/// The delays before the retries, in milliseconds, when a sender is not
/// told otherwise: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (about a day
/// and a few hours in all, eight attempts).
pub const DEFAULT_SCHEDULE_MS: [u64; 7] = [
    5_000,
    5 * 60_000,
    30 * 60_000,
    120 * 60_000,
    300 * 60_000,
    600 * 60_000,
    600 * 60_000,
];

/// What the history holds at a notification's position, as a sender read
/// it.
#[derive(Debug, Clone, Copy)]
pub enum Found<'a> {
    /// An event.
    Event(&'a Event),
    /// Nothing (yet) at that position.
    Nothing,
    /// No such session.
    NoSession,
    /// The history could not be read now.
    Unreadable,
}

/// What to do with a pending delivery before its request is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ready {
    /// Make the request.
    Send,
    /// Look again at this time (milliseconds since the epoch).
    Wait(u64),
    /// Do not send: its operation did not commit. Finish it as
    /// [`DeliveryState::Discarded`] for this reason.
    Discard(String),
    /// Say whether its writer ([`Delivery::writer`]) may still append the
    /// event, then read the history again and ask once more.
    AskWriter,
}

/// Whether `d` is past [`check`]: attempted before, or naming no session
/// (a test ping).
pub fn is_checked(d: &Delivery) -> bool {
    !d.attempts.is_empty() || d.notification.session_id.is_empty()
}

/// Before the first attempt: whether the notification's event was
/// committed. Notifications are queued just before their events are
/// appended, so one whose append lost a race or never happened (a crash in
/// between) must not be sent.
///
/// `writer_alive` is `None` on the first look. When [`Ready::AskWriter`]
/// comes back, the caller finds out, reads the history *again* (a writer
/// can append and end between two looks) and passes both. A delivery that
/// names no writer counts as having a gone one.
pub fn check(d: &Delivery, found: Found<'_>, writer_alive: Option<bool>, now: u64) -> Ready {
    let n = &d.notification;
    if is_checked(d) {
        return Ready::Send;
    }
    let nothing = match found {
        Found::Event(e) if webhook::describes(n, e) => return Ready::Send,
        Found::Event(e) => {
            return Ready::Discard(format!(
                "event {} of session {} is another {} event: the operation that \
                 queued this notification lost a race and was not recorded",
                n.seq, n.session_id, e.kind
            ));
        }
        Found::Unreadable => return Ready::Wait(now.saturating_add(5000)),
        Found::Nothing => true,
        // A start whose append never happened (or not yet) looks the same
        // as a session deleted since, so a start is treated as not there
        // yet. Any later event was raised on a session that existed:
        // deleted since, so sent, as dropping a committed event's
        // notification is the worse mistake.
        Found::NoSession => n.seq == 0,
    };
    if !nothing {
        return Ready::Send;
    }
    // A database writer whose connection broke looks gone while its
    // process goes on: so a notification is given up only once it is old,
    // and its event is still missing on a look made after its writer was
    // seen gone.
    let queued = now.saturating_sub(n.timestamp);
    // Looked at again soon while its writer may still append, less often
    // once that has taken long.
    let wait = Ready::Wait(now.saturating_add(match queued {
        0..60_000 => 1000,
        _ => 30_000,
    }));
    if queued < WRITER_GRACE_MS {
        return wait;
    }
    match writer_alive {
        None if d.writer.is_some() => Ready::AskWriter,
        Some(true) => wait,
        None | Some(false) => Ready::Discard(format!(
            "session {} never recorded event {}: the process that queued this \
             notification ended before its operation completed (or the session \
             was deleted before it could be checked)",
            n.session_id, n.seq
        )),
    }
}

/// Point `n` at the endpoint as configured now (`config`; its URL or
/// secret may have changed since it was queued), or say why it must not
/// be sent. `None` for `config` means it could not be read now: the
/// notification is sent as queued.
pub fn aim(n: &mut Notification, config: Option<Option<&WebhookConfig>>) -> Result<(), String> {
    match config {
        None => Ok(()),
        Some(None) => Err("the webhook endpoint was removed".into()),
        Some(Some(c)) if !c.enabled => Err("the webhook endpoint is disabled".into()),
        Some(Some(c)) if !webhook::accepts(c, &n.kind) => Err(format!(
            "the webhook endpoint no longer subscribes to {}",
            n.kind
        )),
        Some(Some(c)) => {
            n.url = c.url.clone();
            n.secret = c.secret.clone();
            Ok(())
        }
    }
}

/// An HTTP request to make: a `POST` of `body` to `url` with `headers`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The notification's id (its `webhook-id`).
    pub id: String,
    /// Where to send it.
    pub url: String,
    /// Header names (lower case) and values, signature included.
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

/// The signed request that sends `n` at `now` (milliseconds since the
/// epoch), or why it cannot be made (a secret that does not sign).
pub fn request(n: &Notification, now: u64) -> Result<Request, String> {
    let ts = now / 1000;
    let sig = signature(&n.secret, &n.id, ts, &n.body)?;
    Ok(Request {
        id: n.id.clone(),
        url: n.url.clone(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("webhook-id".into(), n.id.clone()),
            ("webhook-timestamp".into(), ts.to_string()),
            ("webhook-signature".into(), sig),
        ],
        body: n.body.clone(),
    })
}

/// The Standard Webhooks `webhook-signature` value for a message: `v1,` +
/// base64 of HMAC-SHA256 over `id.timestamp.body`, keyed by the
/// base64-decoded part of a `whsec_` secret.
pub fn signature(
    secret: &str,
    id: &str,
    timestamp_secs: u64,
    body: &str,
) -> Result<String, String> {
    let key = secret
        .strip_prefix("whsec_")
        .ok_or("the webhook secret does not start with whsec_")?;
    let key = BASE64
        .decode(key)
        .map_err(|e| format!("the webhook secret is not valid base64: {e}"))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{id}.{timestamp_secs}.").as_bytes());
    mac.update(body.as_bytes());
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// What a claimed delivery needs, as `Engine::prepare_delivery` decides.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// Make this request, then record its answer.
    Send(Delivery, Request),
    /// Record it as it is now: settled without a request (discarded,
    /// failed, refused by the sender's policy, or waiting for its event).
    Settled(Delivery),
}

/// What came of one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "answer")]
pub enum Answer {
    /// The endpoint answered (redirects are not followed: a 3xx is an
    /// answer), with its `Retry-After` header if it sent one.
    Status {
        /// The HTTP status.
        status: u16,
        /// The `Retry-After` header's value.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<String>,
    },
    /// The sender's address policy refused to dial the endpoint (an IP
    /// literal, or every address its name resolves to); nothing was sent.
    Refused {
        /// The policy's reason.
        reason: String,
        /// The refusing policy's [fingerprint], recorded with the attempt
        /// (a sender with the same policy does not try again before its
        /// turn).
        ///
        /// [fingerprint]: crate::address::AddressPolicy::fingerprint
        #[serde(default, skip_serializing_if = "Option::is_none")]
        policy: Option<String>,
    },
    /// No answer: the connection failed or the request timed out.
    Failed {
        /// What went wrong.
        error: String,
    },
}

/// What a sender must do besides recording the delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// Disable the endpoint, if it still points at this URL (a 410 came
    /// from it): a compare-and-set on the configuration, as it may have
    /// been set again meanwhile.
    DisableEndpoint(String),
}

/// Record an attempt made at `at` that took `duration_ms` and came to
/// `answer`, and decide what next: delivered (2xx), given up (410, or the
/// last retry of `schedule_ms` spent), or pending until the next retry
/// (the schedule's delay jittered by ±20 % with `random`, or longer if the
/// endpoint asked with `Retry-After`). A refusal by the sender's own
/// address policy is a retry like any other: it says nothing about the
/// notification, and a sender allowed to dial the endpoint may send it.
pub fn record(
    mut d: Delivery,
    at: u64,
    duration_ms: u64,
    answer: &Answer,
    schedule_ms: &[u64],
    now: u64,
    random: u64,
) -> (Delivery, Effect) {
    let mut attempt = Attempt {
        at,
        duration_ms,
        status: None,
        error: None,
        refused: false,
        policy: None,
    };
    let mut retry_after = None;
    match answer {
        Answer::Status {
            status,
            retry_after: asked,
        } => {
            attempt.status = Some(*status);
            match status {
                200..=299 => {
                    d.attempts.push(attempt);
                    return (finish(d, DeliveryState::Delivered, None), Effect::None);
                }
                410 => {
                    attempt.error = Some("the endpoint answered 410 Gone".into());
                    d.attempts.push(attempt);
                    let url = d.notification.url.clone();
                    let why = "the endpoint answered 410 Gone and was disabled".to_owned();
                    return (
                        finish(d, DeliveryState::Failed, Some(why)),
                        Effect::DisableEndpoint(url),
                    );
                }
                300..=399 => {
                    attempt.error = Some(format!(
                        "the endpoint answered {} (redirects are not followed)",
                        status_text(*status)
                    ));
                }
                429 | 503 => {
                    attempt.error = Some(format!("the endpoint answered {}", status_text(*status)));
                    retry_after = asked.as_deref().and_then(|v| retry_after_ms(v, now));
                }
                _ => {
                    attempt.error = Some(format!("the endpoint answered {}", status_text(*status)));
                }
            }
        }
        Answer::Refused { reason, policy } => {
            attempt.error = Some(reason.clone());
            attempt.refused = true;
            attempt.policy = policy.clone();
        }
        Answer::Failed { error } => attempt.error = Some(error.clone()),
    }
    d.attempts.push(attempt);
    let n = d.attempts.len();
    match schedule_ms.get(n - 1) {
        None => {
            let why = match n {
                1 => "gave up after 1 attempt".to_owned(),
                n => format!("gave up after {n} attempts"),
            };
            (finish(d, DeliveryState::Failed, Some(why)), Effect::None)
        }
        Some(&step) => {
            // Retry-After asks for at least that long.
            let wait = jitter(step, random).max(retry_after.unwrap_or(0));
            d.next_attempt_at = now.saturating_add(wait);
            (d, Effect::None)
        }
    }
}

/// Finish `d` in `state` (not pending), for `reason`.
pub fn finish(mut d: Delivery, state: DeliveryState, reason: Option<String>) -> Delivery {
    d.state = state;
    d.reason = reason.filter(|r| !r.is_empty());
    d
}

/// A pending delivery a sender whose policy has the fingerprint `policy`
/// has just taken over from another (or from before its own start): one
/// whose last attempt another policy refused is due at once, as this
/// sender may be allowed to dial it. One its own policy refused waits its
/// turn (restarting a sender does not spend the schedule).
pub fn take_over(d: &mut Delivery, now: u64, policy: &str) {
    let refused_by_another = d
        .attempts
        .last()
        .is_some_and(|a| a.refused && a.policy.as_deref() != Some(policy));
    if d.state == DeliveryState::Pending && refused_by_another {
        d.next_attempt_at = d.next_attempt_at.min(now);
    }
}

/// Check a retry schedule: each delay at most [`MAX_STEP_MS`].
pub fn check_schedule(schedule_ms: &[u64]) -> Result<(), String> {
    match schedule_ms.iter().find(|&&s| s > MAX_STEP_MS) {
        Some(s) => Err(format!(
            "a retry delay of {s} ms is longer than {} days",
            MAX_STEP_MS / (24 * 3_600_000)
        )),
        None => Ok(()),
    }
}

/// `step` ± up to 20 %, by `random`.
pub fn jitter(step_ms: u64, random: u64) -> u64 {
    let r = random % 4001; // 0..=4000 → 0.8..=1.2
    (step_ms as u128 * (8000 + r as u128) / 10_000).min(u64::MAX as u128) as u64
}

/// How long a `Retry-After` value (seconds, or an HTTP date) asks to wait
/// from `now`, capped at [`MAX_RETRY_AFTER_MS`]; `None` if unreadable.
pub fn retry_after_ms(value: &str, now: u64) -> Option<u64> {
    let value = value.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => secs.saturating_mul(1000),
        // An HTTP date: IMF-fixdate (RFC 2822's form), or the obsolete
        // RFC 850 and asctime forms a receiver may still send.
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value)
                .map(|t| t.timestamp_millis())
                .or_else(|_| {
                    ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                        .iter()
                        .find_map(|f| chrono::NaiveDateTime::parse_from_str(value, f).ok())
                        .map(|t| t.and_utc().timestamp_millis())
                        .ok_or(())
                })
                .ok()?;
            (at.max(0) as u64).saturating_sub(now)
        }
    };
    Some(wait.min(MAX_RETRY_AFTER_MS))
}

fn status_text(status: u16) -> String {
    let reason = match status {
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "",
    };
    match reason {
        "" => status.to_string(),
        r => format!("{status} {r}"),
    }
}

/// Which pending deliveries wait for an earlier one of their session.
///
/// A session's notifications go out in the order of its events: one waits
/// while an earlier one of its session is pending (in flight, or waiting
/// for a retry or for its event), unless that one's first attempt was made
/// more than [`HOLD_BACK_MS`] ago. Different sessions do not wait for each
/// other.
#[derive(Debug, Default)]
pub struct HoldBack {
    /// Per session, the lowest position among its pending deliveries that
    /// still hold the later ones back.
    first: HashMap<String, u64>,
}

impl HoldBack {
    /// The hold-backs among `pending` (every pending delivery the sender
    /// knows of, claimed or not) at `now`.
    pub fn new<'a>(pending: impl IntoIterator<Item = &'a Delivery>, now: u64) -> Self {
        let mut first: HashMap<String, u64> = HashMap::new();
        for d in pending {
            let n = &d.notification;
            let held_since = d.attempts.first().map(|a| a.at);
            if d.state != DeliveryState::Pending
                || n.session_id.is_empty()
                || held_since.is_some_and(|t| now >= t.saturating_add(HOLD_BACK_MS))
            {
                continue;
            }
            first
                .entry(n.session_id.clone())
                .and_modify(|s| *s = (*s).min(n.seq))
                .or_insert(n.seq);
        }
        Self { first }
    }

    /// Whether `d` waits for an earlier delivery of its session.
    pub fn holds(&self, d: &Delivery) -> bool {
        let n = &d.notification;
        self.first.get(&n.session_id).is_some_and(|&s| s < n.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Event;
    use serde_json::json;

    fn pending(session: &str, seq: u64, timestamp: u64) -> Delivery {
        Delivery::new(Notification {
            id: format!("msg_{session}_{seq}"),
            session_id: session.into(),
            seq,
            url: "https://hooks.example.com/a".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            kind: "session.started".into(),
            timestamp,
            body: "{}".into(),
        })
    }

    fn status(status: u16, retry_after: Option<&str>) -> Answer {
        Answer::Status {
            status,
            retry_after: retry_after.map(str::to_owned),
        }
    }

    #[test]
    fn signs_as_the_standard_webhooks_example() {
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(signature("secret", "i", 0, "").is_err());
        assert!(signature("whsec_%%%", "i", 0, "").is_err());
        let r = request(&pending("s", 0, 0).notification, 1_614_265_330_999).unwrap();
        let header = |n: &str| r.headers.iter().find(|(k, _)| k == n).unwrap().1.clone();
        assert_eq!(header("webhook-timestamp"), "1614265330");
        assert_eq!(header("webhook-id"), "msg_s_0");
    }

    #[test]
    fn answers_decide_what_next() {
        let schedule = [1000, 60_000];
        let d = pending("s", 0, 0);
        let (ok, e) = record(d.clone(), 5, 7, &status(204, None), &schedule, 10, 0);
        assert_eq!((ok.state, e), (DeliveryState::Delivered, Effect::None));
        assert_eq!(ok.attempts[0].duration_ms, 7);

        // A retry on the schedule, jittered within ±20 %.
        for random in [0, 2000, 4000, u64::MAX] {
            let (r, _) = record(d.clone(), 5, 7, &status(500, None), &schedule, 10, random);
            assert_eq!(r.state, DeliveryState::Pending);
            assert!((10 + 800..=10 + 1200).contains(&r.next_attempt_at), "{r:?}");
        }
        // Retry-After asks for longer than the schedule; it is honoured.
        let (r, _) = record(d.clone(), 5, 7, &status(429, Some("120")), &schedule, 10, 0);
        assert_eq!(r.next_attempt_at, 10 + 120_000);
        let (r, _) = record(
            d.clone(),
            5,
            7,
            &status(503, Some("garbage")),
            &schedule,
            10,
            0,
        );
        assert_eq!(r.next_attempt_at, 10 + 800);
        // Only 429 and 503 carry it.
        let (r, _) = record(d.clone(), 5, 7, &status(500, Some("120")), &schedule, 10, 0);
        assert_eq!(r.next_attempt_at, 10 + 800);

        // A redirect is an answer, retried, never followed.
        let (r, _) = record(d.clone(), 5, 7, &status(302, None), &schedule, 10, 0);
        assert!(
            r.attempts[0]
                .error
                .as_deref()
                .unwrap()
                .contains("not followed")
        );

        // 410: given up, the endpoint disabled (if it is still this one).
        let (g, e) = record(d.clone(), 5, 7, &status(410, None), &schedule, 10, 0);
        assert_eq!(g.state, DeliveryState::Failed);
        assert_eq!(
            e,
            Effect::DisableEndpoint("https://hooks.example.com/a".into())
        );

        // Given up after the last retry.
        let mut r = d.clone();
        for _ in 0..3 {
            r = record(r, 5, 7, &status(500, None), &schedule, 10, 0).0;
        }
        assert_eq!(r.state, DeliveryState::Failed);
        assert_eq!(r.reason.as_deref(), Some("gave up after 3 attempts"));
    }

    #[test]
    fn a_refusal_waits_for_an_allowed_sender() {
        let refused = Answer::Refused {
            reason: "refused to send a webhook to 127.0.0.1: a loopback address".into(),
            policy: Some(String::new()),
        };
        let (mut r, _) = record(pending("s", 0, 0), 5, 0, &refused, &[3_600_000], 10, 2000);
        assert_eq!(r.state, DeliveryState::Pending);
        assert!(r.attempts[0].refused);
        assert_eq!(r.next_attempt_at, 10 + 3_600_000);
        // A sender with the same policy, restarted, waits its turn...
        take_over(&mut r, 20, "");
        assert_eq!(r.next_attempt_at, 10 + 3_600_000);
        // ...one with another policy takes it at once.
        take_over(&mut r, 20, "127.0.0.1/32");
        assert_eq!(r.next_attempt_at, 20);
        // A failure that is not a refusal waits its turn.
        let failed = Answer::Failed {
            error: "could not connect".into(),
        };
        let (mut f, _) = record(pending("s", 0, 0), 5, 0, &failed, &[3_600_000], 10, 2000);
        take_over(&mut f, 20, "127.0.0.1/32");
        assert_eq!(f.next_attempt_at, 10 + 3_600_000);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        assert_eq!(retry_after_ms(" 5 ", 0), Some(5000));
        let now = 1_700_000_000_000;
        let date = "Tue, 14 Nov 2023 22:13:30 GMT"; // now + 10 s
        assert_eq!(retry_after_ms(date, now), Some(10_000));
        assert_eq!(
            retry_after_ms("Tuesday, 14-Nov-23 22:13:30 GMT", now),
            Some(10_000)
        );
        assert_eq!(
            retry_after_ms("Tue Nov 14 22:13:30 2023", now),
            Some(10_000)
        );
        assert_eq!(
            retry_after_ms("Tue, 14 Nov 2023 22:13:10 GMT", now),
            Some(0),
            "past"
        );
        assert_eq!(jitter(u64::MAX, 4000), u64::MAX, "no overflow");
        assert!(check_schedule(&[MAX_STEP_MS]).is_ok());
        assert!(check_schedule(&[1, MAX_STEP_MS + 1]).is_err());
        assert_eq!(retry_after_ms("99999999999", 0), Some(MAX_RETRY_AFTER_MS));
        assert_eq!(retry_after_ms("soon", 0), None);
    }

    #[test]
    fn the_first_look_checks_that_the_event_committed() {
        let d = pending("s", 1, 1_000_000);
        let with_id = |id: &str| Event {
            seq: 1,
            kind: "pause".into(),
            timestamp: 0,
            data: json!({ "webhook_id": id }),
        };
        let ours = with_id("msg_s_1");
        let theirs = with_id("msg_other");
        assert_eq!(check(&d, Found::Event(&ours), None, 1_000_000), Ready::Send);
        assert!(
            matches!(check(&d, Found::Event(&theirs), None, 1_000_000), Ready::Discard(w) if w.contains("lost a race"))
        );
        assert!(matches!(
            check(&d, Found::Unreadable, None, 1_000_000),
            Ready::Wait(_)
        ));
        // Missing: waited for while young, then its writer is asked after.
        assert_eq!(
            check(&d, Found::Nothing, None, 1_000_500),
            Ready::Wait(1_001_500)
        );
        let queued = Delivery::queued_by(d.notification.clone(), "w");
        let old = 1_000_000 + WRITER_GRACE_MS;
        assert_eq!(check(&queued, Found::Nothing, None, old), Ready::AskWriter);
        assert!(matches!(
            check(&queued, Found::Nothing, Some(true), old),
            Ready::Wait(_)
        ));
        assert!(
            matches!(check(&queued, Found::Nothing, Some(false), old), Ready::Discard(w) if w.contains("never recorded"))
        );
        // A later event of a session deleted since: sent; a start: not yet.
        assert_eq!(check(&d, Found::NoSession, None, old), Ready::Send);
        let start = pending("s", 0, 1_000_000);
        assert!(matches!(
            check(&start, Found::NoSession, None, 1_000_100),
            Ready::Wait(_)
        ));
        // Attempted before: not checked again.
        let mut tried = d.clone();
        tried.attempts.push(Attempt {
            at: 0,
            duration_ms: 0,
            status: Some(500),
            error: None,
            refused: false,
            policy: None,
        });
        assert_eq!(check(&tried, Found::Nothing, None, old), Ready::Send);
    }

    #[test]
    fn a_session_goes_in_order_and_a_long_hold_ends() {
        let a0 = pending("a", 0, 0);
        let a1 = pending("a", 1, 0);
        let a2 = pending("a", 2, 0);
        let b3 = pending("b", 3, 0);
        let all = [&a0, &a1, &a2, &b3];
        let hold = HoldBack::new(all, 1000);
        assert!(!hold.holds(&a0) && hold.holds(&a1) && hold.holds(&a2));
        assert!(!hold.holds(&b3), "other sessions do not wait");
        // Finished ones hold nothing.
        let mut done = a0.clone();
        done.state = DeliveryState::Delivered;
        let hold = HoldBack::new([&done, &a1, &a2], 1000);
        assert!(!hold.holds(&a1) && hold.holds(&a2));
        // Not attempted yet, however old: it holds (a backlog keeps its
        // order).
        let hold = HoldBack::new(all, 10 * HOLD_BACK_MS);
        assert!(hold.holds(&a1) && hold.holds(&a2));
        // Attempted first longer than the hold-back ago: the rest go.
        let tried = |mut d: Delivery, at: u64| {
            let failed = Answer::Failed {
                error: "down".into(),
            };
            d = record(d, at, 1, &failed, &[HOLD_BACK_MS * 10], at, 0).0;
            d
        };
        let a0 = tried(a0, 1000);
        let hold = HoldBack::new([&a0, &a1, &a2], 1000 + HOLD_BACK_MS - 1);
        assert!(hold.holds(&a1) && hold.holds(&a2));
        let hold = HoldBack::new([&a0, &a1, &a2], 1000 + HOLD_BACK_MS);
        assert!(!hold.holds(&a1) && hold.holds(&a2), "a1 now holds a2");
    }

    #[test]
    fn a_410_disables_only_the_endpoint_it_came_from() {
        use crate::Engine;
        use crate::memory::{ManualEnvironment, MemoryOutbox, MemoryStore};
        let e = Engine::new(
            MemoryStore::new(),
            MemoryOutbox::new(),
            ManualEnvironment::at(0),
        );
        let c = WebhookConfig {
            url: "https://hooks.example.com/a".into(),
            secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into(),
            event_kinds: vec![],
            enabled: true,
        };
        assert!(!e.disable_webhook(&c.url).unwrap(), "none set");
        e.set_webhook(c.clone()).unwrap();
        assert!(!e.disable_webhook("https://other.example.com/").unwrap());
        assert!(e.get_webhook().unwrap().unwrap().enabled);
        assert!(e.disable_webhook(&c.url).unwrap());
        assert!(!e.get_webhook().unwrap().unwrap().enabled);
        assert!(!e.disable_webhook(&c.url).unwrap(), "already disabled");
    }

    #[test]
    fn aim_follows_the_endpoint_as_set_now() {
        let mut n = pending("s", 0, 0).notification;
        let mut c = WebhookConfig {
            url: "https://new.example.com/".into(),
            secret: "whsec_c2Vjb25kLXNlY3JldC1rZXktZm9yLXRlc3Rz".into(),
            event_kinds: vec![],
            enabled: true,
        };
        aim(&mut n, Some(Some(&c))).unwrap();
        assert_eq!(n.url, c.url);
        assert_eq!(aim(&mut n, None), Ok(()));
        assert!(aim(&mut n, Some(None)).unwrap_err().contains("removed"));
        c.event_kinds = vec!["session.completed".into()];
        assert!(
            aim(&mut n, Some(Some(&c)))
                .unwrap_err()
                .contains("no longer subscribes")
        );
        c.enabled = false;
        assert!(
            aim(&mut n, Some(Some(&c)))
                .unwrap_err()
                .contains("disabled")
        );
    }
}
