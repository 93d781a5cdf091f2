"""Crash-safe file replacement and directory syncs, shared by the store, its
index and the outbox (``write_durably`` / ``sync_dir`` in the Rust store)."""

from __future__ import annotations

import os


def sync_dir(path: str) -> None:
    """fsync a directory, so that entries made or renamed in it survive a
    power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(directory: str, name: str, data: bytes, sync: bool) -> None:
    """Replace ``directory/name`` by renaming a temp file over it; with
    ``sync``, the temp file and the directory are fsynced so the new content
    survives a power loss (without, a reader still sees old or new, never a
    mix)."""
    tmp = os.path.join(directory, f".{name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        write_all(fd, data)
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(tmp, os.path.join(directory, name))
    if sync:
        sync_dir(directory)


def write_durably(directory: str, name: str, data: bytes) -> None:
    """Replace ``directory/name`` crash-safely: temp file, fsync, rename,
    directory fsync."""
    write_atomically(directory, name, data, sync=True)


def write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
