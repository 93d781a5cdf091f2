"""The compiled component, cached on disk between processes.

Compiling the component takes ~0.4 s; deserializing wasmtime's serialized
form of it takes a few milliseconds. An entry is keyed by the sha256 of the
component's bytes, the wasmtime version and the machine, so a rebuilt
component or another wasmtime gets its own entry.

wasmtime loads serialized code as machine code, trusting it: a damaged
file could run anything. Its own header check catches another version or
configuration, not a flipped byte. So an entry carries the sha256 of its key
and contents, and is deserialized only after that matches, from the very
bytes that were checked; it must also be a regular file of this user that
nobody else may write. The checksum guards against damage (a torn write, a
bad disk, a foreign file under the name), not against someone who may write
to the cache directory as this user.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import struct
import warnings
from pathlib import Path
from typing import Literal, Optional, Tuple

import wasmtime
from wasmtime import Engine, WasmtimeError
from wasmtime.component import Component

CACHE_ENV = "AGENT_SESSION_CACHE_DIR"

# Where a component came from in this process: its entry in the cache, or
# the compiler.
Origin = Literal["cache", "compiled"]

_MAGIC = b"agent-session compiled component v1\n"
# The magic, the key (32 bytes), the sha256 of key + contents (32), the
# length of the contents (8, little-endian).
_HEADER = struct.Struct(f"<{len(_MAGIC)}s32s32sQ")


class CacheWarning(RuntimeWarning):
    """The compiled-component cache could not be used; the component was
    compiled instead (the process works, only its start is slower)."""


def cache_dir() -> Path:
    """``$AGENT_SESSION_CACHE_DIR``, else ``$XDG_CACHE_HOME/agent-session``,
    else ``~/.cache/agent-session``."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given)
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says to ignore a relative path.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "agent-session"
    return Path.home() / ".cache" / "agent-session"


def _wasmtime_version() -> str:
    # importlib.metadata costs ~60 ms to import and search, half the budget
    # of a warm start; the installed distribution's directory names the
    # version too.
    site = os.path.dirname(os.path.dirname(os.path.abspath(wasmtime.__file__)))
    with os.scandir(site) as entries:
        for entry in entries:
            name = entry.name
            if name.startswith("wasmtime-") and name.endswith(".dist-info"):
                return name[len("wasmtime-") : -len(".dist-info")]
    from importlib.metadata import version

    return version("wasmtime")


def entry_key(wasm: bytes) -> bytes:
    """The key of the entry for the component ``wasm`` in this wasmtime on
    this machine."""
    h = hashlib.sha256(b"agent-session component cache\0")
    for part in (hashlib.sha256(wasm).hexdigest(), _wasmtime_version(), os.uname().machine):
        h.update(part.encode() + b"\0")
    return h.digest()


def entry_path(directory: Path, key: bytes) -> Path:
    return directory / f"{key.hex()}.cwasm"


def _encode(key: bytes, contents: bytes) -> bytes:
    digest = hashlib.sha256(key + contents).digest()
    return _HEADER.pack(_MAGIC, key, digest, len(contents)) + contents


def _decode(key: bytes, data: bytes) -> Optional[bytes]:
    """The contents of an entry, or None unless it is whole and for ``key``."""
    if len(data) < _HEADER.size:
        return None
    magic, entry_key_, digest, length = _HEADER.unpack_from(data)
    contents = data[_HEADER.size :]
    if magic != _MAGIC or entry_key_ != key or length != len(contents):
        return None
    if hashlib.sha256(key + contents).digest() != digest:
        return None
    return contents


def _read_own(path: Path) -> Optional[bytes]:
    """The file's bytes if it is a regular file of this user that no one
    else may write; None if there is none (or it is not such a file)."""
    try:
        # O_NONBLOCK: a FIFO put under the name is refused, not waited on.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def _write(directory: Path, path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` whole or not at all: readers see the old
    entry or the new one, never a part (a crash before the rename leaves a
    temporary file, which no lookup reads). Not fsynced: a torn entry
    after a crash fails its checksum and is written again."""
    # Imported here: only a cold start writes, and tempfile costs a warm
    # start several milliseconds.
    import tempfile

    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".cwasm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def load(engine: Engine, wasm_path: str) -> Tuple[Component, Origin]:
    """The component at ``wasm_path`` for ``engine``: deserialized from its
    cache entry when there is a sound one, else compiled and stored (a
    ``CacheWarning`` if it cannot be)."""
    with open(wasm_path, "rb") as f:
        wasm = f.read()
    key = entry_key(wasm)
    try:
        directory = cache_dir()
    except RuntimeError as e:  # no home directory to put it in
        warnings.warn(
            f"no cache directory for the compiled component ({e}); set {CACHE_ENV}", CacheWarning
        )
        return Component(engine, wasm), "compiled"
    path = entry_path(directory, key)
    data = _read_own(path)
    contents = None if data is None else _decode(key, data)
    if contents is not None:
        try:
            return Component.deserialize(engine, contents), "cache"
        except WasmtimeError:
            # Sound bytes wasmtime refuses (another engine configuration
            # under the same version): compiled again and replaced below.
            pass
    component = Component(engine, wasm)
    try:
        _write(directory, path, _encode(key, bytes(component.serialize())))
    except OSError as e:
        warnings.warn(
            f"cannot write the compiled component to the cache {directory} ({e}); "
            "it is compiled in every process",
            CacheWarning,
        )
    return component, "compiled"
