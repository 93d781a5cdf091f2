"""The Python API over the component: what depends on the host's choices
(error lowering, reindex on open, argument checks, threads) and a directory
shared with the Rust CLI."""

import json
import subprocess
import threading
from pathlib import Path

import pytest

from agent_session import SessionError, open_sessions

REPO = Path(__file__).resolve().parents[3]
CLI = REPO / "target" / "release" / "agent-session"


def test_a_snapshot_that_cannot_be_read_is_replayed(tmp_path: Path) -> None:
    # The component replays the history when `get` answers an io error for
    # the snapshot: this needs the store-error to reach it (see _values.Err).
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
    # Integers that do not fit the WIT type are refused, not wrapped.
    with pytest.raises(SessionError) as e:
        sessions.list(limit=-1)
    assert e.value.code == "invalid-input"
    with pytest.raises(SessionError) as e:
        sessions.start("t", max_iterations=2**32)
    assert e.value.code == "invalid-input"
    with pytest.raises(SessionError) as e:
        sessions.stats(status="done")
    assert e.value.code == "invalid-input"


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
