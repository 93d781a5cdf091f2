//! Webhook delivery: the sender that drains the outbox over HTTP.
//!
//! The core decides *what* to notify and queues it in the [`Outbox`]
//! before the operation that raised it is recorded; this module decides
//! *how* it reaches the endpoint: Standard Webhooks signatures, retries with
//! exponential backoff and jitter, `Retry-After`, 410 disabling the
//! endpoint, no redirects, timeouts, an address policy against SSRF, and a
//! record of every attempt.

mod policy;
mod sign;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_session_core::{Notification, SessionError, webhook};
use anyhow::Context as _;
use reqwest::StatusCode;
use tokio::task::JoinSet;

pub use policy::{AddressPolicy, Allow, Refused};
pub use sign::signature;

use crate::outbox::{Attempt, Claims, Delivery, DeliveryState, Outbox, now_ms};
use crate::runtime::{Error, SessionHost};

/// How old a notification whose event is missing must be, its writer gone,
/// before it is discarded (far longer than an operation takes between
/// queueing and appending).
const WRITER_GRACE_MS: u64 = 10_000;

/// The longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 3600);

/// How the sender delivers.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// Which addresses may be dialled.
    pub policy: AddressPolicy,
    /// Time allowed for one request, connection to response head.
    pub timeout: Duration,
    /// Delays before the retries (the first attempt is immediate); after
    /// the last one the delivery is given up. Each delay is jittered by
    /// up to ±20 % so endpoints that come back are not hit in lockstep.
    pub schedule: Vec<Duration>,
    /// How often the outbox is looked at for notifications queued by
    /// other processes and for due retries.
    pub poll_interval: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a delivery claimed by this sender stays its own before
    /// another sender may take it over, where several deliver from one
    /// outbox (PostgreSQL). Longer than any attempt takes (`timeout` plus
    /// a little), or an attempt still in flight could be made twice.
    pub lease: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        let m = |mins: u64| Duration::from_secs(mins * 60);
        Self {
            policy: AddressPolicy::new(),
            timeout: Duration::from_secs(15),
            schedule: vec![
                Duration::from_secs(5),
                m(5),
                m(30),
                m(120),
                m(300),
                m(600),
                m(600),
            ],
            poll_interval: Duration::from_secs(1),
            concurrency: 16,
            lease: Duration::from_secs(120),
        }
    }
}

/// Parse a retry schedule such as `5s,5m,30m,2h` (units `ms`, `s`, `m`, `h`).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect()
}

/// Parse one duration such as `500ms`, `15s`, `5m` or `2h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 500ms, 15s, 5m or 2h"))?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{s:?}: the unit must be ms, s, m or h")),
    };
    n.checked_mul(scale)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// Why [`Sender::check_endpoint`] objects to an endpoint.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EndpointError {
    /// The address policy refuses it.
    #[error(transparent)]
    Refused(Refused),
    /// Its host name does not resolve (now).
    #[error("{0}")]
    Unresolved(String),
}

/// What one request came to.
enum Outcome {
    Delivered,
    /// 410: the endpoint asks never to be called again.
    Gone,
    /// Retrying cannot help: the address policy refused the endpoint, or
    /// the secret cannot sign.
    Permanent(String),
    /// Try again, at the time the endpoint asked for if it did.
    Retry(Option<Duration>),
}

/// Whether a queued notification's event is in the history.
enum Committed {
    Yes,
    No(String),
    /// Not (yet) at its position.
    NotYet,
    /// The history could not be read now.
    Unknown,
}

/// What a pass over the outbox did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    /// Deliveries that reached the endpoint.
    pub delivered: usize,
    /// Deliveries given up.
    pub failed: usize,
    /// Notifications not sent because their operation did not commit.
    pub discarded: usize,
    /// Deliveries still waiting (for a retry, or for their event).
    pub pending: usize,
    /// When the earliest of those is due, milliseconds since the epoch.
    pub next_due: Option<u64>,
}

/// Delivers the notifications of one outbox. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    inner: Arc<Inner>,
}

struct Inner {
    host: SessionHost,
    outbox: Arc<dyn Outbox>,
    client: reqwest::Client,
    config: DeliveryConfig,
}

impl Sender {
    /// A sender for `outbox`, checking commits and endpoint state through
    /// `host` (which must be on the same root).
    pub fn new(
        host: SessionHost,
        outbox: Arc<dyn Outbox>,
        config: DeliveryConfig,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(concat!("agent-session/", env!("CARGO_PKG_VERSION")))
            // A redirect is the receiver's answer, not a new destination
            // (and would bypass the address policy for literal IPs).
            .redirect(reqwest::redirect::Policy::none())
            // A proxy would dial on our behalf, past the address policy.
            .no_proxy()
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .dns_resolver(Arc::new(policy::PolicyResolver(config.policy.clone())))
            .build()
            .context("building the webhook HTTP client")?;
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                outbox,
                client,
                config,
            }),
        })
    }

    /// The outbox this sender drains.
    pub fn outbox(&self) -> &dyn Outbox {
        &*self.inner.outbox
    }

    /// The claims of this sender, or `None` while another sender has the
    /// outbox to itself.
    fn claims(&self) -> anyhow::Result<Option<Arc<dyn Claims>>> {
        let outbox = self.inner.outbox.clone();
        outbox
            .sender(self.inner.config.lease)
            .context("opening the outbox for delivery")
    }

    /// Check an endpoint URL against the address policy now: its scheme,
    /// an IP literal, or every address its host name resolves to. (The
    /// check is made again on every request.)
    pub async fn check_endpoint(&self, url: &str) -> Result<(), EndpointError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| EndpointError::Unresolved(format!("{url:?} is not a URL: {e}")))?;
        let policy = &self.inner.config.policy;
        policy::check_url(policy, &url).map_err(EndpointError::Refused)?;
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(());
        };
        if policy.allows_host(host) {
            return Ok(());
        }
        match policy::resolve(policy, host, url.port_or_known_default().unwrap_or(0)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(match e.downcast::<Refused>() {
                Ok(r) => EndpointError::Refused(*r),
                Err(e) => EndpointError::Unresolved(format!("cannot resolve {host} now: {e}")),
            }),
        }
    }

    /// Send a `webhook.test` ping to the configured endpoint once, and say
    /// what came back. Nothing is queued or recorded.
    pub async fn test(&self) -> anyhow::Result<Attempt> {
        let host = self.inner.host.clone();
        let config = host
            .run(|h| h.get_webhook())
            .await?
            .context("no webhook endpoint is set")?;
        let now = now_ms();
        let id = format!("msg_test_{now}_{:016x}", getrandom::u64().unwrap_or(now));
        let n = webhook::test_notification(&config, id, now);
        Ok(self.send(&n).await.0)
    }

    /// Put a finished delivery back in the queue and, unless another
    /// sender is running on this outbox (it will pick it up), attempt it
    /// now. Its `webhook-id` stays the same. Says whether it was attempted
    /// here.
    pub async fn redeliver(&self, id: &str) -> anyhow::Result<(Delivery, bool)> {
        let (outbox, lease, id) = (
            self.inner.outbox.clone(),
            self.inner.config.lease,
            id.to_owned(),
        );
        // Outboxes block (files, a database client that must not run on
        // the async threads).
        let (d, claimed) = blocking(move || {
            let d = outbox
                .find(&id)?
                .with_context(|| format!("no delivery with id {id}"))?;
            if d.state == DeliveryState::Pending {
                anyhow::bail!(
                    "delivery {id} is still pending (attempt {} is due at {})",
                    d.attempts.len() + 1,
                    webhook::rfc3339(d.next_attempt_at)
                );
            }
            let d = outbox.requeue(&d, now_ms())?;
            // Another sender (running, or holding the outbox) will pick it
            // up if this one cannot claim it.
            let claimed = match outbox.sender(lease)? {
                Some(claims) => claims.claim(&d)?.map(|d| (claims, d)),
                None => None,
            };
            Ok((d, claimed))
        })
        .await?;
        let Some((claims, d)) = claimed else {
            return Ok((d, false));
        };
        let d = self.attempt(d).await;
        let saved = d.clone();
        blocking(move || Ok(claims.save(&saved)?)).await?;
        Ok((d, true))
    }

    /// Attempt every delivery that is due now, wait for the attempts to
    /// finish, and report. Fails at once while another sender has the
    /// outbox to itself (a directory); on a database it works alongside
    /// other senders, on what they have not claimed.
    pub async fn deliver_due(&self) -> anyhow::Result<PassReport> {
        let Some(claims) = self.claims()? else {
            anyhow::bail!("another sender is delivering from this outbox");
        };
        let now = now_ms();
        let look = |limit: usize| {
            let claims = claims.clone();
            blocking(move || {
                claims
                    .claim_due(now, limit)
                    .context("claiming due deliveries")
            })
        };
        let mut report = PassReport::default();
        let mut unrecorded = None;
        let mut tasks = JoinSet::new();
        // Claimed as there is room, not all at once: a claim's lease runs
        // from when it is taken, and must outlast its attempt.
        let mut more = true;
        loop {
            let room = self.inner.config.concurrency.saturating_sub(tasks.len());
            if more && room > 0 {
                let claimed = look(room).await?;
                more = claimed.due.len() == room;
                for d in claimed.due {
                    tasks.spawn(self.clone().attempt_and_save(claims.clone(), d));
                }
            }
            let Some(done) = tasks.join_next().await else {
                break;
            };
            // An attempt whose record failed is not counted (the claims
            // hand it out again); the others go on.
            match done.context("a delivery task failed")? {
                (d, Ok(())) => report.count(&d),
                (_, Err(e)) => unrecorded = Some(e),
            }
        }
        if let Some(e) = unrecorded {
            return Err(e);
        }
        // What waits now, retries made in this pass included.
        let left = look(0).await?;
        report.pending = left.waiting;
        report.next_due = left.next_due;
        Ok(report)
    }

    /// Deliver until `shutdown` completes: notifications queued by this
    /// process or any other on the same root, retries when due. Waits for
    /// the sender lock if another sender holds it. Attempts in flight at
    /// shutdown are finished and recorded.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        let tick = self.inner.config.poll_interval;
        tokio::pin!(shutdown);
        let claims = loop {
            if let Some(claims) = self.claims()? {
                break claims;
            }
            tokio::select! {
                () = &mut shutdown => return Ok(()),
                () = tokio::time::sleep(tick) => {}
            }
        };
        let mut tasks = JoinSet::new();
        let mut last_look: Option<Instant> = None;
        // When the earliest delivery not claimed yet falls due, and whether
        // the last look left due ones for lack of room.
        let mut next_due: Option<u64> = None;
        let mut more = false;
        loop {
            let room = self.inner.config.concurrency.saturating_sub(tasks.len());
            // Looked at every tick (for what other processes queued), when
            // a retry falls due, and as soon as there is room for more.
            let look = last_look.is_none_or(|t| t.elapsed() >= tick)
                || more
                || next_due.is_some_and(|t| t <= now_ms());
            if room > 0 && look {
                last_look = Some(Instant::now());
                let (c, now) = (claims.clone(), now_ms());
                let claimed = tokio::task::spawn_blocking(move || c.claim_due(now, room))
                    .await
                    .map_err(anyhow::Error::from)
                    .and_then(|r| r.map_err(anyhow::Error::from));
                match claimed {
                    Ok(claimed) => {
                        more = claimed.due.len() == room;
                        // What was due and not handed out is another
                        // sender's: not looked at again before the tick.
                        next_due = claimed.next_due.filter(|&t| t > now);
                        for d in claimed.due {
                            tasks.spawn(self.clone().attempt_and_save(claims.clone(), d));
                        }
                    }
                    // Looked at again at the next tick (not before: the
                    // store may be down); what is in flight goes on.
                    Err(e) => {
                        tracing::warn!("claiming due deliveries: {e:#}");
                        next_due = None;
                        more = false;
                    }
                }
            }
            let room = self.inner.config.concurrency.saturating_sub(tasks.len());
            let until_due = match (room, next_due) {
                // Full: woken by a task finishing.
                (0, _) => tick,
                (_, Some(t)) => Duration::from_millis(t.saturating_sub(now_ms())).min(tick),
                (_, None) => tick,
            };
            tokio::select! {
                () = &mut shutdown => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    // A failure to record is logged by the task; the claims
                    // hand the delivery out again.
                    let _recorded = done.context("a delivery task failed")?;
                }
                () = tokio::time::sleep(until_due) => {}
            }
        }
        while tasks.join_next().await.is_some() {}
        Ok(())
    }

    /// Run [`Sender::run`] on the current tokio runtime until the returned
    /// handle is stopped.
    pub fn spawn(&self) -> SenderTask {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let me = self.clone();
        let task = tokio::spawn(async move {
            me.run(async {
                let _ = stopped.await;
            })
            .await
        });
        SenderTask { stop, task }
    }

    /// Attempt a pending delivery and record the outcome; a finished one
    /// (whose record could not be written before) is only recorded.
    async fn attempt_and_save(
        self,
        claims: Arc<dyn Claims>,
        d: Delivery,
    ) -> (Delivery, anyhow::Result<()>) {
        let d = match d.state {
            DeliveryState::Pending => self.attempt(d).await,
            _ => d,
        };
        let saved = d.clone();
        let result = tokio::task::spawn_blocking(move || claims.save(&saved))
            .await
            .context("recording a delivery")
            .and_then(|r| r.with_context(|| format!("recording delivery {}", d.id())));
        if let Err(e) = &result {
            tracing::warn!(id = d.id(), "{e:#}");
            return (d, result);
        }
        let last = d.attempts.last();
        tracing::info!(
            id = d.id(),
            kind = %d.notification.kind,
            state = d.state.as_str(),
            attempts = d.attempts.len(),
            status = last.and_then(|a| a.status),
            error = last.and_then(|a| a.error.as_deref()),
            reason = d.reason.as_deref(),
            "delivery"
        );
        (d, Ok(()))
    }

    /// One step of a delivery: check that its event was committed (before
    /// the first attempt), then send it and decide what comes next.
    async fn attempt(&self, mut d: Delivery) -> Delivery {
        let now = now_ms();
        // Looked at again soon while its writer may still append, less
        // often once that has taken long.
        let wait = |ms_queued: u64| match ms_queued {
            0..60_000 => 1000,
            _ => 30_000,
        };
        if d.attempts.is_empty() && !d.notification.session_id.is_empty() {
            // A writer can append and end between two looks, and a database
            // writer whose connection broke looks gone while its process
            // goes on: so a notification is given up only once it is old,
            // and its event is still missing on a look made after its
            // writer was seen gone.
            let mut writer_gone = false;
            loop {
                match self.committed(&d.notification).await {
                    Committed::Yes => break,
                    Committed::No(why) => return finish(d, DeliveryState::Discarded, why),
                    Committed::Unknown => {
                        d.next_attempt_at = now.saturating_add(5000);
                        return d;
                    }
                    Committed::NotYet if writer_gone => {
                        let why = format!(
                            "session {} never recorded event {}: the process that queued \
                             this notification ended before its operation completed (or \
                             the session was deleted before it could be checked)",
                            d.notification.session_id, d.notification.seq
                        );
                        return finish(d, DeliveryState::Discarded, why);
                    }
                    Committed::NotYet => {
                        let alive = match &d.writer {
                            Some(writer) => {
                                let (outbox, writer) = (self.inner.outbox.clone(), writer.clone());
                                tokio::task::spawn_blocking(move || outbox.writer_alive(&writer))
                                    .await
                                    .unwrap_or(Ok(true))
                                    .unwrap_or(true)
                            }
                            None => false,
                        };
                        let queued = now.saturating_sub(d.notification.timestamp);
                        if alive || queued < WRITER_GRACE_MS {
                            d.next_attempt_at = now.saturating_add(wait(queued));
                            return d;
                        }
                        writer_gone = true;
                    }
                }
            }
        }
        if let Err(why) = self.aim(&mut d.notification).await {
            return finish(d, DeliveryState::Failed, why);
        }
        let (attempt, outcome) = self.send(&d.notification).await;
        d.attempts.push(attempt);
        match outcome {
            Outcome::Delivered => finish(d, DeliveryState::Delivered, String::new()),
            Outcome::Gone => {
                self.disable_endpoint(&d.notification.url).await;
                finish(
                    d,
                    DeliveryState::Failed,
                    "the endpoint answered 410 Gone and was disabled".into(),
                )
            }
            Outcome::Permanent(why) => finish(d, DeliveryState::Failed, why),
            Outcome::Retry(asked) => {
                let n = d.attempts.len();
                match self.inner.config.schedule.get(n - 1) {
                    None => {
                        let why = match n {
                            1 => "gave up after 1 attempt".to_owned(),
                            n => format!("gave up after {n} attempts"),
                        };
                        finish(d, DeliveryState::Failed, why)
                    }
                    Some(&step) => {
                        // Retry-After asks for at least that long.
                        let wait = asked.map_or(jitter(step), |a| a.max(jitter(step)));
                        d.next_attempt_at = now_ms().saturating_add(wait.as_millis() as u64);
                        d
                    }
                }
            }
        }
    }

    async fn committed(&self, n: &Notification) -> Committed {
        let (id, seq) = (n.session_id.clone(), n.seq);
        match self.inner.host.run(move |h| h.events(&id, seq, 1)).await {
            Ok(page) => match page.events.first() {
                Some(e) if webhook::describes(n, e) => Committed::Yes,
                Some(e) => Committed::No(format!(
                    "event {seq} of session {} is another {} event: the operation that \
                     queued this notification lost a race and was not recorded",
                    n.session_id, e.kind
                )),
                None => Committed::NotYet,
            },
            // No such session: a start whose append never happened (or
            // not yet) looks the same as a session deleted since, so a
            // start is treated as not there yet. Any later event was raised
            // on a session that existed: deleted since, so sent, as
            // dropping a committed event's notification is the worse
            // mistake.
            Err(Error::Session(SessionError::NotFound(_))) if n.seq == 0 => Committed::NotYet,
            Err(Error::Session(SessionError::NotFound(_))) => Committed::Yes,
            Err(e) => {
                tracing::warn!(session = %n.session_id, "checking a notification's event: {e}");
                Committed::Unknown
            }
        }
    }

    /// Point `n` at the endpoint as configured now (its URL or secret may
    /// have changed since it was queued), or say why it must not be sent.
    async fn aim(&self, n: &mut Notification) -> Result<(), String> {
        let config = match self.inner.host.run(|h| h.get_webhook()).await {
            Ok(c) => c,
            // Not knowing is no reason to give up: send as queued.
            Err(e) => {
                tracing::warn!("reading the webhook endpoint: {e}");
                return Ok(());
            }
        };
        match config {
            None => Err("the webhook endpoint was removed".into()),
            Some(c) if !c.enabled => Err("the webhook endpoint is disabled".into()),
            Some(c) if !webhook::accepts(&c, &n.kind) => Err(format!(
                "the webhook endpoint no longer subscribes to {}",
                n.kind
            )),
            Some(c) => {
                n.url = c.url;
                n.secret = c.secret;
                Ok(())
            }
        }
    }

    async fn disable_endpoint(&self, url: &str) {
        let url = url.to_owned();
        let result = self
            .inner
            .host
            .run(move |h| match h.get_webhook()? {
                // Only if it still points where the 410 came from.
                Some(mut c) if c.url == url && c.enabled => {
                    c.enabled = false;
                    h.set_webhook(&c).map(drop)
                }
                _ => Ok(()),
            })
            .await;
        match result {
            Ok(()) => tracing::warn!("webhook endpoint answered 410 Gone; it is now disabled"),
            Err(e) => tracing::warn!("disabling the webhook endpoint after a 410: {e}"),
        }
    }

    /// One signed POST, no retry, no record.
    async fn send(&self, n: &Notification) -> (Attempt, Outcome) {
        let started = Instant::now();
        let at = now_ms();
        let result = self.post(n).await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let attempt = |status: Option<StatusCode>, error: Option<String>| Attempt {
            at,
            duration_ms,
            status: status.map(|s| s.as_u16()),
            error,
        };
        match result {
            Ok(resp) => {
                let status = resp.status();
                let outcome = match status.as_u16() {
                    200..=299 => Outcome::Delivered,
                    410 => Outcome::Gone,
                    429 | 503 => Outcome::Retry(retry_after(resp.headers())),
                    _ => Outcome::Retry(None),
                };
                let error = match &outcome {
                    Outcome::Delivered => None,
                    _ if status.is_redirection() => Some(format!(
                        "the endpoint answered {status} (redirects are not followed)"
                    )),
                    _ => Some(format!("the endpoint answered {status}")),
                };
                (attempt(Some(status), error), outcome)
            }
            Err(SendError::Refused(r)) => {
                let why = r.to_string();
                (attempt(None, Some(why.clone())), Outcome::Permanent(why))
            }
            Err(SendError::Permanent(why)) => {
                (attempt(None, Some(why.clone())), Outcome::Permanent(why))
            }
            Err(SendError::Other(e)) => (attempt(None, Some(e)), Outcome::Retry(None)),
        }
    }

    async fn post(&self, n: &Notification) -> Result<reqwest::Response, SendError> {
        let url = reqwest::Url::parse(&n.url).map_err(|e| SendError::Other(e.to_string()))?;
        policy::check_url(&self.inner.config.policy, &url).map_err(SendError::Refused)?;
        let ts = now_ms() / 1000;
        let sig = signature(&n.secret, &n.id, ts, &n.body).map_err(SendError::Permanent)?;
        self.inner
            .client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &n.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(n.body.clone())
            .send()
            .await
            .map_err(SendError::from_reqwest)
    }
}

enum SendError {
    Refused(Refused),
    Permanent(String),
    Other(String),
}

impl SendError {
    fn from_reqwest(e: reqwest::Error) -> Self {
        // The resolver's refusal comes back wrapped by the client.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = source {
            if let Some(r) = s.downcast_ref::<Refused>() {
                return Self::Refused(r.clone());
            }
            source = s.source();
        }
        let what = if e.is_timeout() {
            "timed out".to_owned()
        } else if e.is_connect() {
            "could not connect".to_owned()
        } else {
            "request failed".to_owned()
        };
        // The chain holds the useful part (e.g. "connection refused").
        let mut detail = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            detail = s.to_string();
            source = s.source();
        }
        Self::Other(match detail.is_empty() {
            true => what,
            false => format!("{what}: {detail}"),
        })
    }
}

/// A running [`Sender::run`], stopped with [`SenderTask::stop`].
pub struct SenderTask {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl SenderTask {
    /// Stop after the attempts in flight are recorded.
    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the sender task failed")?
    }
}

impl PassReport {
    /// Count a finished attempt (what is still pending is counted from the
    /// outbox at the end of the pass).
    fn count(&mut self, d: &Delivery) {
        match d.state {
            DeliveryState::Delivered => self.delivered += 1,
            DeliveryState::Failed => self.failed += 1,
            DeliveryState::Discarded => self.discarded += 1,
            DeliveryState::Pending => {}
        }
    }
}

/// Run `f` on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .context("a blocking task failed")?
}

fn finish(mut d: Delivery, state: DeliveryState, reason: String) -> Delivery {
    d.state = state;
    d.reason = (!reason.is_empty()).then_some(reason);
    d
}

/// `Retry-After` as seconds or an HTTP date, capped.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => {
            let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
            let ms = at.timestamp_millis().max(0) as u64;
            Duration::from_millis(ms.saturating_sub(now_ms()))
        }
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// `d` ± up to 20 %.
fn jitter(d: Duration) -> Duration {
    let r = getrandom::u64().unwrap_or(0) % 4001;
    d.mul_f64(0.8 + r as f64 / 10_000.0)
}
