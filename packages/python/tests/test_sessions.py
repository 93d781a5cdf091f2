"""The Python API over the component: what depends on the host's choices
(error lowering, reindex on open, argument checks, threads) and a directory
shared with the Rust CLI."""

import datetime
import enum
import json
import math
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from agent_session import IndexReport, SessionError, Sessions, open_sessions

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "target" / "release" / "agent-session"


def test_a_snapshot_that_cannot_be_read_is_replayed(tmp_path: Path) -> None:
    # The directory store answers a damaged snapshot with an io error, and the
    # engine replays the history instead: the damage must be seen, not
    # mistaken for a missing file.
    sessions = open_sessions(tmp_path)
    s = sessions.start("long", max_iterations=50)
    for i in range(20):
        sessions.iterate(s.id, {"i": i})
    doc = tmp_path / "sessions" / s.id / "doc"
    assert doc.exists(), "a snapshot was written after 16 events"
    doc.write_bytes(b"ASD1 damaged")
    again = open_sessions(tmp_path).get(s.id)
    assert (again.iteration, again.event_count) == (20, 21)


def test_a_lost_index_is_rebuilt_on_open(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path)
    ids = {sessions.start("a").id, sessions.start("b").id}
    (tmp_path / "index/sessions.log").unlink()
    reopened = open_sessions(tmp_path)
    assert {s.id for s in reopened.list().sessions} == ids
    assert not (tmp_path / "REINDEX").exists()


def test_the_index_is_rebuilt_on_open_only_when_reindex_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rebuilds = []
    rebuild = Sessions.rebuild_index

    def counted(self: Sessions, dry_run: bool = False) -> IndexReport:
        rebuilds.append(dry_run)
        return rebuild(self, dry_run)

    monkeypatch.setattr(Sessions, "rebuild_index", counted)
    ids = {open_sessions(tmp_path).start("a").id}
    assert rebuilds == []
    open_sessions(tmp_path)
    assert rebuilds == [], "a plain reopen rebuilt the index"
    (tmp_path / "REINDEX").write_bytes(b"")
    reopened = open_sessions(tmp_path)
    assert rebuilds == [False]
    assert not (tmp_path / "REINDEX").exists()
    assert {s.id for s in reopened.list().sessions} == ids
    open_sessions(tmp_path)
    assert rebuilds == [False]


def test_errors_carry_their_case(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path)
    with pytest.raises(SessionError) as e:
        sessions.get("../x")
    assert e.value.code == "invalid-input"
    s = sessions.start("t")
    sessions.complete(s.id, {"done": True})
    with pytest.raises(SessionError) as e:
        sessions.pause(s.id)
    assert e.value.code == "invalid-transition" and e.value.message


def refused(message: str):  # type: ignore[no-untyped-def]
    """pytest.raises for the wrapper's refusal with exactly ``message``."""
    return pytest.raises(SessionError, match=f"^invalid-input: {re.escape(message)}$")


def test_what_the_wit_types_cannot_carry_is_invalid_input(tmp_path: Path) -> None:
    # Worded as the Node package words it (more in
    # tests/conformance/wrapper-cases/, which both run).
    sessions = open_sessions(tmp_path)
    s = sessions.start("t")
    # Integers that do not fit the WIT type are refused, not wrapped.
    with refused("list: limit must be an integer from 0 to 4294967295, got the number -1"):
        sessions.list(limit=-1)
    with refused(
        "start: options.max-iterations must be an integer from 0 to 4294967295,"
        " got the number 4294967296"
    ):
        sessions.start("t", max_iterations=2**32)
    with refused(
        "unknown status \"done\"; expected one of active, paused, completed, failed, timeout"
    ):
        sessions.stats(status="done")
    # A bool is not an integer here (true is not 1 in JavaScript either).
    with refused("events: limit must be an integer from 0 to 4294967295, got the boolean true"):
        sessions.events(s.id, 0, True)
    # A left-out record field is the same error as in Node (not TypeError).
    with refused(
        "record-tool-call: call.duration-ms must be an integer from 0 to 18446744073709551615,"
        " got nothing"
    ):
        sessions.record_tool_call(s.id, name="ls", input={}, output={})
    with refused("set-webhook: config.url must be a string, got nothing"):
        sessions.set_webhook(secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    # A str is not a list of event kinds (list() would split it into letters).
    with refused(
        "set-webhook: config.event-kinds must be an array of strings,"
        " got the string \"session.failed\""
    ):
        sessions.set_webhook(
            url="https://hooks.example.com/a",
            secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            event_kinds="session.failed",  # type: ignore[arg-type]
        )
    with refused("pause: id must be a string, got a bytes"):
        sessions.pause(s.id.encode())  # type: ignore[arg-type]
    with refused("get: id must be a string without lone surrogates, got the string \"\\u{dc00}\""):
        sessions.get("\udc00")
    # Integer types pass: an IntEnum, an integral float (as in JavaScript).
    assert sessions.start("t", max_iterations=Level.HIGH).max_iterations == 7
    assert sessions.start("t", max_iterations=3.0).max_iterations == 3  # type: ignore[arg-type]
    assert sessions.get(s.id).event_count == 1


class Level(enum.IntEnum):
    HIGH = 7


def test_json_values_refuse_what_json_cannot_hold(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path)
    s = sessions.start("t")
    # json.dumps(allow_nan=False) would raise ValueError.
    with refused("iterate: data.x must be a JSON value, got the number NaN"):
        sessions.iterate(s.id, {"x": math.nan})
    with refused("iterate: data[1] must be a JSON value, got the number -Infinity"):
        sessions.iterate(s.id, [1, -math.inf])
    # json.dumps would raise TypeError.
    with refused("iterate: data.tags must be a JSON value, got a set"):
        sessions.iterate(s.id, {"tags": {"a"}})
    with refused("record-event: data.when must be a JSON value, got a datetime"):
        sessions.record_event(s.id, "note", {"when": datetime.datetime(2024, 1, 1)})
    with refused("complete: result.raw must be a JSON value, got a bytes"):
        sessions.complete(s.id, {"raw": b"x"})
    with refused("update-context: patch must be a JSON value, got a key that is an array"):
        sessions.update_context(s.id, {(1, 2): "tuple key"})
    loop: dict = {"a": {}}
    loop["a"]["back"] = loop
    with refused(
        "update-context: patch.a.back must be a JSON value, got an object that contains itself"
    ):
        sessions.update_context(s.id, loop)
    # Tuples are arrays, keys json writes (int, bool, None) are its strings,
    # a shared (not circular) value is fine: as json.dumps takes them.
    shared = {"k": 1}
    after = sessions.update_context(
        s.id, {"t": (1, 2), 1: "one", False: "no", None: "nil", "a": shared, "b": shared}
    )
    assert after.context == {
        "t": [1, 2], "1": "one", "false": "no", "null": "nil", "a": {"k": 1}, "b": {"k": 1}
    }  # fmt: skip
    # Any depth is serialized (json.dumps gives up at about 1000 levels)
    # and judged by the component, as in every host.
    deep: object = "end"
    for _ in range(20000):
        deep = [deep]
    with refused("iteration data is not valid JSON: recursion limit exceeded at line 1 column 128"):
        sessions.iterate(s.id, deep)
    # A lone surrogate is written as its escape, as JSON.stringify writes
    # it, and the component judges it.
    with refused("event data is not valid JSON: unexpected end of hex escape at line 1 column 8"):
        sessions.record_event(s.id, "note", "\ud800")
    assert sessions.get(s.id).event_count == 2


def test_threads_can_share_objects_and_directories(tmp_path: Path) -> None:
    sid = open_sessions(tmp_path).start("threads", max_iterations=1000).id
    shared = open_sessions(tmp_path)
    failures = []

    def work(sessions) -> None:  # type: ignore[no-untyped-def]
        for i in range(25):
            try:
                sessions.iterate(sid, {"i": i})
            except BaseException as e:  # noqa: BLE001 (any failure fails the test)
                failures.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in
               [shared, shared, open_sessions(tmp_path), open_sessions(tmp_path)]]  # fmt: skip
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert open_sessions(tmp_path).get(sid).iteration == 100


def test_the_rust_cli_and_python_share_a_directory(tmp_path: Path) -> None:
    assert CLI.exists(), f"{CLI} is missing: cargo build --release -p agent-session-host"

    def cli(*args: str) -> str:
        done = subprocess.run(
            [str(CLI), "--dir", str(tmp_path), *args], capture_output=True, text=True, check=True
        )
        return done.stdout

    first = cli("start", "from rust", "--quiet").strip()
    for i in range(18):  # past a snapshot written by Rust
        cli("iterate", first, "--data", json.dumps({"i": i}))
    sessions = open_sessions(tmp_path)
    assert sessions.get(first).iteration == 18
    sessions.iterate(first, {"host": "python"})
    second = sessions.start("from python", user_id="py").id
    assert json.loads(cli("list", "--json"))["sessions"][0]["id"] == second
    events = json.loads(cli("events", first, "--json"))["events"]
    assert events[-1]["data"]["data"] == {"host": "python"}
    cli("fsck")  # exits non-zero on damage


def test_a_listing_names_the_sessions_whose_history_cannot_be_read(tmp_path: Path) -> None:
    sessions = open_sessions(tmp_path)
    good = sessions.start("good").id
    bad = sessions.start("bad").id
    sessions.iterate(bad)
    sessions.iterate(bad)
    # A flipped byte inside the first of three records: damage, not a tear.
    log = tmp_path / "sessions" / bad / "events.log"
    data = bytearray(log.read_bytes())
    data[40] ^= 0xFF
    log.write_bytes(bytes(data))
    page = sessions.list()
    assert [s.id for s in page.sessions] == [good]
    assert len(page.unreadable) == 1
    assert page.unreadable[0].startswith(f"{bad}: ")


def test_set_webhook_applies_the_address_policy_with_the_hosts_exceptions(tmp_path: Path) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    s = open_sessions(tmp_path / "a")
    for url in ["http://127.0.0.1:9/hook", "http://127.1/hook", "http://[::1]/", "http://169.254.169.254/"]:
        with pytest.raises(SessionError) as e:
            s.set_webhook(url=url, secret=secret)
        assert e.value.code == "invalid-input" and "refused to send a webhook" in e.value.message, url
    assert s.get_webhook() is None, "nothing was set"
    # A disabled endpoint is only stored; a name is checked where it is dialled.
    assert s.set_webhook(url="http://127.0.0.1:9/hook", secret=secret, enabled=False).enabled is False
    assert s.set_webhook(url="https://hooks.example.com/a", secret=secret).enabled is True
    allowed = open_sessions(tmp_path / "b", webhook_allow=["127.0.0.1"])
    assert allowed.set_webhook(url="http://127.0.0.1:9/hook", secret=secret).url == "http://127.0.0.1:9/hook"
    with pytest.raises(SessionError):
        open_sessions(tmp_path / "c", webhook_allow="127.0.0.1")


def test_disable_webhook_is_a_compare_and_set_on_the_url(tmp_path: Path) -> None:
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    s = open_sessions(tmp_path, durable=False)
    assert s.disable_webhook("https://hooks.example.com/a") is False, "no endpoint"
    s.set_webhook(url="https://hooks.example.com/a", secret=secret)
    assert s.disable_webhook("https://hooks.example.com/other") is False
    assert s.get_webhook().enabled is True  # type: ignore[union-attr]
    assert s.disable_webhook("https://hooks.example.com/a") is True
    assert s.get_webhook().enabled is False  # type: ignore[union-attr]
    assert s.disable_webhook("https://hooks.example.com/a") is False, "already disabled"
    with pytest.raises(SessionError) as e:
        s.disable_webhook(3)  # type: ignore[arg-type]
    assert (e.value.code, e.value.message) == (
        "invalid-input",
        "disable-webhook: url must be a string, got the number 3",
    )


def test_a_session_another_process_holds_is_a_conflict_after_lock_timeout_ms(tmp_path: Path) -> None:
    from agent_session._root import Root

    sessions = open_sessions(tmp_path, lock_timeout_ms=300)
    try:
        s = sessions.start("t")
        # Hold the session's writer lock, as another process writing it would.
        other = Root(tmp_path, lock_timeout_ms=None)
        held = other.lock(f"sessions/{s.id}/lock", True, False)
        assert held is not None
        began = time.monotonic()
        with pytest.raises(SessionError) as e:
            sessions.iterate(s.id)
        assert e.value.code == "conflict"
        assert "lock" in e.value.message
        assert 0.3 <= time.monotonic() - began < 3
        other.unlock(held)
        other.close()
        assert sessions.iterate(s.id).iteration == 1
    finally:
        sessions.close()
    with pytest.raises(TypeError):
        open_sessions(tmp_path, lock_timeout_ms="soon")  # type: ignore[arg-type]
