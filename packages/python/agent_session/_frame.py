"""Record framing of the event logs, as ``host/src/fs_store/frame.rs``.

A frame is ``len: u32 | seq: u64 | header crc: u32 | payload crc: u32 |
payload`` (little-endian, CRC-32/IEEE). The top bit of ``len`` says that
more frames of the same append follow, so a multi-record append is
all-or-nothing: a torn batch is cut like any torn tail. The header has its
own checksum so that a damaged length is told apart from a torn write.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Union

HEADER = 4 + 8 + 4 + 4
MORE = 1 << 31
MAX_PAYLOAD = 64 * 1024 * 1024

_HEAD = struct.Struct("<IQII")
_LEN_SEQ = struct.Struct("<IQ")

Buffer = Union[bytes, bytearray, memoryview]


def encode_batch(first_seq: int, records: Sequence[bytes]) -> bytes:
    """The frames of one append of ``records`` at ``first_seq``, ``first_seq + 1``, ..."""
    out = bytearray()
    last = len(records) - 1
    for i, payload in enumerate(records):
        length = len(payload) | (MORE if i < last else 0)
        seq = first_seq + i
        header_crc = zlib.crc32(_LEN_SEQ.pack(length, seq))
        out += _HEAD.pack(length, seq, header_crc, zlib.crc32(payload))
        out += payload
    return bytes(out)


@dataclass(frozen=True)
class Whole:
    """A whole, valid frame."""

    seq: int
    payload: memoryview
    more: bool
    size: int


class Torn:
    """The bytes end inside the frame (a torn or in-progress write), or only
    zeros follow (the size grew but the data never reached the disk)."""


TORN = Torn()


@dataclass(frozen=True)
class Damaged:
    """The frame is complete but does not check out."""

    why: str


Frame = Union[Whole, Torn, Damaged]


def decode(buf: memoryview, at: int) -> Frame:
    """Decode the frame starting at ``buf[at]``."""
    rest = len(buf) - at
    if rest < HEADER:
        return TORN
    raw_len, seq, header_crc, payload_crc = _HEAD.unpack_from(buf, at)
    if zlib.crc32(buf[at : at + 12]) != header_crc:
        tail = buf[at:]
        if bytes(tail).count(0) == tail.nbytes:
            return TORN
        return Damaged("frame header checksum mismatch")
    length = raw_len & ~MORE
    if length > MAX_PAYLOAD:
        return Damaged("frame longer than the limit")
    if rest < HEADER + length:
        return TORN
    payload = buf[at + HEADER : at + HEADER + length]
    if zlib.crc32(payload) != payload_crc:
        return Damaged("record checksum mismatch")
    return Whole(seq, payload, bool(raw_len & MORE), HEADER + length)


class LogDamaged(Exception):
    """Damage before the end of a log: at ``offset``, because ``why``."""

    def __init__(self, offset: int, why: str) -> None:
        super().__init__(f"damaged at byte {offset} ({why})")
        self.offset = offset
        self.why = why


@dataclass
class Walk:
    """What walking a log from some offset found."""

    offsets: List[int] = field(default_factory=list)
    """Offsets of the committed frames, in order."""
    end: int = 0
    """Where the committed frames end."""
    torn_bytes: int = 0
    """Bytes after ``end`` that belong to no committed append."""


def walk(data: Buffer, base: int, first_seq: int, committed: bool = False) -> Walk:
    """Walk the frames in ``data`` (log offset ``base``, position
    ``first_seq``), keeping whole appends only. With ``committed``, the range
    is known to hold committed appends only (it ends at a recorded offset),
    so it may end inside an append. Raises :class:`LogDamaged`."""
    buf = memoryview(data)
    result = Walk(end=base)
    at = 0
    pending: List[int] = []
    seq = first_seq
    while at < len(buf):
        frame = decode(buf, at)
        if isinstance(frame, Whole):
            if frame.seq != seq:
                raise LogDamaged(base + at, "frame out of sequence")
            pending.append(base + at)
            at += frame.size
            seq += 1
            if not frame.more or committed:
                result.offsets += pending
                pending = []
                result.end = base + at
        elif isinstance(frame, Torn):
            break
        else:
            # After a power loss the pages of an unsynced last append reach
            # the disk in any order: bad bytes with no whole later frame
            # after them are that torn append, not damage.
            if _whole_frame_after(buf, at, seq):
                raise LogDamaged(base + at, frame.why)
            break
    result.torn_bytes = base + len(buf) - result.end
    return result


def _whole_frame_after(buf: memoryview, at: int, seq: int) -> bool:
    for i in range(at + 1, len(buf)):
        frame = decode(buf, i)
        if isinstance(frame, Whole) and frame.seq >= seq:
            return True
    return False


def payload_at(data: Buffer, at: int) -> Optional[bytes]:
    """The payload of the whole frame at ``data[at]``, if there is one."""
    frame = decode(memoryview(data), at)
    return bytes(frame.payload) if isinstance(frame, Whole) else None

