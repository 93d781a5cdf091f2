"""LangGraph's own checkpointer conformance suite
(``langgraph-checkpoint-conformance``) against AgentSessionSaver on a
fresh directory: every base and extended capability detected and passing.
The report is printed in the test command's output (even under -q).
Then what the suite does not look at: the sync methods, the sessions a
thread becomes, the saver's choices."""

import asyncio
import io
import time
from contextlib import redirect_stdout
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from langgraph.checkpoint.base import empty_checkpoint
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import (
    BASE_CAPABILITIES,
    EXTENDED_CAPABILITIES,
)
from langgraph.checkpoint.conformance.report import ProgressCallbacks
from langgraph.checkpoint.memory import InMemorySaver

from agent_session import Key, SessionError, open_sessions
from agent_session.langgraph import MODE, AgentSessionSaver


def test_the_conformance_suite_passes_every_capability(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_conformance(tmp_path / "root", "AgentSessionSaver (agent-session, Python host)", "durable", capsys)


def run_conformance(
    store: Any, name: str, label: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """LangGraph's conformance suite against ``AgentSessionSaver(store)``
    (a directory or a PostgreSQL URL), its report printed in the test
    output; every base and extended capability must be detected and pass.
    Also used by ``test_postgres.py``."""

    @checkpointer_test(name=name)
    async def saver() -> AsyncIterator[AgentSessionSaver]:
        s = AgentSessionSaver(store)
        try:
            yield s
        finally:
            s.close()

    async def run() -> Any:
        return await validate(saver, progress=ProgressCallbacks.verbose())

    started = time.perf_counter()
    out = io.StringIO()
    with redirect_stdout(out):
        report = asyncio.run(asyncio.wait_for(run(), timeout=300))
        report.print_report()
    elapsed = time.perf_counter() - started
    counts = {name: (r.tests_passed, r.tests_failed) for name, r in report.results.items()}
    with capsys.disabled():
        print()
        print(out.getvalue().rstrip())
        print(f"  langgraph-checkpoint-conformance: {sum(p for p, _ in counts.values())} tests "
              f"passed, {sum(f for _, f in counts.values())} failed, in {elapsed:.2f} s ({label})")
    every = {c.value for c in BASE_CAPABILITIES | EXTENDED_CAPABILITIES}
    assert set(report.results) == every
    assert all(r.detected for r in report.results.values()), counts
    assert report.passed_all(), report.to_dict()
    assert report.conformance_level() == "FULL"
    assert all(r.tests_failed == 0 and r.tests_passed > 0 for r in report.results.values())


def _config(thread: str, ns: str = "", checkpoint_id: Any = None) -> Any:
    c = {"configurable": {"thread_id": thread, "checkpoint_ns": ns}}
    if checkpoint_id:
        c["configurable"]["checkpoint_id"] = checkpoint_id
    return c


def _checkpoint(values: dict, versions: dict) -> Any:
    cp = empty_checkpoint()
    cp["channel_values"] = dict(values)
    cp["channel_versions"] = dict(versions)
    return cp


def test_the_sync_methods_agree_with_in_memory_saver(tmp_path: Path) -> None:
    ours = AgentSessionSaver(tmp_path, durable=False)
    theirs = InMemorySaver()
    cp1 = _checkpoint({"a": "A", "b": [1, 2]}, {"a": 1, "b": 1})
    cp2 = _checkpoint({"a": "A", "b": [3]}, {"a": 1, "b": 2})
    cp3 = _checkpoint({}, {})
    for saver in (ours, theirs):
        cfg1 = saver.put(
            {"configurable": {"thread_id": "t", "checkpoint_ns": ""}, "metadata": {"user": "u"}},
            cp1, {"source": "input", "step": -1}, {"a": 1, "b": 1},
        )  # fmt: skip
        saver.put_writes(cfg1, [("a", "w1"), ("__interrupt__", {"q": 1})], "task-1", "p")
        saver.put_writes(cfg1, [("a", "ignored"), ("__interrupt__", {"q": 2})], "task-1", "p")
        saver.put(cfg1, cp2, {"source": "loop", "step": 0, "run_id": "r"}, {"b": 2})
        saver.put(_config("t", "sub"), cp3, {"source": "loop", "step": 0}, {})
    for config in (_config("t"), _config("t", "", cp1["id"]), _config("t", "sub"), _config("x")):
        a, b = ours.get_tuple(config), theirs.get_tuple(config)
        assert (a is None) == (b is None)
        if a is not None and b is not None:
            assert a.checkpoint == b.checkpoint
            assert a.metadata == b.metadata
            assert a.pending_writes == b.pending_writes
            assert a.parent_config == b.parent_config
            assert a.config["configurable"]["checkpoint_id"] == b.config["configurable"]["checkpoint_id"]
    # config["metadata"] is merged into the metadata (get_checkpoint_metadata).
    assert ours.get_tuple(_config("t", "", cp1["id"])).metadata == {  # type: ignore[union-attr]
        "source": "input", "step": -1, "user": "u"
    }
    for kwargs in ({}, {"filter": {"source": "loop"}}, {"limit": 1}, {"limit": 0}, {"limit": -1},
                   {"before": _config("t", "", cp2["id"])}):  # fmt: skip
        for config in (_config("t"), {"configurable": {"thread_id": "t"}}, None):
            mine = [t.config["configurable"]["checkpoint_id"] for t in ours.list(config, **kwargs)]
            want = [t.config["configurable"]["checkpoint_id"] for t in theirs.list(config, **kwargs)]
            if "limit" in kwargs and (config is None or "checkpoint_ns" not in config["configurable"]):
                # Across namespaces the order is the saver's: only the count.
                assert len(mine) == len(want), (config, kwargs)
            else:
                assert sorted(mine) == sorted(want), (config, kwargs)
    ours.close()


def test_a_thread_is_a_keyed_langgraph_session(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path, durable=False)
    saver = AgentSessionSaver(sessions)
    saver.put(_config("thread-1"), _checkpoint({"a": 1}, {"a": 1}), {"step": 0}, {"a": 1})
    s = sessions.get(Key("thread-1"))
    assert (s.key, s.mode, s.status) == ("thread-1", MODE, "active")
    assert [e.kind for e in sessions.events(Key("thread-1")).events] == ["start", "checkpoint"]
    # A thread whose session has ended can no longer be written: a typed error.
    sessions.complete(Key("thread-1"))
    with pytest.raises(SessionError) as e:
        saver.put(_config("thread-1"), _checkpoint({}, {}), {"step": 1}, {})
    assert e.value.code == "invalid-transition"
    assert saver.get_tuple(_config("thread-1")) is not None  # still readable
    # Sessions of other modes are not threads of list(None).
    sessions.start("unrelated", key="other")
    sessions.put_checkpoint(Key("other"), id="x", checkpoint=("null", b""), metadata={}, channel_versions={})
    assert [t.config["configurable"]["thread_id"] for t in saver.list(None)] == ["thread-1"]
    # delete_thread and prune("delete") delete the session; keep_latest keeps one.
    saver.put(_config("thread-2"), _checkpoint({}, {}), {"step": 0}, {})
    saver.delete_thread("thread-1")
    with pytest.raises(SessionError):
        sessions.get(Key("thread-1"))
    saver.prune(["thread-2", "never-written"], strategy="delete")
    assert [t.key for t in sessions.list().sessions] == ["other"]
    with pytest.raises(ValueError):
        saver.prune(["x"], strategy="nonsense")
    # A thread id that is not a string is its str(), as in SqliteSaver.
    cfg = saver.put({"configurable": {"thread_id": 42, "checkpoint_ns": ""}}, _checkpoint({}, {}), {}, {})
    assert cfg["configurable"]["thread_id"] == 42 and sessions.get(Key("42")).mode == MODE
    # The saver does not close a Sessions it was given.
    saver.close()
    assert sessions.get(Key("42")).key == "42"


def test_versions_sort_as_in_memory_savers_do(tmp_path: Path) -> None:
    saver = AgentSessionSaver(tmp_path, durable=False)
    v = None
    seen = []
    for _ in range(12):
        v = saver.get_next_version(v, None)
        seen.append(v)
    assert seen == sorted(seen) and len(set(seen)) == 12
    assert saver.get_next_version(3, None).startswith("0" * 31 + "4.")
    saver.close()
