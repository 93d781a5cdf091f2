"""The asyncio API: the same methods as ``Sessions``, awaited, run on a
worker thread so the event loop is free while the component works."""

import asyncio
import inspect
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Awaitable, TypeVar

import pytest

from agent_session import (
    AsyncSessions,
    Session,
    SessionError,
    Sessions,
    open_sessions,
    open_sessions_async,
)
from agent_session import _runtime

T = TypeVar("T")


def run(main: Awaitable[T]) -> T:
    """Run a test's coroutine, bounded in time."""

    async def bounded() -> T:
        return await asyncio.wait_for(main, timeout=30)

    return asyncio.run(bounded())


def test_every_method_of_sessions_is_there_awaited() -> None:
    public = {n for n in vars(Sessions) if not n.startswith("_")}
    assert public <= set(vars(AsyncSessions))
    for name in public:
        method = getattr(AsyncSessions, name)
        assert inspect.iscoroutinefunction(method), name
        if name != "close":
            assert inspect.signature(method) == inspect.signature(getattr(Sessions, name)), name
            assert method.__doc__ == getattr(Sessions, name).__doc__


def test_a_lifecycle(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_sessions_async(tmp_path, durable=False) as sessions:
            s = await sessions.start("async", user_id="u", channel_id="c", max_iterations=5)
            assert isinstance(s, Session)
            assert (s.status, s.user_id, s.channel_id, s.max_iterations) == ("active", "u", "c", 5)
            await sessions.iterate(s.id, {"step": 1})
            await sessions.iterate(s.id, {"step": 2})
            await sessions.record_tool_call(s.id, name="ls", input={}, output=["a"], duration_ms=3)
            assert (await sessions.pause(s.id, "lunch")).status == "paused"
            assert (await sessions.resume(s.id)).status == "active"
            r = await sessions.resumption_context(s.id)
            assert (r.resumable, r.session.iteration) == (True, 2)
            done = await sessions.complete(s.id, {"pr": 7})
            assert (done.status, done.result) == ("completed", {"pr": 7})
            kinds = [e.kind for e in (await sessions.events(s.id)).events]
            assert kinds == ["start", "iteration", "iteration", "tool_call", "pause", "resume",
                             "complete"]  # fmt: skip
            stats = await sessions.stats()
            assert (stats.total, stats.by_status["completed"], stats.success_rate) == (1, 1, 1.0)

    run(main())
    # The same directory, read synchronously.
    assert open_sessions(tmp_path, durable=False).stats().total == 1


def test_failures_are_the_same_session_errors(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_sessions_async(tmp_path, durable=False) as sessions:
            with pytest.raises(SessionError) as e:
                await sessions.get("no-such-session")
            assert e.value.code == "not-found"
            with pytest.raises(SessionError) as e:
                await sessions.start("x", max_iterations=-1)
            assert e.value.code == "invalid-input"
            assert "max-iterations" in e.value.message
            s = await sessions.start("x")
            with pytest.raises(SessionError) as e:
                await sessions.resume(s.id)
            assert e.value.code == "invalid-transition"
        (tmp_path / "a-file").write_text("")
        with pytest.raises(SessionError) as e:
            await open_sessions_async(tmp_path / "a-file")
        assert e.value.code == "storage"

    run(main())


def test_concurrent_awaits(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_sessions_async(tmp_path, durable=False) as sessions:
            started = await asyncio.gather(*(sessions.start(f"t{i}") for i in range(4)))
            ids = [s.id for s in started]
            done = await asyncio.gather(*(sessions.iterate(id) for id in ids for _ in range(5)))
            assert len(done) == 20
            # Each session counted every iteration once: none lost, none twice.
            for id in ids:
                got = await sessions.get(id)
                assert (got.iteration, got.event_count) == (5, 6)
            assert sorted(s.iteration for s in done) == sorted(list(range(1, 6)) * 4)

    run(main())


def test_the_event_loop_runs_while_a_call_waits(tmp_path: Path) -> None:
    # Hold the lock every call into the component takes: a call made on the
    # event loop's thread would stop the loop until the timer lets it go.
    async def main() -> None:
        async with await open_sessions_async(tmp_path, durable=False) as sessions:
            _runtime._calls.acquire()
            safety = threading.Timer(5, _runtime._calls.release)
            safety.start()
            try:
                call = asyncio.ensure_future(sessions.start("waiting"))
                await asyncio.sleep(0.2)
                assert not call.done(), "the call ran on the event loop"
            finally:
                safety.cancel()
                _runtime._calls.release()
            assert (await call).status == "active"

    run(main())


def workers() -> list:
    return [t for t in threading.enumerate() if t.name.startswith("agent-session")]


def test_close_ends_the_worker_and_a_later_call_starts_one(tmp_path: Path) -> None:
    async def main() -> None:
        sessions = await open_sessions_async(tmp_path, durable=False)
        s = await sessions.start("x")
        assert workers()
        await sessions.close()
        deadline = time.monotonic() + 10
        while workers() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert not workers()
        assert (await sessions.get(s.id)).id == s.id
        assert workers()
        await sessions.close()
        await sessions.close()  # twice is harmless

    run(main())


def test_the_async_api_is_imported_only_when_used() -> None:
    code = (
        "import sys, agent_session; print('asyncio' in sys.modules); "
        "agent_session.open_sessions_async; print('asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )  # fmt: skip
    assert out.stdout.split() == ["False", "True"]


def test_an_opening_cancelled_midway_closes_what_it_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agent_session import sessions as sessions_module

    closed = threading.Event()
    real_close = sessions_module.Sessions.close
    real_open = sessions_module.open_sessions

    def close(self: Sessions) -> None:
        closed.set()
        real_close(self)

    def slow_open(*args: object, **kwargs: object) -> Sessions:
        time.sleep(0.3)  # still opening when the task is cancelled
        return real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(sessions_module.Sessions, "close", close)
    monkeypatch.setattr("agent_session._async.open_sessions", slow_open)

    async def main() -> None:
        task = asyncio.ensure_future(open_sessions_async(tmp_path))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert closed.wait(10), "the sessions opened for a cancelled task were not closed"
