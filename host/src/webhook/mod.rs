//! Webhook delivery: the sender that drains the outbox over HTTP.
//!
//! The core decides *what* to notify and queues it in the [`Outbox`]
//! before the operation that raised it is recorded, and decides what each
//! delivery needs (`agent_session_core::delivery`: is its event committed,
//! the signed request, what an answer means, retry when, give up, disable
//! the endpoint). This module is the loop around those decisions: it
//! claims, makes the requests (no redirects, timeouts, the address policy
//! applied to every address dialled against SSRF) and records.

mod policy;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use agent_session_core::delivery::{self, Answer, Effect, Found, Ready, Request};
use agent_session_core::{Notification, SessionError, webhook};
use anyhow::Context as _;
use tokio::task::JoinSet;

pub use agent_session_core::delivery::signature;
pub use policy::{AddressPolicy, Allow, Refused};

use crate::outbox::{Attempt, Claims, Delivery, DeliveryState, Outbox, now_ms};
use crate::runtime::{Error, SessionHost};

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
        Self {
            policy: AddressPolicy::new(),
            timeout: Duration::from_secs(15),
            schedule: delivery::DEFAULT_SCHEDULE_MS
                .iter()
                .map(|&ms| Duration::from_millis(ms))
                .collect(),
            poll_interval: Duration::from_secs(1),
            concurrency: 16,
            lease: Duration::from_secs(120),
        }
    }
}

/// Parse a retry schedule such as `5s,5m,30m,2h` (units `ms`, `s`, `m`, `h`).
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule: Vec<Duration> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(parse_duration)
        .collect::<Result<_, _>>()?;
    let ms: Vec<u64> = schedule.iter().map(|d| d.as_millis() as u64).collect();
    delivery::check_schedule(&ms)?;
    Ok(schedule)
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
    /// `config.schedule` in the core's unit.
    schedule_ms: Vec<u64>,
    /// `config.policy`'s fingerprint.
    policy_id: String,
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
        let schedule_ms = config
            .schedule
            .iter()
            .map(|d| d.as_millis() as u64)
            .collect();
        let policy_id = config.policy.fingerprint();
        Ok(Self {
            inner: Arc::new(Inner {
                host,
                outbox,
                client,
                config,
                schedule_ms,
                policy_id,
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
            .sender(self.inner.config.lease, &self.inner.policy_id)
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
        let request = delivery::request(&n, now).map_err(anyhow::Error::msg)?;
        let (at, duration_ms, answer) = self.send(request).await;
        // The attempt as a delivery would record it (no retries).
        let (mut d, _) =
            delivery::record(Delivery::new(n), at, duration_ms, &answer, &[], now_ms(), 0);
        d.attempts.pop().context("an attempt was recorded")
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
        let policy_id = self.inner.policy_id.clone();
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
            let claimed = match outbox.sender(lease, &policy_id)? {
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
        // from when it is taken, and must outlast its attempt. Looked at
        // again whenever an attempt ends, for the next of its session.
        loop {
            let room = self.inner.config.concurrency.saturating_sub(tasks.len());
            if room > 0 {
                let claimed = look(room).await?;
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
                    // The next of its session may go now.
                    more = true;
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
    /// the first attempt), then send it; what comes next is the core's
    /// decision (`agent_session_core::delivery`).
    async fn attempt(&self, mut d: Delivery) -> Delivery {
        let now = now_ms();
        if !delivery::is_checked(&d) {
            let mut writer_alive = None;
            loop {
                let found = self.found(&d.notification).await;
                match delivery::check(&d, found.as_found(), writer_alive, now) {
                    Ready::Send => break,
                    Ready::Wait(at) => {
                        d.next_attempt_at = at;
                        return d;
                    }
                    Ready::Discard(why) => {
                        return delivery::finish(d, DeliveryState::Discarded, Some(why));
                    }
                    Ready::AskWriter => writer_alive = Some(self.writer_alive(&d).await),
                }
            }
        }
        let config = match self.inner.host.run(|h| h.get_webhook()).await {
            Ok(c) => Some(c),
            // Not knowing is no reason to give up: sent as queued.
            Err(e) => {
                tracing::warn!("reading the webhook endpoint: {e}");
                None
            }
        };
        if let Err(why) = delivery::aim(&mut d.notification, config.as_ref().map(Option::as_ref)) {
            return delivery::finish(d, DeliveryState::Failed, Some(why));
        }
        let (at, duration_ms, answer) = match delivery::request(&d.notification, now_ms()) {
            Ok(request) => self.send(request).await,
            Err(why) => return delivery::finish(d, DeliveryState::Failed, Some(why)),
        };
        let random = getrandom::u64().unwrap_or(0);
        let (d, effect) = delivery::record(
            d,
            at,
            duration_ms,
            &answer,
            &self.inner.schedule_ms,
            now_ms(),
            random,
        );
        if let Effect::DisableEndpoint(url) = effect {
            match self.inner.host.run(move |h| h.disable_webhook(&url)).await {
                Ok(true) => {
                    tracing::warn!("webhook endpoint answered 410 Gone; it is now disabled")
                }
                Ok(false) => {}
                Err(e) => tracing::warn!("disabling the webhook endpoint after a 410: {e}"),
            }
        }
        d
    }

    /// What the history holds at a notification's position.
    async fn found(&self, n: &Notification) -> FoundEvent {
        let (id, seq) = (n.session_id.clone(), n.seq);
        match self.inner.host.run(move |h| h.events(&id, seq, 1)).await {
            Ok(page) => match page.events.into_iter().next() {
                Some(e) => FoundEvent::Event(Box::new(e)),
                None => FoundEvent::Nothing,
            },
            Err(Error::Session(SessionError::NotFound(_))) => FoundEvent::NoSession,
            Err(e) => {
                tracing::warn!(session = %n.session_id, "checking a notification's event: {e}");
                FoundEvent::Unreadable
            }
        }
    }

    /// Whether the writer that queued `d` may still append its event (when
    /// that cannot be told, it may).
    async fn writer_alive(&self, d: &Delivery) -> bool {
        let Some(writer) = d.writer.clone() else {
            return false;
        };
        let outbox = self.inner.outbox.clone();
        tokio::task::spawn_blocking(move || outbox.writer_alive(&writer))
            .await
            .unwrap_or(Ok(true))
            .unwrap_or(true)
    }

    /// Make one request: when it started, how long it took, what came.
    async fn send(&self, request: Request) -> (u64, u64, Answer) {
        let started = Instant::now();
        let at = now_ms();
        let answer = match self.post(request).await {
            Ok(resp) => Answer::Status {
                status: resp.status().as_u16(),
                retry_after: resp
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
            },
            Err(SendError::Refused(r)) => Answer::Refused {
                reason: r.to_string(),
                policy: Some(self.inner.policy_id.clone()),
            },
            Err(SendError::Other(error)) => Answer::Failed { error },
        };
        (at, started.elapsed().as_millis() as u64, answer)
    }

    async fn post(&self, request: Request) -> Result<reqwest::Response, SendError> {
        let url = reqwest::Url::parse(&request.url).map_err(|e| SendError::Other(e.to_string()))?;
        policy::check_url(&self.inner.config.policy, &url).map_err(SendError::Refused)?;
        let mut post = self.inner.client.post(url).body(request.body);
        for (name, value) in &request.headers {
            post = post.header(name, value);
        }
        post.send().await.map_err(SendError::from_reqwest)
    }
}

/// What the history held at a notification's position (owned).
enum FoundEvent {
    Event(Box<agent_session_core::Event>),
    Nothing,
    NoSession,
    Unreadable,
}

impl FoundEvent {
    fn as_found(&self) -> Found<'_> {
        match self {
            Self::Event(e) => Found::Event(e),
            Self::Nothing => Found::Nothing,
            Self::NoSession => Found::NoSession,
            Self::Unreadable => Found::Unreadable,
        }
    }
}

enum SendError {
    Refused(Refused),
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
