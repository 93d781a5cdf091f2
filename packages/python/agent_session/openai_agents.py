"""An OpenAI Agents SDK session on a session directory: :class:`AgentSession`,
a ``Session`` of ``openai-agents`` (an optional dependency: ``pip install
openai-agents``), in place of ``SQLiteSession``::

    from agent_session.openai_agents import AgentSession

    session = AgentSession("conversation-42", "/var/lib/agent-sessions")
    result = await Runner.run(agent, "hello", session=session)

A conversation is a session whose key is the ``session_id`` and whose mode
is ``openai-agents``, started (get-or-create) when the first items are
added. Its items are events of the session's history: adding, popping and
clearing are recorded (``item``, ``item_pop``, ``items_clear``), never
rewriting what was recorded; the live list is the session component's
(the WIT ``conversations`` interface). Items are JSON values; those above
16 KiB are kept in the session's blob log (up to 32 MiB each).

``get_items`` has ``SQLiteSession``'s semantics: ``limit=None`` takes
``session_settings.limit`` (all items if that is None too), 0 gives no
item, a negative limit every item, N the last N, oldest first. Every call
runs on a worker thread, so the event loop runs on meanwhile.
"""

from __future__ import annotations

from typing import Any, List, Optional, Union

try:
    from agents.items import TResponseInputItem
    from agents.memory.session import SessionABC
    from agents.memory.session_settings import SessionSettings, resolve_session_limit
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        f"agent_session.openai_agents needs the OpenAI Agents SDK ({e}): "
        "pip install 'agent-session[openai-agents]' (or openai-agents)"
    ) from e

from ._args import U32_MAX
from ._adapters import Opened
from .sessions import PathLike, Sessions
from .types import Key, SessionError

__all__ = ["AgentSession", "MODE"]

#: The mode of the sessions that hold Agents SDK conversations.
MODE = "openai-agents"


class AgentSession(SessionABC):
    """The conversation ``session_id`` in the sessions of a directory.

    ``sessions``: a directory (opened with :func:`open_sessions` and the
    ``open_options``, e.g. ``durable=False``; closed by :meth:`close`) or a
    :class:`Sessions` already open (left open; several conversations can
    share one). Failures of the store are
    :class:`~agent_session.SessionError`\\ s (an item that is not JSON is
    ``invalid-input``, and nothing of its batch is added).
    """

    def __init__(
        self,
        session_id: str,
        sessions: Union[Sessions, PathLike],
        *,
        session_settings: Optional[SessionSettings] = None,
        **open_options: Any,
    ) -> None:
        self.session_id = session_id
        self.session_settings = session_settings or SessionSettings()
        self._opened = Opened(sessions, open_options)
        self.sessions = self._opened.sessions
        self._aio = self._opened.aio
        self._key = Key(session_id)

    def close(self) -> None:
        """End the worker thread, and close the sessions if this object
        opened them."""
        self._opened.close()

    async def get_items(self, limit: Optional[int] = None) -> List[TResponseInputItem]:
        n = resolve_session_limit(limit, self.session_settings)
        if n == 0:
            return []
        if n is not None and (n < 0 or n > U32_MAX):
            n = None  # SQLite's LIMIT: a negative one is none
        try:
            return await self._aio.items(self._key, n)
        except SessionError as e:
            if e.code == "not-found":
                return []
            raise

    async def add_items(self, items: List[TResponseInputItem]) -> None:
        if not items:
            return
        try:
            await self._aio.add_items(self._key, items)
            return
        except SessionError as e:
            if e.code != "not-found":
                raise
        await self._aio.start(
            f"OpenAI Agents conversation {self.session_id}", key=self.session_id, mode=MODE
        )
        await self._aio.add_items(self._key, items)

    async def pop_item(self) -> Optional[TResponseInputItem]:
        try:
            item: Optional[TResponseInputItem] = await self._aio.pop_item(self._key)
            return item
        except SessionError as e:
            if e.code == "not-found":
                return None
            raise

    async def clear_session(self) -> None:
        try:
            await self._aio.clear_items(self._key)
        except SessionError as e:
            if e.code != "not-found":
                raise
