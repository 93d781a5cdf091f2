"""The values of the session API (the WIT ``types``, ``conversations`` and
``checkpoints`` interfaces) as frozen dataclasses with snake_case fields.
JSON-text fields (context, result, data, metadata) hold the parsed Python
value; an absent ``option`` is None."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple

ERROR_CODES = (
    "not-found",
    "invalid-transition",
    "invalid-input",
    "conflict",
    "storage",
    "limit-exceeded",
)


class SessionError(Exception):
    """A failure of the session API: ``code`` is the WIT ``session-error``
    case (one of :data:`ERROR_CODES`), ``message`` says what to do about it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Key:
    """A session named by its key (the WIT ``session-ref`` case ``key``):
    every method that takes a session takes its id (a ``str``) or
    ``Key("...")``. A key is the caller's name for a session (a LangGraph
    thread id, a conversation id): 1 to 512 bytes of text without control
    characters, given to :meth:`Sessions.start`; a key that looks like an
    id is still a key."""

    key: str


@dataclass(frozen=True)
class Session:
    """A session's current state."""

    id: str
    key: Optional[str]
    """The caller's key, if the session was started with one."""
    task: str
    mode: str
    user_id: Optional[str]
    channel_id: Optional[str]
    status: str
    """active, paused, completed, failed or timeout."""
    iteration: int
    max_iterations: int
    context: Dict[str, Any]
    pause_reason: Optional[str]
    result: Any
    """The result given on completion (None if none was given)."""
    error: Optional[str]
    created_at: int
    """Milliseconds since the Unix epoch, like every time here."""
    updated_at: int
    ended_at: Optional[int]
    event_count: int
    version: int
    """The history length this state was read at."""


@dataclass(frozen=True)
class Event:
    """One entry of a session's history."""

    seq: int
    kind: str
    timestamp: int
    data: Any


@dataclass(frozen=True)
class EventPage:
    """One page of a history; ``next_seq`` is None at its end."""

    events: Tuple[Event, ...]
    next_seq: Optional[int]


@dataclass(frozen=True)
class SessionPage:
    """One page of a listing, newest first; pass ``next_cursor`` on."""

    sessions: Tuple[Session, ...]
    next_cursor: Optional[str]
    #: Sessions of this page whose history could not be read, as
    #: ``"<id>: <why>"`` (left out of ``sessions``).
    unreadable: Tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionStats:
    """Aggregates over the sessions a filter selects."""

    total: int
    by_status: Dict[str, int]
    by_mode: Dict[str, int]
    average_iterations: float
    success_rate: float


@dataclass(frozen=True)
class Resumption:
    """A session, its last (at most 10) events and whether it can resume."""

    session: Session
    recent_events: Tuple[Event, ...]
    resumable: bool


@dataclass(frozen=True)
class CleanupReport:
    """What ``cleanup`` removed, or would remove on a dry run."""

    dry_run: bool
    removed: Tuple[str, ...]


@dataclass(frozen=True)
class IndexReport:
    """What an index check or rebuild found."""

    sessions: int
    stale: Tuple[str, ...]
    unreadable: Tuple[str, ...]


@dataclass(frozen=True)
class WebhookConfig:
    """Where lifecycle notifications go."""

    url: str
    secret: str
    event_kinds: Tuple[str, ...]
    enabled: bool


@dataclass(frozen=True)
class Webhooks:
    """Whether and how :func:`~agent_session.open_sessions` delivers the
    directory's webhook notifications from this process (the
    ``agent-session deliver`` of the Rust CLI, run in a background thread).

    One sender delivers from a directory at a time, whatever its host and
    process; another waits its turn (it looks every ``poll_ms``), so
    several processes may ask for one."""

    deliver: bool = False
    #: Exceptions to the address policy for the endpoints dialled
    #: (addresses, ranges like ``10.0.0.0/8``, host names); None: the
    #: ``webhook_allow`` of ``open_sessions``.
    allow: Optional[Sequence[str]] = None
    #: Delays before the retries in milliseconds (jittered by ±20 %); after
    #: the last, a delivery is given up (empty: after the first attempt).
    #: None: the default (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h).
    retry_schedule_ms: Optional[Sequence[int]] = None
    #: Time allowed per request, from connecting to the response head.
    timeout_ms: int = 15_000
    #: Requests in flight at once.
    concurrency: int = 16
    #: How often to look for what other processes queued (what this
    #: process queues is looked for at once).
    poll_ms: int = 1000


@dataclass(frozen=True)
class Attempt:
    """One attempt to send a notification."""

    at: int
    """When it started (milliseconds since the Unix epoch)."""
    duration_ms: int
    """How long until the response head (or the error)."""
    status: Optional[int]
    """The HTTP status, if an answer came."""
    error: Optional[str]
    refused: bool
    """The sender's address policy refused to dial the endpoint: no request
    was made."""


@dataclass(frozen=True)
class Delivery:
    """A webhook notification and what became of it (its secret left out)."""

    id: str
    """The ``webhook-id``."""
    session_id: str
    seq: int
    """Position of its event in the session's history."""
    kind: str
    """e.g. ``session.completed``."""
    url: str
    timestamp: int
    """When it was raised."""
    state: str
    """pending, delivered, failed or discarded."""
    next_attempt_at: int
    """When the next attempt is due (pending deliveries)."""
    attempts: Tuple[Attempt, ...]
    reason: Optional[str]
    """Why it failed or was discarded."""


@dataclass(frozen=True)
class TypedValue:
    """Bytes as a framework's serializer made them, with its type tag (a
    LangGraph serializer's ``dumps_typed`` pair). Wherever one is taken, a
    ``(type, bytes)`` tuple is taken too."""

    type: str
    bytes: bytes


@dataclass(frozen=True)
class ChannelValue:
    """A channel's value at a version, put with a checkpoint; ``value``
    None: the channel was emptied."""

    channel: str
    version: Any
    """A JSON number or string."""
    value: Optional[TypedValue]


@dataclass(frozen=True)
class PendingWrite:
    """A write pending on a checkpoint."""

    task_id: str
    task_path: str
    channel: str
    value: TypedValue


@dataclass(frozen=True)
class CheckpointTuple:
    """A checkpoint as read back: the checkpoint without its channel
    values, its channel values (the value stored for each channel at the
    version the checkpoint has) and the writes pending on it (sorted by
    task path, task id and position)."""

    session_id: str
    key: Optional[str]
    """The session's key (the thread id), if it has one."""
    ns: str
    id: str
    parent_id: Optional[str]
    checkpoint: TypedValue
    metadata: Dict[str, Any]
    channel_values: Dict[str, TypedValue]
    pending_writes: Tuple[PendingWrite, ...]


@dataclass(frozen=True)
class CheckpointPage:
    """One page of a checkpoint listing, newest first within a thread and
    namespace; pass ``next_cursor`` on (with the same query)."""

    checkpoints: Tuple[CheckpointTuple, ...]
    next_cursor: Optional[str]
