"""The framework adapters against each framework's own SQLite store, on one
disk, one run, side by side:

- LangGraph: ``AgentSessionSaver`` vs ``SqliteSaver`` (langgraph-checkpoint-sqlite):
  ``put`` latency; ``get_tuple`` (latest) and ``list(thread, limit=10)``
  at 200 and at 2,000 checkpoints in the thread; ``list(None, limit=10)``
  (the 10 newest checkpoints over every thread) with 2,000 threads.
- OpenAI Agents SDK: ``AgentSession`` vs ``SQLiteSession`` (file database):
  ``add_items`` (one item a call, as the Runner adds them) latency;
  ``get_items(limit=10)`` at 200 and at 2,000 items.

Both sides are durable per call: ours fdatasyncs every append; SQLite runs
in WAL mode with its default ``synchronous=FULL`` (the WAL is synced at
every commit), as both frameworks open it.

    python -m venv /tmp/bench && /tmp/bench/bin/pip install -r packages/python/bench/requirements.txt
    PYTHONPATH=packages/python /tmp/bench/bin/python packages/python/bench/frameworks.py [--dir DIR] [--quick]

Prints medians and 90th percentiles in microseconds, with the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import SQLiteSession  # noqa: E402
from langgraph.checkpoint.base import BaseCheckpointSaver, empty_checkpoint  # noqa: E402
from langgraph.checkpoint.sqlite import SqliteSaver  # noqa: E402

from agent_session._runtime import VERSION  # noqa: E402
from agent_session.langgraph import AgentSessionSaver  # noqa: E402
from agent_session.openai_agents import AgentSession  # noqa: E402

Row = Tuple[str, List[float], List[float]]
# A row: its label, our latencies, theirs (µs).


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"machine: {cpu}, {os.cpu_count()} cores (load {load}); Python {platform.python_version()}; "
        f"SQLite {sqlite3.sqlite_version}"
    )


def filesystem(path: Path) -> str:
    best = ("?", "?")
    try:
        real = str(path.resolve())
        for line in Path("/proc/mounts").read_text().splitlines():
            _, mount, kind, *_ = line.split()
            if real.startswith(mount) and len(mount) >= len(best[0]):
                best = (mount, kind)
    except OSError:
        pass
    return f"{path} ({best[1]} mounted at {best[0]})"


def timed(n: int, ours: Callable[[int], Any], theirs: Callable[[int], Any]) -> Tuple[List[float], List[float]]:
    """Each side's latencies of n calls, the two sides' calls interleaved
    (the disk's flush latency drifts: both sides see the same drift)."""
    out: Tuple[List[float], List[float]] = ([], [])
    for i in range(n):
        for side, call in enumerate((ours, theirs)):
            t = time.perf_counter()
            call(i)
            out[side].append((time.perf_counter() - t) * 1e6)
    return out


async def atimed(
    n: int, ours: Callable[[int], Any], theirs: Callable[[int], Any]
) -> Tuple[List[float], List[float]]:
    """:func:`timed` for coroutines."""
    out: Tuple[List[float], List[float]] = ([], [])
    for i in range(n):
        for side, call in enumerate((ours, theirs)):
            t = time.perf_counter()
            await call(i)
            out[side].append((time.perf_counter() - t) * 1e6)
    return out


def pct(xs: List[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def show(title: str, rows: List[Row], names: Tuple[str, str]) -> None:
    print(f"\n{title}")
    print(f"  {'':44} {names[0]:>22} {names[1]:>22}   ours/theirs")
    print(f"  {'':44} {'median':>10} {'p90':>11} {'median':>10} {'p90':>11}")
    for label, ours, theirs in rows:
        mo, mt = statistics.median(ours), statistics.median(theirs)
        print(
            f"  {label:44} {mo:10.0f} {pct(ours, 0.9):11.0f} {mt:10.0f} {pct(theirs, 0.9):11.0f}"
            f"   {mo / mt:6.2f}x"
        )


# --- LangGraph ---


def checkpoint_for(i: int, versions: Dict[str, Any]) -> Any:
    cp = empty_checkpoint()
    messages = [
        {"role": "user" if j % 2 else "assistant", "content": f"message {j} " + "x" * 120}
        for j in range(max(0, i - 5), i + 1)
    ]
    cp["channel_values"] = {"messages": messages, "step": i}
    cp["channel_versions"] = dict(versions)
    cp["versions_seen"] = {"agent": dict(versions)}
    return cp


class Thread:
    """A thread written the way the pregel loop writes it: each put names
    the previous checkpoint, with new versions of the channels it changed."""

    def __init__(self, saver: BaseCheckpointSaver, thread_id: str) -> None:
        self.saver = saver
        self.config: Any = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.versions: Dict[str, Any] = {}
        self.i = 0

    def put(self, _: int = 0) -> None:
        new = {
            c: self.saver.get_next_version(self.versions.get(c), None) for c in ("messages", "step")
        }
        self.versions.update(new)
        cp = checkpoint_for(self.i, self.versions)
        self.config = self.saver.put(self.config, cp, {"source": "loop", "step": self.i}, new)
        self.i += 1


def langgraph(base: Path, sizes: Tuple[int, int], threads: int, samples: int) -> None:
    small, large = sizes
    ours_saver = AgentSessionSaver(base / "ours-lg")
    conn = sqlite3.connect(str(base / "sqlite-saver.db"), check_same_thread=False)
    theirs_saver = SqliteSaver(conn)
    theirs_saver.setup()
    modes = (conn.execute("PRAGMA journal_mode").fetchone()[0], conn.execute("PRAGMA synchronous").fetchone()[0])
    print(f"SqliteSaver: journal_mode={modes[0]}, synchronous={modes[1]} (2: FULL)")
    rows: List[Row] = []
    ours_t, theirs_t = Thread(ours_saver, "t-main"), Thread(theirs_saver, "t-main")
    rows.append((f"put (first {small} of a thread)", *timed(small, ours_t.put, theirs_t.put)))
    latest: Dict[int, Tuple[List[float], List[float]]] = {}
    listed: Dict[int, Tuple[List[float], List[float]]] = {}
    cfg = {"configurable": {"thread_id": "t-main", "checkpoint_ns": ""}}

    def reads(n: int) -> None:
        latest[n] = timed(
            samples, lambda _: ours_saver.get_tuple(cfg), lambda _: theirs_saver.get_tuple(cfg)
        )
        listed[n] = timed(
            samples,
            lambda _: list(ours_saver.list(cfg, limit=10)),
            lambda _: list(theirs_saver.list(cfg, limit=10)),
        )
        got = ours_saver.get_tuple(cfg)
        assert got is not None and got.checkpoint["channel_values"]["step"] == n - 1

    reads(small)
    more = timed(large - small, ours_t.put, theirs_t.put)
    rows.append((f"put (checkpoints {small + 1} to {large})", *more))
    reads(large)
    for n in (small, large):
        rows.append((f"get_tuple (latest), {n} checkpoints", *latest[n]))
    for n in (small, large):
        rows.append((f"list(thread, limit=10), {n} checkpoints", *listed[n]))
    # Many threads: one checkpoint each (the first put of a thread also
    # starts its session, on our side).
    first = timed(
        threads - 1,
        lambda i: Thread(ours_saver, f"t-{i:05}").put(),
        lambda i: Thread(theirs_saver, f"t-{i:05}").put(),
    )
    rows.append((f"put (first of a new thread), {threads - 1} threads", *first))
    every = timed(
        samples,
        lambda _: list(ours_saver.list(None, limit=10)),
        lambda _: list(theirs_saver.list(None, limit=10)),
    )
    assert len(list(ours_saver.list(None, limit=10))) == 10
    rows.append((f"list(None, limit=10), {threads} threads", *every))
    show(
        "LangGraph checkpointer: AgentSessionSaver vs SqliteSaver (latency in µs)",
        rows,
        ("AgentSessionSaver", "SqliteSaver"),
    )
    print(
        "  list(None, limit=10): ours, the newest sessions' newest checkpoints (sessions by\n"
        "  id, newest first); SqliteSaver, ORDER BY checkpoint_id DESC over the table."
    )
    ours_saver.close()
    conn.close()


# --- OpenAI Agents SDK ---


def item(i: int) -> Dict[str, Any]:
    if i % 2:
        return {"role": "user", "content": f"question {i} " + "x" * 150}
    return {
        "id": f"msg_{i}", "type": "message", "role": "assistant", "status": "completed",
        "content": [{"type": "output_text", "text": f"answer {i} " + "y" * 200, "annotations": []}],
    }  # fmt: skip


async def agents(base: Path, sizes: Tuple[int, int], samples: int) -> None:
    small, large = sizes
    ours = AgentSession("conv", base / "ours-oa")
    theirs = SQLiteSession("conv", str(base / "sqlite-session.db"))
    rows: List[Row] = []
    adds = await atimed(small, lambda i: ours.add_items([item(i)]), lambda i: theirs.add_items([item(i)]))
    rows.append((f"add_items (1 item; first {small})", *adds))
    got: Dict[int, Tuple[List[float], List[float]]] = {}
    got[small] = await atimed(
        samples, lambda _: ours.get_items(limit=10), lambda _: theirs.get_items(limit=10)
    )
    more = await atimed(
        large - small,
        lambda i: ours.add_items([item(small + i)]),
        lambda i: theirs.add_items([item(small + i)]),
    )
    rows.append((f"add_items (1 item; items {small + 1} to {large})", *more))
    got[large] = await atimed(
        samples, lambda _: ours.get_items(limit=10), lambda _: theirs.get_items(limit=10)
    )
    assert await ours.get_items(limit=10) == await theirs.get_items(limit=10)
    for n in (small, large):
        rows.append((f"get_items(limit=10), {n} items", *got[n]))
    show(
        "OpenAI Agents SDK session: AgentSession vs SQLiteSession (latency in µs)",
        rows,
        ("AgentSession", "SQLiteSession"),
    )
    ours.close()
    theirs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", help="where the stores go (a new directory inside); default: $TMPDIR")
    parser.add_argument("--quick", action="store_true", help="20/200 instead of 200/2,000, 200 threads")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="agent-session-bench-", dir=args.dir))
    sizes = (20, 200) if args.quick else (200, 2000)
    threads = 200 if args.quick else 2000
    samples = 50 if args.quick else 200
    print(machine())
    print(f"disk: {filesystem(base)}")
    print(
        f"versions: agent-session {VERSION} (this checkout), "
        f"langgraph-checkpoint {version('langgraph-checkpoint')}, "
        f"langgraph-checkpoint-sqlite {version('langgraph-checkpoint-sqlite')}, "
        f"openai-agents {version('openai-agents')}"
    )
    print(
        f"samples: {samples} reads per figure; every write of the workload is timed; "
        "our calls and theirs interleaved"
    )
    started = time.perf_counter()
    try:
        langgraph(base, sizes, threads, samples)
        asyncio.run(agents(base, sizes, samples))
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(f"\n(run took {time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
