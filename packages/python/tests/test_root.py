"""The ``root`` capability of the Python host (``agent_session/_root.py``):
the shared cases in ``tests/root/cases.json``, then what is not
declarative (``gone``, exclusion across processes, crash semantics, owners,
the wasmtime-py glue)."""

from __future__ import annotations

import json
import os
import random
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

import pytest

from agent_session import _root
from agent_session._root import Root, RootError, root_imports
from agent_session._values import Err
from wasmtime import Engine, Store
from wasmtime.component import Component, Linker, Variant

REPO = Path(__file__).resolve().parents[3]
PACKAGE = Path(__file__).resolve().parents[1]
CASES: List[Dict[str, Any]] = json.loads((REPO / "tests" / "root" / "cases.json").read_text())["cases"]
CASE_SECONDS = 10

METHODS = {
    "stat": "stat",
    "read": "read",
    "append": "append",
    "write-at": "write_at",
    "truncate": "truncate",
    "replace": "replace",
    "create-dir": "create_dir",
    "sync-dir": "sync_dir",
    "list": "list",
    "rename": "rename",
    "remove-file": "remove_file",
    "remove-tree": "remove_tree",
    "lock": "lock",
    "unlock": "unlock",
}


# -- the shared cases ------------------------------------------------------


def _setup(base: Path, step: Dict[str, Any]) -> None:
    if "mkdir" in step:
        (base / step["mkdir"]).mkdir(parents=True, exist_ok=True)
    elif "write" in step:
        p = base / step["write"]
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(step["text"].encode())
    elif "symlink" in step:
        p = base / step["at"]
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(step["symlink"], p)
    elif "hardlink" in step:
        p = base / step["at"]
        p.parent.mkdir(parents=True, exist_ok=True)
        os.link(base / step["hardlink"], p)
    elif "fifo" in step:
        p = base / step["fifo"]
        p.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(p, 0o644)
    else:
        raise ValueError(f"unknown setup step {step}")


def snapshot(top: Path) -> Dict[str, Tuple[Any, ...]]:
    """Names, kinds and contents under ``top``, never following a link."""
    seen: Dict[str, Tuple[Any, ...]] = {}

    def walk(d: Path) -> None:
        for entry in sorted(os.scandir(d), key=lambda e: e.name):
            rel = os.path.relpath(entry.path, top)
            mode = entry.stat(follow_symlinks=False).st_mode
            if stat.S_ISLNK(mode):
                seen[rel] = ("link", os.readlink(entry.path))
            elif stat.S_ISDIR(mode):
                seen[rel] = ("dir",)
                walk(Path(entry.path))
            elif stat.S_ISREG(mode):
                seen[rel] = ("file", Path(entry.path).read_bytes())
            else:
                seen[rel] = ("other", stat.S_IFMT(mode))

    walk(top)
    return seen


def _arg(value: Any, handles: Dict[int, Any]) -> Any:
    if isinstance(value, dict) and "text" in value:
        return value["text"].encode()
    if isinstance(value, dict) and "handle" in value:
        return handles[value["handle"]]
    return value


def _canonical(call: str, value: Any) -> Any:
    if call == "read":
        return {"text": value.decode("utf-8")}
    if call == "list":
        return sorted(value)
    if call == "stat":
        return None if value is None else {"size": value[0], "directory": value[2]}
    if call == "lock":
        return None if value is None else "handle"
    return value


class _Timeout(Exception):
    pass


def _alarm(_signum: int, _frame: Any) -> None:
    raise _Timeout(f"the case took more than {CASE_SECONDS} s (a call waited?)")


def run_case(case: Dict[str, Any], base: Path) -> None:
    (base / "root").mkdir()
    (base / "outside").mkdir()
    for step in case["setup"]:
        _setup(base, step)
    before = snapshot(base / "outside")
    root = Root(base / "root")
    handles: Dict[int, Any] = {}
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_SECONDS)
    try:
        for i, step in enumerate(case["steps"]):
            where = f"step {i} {json.dumps(step)}"
            if "check" in step:
                got = (base / step["check"]).read_bytes()
                assert got == step["text"].encode(), f"{where}: the file holds {got!r}"
                continue
            if "check_absent" in step:
                assert not os.path.lexists(base / step["check_absent"]), f"{where}: it exists"
                continue
            call = step["call"]
            args = [_arg(a, handles) for a in step["args"]]
            try:
                value = getattr(root, METHODS[call])(*args)
            except RootError as e:
                assert "err" in step, f"{where}: failed with {e.code}: {e.message}"
                assert e.code == step["err"], f"{where}: failed with {e.code}: {e.message}"
                assert e.message, f"{where}: no message"
                continue
            assert "err" not in step, f"{where}: succeeded with {value!r}"
            if call == "lock":
                handles[i] = value
            got = _canonical(call, value)
            assert got == step["ok"], f"{where}: returned {got!r}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        root.close()
    assert snapshot(base / "outside") == before, "outside/ changed"


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_case(case: Dict[str, Any], tmp_path: Path) -> None:
    run_case(case, tmp_path)


def test_cases_cover_every_function() -> None:
    called = {s["call"] for c in CASES for s in c["steps"] if "call" in s}
    assert called == set(METHODS)
    names = [c["name"] for c in CASES]
    assert len(names) == len(set(names))


# -- gone ----------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Root]:
    # Waiting locks block in flock (no bound): the tests below catch a
    # waiter there.
    r = Root(tmp_path / "root", lock_timeout_ms=None)
    yield r
    r.close()


def _wait_for_lock_in_thread(
    monkeypatch: pytest.MonkeyPatch, root: Root, path: str
) -> Tuple[threading.Thread, Dict[str, Any]]:
    """Start ``root.lock(path, exclusive, wait)`` in a thread; return once
    its file is open (it may or may not be in ``flock`` yet: either way it
    holds the file that was at ``path``)."""
    opened = threading.Event()
    real = _root.fcntl.flock

    def flock(fd: int, op: int) -> None:
        if not op & _root.fcntl.LOCK_NB:
            opened.set()
        real(fd, op)

    monkeypatch.setattr(_root.fcntl, "flock", flock)
    out: Dict[str, Any] = {}

    def run() -> None:
        try:
            out["handle"] = root.lock(path, True, True)
        except RootError as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    assert opened.wait(5), "the lock was not attempted"
    time.sleep(0.05)
    return t, out


@pytest.mark.parametrize("how", ["remove-file", "replace", "rename-file", "rename-dir", "remove-tree"])
def test_gone(monkeypatch: pytest.MonkeyPatch, root: Root, how: str) -> None:
    root.create_dir("a", False)
    held = root.lock("a/l", True, False)
    assert held is not None
    t, out = _wait_for_lock_in_thread(monkeypatch, root, "a/l")
    assert t.is_alive(), "the second lock did not wait"
    if how == "remove-file":
        assert root.remove_file("a/l")
    elif how == "replace":
        root.replace("a/l", b"new", False)
    elif how == "rename-file":
        root.rename("a/l", "a/m")
    elif how == "rename-dir":
        root.rename("a", "b")
    else:
        assert root.remove_tree("a")
    root.unlock(held)
    t.join(5)
    assert not t.is_alive()
    assert "error" in out, f"granted: {out}"
    assert out["error"].code == "gone"
    assert "a/l" in out["error"].message


def test_not_gone_when_still_there(monkeypatch: pytest.MonkeyPatch, root: Root) -> None:
    root.create_dir("a", False)
    other = Root(root.path)  # a second capability on the same directory
    try:
        held = other.lock("a/l", True, False)
        assert held is not None
        t, out = _wait_for_lock_in_thread(monkeypatch, root, "a/l")
        assert t.is_alive()
        other.unlock(held)
        t.join(5)
        assert isinstance(out.get("handle"), int), out
        assert other.lock("a/l", False, False) is None
        root.unlock(out["handle"])
        assert other.lock("a/l", False, False) is not None
    finally:
        other.close()


# -- across processes ----------------------------------------------------


def _child(code: str, *args: str) -> subprocess.Popen:
    prelude = f"import sys; sys.path.insert(0, {str(PACKAGE)!r})\n"
    return subprocess.Popen(
        [sys.executable, "-c", prelude + code, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


_HOLD = """
from agent_session._root import Root
r = Root(sys.argv[1])
h = r.lock("l", sys.argv[2] == "ex", True)
print("locked", h, flush=True)
sys.stdin.read()
"""

_RAW_FLOCK = """
import fcntl, os
fd = os.open(os.path.join(sys.argv[1], "l"), os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""


def _readline(p: subprocess.Popen, seconds: float = 10) -> str:
    line: List[str] = []
    t = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)  # type: ignore[union-attr]
    t.start()
    t.join(seconds)
    if not line:
        p.kill()
        raise AssertionError("the child did not answer")
    return line[0]


@pytest.mark.parametrize("child,mode", [(_HOLD, "ex"), (_HOLD, "sh"), (_RAW_FLOCK, "ex")],
                         ids=["exclusive", "shared", "raw-flock"])
def test_lock_excludes_other_processes(root: Root, child: str, mode: str) -> None:
    p = _child(child, root.path, mode)
    try:
        assert _readline(p).startswith("locked")
        assert root.lock("l", True, False) is None
        shared = root.lock("l", False, False)
        if mode == "sh":
            assert shared is not None
            root.unlock(shared)
        else:
            assert shared is None
        p.stdin.close()  # type: ignore[union-attr]
        assert p.wait(10) == 0
        h = root.lock("l", True, False)
        assert h is not None
        root.unlock(h)
    finally:
        p.kill()
        p.wait()


def test_lock_released_when_holder_killed(root: Root) -> None:
    p = _child(_HOLD, root.path, "ex")
    try:
        assert _readline(p).startswith("locked")
        assert root.lock("l", True, False) is None
        p.kill()
        p.wait(10)
        h = root.lock("l", True, True)
        assert h is not None
        root.unlock(h)
    finally:
        p.kill()
        p.wait()


# -- remove-tree and what it must never open ----------------------------

_REMOVE_TREE_RACE = """
import json, os
from agent_session._root import Root
root_dir, outside_fifo = sys.argv[1], sys.argv[2]
r = Root(root_dir)
real_open, swapped = os.open, []

def racing_open(path, flags, mode=0o777, *, dir_fd=None):
    # The race a walk must survive: between the look at "sub" (a directory)
    # and its open, "sub" becomes a link to a FIFO outside the root.
    if path == "sub" and dir_fd is not None and not swapped:
        os.rmdir("sub", dir_fd=dir_fd)
        os.symlink(outside_fifo, "sub", dir_fd=dir_fd)
        swapped.append(path)
    return real_open(path, flags, mode, dir_fd=dir_fd)

os.open = racing_open
print(json.dumps({"removed": r.remove_tree("t"), "swapped": swapped}), flush=True)
"""


def test_remove_tree_never_opens_a_fifo_or_follows_a_link(tmp_path: Path) -> None:
    """A FIFO in the tree, a link to a FIFO outside it, and a directory
    swapped for such a link while the tree is walked: all removed (the
    links, not their targets), nothing opened, so nothing waits. Run in a
    child process, killed after a bound: a walk that opened a FIFO would
    block forever."""
    outside = tmp_path / "outside"
    outside.mkdir()
    os.mkfifo(outside / "fifo", 0o644)
    t = tmp_path / "root" / "t"
    (t / "sub").mkdir(parents=True)
    (t / "d").mkdir()
    os.mkfifo(t / "q", 0o644)
    os.mkfifo(t / "d" / "q", 0o644)
    (t / "link").symlink_to(outside / "fifo")
    (t / "d" / "link").symlink_to("../../../outside/fifo")
    (t / "d" / "f").write_text("x")
    prelude = f"import sys; sys.path.insert(0, {str(PACKAGE)!r})\n"
    try:
        done = subprocess.run(
            [sys.executable, "-c", prelude + _REMOVE_TREE_RACE, str(tmp_path / "root"), str(outside / "fifo")],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("remove_tree blocked (it opened a FIFO)")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"removed": True, "swapped": ["sub"]}
    assert not os.path.lexists(t)
    assert os.listdir(tmp_path / "root") == []
    assert stat.S_ISFIFO(os.lstat(outside / "fifo").st_mode)
    assert os.listdir(outside) == ["fifo"]


def test_every_file_open_cannot_wait_follow_or_take_a_terminal(
    monkeypatch: pytest.MonkeyPatch, root: Root
) -> None:
    """Every open of a non-directory beneath the root carries O_NOFOLLOW,
    O_NONBLOCK and O_NOCTTY: whatever is found there (a link, a FIFO, a
    device, a terminal swapped in after the check), the open neither follows
    it, nor waits, nor makes a terminal the controlling one before the
    check refuses it. (A terminal cannot be planted in a test: a pts node
    made with mknod outside devpts does not open.)"""
    opened: List[Tuple[str, int]] = []
    real_open = os.open

    def spy(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Optional[int] = None) -> int:
        if not flags & os.O_DIRECTORY:
            opened.append((str(path), flags))
        return real_open(path, flags, mode, dir_fd=dir_fd)

    monkeypatch.setattr(_root.os, "open", spy)
    root.create_dir("d", False)
    root.append("d/f", b"abc", True)
    root.write_at("d/f", 1, b"x")
    root.truncate("d/f", 1, True)
    root.read("d/f", 0, 10)
    root.replace("d/g", b"g", True)
    root.unlock(root.lock("d/l", True, False))
    monkeypatch.undo()
    names = {name for name, _ in opened}
    assert {"f", "l"} <= names and any(n.startswith(".g.") for n in names), names  # .g.*: replace's temporary
    need = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    for name, flags in opened:
        assert flags & need == need, f"{name} opened with {flags:#o}"


# -- crash semantics -----------------------------------------------------

RECORD = 64  # divides the page size: see test_killed_appender

_APPENDER = """
from agent_session._root import Root
r = Root(sys.argv[1])
size, i = int(sys.argv[2]), 0
while True:
    rec = b"%08d" % i + b"x" * (size - 9) + b"\\n"
    print(r.append("log", rec, True), flush=True)
    i += 1
"""


def _lines_until_killed(p: subprocess.Popen, count: int, seconds: float = 20) -> List[str]:
    """Read ``count`` lines from the child, SIGKILL it, then read what it
    had printed before dying."""
    got: List[str] = []
    deadline = time.monotonic() + seconds
    try:
        while len(got) < count:
            assert time.monotonic() < deadline, "the child was too slow"
            got.append(_readline(p))
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    rest = p.stdout.read()  # type: ignore[union-attr]
    got.extend(rest.splitlines(keepends=True))
    return [line for line in got if line.endswith("\n")]  # a cut last line is no answer


@pytest.mark.parametrize("attempt", range(3))
def test_killed_appender_leaves_whole_records(root: Root, attempt: int) -> None:
    """Whole records only, in order, at least up to the last size returned.

    Records are 64 bytes, appended at multiples of 64, so none crosses a
    page: Linux may cut a write that spans pages when a fatal signal
    arrives between them (``generic_perform_write``), so a larger append
    can be torn by SIGKILL (as by a power loss); readers of the log must
    tolerate a torn tail either way."""
    p = _child(_APPENDER, root.path, str(RECORD))
    lines = _lines_until_killed(p, random.randint(1, 150))
    last = int(lines[-1])
    data = Path(root.path, "log").read_bytes()
    assert len(data) >= last
    assert len(data) % RECORD == 0, f"a torn record: {len(data)} bytes"
    for i in range(len(data) // RECORD):
        rec = data[i * RECORD:(i + 1) * RECORD]
        assert rec == b"%08d" % i + b"x" * (RECORD - 9) + b"\n", f"record {i}: {rec!r}"


_REPLACER = """
from agent_session._root import Root
r = Root(sys.argv[1])
n, i = int(sys.argv[2]), 0
while True:
    r.replace("doc", (b"A" if i % 2 == 0 else b"B") * n, i % 3 == 0)
    print(i, flush=True)
    i += 1
"""


@pytest.mark.parametrize("attempt", range(3))
def test_killed_replacer_leaves_old_or_new(root: Root, attempt: int) -> None:
    """The file is wholly one version; at most one temporary file (the one
    being written when the process died) is left beside it."""
    n = 200_000
    root.replace("doc", b"A" * n, True)
    p = _child(_REPLACER, root.path, str(n))
    _lines_until_killed(p, random.randint(1, 60))
    data = Path(root.path, "doc").read_bytes()
    assert data in (b"A" * n, b"B" * n), f"a mix: {data[:16]!r}...{data[-16:]!r} ({len(data)} bytes)"
    others = [name for name in root.list(".") if name != "doc"]
    assert len(others) <= 1, others
    for name in others:
        assert re.fullmatch(r"\.doc\.\d+-[0-9a-f]+\.tmp", name), name


# -- details the cases do not show ----------------------------------------


def test_stat_id_changes_on_replace(root: Root) -> None:
    root.replace("f", b"1", False)
    first = root.stat("f")
    root.replace("f", b"22", False)
    second = root.stat("f")
    assert first is not None and second is not None
    assert second[0] == 2 and not second[2]
    assert first[1] != second[1]
    assert root.stat(".") == (0, os.stat(root.path).st_ino, True)


def test_replace_temp_name_fits(root: Root) -> None:
    name = "n" * 255
    root.replace(name, b"long", True)
    assert root.read(name, 0, 10) == b"long"
    assert root.list(".") == [name]


def test_errors_name_the_path(root: Root) -> None:
    with pytest.raises(RootError) as e:
        root.read("some/where", 0, 1)
    assert e.value.code == "not-found"
    assert "some/where" in e.value.message and root.path in e.value.message


def test_closed_root_fails(tmp_path: Path) -> None:
    r = Root(tmp_path / "deep" / "er")
    assert (tmp_path / "deep" / "er").is_dir()
    h = r.lock("l", True, False)
    r.close()
    r.close()
    with pytest.raises(RootError) as e:
        r.stat("l")
    assert e.value.code == "io"
    # close released the lock
    with Root(tmp_path / "deep" / "er") as again:
        assert again.lock("l", True, False) is not None
    assert h is not None


def test_full_maps_to_full() -> None:
    assert _root._code(OSError(28, "No space left on device")) == "full"
    assert _root._code(OSError(122, "Disk quota exceeded")) == "full"
    assert _root._code(OSError(30, "Read-only file system")) == "read-only"
    assert _root._code(OSError(5, "I/O error")) == "io"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="chown needs root")
def test_foreign_owner_refused(tmp_path: Path) -> None:
    base = tmp_path / "root"
    base.mkdir()
    os.chown(base, 12345, 12345)  # the root's owner
    for name, uid in (("mine", os.geteuid()), ("owners", 12345), ("foreign", 23456)):
        (base / name).write_bytes(b"x")
        os.chown(base / name, uid, uid)
    with Root(base) as r:
        assert r.read("mine", 0, 1) == b"x"
        assert r.read("owners", 0, 1) == b"x"
        for call in (lambda: r.read("foreign", 0, 1), lambda: r.stat("foreign"),
                     lambda: r.append("foreign", b"y", False), lambda: r.lock("foreign", True, False),
                     lambda: r.replace("foreign", b"y", False)):
            with pytest.raises(RootError) as e:
                call()
            assert e.value.code == "refused" and "23456" in e.value.message
        assert (base / "foreign").read_bytes() == b"x"
        assert r.remove_file("foreign")


# -- the wasmtime-py glue --------------------------------------------------


def test_root_imports(root: Root) -> None:
    fns = root_imports(root)
    assert set(fns) == set(METHODS)
    assert fns["create-dir"](None, "a", True) is True
    assert fns["append"](None, "a/f", b"abc", True) == 3
    s = fns["stat"](None, "a/f")
    assert isinstance(s, Variant) and s.tag == "ok"
    assert (s.payload.size, s.payload.directory) == (3, False) and s.payload.id > 0
    assert fns["stat"](None, "a/none") == Variant("ok", None)
    assert fns["read"](None, "a/f", 1, 10) == b"bc"
    assert fns["list"](None, "a") == ["f"]
    assert fns["write-at"](None, "a/f", 1, b"X") is None
    assert fns["replace"](None, "a/g", b"g", False) is None
    h = fns["lock"](None, "a/l", True, False)
    assert isinstance(h, int) and h >= 1
    assert fns["lock"](None, "a/l", True, False) is None
    assert fns["unlock"](None, h) is None
    assert fns["unlock"](None, 12345) is None
    err = fns["read"](None, "../x", 0, 1)
    assert isinstance(err, Err)
    assert err.payload.code == "refused" and "../x" in err.payload.message
    err = fns["read"](None, "a/none", 0, 1)
    assert isinstance(err, Err) and err.payload.code == "not-found"
    err = fns["write-at"](None, "a/f", 1 << 64, b"x")  # too large for the OS
    assert isinstance(err, Err) and err.payload.code == "io"
    assert fns["remove-tree"](None, "a") is True


# The WIT functions as a component type. The component lowers each imported function into a core module
# that calls it and returns its result area, lifted again as an export: a
# call from Python runs the host function through the canonical ABI both
# ways, as the directory-store component would.
_SIGNATURES = {
    "stat": ('(param "path" string)', "(result (result (option $S) (error $F)))", "i32 i32"),
    "read": ('(param "path" string) (param "offset" u64) (param "len" u64)',
             "(result (result (list u8) (error $F)))", "i32 i32 i64 i64"),
    "append": ('(param "path" string) (param "bytes" (list u8)) (param "sync" bool)',
               "(result (result u64 (error $F)))", "i32 i32 i32 i32 i32"),
    "write-at": ('(param "path" string) (param "offset" u64) (param "bytes" (list u8))',
                 "(result (result (error $F)))", "i32 i32 i64 i32 i32"),
    "truncate": ('(param "path" string) (param "size" u64) (param "sync" bool)',
                 "(result (result (error $F)))", "i32 i32 i64 i32"),
    "replace": ('(param "path" string) (param "bytes" (list u8)) (param "sync" bool)',
                "(result (result (error $F)))", "i32 i32 i32 i32 i32"),
    "create-dir": ('(param "path" string) (param "sync" bool)', "(result (result bool (error $F)))", "i32 i32 i32"),
    "sync-dir": ('(param "path" string)', "(result (result (error $F)))", "i32 i32"),
    "list": ('(param "path" string)', "(result (result (list string) (error $F)))", "i32 i32"),
    "rename": ('(param "from" string) (param "to" string)', "(result (result (error $F)))", "i32 i32 i32 i32"),
    "remove-file": ('(param "path" string)', "(result (result bool (error $F)))", "i32 i32"),
    "remove-tree": ('(param "path" string)', "(result (result bool (error $F)))", "i32 i32"),
    "lock": ('(param "path" string) (param "exclusive" bool) (param "wait" bool)',
             "(result (result (option u64) (error $F)))", "i32 i32 i32 i32"),
    "unlock": ('(param "handle" u64)', "", "i64"),
}


def _passthrough_component() -> str:
    def ident(n: str) -> str:
        return n.replace("-", "_")

    imports, funcs, lowers, lifts, types = [], [], [], [], []
    for n, (params, result, flat) in _SIGNATURES.items():
        k = len(flat.split())
        gets = " ".join(f"local.get {i}" for i in range(k))
        if result:
            imports.append(f'(import "r" "{n}" (func ${ident(n)} (param {flat} i32)))')
            funcs.append(f'(func (export "{n}") (param {flat}) (result i32) {gets} i32.const 16 call ${ident(n)} i32.const 16)')
        else:
            imports.append(f'(import "r" "{n}" (func ${ident(n)} (param {flat})))')
            funcs.append(f'(func (export "{n}") (param {flat}) {gets} call ${ident(n)})')
        opts = '(memory (core memory $libc "mem")) (realloc (core func $libc "realloc"))'
        lowers.append(f'(core func ${ident(n)}_low (canon lower (func $r "{n}") {opts}))')
        types.append(f"(type ${ident(n)}_t (func {params} {result}))")
        lifts.append(f'(func ${ident(n)}_lift (type ${ident(n)}_t) (canon lift (core func $main "{n}") {opts}))'
                     f' (export "{n}" (func ${ident(n)}_lift))')
    inner = "\n".join(f'(export "{n}" (func {p} {r}))' for n, (p, r, _) in _SIGNATURES.items())
    args = " ".join(f'(export "{n}" (func ${ident(n)}_low))' for n in _SIGNATURES)
    nl = "\n"
    return f"""(component
  (import "{_root.ROOT}" (instance $r
    (type $ec (enum "not-found" "exists" "refused" "gone" "full" "read-only" "io"))
    (export "error-code" (type $E (eq $ec)))
    (type $f (record (field "code" $E) (field "message" string)))
    (export "failure" (type $F (eq $f)))
    (type $s (record (field "size" u64) (field "id" u64) (field "directory" bool)))
    (export "entry-info" (type $S (eq $s)))
    {inner}))
  (core module $Libc
    (memory (export "mem") 16)
    (global $bump (mut i32) (i32.const 4096))
    (func (export "realloc") (param i32 i32 i32 i32) (result i32) (local $p i32)
      global.get $bump local.get 2 i32.add i32.const 1 i32.sub
      i32.const 0 local.get 2 i32.sub i32.and
      local.tee $p local.get 3 i32.add global.set $bump local.get $p))
  (core instance $libc (instantiate $Libc))
  {nl.join(lowers)}
  (core module $Main {" ".join(imports)} {" ".join(funcs)})
  (core instance $main (instantiate $Main (with "r" (instance {args}))))
  (alias export $r "failure" (type $F))
  (alias export $r "entry-info" (type $S))
  {nl.join(types)}
  {nl.join(lifts)})"""


def test_root_imports_through_a_component(tmp_path: Path) -> None:
    engine = Engine()
    component = Component(engine, _passthrough_component())
    (tmp_path / "root").mkdir()
    os.mkfifo(tmp_path / "root" / "p")
    root = Root(tmp_path / "root")
    linker = Linker(engine)
    with linker.root() as r:
        with r.add_instance(_root.ROOT) as inst:
            for name, fn in root_imports(root).items():
                inst.add_func(name, fn)
    store = Store(engine)
    instance = linker.instantiate(store, component)

    def call(name: str, *args: Any) -> Any:
        func = instance.get_func(store, instance.get_export_index(store, name))
        assert func is not None
        value = func(store, *args)
        func.post_return(store)
        if isinstance(value, Variant):  # `stat`: tagged (see root_imports)
            value = value.payload if value.tag == "ok" else ("err", value.payload)
        if hasattr(value, "code"):  # the err case of an untagged result
            value = ("err", value)
        if isinstance(value, tuple):
            assert value[1].message
            return ("err", value[1].code)
        return value

    try:
        assert call("create-dir", "a", True) is True
        assert call("create-dir", "a", False) is False
        assert call("append", "a/f", b"hello", True) == 5
        s = call("stat", "a/f")
        assert (s.size, s.directory) == (5, False) and s.id > 0
        assert call("stat", "a/none") is None
        assert call("stat", "/abs") == ("err", "refused")
        assert call("read", "a/f", 1, 3) == b"ell"
        assert call("write-at", "a/f", 2, b"XY") is None
        assert call("read", "a/f", 0, 100) == b"heXY"
        assert call("truncate", "a/f", 1, True) is None
        assert call("replace", "a/g", b"gg", True) is None
        assert call("sync-dir", "a") is None
        assert sorted(call("list", "a")) == ["f", "g"]
        assert call("rename", "a/g", "a/h") is None
        assert call("remove-file", "a/h") is True
        assert call("remove-file", "a/h") is False
        assert call("read", "../x", 0, 1) == ("err", "refused")
        assert call("read", "p", 0, 10) == ("err", "refused")
        assert call("list", "missing") == ("err", "not-found")
        assert call("create-dir", "a/f", True) == ("err", "exists")
        h = call("lock", "a/l", True, False)
        assert isinstance(h, int)
        assert call("lock", "a/l", True, False) is None
        assert call("unlock", h) is None
        assert call("unlock", 99) is None
        assert isinstance(call("lock", "a/l", True, False), int)
        assert call("write-at", "x", 1 << 63, b"x") == ("err", "io")
        assert call("remove-tree", "a") is True
        assert call("remove-tree", "a") is False
    finally:
        root.close()


def test_busy_after_lock_timeout(tmp_path: Path) -> None:
    holder = Root(tmp_path / "root", lock_timeout_ms=None)
    waiter = Root(tmp_path / "root", lock_timeout_ms=300)
    try:
        holder.create_dir("d", False)
        held = holder.lock("d/l", True, False)
        assert held is not None
        began = time.monotonic()
        with pytest.raises(RootError) as e:
            waiter.lock("d/l", False, True)
        waited = time.monotonic() - began
        assert e.value.code == "busy"
        assert "d/l" in e.value.message and "300 ms" in e.value.message
        assert 0.3 <= waited < 3, waited
        # Granted once free, within the bound.
        holder.unlock(held)
        again = waiter.lock("d/l", False, True)
        assert isinstance(again, int)
        waiter.unlock(again)
    finally:
        holder.close()
        waiter.close()
    with pytest.raises(TypeError):
        Root(tmp_path / "root", lock_timeout_ms=-1)
