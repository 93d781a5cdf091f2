"""The ``root`` capability (``interface root`` in ``wit/session.wit``) over
a directory: the one place where the Python host touches the disk on the
directory-store component's behalf.

Why it is written this way:

- Confinement. The component names files by paths relative to the root,
  and whatever the root contains (a symbolic link planted in it, a hard
  link to a file elsewhere, a FIFO), nothing outside it may be read,
  written or removed. So the root is opened once, and every path is
  resolved from that descriptor one segment at a time with
  ``openat(O_NOFOLLOW | O_DIRECTORY)``; the last segment is checked with
  ``fstatat`` before it is opened, opened with ``O_NOFOLLOW | O_NONBLOCK |
  O_NOCTTY`` (a FIFO swapped in meanwhile never blocks a call, a terminal
  never becomes the controlling one) and checked again with ``fstat``: a
  regular file with at most one link, owned by the root's owner or by the
  user running the host. A symbolic link anywhere on a path is refused,
  even one that points inside the root. ``remove_tree`` walks the tree the
  same way, by descriptors, unlinking every non-directory by name without
  opening it.
- Locks. ``lock`` uses ``flock`` on the lock file itself, as the Rust host
  does on the same files, so the Python, Node and Rust hosts exclude each
  other on one directory. ``flock`` locks belong to an open file, so each
  ``lock`` call opens the file anew and two locks of one process exclude
  each other too.
- Durability is the caller's choice per call (``sync``): an append is one
  ``write`` and an ``fdatasync``; ``replace`` writes a temporary file
  beside the target, fsyncs it, renames it over the target and fsyncs the
  directory.

``root_imports`` adapts a :class:`Root` to wasmtime-py's component linker.
Requires Linux or another system with ``O_NOFOLLOW``, ``O_DIRECTORY``,
``O_NOCTTY`` and ``flock``.
Where ``interface root`` leaves room, this module does what
``tests/root/cases.json`` pins down (see ``tests/root/README.md``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import secrets
import stat as st_mode
import threading
import weakref
import time
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from wasmtime.component import Record, Variant

from . import _values  # noqa: F401  (installs the conversions Err needs)
from ._values import Err

__all__ = ["Root", "RootError", "root_imports", "ROOT"]

ROOT = "agent:session/root@0.4.0"

_SEGMENT = re.compile(r"[A-Za-z0-9._-]{1,255}")
# Every directory opened beneath the root: never a symbolic link, never
# anything but a directory, and (O_NONBLOCK) never a wait, whatever is there.
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# Added to every file opened beneath the root: a symbolic link is refused,
# a FIFO never waited on, a terminal never made the controlling one (the
# flags change nothing for a regular file).
_FILE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_CHUNK = 1 << 20
# Longest part of a file's name kept in its temporary file's name, so that
# `.<name>.<pid>-<hex>.tmp` stays within 255 bytes.
_TMP_NAME_MAX = 200

Bytes = Union[bytes, bytearray, memoryview]


class RootError(Exception):
    """A failed call: ``code`` is the WIT ``error-code`` case (kebab-case),
    ``message`` names the path."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _NotDirectory(RootError):
    """A segment that should be a directory is something else (not a
    symbolic link, which is refused). On the way that means the directory
    does not exist (``not-found``); callers reinterpret it at the path
    itself."""

    def __init__(self, message: str) -> None:
        super().__init__("not-found", message)


def _code(e: BaseException) -> str:
    """The ``error-code`` of an ``OSError`` (``io`` for anything else)."""
    n = getattr(e, "errno", None)
    if n in (errno.ENOENT, errno.ENOTDIR):
        return "not-found"
    if n in (errno.ENOSPC, errno.EDQUOT):
        return "full"
    if n == errno.EROFS:
        return "read-only"
    # ELOOP: O_NOFOLLOW met a symbolic link. EISDIR: a directory where a
    # file is expected. ENXIO: a FIFO or socket opened without waiting.
    if n in (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV):
        return "refused"
    if n in (errno.EEXIST, errno.ENOTEMPTY):
        return "exists"
    return "io"


def _segments(path: Any) -> List[str]:
    """The segments of a valid path (none for ``.``, the root itself)."""
    if path == ".":
        return []
    if not isinstance(path, str):
        raise RootError("refused", f"{path!r} is not a path")
    parts = path.split("/")
    for part in parts:
        if part in (".", "..") or not _SEGMENT.fullmatch(part):
            raise RootError(
                "refused",
                f"{path!r} is not a path beneath the root (segments of "
                "[A-Za-z0-9._-], 1 to 255 bytes, not . or .., separated by /)",
            )
    return parts


#: How long a waiting ``lock`` waits by default before failing with
#: ``busy``, in milliseconds: far longer than any one operation holds a
#: session's lock, short enough that a stuck holder (a process stopped in a
#: debugger, say) surfaces as an error instead of a hang.
DEFAULT_LOCK_TIMEOUT_MS = 5000


def _flock_within(fd: int, op: int, timeout_ms: float) -> bool:
    """``flock`` ``fd`` waiting at most ``timeout_ms``: whether it was
    granted. A blocking flock cannot be given up on, so the lock is tried
    without blocking, with pauses growing from 1 to 10 ms (short, so that a
    waiter blocked in flock, as the Rust host waits, does not win every
    release)."""
    deadline = time.monotonic() + timeout_ms / 1000
    pause = 0.001
    while True:
        try:
            fcntl.flock(fd, op | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            pass
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.01)


class Root:
    """The ``root`` capability over the directory ``path`` (made, with its
    parents, if missing). Methods are the WIT functions; failures raise
    :class:`RootError`. Thread-safe. A waiting ``lock`` gives up with
    ``busy`` after ``lock_timeout_ms`` (``None``: no bound)."""

    def __init__(
        self,
        path: Union[str, "os.PathLike[str]"],
        lock_timeout_ms: Optional[float] = DEFAULT_LOCK_TIMEOUT_MS,
    ) -> None:
        if lock_timeout_ms is not None and not (
            isinstance(lock_timeout_ms, (int, float))
            and not isinstance(lock_timeout_ms, bool)
            and lock_timeout_ms >= 0
        ):
            raise TypeError(
                f"lock_timeout_ms must be a number of milliseconds (0 or more) or None, not {lock_timeout_ms!r}"
            )
        self._lock_timeout_ms = lock_timeout_ms
        self.path = os.fspath(path)
        os.makedirs(self.path, exist_ok=True)
        # The one ambient open: the directory the user chose.
        self._fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        # A root dropped without close() still gives its descriptor back.
        self._closer = weakref.finalize(self, os.close, self._fd)
        info = os.fstat(self._fd)
        self._owner = info.st_uid
        self._ino = info.st_ino
        self._locks: Dict[int, int] = {}
        self._next_handle = 1
        self._guard = threading.Lock()

    # -- lifetime ---------------------------------------------------------

    def release_locks(self) -> None:
        """Release every lock still held (the component that took them is
        gone)."""
        with self._guard:
            fds = list(self._locks.values())
            self._locks.clear()
        for lock_fd in fds:
            os.close(lock_fd)

    def close(self) -> None:
        """Release every lock still held and close the root."""
        with self._guard:
            fds = list(self._locks.values())
            self._locks.clear()
            fd, self._fd = self._fd, -1
        for lock_fd in fds:
            os.close(lock_fd)
        if fd >= 0:
            self._closer()

    def __enter__(self) -> "Root":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- resolution -------------------------------------------------------

    def _fail(self, op: str, path: str, e: BaseException, code: Optional[str] = None) -> RootError:
        reason = getattr(e, "strerror", None) or str(e)
        return RootError(code or _code(e), f"{op} {path} in {self.path}: {reason}")

    def _root_fd(self) -> int:
        fd = self._fd
        if fd < 0:
            raise RootError("io", f"the root {self.path} is closed")
        return os.dup(fd)

    def _open_dir(self, op: str, path: str, segs: List[str], itself: bool = False) -> int:
        """A descriptor of the directory ``segs`` beneath the root (the
        caller closes it). A symbolic link on the way is ``refused``; a
        missing directory is ``not-found``, and so is a non-directory on the
        way (:class:`_NotDirectory`), except as the last segment when
        ``itself`` (the path must be a directory): ``refused``."""
        fd = self._root_fd()
        try:
            for i, seg in enumerate(segs):
                try:
                    next_fd = os.open(seg, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno in (errno.ENOTDIR, errno.ELOOP):
                        last = itself and i == len(segs) - 1
                        self._not_a_directory(op, path, fd, seg, last)
                    raise self._fail(op, path, e) from None
                os.close(fd)
                fd = next_fd
            return fd
        except BaseException:
            os.close(fd)
            raise

    def _not_a_directory(
        self, op: str, path: str, parent: int, seg: str, refuse: bool = False
    ) -> None:
        """Raise for ``seg`` in ``parent``, which is not a directory: a
        symbolic link is ``refused``, anything else :class:`_NotDirectory`
        (or ``refused`` if ``refuse``)."""
        where = f"{op} {path} in {self.path}"
        try:
            info = os.stat(seg, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            raise RootError("not-found", f"{where}: {seg} does not exist") from None
        if st_mode.S_ISLNK(info.st_mode):
            raise RootError("refused", f"{where}: {seg} is a symbolic link; refusing to follow it")
        if refuse:
            raise RootError("refused", f"{where}: not a directory")
        raise _NotDirectory(f"{where}: {seg} is not a directory")

    def _open_parent(self, op: str, path: str) -> Tuple[int, str]:
        """The descriptor of ``path``'s directory and its last segment; the
        root itself (``.``) is refused (it is no file, and is never removed
        or moved)."""
        segs = _segments(path)
        if not segs:
            where = f"{op} {path} in {self.path}"
            raise RootError("refused", f"{where}: not allowed on the root itself")
        return self._open_dir(op, path, segs[:-1]), segs[-1]

    def _check(self, op: str, path: str, info: os.stat_result) -> None:
        """Refuse what is not a regular file with at most one link, of the
        root's owner or the running user. (A link count of 0 is a file
        removed since it was opened: ``lock`` reports that as ``gone``.)"""
        where = f"{op} {path} in {self.path}"
        if st_mode.S_ISLNK(info.st_mode):
            raise RootError("refused", f"{where}: a symbolic link; refusing to follow it")
        if st_mode.S_ISDIR(info.st_mode):
            raise RootError("refused", f"{where}: a directory, not a file")
        if not st_mode.S_ISREG(info.st_mode):
            raise RootError("refused", f"{where}: not a regular file (a FIFO, socket or device)")
        if info.st_nlink > 1:
            raise RootError(
                "refused",
                f"{where}: the file has {info.st_nlink} links and may be a file elsewhere",
            )
        if info.st_uid not in (self._owner, os.geteuid()):
            raise RootError("refused", f"{where}: the file belongs to user {info.st_uid}")

    def _open_in(self, op: str, path: str, parent: int, name: str, flags: int) -> int:
        """Open ``name`` in ``parent`` with ``flags`` and check it (before
        opening too, so that a FIFO or device is not even opened)."""
        try:
            self._check(op, path, os.stat(name, dir_fd=parent, follow_symlinks=False))
        except FileNotFoundError:
            pass
        except OSError as e:
            raise self._fail(op, path, e) from None
        try:
            fd = os.open(name, flags | _FILE_FLAGS, 0o644, dir_fd=parent)
        except OSError as e:
            raise self._fail(op, path, e) from None
        try:
            self._check(op, path, os.fstat(fd))
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_file(self, op: str, path: str, flags: int) -> int:
        parent, name = self._open_parent(op, path)
        try:
            return self._open_in(op, path, parent, name, flags)
        finally:
            os.close(parent)

    # -- the WIT functions ------------------------------------------------

    def stat(self, path: str) -> Optional[Tuple[int, int, bool]]:
        """``(size, id, directory)`` of what is at ``path``, or None."""
        segs = _segments(path)
        if not segs:
            return (0, self._ino, True)
        try:
            parent = self._open_dir("stat", path, segs[:-1])
        except RootError as e:
            if e.code == "not-found":
                return None
            raise
        try:
            info = os.stat(segs[-1], dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise self._fail("stat", path, e) from None
        finally:
            os.close(parent)
        if st_mode.S_ISDIR(info.st_mode):
            return (0, info.st_ino, True)
        self._check("stat", path, info)
        return (info.st_size, info.st_ino, False)

    def read(self, path: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end)."""
        fd = self._open_file("read", path, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            want = max(0, min(length, size - offset))
            parts: List[bytes] = []
            while want > 0:
                chunk = os.pread(fd, min(want, _CHUNK), offset)
                if not chunk:
                    break
                parts.append(chunk)
                offset += len(chunk)
                want -= len(chunk)
            return b"".join(parts)
        except OSError as e:
            raise self._fail("read", path, e) from None
        finally:
            os.close(fd)

    def append(self, path: str, data: Bytes, sync: bool) -> int:
        """Append ``data`` (one write, to completion); returns the new size."""
        fd = self._open_file("append", path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            view = memoryview(bytes(data))
            while view:
                view = view[os.write(fd, view):]
            if sync:
                os.fdatasync(fd)
            return os.fstat(fd).st_size
        except OSError as e:
            raise self._fail("append", path, e) from None
        finally:
            os.close(fd)

    def write_at(self, path: str, offset: int, data: Bytes) -> None:
        """Cut the file to ``offset``, then write ``data`` there (not synced)."""
        fd = self._open_file("write-at", path, os.O_WRONLY | os.O_CREAT)
        try:
            os.ftruncate(fd, offset)
            view = memoryview(bytes(data))
            while view:
                n = os.pwrite(fd, view, offset)
                view = view[n:]
                offset += n
        except OSError as e:
            raise self._fail("write-at", path, e) from None
        finally:
            os.close(fd)

    def truncate(self, path: str, size: int, sync: bool) -> None:
        """Cut the file to ``size`` bytes if it is longer; fsync with ``sync``."""
        fd = self._open_file("truncate", path, os.O_WRONLY)
        try:
            if size < os.fstat(fd).st_size:
                os.ftruncate(fd, size)
            if sync:
                os.fsync(fd)
        except OSError as e:
            raise self._fail("truncate", path, e) from None
        finally:
            os.close(fd)

    def replace(self, path: str, data: Bytes, sync: bool) -> None:
        """Replace the file's content atomically (temporary file + rename).

        What ``stat`` would refuse at the path is refused here too, though
        the rename would only replace the entry. A crash can leave the
        temporary file ``.<name>.<pid>-<hex>.tmp`` beside the file."""
        parent, name = self._open_parent("replace", path)
        try:
            try:
                info: Optional[os.stat_result] = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                info = None
            if info is not None:
                self._check("replace", path, info)
            tmp = f".{name[:_TMP_NAME_MAX]}.{os.getpid()}-{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FILE_FLAGS, 0o644, dir_fd=parent)
            try:
                try:
                    view = memoryview(bytes(data))
                    while view:
                        view = view[os.write(fd, view):]
                    if sync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                try:
                    os.unlink(tmp, dir_fd=parent)
                except OSError:
                    pass
                raise
            if sync:
                os.fsync(parent)
        except OSError as e:
            raise self._fail("replace", path, e) from None
        finally:
            os.close(parent)

    def create_dir(self, path: str, sync: bool) -> bool:
        """Make ``path`` and missing directories above it; with ``sync``,
        fsync the directory holding each one made. Returns whether the last
        was made. A non-directory on the way is ``exists``, a symbolic link
        ``refused``."""
        segs = _segments(path)
        fd = self._root_fd()
        made = False
        try:
            for seg in segs:
                made = False
                try:
                    os.mkdir(seg, 0o755, dir_fd=fd)
                    made = True
                except FileExistsError:
                    pass
                if made and sync:
                    os.fsync(fd)
                try:
                    next_fd = os.open(seg, _DIR_FLAGS, dir_fd=fd)
                except OSError as e:
                    if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                        raise
                    try:
                        self._not_a_directory("create-dir", path, fd, seg)
                    except _NotDirectory as nd:
                        raise RootError("exists", nd.message) from None
                    raise
                os.close(fd)
                fd = next_fd
            return made
        except OSError as e:
            raise self._fail("create-dir", path, e) from None
        finally:
            os.close(fd)

    def sync_dir(self, path: str) -> None:
        """fsync the directory at ``path``."""
        fd = self._open_dir("sync-dir", path, _segments(path), itself=True)
        try:
            os.fsync(fd)
        except OSError as e:
            raise self._fail("sync-dir", path, e) from None
        finally:
            os.close(fd)

    def list(self, path: str) -> List[str]:
        """The names in the directory at ``path``, in no order."""
        fd = self._open_dir("list", path, _segments(path), itself=True)
        try:
            return os.listdir(fd)
        except OSError as e:
            raise self._fail("list", path, e) from None
        finally:
            os.close(fd)

    def rename(self, src: str, dst: str) -> None:
        """Rename an entry (never following it), replacing a file or an
        empty directory at ``dst``; anything else there is ``exists``."""
        _segments(dst)  # refuse a bad target before touching anything
        src_parent, src_name = self._open_parent("rename", src)
        try:
            dst_parent, dst_name = self._open_parent("rename", dst)
            try:
                os.rename(src_name, dst_name, src_dir_fd=src_parent, dst_dir_fd=dst_parent)
            except OSError as e:
                kinds = (errno.ENOTEMPTY, errno.EEXIST, errno.EISDIR, errno.ENOTDIR)
                code = "exists" if e.errno in kinds else None
                raise self._fail("rename", f"{src} to {dst}", e, code) from None
            finally:
                os.close(dst_parent)
        finally:
            os.close(src_parent)

    def remove_file(self, path: str) -> bool:
        """Remove a file (a symbolic link itself, never its target);
        False if nothing was there. A directory is refused."""
        try:
            parent, name = self._open_parent("remove-file", path)
        except RootError as e:
            if e.code == "not-found":
                return False
            raise
        try:
            os.unlink(name, dir_fd=parent)
            return True
        except FileNotFoundError:
            return False
        except OSError as e:
            code = "refused" if e.errno == errno.EISDIR else None
            raise self._fail("remove-file", path, e, code) from None
        finally:
            os.close(parent)

    def remove_tree(self, path: str) -> bool:
        """Remove a directory and everything in it, never following a
        symbolic link; False if nothing was there. A file or a symbolic
        link at ``path`` is refused (``remove-file`` removes those)."""
        try:
            parent, name = self._open_parent("remove-tree", path)
        except RootError as e:
            if e.code == "not-found":
                return False
            raise
        try:
            try:
                info = os.stat(name, dir_fd=parent, follow_symlinks=False)
            except FileNotFoundError:
                return False
            if not st_mode.S_ISDIR(info.st_mode):
                what = "a symbolic link" if st_mode.S_ISLNK(info.st_mode) else "not a directory"
                raise RootError("refused", f"remove-tree {path} in {self.path}: {what}")
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                return False
            except OSError as e:
                if e.errno not in (errno.ENOTDIR, errno.ELOOP):
                    raise
                # Swapped for something else since the stat: refused, as
                # it would have been then.
                raise RootError(
                    "refused", f"remove-tree {path} in {self.path}: no longer a directory"
                ) from None
            try:
                _remove_contents(fd)
            finally:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=parent)
            except FileNotFoundError:  # removed meanwhile
                pass
            return True
        except OSError as e:
            raise self._fail("remove-tree", path, e) from None
        finally:
            os.close(parent)

    def lock(self, path: str, exclusive: bool, wait: bool) -> Optional[int]:
        """``flock`` the file at ``path`` (made if missing); None if
        ``wait`` is false and another holder excludes it. ``gone`` if, once
        granted, the file is no longer at ``path``."""
        parent, name = self._open_parent("lock", path)
        try:
            fd = self._open_in("lock", path, parent, name, os.O_RDWR | os.O_CREAT)
        finally:
            os.close(parent)
        try:
            op = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
            if wait and self._lock_timeout_ms is None:
                fcntl.flock(fd, op)
            elif not _flock_within(fd, op, self._lock_timeout_ms if wait else 0):
                if not wait:
                    os.close(fd)
                    return None
                # Closed by the handler below, as for `gone`.
                raise RootError(
                    "busy",
                    f"lock {path} in {self.path}: another process held the lock for more than "
                    f"{self._lock_timeout_ms:g} ms",
                )
            if not self._still_at(path, os.fstat(fd)):
                raise RootError(
                    "gone",
                    f"lock {path} in {self.path}: the file was removed or replaced while locking",
                )
        except OSError as e:
            os.close(fd)
            raise self._fail("lock", path, e) from None
        except BaseException:
            os.close(fd)
            raise
        with self._guard:
            handle = self._next_handle
            self._next_handle += 1
            self._locks[handle] = fd
        return handle

    def _still_at(self, path: str, held: os.stat_result) -> bool:
        """Whether the open file ``held`` is (still) the file at ``path``,
        resolved afresh from the root (a directory on the way may have been
        removed or renamed too)."""
        if held.st_nlink == 0:
            return False
        try:
            parent, name = self._open_parent("lock", path)
        except RootError:
            return False
        try:
            now = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError:
            return False
        finally:
            os.close(parent)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def unlock(self, handle: int) -> None:
        """Release a lock taken by ``lock``; an unknown handle is ignored."""
        with self._guard:
            fd = self._locks.pop(handle, None)
        if fd is not None:
            os.close(fd)


def _remove_contents(fd: int) -> None:
    """Remove everything in the directory open as ``fd``, never following
    a symbolic link and never opening anything but a directory: each entry
    is looked at with ``fstatat`` (no follow); a non-directory (a file, a
    symbolic link, a FIFO, a device) is unlinked by name, a directory
    removed by :func:`_remove_dir`. What disappears meanwhile is skipped."""
    for name in os.listdir(fd):
        try:
            info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        if not st_mode.S_ISDIR(info.st_mode):
            try:
                os.unlink(name, dir_fd=fd)
                continue
            except FileNotFoundError:
                continue
            except IsADirectoryError:
                pass  # swapped for a directory meanwhile: removed as one
        _remove_dir(fd, name)


def _remove_dir(parent: int, name: str) -> None:
    """Remove the directory ``name`` in ``parent`` and everything in it. It
    is opened with ``_DIR_FLAGS``, so an entry swapped meanwhile for a
    symbolic link or anything else is not entered (the open fails at once,
    even on a FIFO) but unlinked like any other."""
    try:
        fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
    except FileNotFoundError:
        return
    except OSError as e:
        if e.errno not in (errno.ENOTDIR, errno.ELOOP):
            raise
        try:
            os.unlink(name, dir_fd=parent)
        except FileNotFoundError:
            pass
        return
    try:
        _remove_contents(fd)
    finally:
        os.close(fd)
    try:
        os.rmdir(name, dir_fd=parent)
    except FileNotFoundError:
        pass


# -- wasmtime-py glue -----------------------------------------------------


def _record(**fields: Any) -> Record:
    """A WIT record value (``snake_case`` names become kebab-case)."""
    r = Record()
    for name, value in fields.items():
        setattr(r, name.replace("_", "-"), value)
    return r


def _failure(code: str, message: str) -> Err:
    return Err(_record(code=code, message=message))


def root_imports(root: Root, durable: bool = True) -> Dict[str, Callable[..., Any]]:
    """Host functions of ``interface root`` over ``root``, by WIT name, for
    ``linker.root().add_instance(ROOT).add_func(name, fn)``. Every failure,
    expected or not, is returned as a ``failure`` (a Python exception in a
    host function would trap the component).

    With ``durable`` false nothing is fsynced (the store's writes survive a
    crash of the process, not of the machine): for tests and throwaway
    sessions."""

    def host(
        name: str, fn: Callable[..., Any], out: Callable[[Any], Any] = lambda v: v
    ) -> Callable[..., Any]:
        def call(_ctx: Any, *args: Any) -> Any:
            try:
                return out(fn(*args))
            except RootError as e:
                return _failure(e.code, e.message)
            except OSError as e:
                return _failure(_code(e), f"{name} in {root.path}: {e}")
            except Exception as e:  # a bug or an absurd argument: still a failure
                return _failure("io", f"{name} in {root.path}: {type(e).__name__}: {e}")

        return call

    def stat_out(v: Optional[Tuple[int, int, bool]]) -> Variant:
        # wasmtime-py lowers a result whose ok and err cases can both hold a
        # Record (here option<stat> and failure) only from a tagged Variant.
        return Variant("ok", None if v is None else _record(size=v[0], id=v[1], directory=v[2]))

    def unlock(_ctx: Any, handle: int) -> None:
        try:
            root.unlock(handle)
        except Exception:  # no error to return: the fd is gone either way
            pass

    fns: Dict[str, Callable[..., Any]] = {
        "stat": host("stat", root.stat, stat_out),
        "read": host("read", root.read),
        "append": host("append", root.append if durable else lambda p, b, _s: root.append(p, b, False)),
        "write-at": host("write-at", root.write_at),
        "truncate": host("truncate", root.truncate if durable else lambda p, n, _s: root.truncate(p, n, False)),
        "replace": host("replace", root.replace if durable else lambda p, b, _s: root.replace(p, b, False)),
        "create-dir": host("create-dir", root.create_dir if durable else lambda p, _s: root.create_dir(p, False)),
        "sync-dir": host("sync-dir", root.sync_dir if durable else lambda p: None),
        "list": host("list", root.list),
        "rename": host("rename", root.rename),
        "remove-file": host("remove-file", root.remove_file),
        "remove-tree": host("remove-tree", root.remove_tree),
        "lock": host("lock", root.lock),
    }
    fns["unlock"] = unlock
    return fns
