"""The 0.4.0 API on the Python host: sessions named by a key (``Key``,
``start(key=...)``), conversations and checkpoints, sync and awaited; what
a WIT type cannot carry; hostile keys."""

import asyncio
import os
from pathlib import Path

import pytest

from agent_session import (
    ChannelValue,
    CheckpointTuple,
    Key,
    PendingWrite,
    SessionError,
    Sessions,
    TypedValue,
    open_sessions,
    open_sessions_async,
)


@pytest.fixture
def sessions(tmp_path: Path) -> Sessions:
    return open_sessions(tmp_path / "root", durable=False)


def test_a_key_is_get_or_create_and_names_the_session_everywhere(sessions: Sessions) -> None:
    first = sessions.start("task", key="thread-7", mode="langgraph", context={"a": 1})
    again = sessions.start("another task", key="thread-7", mode="other")
    assert first.key == "thread-7" and again == first  # the other options are not applied
    assert sessions.start("plain").key is None
    assert sessions.get(Key("thread-7")) == first
    k = Key("thread-7")
    sessions.iterate(k, {"i": 1})
    sessions.record_event(k, "custom", {"x": 1})
    sessions.record_learning(k, insight="keys work")
    sessions.record_tool_call(k, name="t", input={}, output={}, duration_ms=1)
    sessions.update_context(k, {"b": 2})
    sessions.pause(k, "later")
    assert sessions.is_resumable(k)
    sessions.resume(k)
    assert sessions.events(k).events[0].kind == "start"
    assert len(sessions.recent_events(k)) == 8
    assert sessions.resumption_context(k).session.context == {"a": 1, "b": 2}
    assert sessions.export(k)["session"]["key"] == "thread-7"
    assert sessions.progress(k) == 1.0 and sessions.duration(k) >= 0
    done = sessions.complete(k, {"ok": True})
    assert done.id == first.id and done.status == "completed" and done.key == "thread-7"
    sessions.delete(k)
    with pytest.raises(SessionError) as e:
        sessions.get(Key("thread-7"))
    assert e.value.code == "not-found"
    # The key is free again: a new session gets it.
    assert sessions.start("new", key="thread-7").id != first.id


def test_a_key_that_looks_like_an_id_is_still_a_key(sessions: Sessions) -> None:
    s = sessions.start("t")
    other = sessions.start("t", key=s.id)
    assert other.id != s.id and other.key == s.id
    assert sessions.get(Key(s.id)).id == other.id
    assert sessions.get(s.id).id == s.id


def test_a_conversation(sessions: Sessions) -> None:
    k = Key("conv")
    with pytest.raises(SessionError) as e:
        sessions.add_items(k, [{"a": 1}])
    assert e.value.code == "not-found"
    sessions.start("c", key="conv")
    big = {"text": "é" * 20_000}  # above 16 KiB: the blob log
    s = sessions.add_items(k, [{"role": "user", "content": "hi"}, 2.5, "s", big, None])
    assert s.key == "conv"
    assert sessions.items(k) == [{"role": "user", "content": "hi"}, 2.5, "s", big, None]
    assert sessions.items(k, 2) == [big, None]
    assert sessions.items(k, 0) == []
    assert sessions.items(k, 100) == sessions.items(k)
    assert sessions.pop_item(k) is None  # the null item
    assert sessions.pop_item(k) == big
    assert sessions.items(k) == [{"role": "user", "content": "hi"}, 2.5, "s"]
    sessions.clear_items(k)
    assert sessions.items(k) == [] and sessions.pop_item(k) is None
    sessions.add_items(k, [])
    kinds = [e.kind for e in sessions.events(k).events]
    assert kinds[1:] == ["item"] * 5 + ["item_pop"] * 2 + ["items_clear"]
    sessions.complete(k)
    with pytest.raises(SessionError) as e:
        sessions.add_items(k, [1])
    assert e.value.code == "invalid-transition"


def _tv(text: str) -> TypedValue:
    return TypedValue("json", text.encode())


def test_checkpoints(sessions: Sessions) -> None:
    k = Key("thread")
    assert sessions.get_checkpoint(k) is None  # no such session: none
    sessions.start("t", key="thread", mode="langgraph")
    sessions.put_checkpoint(
        k, id="1", checkpoint=_tv("{}"), metadata={"step": 0, "run_id": "r1"},
        channel_versions={"a": 1, "b": 1},
        new_values=[ChannelValue("a", 1, _tv('"A"')), ChannelValue("b", 1, None)],
    )  # fmt: skip
    sessions.put_writes(
        k, checkpoint_id="1", task_id="t2", task_path="p", writes=[("a", _tv("1"))]
    )
    sessions.put_writes(
        k, checkpoint_id="1", task_id="t1", writes=[("a", ("json", b"2")), ("__error__", _tv("0"))]
    )
    sessions.put_writes(k, checkpoint_id="1", task_id="t1", writes=[("a", _tv("3")), ("__error__", _tv("9"))])
    got = sessions.get_checkpoint(k, "", "1")
    assert got == CheckpointTuple(
        session_id=got.session_id if got else "", key="thread", ns="", id="1", parent_id=None,
        checkpoint=_tv("{}"), metadata={"step": 0, "run_id": "r1"},
        channel_values={"a": _tv('"A"')},
        pending_writes=(
            PendingWrite("t1", "", "__error__", _tv("9")),
            PendingWrite("t1", "", "a", _tv("2")),
            PendingWrite("t2", "p", "a", _tv("1")),
        ),
    )  # fmt: skip
    sessions.put_checkpoint(
        k, id="2", parent_id="1", checkpoint=_tv("{}"), metadata={"step": 1},
        channel_versions={"a": 1, "b": 2}, new_values=[ChannelValue("b", 2, _tv('"B"'))],
    )  # fmt: skip
    sessions.put_checkpoint(
        k, ns="child", id="3", checkpoint=_tv("{}"), metadata={"step": 1}, channel_versions={},
    )  # fmt: skip
    latest = sessions.get_checkpoint(k)
    assert latest is not None and latest.id == "2" and latest.parent_id == "1"
    assert latest.channel_values == {"a": _tv('"A"'), "b": _tv('"B"')}
    assert latest.pending_writes == ()
    assert [c.id for c in sessions.list_checkpoints(k, ns="").checkpoints] == ["2", "1"]
    assert [c.id for c in sessions.list_checkpoints(k, metadata={"step": 1}).checkpoints] in (
        ["2", "3"],
        ["3", "2"],
    )
    assert [c.id for c in sessions.list_checkpoints(k, before="2", ns="").checkpoints] == ["1"]
    assert len(sessions.list_checkpoints(mode="langgraph").checkpoints) == 3
    assert sessions.list_checkpoints(mode="other").checkpoints == ()
    # Pages: limit 1 a page, continued with the cursor.
    page = sessions.list_checkpoints(k, ns="", limit=1)
    assert [c.id for c in page.checkpoints] == ["2"]
    sessions.start("copy", key="copy", mode="langgraph")
    sessions.copy_checkpoints(k, Key("copy"))
    assert [c.id for c in sessions.list_checkpoints(Key("copy"), ns="").checkpoints] == ["2", "1"]
    assert sessions.drop_runs(["r1"], mode="langgraph") == 2
    assert sessions.get_checkpoint(k, "", "1") is None
    sessions.prune_checkpoints(Key("copy"))
    assert sorted(c.id for c in sessions.list_checkpoints(Key("copy")).checkpoints) == ["2", "3"]
    # History is never rewritten: everything is still an event.
    kinds = [e.kind for e in sessions.events(k).events]
    assert kinds.count("checkpoint") == 3 and kinds.count("writes") == 3


def test_the_async_api_has_the_new_methods(tmp_path: Path) -> None:
    async def main() -> None:
        async with await open_sessions_async(tmp_path, durable=False) as s:
            started = await s.start("t", key="k")
            await s.add_items(Key("k"), [{"a": 1}])
            assert await s.items(Key("k")) == [{"a": 1}]
            await s.put_checkpoint(
                Key("k"), id="1", checkpoint=_tv("{}"), metadata={}, channel_versions={}
            )
            got = await s.get_checkpoint(Key("k"))
            assert got is not None and got.session_id == started.id
            assert await s.pop_item(Key("k")) == {"a": 1}

    asyncio.run(asyncio.wait_for(main(), timeout=60))


def test_what_the_wit_types_cannot_carry(sessions: Sessions) -> None:
    cases = [
        (lambda: sessions.get(42), "get: id must be a string, got the number 42"),  # type: ignore[arg-type]
        (lambda: sessions.get(Key(42)), "get: key must be a string, got the number 42"),  # type: ignore[arg-type]
        (lambda: sessions.start("t", key=7), "start: options.key must be a string, got the number 7"),  # type: ignore[arg-type]
        (
            lambda: sessions.copy_checkpoints(Key("a"), Key(None)),  # type: ignore[arg-type]
            "copy-checkpoints: to.key must be a string, got nothing",
        ),
        (lambda: sessions.items("x", -1), "items: limit must be an integer from 0 to 4294967295, got the number -1"),
        (
            lambda: sessions.add_items("x", [float("nan")]),
            "add-items: items[0] must be a JSON value, got the number NaN",
        ),
        (
            lambda: sessions.put_writes("x", checkpoint_id="c", task_id="t", writes=[("a", "b")]),
            "put-writes: writes[0].1 must be a TypedValue or a (type, bytes) pair, got the string \"b\"",
        ),
        (
            lambda: sessions.put_checkpoint(
                "x", id="1", checkpoint=("t", "not bytes"), metadata={}, channel_versions={}
            ),
            "put-checkpoint: checkpoint.checkpoint.bytes must be bytes, got the string \"not bytes\"",
        ),
    ]
    for call, message in cases:
        with pytest.raises(SessionError) as e:
            call()
        assert (e.value.code, e.value.message) == ("invalid-input", message)


def _tree(path: Path) -> set:
    return {p.relative_to(path) for p in path.rglob("*")}


def test_hostile_keys_are_typed_errors_or_plain_names(tmp_path: Path) -> None:
    root = tmp_path / "root"
    outside_before = _tree(tmp_path)
    sessions = open_sessions(root, durable=False)
    names = ["../escape", "../../../../../tmp/x", "a/b/../../c", "/abs/path", "..", ".", "%2e%2e/x", "é/✓"]
    for name in names:
        s = sessions.start("t", key=name)
        assert s.key == name and sessions.get(Key(name)).id == s.id
        sessions.add_items(Key(name), [{"k": name}])
        assert sessions.items(Key(name)) == [{"k": name}]
    # No key became a file or directory name anywhere.
    inside = _tree(root)
    assert not any(seg in {"escape", "x", "c", "abs", "path", "b"} for p in inside for seg in p.parts)
    assert _tree(tmp_path) - {Path("root") / p for p in inside} - {Path("root")} == outside_before
    bad = {
        "a\x00b": 'session key "a\\0b" contains control characters',
        "a\nb": 'session key "a\\nb" contains control characters',
        "\x1b[31m": "contains control characters",
        "": "session key must be 1 to 512 bytes, got 0",
        "k" * 10_000: "session key must be 1 to 512 bytes, got 10000",
        "é" * 256 + "x": "session key must be 1 to 512 bytes, got 513",
    }
    for key, message in bad.items():
        for call in (
            lambda: sessions.start("t", key=key),
            lambda: sessions.get(Key(key)),
            lambda: sessions.add_items(Key(key), [1]),
            lambda: sessions.items(Key(key)),
            lambda: sessions.put_checkpoint(
                Key(key), id="1", checkpoint=_tv("{}"), metadata={}, channel_versions={}
            ),
            lambda: sessions.get_checkpoint(Key(key)),
            lambda: sessions.list_checkpoints(Key(key)),
            lambda: sessions.copy_checkpoints(Key(names[0]), Key(key)),
            lambda: sessions.delete(Key(key)),
        ):
            with pytest.raises(SessionError) as e:
                call()
            assert e.value.code == "invalid-input" and message in e.value.message, (key[:20], e.value)
    assert _tree(tmp_path) - {Path("root") / p for p in _tree(root)} - {Path("root")} == outside_before
    # A key of exactly 512 bytes is fine.
    assert sessions.start("t", key="k" * 512).key == "k" * 512
    assert len(sessions.list(limit=100).sessions) == len(names) + 1
    assert os.listdir(tmp_path) == ["root"]


def test_the_frameworks_are_imported_only_by_their_adapters() -> None:
    import subprocess
    import sys

    code = (
        "import sys, agent_session\n"
        "from agent_session import Key, open_sessions\n"
        "print(sorted(m for m in ('langgraph', 'agents', 'langchain_core', 'openai') if m in sys.modules))"
    )
    package = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
        env=dict(os.environ, PYTHONPATH=str(package)),
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
