"""What the framework adapters (``langgraph.py``, ``openai_agents.py``)
share: the sessions they work on, opened by them or given to them."""

from __future__ import annotations

from typing import Any, Dict, Union

from ._async import AsyncSessions
from .sessions import PathLike, Sessions, open_sessions


class Opened:
    """``sessions`` as an adapter holds it: a :class:`Sessions` given (left
    open) or a directory or database URL (opened with ``open_options``,
    closed by :meth:`close`), with the asyncio API over it."""

    def __init__(self, sessions: Union[Sessions, PathLike], open_options: Dict[str, Any]) -> None:
        if isinstance(sessions, Sessions):
            if open_options:
                raise TypeError("open options are for a directory, not an open Sessions")
            self.sessions = sessions
            self.owned = False
        else:
            self.sessions = open_sessions(sessions, **open_options)
            self.owned = True
        self.aio = AsyncSessions(self.sessions)

    def close(self) -> None:
        """End the worker of the async methods, and close the sessions if
        they were opened here."""
        executor, self.aio._executor = self.aio._executor, None
        if executor is not None:
            executor.shutdown(wait=True)
        if self.owned:
            self.sessions.close()
            # Opened for this adapter alone: its directory is let go too.
            self.sessions._runtime.close()
