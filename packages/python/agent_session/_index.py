"""The summary index of a collection, as ``host/src/fs_store/index.rs``: one
append-only file ``index/<collection>.log`` of marked ``(key, summary)``
frames (``ASIX``), the last frame of a key winning, an empty summary
removing the key.

Every process keeps the live entries in memory and reads only what was
appended since its last look. The index is derived data, written without
fsync (the component rebuilds it from the histories). Appenders hold a
shared ``flock`` on ``index/<collection>.lock``; compaction rewrites the
file under the exclusive lock and renames it into place, and readers
notice the new inode and reload.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import threading
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from . import _marked
from ._durable import sync_dir, write_all, write_durably

DIR = "index"
MAGIC = b"ASIX"
# Compact when the file is this large and mostly superseded frames.
COMPACT_MIN_BYTES = 4 << 20


def encode(key: str, summary: bytes) -> bytes:
    """Frame body: key length (u8), key, summary."""
    raw = key.encode()
    return _marked.encode(MAGIC, bytes([len(raw)]) + raw + summary)


def decode(body: bytes) -> Optional[Tuple[str, bytes]]:
    """A frame body's key and summary, or None if it is too short."""
    if not body or len(body) < 1 + body[0]:
        return None
    key_len = body[0]
    return body[1 : 1 + key_len].decode("utf-8", "replace"), body[1 + key_len :]


def _entry_size(key: str, summary: bytes) -> int:
    return len(summary) + len(key.encode()) + 1 + _marked.HEADER


@dataclass
class _Cache:
    # Held open so that its inode number cannot be reused by a later file.
    fd: Optional[int] = None
    ino: int = 0
    offset: int = 0
    live: Dict[str, bytes] = field(default_factory=dict)
    # The keys of ``live``, ascending (scans go in key order).
    keys: List[str] = field(default_factory=list)
    live_bytes: int = 0

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def set(self, key: str, summary: bytes) -> None:
        old = self.live.pop(key, None)
        if old is not None:
            self.live_bytes -= _entry_size(key, old)
            del self.keys[bisect.bisect_left(self.keys, key)]
        if summary:
            self.live_bytes += _entry_size(key, summary)
            self.live[key] = summary
            bisect.insort(self.keys, key)


class Index:
    """In-memory view of the index files of one root."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._caches: Dict[str, _Cache] = {}
        self._mutex = threading.Lock()

    def _log_path(self, collection: str) -> str:
        return os.path.join(self._root, DIR, f"{collection}.log")

    def exists(self, collection: str) -> bool:
        """Whether the collection has an index file."""
        return os.path.exists(self._log_path(collection))

    def _lock(self, collection: str, exclusive: bool) -> int:
        path = os.path.join(self._root, DIR, f"{collection}.lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        except FileNotFoundError:
            # The directory exists after the first append; only then is it made.
            os.makedirs(os.path.join(self._root, DIR), exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def put(self, collection: str, key: str, summary: bytes) -> None:
        """Record ``key``'s summary (empty: the key is gone). Raises OSError."""
        frame = encode(key, summary)
        lock = self._lock(collection, exclusive=False)
        try:
            fd = os.open(self._log_path(collection), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
            try:
                # One write per frame: frames of concurrent appenders never
                # interleave.
                write_all(fd, frame)
                size = os.fstat(fd).st_size
            finally:
                os.close(fd)
        finally:
            os.close(lock)
        # Only a process that has the index loaded knows how much of the file
        # is live; it compacts once most of the file is superseded.
        with self._mutex:
            cache = self._caches.get(collection)
            live = cache.live_bytes if cache is not None and cache.ino else None
        if live is not None and size > COMPACT_MIN_BYTES and size > 3 * live:
            self.compact(collection)

    def scan(self, collection: str, after: Optional[str], limit: int) -> List[Tuple[str, bytes]]:
        """Entries in descending key order after ``after``. Raises OSError."""
        self._refresh(collection)
        with self._mutex:
            cache = self._caches.setdefault(collection, _Cache())
            end = len(cache.keys) if after is None else bisect.bisect_left(cache.keys, after)
            picked = cache.keys[max(0, end - limit) : end]
            return [(k, cache.live[k]) for k in reversed(picked)]

    def compact(self, collection: str) -> Tuple[int, int]:
        """Rewrite the file with live entries only; its sizes before and after."""
        lock = self._lock(collection, exclusive=True)
        try:
            self._refresh(collection)
            path = self._log_path(collection)
            try:
                before = os.stat(path).st_size
            except FileNotFoundError:
                before = 0
            with self._mutex:
                cache = self._caches.setdefault(collection, _Cache())
                data = b"".join(encode(k, cache.live[k]) for k in cache.keys)
            write_durably(os.path.join(self._root, DIR), f"{collection}.log", data)
            fd = os.open(path, os.O_RDONLY)
            with self._mutex:
                cache = self._caches.setdefault(collection, _Cache())
                cache.close()
                cache.fd, cache.ino, cache.offset = fd, os.fstat(fd).st_ino, len(data)
            return before, len(data)
        finally:
            os.close(lock)

    def clear(self, collection: str) -> None:
        """Drop every entry (before a rebuild)."""
        lock = self._lock(collection, exclusive=True)
        try:
            directory = os.path.join(self._root, DIR)
            write_durably(directory, f"{collection}.log", b"")
            sync_dir(directory)
            with self._mutex:
                self._caches.pop(collection, _Cache()).close()
        finally:
            os.close(lock)

    def _refresh(self, collection: str) -> None:
        """Read what was appended since the last look (or everything, if the
        file was replaced)."""
        path = self._log_path(collection)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            with self._mutex:
                self._caches.pop(collection, _Cache()).close()
            return
        try:
            meta = os.fstat(fd)
            with self._mutex:
                cache = self._caches.setdefault(collection, _Cache())
                if cache.ino != meta.st_ino or cache.offset > meta.st_size:
                    cache.close()
                    cache = _Cache(fd=os.dup(fd), ino=meta.st_ino)
                    self._caches[collection] = cache
                ino, offset = cache.ino, cache.offset
            if meta.st_size == offset:
                return
            data = os.pread(fd, meta.st_size - offset, offset)
        finally:
            os.close(fd)
        # A torn frame's key keeps its previous summary until its next append.
        bodies, used = _marked.read(MAGIC, data, path, complete=False)
        updates = [u for u in map(decode, bodies) if u is not None]
        with self._mutex:
            current = self._caches.get(collection)
            # Replaced, or moved on by another thread meanwhile.
            if current is None or current.ino != ino or current.offset != offset:
                return
            for key, summary in updates:
                current.set(key, summary)
            current.offset = offset + used
