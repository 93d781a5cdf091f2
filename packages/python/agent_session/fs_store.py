"""The ``store`` interface on a directory, byte-compatible with the Rust
``FsStore`` (``host/src/fs_store/``), so that Rust and Python processes can
share a root.

Layout under the root (format 2)::

    FORMAT                          "agent-session-fs 2\\n"
    REINDEX                         present while the index must be rebuilt
    <collection>/<key>/events.log   the history: framed records (_frame.py)
    <collection>/<key>/events.idx   u64 byte offset of each record (derived)
    <collection>/<key>/doc          document: ASD1 | version | len | crc | data
    <collection>/<key>/lock         flock serializing writers of the key
    index/<collection>.log          summary index (_index.py)

Crash safety, as in Rust: an append is one ``write`` of whole frames and an
``fdatasync`` before it is acknowledged; before appending, the writer checks
the log's tail from the last recorded offset and cuts a torn last append. A
document is replaced by temp file + fsync + rename + directory fsync. New
directories are fsynced. Writers of one key, in any process, are serialized
by ``flock`` on its lock file (unlike fcntl record locks, it does not vanish
when another descriptor of the file is closed); readers take no lock.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import re
import shutil
import struct
import threading
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from . import _frame
from ._durable import sync_dir, write_all, write_atomically, write_durably
from ._index import Index

FORMAT = "agent-session-fs 2\n"
FORMAT_1 = "agent-session-fs 1\n"
REINDEX = "REINDEX"
SESSIONS = "sessions"
DOC_MAGIC = b"ASD1"
MAX_NAME = 64
LOG = "events.log"
IDX = "events.idx"
# Open files kept per store; beyond this the cache starts over.
MAX_OPEN_ENTRIES = 256

_NAME = re.compile(f"[A-Za-z0-9_-]{{1,{MAX_NAME}}}")
_DOC_HEAD = struct.Struct("<4sQII")
_U64 = struct.Struct("<Q")
_log = logging.getLogger("agent_session")


class StoreError(Exception):
    """A failure of the ``store`` interface: ``kind`` is the WIT
    ``store-error`` case (``conflict``, ``invalid-key``, ``full``, ``io``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def io_error(what: str, e: OSError) -> StoreError:
    """An OSError as the store error Rust reports for it."""
    kind = "full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else "io"
    return StoreError(kind, f"{what}: {e.strerror or e} (os error {e.errno})")


@contextmanager
def _io(what: str) -> Iterator[None]:
    try:
        yield
    except OSError as e:
        raise io_error(what, e) from e


def _damaged(entry: str, at: int, why: str) -> StoreError:
    return StoreError(
        "io", f"{entry}/{LOG} is damaged at byte {at} ({why}); the records before it are intact"
    )


def check_name(what: str, s: str) -> None:
    """Collection and key names become path components: only ``[A-Za-z0-9_-]``."""
    if not _NAME.fullmatch(s):
        raise StoreError(
            "invalid-key",
            f"{what} {json.dumps(s[:80], ensure_ascii=False)} is not a valid name "
            f"(1 to {MAX_NAME} of A-Z a-z 0-9 - _)",
        )


def encode_doc(version: int, data: bytes) -> bytes:
    """A document file: magic, version, length, CRC-32 of version and data."""
    crc = zlib.crc32(data, zlib.crc32(_U64.pack(version)))
    return _DOC_HEAD.pack(DOC_MAGIC, version, len(data), crc) + data


def decode_doc(raw: bytes) -> Optional[Tuple[int, bytes]]:
    """A document file's version and data, or None if it does not check out."""
    if len(raw) < _DOC_HEAD.size:
        return None
    magic, version, length, crc = _DOC_HEAD.unpack_from(raw)
    data = raw[_DOC_HEAD.size :]
    if magic != DOC_MAGIC or len(data) != length:
        return None
    if zlib.crc32(data, zlib.crc32(_U64.pack(version))) != crc:
        return None
    return version, data


class _EntryFiles:
    """The open files of one key."""

    def __init__(self, lock: int, log: int, idx: int, writable: bool) -> None:
        # Serializes this process's writers: flock is per open file
        # description, so threads sharing ``lock`` would not exclude each other.
        self.guard = threading.Lock()
        self.lock, self.log, self.idx = lock, log, idx
        self.writable = writable  # false on a read-only file system

    def __del__(self) -> None:
        for fd in (self.lock, self.log, self.idx):
            os.close(fd)

    def removed(self) -> bool:
        """A remover unlinks the lock file after renaming the key away."""
        try:
            return os.fstat(self.lock).st_nlink == 0
        except OSError:
            return True

    def current(self, path: str) -> bool:
        """Whether these are still the key's files at ``path`` (checked by
        writers under the lock: a key renamed away is never written to)."""
        try:
            return os.stat(os.path.join(path, "lock")).st_ino == os.fstat(self.lock).st_ino
        except OSError:
            return False


class _Offsets:
    """Read access to an ``events.idx``: one u64 per record."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.len = os.fstat(fd).st_size // 8

    def get(self, i: int) -> Optional[int]:
        if i >= self.len:
            return None
        raw = os.pread(self.fd, 8, i * 8)
        return _U64.unpack(raw)[0] if len(raw) == 8 else None


@dataclass
class _Tail:
    """A log's committed end."""

    count: int  # committed records
    end: int  # where they end
    torn_bytes: int  # bytes after ``end`` (a torn append)
    idx_valid: int  # leading entries of the offsets file that are right
    idx_len: int  # entries the offsets file has
    extra: List[int] = field(default_factory=list)  # offsets after idx_valid

    @classmethod
    def from_walk(cls, walk: _frame.Walk, idx_len: int) -> "_Tail":
        return cls(len(walk.offsets), walk.end, walk.torn_bytes, 0, idx_len, walk.offsets)

    def is_clean(self) -> bool:
        return self.torn_bytes == 0 and self.idx_valid == self.idx_len and not self.extra


class FsStore:
    """The ``store`` interface on the directory ``root`` (created if needed).

    Methods raise :class:`StoreError`. Several processes (Rust or Python) may
    open the same root. With ``durable=False`` an append is acknowledged after
    the ``write`` (survives a crash of the process, not of the machine).
    """

    def __init__(self, root: str, durable: bool = True) -> None:
        self.root = os.path.abspath(root)
        self.durable = durable
        self.index = Index(self.root)
        self._files_cache: Dict[str, _EntryFiles] = {}
        self._cache_mutex = threading.Lock()
        with _io(f"opening the session store at {self.root}"):
            os.makedirs(self.root, exist_ok=True)
            try:
                with open(os.path.join(self.root, "FORMAT"), "rb") as f:
                    found: Optional[str] = f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                found = None
            if found is None:
                write_durably(self.root, "FORMAT", FORMAT.encode())
            elif found == FORMAT_1:
                raise StoreError(
                    "io",
                    f"{self.root} holds an agent-session root of format 1; open it once with "
                    f"the Rust CLI (`agent-session --dir {self.root} stats`), which migrates it "
                    "to format 2",
                )
            elif found != FORMAT:
                raise StoreError(
                    "io",
                    f"{self.root} holds an agent-session root of format {found.strip()!r}; "
                    f"this package reads {FORMAT.strip()!r}",
                )
            # A lost index file cannot be told from an empty one by reading it.
            if not self.index.exists(SESSIONS) and self._has_entries(SESSIONS):
                self._request_reindex()

    # --- maintenance, as FsStore's inherent methods in Rust ---

    def needs_reindex(self) -> bool:
        """Whether the index must be rebuilt before lists and stats can be
        trusted (after a migration or a lost index file)."""
        return os.path.exists(os.path.join(self.root, REINDEX))

    def clear_index(self, collection: str) -> None:
        """Empty the index of ``collection`` before a rebuild; the rebuild is
        requested until :meth:`reindexed` is called."""
        check_name("collection", collection)
        with _io(f"clearing the index of {collection}"):
            self._request_reindex()
            self.index.clear(collection)

    def reindexed(self) -> None:
        """The index was rebuilt."""
        with _io("removing REINDEX"):
            try:
                os.remove(os.path.join(self.root, REINDEX))
            except FileNotFoundError:
                return
            sync_dir(self.root)

    def _request_reindex(self) -> None:
        write_durably(self.root, REINDEX, b"")

    def _has_entries(self, collection: str) -> bool:
        try:
            names = os.listdir(os.path.join(self.root, collection))
        except FileNotFoundError:
            return False
        return any(_valid(n) for n in names)

    def _list_dir(self, collection: str) -> List[str]:
        """Valid key names in a collection directory, descending."""
        try:
            names = os.listdir(os.path.join(self.root, collection))
        except FileNotFoundError:
            return []
        return sorted((n for n in names if _valid(n)), reverse=True)

    def _entry(self, collection: str, key: str) -> str:
        check_name("collection", collection)
        check_name("key", key)
        return f"{collection}/{key}"

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def _lock(self, entry: str) -> int:
        """Take the key's writer lock (blocking); close the fd to release it.
        FileNotFoundError if the key's directory is gone."""
        fd = os.open(self._path(entry, "lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _read_doc(self, entry: str) -> Optional[Tuple[int, bytes]]:
        try:
            with open(self._path(entry, "doc"), "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        except OSError as e:
            raise io_error(f"reading {entry}/doc", e) from e
        doc = decode_doc(raw)
        if doc is None:
            raise StoreError("io", f"{entry}/doc is damaged")
        return doc

    def _files(self, entry: str, create: bool) -> Optional[_EntryFiles]:
        """The open files of a key (cached); None if the key does not exist
        and ``create`` is false."""
        with self._cache_mutex:
            cached = self._files_cache.get(entry)
            if cached is not None:
                if not cached.removed():
                    return cached
                del self._files_cache[entry]
        try:
            try:
                files = self._open_files(entry, create, writable=True)
            except OSError as e:
                # A read-only root still reads; its writes fail when they write.
                if e.errno != errno.EROFS:
                    raise
                files = self._open_files(entry, create, writable=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise io_error(f"opening {entry}", e) from e
        with self._cache_mutex:
            if len(self._files_cache) >= MAX_OPEN_ENTRIES:
                self._files_cache.clear()
            self._files_cache[entry] = files
        return files

    def _open_files(self, entry: str, create: bool, writable: bool) -> _EntryFiles:
        opened: List[int] = []

        def open_one(name: str, flags: int, may_create: bool) -> int:
            if not writable:
                flags = os.O_RDONLY
            elif may_create:
                flags |= os.O_CREAT
            fd = os.open(self._path(entry, name), flags, 0o666)
            opened.append(fd)
            return fd

        try:
            lock = open_one("lock", os.O_RDWR, create)
            log = open_one(LOG, os.O_RDWR | os.O_APPEND, create)
            idx = open_one(IDX, os.O_RDWR, True)
        except BaseException:
            for fd in opened:
                os.close(fd)
            raise
        return _EntryFiles(lock, log, idx, writable)

    def _forget(self, entry: str) -> None:
        with self._cache_mutex:
            self._files_cache.pop(entry, None)

    def _walk_all(self, entry: str) -> Tuple[_frame.Walk, bytes]:
        try:
            with open(self._path(entry, LOG), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = b""
        except OSError as e:
            raise io_error(f"reading {entry}/{LOG}", e) from e
        try:
            return _frame.walk(data, 0, 0), data
        except _frame.LogDamaged as d:
            raise _damaged(entry, d.offset, d.why) from None

    def _tail(self, entry: str, files: _EntryFiles) -> _Tail:
        """Where the log's committed records end, how many there are, and how
        much of the offsets file is right. Starts at the last recorded offset
        (O(1) for a healthy log); walks the whole log if that does not check
        out."""
        with _io(entry):
            idx = _Offsets(files.idx)
            size = os.fstat(files.log).st_size
            last = idx.get(idx.len - 1) if idx.len > 0 else None
        if last is not None and last < size:
            try:
                data = os.pread(files.log, size - last, last)
                w = _frame.walk(data, last, idx.len - 1) if len(data) == size - last else None
            except (OSError, _frame.LogDamaged):
                w = None
            if w is not None and w.offsets[:1] == [last]:
                return _Tail(
                    idx.len - 1 + len(w.offsets), w.end, w.torn_bytes, idx.len, idx.len, w.offsets[1:]
                )
        return _Tail.from_walk(self._walk_all(entry)[0], idx.len)

    def _fix_tail(self, entry: str, tail: _Tail) -> None:
        """Make the log end at its last whole append and the offsets file
        match it. The caller holds the key's lock."""
        if tail.torn_bytes > 0:
            _log.warning("%s: cutting a torn append of %d bytes off the log", entry, tail.torn_bytes)
            with _io(f"cutting {entry}/{LOG}"):
                fd = os.open(self._path(entry, LOG), os.O_WRONLY)
                try:
                    os.ftruncate(fd, tail.end)
                    os.fsync(fd)
                finally:
                    os.close(fd)
        if tail.idx_valid != tail.idx_len or tail.extra:
            with _io(f"indexing {entry}/{LOG}"):
                fd = os.open(self._path(entry, IDX), os.O_WRONLY | os.O_CREAT, 0o666)
                try:
                    os.ftruncate(fd, tail.idx_valid * 8)
                    os.pwrite(fd, b"".join(_U64.pack(o) for o in tail.extra), tail.idx_valid * 8)
                finally:
                    os.close(fd)

    # --- the WIT `store` interface ---

    def append(
        self, collection: str, key: str, seq: int, records: Sequence[bytes], summary: bytes
    ) -> None:
        """Append ``records`` at positions ``seq``... if the log holds exactly
        ``seq`` records (else ``conflict``), durably; then replace the key's
        summary in the index."""
        entry = self._entry(collection, key)
        if any(len(r) > _frame.MAX_PAYLOAD for r in records):
            raise StoreError("full", f"a record for {entry} is too large")
        path = self._path(entry)
        new_key = seq == 0 and not os.path.exists(path)
        if new_key:
            new_collection = not os.path.exists(self._path(collection))
            with _io(f"creating {entry}"):
                os.makedirs(path, exist_ok=True)
                if self.durable:
                    if new_collection:
                        sync_dir(self.root)
                    sync_dir(self._path(collection))
        files = self._files(entry, create=seq == 0)
        if files is None:
            raise StoreError("conflict", f"{entry} does not exist")
        if not files.writable:
            raise StoreError(
                "io", f"cannot append to {entry}: the store is on a read-only file system"
            )
        with files.guard:
            with _io(f"locking {entry}"):
                fcntl.flock(files.lock, fcntl.LOCK_EX)
            try:
                self._append_locked(entry, path, files, seq, records, new_key)
                # Still under the lock, so that summaries land in the order of
                # their appends. Derived data: a failure does not fail the append.
                try:
                    self.index.put(collection, key, summary)
                except OSError as e:
                    _log.warning("%s: could not update the index (%s); fsck --repair rebuilds it", entry, e)
            finally:
                fcntl.flock(files.lock, fcntl.LOCK_UN)

    def _append_locked(
        self,
        entry: str,
        path: str,
        files: _EntryFiles,
        seq: int,
        records: Sequence[bytes],
        new_key: bool,
    ) -> None:
        if not files.current(path):
            self._forget(entry)
            raise StoreError("conflict", f"{entry} was removed by another writer")
        tail = self._tail(entry, files)
        if not tail.is_clean():
            self._fix_tail(entry, tail)
        if tail.count != seq:
            raise StoreError(
                "conflict",
                f"{entry}: append at position {seq}, but the log holds {tail.count} records",
            )
        frames = _frame.encode_batch(seq, records)
        offsets = bytearray()
        at = tail.end
        for r in records:
            offsets += _U64.pack(at)
            at += _frame.HEADER + len(r)
        with _io(f"appending to {entry}"):
            write_all(files.log, frames)
        if self.durable:
            with _io(f"syncing {entry}"):
                os.fdatasync(files.log)
                if new_key:
                    # The files of a new key are entries of its directory.
                    sync_dir(path)
        # The records are durable: the append has happened. The rest is
        # derived data; failing to write it is repaired by the next writer's
        # tail check, not reported (a retry would only get a conflict).
        try:
            os.pwrite(files.idx, bytes(offsets), tail.count * 8)
        except OSError as e:
            _log.warning("%s: could not record record offsets (%s)", entry, e)

    def read(self, collection: str, key: str, start: int, limit: int) -> List[bytes]:
        """At most ``limit`` records of the key's log from position ``start``."""
        entry = self._entry(collection, key)
        files = self._files(entry, create=False)
        if files is None:
            return []
        with _io(entry):
            size = os.fstat(files.log).st_size
            idx = _Offsets(files.idx)
            # Start at the record's offset if the offsets file has it, else
            # at the last offset it has, and walk from there.
            start_pos = min(start, max(idx.len - 1, 0))
            first = idx.get(start_pos)
            begin, first_seq = (first, start_pos) if first is not None and first < size else (0, 0)
            # Offsets the offsets file recorded are of committed records, so a
            # read that ends at one needs no look at what follows.
            end = idx.get(start + limit)
            bounded = end if end is not None and begin < end <= size else None

        def read_from(begin: int, first_seq: int, end: Optional[int]) -> List[bytes]:
            stop = size if end is None else end
            with _io(f"reading {entry}/{LOG}"):
                data = os.pread(files.log, stop - begin, begin)
            if len(data) != stop - begin:
                raise StoreError("io", f"reading {entry}/{LOG}: the file is shorter than expected")
            try:
                walk = _frame.walk(data, begin, first_seq, committed=end is not None)
            except _frame.LogDamaged as d:
                raise _damaged(entry, d.offset, d.why) from None
            # A bounded read must end where the offsets file said; if not,
            # that file is stale and the unbounded read decides.
            if end is not None and walk.end != end:
                raise _damaged(entry, walk.end, "stale offsets file")
            out: List[bytes] = []
            for i, offset in enumerate(walk.offsets):
                if len(out) >= limit:
                    break
                if first_seq + i >= start:
                    payload = _frame.payload_at(data, offset - begin)
                    if payload is not None:
                        out.append(payload)
            return out

        try:
            return read_from(begin, first_seq, bounded)
        except StoreError:
            # The offsets file may be stale; the log itself decides.
            if begin != 0 or bounded is not None:
                return read_from(0, 0, None)
            raise

    def scan(self, collection: str, start_after: Optional[str], limit: int) -> List[Tuple[str, bytes]]:
        """Index entries (key, summary) in descending key order after ``start_after``."""
        check_name("collection", collection)
        with _io(f"reading {_index_path(collection)}"):
            return self.index.scan(collection, start_after, limit)

    def reindex(self, collection: str, key: str, summary: bytes) -> None:
        """Replace a key's summary without appending."""
        entry = self._entry(collection, key)
        with _io(f"indexing {entry}"):
            self.index.put(collection, key, summary)

    def keys(self, collection: str, start_after: Optional[str], limit: int) -> List[str]:
        """Keys of the collection that have a log, descending, after ``start_after``."""
        check_name("collection", collection)
        with _io(f"listing {collection}"):
            names = self._list_dir(collection)
        found = [
            k
            for k in names
            if (start_after is None or k < start_after)
            and os.path.exists(self._path(collection, k, LOG))
        ]
        return found[:limit]

    def get(self, collection: str, key: str) -> Optional[Tuple[int, bytes]]:
        """The key's document (version, data), or None."""
        return self._read_doc(self._entry(collection, key))

    def put(self, collection: str, key: str, data: bytes, expected: int, durable: bool) -> int:
        """Replace the key's document if its version is ``expected`` (0: must
        not exist); returns the new version."""
        entry = self._entry(collection, key)
        if len(data) > _frame.MAX_PAYLOAD:
            raise StoreError("full", f"document of {len(data)} bytes")
        path = self._path(entry)
        if expected == 0 and not os.path.exists(path):
            if not durable:
                # A snapshot written late, after its key was removed.
                raise StoreError(
                    "conflict", f"{entry} does not exist; a non-durable document never creates it"
                )
            new_collection = not os.path.exists(self._path(collection))
            with _io(f"creating {entry}"):
                os.makedirs(path, exist_ok=True)
                if new_collection:
                    sync_dir(self.root)
                sync_dir(self._path(collection))
        try:
            lock = self._lock(entry)
        except FileNotFoundError:
            raise StoreError("conflict", f"{entry} does not exist") from None
        except OSError as e:
            raise io_error(f"locking {entry}", e) from e
        try:
            doc = self._read_doc(entry)
            current = doc[0] if doc else 0
            if current != expected:
                raise StoreError(
                    "conflict", f"expected version {expected} of {entry}, found {current}"
                )
            version = current + 1
            with _io(f"writing {entry}"):
                # Without the fsyncs still atomic (old or new), but after a
                # power loss it may be either: only for rebuildable data.
                write_atomically(path, "doc", encode_doc(version, data), durable and self.durable)
            return version
        finally:
            os.close(lock)

    def remove(self, collection: str, key: str, expected_length: int) -> None:
        """Remove the key (log, summary, document) if its log holds exactly
        ``expected_length`` records; an absent key is not an error."""
        entry = self._entry(collection, key)
        path = self._path(entry)
        if not os.path.exists(path):
            return
        try:
            lock = self._lock(entry)
        except FileNotFoundError:
            return  # removed by another writer meanwhile
        except OSError as e:
            raise io_error(f"locking {entry}", e) from e
        try:
            files = self._files(entry, create=False)
            length = self._tail(entry, files).count if files is not None else 0
            if length != expected_length:
                raise StoreError(
                    "conflict", f"{entry}: expected {expected_length} records, found {length}"
                )
            # Rename first: the key disappears atomically, and writers check
            # under the lock that their files are still at the key's path.
            # Then unlink the lock file, which tells holders of cached handles.
            nanos = time.time_ns() % 1_000_000_000
            trash = self._path(collection, f".trash-{key}-{os.getpid()}-{nanos}")
            with _io(f"removing {entry}"):
                os.rename(path, trash)
                sync_dir(self._path(collection))
            try:
                os.remove(os.path.join(trash, "lock"))
            except OSError:
                pass
            self._forget(entry)
            try:
                self.index.put(collection, key, b"")
            except OSError as e:
                _log.warning("%s: could not unindex (%s); fsck --repair rebuilds the index", entry, e)
            with _io(f"deleting {entry}"):
                shutil.rmtree(trash)
        finally:
            os.close(lock)


def _valid(name: str) -> bool:
    try:
        check_name("key", name)
    except StoreError:
        return False
    return True


def _index_path(collection: str) -> str:
    return f"index/{collection}.log"
