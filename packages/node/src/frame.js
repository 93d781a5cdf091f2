// Record framing of the event logs: the byte format of the Rust store's
// `host/src/fs_store/frame.rs`, which is the reference.
//
// A frame is `len: u32 | seq: u64 | header crc: u32 | payload crc: u32 |
// payload` (little endian, CRC-32). The top bit of `len` says that more
// frames of the same append follow, so a multi-record append is
// all-or-nothing: a crash that tears it leaves a batch without its last
// frame, which is cut like any torn tail. The header has its own checksum
// so that a damaged length is told apart from a torn write.

import { crc32 } from 'node:zlib';

/** Bytes before the payload. */
export const HEADER = 4 + 8 + 4 + 4;
/** Flag in `len`: more frames of this append follow. */
const MORE = 0x8000_0000;
/** Largest payload accepted (as in Rust). */
export const MAX_PAYLOAD = 64 * 1024 * 1024;

/**
 * The frames of one append of `records` at positions `firstSeq`, ... .
 * @param {number} firstSeq
 * @param {Uint8Array[]} records
 * @returns {Buffer}
 */
export function encodeBatch(firstSeq, records) {
  const total = records.reduce((n, r) => n + HEADER + r.length, 0);
  const out = Buffer.alloc(total);
  let at = 0;
  records.forEach((payload, i) => {
    const len = (payload.length | (i + 1 < records.length ? MORE : 0)) >>> 0;
    out.writeUInt32LE(len, at);
    out.writeBigUInt64LE(BigInt(firstSeq + i), at + 4);
    out.writeUInt32LE(crc32(out.subarray(at, at + 12)), at + 12);
    out.writeUInt32LE(crc32(payload), at + 16);
    out.set(payload, at + HEADER);
    at += HEADER + payload.length;
  });
  return out;
}

/**
 * What is at the start of `bytes`: `{ whole: { seq, payload, more, len } }`,
 * `{ torn: true }` (the bytes end inside the frame, or only zeros follow: a
 * crash after the size grew but before the data reached the disk), or
 * `{ damaged: why }` (complete but does not check out).
 * @param {Buffer} bytes
 */
export function decode(bytes) {
  if (bytes.length < HEADER) return { torn: true };
  const rawLen = bytes.readUInt32LE(0);
  if (crc32(bytes.subarray(0, 12)) !== bytes.readUInt32LE(12)) {
    return bytes.every((b) => b === 0) ? { torn: true } : { damaged: 'frame header checksum mismatch' };
  }
  const len = rawLen & 0x7fff_ffff;
  if (len > MAX_PAYLOAD) return { damaged: 'frame longer than the limit' };
  if (bytes.length < HEADER + len) return { torn: true };
  const payload = bytes.subarray(HEADER, HEADER + len);
  if (crc32(payload) !== bytes.readUInt32LE(16)) return { damaged: 'record checksum mismatch' };
  return {
    whole: {
      seq: Number(bytes.readBigUInt64LE(4)),
      payload,
      more: (rawLen & MORE) !== 0,
      len: HEADER + len,
    },
  };
}

/** Damage before the end of a log: where and what. */
export class Damage extends Error {
  /** @param {number} at @param {string} why */
  constructor(at, why) {
    super(why);
    this.at = at;
    this.why = why;
  }
}

/**
 * Walk the frames in `bytes` (which start at log offset `base`, at position
 * `firstSeq`), keeping only whole appends. With `committed`, the range is
 * known to hold only committed appends (it ends at an offset the offsets
 * file recorded) and may end inside an append. Damage before the end of
 * the bytes throws a `Damage`.
 * @param {Buffer} bytes
 * @param {number} base
 * @param {number} firstSeq
 * @param {boolean} [committed]
 * @returns {{ offsets: number[], end: number, tornBytes: number }}
 */
export function walk(bytes, base, firstSeq, committed = false) {
  const offsets = [];
  let end = base;
  let at = 0;
  let pending = [];
  let seq = firstSeq;
  while (at < bytes.length) {
    const frame = decode(bytes.subarray(at));
    if (frame.whole) {
      if (frame.whole.seq !== seq) throw new Damage(base + at, 'frame out of sequence');
      pending.push(base + at);
      at += frame.whole.len;
      seq += 1;
      if (!frame.whole.more || committed) {
        offsets.push(...pending);
        pending = [];
        end = base + at;
      }
    } else if (frame.torn) {
      break;
    } else {
      // After a power loss, the pages of an unsynced last append can reach
      // the disk in any order: bad bytes with no whole later frame after
      // them are that torn append, not damage.
      for (let i = at + 1; i < bytes.length; i++) {
        const later = decode(bytes.subarray(i));
        if (later.whole && later.whole.seq >= seq) throw new Damage(base + at, frame.damaged);
      }
      break;
    }
  }
  return { offsets, end, tornBytes: base + bytes.length - end };
}
