"""The Python store and outbox: positional appends, torn tails, documents,
locking across processes, the index, the intake segments, and the Rust
format on disk."""

import errno
import fcntl
import json
import os
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import pytest

from agent_session import _frame, _marked, fs_store, outbox as outbox_module
from agent_session.fs_store import FORMAT_1, FsStore, StoreError, io_error
from agent_session.outbox import INTAKE_DIR, INTAKE_MARK, Notification, Outbox


def kind(e: pytest.ExceptionInfo) -> str:
    return e.value.kind


def test_appends_are_positional(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    s.append("c", "k", 0, [b"a"], b"s0")
    with pytest.raises(StoreError) as taken:
        s.append("c", "k", 0, [b"x"], b"s")
    assert kind(taken) == "conflict"
    with pytest.raises(StoreError) as gap:
        s.append("c", "k", 2, [b"x"], b"s")
    assert kind(gap) == "conflict"
    with pytest.raises(StoreError) as absent:
        s.append("c", "other", 1, [b"x"], b"s")
    assert kind(absent) == "conflict"
    s.append("c", "k", 1, [b"b", b"c"], b"s2")
    assert s.read("c", "k", 0, 10) == [b"a", b"b", b"c"]
    assert s.read("c", "k", 1, 1) == [b"b"]
    assert s.read("c", "k", 3, 10) == []
    # Another handle on the root sees the same log and index.
    again = FsStore(str(tmp_path))
    assert again.read("c", "k", 2, 10) == [b"c"]
    assert again.scan("c", None, 10) == [("k", b"s2")]
    assert s.keys("c", None, 10) == ["k"]
    with pytest.raises(StoreError) as wrong_length:
        s.remove("c", "k", 2)
    assert kind(wrong_length) == "conflict"
    s.remove("c", "k", 3)
    assert s.read("c", "k", 0, 10) == []
    assert again.scan("c", None, 10) == []
    assert os.listdir(tmp_path / "c") == []


def test_the_log_is_in_the_rust_frame_format(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    s.append("c", "k", 0, [b"one", b"two"], b"")
    raw = (tmp_path / "c/k/events.log").read_bytes()
    length, seq, header_crc, payload_crc = struct.unpack_from("<IQII", raw)
    assert (length, seq) == (3 | 1 << 31, 0), "more frames of this append follow"
    assert header_crc == zlib.crc32(raw[:12])
    assert payload_crc == zlib.crc32(b"one") and raw[20:23] == b"one"
    length, seq = struct.unpack_from("<IQ", raw, 23)
    assert (length, seq) == (3, 1), "the last frame of the append"
    idx = (tmp_path / "c/k/events.idx").read_bytes()
    assert struct.unpack("<2Q", idx) == (0, 23)
    assert (tmp_path / "FORMAT").read_text() == "agent-session-fs 2\n"


def test_a_torn_append_is_cut_by_the_next_append(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    s.append("c", "k", 0, [b"a"], b"")
    log = tmp_path / "c/k/events.log"
    good = log.stat().st_size
    # A crash in the middle of a two-record append.
    torn = _frame.encode_batch(1, [b"b", b"c"])[:-1]
    with open(log, "ab") as f:
        f.write(torn)
    assert s.read("c", "k", 0, 10) == [b"a"], "readers skip it"
    s.append("c", "k", 1, [b"d"], b"")
    assert s.read("c", "k", 0, 10) == [b"a", b"d"]
    assert log.stat().st_size == good + _frame.HEADER + 1, "the torn bytes are gone"


def test_damage_names_the_log_and_stale_offsets_are_not_trusted(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    s.append("c", "bad", 0, [b"first", b"second"], b"")
    log = tmp_path / "c/bad/events.log"
    raw = bytearray(log.read_bytes())
    raw[_frame.HEADER] ^= 0xFF
    log.write_bytes(bytes(raw))
    with pytest.raises(StoreError) as damaged:
        s.read("c", "bad", 0, 10)
    assert kind(damaged) == "io" and "c/bad/events.log" in damaged.value.message

    s.append("c", "k", 0, [b"a", b"b"], b"")
    (tmp_path / "c/k/events.idx").unlink()
    assert s.read("c", "k", 1, 5) == [b"b"]
    (tmp_path / "c/k/events.idx").write_bytes(struct.pack("<Q", 7))
    assert s.read("c", "k", 0, 5) == [b"a", b"b"]
    s.append("c", "k", 2, [b"c"], b"")
    assert s.read("c", "k", 2, 5) == [b"c"]


def test_documents_are_versioned(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    assert s.get("c", "k") is None
    with pytest.raises(StoreError) as late:
        s.put("c", "k", b"snapshot", 0, durable=False)
    assert kind(late) == "conflict", "a non-durable put never creates a key"
    assert s.put("c", "k", b"one", 0, durable=True) == 1
    with pytest.raises(StoreError) as stale:
        s.put("c", "k", b"x", 0, durable=True)
    assert kind(stale) == "conflict"
    assert s.put("c", "k", b"two", 1, durable=True) == 2
    assert s.get("c", "k") == (2, b"two")
    assert (tmp_path / "c/k/doc").read_bytes()[:4] == b"ASD1"
    (tmp_path / "c/k/doc").write_bytes(b"garbage")
    with pytest.raises(StoreError) as damaged:
        s.get("c", "k")
    assert kind(damaged) == "io"


def test_names_are_confined(tmp_path: Path) -> None:
    s = FsStore(str(tmp_path))
    for bad in ["..", "../x", "a/b", "", ".trash", "a\0", "é", "x" * 65]:
        with pytest.raises(StoreError) as e:
            s.get("col", bad)
        assert kind(e) == "invalid-key"
        with pytest.raises(StoreError) as e:
            s.append(bad, "k", 0, [], b"")
        assert kind(e) == "invalid-key"


def _hold_lock(path: Path) -> subprocess.Popen:
    """Another process holding an exclusive flock on ``path`` until its stdin
    closes."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys\n"
            f"f = open({str(path)!r}, 'a')\n"
            "fcntl.flock(f, fcntl.LOCK_EX)\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
    return holder


def test_the_key_lock_excludes_another_process(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    s = FsStore(str(tmp_path))
    s.append("c", "k", 0, [b"a"], b"")
    holder = _hold_lock(tmp_path / "c/k/lock")
    done = threading.Event()
    worker = threading.Thread(target=lambda: (s.append("c", "k", 1, [b"b"], b""), done.set()))
    try:
        worker.start()
        assert not done.wait(0.3), "the append waited for the other process"
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()
    worker.join(60)
    assert done.is_set()
    assert s.read("c", "k", 0, 10) == [b"a", b"b"]

    # And the other way round: another process cannot take the lock while a
    # put holds it (tried from inside the put's write).
    probe = (
        "import fcntl, sys\n"
        f"f = open({str(tmp_path / 'c/k/lock')!r}, 'a')\n"
        "try:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except BlockingIOError:\n    sys.exit(3)\n"
    )
    seen = []
    original = fs_store.write_atomically

    def probing(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(subprocess.run([sys.executable, "-c", probe]).returncode)
        return original(*args, **kwargs)

    monkeypatch.setattr(fs_store, "write_atomically", probing)
    s.put("c", "k", b"doc", 0, durable=True)
    assert seen == [3], "the lock was held during the put"


def test_the_index_skips_garbage_and_follows_compaction(tmp_path: Path) -> None:
    a = FsStore(str(tmp_path))
    b = FsStore(str(tmp_path))
    a.append("c", "a", 0, [b"x"], b"s1")
    with open(tmp_path / "index/c.log", "ab") as f:
        f.write(b"ASIX\0\0\0\0\0\0\0\0ASIX\xff\xff")
    a.append("c", "b", 0, [b"y"], b"s2")
    assert [k for k, _ in FsStore(str(tmp_path)).scan("c", None, 10)] == ["b", "a"]
    for i in range(20):
        a.reindex("c", f"k{i:02}", b"v1")
    assert len(b.scan("c", None, 100)) == 22
    for i in range(20):
        a.reindex("c", f"k{i:02}", b"v2")
    before, after = a.index.compact("c")
    assert after < before
    assert b.scan("c", "k10", 3) == [("k09", b"v2"), ("k08", b"v2"), ("k07", b"v2")]
    a.reindex("c", "k00", b"v3")
    assert b.scan("c", None, 100)[-1] == ("a", b"s1")
    assert ("k00", b"v3") in b.scan("c", None, 100)


def test_os_errors_map_to_store_errors() -> None:
    for code in (errno.ENOSPC, errno.EDQUOT):
        full = io_error("appending to c/k", OSError(code, os.strerror(code)))
        assert full.kind == "full" and full.message.startswith("appending to c/k: ")
    other = io_error("reading c/k/doc", OSError(errno.EACCES, os.strerror(errno.EACCES)))
    assert (other.kind, other.message) == (
        "io",
        f"reading c/k/doc: {os.strerror(errno.EACCES)} (os error {errno.EACCES})",
    )


def test_a_format_1_root_is_refused_with_directions(tmp_path: Path) -> None:
    (tmp_path / "FORMAT").write_text(FORMAT_1)
    with pytest.raises(StoreError) as e:
        FsStore(str(tmp_path))
    assert "Rust CLI" in e.value.message


def _note(id: str) -> Notification:
    return Notification(
        id=id,
        session_id="01a22131-21d0-7031-9d07-7eba059ba7ee",
        seq=3,
        url="https://example.test/h",
        secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        kind="session.paused",
        timestamp=1_700_000_000_000,
        body='{"type":"session.paused"}',
    )


def _segments(root: Path) -> list:
    return sorted(p for p in (root / INTAKE_DIR).iterdir() if not p.name.startswith("."))


def _is_held(path: Path) -> bool:
    with open(path, "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_intake_segments_parse_back_and_are_held(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    out = Outbox(str(tmp_path))
    out.enqueue(_note("msg_a"))
    out.enqueue(_note("msg_b"))
    (segment,) = _segments(tmp_path)
    assert segment.name.startswith(f"{os.getpid()}-") and segment.name.endswith(".log")
    assert len(segment.name) == len(f"{os.getpid()}-") + 16 + len(".log")
    bodies, used = _marked.read(INTAKE_MARK, segment.read_bytes(), "test", complete=True)
    assert used == segment.stat().st_size
    first = json.loads(bodies[0])
    assert list(first) == ["id", "session_id", "seq", "url", "secret", "kind", "timestamp", "body"]
    assert first == {**_note("msg_a").__dict__}
    assert json.loads(bodies[1])["id"] == "msg_b"
    assert _is_held(segment), "a live writer holds its segment"

    with pytest.raises(outbox_module.OutboxError, match="not a safe file name"):
        out.enqueue(_note("../x"))

    # Past the size limit a new segment starts and the old one is let go.
    monkeypatch.setattr(outbox_module, "SEGMENT_MAX", 1)
    out.enqueue(_note("msg_c"))
    assert len(_segments(tmp_path)) == 2
    assert not _is_held(segment)
    out.close()
    assert not any(_is_held(p) for p in _segments(tmp_path))
