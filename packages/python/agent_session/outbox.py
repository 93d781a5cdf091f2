"""The ``notify`` interface: notifications queued in the Rust outbox intake
(``host/src/outbox.rs``), for the Rust sender (``agent-session deliver``) to
deliver. This package has no HTTP sender.

Each process appends to an intake segment of its own,
``outbox/intake/<pid>-<16 hex>.log``: marked frames (``ASNQ``) whose body is
the notification as JSON, one ``write`` + ``fdatasync`` per notification.
The process holds a shared ``flock`` on its segment for as long as it may
write to it, which is how a sender tells live segments from those of ended
processes (it deletes the latter once taken in).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import threading
from dataclasses import dataclass
from typing import Optional

from . import _marked
from ._durable import sync_dir, write_all

OUTBOX_DIR = "outbox"
DONE_DIR = "outbox/done"
INTAKE_DIR = "outbox/intake"
INTAKE_MARK = b"ASNQ"
# A process starts a new segment past this size, so that the old one can be
# taken in and deleted while the process goes on.
SEGMENT_MAX = 4 << 20

_SAFE_ID = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True)
class Notification:
    """One notification for one webhook endpoint (the WIT ``notification``)."""

    id: str
    session_id: str
    seq: int
    url: str
    secret: str
    kind: str
    timestamp: int
    body: str

    def to_json(self) -> bytes:
        """The Rust ``Notification`` serde form (field order as in Rust)."""
        return json.dumps(
            {
                "id": self.id,
                "session_id": self.session_id,
                "seq": self.seq,
                "url": self.url,
                "secret": self.secret,
                "kind": self.kind,
                "timestamp": self.timestamp,
                "body": self.body,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode()


class OutboxError(Exception):
    """Queueing failed; the message is what ``enqueue`` returns to the
    component (the WIT ``result<_, string>``)."""


class _Segment:
    def __init__(self, fd: int, pid: int) -> None:
        self.fd = fd
        self.pid = pid

    def close(self) -> None:
        # Closing releases the shared lock: the segment counts as ended.
        os.close(self.fd)


class Outbox:
    """The outbox of the root ``root`` (created if needed)."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._segment: Optional[_Segment] = None
        self._mutex = threading.Lock()
        intake = os.path.join(self.root, INTAKE_DIR)
        if not os.path.exists(intake):
            os.makedirs(os.path.join(self.root, DONE_DIR), exist_ok=True)
            os.makedirs(intake, exist_ok=True)
            # Segments are trusted to be durable once their own entry is.
            sync_dir(os.path.join(self.root, OUTBOX_DIR))
            sync_dir(self.root)

    def enqueue(self, n: Notification) -> None:
        """Queue ``n`` durably. Raises :class:`OutboxError`."""
        # The core makes ids from `msg_` + UUID v7, safe file names (the
        # sender names records by them). Checked anyway: any component may
        # call this import.
        if not _SAFE_ID.fullmatch(n.id):
            raise OutboxError(f"notification id {json.dumps(n.id)} is not a safe file name")
        frame = _marked.encode(INTAKE_MARK, n.to_json())
        with self._mutex:
            try:
                segment = self._current()
                # O_APPEND and one write per frame: frames of concurrent
                # writers never interleave.
                write_all(segment.fd, frame)
                os.fdatasync(segment.fd)
            except OSError as e:
                # A failed write may have left part of a frame: later frames
                # go to a new segment, not behind it.
                self._drop_segment()
                raise OutboxError(
                    f"queueing in {INTAKE_DIR}: {e.strerror or e} (os error {e.errno})"
                ) from e

    def close(self) -> None:
        """Release this process's segment (a sender may then take it in and
        delete it). Later notifications start a new one."""
        with self._mutex:
            self._drop_segment()

    def _drop_segment(self) -> None:
        if self._segment is not None:
            self._segment.close()
            self._segment = None

    def _current(self) -> _Segment:
        """This process's segment, or a new one (past SEGMENT_MAX, or in a
        forked child, whose segment must carry its own pid)."""
        s = self._segment
        if s is not None and s.pid == os.getpid() and os.fstat(s.fd).st_size < SEGMENT_MAX:
            return s
        # (Closing a forked child's copy leaves the parent's lock alone: a
        # flock lasts until every descriptor of the open file is closed.)
        self._drop_segment()
        intake = os.path.join(self.root, INTAKE_DIR)
        name = f"{os.getpid()}-{secrets.randbits(64):016x}.log"
        # Made under a name senders do not look at, and locked before it gets
        # its real one: a sender must never take a segment about to be
        # written for one whose process has ended.
        fresh = os.path.join(intake, f".{name}.new")
        fd = os.open(fresh, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            os.rename(fresh, os.path.join(intake, name))
            sync_dir(intake)
        except BaseException:
            os.close(fd)
            raise
        self._segment = _Segment(fd, os.getpid())
        return self._segment
