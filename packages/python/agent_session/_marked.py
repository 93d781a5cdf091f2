"""Frames that start with a marker, as ``host/src/fs_store/marked.rs``:
``marker | body length: u32 | body CRC-32: u32 | body``.

Several writers append to such files at once (one ``write`` per frame, so
frames never interleave); a reader that meets a frame torn by a killed
writer finds the next whole one by its marker. Used by the summary index
(``ASIX``) and the notification intake (``ASNQ``).
"""

from __future__ import annotations

import logging
import struct
import zlib
from typing import List, Optional, Tuple, Union

HEADER = 12

_LEN_CRC = struct.Struct("<II")
_log = logging.getLogger(__name__)


def encode(marker: bytes, body: bytes) -> bytes:
    """The frame of ``body`` (not empty)."""
    return marker + _LEN_CRC.pack(len(body), zlib.crc32(body)) + body


# A frame: its body and size; None if the bytes end inside it; False if it
# is not a valid frame.
_Decoded = Union[Tuple[memoryview, int], None, bool]


def _decode(marker: bytes, buf: memoryview, at: int) -> _Decoded:
    rest = len(buf) - at
    if rest < HEADER:
        head = bytes(buf[at : at + min(rest, 4)])
        return None if marker.startswith(head) else False
    if buf[at : at + 4] != marker:
        return False
    length, crc = _LEN_CRC.unpack_from(buf, at + 4)
    # No writer makes an empty frame; zeros are garbage, not a frame.
    if length == 0:
        return False
    if rest < HEADER + length:
        return None
    body = buf[at + HEADER : at + HEADER + length]
    if zlib.crc32(body) != crc:
        return False
    return body, HEADER + length


def read(marker: bytes, data: bytes, what: str, complete: bool) -> Tuple[List[bytes], int]:
    """The bodies of the whole frames in ``data``, skipping torn ones, and how
    many bytes they span. A frame cut short may be one being written: it
    ends the read unless the file is ``complete`` (nobody writes to it any
    more), where it is torn like any other and the read goes on after it."""
    data = bytes(data)
    buf = memoryview(data)
    at = 0
    bodies: List[bytes] = []
    while at < len(buf):
        frame = _decode(marker, buf, at)
        if isinstance(frame, tuple):
            bodies.append(bytes(frame[0]))
            at += frame[1]
            continue
        if frame is None and not complete:
            break
        # Torn by a killed writer, with frames of other writers after it:
        # go on at the next whole frame.
        following = _next_whole(marker, data, buf, at + 1)
        if following is None:
            break
        _log.warning("%s: skipping a torn frame at byte %d", what, at)
        at = following
    return bodies, at


def _next_whole(marker: bytes, data: bytes, buf: memoryview, start: int) -> Optional[int]:
    # A whole frame starts with the marker: only those places are tried.
    i = data.find(marker, start)
    while i != -1:
        if isinstance(_decode(marker, buf, i), tuple):
            return i
        i = data.find(marker, i + 1)
    return None
