//! The session engine: every rule of the session API lives here.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use crate::address::AddressPolicy;
use crate::codec;
use crate::delivery::{self, Answer, Delivery, DeliveryState, Effect, Found, Prepared, Ready};
use crate::error::{SessionError, StoreError};
use crate::model::{
    CleanupReport, Event, EventPage, IndexReport, Learning, Resumption, Session, SessionFilter,
    SessionPage, SessionRef, SessionStats, SessionStatus, SessionSummary, StartOptions, ToolCall,
    WebhookConfig, event_kind,
};
use crate::ports::{Environment, Notifier, Store};
use crate::validate;
use crate::webhook;

mod blobs;
mod checkpoints;
mod items;
mod keys;
pub use blobs::{BLOBS, INLINE_MAX, MAX_VALUE_BYTES};
pub use keys::KEYS;
#[cfg(test)]
pub(crate) use keys::key_name_for_tests;

/// Collection holding one history (and snapshot, and index entry) per session.
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
/// A snapshot is written once the history has grown this much past the
/// last one, so loading a session replays at most this many events.
pub const SNAPSHOT_EVERY: u64 = 16;

const DAY_MS: u64 = 24 * 60 * 60 * 1000;
/// Entries fetched per store call when scanning the index.
const SCAN_BATCH: u32 = 4096;
/// Records fetched per store call when reading a history.
const READ_BATCH: u32 = 1000;
/// How many times a delete reads a session that grew under it again
/// before it gives up with `conflict`.
const DELETE_ATTEMPTS: usize = 16;

/// The session engine over a store, a notifier and an environment.
///
/// The engine holds no state of its own: everything is in the store, so
/// any number of engines (in any number of processes or hosts) can share
/// one store. A session *is* its history: its state is the [`fold`] of its
/// events (from the last snapshot on). A change is appended at the
/// position the writer read as the end; if another writer got there
/// first, the store refuses it and the change fails with
/// [`SessionError::Conflict`] — never a silent overwrite.
pub struct Engine<S, N, E> {
    store: S,
    notifier: N,
    env: E,
}

/// What a state change appends to the history.
#[derive(Debug, Clone)]
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

/// One live operation with its arguments checked: each operation is
/// written once, as "check the arguments" (the constructors), then "check
/// the state and make the events" ([`Op::events`]). The public methods run
/// it against the stored state; [`Engine::import`] rebuilds it from each
/// imported event and runs it against the replayed state, so a history is
/// accepted only if the live operations could have written it.
#[derive(Debug)]
enum Op {
    Start(StartArgs),
    Iterate(Option<Value>),
    ToolCall(ToolCall),
    Learning(Learning),
    Record {
        kind: String,
        data: Value,
    },
    Pause(Option<String>),
    Resume,
    Complete(Option<Value>),
    Fail(String),
    UpdateContext(Map<String, Value>),
    Items(Vec<items::ItemData>),
    PopItem(u64),
    ClearItems,
    /// Checkpoint, writes and drop events, made by `checkpoints.rs` (or
    /// read back from an import, where only their shape is checked).
    Checkpointing(Vec<NewEvent>),
}

/// [`StartOptions`] checked, with the defaults filled in.
#[derive(Debug)]
struct StartArgs {
    key: Option<String>,
    task: String,
    mode: String,
    user_id: Option<String>,
    channel_id: Option<String>,
    max_iterations: u32,
    context: Map<String, Value>,
}

impl StartArgs {
    fn event(self) -> NewEvent {
        let mut data = json!({
            "task": self.task,
            "mode": self.mode,
            "user_id": self.user_id,
            "channel_id": self.channel_id,
            "max_iterations": self.max_iterations,
            "context": self.context,
        });
        // Only when there is one: histories of sessions without a key read
        // as they always have.
        if let (Some(key), Some(d)) = (self.key, data.as_object_mut()) {
            d.insert("key".into(), Value::String(key));
        }
        NewEvent::new(event_kind::START, data)
    }
}

impl Op {
    fn start(options: StartOptions) -> Result<Self, SessionError> {
        validate::text("task", &options.task, validate::MAX_TASK_BYTES)?;
        if let Some(key) = &options.key {
            validate::key(key)?;
        }
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
        Ok(Self::Start(StartArgs {
            key: options.key,
            task: options.task,
            mode,
            user_id: options.user_id,
            channel_id: options.channel_id,
            max_iterations,
            context,
        }))
    }

    fn pause(reason: Option<String>) -> Result<Self, SessionError> {
        if let Some(r) = &reason {
            validate::text("pause reason", r, validate::MAX_TEXT_BYTES)?;
        }
        Ok(Self::Pause(reason))
    }

    fn complete(result: Option<Value>) -> Result<Self, SessionError> {
        if let Some(r) = &result {
            validate::json_value_size("result", r)?;
        }
        Ok(Self::Complete(result))
    }

    fn fail(error: String) -> Result<Self, SessionError> {
        validate::text("error", &error, validate::MAX_TEXT_BYTES)?;
        Ok(Self::Fail(error))
    }

    fn iterate(data: Option<Value>) -> Result<Self, SessionError> {
        if let Some(d) = &data {
            validate::json_value_size("iteration data", d)?;
        }
        Ok(Self::Iterate(data))
    }

    fn tool_call(call: ToolCall) -> Result<Self, SessionError> {
        validate::name("tool name", &call.name)?;
        validate::json_value_size("tool input", &call.input)?;
        validate::json_value_size("tool output", &call.output)?;
        // Every host must read the history back exactly.
        if call.duration_ms > validate::MAX_SAFE_INTEGER {
            return Err(SessionError::InvalidInput(format!(
                "tool duration must be at most {} ms, got {}",
                validate::MAX_SAFE_INTEGER,
                call.duration_ms
            )));
        }
        Ok(Self::ToolCall(call))
    }

    fn learning(learning: Learning) -> Result<Self, SessionError> {
        validate::text("insight", &learning.insight, validate::MAX_TEXT_BYTES)?;
        if let Some(f) = &learning.expertise_file {
            validate::name("expertise file", f)?;
        }
        Ok(Self::Learning(learning))
    }

    fn record(kind: String, data: Value) -> Result<Self, SessionError> {
        validate::custom_kind(&kind)?;
        validate::json_value_size("event data", &data)?;
        Ok(Self::Record { kind, data })
    }

    fn update_context(patch: Value) -> Result<Self, SessionError> {
        Ok(Self::UpdateContext(validate::json_object(
            "context patch",
            patch,
        )?))
    }

    /// Check that the operation is allowed on `state` (`None`: no session
    /// yet) and make the events it records.
    fn events(self, state: Option<&Session>) -> Result<Vec<NewEvent>, SessionError> {
        // Only an imported history can start twice or not start at all.
        let (op, s) = match (self, state) {
            (Self::Start(a), None) => return Ok(vec![a.event()]),
            (Self::Start(_), Some(_)) => {
                return Err(SessionError::InvalidInput("a second start event".into()));
            }
            (_, None) => {
                return Err(SessionError::InvalidInput(
                    "the history does not begin with a start event".into(),
                ));
            }
            (op, Some(s)) => (op, s),
        };
        const LIVE: &[SessionStatus] = &[SessionStatus::Active, SessionStatus::Paused];
        let one = |kind: &str, data: Value| Ok(vec![NewEvent::new(kind, data)]);
        match op {
            Self::Start(_) => unreachable!("a start was answered above"),
            Self::Pause(reason) => {
                require(s, &[SessionStatus::Active], "pause")?;
                one(event_kind::PAUSE, json!({ "reason": reason }))
            }
            Self::Resume => {
                require(s, &[SessionStatus::Paused], "resume")?;
                one(event_kind::RESUME, json!({ "iteration": s.iteration }))
            }
            Self::Complete(result) => {
                require(s, LIVE, "complete")?;
                one(
                    event_kind::COMPLETE,
                    json!({ "result": result, "iteration": s.iteration }),
                )
            }
            Self::Fail(error) => {
                require(s, LIVE, "fail")?;
                one(
                    event_kind::ERROR,
                    json!({ "error": error, "iteration": s.iteration }),
                )
            }
            Self::Iterate(data) => {
                require(s, &[SessionStatus::Active], "iterate")?;
                let iteration = s.iteration + 1;
                let mut events = vec![NewEvent::new(
                    event_kind::ITERATION,
                    json!({ "iteration": iteration, "data": data }),
                )];
                if iteration >= s.max_iterations {
                    events.push(NewEvent::new(
                        event_kind::TIMEOUT,
                        json!({ "iteration": iteration, "max_iterations": s.max_iterations }),
                    ));
                }
                Ok(events)
            }
            Self::ToolCall(call) => {
                require(s, &[SessionStatus::Active], "record a tool call on")?;
                one(
                    event_kind::TOOL_CALL,
                    json!({
                        "name": call.name,
                        "input": call.input,
                        "output": call.output,
                        "duration_ms": call.duration_ms,
                    }),
                )
            }
            Self::Learning(learning) => {
                require(s, LIVE, "record a learning on")?;
                one(
                    event_kind::LEARNING,
                    json!({
                        "insight": learning.insight,
                        "expertise_file": learning.expertise_file,
                    }),
                )
            }
            Self::Record { kind, data } => {
                require(s, LIVE, "record an event on")?;
                one(&kind, data)
            }
            Self::UpdateContext(patch) => {
                require(s, LIVE, "update the context of")?;
                let mut merged = s.context.clone();
                merge_context(&mut merged, &patch);
                let size = validate::json_len(&Value::Object(merged));
                if size > validate::MAX_JSON_BYTES {
                    return Err(SessionError::LimitExceeded(format!(
                        "the merged context would be {size} bytes; the limit is {}",
                        validate::MAX_JSON_BYTES
                    )));
                }
                one(event_kind::CONTEXT, json!({ "patch": patch }))
            }
            Self::Items(items) => {
                require(s, LIVE, "add items to")?;
                Ok(items.into_iter().map(items::ItemData::event).collect())
            }
            Self::PopItem(of) => {
                require(s, LIVE, "pop an item of")?;
                if of >= s.event_count {
                    return Err(SessionError::InvalidInput(format!(
                        "an item pop names event {of}, past the history's end"
                    )));
                }
                one(event_kind::ITEM_POP, json!({ "of": of }))
            }
            Self::ClearItems => {
                require(s, LIVE, "clear the items of")?;
                one(event_kind::ITEMS_CLEAR, json!({}))
            }
            Self::Checkpointing(events) => {
                require(s, LIVE, "record checkpoints in")?;
                Ok(events)
            }
        }
    }
}

/// A session's state as read, with where its snapshot stands.
struct Loaded {
    session: Session,
    /// Version of the snapshot document (0: none).
    snapshot_version: u64,
    /// History length the snapshot covers.
    snapshot_seq: u64,
    /// The last of the events read after the snapshot (the end of the
    /// history, at most `2 * READ_BATCH`), so that a walk back from the
    /// end starts without reading them again.
    tail: Vec<Event>,
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
    ///
    /// With a [`key`](StartOptions::key), the session that has the key is
    /// returned if there is one (its options stay as they were); otherwise
    /// one is made with it. Callers racing with one key, in any number of
    /// processes, all get the same session.
    pub fn start(&self, options: StartOptions) -> Result<Session, SessionError> {
        match options.key.clone() {
            Some(key) => {
                // Checked before the key is bound, so bad options bind
                // nothing.
                Op::start(options.clone())?;
                self.start_keyed(&key, options)
            }
            None => self.create(&self.new_session_id(self.env.now_ms()), options),
        }
    }

    /// Record the `start` event of a new session with id `id`.
    fn create(&self, id: &str, options: StartOptions) -> Result<Session, SessionError> {
        let op = Op::start(options)?;
        let now = self.env.now_ms();
        let (session, _) = self.commit(id, None, op.events(None)?, now)?;
        Ok(session)
    }

    /// Read a session.
    pub fn get(&self, session: impl Into<SessionRef>) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        Ok(self.load(id)?.session)
    }

    /// Pause an active session.
    pub fn pause(
        &self,
        session: impl Into<SessionRef>,
        reason: Option<String>,
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::pause(reason)?).map(|(s, _)| s)
    }

    /// Resume a paused session.
    pub fn resume(&self, session: impl Into<SessionRef>) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::Resume).map(|(s, _)| s)
    }

    /// Complete an active or paused session with an optional JSON result.
    pub fn complete(
        &self,
        session: impl Into<SessionRef>,
        result: Option<Value>,
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::complete(result)?).map(|(s, _)| s)
    }

    /// Fail an active or paused session.
    pub fn fail(
        &self,
        session: impl Into<SessionRef>,
        error: String,
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::fail(error)?).map(|(s, _)| s)
    }

    // ----- iterations and events -----

    /// Count one iteration of an active session. Reaching `max_iterations`
    /// ends the session with `timeout`, recorded in the same atomic append.
    pub fn iterate(
        &self,
        session: impl Into<SessionRef>,
        data: Option<Value>,
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::iterate(data)?).map(|(s, _)| s)
    }

    /// Record a tool call in an active session's history.
    pub fn record_tool_call(
        &self,
        session: impl Into<SessionRef>,
        call: ToolCall,
    ) -> Result<Event, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.record(id, Op::tool_call(call)?)
    }

    /// Record a learning in an active or paused session's history.
    pub fn record_learning(
        &self,
        session: impl Into<SessionRef>,
        learning: Learning,
    ) -> Result<Event, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.record(id, Op::learning(learning)?)
    }

    /// Record a custom event in an active or paused session's history.
    pub fn record_event(
        &self,
        session: impl Into<SessionRef>,
        kind: &str,
        data: Value,
    ) -> Result<Event, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.record(id, Op::record(kind.to_owned(), data)?)
    }

    /// Read at most `limit` events from position `from`.
    pub fn events(
        &self,
        session: impl Into<SessionRef>,
        from: u64,
        limit: u32,
    ) -> Result<EventPage, SessionError> {
        let id = &self.resolve(&session.into())?;
        validate::page_limit(limit)?;
        let session = self.load(id)?.session;
        let events = self.read_events(&session, from, limit)?;
        let next = from + events.len() as u64;
        Ok(EventPage {
            events,
            next_seq: (next < session.event_count).then_some(next),
        })
    }

    /// The last [`RECENT_EVENTS`] events, oldest first.
    pub fn recent_events(
        &self,
        session: impl Into<SessionRef>,
    ) -> Result<Vec<Event>, SessionError> {
        let id = &self.resolve(&session.into())?;
        let session = self.load(id)?.session;
        self.recent(&session)
    }

    // ----- context -----

    /// Merge a JSON object into the context: top-level keys are replaced, a
    /// `null` value removes its key.
    pub fn update_context(
        &self,
        session: impl Into<SessionRef>,
        patch: Value,
    ) -> Result<Session, SessionError> {
        let id = &self.resolve(&session.into())?;
        self.run(id, Op::update_context(patch)?).map(|(s, _)| s)
    }

    /// The session, its recent history and whether it can be resumed.
    pub fn resumption_context(
        &self,
        session: impl Into<SessionRef>,
    ) -> Result<Resumption, SessionError> {
        let id = &self.resolve(&session.into())?;
        let session = self.load(id)?.session;
        let recent_events = self.recent(&session)?;
        Ok(Resumption {
            resumable: session.is_resumable(),
            session,
            recent_events,
        })
    }

    // ----- queries -----

    /// Sessions matching `filter`, newest first, at most `limit`. The
    /// filter runs on the index; only the page's sessions are loaded.
    ///
    /// `cursor` continues after a page: it must be a
    /// [`next_cursor`](SessionPage::next_cursor) this method returned (on
    /// any host: cursors are the same everywhere); anything else is
    /// [`SessionError::InvalidInput`]. A cursor holds only a position (so
    /// pass the same filter with it) and stays valid when sessions are
    /// added or removed.
    pub fn list(
        &self,
        filter: &SessionFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<SessionPage, SessionError> {
        validate_filter(filter)?;
        validate::page_limit(limit)?;
        let after = cursor.map(cursor_position).transpose()?;
        let mut ids = Vec::new();
        let mut next_cursor = None;
        self.scan(after, |id, summary| {
            if !filter.matches(summary) {
                return true;
            }
            if ids.len() == limit as usize {
                // One more match exists: the page is full and not the last.
                next_cursor = ids.last().map(|id: &String| make_cursor(id));
                return false;
            }
            ids.push(id.to_owned());
            true
        })?;
        let mut sessions = Vec::with_capacity(ids.len());
        let mut unreadable = Vec::new();
        for id in ids {
            match self.load(&id) {
                Ok(l) => sessions.push(l.session),
                // Removed since the index was read.
                Err(SessionError::NotFound(_)) => {}
                // Damaged: one bad history must not hide all the others,
                // and it is named so that nobody takes the page for whole.
                Err(SessionError::Storage(why)) => unreadable.push(format!("{id}: {why}")),
                Err(e) => return Err(e),
            }
        }
        Ok(SessionPage {
            sessions,
            next_cursor,
            unreadable,
        })
    }

    /// Aggregates over the sessions matching `filter`, from the index.
    pub fn stats(&self, filter: &SessionFilter) -> Result<SessionStats, SessionError> {
        validate_filter(filter)?;
        let mut by_status: BTreeMap<SessionStatus, u64> =
            SessionStatus::ALL.iter().map(|s| (*s, 0)).collect();
        let mut by_mode: BTreeMap<String, u64> = BTreeMap::new();
        let (mut total, mut iterations) = (0u64, 0u64);
        self.scan(None, |_, s| {
            if filter.matches(s) {
                total += 1;
                iterations += u64::from(s.iteration);
                *by_status.entry(s.status).or_default() += 1;
                match by_mode.get_mut(&s.mode) {
                    Some(n) => *n += 1,
                    None => {
                        by_mode.insert(s.mode.clone(), 1);
                    }
                }
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
        self.scan(None, |id, s| {
            if s.status.is_terminal() && s.ended_at.unwrap_or(s.updated_at) <= cutoff {
                expired.push((id.to_owned(), s.event_count));
            }
            true
        })?;
        let mut removed = Vec::new();
        for (id, length) in expired {
            if !dry_run {
                // Loaded for what lives beside the history (its key, its
                // large values).
                let session = match self.load(&id) {
                    Ok(l) if l.session.event_count == length => l.session,
                    // Changed or removed since the scan: leave it.
                    Ok(_) | Err(SessionError::NotFound(_)) => continue,
                    Err(e) => return Err(e),
                };
                match self.remove_session(&session) {
                    Ok(()) => {}
                    Err(SessionError::Conflict(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
            removed.push(id);
        }
        Ok(CleanupReport { dry_run, removed })
    }

    /// Remove one session and its history, whatever its status: events
    /// appended while it is being removed are removed with it.
    pub fn delete(&self, session: impl Into<SessionRef>) -> Result<(), SessionError> {
        let id = &self.resolve(&session.into())?;
        let mut session = self.load(id)?.session;
        for _ in 0..DELETE_ATTEMPTS {
            match self.remove_session(&session) {
                Err(SessionError::Conflict(_)) => {}
                done => return done,
            }
            session = match self.load(id) {
                Ok(l) => l.session,
                // Another delete won.
                Err(SessionError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
        }
        Err(SessionError::Conflict(format!(
            "session {id} kept growing while it was being deleted; try again"
        )))
    }

    /// Compare every index entry with the history it summarizes and,
    /// unless `dry_run`, refresh those that differ and drop those of
    /// sessions that no longer exist; likewise bind every session's key
    /// to it where the key's document is missing or names no session.
    pub fn reindex(&self, dry_run: bool) -> Result<IndexReport, SessionError> {
        let mut indexed: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut after: Option<String> = None;
        loop {
            let entries = self.store.scan(SESSIONS, after.as_deref(), SCAN_BATCH)?;
            let done = entries.len() < SCAN_BATCH as usize;
            after = entries.last().map(|e| e.key.clone());
            indexed.extend(entries.into_iter().map(|e| (e.key, e.summary)));
            if done {
                break;
            }
        }
        let mut report = IndexReport::default();
        let mut after: Option<String> = None;
        loop {
            let keys = self.store.keys(SESSIONS, after.as_deref(), SCAN_BATCH)?;
            for key in &keys {
                let listed = indexed.remove(key);
                let session = match self.load(key) {
                    Ok(l) => l.session,
                    Err(SessionError::NotFound(_)) => continue,
                    Err(e) => {
                        report.unreadable.push(format!("{key}: {}", e.message()));
                        continue;
                    }
                };
                report.sessions += 1;
                let summary = session.summary();
                let current = listed
                    .as_deref()
                    .and_then(|b| codec::decode_summary(key, b).ok());
                let mut stale = current.as_ref() != Some(&summary);
                if stale && !dry_run {
                    self.store
                        .reindex(SESSIONS, key, &codec::encode_summary(&summary))?;
                }
                if let Some(k) = &session.key {
                    match self.rebind_key(k, key, dry_run) {
                        Ok(bound) => stale |= bound,
                        // A key naming another session, a damaged key
                        // document: reported, and the rebuild goes on.
                        Err(e) => report.unreadable.push(format!("{key}: {}", e.message())),
                    }
                }
                if stale {
                    report.stale.push(key.clone());
                }
            }
            if keys.len() < SCAN_BATCH as usize {
                break;
            }
            after = keys.last().cloned();
        }
        // Entries left over name no history.
        for key in indexed.into_keys() {
            if !dry_run {
                self.store.reindex(SESSIONS, &key, &[])?;
            }
            report.stale.push(key);
        }
        Ok(report)
    }

    /// The session and its whole history as a portable JSON document.
    ///
    /// `schema` is the oldest schema among the history's records: a
    /// session migrated from format 1 keeps its format-1 context events,
    /// which [`import`](Self::import) can only read as such.
    pub fn export(&self, session: impl Into<SessionRef>) -> Result<Value, SessionError> {
        let id = &self.resolve(&session.into())?;
        let session = self.load(id)?.session;
        let (events, schema) = self.read_events_versioned(&session, 0, u32::MAX)?;
        let mut doc = json!({
            "format": EXPORT_FORMAT,
            "schema": schema,
            "session": session,
            "events": events,
        });
        // Large values travel with their history, as base64, in order.
        if session.blobs > 0 {
            let mut blobs = Vec::with_capacity(session.blobs.min(1024) as usize);
            let mut size = 0usize;
            for n in 0..session.blobs {
                let bytes = self.blob_record(id, n)?;
                size += bytes.len().div_ceil(3) * 4;
                if size > validate::MAX_DOCUMENT_BYTES {
                    return Err(SessionError::LimitExceeded(format!(
                        "session {id}: its large values are more than an export document \
                         holds ({} bytes)",
                        validate::MAX_DOCUMENT_BYTES
                    )));
                }
                blobs.push(Value::String(BASE64.encode(bytes)));
            }
            doc["blobs"] = Value::Array(blobs);
        }
        Ok(doc)
    }

    /// Recreate a session from an exported document. The id is kept and
    /// must not exist yet.
    ///
    /// A document is held to the rules of the live operations, through the
    /// same code. Each event is turned back into the arguments of the
    /// operation that records it (an `iteration` that reaches the bound
    /// together with its `timeout`); that operation checks them and the
    /// state replayed so far exactly as it does live (argument validation,
    /// size limits, the status machine, the iteration bound), and what it
    /// would record must be the imported event: the same kind and the same
    /// data, except that a lifecycle event may also carry the
    /// `webhook_id` of its notification (`msg_` and up to 60 of
    /// `[A-Za-z0-9_-]`). Timestamps must not go backwards, the `timeout`
    /// of an iteration has that iteration's timestamp, and none may be
    /// more than a day ahead of this host's clock or above 2^53 - 1. Every
    /// number in the document must be exact for every host (see
    /// [`validate::json_numbers_exact`]). Finally the replayed state must
    /// equal the document's `session`, field for field (`version` must be
    /// the history length, or 0 for a document older than the field).
    /// Errors are [`SessionError::InvalidInput`] starting with
    /// `export document: `, naming the event's position.
    ///
    /// Format-1 documents (`"schema": 1`, from a store first written in
    /// format 1): their `context` events name the changed keys only, not
    /// the values, so the context cannot be replayed from them. Such an
    /// event is checked as a context update would be (the session must be
    /// active or paused) and its data must be `{"keys": [names]}`;
    /// everything else is checked as above, and the document's `context`
    /// is trusted as the result. (Their context events carrying a patch, of
    /// a migrated session that went on, are checked as usual, but the
    /// merged-context size limit then applies to a replayed context that
    /// lacks the format-1 changes.) Format 1 counted changes rather than
    /// events, so their `version` is not checked. The records are stored
    /// as schema 1, with the state as a snapshot, so the session reads as
    /// it was and exports as a format-1 document again.
    pub fn import(&self, document: Value) -> Result<Session, SessionError> {
        self.import_text(&document.to_string())
    }

    /// [`Engine::import`] of a document given as JSON text (at most
    /// [`validate::MAX_DOCUMENT_BYTES`]), which every host hands over as it
    /// is. The history is checked and encoded one event at a time, straight
    /// from the text: whatever the document holds, an import needs the
    /// text, the encoded records and one event's values, never the whole
    /// document parsed at once.
    pub fn import_text(&self, text: &str) -> Result<Session, SessionError> {
        let bad = |m: String| SessionError::InvalidInput(format!("export document: {m}"));
        if text.len() > validate::MAX_DOCUMENT_BYTES {
            return Err(bad(format!(
                "it is {} bytes of JSON; the limit is {}",
                text.len(),
                validate::MAX_DOCUMENT_BYTES
            )));
        }
        if !text.trim_start().starts_with('{') {
            return Err(bad("must be a JSON object".into()));
        }
        let doc: Document<'_> = serde_json::from_str(text).map_err(|e| {
            SessionError::InvalidInput(format!("export document is not valid JSON: {e}"))
        })?;
        validate::json_numbers_exact("export document", text)?;
        let small = |raw: Option<&RawValue>| {
            raw.filter(|r| r.get().len() <= 64)
                .and_then(|r| serde_json::from_str::<Value>(r.get()).ok())
        };
        if small(doc.format).as_ref().and_then(Value::as_str) != Some(EXPORT_FORMAT) {
            return Err(bad(format!("\"format\" must be {EXPORT_FORMAT:?}")));
        }
        let known = codec::MIN_SCHEMA_VERSION..=codec::SCHEMA_VERSION;
        let Some(schema) = small(doc.schema)
            .as_ref()
            .and_then(Value::as_u64)
            .and_then(|s| u32::try_from(s).ok())
            .filter(|s| known.contains(s))
        else {
            return Err(bad(format!(
                "\"schema\" must be {} to {}",
                codec::MIN_SCHEMA_VERSION,
                codec::SCHEMA_VERSION
            )));
        };
        let session = doc.session.map_or("null", RawValue::get);
        let len = compact_len(session);
        if len > MAX_IMPORTED_VALUE_TEXT {
            return Err(bad(format!(
                "\"session\" is {len} bytes of JSON without spaces; a session is at most \
                 {MAX_IMPORTED_VALUE_TEXT}"
            )));
        }
        let mut session: Session =
            serde_json::from_str(session).map_err(|e| bad(format!("\"session\": {e}")))?;
        validate_imported(&session).map_err(|e| bad(e.message().to_owned()))?;
        let legacy = schema < codec::SCHEMA_VERSION;
        // Format 1 counted changes, not events; 0 is a document from
        // before the field.
        if !legacy && session.version != 0 && session.version != session.event_count {
            return Err(bad(format!(
                "version is {} but the session has {} events",
                session.version, session.event_count
            )));
        }
        session.version = session.event_count;
        let latest = self
            .env
            .now_ms()
            .saturating_add(DAY_MS)
            .min(validate::MAX_SAFE_INTEGER);
        let mut replay = Replay::new(&session.id, legacy, latest, schema);
        let events = doc.events.map_or("null", RawValue::get);
        let mut failed = None;
        let walked = serde::Deserializer::deserialize_seq(
            &mut serde_json::Deserializer::from_str(events),
            EachEvent {
                each: |raw: &RawValue| replay.push(raw).map_err(|m| failed = Some(m)),
            },
        );
        if let Some(m) = failed {
            return Err(bad(m));
        }
        walked.map_err(|e| bad(format!("\"events\": {e}")))?;
        let (mut replayed, records) = replay.finish().map_err(bad)?;
        if session.event_count != records.len() as u64 {
            return Err(bad(format!(
                "event_count is {} but {} events are included",
                session.event_count,
                records.len()
            )));
        }
        if legacy {
            replayed.context = session.context.clone();
        }
        if replayed != session {
            return Err(bad(format!(
                "the session does not match its own history ({})",
                first_difference(&replayed, &session)
            )));
        }
        if session.blobs > MAX_IMPORTED_VALUES {
            return Err(bad(format!(
                "the history names {} large values; an import takes at most {MAX_IMPORTED_VALUES}",
                session.blobs
            )));
        }
        if doc.blobs.len() as u64 != session.blobs {
            return Err(bad(format!(
                "the history names {} large values but {} are included",
                session.blobs,
                doc.blobs.len()
            )));
        }
        let blobs = doc
            .blobs
            .iter()
            .enumerate()
            .map(|(i, b)| {
                BASE64
                    .decode(b)
                    .map_err(|e| bad(format!("\"blobs\"[{i}] is not base64: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let summary = codec::encode_summary(&session.summary());
        self.store
            .append(SESSIONS, &session.id, 0, &records, &summary)
            .map_err(|e| match e {
                StoreError::Conflict(_) => SessionError::Conflict(format!(
                    "a session with id {} already exists",
                    session.id
                )),
                e => e.into(),
            })?;
        // The id is this import's now (it won position 0 of the history):
        // a blob log already there is what a session of the same id left
        // behind when it was removed (a delete cut short).
        let bound = match blobs.is_empty() {
            true => Ok(()),
            false => self.blob_end(&session.id, 0).and_then(|left| {
                if left > 0 {
                    self.store.remove(BLOBS, &session.id, left)?;
                }
                self.append_blobs_at(&session.id, 0, &blobs)
                    .map_err(|e| conflict_for(&session.id, e))
            }),
        };
        let bound = bound.and_then(|()| match &session.key {
            Some(key) => self.bind_imported_key(key, &session.id),
            None => Ok(()),
        });
        if let Err(e) = bound {
            // The import did not happen (the key is another session's).
            let _ = self.remove_session(&session);
            return Err(e);
        }
        // A format-1 history does not replay into the state it was
        // exported with, so the state is kept as a snapshot at its end.
        self.snapshot(&session, 0);
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
            .put(CONFIG, WEBHOOK_KEY, &codec::encode(&config)?, version, true)
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

    /// Disable the endpoint if it still points at `url` and is enabled
    /// (it answered 410 Gone): a compare-and-set on the configuration, so
    /// an endpoint set again meanwhile (even to the same url) stays as set.
    /// Says whether it was disabled.
    pub fn disable_webhook(&self, url: &str) -> Result<bool, SessionError> {
        let Some(v) = self.store.get(CONFIG, WEBHOOK_KEY)? else {
            return Ok(false);
        };
        let mut config: WebhookConfig = codec::decode("the webhook configuration", &v.data)?;
        if config.url != url || !config.enabled {
            return Ok(false);
        }
        config.enabled = false;
        match self.store.put(
            CONFIG,
            WEBHOOK_KEY,
            &codec::encode(&config)?,
            v.version,
            true,
        ) {
            Ok(_) => Ok(true),
            // Set (or cleared) since it was read: what was set stands.
            Err(StoreError::Conflict(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Remove the webhook endpoint (no error if none is set).
    pub fn clear_webhook(&self) -> Result<(), SessionError> {
        self.store
            .remove(CONFIG, WEBHOOK_KEY, 0)
            .map_err(|e| conflict_for("the webhook configuration", e))
    }

    // ----- webhook delivery -----

    /// What a pending delivery claimed by a sender needs now, decided with
    /// this engine's history and endpoint (see [`crate::delivery`]): sent,
    /// aimed at the endpoint with the signed request to make, or settled
    /// without a request, to be recorded: discarded
    /// (its event never committed), failed (the endpoint removed or
    /// disabled), refused by `policy` (pending, for a sender allowed to
    /// dial it), or waiting for its event. `writer_alive` says whether the
    /// writer that queued a delivery may still append its event; `endpoint`
    /// is the endpoint as set now (`get_webhook`, read once for the
    /// deliveries of a look; `None` if it could not be read).
    pub fn prepare_delivery(
        &self,
        mut d: Delivery,
        endpoint: Option<Option<&WebhookConfig>>,
        policy: &AddressPolicy,
        schedule_ms: &[u64],
        writer_alive: &dyn Fn(&str) -> bool,
    ) -> Prepared {
        let now = self.env.now_ms();
        if !delivery::is_checked(&d) {
            let mut alive = None;
            loop {
                let n = &d.notification;
                let read = self.events(&n.session_id, n.seq, 1);
                let found = match &read {
                    Ok(page) => page.events.first().map_or(Found::Nothing, Found::Event),
                    Err(SessionError::NotFound(_)) => Found::NoSession,
                    Err(_) => Found::Unreadable,
                };
                match delivery::check(&d, found, alive, now) {
                    Ready::Send => break,
                    Ready::Wait(at) => {
                        d.next_attempt_at = at;
                        return Prepared::Settled(d);
                    }
                    Ready::Discard(why) => {
                        let d = delivery::finish(d, DeliveryState::Discarded, Some(why));
                        return Prepared::Settled(d);
                    }
                    Ready::AskWriter => {
                        alive = Some(d.writer.as_deref().is_some_and(writer_alive));
                    }
                }
            }
        }
        // Not knowing the endpoint is no reason to give up: sent as queued.
        if let Err(why) = delivery::aim(&mut d.notification, endpoint) {
            return Prepared::Settled(delivery::finish(d, DeliveryState::Failed, Some(why)));
        }
        if let Err(refused) = policy.check_url(&d.notification.url) {
            let answer = Answer::Refused {
                reason: refused.to_string(),
                policy: Some(policy.fingerprint()),
            };
            return Prepared::Settled(self.record_answer(d, now, 0, &answer, schedule_ms));
        }
        match delivery::request(&d.notification, now) {
            Ok(request) => Prepared::Send(d, request),
            Err(why) => Prepared::Settled(delivery::finish(d, DeliveryState::Failed, Some(why))),
        }
    }

    /// Record the answer to a delivery's request, made at `at` and taking
    /// `duration_ms`, and decide what next ([`delivery::record`]); after a
    /// 410 the endpoint is disabled if it still points where the 410 came
    /// from. The delivery as it now stands, to be saved by the sender.
    pub fn record_answer(
        &self,
        d: Delivery,
        at: u64,
        duration_ms: u64,
        answer: &Answer,
        schedule_ms: &[u64],
    ) -> Delivery {
        let mut random = [0u8; 8];
        self.env.fill_random(&mut random);
        let now = self.env.now_ms();
        let (d, effect) = delivery::record(
            d,
            at,
            duration_ms,
            answer,
            schedule_ms,
            now,
            u64::from_le_bytes(random),
        );
        if let Effect::DisableEndpoint(url) = effect {
            // Given up either way; if this fails the endpoint stays as is.
            let _ = self.disable_webhook(&url);
        }
        d
    }

    // ----- utilities -----

    /// Whether the session can be resumed.
    pub fn is_resumable(&self, session: impl Into<SessionRef>) -> Result<bool, SessionError> {
        let id = &self.resolve(&session.into())?;
        Ok(self.get(id)?.is_resumable())
    }

    /// Milliseconds from creation to end (or now).
    pub fn duration(&self, session: impl Into<SessionRef>) -> Result<u64, SessionError> {
        let id = &self.resolve(&session.into())?;
        Ok(self.get(id)?.duration_ms(self.env.now_ms()))
    }

    /// Progress in percent.
    pub fn progress(&self, session: impl Into<SessionRef>) -> Result<f64, SessionError> {
        let id = &self.resolve(&session.into())?;
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

    /// A session id that sorts after every existing one. Ids are the
    /// listing order (newest first), and two UUID v7s of one millisecond
    /// (or of a clock that stepped back) are in random order, so a new id
    /// that does not come after the newest is moved past it (RFC 9562
    /// §6.2, method 2: a random increment of the counter bits, so that
    /// processes starting sessions at once still do not collide). Only a
    /// UUID v7 at most [`ID_CLOCK_ALLOWANCE_MS`] ahead of this clock is
    /// followed: an imported id of another shape, or one far in the future,
    /// must not drag every later id along.
    fn new_session_id(&self, now_ms: u64) -> String {
        let mut random = [0u8; 10];
        self.env.fill_random(&mut random);
        let id = uuid::Builder::from_unix_timestamp_millis(now_ms, &random).into_uuid();
        // The index is derived data: if it cannot be read, a fresh id is
        // still a good one.
        let newest = self
            .store
            .scan(SESSIONS, None, 16)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|e| uuid::Uuid::try_parse(&e.key).ok())
            .find(|u| u.get_version_num() == 7 && u.get_variant() == uuid::Variant::RFC4122);
        let step = 1 + u128::from(u32::from_le_bytes([
            random[0], random[1], random[2], random[3],
        ]));
        match newest {
            Some(n) if n >= id && (n.as_u128() >> 80) as u64 <= now_ms + ID_CLOCK_ALLOWANCE_MS => {
                uuid_v7_after(n.as_u128(), step).unwrap_or(id)
            }
            _ => id,
        }
        .to_string()
    }

    /// The session's state: its snapshot (if any) and the events after it.
    fn load(&self, id: &str) -> Result<Loaded, SessionError> {
        // A snapshot only saves replay time: if it cannot be read, the
        // history is replayed from the start instead.
        let (mut state, snapshot_version) = match self.store.get(SESSIONS, id) {
            Ok(Some(doc)) => match codec::decode::<Session>("snapshot", &doc.data) {
                Ok(s) if s.id == id => (Some(s), doc.version),
                _ => (None, doc.version),
            },
            Ok(None) => (None, 0),
            Err(StoreError::Io(_)) => (None, u64::MAX),
            Err(e) => return Err(e.into()),
        };
        let mut snapshot_seq = state.as_ref().map_or(0, |s| s.event_count);
        let what = format!("session {id} history");
        // The snapshot counts only if the history reaches it: a snapshot
        // ahead of its log (a migration that stopped at a gap, a key removed
        // under a late snapshot write) is ignored and the log replayed.
        // One read serves both: it starts at the snapshot's last event.
        let mut next = snapshot_seq.saturating_sub(1);
        let mut verify = snapshot_seq > 0;
        let mut tail = Vec::new();
        loop {
            let records = self.store.read(SESSIONS, id, next, READ_BATCH)?;
            let mut rest = &records[..];
            if verify {
                verify = false;
                let covered = match records.first() {
                    Some(r) => codec::decode::<Event>(&what, r)?.seq == next,
                    None => false,
                };
                if !covered {
                    state = None;
                    snapshot_seq = 0;
                    next = 0;
                    tail.clear();
                    continue;
                }
                // The snapshot's own last event was read only to verify it.
                rest = &records[1..];
                next += 1;
            }
            for record in rest {
                let event: Event = codec::decode(&what, record)?;
                if event.seq != next {
                    return Err(SessionError::Storage(format!(
                        "{what} is damaged: position {next} holds event {}",
                        event.seq
                    )));
                }
                state = Some(fold(state, id, &event)?);
                tail.push(event);
                // Only the end is kept (a history replayed without its
                // snapshot could be long); a walk back reads the rest.
                if tail.len() >= 2 * READ_BATCH as usize {
                    tail.drain(..READ_BATCH as usize);
                }
                next += 1;
            }
            if records.len() < READ_BATCH as usize {
                break;
            }
        }
        let mut session =
            state.ok_or_else(|| SessionError::NotFound(format!("no session with id {id}")))?;
        session.version = session.event_count;
        Ok(Loaded {
            session,
            snapshot_version,
            snapshot_seq,
            tail,
        })
    }

    /// Read-modify-append of one session: `op` (its arguments already
    /// checked) checks the state and makes the events; their effect is
    /// [`fold`]'s.
    fn run(&self, id: &str, op: Op) -> Result<(Session, Vec<Event>), SessionError> {
        validate::id("session id", id)?;
        let loaded = self.load(id)?;
        let events = op.events(Some(&loaded.session))?;
        // Keep time monotonic per session even if the clock steps back.
        let now = self.env.now_ms().max(loaded.session.updated_at);
        self.commit(id, Some(loaded), events, now)
    }

    /// Append-only operations that return the one event they recorded.
    fn record(&self, id: &str, op: Op) -> Result<Event, SessionError> {
        let (_, mut events) = self.run(id, op)?;
        events
            .pop()
            .ok_or_else(|| SessionError::Storage(format!("session {id}: no event was recorded")))
    }

    /// Queue the notifications the events raise, append the events at the
    /// end the writer read (`loaded`; `None` for a new session), then
    /// snapshot if due.
    fn commit(
        &self,
        id: &str,
        loaded: Option<Loaded>,
        events: Vec<NewEvent>,
        now: u64,
    ) -> Result<(Session, Vec<Event>), SessionError> {
        let first_seq = loaded.as_ref().map_or(0, |l| l.session.event_count);
        let endpoint = match events
            .iter()
            .any(|e| webhook::notification_kind(&e.kind).is_some())
        {
            true => self.get_webhook()?,
            false => None,
        };
        let events: Vec<Event> = events
            .into_iter()
            .enumerate()
            .map(|(i, mut e)| {
                // A lifecycle event names the notification it raises: that
                // is how a sender tells it from the notification of a
                // writer that lost the race for the same position.
                if let Some(c) = &endpoint
                    && webhook::wanted(c, &e.kind).is_some()
                    && let Some(data) = e.data.as_object_mut()
                {
                    let id = format!("msg_{}", self.new_id(now));
                    data.insert(webhook::ID_FIELD.into(), Value::String(id));
                }
                Event {
                    seq: first_seq + i as u64,
                    kind: e.kind,
                    timestamp: now,
                    data: e.data,
                }
            })
            .collect();
        let mut state = loaded.as_ref().map(|l| l.session.clone());
        for event in &events {
            state = Some(fold(state, id, event)?);
        }
        let session = state
            .ok_or_else(|| SessionError::Storage(format!("session {id}: nothing to record")))?;
        let records = events
            .iter()
            .map(codec::encode)
            .collect::<Result<Vec<_>, _>>()?;
        let summary = codec::encode_summary(&session.summary());
        // Queued before the append: a crash in between leaves a notification
        // for an event that was never committed, which the sender drops after
        // checking the history (see `webhook::describes`); the other order
        // would lose the notification of a committed event.
        self.notify(endpoint.as_ref(), &session, &events)?;
        self.store
            .append(SESSIONS, id, first_seq, &records, &summary)
            .map_err(|e| match e {
                StoreError::Conflict(_) if first_seq == 0 => {
                    SessionError::Conflict(format!("a session with id {id} already exists"))
                }
                e => conflict_for(id, e),
            })?;
        if let Some(l) = &loaded
            && session.event_count - l.snapshot_seq >= SNAPSHOT_EVERY
        {
            self.snapshot(&session, l.snapshot_version);
        }
        Ok((session, events))
    }

    /// Write a snapshot so later loads replay less. Best effort on purpose:
    /// the history is already durable, and a lost race or a failed write
    /// only means a longer replay next time.
    fn snapshot(&self, session: &Session, expected_version: u64) {
        if let Ok(data) = codec::encode(session) {
            let _ = self
                .store
                .put(SESSIONS, &session.id, &data, expected_version, false);
        }
    }

    fn notify(
        &self,
        config: Option<&WebhookConfig>,
        session: &Session,
        events: &[Event],
    ) -> Result<(), SessionError> {
        let Some(config) = config else {
            return Ok(());
        };
        for event in events {
            if let Some(n) = webhook::notification(config, session, event) {
                self.notifier.enqueue(&n).map_err(|e| {
                    SessionError::Storage(format!(
                        "session {} was not changed: its {} notification could not be queued: {e}",
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
        self.read_events_versioned(session, from, limit)
            .map(|(events, _)| events)
    }

    /// [`read_events`](Self::read_events), also returning the oldest schema
    /// version among the records read (the current one if none).
    fn read_events_versioned(
        &self,
        session: &Session,
        from: u64,
        limit: u32,
    ) -> Result<(Vec<Event>, u32), SessionError> {
        let mut schema = codec::SCHEMA_VERSION;
        if from >= session.event_count {
            return Ok((Vec::new(), schema));
        }
        let what = format!("session {} history", session.id);
        // Only the history the state was read at is returned.
        let mut remaining = (session.event_count - from).min(u64::from(limit));
        let mut events: Vec<Event> = Vec::with_capacity(remaining.min(1024) as usize);
        while remaining > 0 {
            let at = from + events.len() as u64;
            let want = remaining.min(u64::from(READ_BATCH)) as u32;
            let records = self.store.read(SESSIONS, &session.id, at, want)?;
            if records.is_empty() {
                return Err(SessionError::Storage(format!(
                    "{what} ends at {at} but the session has {} events",
                    session.event_count
                )));
            }
            remaining -= records.len() as u64;
            for r in &records {
                let (version, event) = codec::decode_versioned(&what, r)?;
                schema = schema.min(version);
                events.push(event);
            }
        }
        Ok((events, schema))
    }

    fn recent(&self, session: &Session) -> Result<Vec<Event>, SessionError> {
        let from = session.event_count.saturating_sub(RECENT_EVENTS);
        self.read_events(session, from, RECENT_EVENTS as u32)
    }

    /// Visit the index, newest first, after `cursor`; stop when `visit`
    /// returns false.
    fn scan(
        &self,
        cursor: Option<&str>,
        mut visit: impl FnMut(&str, &SessionSummary) -> bool,
    ) -> Result<(), SessionError> {
        let mut after = cursor.map(str::to_owned);
        loop {
            let entries = self.store.scan(SESSIONS, after.as_deref(), SCAN_BATCH)?;
            for entry in &entries {
                let what = format!("index entry of session {}", entry.key);
                let summary = codec::decode_summary(&what, &entry.summary)?;
                if !visit(&entry.key, &summary) {
                    return Ok(());
                }
            }
            if entries.len() < SCAN_BATCH as usize {
                return Ok(());
            }
            after = entries.last().map(|e| e.key.clone());
        }
    }
}

/// Separates the position from the check in a list cursor.
const CURSOR_MARK: char = '.';

/// The cursor continuing after session `id`: the id, [`CURSOR_MARK`] and a
/// 32-bit check of the id (FNV-1a, 8 lowercase hex digits). The check
/// only catches cursors that were not made by `list` (typos, ids passed
/// as cursors, truncation); it is not a secret and protects nothing.
fn make_cursor(id: &str) -> String {
    format!("{id}{CURSOR_MARK}{:08x}", cursor_check(id))
}

/// The session id a cursor continues after.
fn cursor_position(cursor: &str) -> Result<&str, SessionError> {
    let refused = || {
        SessionError::InvalidInput(format!(
            "cursor {:?} is not a cursor returned by list",
            validate::truncate(cursor)
        ))
    };
    let (id, check) = cursor.rsplit_once(CURSOR_MARK).ok_or_else(refused)?;
    validate::id("cursor", id).map_err(|_| refused())?;
    if check.len() != 8 || check != format!("{:08x}", cursor_check(id)) {
        return Err(refused());
    }
    Ok(id)
}

fn cursor_check(id: &str) -> u32 {
    b"agent-session list cursor\0"
        .iter()
        .chain(id.as_bytes())
        .fold(0x811c_9dc5u32, |h, b| {
            (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
        })
}

/// How far ahead of this host's clock the newest session id may be and
/// still be followed by new ids (hosts sharing a store differ a little).
const ID_CLOCK_ALLOWANCE_MS: u64 = 60_000;

/// The UUID v7 `step` counter values after `id`: its 74 random bits (rand_a
/// and rand_b) count up, carrying into the millisecond; `None` past the
/// last millisecond a UUID v7 can hold.
fn uuid_v7_after(id: u128, step: u128) -> Option<uuid::Uuid> {
    const RAND_B: u128 = (1 << 62) - 1;
    let ms = id >> 80;
    let counter = (((id >> 64) & 0xfff) << 62 | (id & RAND_B)) + step;
    let (ms, counter) = (ms + (counter >> 74), counter & ((1 << 74) - 1));
    (ms < 1 << 48).then(|| {
        uuid::Uuid::from_u128(
            ms << 80 | 0x7 << 76 | (counter >> 62) << 64 | 0b10 << 62 | (counter & RAND_B),
        )
    })
}

/// The state after `event`: the one place where events change a session.
/// Writers check the rules before appending; replaying a history (on every
/// load, after the last snapshot) goes through here only.
pub fn fold(state: Option<Session>, id: &str, event: &Event) -> Result<Session, SessionError> {
    let damaged = |m: &str| {
        SessionError::Storage(format!(
            "session {id} history is damaged at event {}: {m}",
            event.seq
        ))
    };
    let d = &event.data;
    let text = |k: &str| d.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut s = match (state, event.kind.as_str()) {
        (None, event_kind::START) => {
            let start: StartData = serde_json::from_value(d.clone())
                .map_err(|e| damaged(&format!("bad start event: {e}")))?;
            Session {
                id: id.to_owned(),
                key: start.key,
                task: start.task,
                mode: start.mode,
                user_id: start.user_id,
                channel_id: start.channel_id,
                status: SessionStatus::Active,
                iteration: 0,
                max_iterations: start.max_iterations,
                context: start.context,
                pause_reason: None,
                result: None,
                error: None,
                created_at: event.timestamp,
                updated_at: event.timestamp,
                ended_at: None,
                event_count: 0,
                version: 0,
                blobs: 0,
            }
        }
        (None, _) => return Err(damaged("the history does not begin with a start event")),
        (Some(_), event_kind::START) => return Err(damaged("a second start event")),
        (Some(mut s), kind) => {
            match kind {
                event_kind::ITERATION => {
                    s.iteration = d
                        .get("iteration")
                        .and_then(Value::as_u64)
                        .and_then(|i| u32::try_from(i).ok())
                        .ok_or_else(|| damaged("iteration event without a count"))?;
                }
                event_kind::TIMEOUT => end(&mut s, SessionStatus::Timeout, event.timestamp),
                event_kind::PAUSE => {
                    s.status = SessionStatus::Paused;
                    s.pause_reason = text("reason");
                }
                event_kind::RESUME => {
                    s.status = SessionStatus::Active;
                    s.pause_reason = None;
                }
                event_kind::COMPLETE => {
                    end(&mut s, SessionStatus::Completed, event.timestamp);
                    s.result = d.get("result").filter(|r| !r.is_null()).cloned();
                }
                event_kind::ERROR => {
                    end(&mut s, SessionStatus::Failed, event.timestamp);
                    s.error = text("error");
                }
                // Schema 1 context events named the changed keys only; a
                // format-1 root is migrated to snapshots that hold their
                // effect, so they are never replayed.
                event_kind::CONTEXT => {
                    if let Some(Value::Object(patch)) = d.get("patch") {
                        merge_context(&mut s.context, patch);
                    }
                }
                _ => {}
            }
            s
        }
    };
    if let Some(end) = blobs::blobs_end(&event.kind, d) {
        s.blobs = s.blobs.max(end);
    }
    s.updated_at = event.timestamp.max(s.updated_at);
    s.event_count = event.seq + 1;
    s.version = s.event_count;
    Ok(s)
}

/// What a `start` event holds.
#[derive(serde::Deserialize)]
struct StartData {
    #[serde(default)]
    key: Option<String>,
    task: String,
    mode: String,
    user_id: Option<String>,
    channel_id: Option<String>,
    max_iterations: u32,
    #[serde(default)]
    context: Map<String, Value>,
}

/// Replay a whole history into the state it produces.
pub fn replay(id: &str, events: &[Event]) -> Result<Option<Session>, SessionError> {
    let mut state = None;
    for e in events {
        state = Some(fold(state, id, e)?);
    }
    Ok(state)
}

/// Merge a patch into a context: top-level keys replaced, `null` removes.
fn merge_context(context: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            context.remove(k);
        } else {
            context.insert(k.clone(), v.clone());
        }
    }
}

/// [`require`] an active or paused session: one that still takes
/// conversation items and checkpoints.
fn require_live(s: &Session, verb: &str) -> Result<(), SessionError> {
    require(s, &[SessionStatus::Active, SessionStatus::Paused], verb)
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

fn validate_imported(s: &Session) -> Result<(), SessionError> {
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
    Ok(())
}

/// More than any one event's data can be: a start's task and context, or a
/// tool call's input and output, each within its own limit.
pub(super) const MAX_EVENT_DATA_BYTES: usize = 3 * validate::MAX_JSON_BYTES;

/// The top level of an export document, its parts left as text: the
/// history is read from it one event at a time, and anything else in the
/// document is skipped without being parsed.
#[derive(serde::Deserialize)]
struct Document<'a> {
    #[serde(borrow)]
    format: Option<&'a RawValue>,
    #[serde(borrow)]
    schema: Option<&'a RawValue>,
    #[serde(borrow)]
    session: Option<&'a RawValue>,
    #[serde(borrow)]
    events: Option<&'a RawValue>,
    /// The blob log, base64.
    #[serde(default)]
    blobs: Vec<String>,
}

/// The most large values (blob log records) an imported session may have.
const MAX_IMPORTED_VALUES: u64 = 100_000;

/// The most text one imported event or session may take, not counting
/// whitespace outside strings (an export is pretty printed, which can take
/// many times the compact size for deeply nested values). Their values are
/// capped when compact (see [`MAX_EVENT_DATA_BYTES`]); the room above that
/// is for escapes (`\u0061` for `a`) that a serializer may have written.
const MAX_IMPORTED_VALUE_TEXT: usize = 6 * MAX_EVENT_DATA_BYTES + 4096;

/// The length of JSON text without the whitespace between its tokens.
/// Scans without allocating.
fn compact_len(text: &str) -> usize {
    let (mut len, mut in_string, mut escaped) = (0, false, false);
    for &b in text.as_bytes() {
        if in_string {
            len += 1;
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
        } else if !matches!(b, b' ' | b'\n' | b'\r' | b'\t') {
            len += 1;
            in_string = b == b'"';
        }
    }
    len
}

/// Hands each element of a JSON array, as text, to `each` while the array
/// is read; an `Err` from `each` stops the read.
struct EachEvent<F> {
    each: F,
}

impl<'de, F: FnMut(&'de RawValue) -> Result<(), ()>> serde::de::Visitor<'de> for EachEvent<F> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of events")
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        while let Some(raw) = seq.next_element::<&'de RawValue>()? {
            (self.each)(raw).map_err(|()| serde::de::Error::custom("the history was refused"))?;
        }
        Ok(())
    }
}

/// An imported history replayed through the live operations (see
/// [`Engine::import`]), event by event as it is read; errors name the
/// event. `legacy`: a format-1 document, whose context events may name keys
/// only. `latest`: the largest timestamp accepted.
struct Replay<'a> {
    id: &'a str,
    legacy: bool,
    latest: u64,
    schema: u32,
    state: Option<Session>,
    previous: u64,
    /// Events read but not yet checked: an iteration that reaches the
    /// bound waits here for its timeout.
    pending: Vec<Event>,
    /// The records of the events checked, encoded under `schema`.
    records: Vec<Vec<u8>>,
}

impl<'a> Replay<'a> {
    fn new(id: &'a str, legacy: bool, latest: u64, schema: u32) -> Self {
        Replay {
            id,
            legacy,
            latest,
            schema,
            state: None,
            previous: 0,
            pending: Vec::new(),
            records: Vec::new(),
        }
    }

    /// The position of `pending[j]` in the history.
    fn at(&self, j: usize, m: &str) -> String {
        let kind = self.pending.get(j).map_or("", |e| e.kind.as_str());
        let i = self.records.len() + j;
        format!("event {i} ({}): {m}", validate::truncate(kind))
    }

    fn push(&mut self, raw: &RawValue) -> Result<(), String> {
        let i = self.records.len() + self.pending.len();
        let text = raw.get();
        // No operation records more than two capped values and a little
        // text: a larger event is refused before it is parsed.
        let len = compact_len(text);
        if len > MAX_IMPORTED_VALUE_TEXT {
            return Err(format!(
                "event {i}: it is {len} bytes of JSON without spaces; no event is more than \
                 {MAX_IMPORTED_VALUE_TEXT}"
            ));
        }
        let event: Event = serde_json::from_str(text).map_err(|e| format!("event {i}: {e}"))?;
        if event.seq != i as u64 {
            return Err(format!(
                "events must be numbered 0, 1, 2, ... without gaps; position {i} is wrong"
            ));
        }
        self.pending.push(event);
        self.settle(false)
    }

    /// Check, fold and encode the pending events that are complete (all of
    /// them at the `end`).
    fn settle(&mut self, end: bool) -> Result<(), String> {
        while let Some(first) = self.pending.first() {
            let t = first.timestamp;
            if t < self.previous {
                let previous = self.previous;
                return Err(self.at(
                    0,
                    &format!("its timestamp {t} is before the previous event's ({previous})"),
                ));
            }
            if t > self.latest {
                return Err(self.at(
                    0,
                    &format!(
                        "its timestamp {t} is more than a day ahead of this host's clock or above 2^53 - 1"
                    ),
                ));
            }
            let len = validate::json_len(&first.data);
            if len > MAX_EVENT_DATA_BYTES {
                return Err(self.at(
                    0,
                    &format!(
                        "its data is {len} bytes of JSON; no operation records more than \
                         {MAX_EVENT_DATA_BYTES}"
                    ),
                ));
            }
            let made = if self.legacy
                && first.kind == event_kind::CONTEXT
                && first.data.get("patch").is_none()
            {
                legacy_context(self.state.as_ref(), &first.data)
                    .map_err(|e| self.at(0, e.message()))?;
                vec![NewEvent::new(first.kind.clone(), first.data.clone())]
            } else {
                op_of(first)
                    .and_then(|op| op.events(self.state.as_ref()))
                    .map_err(|e| self.at(0, e.message()))?
            };
            if made.len() > self.pending.len() && !end {
                // Its timeout has not been read yet.
                return Ok(());
            }
            for (j, m) in made.iter().enumerate() {
                let Some(e) = self.pending.get(j).filter(|e| e.kind == m.kind) else {
                    return Err(self.at(
                        j,
                        "an iteration that reaches the bound must be followed by its timeout",
                    ));
                };
                if e.timestamp != t {
                    return Err(self.at(
                        j,
                        "a timeout must have the timestamp of the iteration that reached the bound",
                    ));
                }
                same_data(
                    &m.data,
                    &e.data,
                    webhook::notification_kind(&e.kind).is_some(),
                )
                .map_err(|m| self.at(j, &m))?;
            }
            for e in self.pending.drain(..made.len()) {
                self.state =
                    Some(fold(self.state.take(), self.id, &e).map_err(|e| e.message().to_owned())?);
                self.records
                    .push(codec::encode_as(&e, self.schema).map_err(|e| e.message().to_owned())?);
            }
            self.previous = t;
        }
        Ok(())
    }

    /// The state the whole history produced, and its records.
    fn finish(mut self) -> Result<(Session, Vec<Vec<u8>>), String> {
        self.settle(true)?;
        let state = self
            .state
            .ok_or_else(|| "the history does not begin with a start event".to_owned())?;
        Ok((state, self.records))
    }
}

/// The live operation that records `e`, rebuilt from its data, with its
/// arguments checked as the live method checks them.
fn op_of(e: &Event) -> Result<Op, SessionError> {
    let d = &e.data;
    let shape = |m: &str| SessionError::InvalidInput(m.to_owned());
    // Absent and null are one: the operation writes null for "none".
    let given = |k: &str| d.get(k).filter(|v| !v.is_null()).cloned();
    let text = |k: &str| match d.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(shape(&format!("\"{k}\" must be a string or null"))),
    };
    match e.kind.as_str() {
        event_kind::START => {
            let a: StartData = serde_json::from_value(d.clone())
                .map_err(|err| shape(&format!("bad start event: {err}")))?;
            Op::start(StartOptions {
                key: a.key,
                task: a.task,
                mode: Some(a.mode),
                user_id: a.user_id,
                channel_id: a.channel_id,
                max_iterations: Some(a.max_iterations),
                context: Some(Value::Object(a.context)),
            })
        }
        event_kind::ITERATION => Op::iterate(given("data")),
        event_kind::ITEM => Ok(Op::Items(vec![items::ItemData::of(d)?])),
        event_kind::ITEM_POP => match d.get("of").and_then(Value::as_u64) {
            Some(of) => Ok(Op::PopItem(of)),
            None => Err(shape("an item pop names the item's event in \"of\"")),
        },
        event_kind::ITEMS_CLEAR => Ok(Op::ClearItems),
        event_kind::CHECKPOINT | event_kind::WRITES | event_kind::CHECKPOINTS_DROP => {
            if !d.is_object() {
                return Err(shape("checkpoint events hold an object"));
            }
            Ok(Op::Checkpointing(vec![NewEvent::new(
                e.kind.clone(),
                d.clone(),
            )]))
        }
        event_kind::TOOL_CALL => Op::tool_call(
            serde_json::from_value(d.clone())
                .map_err(|err| shape(&format!("bad tool call: {err}")))?,
        ),
        event_kind::LEARNING => Op::learning(
            serde_json::from_value(d.clone())
                .map_err(|err| shape(&format!("bad learning: {err}")))?,
        ),
        event_kind::PAUSE => Op::pause(text("reason")?),
        event_kind::RESUME => Ok(Op::Resume),
        event_kind::COMPLETE => Op::complete(given("result")),
        event_kind::ERROR => Op::fail(text("error")?.ok_or_else(|| shape("no \"error\""))?),
        event_kind::TIMEOUT => Err(shape(
            "a timeout must directly follow the iteration that reached the bound",
        )),
        event_kind::CONTEXT => Op::update_context(
            d.get("patch")
                .cloned()
                .ok_or_else(|| shape("a context event must carry its \"patch\""))?,
        ),
        kind => Op::record(kind.to_owned(), d.clone()),
    }
}

/// A format-1 context event: allowed where a context update is, data
/// `{"keys": [names]}`.
fn legacy_context(state: Option<&Session>, data: &Value) -> Result<(), SessionError> {
    let Some(s) = state else {
        return Err(SessionError::InvalidInput(
            "the history does not begin with a start event".into(),
        ));
    };
    require(
        s,
        &[SessionStatus::Active, SessionStatus::Paused],
        "update the context of",
    )?;
    let names = data
        .as_object()
        .filter(|o| o.len() == 1)
        .and_then(|o| o.get("keys"))
        .and_then(Value::as_array);
    match names {
        Some(names) if names.iter().all(Value::is_string) => Ok(()),
        _ => Err(SessionError::InvalidInput(
            "a format-1 context event must be {\"keys\": [names]}".into(),
        )),
    }
}

/// Whether imported event data is what the operation made: equal, except
/// that a lifecycle event may name its notification.
fn same_data(made: &Value, imported: &Value, lifecycle: bool) -> Result<(), String> {
    if made == imported {
        return Ok(());
    }
    let (Value::Object(m), Value::Object(d)) = (made, imported) else {
        return Err("its data is not what the operation records".into());
    };
    for (k, v) in d {
        if lifecycle && k == webhook::ID_FIELD {
            if !v.as_str().is_some_and(is_notification_id) {
                return Err(format!(
                    "its {} must be \"msg_\" followed by 1 to 60 letters, digits, '-' or '_'",
                    webhook::ID_FIELD
                ));
            }
            continue;
        }
        match m.get(k) {
            None => {
                return Err(format!(
                    "its data has a field {:?} that the operation does not record",
                    validate::truncate(k)
                ));
            }
            Some(x) if x != v => {
                return Err(format!(
                    "its field {:?} is not what the operation records",
                    validate::truncate(k)
                ));
            }
            Some(_) => {}
        }
    }
    match m.keys().find(|k| !d.contains_key(*k)) {
        Some(k) => Err(format!("its data lacks the field {k:?}")),
        None => Ok(()),
    }
}

/// The shape of a notification id `commit` writes (`msg_` + UUID), loose
/// enough for ids of other writers of the same format.
fn is_notification_id(id: &str) -> bool {
    id.strip_prefix("msg_").is_some_and(|rest| {
        (1..=60).contains(&rest.len())
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// The first field in which two sessions differ, for error messages.
fn first_difference(a: &Session, b: &Session) -> String {
    let (Ok(Value::Object(a)), Ok(Value::Object(b))) =
        (serde_json::to_value(a), serde_json::to_value(b))
    else {
        return String::new();
    };
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(*v))
        .map(|(k, _)| format!("\"{k}\" differs"))
        .unwrap_or_default()
}

#[cfg(test)]
mod id_tests {
    use super::uuid_v7_after;

    #[test]
    fn the_counter_carries_into_the_millisecond() {
        let last = uuid::Uuid::parse_str("01890000-0000-7fff-bfff-ffffffffffff").unwrap();
        let next = uuid_v7_after(last.as_u128(), 3).unwrap();
        assert_eq!(next.to_string(), "01890000-0001-7000-8000-000000000002");
        assert!(next > last);
        let plain = uuid::Uuid::parse_str("01890000-0000-7000-8000-0000000000ff").unwrap();
        assert_eq!(
            uuid_v7_after(plain.as_u128(), 1).unwrap().to_string(),
            "01890000-0000-7000-8000-000000000100"
        );
        let end = uuid::Uuid::parse_str("ffffffff-ffff-7fff-bfff-ffffffffffff").unwrap();
        assert_eq!(uuid_v7_after(end.as_u128(), 1), None, "no wrap to 1970");
    }
}
