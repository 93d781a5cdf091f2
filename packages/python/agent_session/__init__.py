"""Durable AI-agent sessions from Python.

The session component (the same ``.wasm`` the Rust host runs) executes in
wasmtime; its storage is a directory in the Rust host's format, so the Rust
CLI and this package can work on the same sessions::

    from agent_session import open_sessions

    sessions = open_sessions("/var/lib/agent-sessions")
    s = sessions.start("write the parser", mode="developer")
    sessions.iterate(s.id, {"step": 1})
    sessions.complete(s.id, {"pr": 7})

With asyncio, ``await open_sessions_async(...)`` gives the same methods as
coroutines (:class:`AsyncSessions`).

Webhook notifications are queued in the directory's outbox; the Rust sender
(``agent-session deliver``) delivers them.
"""

from typing import TYPE_CHECKING, Any

from ._cache import CacheWarning, cache_dir
from .sessions import Sessions, component_origin, component_path, open_sessions
from .types import (
    ERROR_CODES,
    CleanupReport,
    Event,
    EventPage,
    IndexReport,
    Resumption,
    Session,
    SessionError,
    SessionPage,
    SessionStats,
    WebhookConfig,
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
    "CacheWarning",
    "CleanupReport",
    "Event",
    "EventPage",
    "IndexReport",
    "Resumption",
    "Session",
    "SessionError",
    "SessionPage",
    "SessionStats",
    "Sessions",
    "WebhookConfig",
    "cache_dir",
    "component_origin",
    "component_path",
    "open_sessions",
    "open_sessions_async",
]
