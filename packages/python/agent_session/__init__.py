"""Durable AI-agent sessions from Python.

The session component (the same ``.wasm`` the Rust host runs) executes in
wasmtime; its storage is a directory in the Rust host's format, so the Rust
CLI and this package can work on the same sessions::

    from agent_session import open_sessions

    sessions = open_sessions("/var/lib/agent-sessions")
    s = sessions.start("write the parser", mode="developer")
    sessions.iterate(s.id, {"step": 1})
    sessions.complete(s.id, {"pr": 7})

A session started with a key (``start(..., key="thread-7")``, get-or-create)
is named ``Key("thread-7")`` wherever an id is taken. A session can hold a
conversation (``add_items``, ``items``, ...) and LangGraph-style
checkpoints (``put_checkpoint``, ``get_checkpoint``, ...); the adapters
``agent_session.langgraph.AgentSessionSaver`` and
``agent_session.openai_agents.AgentSession`` put them under LangGraph and
the OpenAI Agents SDK.

With asyncio, ``await open_sessions_async(...)`` gives the same methods as
coroutines (:class:`AsyncSessions`).

Webhook notifications are queued in the directory's outbox; one sender per
directory delivers them: a process that opened it with
``open_sessions(..., webhooks=Webhooks(deliver=True))``, ``python -m
agent_session.deliver``, or the Rust CLI's ``agent-session deliver``.
"""

from typing import TYPE_CHECKING, Any

from ._cache import CacheWarning, cache_dir
from .sessions import SessionRef, Sessions, component_origin, component_path, open_sessions
from .types import (
    ERROR_CODES,
    Attempt,
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

if TYPE_CHECKING:
    from ._async import AsyncSessions, open_sessions_async


def __getattr__(name: str) -> Any:
    # asyncio takes 30-60 ms to import, as long as the rest of a warm start:
    # only those who use the async API pay for it.
    if name in ("AsyncSessions", "open_sessions_async"):
        from . import _async

        return getattr(_async, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ERROR_CODES",
    "AsyncSessions",
    "Attempt",
    "CacheWarning",
    "ChannelValue",
    "CheckpointPage",
    "CheckpointTuple",
    "CleanupReport",
    "Delivery",
    "Event",
    "EventPage",
    "IndexReport",
    "Key",
    "PendingWrite",
    "Resumption",
    "Session",
    "SessionError",
    "SessionPage",
    "SessionRef",
    "SessionStats",
    "Sessions",
    "TypedValue",
    "WebhookConfig",
    "Webhooks",
    "cache_dir",
    "component_origin",
    "component_path",
    "open_sessions",
    "open_sessions_async",
]
