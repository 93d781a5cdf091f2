"""The session API for asyncio: :func:`open_sessions_async` and
:class:`AsyncSessions`, the same methods as :class:`Sessions`, awaited.

Only a shell: each method calls the :class:`Sessions` method of the same
name on a worker thread of its own, so the event loop runs on while the
component works. One thread is enough, as calls into the component are
serialized per process anyway (see ``_runtime._calls``).
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Awaitable, Callable, Concatenate, Optional, ParamSpec, Sequence, TypeVar

from ._root import DEFAULT_LOCK_TIMEOUT_MS
from .sessions import PathLike, Sessions, open_sessions
from .types import Webhooks

P = ParamSpec("P")
R = TypeVar("R")


def _worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="agent-session")


def _off_loop(
    method: Callable[Concatenate[Sessions, P], R],
) -> Callable[Concatenate["AsyncSessions", P], Awaitable[R]]:
    """``method`` as a coroutine method with its signature and docstring."""

    @functools.wraps(method)
    async def call(self: AsyncSessions, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return await self._run(functools.partial(method, self._sessions, *args, **kwargs))

    return call


async def open_sessions_async(
    directory: PathLike,
    *,
    component: Optional[PathLike] = None,
    durable: bool = True,
    webhook_allow: Sequence[str] = (),
    lock_timeout_ms: Optional[float] = DEFAULT_LOCK_TIMEOUT_MS,
    webhooks: Optional[Webhooks] = None,
) -> "AsyncSessions":
    """:func:`open_sessions` for asyncio; the opening (loading the component,
    the first call, an index rebuild) runs off the event loop too."""
    executor = _worker()
    opening = functools.partial(
        open_sessions,
        directory,
        component=component,
        durable=durable,
        webhook_allow=webhook_allow,
        lock_timeout_ms=lock_timeout_ms,
        webhooks=webhooks,
    )
    started = executor.submit(opening)
    try:
        sessions = await asyncio.wrap_future(started)
    except BaseException:
        # Cancelled while the worker opens: the opening runs to its end
        # there, and what it opened is closed then (its locks released).
        def close_opened(done: "Future[Sessions]") -> None:
            if not done.cancelled() and done.exception() is None:
                done.result().close()

        started.add_done_callback(close_opened)
        executor.shutdown(wait=False)
        raise
    return AsyncSessions(sessions, executor)


class AsyncSessions:
    """:class:`Sessions` with every method a coroutine, run on a worker
    thread; the same arguments, results and :class:`SessionError`\\ s.

    A call whose awaiting task is cancelled still runs to its end on the
    worker (a call into the component cannot be interrupted). ``close()``
    (or leaving ``async with``) releases what :meth:`Sessions.close`
    releases and ends the worker; a later call starts a new one.
    """

    def __init__(self, sessions: Sessions, executor: Optional[ThreadPoolExecutor] = None) -> None:
        self._sessions = sessions
        self._executor = executor

    async def _run(self, call: Callable[[], R]) -> R:
        if self._executor is None:
            self._executor = _worker()
        return await asyncio.get_running_loop().run_in_executor(self._executor, call)

    async def close(self) -> None:
        """Stop the webhook sender, if this process runs one (its attempts
        in flight are finished first), release the notification intake
        segment and end the worker."""
        executor, self._executor = self._executor, None
        if executor is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(executor, self._sessions.close)
        finally:
            # Calls already queued still run; the thread then exits.
            executor.shutdown(wait=False)

    async def __aenter__(self) -> "AsyncSessions":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    start = _off_loop(Sessions.start)
    get = _off_loop(Sessions.get)
    pause = _off_loop(Sessions.pause)
    resume = _off_loop(Sessions.resume)
    complete = _off_loop(Sessions.complete)
    fail = _off_loop(Sessions.fail)
    iterate = _off_loop(Sessions.iterate)
    record_tool_call = _off_loop(Sessions.record_tool_call)
    record_learning = _off_loop(Sessions.record_learning)
    record_event = _off_loop(Sessions.record_event)
    events = _off_loop(Sessions.events)
    recent_events = _off_loop(Sessions.recent_events)
    update_context = _off_loop(Sessions.update_context)
    resumption_context = _off_loop(Sessions.resumption_context)
    list = _off_loop(Sessions.list)
    stats = _off_loop(Sessions.stats)
    cleanup = _off_loop(Sessions.cleanup)
    delete = _off_loop(Sessions.delete)
    rebuild_index = _off_loop(Sessions.rebuild_index)
    export = _off_loop(Sessions.export)
    import_ = _off_loop(Sessions.import_)
    set_webhook = _off_loop(Sessions.set_webhook)
    check_webhook_url = _off_loop(Sessions.check_webhook_url)
    get_webhook = _off_loop(Sessions.get_webhook)
    clear_webhook = _off_loop(Sessions.clear_webhook)
    disable_webhook = _off_loop(Sessions.disable_webhook)
    deliveries = _off_loop(Sessions.deliveries)
    stop_delivering = _off_loop(Sessions.stop_delivering)
    is_resumable = _off_loop(Sessions.is_resumable)
    duration = _off_loop(Sessions.duration)
    progress = _off_loop(Sessions.progress)
    add_items = _off_loop(Sessions.add_items)
    items = _off_loop(Sessions.items)
    pop_item = _off_loop(Sessions.pop_item)
    clear_items = _off_loop(Sessions.clear_items)
    put_checkpoint = _off_loop(Sessions.put_checkpoint)
    put_writes = _off_loop(Sessions.put_writes)
    get_checkpoint = _off_loop(Sessions.get_checkpoint)
    list_checkpoints = _off_loop(Sessions.list_checkpoints)
    copy_checkpoints = _off_loop(Sessions.copy_checkpoints)
    drop_runs = _off_loop(Sessions.drop_runs)
    prune_checkpoints = _off_loop(Sessions.prune_checkpoints)
