"""The adapters across processes (each step a new process, as an
application restarted): a LangGraph graph interrupted in one process and
resumed in another; an Agents SDK Runner whose conversation continues in a
second process; racing starts of one key; checkpoint states of several MiB."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from langgraph.checkpoint.base import empty_checkpoint

from agent_session import Key, open_sessions
from agent_session.langgraph import AgentSessionSaver

CHILD = Path(__file__).resolve().parent / "framework_child.py"
TIMEOUT_S = 120


def _child(*args: str) -> Dict[str, Any]:
    env = dict(os.environ, OPENAI_AGENTS_DISABLE_TRACING="1")
    env.pop("OPENAI_API_KEY", None)
    done = subprocess.run(
        [sys.executable, str(CHILD), *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_graph_interrupted_in_one_process_resumes_in_another(tmp_path: Path) -> None:
    first = _child("graph-start", str(tmp_path), "thread-1")
    assert first["value"] == 2 and first["log"] == ["double"]
    assert first["interrupts"] == [{"question": "go on?", "value": 2}]
    second = _child("graph-resume", str(tmp_path), "thread-1", "yes")
    assert second["pid"] != first["pid"]
    assert second["next_before"] == ["approve"]  # read back from our checkpointer
    assert second["state"] == {"value": 12, "log": ["double", "approve:yes", "add_ten"], "answer": "yes"}
    history = second["history"]
    # input, double, approve (interrupted, then resumed), add_ten: newest first, chained.
    assert [h["step"] for h in history] == [3, 2, 1, 0, -1]
    assert [h["next"] for h in history] == [[], ["add_ten"], ["approve"], ["double"], ["__start__"]]
    assert [h["parent"] for h in history[:-1]] == [h["id"] for h in history[1:]]
    assert history[-1]["parent"] is None
    assert [h["id"] for h in history] == sorted((h["id"] for h in history), reverse=True)
    # The thread is one session, its checkpoints events of its history.
    sessions = open_sessions(tmp_path)
    s = sessions.get(Key("thread-1"))
    assert (s.mode, s.status) == ("langgraph", "active")
    kinds = [e.kind for e in sessions.events(Key("thread-1"), 0, 1000).events]
    assert kinds.count("checkpoint") == 5 and "writes" in kinds


def test_a_runner_conversation_continues_in_a_second_process(tmp_path: Path) -> None:
    first = _child("agent", str(tmp_path), "conv-1", "hello")
    assert first["output"] == "saw 1"
    assert first["model_input"] == [{"content": "hello", "role": "user"}]
    assert len(first["items"]) == 2
    second = _child("agent", str(tmp_path), "conv-1", "again")
    assert second["pid"] != first["pid"]
    # The second run's model input: the first run's items, then the new one.
    assert second["model_input"] == first["items"] + [{"content": "again", "role": "user"}]
    assert second["output"] == "saw 3"
    assert second["items"][:3] == second["model_input"] and len(second["items"]) == 4
    assert second["items"][3]["content"][0]["text"] == "saw 3"
    # Another conversation in the same directory is apart.
    other = _child("agent", str(tmp_path), "conv-2", "hi")
    assert other["model_input"] == [{"content": "hi", "role": "user"}]


def test_racing_starts_of_one_key_give_one_session(tmp_path: Path) -> None:
    root = tmp_path / "root"
    open_sessions(root).close()  # made, and the component in the cache
    go = tmp_path / "go"
    children: List[subprocess.Popen] = []
    ready = [tmp_path / f"ready-{i}" for i in range(6)]
    for r in ready:
        children.append(subprocess.Popen(
            [sys.executable, str(CHILD), "race", str(root), "same-thread", str(r), str(go)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not all(r.exists() for r in ready):
            assert time.monotonic() < deadline, "children not ready"
            assert all(c.poll() is None for c in children), [c.communicate() for c in children]
            time.sleep(0.01)
        go.write_text("go")  # all start at once
        outs = [c.communicate(timeout=TIMEOUT_S) for c in children]
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
    assert all(c.returncode == 0 for c in children), outs
    answers = [json.loads(out.strip().splitlines()[-1]) for out, _ in outs]
    assert len({a["pid"] for a in answers}) == 6
    assert len({a["id"] for a in answers}) == 1, answers
    assert {a["key"] for a in answers} == {"same-thread"}
    listed = open_sessions(root).list().sessions
    assert [(s.id, s.key) for s in listed] == [(answers[0]["id"], "same-thread")]
    assert listed[0].event_count == 1  # one start


def test_checkpoint_states_of_several_mib_round_trip(tmp_path: Path) -> None:
    saver = AgentSessionSaver(tmp_path)
    big = os.urandom(6 << 20)  # a 6 MiB channel value
    text = "é" * (3 << 20)  # 6 MiB of UTF-8
    cp = empty_checkpoint()
    cp["channel_values"] = {"big": big, "text": text, "small": "s"}
    cp["channel_versions"] = {"big": 1, "text": 1, "small": 1}
    config = {"configurable": {"thread_id": "large", "checkpoint_ns": ""}}
    stored = saver.put(config, cp, {"source": "input", "step": -1}, {"big": 1, "text": 1, "small": 1})
    saver.put_writes(stored, [("big", big[::-1])], "task-1")
    child = empty_checkpoint()
    child["channel_values"] = {"big": big, "text": text, "small": "t"}
    child["channel_versions"] = {"big": 1, "text": 1, "small": 2}
    saver.put(stored, child, {"source": "loop", "step": 0}, {"small": 2})
    saver.close()
    again = AgentSessionSaver(tmp_path)  # read back afresh
    got = again.get_tuple(config)
    assert got is not None and got.checkpoint["id"] == child["id"]
    assert got.checkpoint["channel_values"] == {"big": big, "text": text, "small": "t"}
    first = again.get_tuple(stored)
    assert first is not None and first.pending_writes == [("task-1", "big", big[::-1])]
    assert [t.checkpoint["channel_values"]["big"] == big for t in again.list(config)] == [True, True]
    again.close()


def test_conversation_items_of_several_mib_round_trip(tmp_path: Path) -> None:
    import asyncio

    import pytest

    from agent_session import SessionError
    from agent_session.openai_agents import AgentSession

    big = {"role": "user", "content": "é" * (3 << 20)}  # 6 MiB of UTF-8

    async def main() -> None:
        conv = AgentSession("large", tmp_path)
        await conv.add_items([{"role": "user", "content": "small"}, big])
        conv.close()
        again = AgentSession("large", tmp_path)
        assert await again.get_items(1) == [big]
        assert await again.pop_item() == big
        # Past 32 MiB of JSON an item is refused, as a typed error, whole batch.
        with pytest.raises(SessionError) as e:
            await again.add_items([{"ok": 1}, {"content": "x" * (33 << 20)}])
        assert e.value.code == "invalid-input" and "33554432" in e.value.message
        assert await again.get_items() == [{"role": "user", "content": "small"}]
        again.close()

    asyncio.run(asyncio.wait_for(main(), timeout=120))
