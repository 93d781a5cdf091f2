"""AgentSession against the Agents SDK's own SQLiteSession: seeded random
sequences of add_items / get_items(limit) / pop_item / clear_session give
the same answers at every step; then the adapter's own choices."""

import asyncio
import json
import random
from pathlib import Path
from typing import Any, List

import pytest
from agents import SQLiteSession
from agents.memory import Session, SessionSettings

from agent_session import Key, SessionError, open_sessions
from agent_session.openai_agents import MODE, AgentSession

SEEDS = [1, 2, 3, 4, 5]
STEPS = 300


def _scalar(rng: random.Random) -> Any:
    return rng.choice([
        None, True, False,
        rng.randint(-(2**53) + 1, 2**53 - 1), rng.randint(-5, 5),
        rng.uniform(-1e6, 1e6), 0.5, 2.0, 1e-7, -0.0,
        "", "plain", "é✓ \"quoted\" \\ \n\t", "\u2028\U0001f600",
    ])  # fmt: skip


def _value(rng: random.Random, depth: int = 0) -> Any:
    r = rng.random()
    if depth > 3 or r < 0.5:
        return _scalar(rng)
    if r < 0.75:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{rng.randint(0, 30)}": _value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def _item(rng: random.Random, n: int) -> Any:
    r = rng.random()
    if r < 0.05:
        # Above 16 KiB: kept in the blob log.
        return {"role": "user", "content": "x" * rng.randint(16_000, 40_000), "n": n}
    if r < 0.15:
        return _value(rng)  # any JSON value, not only an object
    item = {"role": rng.choice(["user", "assistant"]), "content": f"message {n}", "n": n}
    if rng.random() < 0.5:
        item["extra"] = _value(rng)
    return item


def _canonical(v: Any) -> str:
    # Exact: 2.0 stays a float, key order aside.
    return json.dumps(v, sort_keys=True)


async def _differential(tmp_path: Path, seed: int) -> List[str]:
    rng = random.Random(seed)
    settings = SessionSettings(limit=rng.randint(1, 5)) if seed % 2 == 0 else None
    theirs = SQLiteSession("conv", str(tmp_path / f"sqlite-{seed}.db"), session_settings=settings)
    ours = AgentSession("conv", tmp_path / f"root-{seed}", session_settings=settings)
    assert isinstance(ours, Session)
    ops: List[str] = []
    n = 0
    try:
        for step in range(STEPS):
            op = rng.choices(["add", "get", "pop", "clear"], weights=[40, 40, 15, 5])[0]
            if op == "add":
                batch = [_item(rng, n + i) for i in range(rng.choice([0, 1, 1, 2, 3, 5]))]
                n += len(batch)
                a = await theirs.add_items(batch)
                b = await ours.add_items(batch)
                ops.append(f"add({len(batch)})")
            elif op == "get":
                limit = rng.choice([None, None, 0, -1, -rng.randint(2, 100), 1, 2, 3,
                                    rng.randint(4, 60), 10**12])  # fmt: skip
                a = await theirs.get_items(limit)
                b = await ours.get_items(limit)
                ops.append(f"get({limit})")
            elif op == "pop":
                a = await theirs.pop_item()
                b = await ours.pop_item()
                ops.append("pop")
            else:
                a = await theirs.clear_session()
                b = await ours.clear_session()
                ops.append("clear")
            assert _canonical(a) == _canonical(b), f"seed {seed}, step {step}: {ops[-12:]}"
        # And the whole conversation at the end, in both.
        assert _canonical(await theirs.get_items(10**9)) == _canonical(await ours.get_items(10**9))
    finally:
        theirs.close()
        ours.close()
    return ops


@pytest.mark.parametrize("seed", SEEDS)
def test_agent_session_answers_as_sqlite_session_does(tmp_path: Path, seed: int) -> None:
    ops = asyncio.run(asyncio.wait_for(_differential(tmp_path, seed), timeout=240))
    kinds = {o.split("(")[0] for o in ops}
    assert kinds == {"add", "get", "pop", "clear"} and len(ops) == STEPS


def test_a_conversation_is_a_keyed_session_and_history_is_kept(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path, durable=False)

    async def main() -> None:
        conv = AgentSession("conv-1", sessions)
        assert await conv.get_items() == [] and await conv.pop_item() is None
        await conv.clear_session()  # nothing to clear: no session made
        await conv.add_items([])
        assert sessions.list().sessions == ()
        await conv.add_items([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
        assert await conv.pop_item() == {"role": "assistant", "content": "b"}
        await conv.clear_session()
        await conv.add_items([{"role": "user", "content": "c"}])
        assert await conv.get_items() == [{"role": "user", "content": "c"}]
        with pytest.raises(SessionError) as e:
            await conv.add_items([{"bad": float("nan")}, {"fine": 1}])
        assert e.value.code == "invalid-input"
        assert await conv.get_items() == [{"role": "user", "content": "c"}]  # none of the batch
        conv.close()

    asyncio.run(asyncio.wait_for(main(), timeout=60))
    s = sessions.get(Key("conv-1"))
    assert (s.key, s.mode, s.status) == ("conv-1", MODE, "active")
    kinds = [e.kind for e in sessions.events(Key("conv-1")).events]
    assert kinds == ["start", "item", "item", "item_pop", "items_clear", "item"]
    sessions.get(Key("conv-1"))  # the Sessions given was left open


def test_an_ended_conversation_and_a_bad_id_are_typed_errors(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path, durable=False)

    async def main() -> None:
        conv = AgentSession("done", sessions)
        await conv.add_items([{"a": 1}])
        sessions.complete(Key("done"))
        assert await conv.get_items() == [{"a": 1}]
        with pytest.raises(SessionError) as e:
            await conv.add_items([{"b": 2}])
        assert e.value.code == "invalid-transition"
        for bad in ("", "a\x00b", "k" * 600):
            with pytest.raises(SessionError) as e:
                await AgentSession(bad, sessions).add_items([{"a": 1}])
            assert e.value.code == "invalid-input"

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_adapters_opened_from_a_directory_give_it_back_when_closed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A server that opens an adapter per request must not run out of file
    descriptors."""
    import os

    from agent_session.langgraph import AgentSessionSaver

    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    warm = AgentSession("warm", str(tmp_path))
    warm.close()
    before = open_fds()
    for i in range(30):
        AgentSession(f"c{i}", str(tmp_path)).close()
        AgentSessionSaver(str(tmp_path)).close()
    assert open_fds() == before
