"""The compiled-component cache (``_cache.py``): an entry written by one
process is loaded by the next; a damaged, truncated or foreign entry is
refused and replaced, never deserialized; a cache that cannot be written
costs a warning, not the session."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Tuple

import pytest
from wasmtime import Engine

from agent_session import CacheWarning, component_path
from agent_session import _cache

PACKAGE = Path(__file__).resolve().parents[1]

# Open, make one call, say where the component came from and how long the
# import, open and call took.
CHILD = """
import json, sys, time, warnings
t = time.perf_counter()
import agent_session
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    s = agent_session.open_sessions(sys.argv[1], durable=False)
    started = s.start("cached").status
print(json.dumps({
    "origin": agent_session.component_origin(),
    "seconds": time.perf_counter() - t,
    "started": started,
    "warnings": [w.category.__name__ + ": " + str(w.message) for w in caught],
}))
"""


def run_child(tmp_path: Path, cache: Path) -> Dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE), "AGENT_SESSION_CACHE_DIR": str(cache)}
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tmp_path / "store")],
        env=env, capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    result: Dict[str, Any] = json.loads(out.stdout)
    return result


def entries(cache: Path) -> list:
    return sorted(p.name for p in cache.iterdir())


def test_a_second_process_loads_what_the_first_compiled(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cold = run_child(tmp_path, cache)
    assert (cold["origin"], cold["started"], cold["warnings"]) == ("compiled", "active", [])
    key = _cache.entry_key(component_path().read_bytes())
    assert entries(cache) == [f"{key.hex()}.cwasm"]
    entry = cache / f"{key.hex()}.cwasm"
    assert entry.stat().st_mode & 0o777 == 0o600
    assert cache.stat().st_mode & 0o777 == 0o700

    warm = run_child(tmp_path, cache)
    assert (warm["origin"], warm["started"], warm["warnings"]) == ("cache", "active", [])
    # Compiling takes ~0.4 s, deserializing a few milliseconds.
    assert warm["seconds"] < cold["seconds"] / 2, (warm, cold)
    assert entries(cache) == [entry.name], "a hit writes nothing"


def test_the_key_follows_the_component_and_the_wasmtime_version(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert _cache._wasmtime_version() == "50.0.1"
    one = _cache.entry_key(b"component one")
    assert one == _cache.entry_key(b"component one")
    assert one != _cache.entry_key(b"component two")
    monkeypatch.setattr(_cache, "_wasmtime_version", lambda: "51.0.0")
    assert one != _cache.entry_key(b"component one")


def flip(offset: int) -> Callable[[Path, bytes], None]:
    def damage(entry: Path, good: bytes) -> None:
        data = bytearray(good)
        data[offset] ^= 0x01
        entry.write_bytes(bytes(data))

    return damage


def truncate(keep: int) -> Callable[[Path, bytes], None]:
    return lambda entry, good: entry.write_bytes(good[:keep])


def foreign(entry: Path, good: bytes) -> None:
    # A whole, valid entry, but for another component.
    entry.write_bytes(_cache._encode(_cache.entry_key(b"another"), good[_cache._HEADER.size :]))


def symlink(entry: Path, good: bytes) -> None:
    elsewhere = entry.parent.parent / "elsewhere.cwasm"
    elsewhere.write_bytes(good)
    entry.unlink()
    entry.symlink_to(elsewhere)


def group_writable(entry: Path, good: bytes) -> None:
    entry.chmod(0o620)


HEADER = _cache._HEADER.size
DAMAGES = {
    "a flipped byte in the code": flip(HEADER + 100_000),
    "a flipped byte in the last byte": flip(-1),
    "a flipped byte in the checksum": flip(HEADER - 20),
    "a flipped byte in the magic": flip(0),
    "truncated to half": truncate(HEADER + 1_000_000),
    "truncated to its header": truncate(HEADER),
    "empty": truncate(0),
    "an entry of another key": foreign,
    "a symbolic link": symlink,
    "writable by others": group_writable,
}


@pytest.fixture(scope="module")
def sound_entry(tmp_path_factory: pytest.TempPathFactory) -> Tuple[str, bytes]:
    """The name and bytes of the entry for the packaged component."""
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as m:
        m.setenv("AGENT_SESSION_CACHE_DIR", str(cache))
        _, origin = _cache.load(Engine(), str(component_path()))
    assert origin == "compiled"
    (entry,) = cache.iterdir()
    return entry.name, entry.read_bytes()


@pytest.mark.parametrize("damage", DAMAGES.values(), ids=DAMAGES.keys())
def test_an_unsound_entry_is_refused_and_replaced(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    sound_entry: Tuple[str, bytes],
    damage: Callable[[Path, bytes], None],
) -> None:
    name, good = sound_entry
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    entry = cache / name
    entry.write_bytes(good)
    entry.chmod(0o600)
    damage(entry, good)
    monkeypatch.setenv("AGENT_SESSION_CACHE_DIR", str(cache))
    wasm = str(component_path())
    engine = Engine()

    # wasmtime is never handed the bytes: no deserializing while refused.
    def no_deserialize(*args: object) -> None:
        raise AssertionError("an unsound entry was deserialized")

    with monkeypatch.context() as m:
        m.setattr(_cache.Component, "deserialize", no_deserialize)
        _, origin = _cache.load(engine, wasm)
    assert origin == "compiled"
    assert not entry.is_symlink()
    assert entry.stat().st_mode & 0o777 == 0o600
    key = _cache.entry_key(Path(wasm).read_bytes())
    assert _cache._decode(key, entry.read_bytes()) is not None, "replaced by a sound entry"
    assert [p.name for p in cache.iterdir()] == [name], "no temporary file left"
    _, origin = _cache.load(engine, wasm)
    assert origin == "cache"


def test_a_sound_entry_loads_a_working_component(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENT_SESSION_CACHE_DIR", str(tmp_path / "cache"))
    wasm = str(component_path())
    _cache.load(Engine(), wasm)
    component, origin = _cache.load(Engine(), wasm)
    assert origin == "cache"
    assert component.get_export_index("agent:session/sessions@0.4.0") is not None


def test_a_cache_that_cannot_be_written_falls_back_to_compiling(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run_child(tmp_path, blocker / "cache")
    assert (result["origin"], result["started"]) == ("compiled", "active")
    assert len(result["warnings"]) == 1
    assert result["warnings"][0].startswith("CacheWarning: cannot write the compiled component")
    assert blocker.read_text() == "not a directory"


def test_the_cache_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_SESSION_CACHE_DIR", "/given")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert _cache.cache_dir() == Path("/given")
    monkeypatch.delenv("AGENT_SESSION_CACHE_DIR")
    assert _cache.cache_dir() == Path("/xdg/agent-session")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert _cache.cache_dir() == tmp_path / ".cache" / "agent-session"


def test_no_home_compiles_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_SESSION_CACHE_DIR")

    def no_home() -> Path:
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setattr(_cache.Path, "home", no_home)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _, origin = _cache.load(Engine(), str(component_path()))
    assert origin == "compiled"
    assert [w.category for w in caught] == [CacheWarning]
