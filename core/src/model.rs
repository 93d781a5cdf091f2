//! The values the session API takes and returns.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::SessionError;

/// Where a session is in its lifecycle.
///
/// `Active ⇄ Paused → Completed | Failed | Timeout`; the last three are
/// terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// Running: iterations and tool calls may be recorded.
    Active,
    /// Waiting to be resumed.
    Paused,
    /// Ended with a result.
    Completed,
    /// Ended with an error.
    Failed,
    /// Ended because the iteration bound was reached.
    Timeout,
}

impl SessionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [SessionStatus; 5] = [
        Self::Active,
        Self::Paused,
        Self::Completed,
        Self::Failed,
        Self::Timeout,
    ];

    /// The status's name, as stored and as the CLI spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Paused => "paused",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Timeout => "timeout",
        }
    }

    /// Parse a status name; unknown names are invalid input.
    pub fn parse(name: &str) -> Result<Self, SessionError> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                SessionError::InvalidInput(format!(
                    "unknown status {name:?}; expected one of active, paused, completed, failed, timeout"
                ))
            })
    }

    /// Completed, failed and timeout are final.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Timeout)
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A session's current state. The history lives in its events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// UUID v7 (or an imported id), unique in the store.
    pub id: String,
    /// The caller's name for the session (a LangGraph thread id, a
    /// conversation id), unique in the store; see [`SessionRef::Key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// What the session is for.
    pub task: String,
    /// Free-form mode name, e.g. `developer`.
    pub mode: String,
    /// Who the session belongs to.
    pub user_id: Option<String>,
    /// Where the session was started (chat channel, queue, ...).
    pub channel_id: Option<String>,
    /// Lifecycle status.
    pub status: SessionStatus,
    /// Iterations counted so far.
    pub iteration: u32,
    /// Iteration bound; reaching it moves the session to `timeout`.
    pub max_iterations: u32,
    /// Arbitrary JSON object, merged on update.
    pub context: Map<String, Value>,
    /// Reason given with the last pause, while paused.
    pub pause_reason: Option<String>,
    /// Result given on completion.
    pub result: Option<Value>,
    /// Error given on failure.
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Milliseconds since the Unix epoch of the last change.
    pub updated_at: u64,
    /// When the session reached a terminal status.
    pub ended_at: Option<u64>,
    /// Number of events in the history.
    pub event_count: u64,
    /// Optimistic-concurrency version: the history length this state was
    /// read at (equal to `event_count`). Every change bumps it.
    #[serde(default)]
    pub version: u64,
    /// The end of the session's blob log as its history knows it: the
    /// position after the last large value an event names.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub blobs: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What the index keeps of a session: every field a filter or an aggregate
/// needs, and nothing that grows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Lifecycle status.
    pub status: SessionStatus,
    /// Mode name.
    pub mode: String,
    /// Owner.
    pub user_id: Option<String>,
    /// Origin channel.
    pub channel_id: Option<String>,
    /// Creation time (ms).
    pub created_at: u64,
    /// Last change (ms).
    pub updated_at: u64,
    /// When it ended (ms).
    pub ended_at: Option<u64>,
    /// Iterations counted.
    pub iteration: u32,
    /// History length.
    pub event_count: u64,
}

impl Session {
    /// The index summary of this state.
    pub fn summary(&self) -> SessionSummary {
        SessionSummary {
            status: self.status,
            mode: self.mode.clone(),
            user_id: self.user_id.clone(),
            channel_id: self.channel_id.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            ended_at: self.ended_at,
            iteration: self.iteration,
            event_count: self.event_count,
        }
    }

    /// Whether the session can be resumed (it is active or paused).
    pub fn is_resumable(&self) -> bool {
        !self.status.is_terminal()
    }

    /// Iteration / max-iterations as a percentage, 0.0 to 100.0.
    pub fn progress(&self) -> f64 {
        if self.max_iterations == 0 {
            return 0.0;
        }
        (f64::from(self.iteration) * 100.0 / f64::from(self.max_iterations)).min(100.0)
    }

    /// Milliseconds from creation to the end, or to `now_ms` if not ended.
    pub fn duration_ms(&self, now_ms: u64) -> u64 {
        self.ended_at
            .unwrap_or(now_ms)
            .saturating_sub(self.created_at)
    }
}

/// Built-in event kinds. Any other kind is a custom event.
pub mod event_kind {
    /// The session was started.
    pub const START: &str = "start";
    /// An iteration was counted.
    pub const ITERATION: &str = "iteration";
    /// A tool was called.
    pub const TOOL_CALL: &str = "tool_call";
    /// Something was learned.
    pub const LEARNING: &str = "learning";
    /// The session was paused.
    pub const PAUSE: &str = "pause";
    /// The session was resumed.
    pub const RESUME: &str = "resume";
    /// The session was completed.
    pub const COMPLETE: &str = "complete";
    /// The session failed.
    pub const ERROR: &str = "error";
    /// The session reached its iteration bound.
    pub const TIMEOUT: &str = "timeout";
    /// The context was updated (the data names the keys changed).
    pub const CONTEXT: &str = "context";
    /// A conversation item was added (`add_items`).
    pub const ITEM: &str = "item";
    /// The last conversation item was popped (`pop_item`); `of` names it.
    pub const ITEM_POP: &str = "item_pop";
    /// The conversation items were cleared (`clear_items`).
    pub const ITEMS_CLEAR: &str = "items_clear";
    /// A checkpoint was put (`put_checkpoint`).
    pub const CHECKPOINT: &str = "checkpoint";
    /// Writes pending on a checkpoint were put (`put_writes`).
    pub const WRITES: &str = "writes";
    /// Checkpoints were removed from view (`delete_runs`, `prune`).
    pub const CHECKPOINTS_DROP: &str = "checkpoints_drop";
    /// All built-in kinds.
    pub const BUILT_IN: [&str; 16] = [
        START,
        ITERATION,
        TOOL_CALL,
        LEARNING,
        PAUSE,
        RESUME,
        COMPLETE,
        ERROR,
        TIMEOUT,
        CONTEXT,
        ITEM,
        ITEM_POP,
        ITEMS_CLEAR,
        CHECKPOINT,
        WRITES,
        CHECKPOINTS_DROP,
    ];
    /// The kinds whose data may name values of the blob log.
    pub const WITH_BLOBS: [&str; 3] = [ITEM, CHECKPOINT, WRITES];
}

/// One entry of a session's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the history, from 0, without gaps.
    pub seq: u64,
    /// One of [`event_kind`] or a custom kind.
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// Structured data of the event.
    pub data: Value,
}

/// Arguments of [`Engine::start`](crate::Engine::start).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartOptions {
    /// What the session is for (required, non-empty).
    pub task: String,
    /// The caller's key for the session: with a key, `start` returns the
    /// session that has it if there is one (get-or-create), whatever the
    /// other options say.
    #[serde(default)]
    pub key: Option<String>,
    /// Mode name; `default` when `None`.
    pub mode: Option<String>,
    /// Owner.
    pub user_id: Option<String>,
    /// Origin channel.
    pub channel_id: Option<String>,
    /// Iteration bound; 100 when `None`.
    pub max_iterations: Option<u32>,
    /// Initial context; must be a JSON object.
    pub context: Option<Value>,
}

/// How a caller names a session: by the id the store gave it, or by the
/// key the caller gave it at `start`. The two never mix: a key that looks
/// like an id is still a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SessionRef {
    /// The session's id.
    Id(String),
    /// The session's key.
    Key(String),
}

impl SessionRef {
    /// A reference by key.
    pub fn key(key: impl Into<String>) -> Self {
        Self::Key(key.into())
    }
}

impl std::fmt::Display for SessionRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "id {id}"),
            Self::Key(key) => write!(f, "key {:?}", crate::validate::truncate(key)),
        }
    }
}

impl From<&str> for SessionRef {
    fn from(id: &str) -> Self {
        Self::Id(id.to_owned())
    }
}

impl From<&String> for SessionRef {
    fn from(id: &String) -> Self {
        Self::Id(id.clone())
    }
}

impl From<String> for SessionRef {
    fn from(id: String) -> Self {
        Self::Id(id)
    }
}

impl From<&SessionRef> for SessionRef {
    fn from(r: &SessionRef) -> Self {
        r.clone()
    }
}

/// A tool call to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// Tool name.
    pub name: String,
    /// What was passed to the tool.
    pub input: Value,
    /// What the tool returned.
    pub output: Value,
    /// How long the call took.
    pub duration_ms: u64,
}

/// Something learned, to record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Learning {
    /// The insight.
    pub insight: String,
    /// Where it was (or should be) written down.
    pub expertise_file: Option<String>,
}

/// Which sessions a query selects; every `Some` field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionFilter {
    /// Owner equals.
    pub user_id: Option<String>,
    /// Channel equals.
    pub channel_id: Option<String>,
    /// Mode equals.
    pub mode: Option<String>,
    /// Status equals.
    pub status: Option<SessionStatus>,
    /// Created at or after (ms).
    pub created_after: Option<u64>,
    /// Created at or before (ms).
    pub created_before: Option<u64>,
    /// Updated at or after (ms).
    pub updated_after: Option<u64>,
    /// Updated at or before (ms).
    pub updated_before: Option<u64>,
}

impl SessionFilter {
    /// A filter selecting one status (the `active`/`paused`/... shortcuts).
    pub fn status(status: SessionStatus) -> Self {
        Self {
            status: Some(status),
            ..Self::default()
        }
    }

    /// Whether a session with summary `s` is selected.
    pub fn matches(&self, s: &SessionSummary) -> bool {
        fn eq(want: &Option<String>, have: &Option<String>) -> bool {
            want.as_ref().is_none_or(|w| have.as_ref() == Some(w))
        }
        eq(&self.user_id, &s.user_id)
            && eq(&self.channel_id, &s.channel_id)
            && self.mode.as_ref().is_none_or(|m| *m == s.mode)
            && self.status.is_none_or(|st| st == s.status)
            && self.created_after.is_none_or(|t| s.created_at >= t)
            && self.created_before.is_none_or(|t| s.created_at <= t)
            && self.updated_after.is_none_or(|t| s.updated_at >= t)
            && self.updated_before.is_none_or(|t| s.updated_at <= t)
    }
}

/// One page of a listing, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionPage {
    /// The sessions of this page.
    pub sessions: Vec<Session>,
    /// Cursor for the next page (pass it to `list` with the same filter);
    /// `None` on the last one. An opaque token: today the last session id
    /// of the page, `.` and a check, but only `list` should make or read
    /// it, and `list` refuses a string it did not make.
    pub next_cursor: Option<String>,
    /// Sessions of this page that the index names but whose history could
    /// not be read (damaged, or not the store's own files), as
    /// `"<id>: <why>"`: left out of `sessions`, never silently. `stats`,
    /// which reads the index only, counts them; `fsck` names them too.
    #[serde(default)]
    pub unreadable: Vec<String>,
}

/// One page of a history, in sequence order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventPage {
    /// The events of this page.
    pub events: Vec<Event>,
    /// Where to read from next; `None` at the end.
    pub next_seq: Option<u64>,
}

/// Aggregates over selected sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionStats {
    /// Number of sessions selected.
    pub total: u64,
    /// Count per status (every status listed, zeros included).
    pub by_status: BTreeMap<SessionStatus, u64>,
    /// Count per mode name.
    pub by_mode: BTreeMap<String, u64>,
    /// Mean iterations over the selected sessions.
    pub average_iterations: f64,
    /// completed / ended, 0.0 to 1.0; 0.0 when none has ended.
    pub success_rate: f64,
}

/// What a cleanup removed, or would remove on a dry run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupReport {
    /// Nothing was removed; `removed` lists what would be.
    pub dry_run: bool,
    /// Ids of the sessions removed.
    pub removed: Vec<String>,
}

/// What an index check or rebuild found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexReport {
    /// Sessions whose history was read.
    pub sessions: u64,
    /// Sessions whose index entry differed from their history, was
    /// missing, or named no session, or whose key was not bound to them
    /// (refreshed unless a dry run).
    pub stale: Vec<String>,
    /// Sessions whose history could not be read, or whose key names
    /// another session, with the reason.
    pub unreadable: Vec<String>,
}

/// What a host needs to pick a session up again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resumption {
    /// The session, with its context.
    pub session: Session,
    /// The last (at most 10) events, oldest first.
    pub recent_events: Vec<Event>,
    /// Whether it can be resumed.
    pub resumable: bool,
}

/// Where lifecycle notifications go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookConfig {
    /// `http://` or `https://` endpoint.
    pub url: String,
    /// `whsec_` + base64 signing secret.
    pub secret: String,
    /// Notification kinds to send (`session.started`, ...); empty = all.
    pub event_kinds: Vec<String>,
    /// Disabled endpoints get nothing.
    pub enabled: bool,
}

/// One notification for one endpoint, as handed to a [`Notifier`](crate::Notifier).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Stable id (`webhook-id`), `msg_` + UUID v7.
    pub id: String,
    /// The session whose event raised it.
    #[serde(default)]
    pub session_id: String,
    /// Position of that event in the session's history.
    #[serde(default)]
    pub seq: u64,
    /// Endpoint.
    pub url: String,
    /// Signing secret.
    pub secret: String,
    /// Notification kind, e.g. `session.completed`.
    pub kind: String,
    /// Milliseconds since the Unix epoch.
    pub timestamp: u64,
    /// JSON body to send.
    pub body: String,
}

/// Bytes as a framework's serializer made them, with its type tag (a
/// LangGraph `dumps_typed` pair). The core never looks inside.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypedValue {
    /// The serializer's tag (`msgpack`, `json`, `bytes`, ...).
    pub type_: String,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// A channel's value at a version; `None`: the channel was emptied.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelValue {
    /// The channel's name.
    pub channel: String,
    /// Its version: a JSON number or string.
    pub version: Value,
    /// Its value at that version.
    pub value: Option<TypedValue>,
}

/// A checkpoint to put (LangGraph's `put`).
#[derive(Debug, Clone, PartialEq)]
pub struct NewCheckpoint {
    /// Namespace (`""` for the root graph).
    pub ns: String,
    /// The checkpoint's id (ids sort as text, in time order).
    pub id: String,
    /// The checkpoint it follows.
    pub parent_id: Option<String>,
    /// The checkpoint without its channel values.
    pub checkpoint: TypedValue,
    /// A JSON object.
    pub metadata: Value,
    /// The checkpoint's channel versions, a JSON object.
    pub channel_versions: Value,
    /// The values of the channels that got a new version.
    pub new_values: Vec<ChannelValue>,
}

/// A write pending on a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingWrite {
    /// The task that wrote it.
    pub task_id: String,
    /// The task's path.
    pub task_path: String,
    /// The channel written.
    pub channel: String,
    /// The value written.
    pub value: TypedValue,
}

/// A checkpoint as read back (LangGraph's `CheckpointTuple`).
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointTuple {
    /// The session (thread) it belongs to.
    pub session_id: String,
    /// That session's key (the thread id), if it has one.
    pub key: Option<String>,
    /// Namespace.
    pub ns: String,
    /// Id.
    pub id: String,
    /// The checkpoint it follows.
    pub parent_id: Option<String>,
    /// The checkpoint without its channel values.
    pub checkpoint: TypedValue,
    /// A JSON object.
    pub metadata: Value,
    /// Its channel values, by channel name.
    pub channel_values: Vec<(String, TypedValue)>,
    /// The writes pending on it, sorted by task path, task id, position.
    pub pending_writes: Vec<PendingWrite>,
}

/// Which checkpoints a listing returns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckpointQuery {
    /// One session (thread); `None`: every session `threads` selects.
    pub session: Option<SessionRef>,
    /// The sessions to list when `session` is `None`.
    pub threads: SessionFilter,
    /// Only this namespace; `None`: every one.
    pub ns: Option<String>,
    /// Only this checkpoint.
    pub id: Option<String>,
    /// Only checkpoints whose id sorts before this one.
    pub before: Option<String>,
    /// Top-level metadata keys that must equal these values (a `null`
    /// matches a missing key).
    pub metadata: Option<Map<String, Value>>,
    /// At most this many, over all pages.
    pub limit: Option<u32>,
}

/// One page of a checkpoint listing.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckpointPage {
    /// The checkpoints of this page.
    pub checkpoints: Vec<CheckpointTuple>,
    /// Pass back with the same query for the next page; `None` at the end.
    pub next_cursor: Option<String>,
}
