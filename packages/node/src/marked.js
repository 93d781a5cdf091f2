// Frames that start with a marker: `marker | body length: u32 | body
// CRC-32: u32 | body` (little endian), as in the Rust store's
// `fs_store/marked.rs`. Files of such frames (the summary index, the
// notification intake) are appended to by several writers at once, one
// `write` per frame so frames never interleave; a reader that meets a frame
// torn by a killed writer finds the next whole one by its marker.

import { crc32 } from 'node:zlib';

/** Bytes before the body. */
export const HEADER = 12;

/**
 * The frame of `body` (not empty).
 * @param {Buffer} marker 4 bytes
 * @param {Uint8Array} body
 * @returns {Buffer}
 */
export function encode(marker, body) {
  const out = Buffer.alloc(HEADER + body.length);
  marker.copy(out, 0);
  out.writeUInt32LE(body.length, 4);
  out.writeUInt32LE(crc32(body), 8);
  out.set(body, HEADER);
  return out;
}

/** The frame at the start of `bytes`: `{ body, len }`, `null` if the bytes
 * end inside it, `false` if it is not a valid frame. */
function decode(marker, bytes) {
  if (bytes.length < HEADER) {
    const n = Math.min(bytes.length, 4);
    return bytes.subarray(0, n).equals(marker.subarray(0, n)) ? null : false;
  }
  if (!bytes.subarray(0, 4).equals(marker)) return false;
  const len = bytes.readUInt32LE(4);
  // No writer makes an empty frame; zeroes are garbage, not a frame.
  if (len === 0) return false;
  if (bytes.length < HEADER + len) return null;
  const body = bytes.subarray(HEADER, HEADER + len);
  if (crc32(body) !== bytes.readUInt32LE(8)) return false;
  return { body, len: HEADER + len };
}

/**
 * The bodies of the whole frames in `bytes`, skipping torn ones, and how
 * many bytes they span. A frame cut short may be one being written: it
 * ends the read (to be looked at again later) unless the file is
 * `complete` (nobody writes to it any more).
 * @param {Buffer} marker
 * @param {Buffer} bytes
 * @param {boolean} complete
 * @returns {{ bodies: Buffer[], used: number }}
 */
export function read(marker, bytes, complete) {
  const bodies = [];
  let at = 0;
  while (at < bytes.length) {
    const frame = decode(marker, bytes.subarray(at));
    if (frame) {
      bodies.push(frame.body);
      at += frame.len;
      continue;
    }
    if (frame === null && !complete) break;
    // Torn by a killed writer, with frames of other writers after it: go
    // on at the next whole frame.
    let next = -1;
    for (let i = at + 1; i < bytes.length; i++) {
      if (decode(marker, bytes.subarray(i))) {
        next = i;
        break;
      }
    }
    if (next < 0) break;
    at = next;
  }
  return { bodies, used: at };
}
