//! The session engine: every rule of the session API lives here.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::codec;
use crate::error::{SessionError, StoreError};
use crate::model::{
    CleanupReport, Event, EventPage, Learning, Resumption, Session, SessionFilter, SessionPage,
    SessionStats, SessionStatus, StartOptions, ToolCall, WebhookConfig, event_kind,
};
use crate::ports::{Environment, Notifier, Store};
use crate::validate;
use crate::webhook;

/// Collection holding one document (and one event log) per session.
pub const SESSIONS: &str = "sessions";
/// Collection holding host-wide settings such as the webhook endpoint.
pub const CONFIG: &str = "config";
/// Key of the webhook endpoint in [`CONFIG`].
pub const WEBHOOK_KEY: &str = "webhook";

/// Iteration bound when `start` is given none.
pub const DEFAULT_MAX_ITERATIONS: u32 = 100;
/// Mode when `start` is given none.
pub const DEFAULT_MODE: &str = "default";
/// Retention of ended sessions when `cleanup` is given none.
pub const DEFAULT_RETENTION_DAYS: u32 = 30;
/// How many events `recent_events` returns.
pub const RECENT_EVENTS: u64 = 10;
/// Marks an exported document.
pub const EXPORT_FORMAT: &str = "agent-session/export";

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Keys fetched per store call when scanning a collection.
const SCAN_BATCH: u32 = 256;

/// The session engine over a store, a notifier and an environment.
///
/// The engine holds no state of its own: everything is in the store, so
/// any number of engines (in any number of processes or hosts) can share
/// one store. Concurrent writers are serialized by document versions; a
/// stale write fails with [`SessionError::Conflict`].
pub struct Engine<S, N, E> {
    store: S,
    notifier: N,
    env: E,
}

/// What a state change appends to the history.
struct NewEvent {
    kind: String,
    data: Value,
}

impl NewEvent {
    fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            data,
        }
    }
}

impl<S: Store, N: Notifier, E: Environment> Engine<S, N, E> {
    /// An engine over the given capabilities.
    pub fn new(store: S, notifier: N, env: E) -> Self {
        Self {
            store,
            notifier,
            env,
        }
    }

    /// The store this engine writes to.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The notifier this engine queues notifications with.
    pub fn notifier(&self) -> &N {
        &self.notifier
    }

    /// The clock and randomness this engine uses.
    pub fn env(&self) -> &E {
        &self.env
    }

    // ----- lifecycle -----

    /// Start a new active session and record its `start` event.
    pub fn start(&self, options: StartOptions) -> Result<Session, SessionError> {
        validate::text("task", &options.task, validate::MAX_TASK_BYTES)?;
        let mode = options.mode.unwrap_or_else(|| DEFAULT_MODE.to_owned());
        validate::name("mode", &mode)?;
        for (what, v) in [
            ("user id", &options.user_id),
            ("channel id", &options.channel_id),
        ] {
            if let Some(v) = v {
                validate::name(what, v)?;
            }
        }
        let max_iterations = options.max_iterations.unwrap_or(DEFAULT_MAX_ITERATIONS);
        if max_iterations == 0 || max_iterations > validate::MAX_ITERATIONS_LIMIT {
            return Err(SessionError::InvalidInput(format!(
                "max iterations must be between 1 and {}, got {max_iterations}",
                validate::MAX_ITERATIONS_LIMIT
            )));
        }
        let context = match options.context {
            Some(v) => validate::json_object("context", v)?,
            None => Map::new(),
        };
        let now = self.env.now_ms();
        let mut session = Session {
            id: self.new_id(now),
            task: options.task,
            mode,
            user_id: options.user_id,
            channel_id: options.channel_id,
            status: SessionStatus::Active,
            iteration: 0,
            max_iterations,
            context,
            pause_reason: None,
            result: None,
            error: None,
            created_at: now,
            updated_at: now,
            ended_at: None,
            event_count: 0,
            version: 0,
        };
        let start = NewEvent::new(
            event_kind::START,
            json!({
                "task": session.task,
                "mode": session.mode,
                "user_id": session.user_id,
                "channel_id": session.channel_id,
                "max_iterations": session.max_iterations,
                "context": session.context,
            }),
        );
        self.commit(&mut session, 0, vec![start])?;
        Ok(session)
    }

    /// Read a session.
    pub fn get(&self, id: &str) -> Result<Session, SessionError> {
        validate::id("session id", id)?;
        self.load(id)
    }

    /// Pause an active session.
    pub fn pause(&self, id: &str, reason: Option<String>) -> Result<Session, SessionError> {
        if let Some(r) = &reason {
            validate::text("pause reason", r, validate::MAX_TEXT_BYTES)?;
        }
        self.update(id, |s, _| {
            require(s, &[SessionStatus::Active], "pause")?;
            s.status = SessionStatus::Paused;
            s.pause_reason = reason;
            Ok(vec![NewEvent::new(
                event_kind::PAUSE,
                json!({ "reason": s.pause_reason }),
            )])
        })
    }

    /// Resume a paused session.
    pub fn resume(&self, id: &str) -> Result<Session, SessionError> {
        self.update(id, |s, _| {
            require(s, &[SessionStatus::Paused], "resume")?;
            s.status = SessionStatus::Active;
            s.pause_reason = None;
            Ok(vec![NewEvent::new(
                event_kind::RESUME,
                json!({ "iteration": s.iteration }),
            )])
        })
    }

    /// Complete an active or paused session with an optional JSON result.
    pub fn complete(&self, id: &str, result: Option<Value>) -> Result<Session, SessionError> {
        if let Some(r) = &result {
            validate::json_value_size("result", r)?;
        }
        self.update(id, |s, now| {
            require(
                s,
                &[SessionStatus::Active, SessionStatus::Paused],
                "complete",
            )?;
            end(s, SessionStatus::Completed, now);
            s.result = result;
            Ok(vec![NewEvent::new(
                event_kind::COMPLETE,
                json!({ "result": s.result, "iteration": s.iteration }),
            )])
        })
    }

    /// Fail an active or paused session.
    pub fn fail(&self, id: &str, error: String) -> Result<Session, SessionError> {
        validate::text("error", &error, validate::MAX_TEXT_BYTES)?;
        self.update(id, |s, now| {
            require(s, &[SessionStatus::Active, SessionStatus::Paused], "fail")?;
            end(s, SessionStatus::Failed, now);
            s.error = Some(error);
            Ok(vec![NewEvent::new(
                event_kind::ERROR,
                json!({ "error": s.error, "iteration": s.iteration }),
            )])
        })
    }

    // ----- iterations and events -----

    /// Count one iteration of an active session. Reaching `max_iterations`
    /// ends the session with `timeout` (recorded as a second event).
    pub fn iterate(&self, id: &str, data: Option<Value>) -> Result<Session, SessionError> {
        if let Some(d) = &data {
            validate::json_value_size("iteration data", d)?;
        }
        self.update(id, |s, now| {
            require(s, &[SessionStatus::Active], "iterate")?;
            s.iteration += 1;
            let mut events = vec![NewEvent::new(
                event_kind::ITERATION,
                json!({ "iteration": s.iteration, "data": data }),
            )];
            if s.iteration >= s.max_iterations {
                end(s, SessionStatus::Timeout, now);
                events.push(NewEvent::new(
                    event_kind::TIMEOUT,
                    json!({ "iteration": s.iteration, "max_iterations": s.max_iterations }),
                ));
            }
            Ok(events)
        })
    }

    /// Record a tool call in an active session's history.
    pub fn record_tool_call(&self, id: &str, call: ToolCall) -> Result<Event, SessionError> {
        validate::name("tool name", &call.name)?;
        validate::json_value_size("tool input", &call.input)?;
        validate::json_value_size("tool output", &call.output)?;
        self.record(
            id,
            &[SessionStatus::Active],
            "record a tool call on",
            || {
                NewEvent::new(
                    event_kind::TOOL_CALL,
                    json!({
                        "name": call.name,
                        "input": call.input,
                        "output": call.output,
                        "duration_ms": call.duration_ms,
                    }),
                )
            },
        )
    }

    /// Record a learning in an active or paused session's history.
    pub fn record_learning(&self, id: &str, learning: Learning) -> Result<Event, SessionError> {
        validate::text("insight", &learning.insight, validate::MAX_TEXT_BYTES)?;
        if let Some(f) = &learning.expertise_file {
            validate::name("expertise file", f)?;
        }
        self.record(
            id,
            &[SessionStatus::Active, SessionStatus::Paused],
            "record a learning on",
            || {
                NewEvent::new(
                    event_kind::LEARNING,
                    json!({
                        "insight": learning.insight,
                        "expertise_file": learning.expertise_file,
                    }),
                )
            },
        )
    }

    /// Record a custom event in an active or paused session's history.
    pub fn record_event(&self, id: &str, kind: &str, data: Value) -> Result<Event, SessionError> {
        validate::custom_kind(kind)?;
        validate::json_value_size("event data", &data)?;
        self.record(
            id,
            &[SessionStatus::Active, SessionStatus::Paused],
            "record an event on",
            || NewEvent::new(kind, data),
        )
    }

    /// Read at most `limit` events from position `from`.
    pub fn events(&self, id: &str, from: u64, limit: u32) -> Result<EventPage, SessionError> {
        validate::id("session id", id)?;
        validate::page_limit(limit)?;
        let session = self.load(id)?;
        let events = self.read_events(&session, from, limit)?;
        // Records carry their position; a position lost to a crash between
        // the document write and the append is skipped, not waited for.
        let next = events.last().map_or(session.event_count, |e| e.seq + 1);
        Ok(EventPage {
            events,
            next_seq: (next < session.event_count).then_some(next),
        })
    }

    /// The last [`RECENT_EVENTS`] events, oldest first.
    pub fn recent_events(&self, id: &str) -> Result<Vec<Event>, SessionError> {
        validate::id("session id", id)?;
        let session = self.load(id)?;
        self.recent(&session)
    }

    // ----- context -----

    /// Merge a JSON object into the context: top-level keys are replaced, a
    /// `null` value removes its key.
    pub fn update_context(&self, id: &str, patch: Value) -> Result<Session, SessionError> {
        let patch = validate::json_object("context patch", patch)?;
        self.update(id, |s, _| {
            require(
                s,
                &[SessionStatus::Active, SessionStatus::Paused],
                "update the context of",
            )?;
            for (k, v) in &patch {
                if v.is_null() {
                    s.context.remove(k);
                } else {
                    s.context.insert(k.clone(), v.clone());
                }
            }
            let size = Value::Object(s.context.clone()).to_string().len();
            if size > validate::MAX_JSON_BYTES {
                return Err(SessionError::LimitExceeded(format!(
                    "the merged context would be {size} bytes; the limit is {}",
                    validate::MAX_JSON_BYTES
                )));
            }
            Ok(vec![NewEvent::new(
                event_kind::CONTEXT,
                json!({ "keys": patch.keys().collect::<Vec<_>>() }),
            )])
        })
    }

    /// The session, its recent history and whether it can be resumed.
    pub fn resumption_context(&self, id: &str) -> Result<Resumption, SessionError> {
        validate::id("session id", id)?;
        let session = self.load(id)?;
        let recent_events = self.recent(&session)?;
        Ok(Resumption {
            resumable: session.is_resumable(),
            session,
            recent_events,
        })
    }

    // ----- queries -----

    /// Sessions matching `filter`, newest first, at most `limit`.
    pub fn list(
        &self,
        filter: &SessionFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SessionPage, SessionError> {
        validate_filter(filter)?;
        validate::page_limit(limit)?;
        if let Some(c) = cursor {
            validate::id("cursor", c)?;
        }
        let mut sessions = Vec::new();
        let mut next_cursor = None;
        self.scan(cursor, |s| {
            if !filter.matches(&s) {
                return true;
            }
            if sessions.len() == limit as usize {
                // One more match exists: the page is full and not the last.
                next_cursor = sessions.last().map(|l: &Session| l.id.clone());
                return false;
            }
            sessions.push(s);
            true
        })?;
        Ok(SessionPage {
            sessions,
            next_cursor,
        })
    }

    /// Aggregates over the sessions matching `filter`.
    pub fn stats(&self, filter: &SessionFilter) -> Result<SessionStats, SessionError> {
        validate_filter(filter)?;
        let mut by_status: BTreeMap<SessionStatus, u64> =
            SessionStatus::ALL.iter().map(|s| (*s, 0)).collect();
        let mut by_mode = BTreeMap::new();
        let (mut total, mut iterations) = (0u64, 0u64);
        self.scan(None, |s| {
            if filter.matches(&s) {
                total += 1;
                iterations += u64::from(s.iteration);
                *by_status.entry(s.status).or_default() += 1;
                *by_mode.entry(s.mode).or_default() += 1;
            }
            true
        })?;
        let completed = by_status[&SessionStatus::Completed];
        let ended =
            completed + by_status[&SessionStatus::Failed] + by_status[&SessionStatus::Timeout];
        Ok(SessionStats {
            total,
            by_status,
            by_mode,
            average_iterations: if total == 0 {
                0.0
            } else {
                iterations as f64 / total as f64
            },
            success_rate: if ended == 0 {
                0.0
            } else {
                completed as f64 / ended as f64
            },
        })
    }

    // ----- maintenance -----

    /// Remove ended sessions whose end is more than `older_than_days` ago.
    /// Active and paused sessions are never removed.
    pub fn cleanup(
        &self,
        older_than_days: Option<u32>,
        dry_run: bool,
    ) -> Result<CleanupReport, SessionError> {
        let days = older_than_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if days > 36_500 {
            return Err(SessionError::InvalidInput(format!(
                "older-than must be at most 36500 days, got {days}"
            )));
        }
        let cutoff = self.env.now_ms().saturating_sub(u64::from(days) * DAY_MS);
        let mut expired = Vec::new();
        self.scan(None, |s| {
            if s.status.is_terminal() && s.ended_at.unwrap_or(s.updated_at) <= cutoff {
                expired.push((s.id, s.version));
            }
            true
        })?;
        let mut removed = Vec::new();
        for (id, version) in expired {
            if !dry_run {
                match self.store.remove(SESSIONS, &id, version) {
                    Ok(()) => {}
                    // Changed since the scan (e.g. re-imported): leave it.
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            removed.push(id);
        }
        Ok(CleanupReport { dry_run, removed })
    }

    /// Remove one session and its history, whatever its status.
    pub fn delete(&self, id: &str) -> Result<(), SessionError> {
        validate::id("session id", id)?;
        let session = self.load(id)?;
        self.store
            .remove(SESSIONS, id, session.version)
            .map_err(|e| conflict_for(id, e))
    }

    /// The session and its whole history as a portable JSON document.
    pub fn export(&self, id: &str) -> Result<Value, SessionError> {
        validate::id("session id", id)?;
        let session = self.load(id)?;
        let events = self.read_events(&session, 0, u32::MAX)?;
        Ok(json!({
            "format": EXPORT_FORMAT,
            "schema": codec::SCHEMA_VERSION,
            "session": session,
            "events": events,
        }))
    }

    /// Recreate a session from an exported document. The id is kept and
    /// must not exist yet.
    pub fn import(&self, document: Value) -> Result<Session, SessionError> {
        let bad = |m: String| SessionError::InvalidInput(format!("export document: {m}"));
        let Value::Object(mut doc) = document else {
            return Err(bad("must be a JSON object".into()));
        };
        if doc.get("format").and_then(Value::as_str) != Some(EXPORT_FORMAT) {
            return Err(bad(format!("\"format\" must be {EXPORT_FORMAT:?}")));
        }
        if doc.get("schema").and_then(Value::as_u64) != Some(u64::from(codec::SCHEMA_VERSION)) {
            return Err(bad(format!("\"schema\" must be {}", codec::SCHEMA_VERSION)));
        }
        let mut session: Session =
            serde_json::from_value(doc.remove("session").unwrap_or(Value::Null))
                .map_err(|e| bad(format!("\"session\": {e}")))?;
        let events: Vec<Event> =
            serde_json::from_value(doc.remove("events").unwrap_or(Value::Null))
                .map_err(|e| bad(format!("\"events\": {e}")))?;
        validate_imported(&session, &events).map_err(|e| bad(e.message().to_owned()))?;
        session.version = 0;
        let records = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>, _>>()?;
        self.put_session(&mut session, 0)?;
        for (event, record) in events.iter().zip(&records) {
            self.store
                .append(SESSIONS, &session.id, event.seq, record)?;
        }
        Ok(session)
    }

    // ----- webhooks -----

    /// Set (or replace) the webhook endpoint.
    pub fn set_webhook(&self, config: WebhookConfig) -> Result<WebhookConfig, SessionError> {
        webhook::validate_config(&config)?;
        let version = self
            .store
            .get(CONFIG, WEBHOOK_KEY)?
            .map_or(0, |v| v.version);
        self.store
            .put(CONFIG, WEBHOOK_KEY, &codec::encode(&config)?, version)
            .map_err(|e| conflict_for("the webhook configuration", e))?;
        Ok(config)
    }

    /// The webhook endpoint, if one is set.
    pub fn get_webhook(&self) -> Result<Option<WebhookConfig>, SessionError> {
        self.store
            .get(CONFIG, WEBHOOK_KEY)?
            .map(|v| codec::decode("the webhook configuration", &v.data))
            .transpose()
    }

    /// Remove the webhook endpoint (no error if none is set).
    pub fn clear_webhook(&self) -> Result<(), SessionError> {
        if let Some(v) = self.store.get(CONFIG, WEBHOOK_KEY)? {
            self.store
                .remove(CONFIG, WEBHOOK_KEY, v.version)
                .map_err(|e| conflict_for("the webhook configuration", e))?;
        }
        Ok(())
    }

    // ----- utilities -----

    /// Whether the session can be resumed.
    pub fn is_resumable(&self, id: &str) -> Result<bool, SessionError> {
        Ok(self.get(id)?.is_resumable())
    }

    /// Milliseconds from creation to end (or now).
    pub fn duration(&self, id: &str) -> Result<u64, SessionError> {
        Ok(self.get(id)?.duration_ms(self.env.now_ms()))
    }

    /// Progress in percent.
    pub fn progress(&self, id: &str) -> Result<f64, SessionError> {
        Ok(self.get(id)?.progress())
    }

    // ----- internals -----

    fn new_id(&self, now_ms: u64) -> String {
        let mut random = [0u8; 10];
        self.env.fill_random(&mut random);
        uuid::Builder::from_unix_timestamp_millis(now_ms, &random)
            .into_uuid()
            .to_string()
    }

    fn load(&self, id: &str) -> Result<Session, SessionError> {
        let stored = self
            .store
            .get(SESSIONS, id)?
            .ok_or_else(|| SessionError::NotFound(format!("no session with id {id}")))?;
        let mut session: Session = codec::decode(&format!("session {id}"), &stored.data)?;
        session.version = stored.version;
        Ok(session)
    }

    /// Read-modify-write of one session. `change` checks the status and
    /// edits the session; the events it returns are appended after the
    /// document write wins, so each position has exactly one writer.
    fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session, u64) -> Result<Vec<NewEvent>, SessionError>,
    ) -> Result<Session, SessionError> {
        self.apply(id, change).map(|(s, _)| s)
    }

    /// [`update`](Self::update), also returning the events written.
    fn apply(
        &self,
        id: &str,
        change: impl FnOnce(&mut Session, u64) -> Result<Vec<NewEvent>, SessionError>,
    ) -> Result<(Session, Vec<Event>), SessionError> {
        validate::id("session id", id)?;
        let mut session = self.load(id)?;
        // Keep time monotonic per session even if the clock steps back.
        let now = self.env.now_ms().max(session.updated_at);
        let events = change(&mut session, now)?;
        session.updated_at = now;
        let expected = session.version;
        let events = self.commit(&mut session, expected, events)?;
        Ok((session, events))
    }

    /// Append-only operations that return the one event they recorded.
    fn record(
        &self,
        id: &str,
        allowed: &[SessionStatus],
        verb: &str,
        event: impl FnOnce() -> NewEvent,
    ) -> Result<Event, SessionError> {
        let (_, mut events) = self.apply(id, |s, _| {
            require(s, allowed, verb)?;
            Ok(vec![event()])
        })?;
        events
            .pop()
            .ok_or_else(|| SessionError::Storage(format!("session {id}: no event was recorded")))
    }

    /// Write the document (winning its version), then append the events
    /// and queue the notifications they call for.
    fn commit(
        &self,
        session: &mut Session,
        expected_version: u64,
        events: Vec<NewEvent>,
    ) -> Result<Vec<Event>, SessionError> {
        let first_seq = session.event_count;
        session.event_count += events.len() as u64;
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| Event {
                seq: first_seq + i as u64,
                kind: e.kind,
                timestamp: session.updated_at,
                data: e.data,
            })
            .collect();
        let records = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>, _>>()?;
        self.put_session(session, expected_version)?;
        for (event, record) in events.iter().zip(&records) {
            self.store
                .append(SESSIONS, &session.id, event.seq, record)
                .map_err(|e| conflict_for(&session.id, e))?;
        }
        self.notify(session, &events)?;
        Ok(events)
    }

    fn put_session(&self, session: &mut Session, expected: u64) -> Result<(), SessionError> {
        session.version = expected + 1;
        let data = codec::encode(session)?;
        session.version = self
            .store
            .put(SESSIONS, &session.id, &data, expected)
            .map_err(|e| match e {
                StoreError::Conflict(_) if expected == 0 => SessionError::Conflict(format!(
                    "a session with id {} already exists",
                    session.id
                )),
                e => conflict_for(&session.id, e),
            })?;
        Ok(())
    }

    fn notify(&self, session: &Session, events: &[Event]) -> Result<(), SessionError> {
        let lifecycle: Vec<&Event> = events
            .iter()
            .filter(|e| webhook::notification_kind(&e.kind).is_some())
            .collect();
        if lifecycle.is_empty() {
            return Ok(());
        }
        let Some(config) = self.get_webhook()? else {
            return Ok(());
        };
        for event in lifecycle {
            let id = format!("msg_{}", self.new_id(event.timestamp));
            if let Some(n) = webhook::notification(&config, id, session, event) {
                self.notifier.enqueue(&n).map_err(|e| {
                    SessionError::Storage(format!(
                        "session {} was updated, but its {} notification could not be queued: {e}",
                        session.id, n.kind
                    ))
                })?;
            }
        }
        Ok(())
    }

    fn read_events(
        &self,
        session: &Session,
        from: u64,
        limit: u32,
    ) -> Result<Vec<Event>, SessionError> {
        if from >= session.event_count {
            return Ok(Vec::new());
        }
        let what = format!("session {} event log", session.id);
        let limit = (session.event_count - from).min(u64::from(limit)) as u32;
        let mut events = Vec::with_capacity(limit as usize);
        for record in self.store.read(SESSIONS, &session.id, from, limit)? {
            let event: Event = codec::decode(&what, &record)?;
            // Only positions the document acknowledges count: a record past
            // `event_count` belongs to a writer that has not finished.
            if event.seq < session.event_count {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn recent(&self, session: &Session) -> Result<Vec<Event>, SessionError> {
        let from = session.event_count.saturating_sub(RECENT_EVENTS);
        self.read_events(session, from, RECENT_EVENTS as u32)
    }

    /// Visit every session, newest first, after `cursor`; stop when `visit`
    /// returns false.
    fn scan(
        &self,
        cursor: Option<&str>,
        mut visit: impl FnMut(Session) -> bool,
    ) -> Result<(), SessionError> {
        let mut after = cursor.map(str::to_owned);
        loop {
            let keys = self.store.keys(SESSIONS, after.as_deref(), SCAN_BATCH)?;
            for key in &keys {
                match self.load(key) {
                    Ok(s) => {
                        if !visit(s) {
                            return Ok(());
                        }
                    }
                    // Deleted between listing and reading.
                    Err(SessionError::NotFound(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            if keys.len() < SCAN_BATCH as usize {
                return Ok(());
            }
            after = keys.last().cloned();
        }
    }
}

fn require(s: &Session, allowed: &[SessionStatus], verb: &str) -> Result<(), SessionError> {
    if allowed.contains(&s.status) {
        return Ok(());
    }
    let hint = if s.status.is_terminal() {
        " (it has ended; ended sessions are final)"
    } else {
        ""
    };
    Err(SessionError::InvalidTransition(format!(
        "cannot {verb} session {} while it is {}{hint}",
        s.id, s.status
    )))
}

fn end(s: &mut Session, status: SessionStatus, now: u64) {
    s.status = status;
    s.pause_reason = None;
    s.ended_at = Some(now);
}

fn conflict_for(what: &str, e: StoreError) -> SessionError {
    match e {
        StoreError::Conflict(m) => SessionError::Conflict(format!(
            "{what} was changed by another writer ({m}); read it again and retry"
        )),
        e => e.into(),
    }
}

fn validate_filter(f: &SessionFilter) -> Result<(), SessionError> {
    for (what, v) in [
        ("user id", &f.user_id),
        ("channel id", &f.channel_id),
        ("mode", &f.mode),
    ] {
        if let Some(v) = v {
            validate::name(what, v)?;
        }
    }
    validate::range("created range", f.created_after, f.created_before)?;
    validate::range("updated range", f.updated_after, f.updated_before)
}

fn validate_imported(s: &Session, events: &[Event]) -> Result<(), SessionError> {
    validate::id("session id", &s.id)?;
    validate::text("task", &s.task, validate::MAX_TASK_BYTES)?;
    validate::name("mode", &s.mode)?;
    validate::json_value_size("context", &Value::Object(s.context.clone()))?;
    if s.max_iterations == 0 || s.max_iterations > validate::MAX_ITERATIONS_LIMIT {
        return Err(SessionError::InvalidInput(
            "max_iterations out of range".into(),
        ));
    }
    if s.iteration > s.max_iterations {
        return Err(SessionError::InvalidInput(
            "iteration is larger than max_iterations".into(),
        ));
    }
    if s.status.is_terminal() != s.ended_at.is_some() {
        return Err(SessionError::InvalidInput(
            "ended_at must be set exactly when the status is terminal".into(),
        ));
    }
    if s.event_count != events.len() as u64 {
        return Err(SessionError::InvalidInput(format!(
            "event_count is {} but {} events are included",
            s.event_count,
            events.len()
        )));
    }
    if let Some((i, _)) = events.iter().enumerate().find(|(i, e)| e.seq != *i as u64) {
        return Err(SessionError::InvalidInput(format!(
            "events must be numbered 0, 1, 2, ... without gaps; position {i} is wrong"
        )));
    }
    Ok(())
}
