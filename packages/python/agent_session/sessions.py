"""The session API over a directory: :func:`open_sessions` and :class:`Sessions`."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from wasmtime import WasmtimeError
from wasmtime.component import Record, Variant

from . import _args as a
from ._args import MISSING
from ._root import DEFAULT_LOCK_TIMEOUT_MS, Root, RootError
from ._cache import Origin
from ._deliver import Deliverer, DeliveryCalls, delivery
from ._postgres import PgStore, is_url, redact, store_imports
from ._runtime import CHECKPOINTS, CONVERSATIONS, DELIVERY, Runtime, compiled, origin, record
from .types import (
    ChannelValue,
    CheckpointPage,
    CheckpointTuple,
    CleanupReport,
    Delivery,
    Event,
    EventPage,
    IndexReport,
    Key,
    PendingWrite,
    Resumption,
    Session,
    SessionError,
    SessionPage,
    SessionStats,
    TypedValue,
    WebhookConfig,
    Webhooks,
)

COMPONENT_ENV = "AGENT_SESSION_COMPONENT"
# The component ships inside the package (scripts/python-host.sh puts it
# there in this repository; the wheel carries it), so an installed package
# needs nothing from the repository.
PACKAGED_COMPONENT = Path(__file__).resolve().parent / "component" / "agent_session_on_root.wasm"
# The session component that imports `store` and `notify` (the Rust host's),
# run on PostgreSQL.
PACKAGED_GUEST = Path(__file__).resolve().parent / "component" / "agent_session_guest.wasm"
# Present while the index must be rebuilt (after a migration or a lost index
# file); the directory store writes it, the host that opens the root runs
# the rebuild, as the Rust host does.
REINDEX = "REINDEX"
# Operations that may queue a webhook notification: a sender running in
# this process looks soon after them.
NOTIFYING = frozenset(("start", "pause", "resume", "complete", "fail", "iterate", "import"))

PathLike = Union[str, "os.PathLike[str]"]
#: How a method is told which session: its id, or ``Key(key)``.
SessionRef = Union[str, Key]


def component_path(component: Optional[PathLike] = None, *, postgres: bool = False) -> Path:
    """The component to run: ``component``, else ``$AGENT_SESSION_COMPONENT``,
    else the one in this package. Raises FileNotFoundError if absent.

    With ``postgres``: ``component``, else the package's
    ``agent_session_guest.wasm`` (the component that imports ``store`` and
    ``notify``; ``$AGENT_SESSION_COMPONENT`` names the on-root one)."""
    given = component if postgres else component or os.environ.get(COMPONENT_ENV)
    path = Path(given) if given else PACKAGED_GUEST if postgres else PACKAGED_COMPONENT
    if not path.is_file():
        how = (
            f"pass component= or set {COMPONENT_ENV} to an existing file"
            if given
            else "build it with `cargo build --release -p agent-session-host`, then "
            "`./scripts/python-host.sh` (which copies it into the package)"
        )
        raise FileNotFoundError(f"the session component {path} does not exist; {how}")
    return path


def component_origin(component: Optional[PathLike] = None) -> Optional[Origin]:
    """Where this process got the component (as :func:`component_path`
    finds it) from: ``"cache"`` (deserialized from the compiled-component
    cache), ``"compiled"``, or None if no session has loaded it yet."""
    return origin(str(component_path(component)))


def open_sessions(
    directory: PathLike,
    *,
    component: Optional[PathLike] = None,
    durable: bool = True,
    webhook_allow: Sequence[str] = (),
    lock_timeout_ms: Optional[float] = DEFAULT_LOCK_TIMEOUT_MS,
    webhooks: Optional[Webhooks] = None,
) -> "Sessions":
    """The sessions stored in ``directory`` (created if needed), in the same
    format as the Rust host, which may use the directory at the same time.

    A ``directory`` that is a string starting with ``postgres://`` or
    ``postgresql://`` is a PostgreSQL database instead (as the CLI's
    ``--store URL``): the sessions are kept in the Rust host's tables, which
    the Rust CLI must have made (``agent-session --store URL list`` once);
    needs psycopg 3 (the ``postgres`` extra). There, ``lock_timeout_ms`` is
    the database's ``lock_timeout``, ``durable=False`` commits
    asynchronously, and webhook notifications go to the database outbox,
    delivered by the Rust sender (``agent-session --store URL deliver``):
    ``webhooks=Webhooks(deliver=True)`` is refused.

    ``durable=False`` acknowledges appends before ``fdatasync`` (they survive
    a crash of the process, not of the machine): for tests and throwaway
    sessions. ``webhook_allow``: exceptions to the webhook address policy
    that ``set_webhook`` applies (addresses, ranges, host names; as the
    CLI's ``--webhook-allow``). ``lock_timeout_ms``: how long a call waits
    for a session another process is writing before it fails with
    ``SessionError`` ``conflict`` (``None``: as long as it takes). The
    component is loaded once per process, from the compiled-component cache
    when it holds it.

    ``webhooks=Webhooks(deliver=True)`` makes this process a webhook sender
    for the directory, in a background thread, until :meth:`Sessions.close`
    (see :class:`Webhooks`); otherwise another process delivers what is
    queued (``agent-session deliver``, ``python -m agent_session.deliver``).
    """
    allow = a.strings(webhook_allow, "open_sessions: webhook_allow")
    sending = _sender_options(webhooks, allow)
    if is_url(directory):
        return _open_postgres(str(directory), component, durable, allow, lock_timeout_ms, sending)
    path = component_path(component)
    try:
        root = Root(os.fspath(directory), lock_timeout_ms)
    except OSError as e:
        raise SessionError("storage", f"opening the session store at {directory}: {e}") from None
    runtime = Runtime(compiled(str(path)), root, durable)
    sessions = Sessions(runtime, allow)
    # The first call opens the store (a new root is made one; an old format
    # is migrated). After a lost index file (or a migration) the index is
    # rebuilt in place before anything else runs, as the Rust host does.
    sessions.list(limit=1)
    try:
        if root.stat(REINDEX) is not None:
            sessions.rebuild_index(dry_run=False)
            root.remove_file(REINDEX)
            if durable:
                # Make the removal durable (else a crash brings REINDEX back,
                # and with it another full rebuild on the next open).
                root.sync_dir(".")
    except RootError as e:
        raise SessionError("storage", f"rebuilding the index of {directory}: {e.message}") from None
    if sending is not None:
        try:
            deliverer = _open_deliverer(path, directory, durable, lock_timeout_ms, sending)
            sessions._deliverer = deliverer
            # Here rather than in the background, so that a bad allow rule
            # is this call's error (the sender lock may be another's yet).
            deliverer.acquire()
        except BaseException:
            sessions.close()
            raise
        deliverer.run()
    return sessions


def _open_postgres(
    url: str,
    component: Optional[PathLike],
    durable: bool,
    allow: Sequence[str],
    lock_timeout_ms: Optional[float],
    sending: Optional[Webhooks],
) -> "Sessions":
    if sending is not None:
        raise SessionError(
            "invalid-input",
            "open_sessions: webhooks=Webhooks(deliver=True) is not available on PostgreSQL: "
            "notifications are queued in the database outbox, which the Rust sender delivers "
            f"(agent-session --store {redact(url)} deliver)",
        )
    path = component_path(component, postgres=True)
    try:
        store = PgStore(url, durable, lock_timeout_ms)
    except SessionError:
        raise
    except Exception as e:
        raise SessionError("storage", f"opening the session store at {redact(url)}: {e}") from None
    runtime = Runtime(compiled(str(path)), store, durable, imports=store_imports(store))
    sessions = Sessions(runtime, allow)
    sessions._postgres = redact(url)
    try:
        sessions.list(limit=1)
    except BaseException:
        sessions.close()
        raise
    return sessions


def _sender_options(webhooks: Optional[Webhooks], webhook_allow: Sequence[str]) -> Optional[Webhooks]:
    """``webhooks`` checked, with its defaults filled in; None for no sender."""
    if webhooks is None:
        return None
    if not isinstance(webhooks, Webhooks):
        raise TypeError(f"open_sessions: webhooks must be a Webhooks, not {type(webhooks).__name__}")
    if not a.boolean(webhooks.deliver, "open_sessions: webhooks.deliver"):
        return None

    def positive(v: Any, where: str) -> int:
        n = a.u32(v, where)
        if n == 0:
            raise SessionError("invalid-input", f"{where} must be at least 1")
        return n

    schedule = webhooks.retry_schedule_ms
    if schedule is not None and not isinstance(schedule, (list, tuple)):
        raise SessionError(
            "invalid-input",
            f"open_sessions: webhooks.retry_schedule_ms must be an array of integers, "
            f"got {a.describe(schedule)}",
        )
    return Webhooks(
        deliver=True,
        allow=(
            list(webhook_allow)
            if webhooks.allow is None
            else a.strings(webhooks.allow, "open_sessions: webhooks.allow")
        ),
        retry_schedule_ms=(
            None
            if schedule is None
            else [
                a.u64(v, f"open_sessions: webhooks.retry_schedule_ms[{i}]")
                for i, v in enumerate(schedule)
            ]
        ),
        timeout_ms=positive(webhooks.timeout_ms, "open_sessions: webhooks.timeout_ms"),
        concurrency=positive(webhooks.concurrency, "open_sessions: webhooks.concurrency"),
        poll_ms=positive(webhooks.poll_ms, "open_sessions: webhooks.poll_ms"),
    )


def _open_deliverer(
    component: Path,
    directory: PathLike,
    durable: bool,
    lock_timeout_ms: Optional[float],
    options: Webhooks,
) -> Deliverer:
    """A webhook sender for ``directory`` (opened already, so migrated and
    indexed), not running yet.

    It runs on an instance of the component of its own, on a root of its
    own: its sender state (the sender lock, the requests handed out and
    not answered yet) then lives apart from the user's instance, which
    ``Sessions.close`` drops (with its locks) and a trap in any call of the
    user's would drop too; and the two never wait for each other's locks
    (``flock`` locks belong to an open file, so the two roots' locks
    exclude each other like two processes'). Calls into both are still
    serialized per process (``_runtime._calls``)."""
    try:
        root = Root(os.fspath(directory), lock_timeout_ms)
    except OSError as e:
        raise SessionError("storage", f"opening the session store at {directory}: {e}") from None
    return Deliverer(
        DeliveryCalls(Runtime(compiled(str(component)), root, durable)),
        allow=options.allow or (),
        retry_schedule_ms=options.retry_schedule_ms,
        timeout_ms=options.timeout_ms,
        concurrency=options.concurrency,
        poll_ms=options.poll_ms,
    )


def _parse_opt(text: Optional[str]) -> Any:
    return None if text is None else json.loads(text)


def _field(r: Any, name: str) -> Any:
    return getattr(r, name.replace("_", "-"))


def _session(r: Any) -> Session:
    return Session(
        id=r.id,
        key=r.key,
        task=r.task,
        mode=r.mode,
        user_id=_field(r, "user_id"),
        channel_id=_field(r, "channel_id"),
        status=r.status,
        iteration=r.iteration,
        max_iterations=_field(r, "max_iterations"),
        context=json.loads(r.context),
        pause_reason=_field(r, "pause_reason"),
        result=_parse_opt(r.result),
        error=r.error,
        created_at=_field(r, "created_at"),
        updated_at=_field(r, "updated_at"),
        ended_at=_field(r, "ended_at"),
        event_count=_field(r, "event_count"),
        version=r.version,
    )


def _event(r: Any) -> Event:
    return Event(seq=r.seq, kind=r.kind, timestamp=r.timestamp, data=json.loads(r.data))


def _events(rs: Iterable[Any]) -> Tuple[Event, ...]:
    return tuple(_event(r) for r in rs)


def _typed(r: Any) -> TypedValue:
    # A value read back crosses as base64 text (a WIT `typed-text`): one
    # string, where a `list<u8>` is one wasmtime value per byte, and
    # wasmtime bounds what one call's result may hold that way (~2.6 MiB).
    return TypedValue(type=r.type, bytes=base64.b64decode(r.base64))


def _checkpoint(r: Any) -> CheckpointTuple:
    return CheckpointTuple(
        session_id=_field(r, "session_id"),
        key=r.key,
        ns=r.ns,
        id=r.id,
        parent_id=_field(r, "parent_id"),
        checkpoint=_typed(r.checkpoint),
        metadata=json.loads(r.metadata),
        channel_values={c: _typed(v) for c, v in _field(r, "channel_values")},
        pending_writes=tuple(
            PendingWrite(
                task_id=_field(w, "task_id"),
                task_path=_field(w, "task_path"),
                channel=w.channel,
                value=_typed(w.value),
            )
            for w in _field(r, "pending_writes")
        ),
    )


def _channel_value(v: Any, where: str) -> Record:
    if not isinstance(v, ChannelValue):
        raise SessionError(
            "invalid-input", f"{where} must be a ChannelValue, got {a.describe(v)}"
        )
    return record(
        channel=a.string(v.channel, f"{where}.channel"),
        version=a.json_text(v.version, f"{where}.version"),
        value=a.opt_typed_value(v.value, f"{where}.value"),
    )


def _write(v: Any, where: str) -> Tuple[str, Record]:
    if not (isinstance(v, (list, tuple)) and len(v) == 2):
        raise SessionError(
            "invalid-input", f"{where} must be a (channel, value) pair, got {a.describe(v)}"
        )
    return (a.string(v[0], f"{where}.0"), a.typed_value(v[1], f"{where}.1"))


def _list_of(v: Any, where: str, what: str) -> Sequence[Any]:
    if not isinstance(v, (list, tuple)):
        raise SessionError("invalid-input", f"{where} must be an array of {what}, got {a.describe(v)}")
    return v


def _webhook(r: Any) -> WebhookConfig:
    return WebhookConfig(
        url=r.url, secret=r.secret, event_kinds=tuple(_field(r, "event_kinds")), enabled=r.enabled
    )


def _filter(
    where: str,
    user_id: Optional[str],
    channel_id: Optional[str],
    mode: Optional[str],
    status: Optional[str],
    created_after: Optional[int],
    created_before: Optional[int],
    updated_after: Optional[int],
    updated_before: Optional[int],
) -> Record:
    return record(
        user_id=a.opt_string(user_id, f"{where}.user-id"),
        channel_id=a.opt_string(channel_id, f"{where}.channel-id"),
        mode=a.opt_string(mode, f"{where}.mode"),
        status=a.opt_status(status, f"{where}.status"),
        created_after=a.opt_u64(created_after, f"{where}.created-after"),
        created_before=a.opt_u64(created_before, f"{where}.created-before"),
        updated_after=a.opt_u64(updated_after, f"{where}.updated-after"),
        updated_before=a.opt_u64(updated_before, f"{where}.updated-before"),
    )


class Sessions:
    """The session API (the WIT ``sessions``, ``conversations`` and
    ``checkpoints`` interfaces) on one directory. A session is named by its
    id or, if it was started with one, by ``Key(key)``.

    Every method raises :class:`SessionError` on failure: the component
    judges every argument; one its WIT type cannot hold (a number for a
    string, -1 for a count, NaN in a JSON value, a record field left out) is
    refused before the call, as ``invalid-input`` too (``_args.py``, worded
    as the Node package words it). Objects may be used from any thread,
    but calls into the component are serialized per process (wasmtime-py's
    value conversion is not thread-safe); processes, Rust or Python, work
    on one directory in parallel. A bug that traps the component raises
    wasmtime's error instead.
    """

    def __init__(self, runtime: Runtime, webhook_allow: Sequence[str] = ()) -> None:
        self._runtime = runtime
        self._webhook_allow = list(webhook_allow)
        self._deliverer: Optional[Deliverer] = None
        # The (redacted) URL when the store is PostgreSQL.
        self._postgres: Optional[str] = None

    def close(self) -> None:
        """Stop this process's webhook sender, if it runs one (see
        :meth:`stop_delivering`), and let go of this object's notification
        intake segment, so that a sender can take it in and delete it. The
        object stays usable (a later notification starts a new segment),
        without the sender."""
        self.stop_delivering()
        self._runtime.reset()

    def __enter__(self) -> "Sessions":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, name: str, *args: Any) -> Any:
        result = self._limited(self._runtime.call, name, *args)
        if isinstance(result, Variant):
            raise SessionError(result.tag, str(result.payload))
        if name in NOTIFYING and self._deliverer is not None:
            self._deliverer.kick()
        return result

    def _call_in(self, interface: str, name: str, *args: Any) -> Any:
        result = self._limited(self._runtime.call_in, interface, name, *args)
        if isinstance(result, Variant):
            raise SessionError(result.tag, str(result.payload))
        return result

    def _limited(self, call: Any, *args: Any) -> Any:
        """``call(*args)``; on PostgreSQL, wasmtime's refusal to lift more
        than its hostcall fuel allows (about 2.6 MiB of bytes handed to
        one ``store`` call) is ``limit-exceeded``. Large values never come
        near it (the component keeps them in records of at most 1 MiB);
        an operation whose events together are larger (a copy or an
        import of a long thread, appended all at once) does. Nothing was
        written: the append never reached the database; the instance is
        made anew."""
        try:
            return call(*args)
        except WasmtimeError as e:
            if self._postgres is not None and "fuel allocated for hostcalls" in str(e):
                raise SessionError(
                    "limit-exceeded",
                    "this operation hands the database more than the Python host can pass "
                    "in one store call on PostgreSQL (wasmtime-py lifts at most about 2.6 MiB "
                    "of bytes per call; nothing was written): copy or import a thread this "
                    "large with the Rust host (agent-session --store), or on a directory",
                ) from None
            raise

    # --- lifecycle ---

    def start(
        self,
        task: str = MISSING,
        *,
        key: Optional[str] = None,
        mode: Optional[str] = None,
        user_id: Optional[str] = None,
        channel_id: Optional[str] = None,
        max_iterations: Optional[int] = None,
        context: Optional[Dict[str, Any]] = None,
    ) -> Session:
        """Start a new active session (mode "default" and 100 iterations
        when not given; ``context`` a JSON object).

        With a ``key`` (1 to 512 bytes of text, no control characters),
        get-or-create: the session that has the key is returned as it is
        (the other arguments are not applied), else one is made with it.
        Racing starts of one key, in any process and host, all get the same
        session. Every method then takes ``Key(key)`` for it."""
        options = record(
            key=a.opt_string(key, "start: options.key"),
            task=a.string(task, "start: options.task"),
            mode=a.opt_string(mode, "start: options.mode"),
            user_id=a.opt_string(user_id, "start: options.user-id"),
            channel_id=a.opt_string(channel_id, "start: options.channel-id"),
            max_iterations=a.opt_u32(max_iterations, "start: options.max-iterations"),
            context=a.opt_json(context, "start: options.context"),
        )
        return _session(self._call("start", options))

    def get(self, id: SessionRef) -> Session:
        """Read a session."""
        return _session(self._call("get", a.session_ref(id, "get")))

    def pause(self, id: SessionRef, reason: Optional[str] = None) -> Session:
        """Pause an active session."""
        return _session(
            self._call("pause", a.session_ref(id, "pause"), a.opt_string(reason, "pause: reason"))
        )

    def resume(self, id: SessionRef) -> Session:
        """Resume a paused session."""
        return _session(self._call("resume", a.session_ref(id, "resume")))

    def complete(self, id: SessionRef, result: Any = None) -> Session:
        """Complete an active or paused session with a JSON ``result``."""
        return _session(
            self._call(
                "complete", a.session_ref(id, "complete"), a.opt_json(result, "complete: result")
            )
        )

    def fail(self, id: SessionRef, error: str) -> Session:
        """Fail an active or paused session."""
        return _session(
            self._call("fail", a.session_ref(id, "fail"), a.string(error, "fail: error"))
        )

    # --- iterations and events ---

    def iterate(self, id: SessionRef, data: Any = None) -> Session:
        """Count one iteration of an active session (JSON ``data``); reaching
        max_iterations moves it to timeout."""
        return _session(
            self._call("iterate", a.session_ref(id, "iterate"), a.opt_json(data, "iterate: data"))
        )

    def record_tool_call(
        self,
        id: SessionRef,
        *,
        name: str = MISSING,
        input: Any = MISSING,
        output: Any = MISSING,
        duration_ms: int = MISSING,
    ) -> Event:
        """Record a tool call (JSON input and output) in an active session.
        Every field is required (a left-out one is ``invalid-input``)."""
        call = record(
            name=a.string(name, "record-tool-call: call.name"),
            input=a.json_text(input, "record-tool-call: call.input"),
            output=a.json_text(output, "record-tool-call: call.output"),
            duration_ms=a.u64(duration_ms, "record-tool-call: call.duration-ms"),
        )
        return _event(self._call("record-tool-call", a.session_ref(id, "record-tool-call"), call))

    def record_learning(
        self, id: SessionRef, *, insight: str = MISSING, expertise_file: Optional[str] = None
    ) -> Event:
        """Record a learning in an active or paused session (``insight`` is
        required)."""
        learning = record(
            insight=a.string(insight, "record-learning: learning.insight"),
            expertise_file=a.opt_string(expertise_file, "record-learning: learning.expertise-file"),
        )
        return _event(self._call("record-learning", a.session_ref(id, "record-learning"), learning))

    def record_event(self, id: SessionRef, kind: str, data: Any) -> Event:
        """Record a custom event (a kind that is not built in) with JSON ``data``."""
        return _event(
            self._call(
                "record-event",
                a.session_ref(id, "record-event"),
                a.string(kind, "record-event: kind"),
                a.json_text(data, "record-event: data"),
            )
        )

    def events(self, id: SessionRef, from_: int = 0, limit: int = 100) -> EventPage:
        """The history from position ``from_``, at most ``limit`` (max 1000) events."""
        page = self._call(
            "events",
            a.session_ref(id, "events"),
            a.u64(from_, "events: from"),
            a.u32(limit, "events: limit"),
        )
        return EventPage(events=_events(page.events), next_seq=_field(page, "next_seq"))

    def recent_events(self, id: SessionRef) -> Tuple[Event, ...]:
        """The last 10 events, oldest first."""
        return _events(self._call("recent-events", a.session_ref(id, "recent-events")))

    # --- context ---

    def update_context(self, id: SessionRef, patch: Dict[str, Any]) -> Session:
        """Merge a JSON object into the context (a None value removes a key)."""
        return _session(
            self._call(
                "update-context",
                a.session_ref(id, "update-context"),
                a.json_text(patch, "update-context: patch"),
            )
        )

    def resumption_context(self, id: SessionRef) -> Resumption:
        """The session, its recent history and whether it can be resumed."""
        r = self._call("resumption-context", a.session_ref(id, "resumption-context"))
        return Resumption(
            session=_session(r.session),
            recent_events=_events(_field(r, "recent_events")),
            resumable=r.resumable,
        )

    # --- queries ---

    def list(
        self,
        *,
        user_id: Optional[str] = None,
        channel_id: Optional[str] = None,
        mode: Optional[str] = None,
        status: Optional[str] = None,
        created_after: Optional[int] = None,
        created_before: Optional[int] = None,
        updated_after: Optional[int] = None,
        updated_before: Optional[int] = None,
        cursor: Optional[str] = None,
        limit: int = 100,
    ) -> SessionPage:
        """Sessions matching every given filter, newest first, at most
        ``limit`` (max 1000); continue with ``cursor=page.next_cursor``."""
        selected = _filter(
            "list: filter", user_id, channel_id, mode, status,
            created_after, created_before, updated_after, updated_before,
        )  # fmt: skip
        page = self._call(
            "list", selected, a.opt_string(cursor, "list: cursor"), a.u32(limit, "list: limit")
        )
        return SessionPage(
            sessions=tuple(_session(s) for s in page.sessions),
            next_cursor=_field(page, "next_cursor"),
            unreadable=tuple(_field(page, "unreadable")),
        )

    def stats(
        self,
        *,
        user_id: Optional[str] = None,
        channel_id: Optional[str] = None,
        mode: Optional[str] = None,
        status: Optional[str] = None,
        created_after: Optional[int] = None,
        created_before: Optional[int] = None,
        updated_after: Optional[int] = None,
        updated_before: Optional[int] = None,
    ) -> SessionStats:
        """Aggregates over the sessions matching every given filter."""
        selected = _filter(
            "stats: filter", user_id, channel_id, mode, status,
            created_after, created_before, updated_after, updated_before,
        )  # fmt: skip
        s = self._call("stats", selected)
        return SessionStats(
            total=s.total,
            by_status={c.status: c.count for c in _field(s, "by_status")},
            by_mode={c.mode: c.count for c in _field(s, "by_mode")},
            average_iterations=_field(s, "average_iterations"),
            success_rate=_field(s, "success_rate"),
        )

    # --- maintenance ---

    def cleanup(self, older_than_days: Optional[int] = None, dry_run: bool = False) -> CleanupReport:
        """Remove ended sessions that ended more than ``older_than_days``
        (30 when None) days ago; active and paused ones are never removed."""
        r = self._call(
            "cleanup",
            a.opt_u32(older_than_days, "cleanup: older-than-days"),
            a.boolean(dry_run, "cleanup: dry-run"),
        )
        return CleanupReport(dry_run=_field(r, "dry_run"), removed=tuple(r.removed))

    def delete(self, id: SessionRef) -> None:
        """Remove one session and its history."""
        self._call("delete", a.session_ref(id, "delete"))

    def rebuild_index(self, dry_run: bool = False) -> IndexReport:
        """Compare the index with the histories; unless ``dry_run``, refresh
        every entry that differs."""
        r = self._call("rebuild-index", a.boolean(dry_run, "rebuild-index: dry-run"))
        return IndexReport(sessions=r.sessions, stale=tuple(r.stale), unreadable=tuple(r.unreadable))

    def export(self, id: SessionRef) -> Any:
        """The session and its whole history as a portable JSON document."""
        return json.loads(self._call("export", a.session_ref(id, "export")))

    def import_(self, document: Any) -> Session:
        """Recreate a session from an exported document (its id must be free)."""
        return _session(self._call("import", a.json_text(document, "import: document")))

    # --- webhooks ---

    def set_webhook(
        self,
        *,
        url: str = MISSING,
        secret: str = MISSING,
        event_kinds: Sequence[str] = (),
        enabled: bool = True,
    ) -> WebhookConfig:
        """Set (or replace) the webhook endpoint; ``secret`` is ``whsec_`` +
        base64; no ``event_kinds`` (a list or tuple) means every lifecycle
        event."""
        config = record(
            url=a.string(url, "set-webhook: config.url"),
            secret=a.string(secret, "set-webhook: config.secret"),
            event_kinds=a.strings(event_kinds, "set-webhook: config.event-kinds"),
            enabled=a.boolean(enabled, "set-webhook: config.enabled"),
        )
        # The address policy, with this host's exceptions (webhook_allow),
        # as every host applies it when an endpoint is set.
        if config.enabled:
            self.check_webhook_url(config.url, self._webhook_allow)
        return _webhook(self._call("set-webhook", config))

    def check_webhook_url(self, url: str, allow: Sequence[str] = ()) -> None:
        """Whether webhooks may be sent to ``url`` under the address policy,
        with the exceptions ``allow`` (addresses, ranges like ``10.0.0.0/8``,
        host names): http(s), and an IP-address host (any form) that is not
        loopback, private, link-local or another special-purpose address
        unless allowed. Host names pass (checked where they are dialled).
        Raises ``SessionError('invalid-input')`` saying why not."""
        self._call(
            "check-webhook-url",
            a.string(url, "check-webhook-url: url"),
            a.strings(allow, "check-webhook-url: allow"),
        )

    def get_webhook(self) -> Optional[WebhookConfig]:
        """The webhook endpoint, if one is set."""
        r = self._call("get-webhook")
        return None if r is None else _webhook(r)

    def clear_webhook(self) -> None:
        """Remove the webhook endpoint."""
        self._call("clear-webhook")

    def disable_webhook(self, url: str) -> bool:
        """Disable the webhook endpoint if it still points at ``url`` and is
        enabled (it answered 410 Gone): a compare-and-set, so an endpoint
        set again meanwhile stays as set. Whether it was disabled."""
        return bool(self._call("disable-webhook", a.string(url, "disable-webhook: url")))

    def deliveries(self) -> Tuple[Delivery, ...]:
        """Every webhook delivery of this directory, pending and finished,
        oldest first: its attempts (status, error, whether the address
        policy refused it) and why it failed or was discarded. Secrets are
        not shown. Whichever process sends them. Not on PostgreSQL (see
        ``agent-session --store URL deliveries``)."""
        if self._postgres is not None:
            raise SessionError(
                "invalid-input",
                "deliveries() is not available on PostgreSQL from Python: the outbox is the "
                f"Rust sender's (agent-session --store {self._postgres} deliveries)",
            )
        result = self._runtime.call_in(DELIVERY, "deliveries")
        if isinstance(result, Variant):
            raise SessionError(result.tag, str(result.payload))
        return tuple(delivery(d) for d in result)

    def stop_delivering(self) -> None:
        """Stop this process's webhook sender (``open_sessions(webhooks=
        Webhooks(deliver=True))``), if it runs one: the attempts in flight
        are finished and recorded (each within the request timeout), then
        the root's sender lock is released, for another process to take."""
        deliverer, self._deliverer = self._deliverer, None
        if deliverer is not None:
            deliverer.stop()

    # --- utilities ---

    def is_resumable(self, id: SessionRef) -> bool:
        """Whether the session is active or paused."""
        return bool(self._call("is-resumable", a.session_ref(id, "is-resumable")))

    def duration(self, id: SessionRef) -> int:
        """Milliseconds from creation to end (or to now)."""
        return int(self._call("duration", a.session_ref(id, "duration")))

    def progress(self, id: SessionRef) -> float:
        """Iteration / max_iterations as a percentage."""
        return float(self._call("progress", a.session_ref(id, "progress")))

    # --- conversations (the WIT ``conversations`` interface) ---

    def add_items(self, session: SessionRef, items: Sequence[Any]) -> Session:
        """Add JSON ``items`` at the end of the session's conversation, in
        one append (recorded as ``item`` events; items above 16 KiB are kept
        in the session's blob log). The session must be active or paused."""
        texts = [
            a.json_text(item, f"add-items: items[{i}]")
            for i, item in enumerate(_list_of(items, "add-items: items", "JSON values"))
        ]
        return _session(
            self._call_in(CONVERSATIONS, "add-items", a.session_ref(session, "add-items"), texts)
        )

    def items(self, session: SessionRef, limit: Optional[int] = None) -> List[Any]:
        """The last ``limit`` items of the conversation (all with None),
        oldest first."""
        texts = self._call_in(
            CONVERSATIONS,
            "items",
            a.session_ref(session, "items"),
            a.opt_u32(limit, "items: limit"),
        )
        return [json.loads(t) for t in texts]

    def pop_item(self, session: SessionRef) -> Any:
        """Take the last item off the conversation (recorded as an
        ``item_pop`` event) and return it; None if there is none (so a JSON
        null item pops as None too, as in the Agents SDK's sessions)."""
        return _parse_opt(
            self._call_in(CONVERSATIONS, "pop-item", a.session_ref(session, "pop-item"))
        )

    def clear_items(self, session: SessionRef) -> Session:
        """Empty the conversation (recorded as an ``items_clear`` event)."""
        return _session(
            self._call_in(CONVERSATIONS, "clear-items", a.session_ref(session, "clear-items"))
        )

    # --- checkpoints (the WIT ``checkpoints`` interface) ---

    def put_checkpoint(
        self,
        session: SessionRef,
        *,
        ns: str = "",
        id: str = MISSING,
        parent_id: Optional[str] = None,
        checkpoint: TypedValue = MISSING,
        metadata: Dict[str, Any] = MISSING,
        channel_versions: Dict[str, Any] = MISSING,
        new_values: Sequence[ChannelValue] = (),
    ) -> None:
        """Put checkpoint ``id`` of namespace ``ns`` in an active or paused
        session: ``checkpoint`` (the serialized checkpoint without its
        channel values), ``metadata`` (a JSON object), the checkpoint's
        ``channel_versions`` (a JSON object) and the values of the channels
        that got a new version (``new_values``). See the WIT
        ``checkpoints`` interface for the rules (LangGraph's)."""
        where = "put-checkpoint: checkpoint"
        values = _list_of(new_values, f"{where}.new-values", "ChannelValues")
        new = record(
            ns=a.string(ns, f"{where}.ns"),
            id=a.string(id, f"{where}.id"),
            parent_id=a.opt_string(parent_id, f"{where}.parent-id"),
            checkpoint=a.typed_value(checkpoint, f"{where}.checkpoint"),
            metadata=a.json_text(metadata, f"{where}.metadata"),
            channel_versions=a.json_text(channel_versions, f"{where}.channel-versions"),
            new_values=[
                _channel_value(v, f"{where}.new-values[{i}]") for i, v in enumerate(values)
            ],
        )
        self._call_in(
            CHECKPOINTS, "put-checkpoint", a.session_ref(session, "put-checkpoint"), new
        )

    def put_writes(
        self,
        session: SessionRef,
        *,
        ns: str = "",
        checkpoint_id: str = MISSING,
        task_id: str = MISSING,
        task_path: str = "",
        writes: Sequence[Tuple[str, TypedValue]] = MISSING,
    ) -> None:
        """Put the ``writes`` (``(channel, value)`` pairs) of task
        ``task_id`` pending on checkpoint ``checkpoint_id`` of namespace
        ``ns``, in an active or paused session."""
        pairs = _list_of(writes, "put-writes: writes", "(channel, value) pairs")
        self._call_in(
            CHECKPOINTS,
            "put-writes",
            a.session_ref(session, "put-writes"),
            a.string(ns, "put-writes: ns"),
            a.string(checkpoint_id, "put-writes: checkpoint-id"),
            a.string(task_id, "put-writes: task-id"),
            a.string(task_path, "put-writes: task-path"),
            [_write(w, f"put-writes: writes[{i}]") for i, w in enumerate(pairs)],
        )

    def get_checkpoint(
        self, session: SessionRef, ns: str = "", id: Optional[str] = None
    ) -> Optional[CheckpointTuple]:
        """Checkpoint ``id`` of namespace ``ns``, or the latest one put with
        None; None if there is no such checkpoint (or no such session)."""
        r = self._call_in(
            CHECKPOINTS,
            "get-checkpoint",
            a.session_ref(session, "get-checkpoint"),
            a.string(ns, "get-checkpoint: ns"),
            a.opt_string(id, "get-checkpoint: id"),
        )
        return None if r is None else _checkpoint(r)

    def list_checkpoints(
        self,
        session: Optional[SessionRef] = None,
        *,
        user_id: Optional[str] = None,
        channel_id: Optional[str] = None,
        mode: Optional[str] = None,
        status: Optional[str] = None,
        created_after: Optional[int] = None,
        created_before: Optional[int] = None,
        updated_after: Optional[int] = None,
        updated_before: Optional[int] = None,
        ns: Optional[str] = None,
        id: Optional[str] = None,
        before: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        limit: Optional[int] = None,
        cursor: Optional[str] = None,
    ) -> CheckpointPage:
        """Checkpoints, newest first within a thread and namespace, a page
        at a time (continue with ``cursor=page.next_cursor`` and the same
        arguments): of ``session``, or (None) of every session the filter
        (``user_id`` ... ``updated_before``, as in :meth:`list`) selects;
        only of namespace ``ns`` (None: every one), only checkpoint ``id``,
        only those whose id sorts before ``before``, only those whose
        top-level ``metadata`` keys equal the given ones (a None matches a
        missing key); at most ``limit`` over all pages."""
        where = "list-checkpoints: query"
        query = record(
            session=a.opt_session_ref(session, "list-checkpoints", "query.session"),
            threads=_filter(
                f"{where}.threads", user_id, channel_id, mode, status,
                created_after, created_before, updated_after, updated_before,
            ),  # fmt: skip
            ns=a.opt_string(ns, f"{where}.ns"),
            id=a.opt_string(id, f"{where}.id"),
            before=a.opt_string(before, f"{where}.before"),
            metadata=a.opt_json(metadata, f"{where}.metadata"),
            limit=a.opt_u32(limit, f"{where}.limit"),
        )
        page = self._call_in(
            CHECKPOINTS,
            "list-checkpoints",
            query,
            a.opt_string(cursor, "list-checkpoints: cursor"),
        )
        return CheckpointPage(
            checkpoints=tuple(_checkpoint(c) for c in page.checkpoints),
            next_cursor=_field(page, "next_cursor"),
        )

    def copy_checkpoints(self, from_: SessionRef, to: SessionRef) -> None:
        """Copy every checkpoint and write of session ``from_`` to the end
        of session ``to`` (ids kept), in one append; both must exist, and
        ``to`` be active or paused."""
        self._call_in(
            CHECKPOINTS,
            "copy-checkpoints",
            a.session_ref(from_, "copy-checkpoints", "from"),
            a.session_ref(to, "copy-checkpoints", "to"),
        )

    def drop_runs(
        self,
        run_ids: Sequence[str],
        *,
        user_id: Optional[str] = None,
        channel_id: Optional[str] = None,
        mode: Optional[str] = None,
        status: Optional[str] = None,
        created_after: Optional[int] = None,
        created_before: Optional[int] = None,
        updated_after: Optional[int] = None,
        updated_before: Optional[int] = None,
    ) -> int:
        """Drop (from every read; recorded as an event) the checkpoints
        whose metadata ``run_id`` is one of ``run_ids``, with their writes,
        in every session the filter selects. How many sessions changed."""
        threads = _filter(
            "drop-runs: threads", user_id, channel_id, mode, status,
            created_after, created_before, updated_after, updated_before,
        )  # fmt: skip
        return int(
            self._call_in(
                CHECKPOINTS, "drop-runs", threads, a.strings(run_ids, "drop-runs: run-ids")
            )
        )

    def prune_checkpoints(self, session: SessionRef) -> None:
        """Drop every checkpoint but the latest of each namespace (recorded
        as an event; the values the latest needs stay)."""
        self._call_in(
            CHECKPOINTS, "prune-checkpoints", a.session_ref(session, "prune-checkpoints")
        )
