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
    /// All built-in kinds.
    pub const BUILT_IN: [&str; 10] = [
        START, ITERATION, TOOL_CALL, LEARNING, PAUSE, RESUME, COMPLETE, ERROR, TIMEOUT, CONTEXT,
    ];
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
    /// missing, or named no session (refreshed unless a dry run).
    pub stale: Vec<String>,
    /// Sessions whose history could not be read, with the reason.
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
