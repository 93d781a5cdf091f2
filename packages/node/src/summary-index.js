// The summary index of a collection, as the Rust store keeps it
// (`fs_store/index.rs`): one append-only file `index/<collection>.log` of
// `(key, summary)` marked frames (marker `ASIX`, body `key length: u8 |
// key | summary`), the last frame of a key winning, an empty summary
// removing the key. Each process keeps the live entries in memory and reads
// only what was appended since its last look.
//
// Derived data: written without fsync; rebuilt from the histories after a
// loss (`REINDEX`). Appenders hold a shared flock on
// `index/<collection>.lock`; compaction rewrites the file under the
// exclusive lock and renames it into place, and readers notice the new
// inode and reload.

import fs from 'node:fs';
import path from 'node:path';

import * as marked from './marked.js';
import { lockPath } from './flock.js';
import { fileSize, readAt, writeAll, writeAtomically } from './files.js';

const DIR = 'index';
const MAGIC = Buffer.from('ASIX');
/** Compact when the file is this large and mostly superseded frames. */
const COMPACT_MIN_BYTES = 4 << 20;

/** The cost of a live entry in the file, as Rust counts it. */
const frameBytes = (key, summary) => summary.length + key.length + 1 + marked.HEADER;

function encode(key, summary) {
  const body = Buffer.alloc(1 + key.length + summary.length);
  body[0] = key.length;
  body.write(key, 1, 'utf8');
  body.set(summary, 1 + key.length);
  return marked.encode(MAGIC, body);
}

function decode(body) {
  const keyLen = body[0];
  if (body.length < 1 + keyLen) return null;
  return { key: body.toString('utf8', 1, 1 + keyLen), summary: body.subarray(1 + keyLen) };
}

/** What a process knows of one index file. */
class Cache {
  constructor(fd = null, ino = 0) {
    /** Held open so its inode number cannot be reused by a later file. */
    this.fd = fd;
    this.ino = ino;
    this.offset = 0;
    /** @type {Map<string, Buffer>} */
    this.live = new Map();
    this.liveBytes = 0;
    /** Keys in descending order, made on demand. @type {string[] | null} */
    this.sorted = null;
  }

  close() {
    if (this.fd !== null) fs.closeSync(this.fd);
  }
}

/** In-memory view of the index files of one root. */
export class SummaryIndex {
  /** @param {string} root */
  constructor(root) {
    this.root = root;
    /** @type {Map<string, Cache>} */
    this.caches = new Map();
  }

  /** Whether the collection has an index file. */
  exists(c) {
    return fs.existsSync(this.#log(c));
  }

  /** Record `key`'s summary (empty: the key is gone). */
  put(c, key, summary) {
    const frame = encode(key, summary);
    const lock = this.#lock(c, false);
    let size;
    try {
      const fd = fs.openSync(this.#log(c), 'a');
      try {
        // One write per frame: frames of concurrent appenders never
        // interleave (O_APPEND).
        writeAll(fd, frame);
        size = fs.fstatSync(fd).size;
      } finally {
        fs.closeSync(fd);
      }
    } finally {
      fs.closeSync(lock);
    }
    // Only a process that has the index loaded knows how much of the file
    // is live; it compacts once most of the file is superseded.
    const cache = this.caches.get(c);
    if (cache && cache.ino !== 0 && size > COMPACT_MIN_BYTES && size > 3 * cache.liveBytes) {
      this.compact(c);
    }
  }

  /**
   * Entries in descending key order after `after`, at most `limit`.
   * @returns {{ key: string, summary: Uint8Array }[]}
   */
  scan(c, after, limit) {
    this.#refresh(c);
    const cache = this.#cache(c);
    cache.sorted ??= [...cache.live.keys()].sort().reverse();
    const keys = cache.sorted;
    // First key below `after` (keys are ASCII: JS order is byte order).
    let lo = 0;
    if (after != null) {
      let hi = keys.length;
      while (lo < hi) {
        const mid = (lo + hi) >>> 1;
        if (keys[mid] >= after) lo = mid + 1;
        else hi = mid;
      }
    }
    return keys.slice(lo, lo + limit).map((key) => ({ key, summary: cache.live.get(key) }));
  }

  /** Rewrite the file with live entries only; returns sizes before and after. */
  compact(c) {
    const lock = this.#lock(c, true);
    try {
      this.#refresh(c);
      const before = fileSize(this.#log(c));
      const cache = this.#cache(c);
      const bytes = Buffer.concat([...cache.live].map(([k, s]) => encode(k, s)));
      writeAtomically(path.join(this.root, DIR), `${c}.log`, bytes, true);
      const fd = fs.openSync(this.#log(c), 'r');
      cache.close();
      cache.fd = fd;
      cache.ino = fs.fstatSync(fd).ino;
      cache.offset = bytes.length;
      return { before, after: bytes.length };
    } finally {
      fs.closeSync(lock);
    }
  }

  /** Drop every entry (before a rebuild). */
  clear(c) {
    const lock = this.#lock(c, true);
    try {
      writeAtomically(path.join(this.root, DIR), `${c}.log`, Buffer.alloc(0), true);
      this.#reset(c, new Cache());
    } finally {
      fs.closeSync(lock);
    }
  }

  #log(c) {
    return path.join(this.root, DIR, `${c}.log`);
  }

  #lock(c, exclusive) {
    // The directory exists after the first append; only then is it made.
    fs.mkdirSync(path.join(this.root, DIR), { recursive: true });
    return lockPath(path.join(this.root, DIR, `${c}.lock`), exclusive);
  }

  #cache(c) {
    let cache = this.caches.get(c);
    if (!cache) this.caches.set(c, (cache = new Cache()));
    return cache;
  }

  #reset(c, cache) {
    this.caches.get(c)?.close();
    this.caches.set(c, cache);
    return cache;
  }

  /** Read what was appended since the last look (or everything, if the
   * file was replaced). */
  #refresh(c) {
    let fd;
    try {
      fd = fs.openSync(this.#log(c), 'r');
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
      this.#reset(c, new Cache());
      return;
    }
    let kept = false;
    try {
      const { ino, size } = fs.fstatSync(fd);
      let cache = this.#cache(c);
      if (cache.ino !== ino || cache.offset > size) {
        cache = this.#reset(c, new Cache(fd, ino));
        kept = true;
      }
      if (size === cache.offset) return;
      const bytes = readAt(fd, cache.offset, size - cache.offset);
      // A torn frame's key keeps its previous summary until its next
      // append, or a rebuild.
      const { bodies, used } = marked.read(MAGIC, bytes, false);
      for (const body of bodies) {
        const entry = decode(body);
        if (!entry) continue;
        const old = cache.live.get(entry.key);
        if (old) {
          cache.live.delete(entry.key);
          cache.liveBytes -= frameBytes(entry.key, old);
        }
        if (entry.summary.length > 0) {
          // A copy: `bytes` is released, and callers get their own buffer.
          cache.live.set(entry.key, Buffer.from(entry.summary));
          cache.liveBytes += frameBytes(entry.key, entry.summary);
        }
      }
      cache.sorted = null;
      cache.offset += used;
    } finally {
      if (!kept) fs.closeSync(fd);
    }
  }
}
