// The filesystem store: the WIT `store` interface on one directory, in the
// on-disk format of the Rust host's `FsStore` (`host/src/fs_store/`), so
// Node and Rust processes can share a root.
//
// Layout under the root (format 2):
//
//   FORMAT                          "agent-session-fs 2\n"
//   REINDEX                         present while the index must be rebuilt
//   <collection>/<key>/events.log   the history: framed records (frame.js)
//   <collection>/<key>/events.idx   byte offset of each record, u64 LE (derived)
//   <collection>/<key>/doc          document: ASD1 | version | len | crc | data
//   <collection>/<key>/lock         flock serializing writers of the key
//   index/<collection>.log          summary index (summary-index.js)
//
// Crash safety, as in Rust: an append is one write of whole frames and an
// fdatasync before it is acknowledged; before appending, the writer checks
// the log's tail from the last recorded offset and cuts a torn append. A
// document is replaced by temp file + fsync + rename + directory fsync. New
// directories are fsynced before the first append to them is acknowledged.
// Writers of one key, in any process and either language, are serialized by
// an exclusive flock on its lock file; readers take no lock.

import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

import * as frame from './frame.js';
import { flock, lockPath } from './flock.js';
import { readAt, syncDir, writeAll, writeAtomically } from './files.js';
import { SummaryIndex } from './summary-index.js';

const FORMAT = 'agent-session-fs 2\n';
const FORMAT_1 = 'agent-session-fs 1\n';
const REINDEX = 'REINDEX';
const DOC_MAGIC = Buffer.from('ASD1');
const DOC_HEADER = 4 + 8 + 4 + 4;
const MAX_NAME = 64;
const LOG = 'events.log';
const IDX = 'events.idx';
/** The collection of sessions (the core's `SESSIONS`). */
export const SESSIONS = 'sessions';

/**
 * A failure of the `store` interface: a case of the WIT `store-error`
 * variant. jco lowers a thrown error's `payload` as the `err` value.
 */
export class StoreError extends Error {
  /**
   * @param {'conflict' | 'invalid-key' | 'full' | 'io'} tag
   * @param {string} message
   */
  constructor(tag, message) {
    super(message);
    this.name = 'StoreError';
    this.tag = tag;
    Object.defineProperty(this, 'payload', { value: { tag, val: message } });
  }
}

const conflict = (m) => new StoreError('conflict', m);

/** A system error as the Rust store reports it: out of space or quota is
 * `full`, anything else `io`. Other errors (bugs) go on as they are. */
function ioError(what, e) {
  if (e instanceof StoreError || typeof e?.code !== 'string') return e;
  const tag = e.code === 'ENOSPC' || e.code === 'EDQUOT' ? 'full' : 'io';
  return new StoreError(tag, `${what}: ${e.message}`);
}

/** Run `f`, reporting system errors as `ioError(what, ...)`. */
function wrap(what, f) {
  try {
    return f();
  } catch (e) {
    throw ioError(what, e);
  }
}

function damaged(entry, at, why) {
  return new StoreError(
    'io',
    `${entry}/${LOG} is damaged at byte ${at} (${why}); the records before it are intact`,
  );
}

/** Collection and key names become path components: only `[A-Za-z0-9_-]`. */
function checkName(what, s) {
  if (typeof s !== 'string' || s.length === 0 || s.length > MAX_NAME || !/^[A-Za-z0-9_-]+$/.test(s)) {
    throw new StoreError(
      'invalid-key',
      `${what} ${JSON.stringify(String(s).slice(0, 80))} is not a valid name (1 to ${MAX_NAME} of A-Z a-z 0-9 - _)`,
    );
  }
}

const isName = (s) => /^[A-Za-z0-9_-]{1,64}$/.test(s);

function openOrNull(p, flags) {
  try {
    return fs.openSync(p, flags);
  } catch (e) {
    if (e.code === 'ENOENT') return null;
    throw e;
  }
}

function encodeDoc(version, data) {
  const out = Buffer.alloc(DOC_HEADER + data.length);
  DOC_MAGIC.copy(out, 0);
  out.writeBigUInt64LE(BigInt(version), 4);
  out.writeUInt32LE(data.length, 12);
  out.set(data, DOC_HEADER);
  out.writeUInt32LE(crc32(out.subarray(DOC_HEADER), crc32(out.subarray(4, 12))), 16);
  return out;
}

function decodeDoc(bytes) {
  if (bytes.length < DOC_HEADER || !bytes.subarray(0, 4).equals(DOC_MAGIC)) return null;
  const data = bytes.subarray(DOC_HEADER);
  if (data.length !== bytes.readUInt32LE(12)) return null;
  if (crc32(data, crc32(bytes.subarray(4, 12))) !== bytes.readUInt32LE(16)) return null;
  return { version: Number(bytes.readBigUInt64LE(4)), data: new Uint8Array(data) };
}

/** The offsets file (`events.idx`): one u64 LE per record. */
class Offsets {
  constructor(fd) {
    this.fd = fd;
    this.len = fd === null ? 0 : Math.floor(fs.fstatSync(fd).size / 8);
  }

  get(i) {
    if (i < 0 || i >= this.len) return null;
    try {
      return Number(readAt(this.fd, i * 8, 8).readBigUInt64LE(0));
    } catch {
      return null;
    }
  }
}

/** A store on one directory. Several processes may open the same root. */
export class FsStore {
  /**
   * Open (creating if needed) the store rooted at `root`. A root of the
   * first format is refused: the Rust host migrates it.
   * @param {string} root
   */
  static open(root) {
    root = path.resolve(root);
    fs.mkdirSync(root, { recursive: true });
    let format = null;
    try {
      format = fs.readFileSync(path.join(root, 'FORMAT'), 'utf8');
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    if (format === null) {
      writeAtomically(root, 'FORMAT', Buffer.from(FORMAT), true);
    } else if (format === FORMAT_1) {
      throw new Error(
        `${root} holds an agent-session root of format 1; open it once with the Rust CLI ` +
          `(e.g. \`agent-session --dir ${root} stats\`), which migrates it to format 2`,
      );
    } else if (format !== FORMAT) {
      throw new Error(
        `${root} holds an agent-session root of format ${JSON.stringify(format.trim())}; ` +
          `this package reads ${JSON.stringify(FORMAT.trim())}`,
      );
    }
    const store = new FsStore(root);
    // A lost index file cannot be told from an empty one by reading it.
    if (!store.index.exists(SESSIONS) && store.#listDir(SESSIONS).length > 0) {
      store.#requestReindex();
    }
    return store;
  }

  /** @param {string} root an absolute path */
  constructor(root) {
    this.root = root;
    this.index = new SummaryIndex(root);
  }

  /** Whether the index must be rebuilt before lists and stats can be
   * trusted (after a migration or a lost index). */
  needsReindex() {
    return fs.existsSync(path.join(this.root, REINDEX));
  }

  /** Empty the index of `collection` before a rebuild; the rebuild stays
   * requested until `reindexed()`. */
  clearIndex(collection) {
    checkName('collection', collection);
    this.#requestReindex();
    this.index.clear(collection);
  }

  /** The index was rebuilt. */
  reindexed() {
    try {
      fs.unlinkSync(path.join(this.root, REINDEX));
    } catch (e) {
      if (e.code !== 'ENOENT') throw e;
    }
    syncDir(this.root);
  }

  /**
   * Append `records` at positions `seq`, ... of a key's log if it holds
   * exactly `seq` records, durably; then replace the key's summary.
   * @param {string} c @param {string} k @param {number} seq
   * @param {Uint8Array[]} records @param {Uint8Array} summary
   */
  append(c, k, seq, records, summary) {
    const entry = this.#entry(c, k);
    if (records.some((r) => r.length > frame.MAX_PAYLOAD)) {
      throw new StoreError('full', `a record for ${entry} is too large`);
    }
    const dir = path.join(this.root, entry);
    const newKey = seq === 0 && !fs.existsSync(dir);
    if (newKey) {
      wrap(`creating ${entry}`, () => {
        const newCollection = !fs.existsSync(path.join(this.root, c));
        fs.mkdirSync(dir, { recursive: true });
        if (newCollection) syncDir(this.root);
        syncDir(path.join(this.root, c));
      });
    }
    const create = seq === 0 ? fs.constants.O_CREAT : 0;
    const { O_RDWR, O_APPEND, O_CREAT } = fs.constants;
    const files = wrap(`opening ${entry}`, () => {
      const opened = [];
      try {
        for (const [name, flags] of [
          ['lock', O_RDWR | create],
          [LOG, O_RDWR | O_APPEND | create],
          [IDX, O_RDWR | O_CREAT],
        ]) {
          const fd = openOrNull(path.join(dir, name), flags);
          if (fd === null) return null;
          opened.push(fd);
        }
        return opened;
      } finally {
        if (opened.length < 3) opened.forEach((fd) => fs.closeSync(fd));
      }
    });
    if (files === null) throw conflict(`${entry} does not exist`);
    const [lock, log, idx] = files;
    try {
      wrap(`locking ${entry}`, () => flock(lock, true, `${entry}/lock`));
      // A remover renames the key away under this lock: never append to a
      // log that is no longer at the key's path.
      if (!this.#current(lock, dir)) throw conflict(`${entry} was removed by another writer`);
      const tail = this.#tail(entry, log, idx);
      if (!tail.clean) this.#fixTail(entry, tail, log, idx);
      if (tail.count !== seq) {
        throw conflict(`${entry}: append at position ${seq}, but the log holds ${tail.count} records`);
      }
      const bytes = frame.encodeBatch(seq, records);
      const offsets = Buffer.alloc(records.length * 8);
      let at = tail.end;
      records.forEach((r, i) => {
        offsets.writeBigUInt64LE(BigInt(at), i * 8);
        at += frame.HEADER + r.length;
      });
      wrap(`appending to ${entry}`, () => writeAll(log, bytes));
      wrap(`syncing ${entry}`, () => {
        fs.fdatasyncSync(log);
        // The files of a new key are entries of its directory.
        if (newKey) syncDir(dir);
      });
      // The records are durable: from here on the append has happened.
      // The rest is derived data; failing to write it is repaired by the
      // next writer's tail check and by a rebuild of the index, not
      // reported as a failed append (a retry would only get a conflict).
      try {
        writeAll(idx, offsets, tail.count * 8);
      } catch {
        // Repaired by the next writer's tail check.
      }
      try {
        this.index.put(c, k, summary);
      } catch {
        // Repaired by `agent-session fsck --repair` (a rebuild).
      }
    } finally {
      files.forEach((fd) => fs.closeSync(fd));
    }
  }

  /**
   * At most `limit` records of a key's log from position `from`.
   * @returns {Uint8Array[]}
   */
  read(c, k, from, limit) {
    const entry = this.#entry(c, k);
    const dir = path.join(this.root, entry);
    const log = wrap(`opening ${entry}`, () => openOrNull(path.join(dir, LOG), 'r'));
    if (log === null) return [];
    let idxFd = null;
    try {
      idxFd = wrap(`opening ${entry}`, () => openOrNull(path.join(dir, IDX), 'r'));
      return wrap(entry, () => this.#readRecords(entry, log, new Offsets(idxFd), from, limit));
    } finally {
      fs.closeSync(log);
      if (idxFd !== null) fs.closeSync(idxFd);
    }
  }

  #readRecords(entry, log, idx, from, limit) {
    const size = fs.fstatSync(log).size;
    // Start at the record's offset if the offsets file has it, else at the
    // last offset it has, and walk from there.
    const startPos = Math.min(from, Math.max(idx.len - 1, 0));
    const o = idx.get(startPos);
    const [start, firstSeq] = o !== null && o < size ? [o, startPos] : [0, 0];
    // Offsets the offsets file recorded are of committed records, so a
    // read that ends at one needs no look at what follows.
    const e = idx.get(from + limit);
    const bounded = e !== null && e > start && e <= size ? e : null;
    const readFrom = (start, firstSeq, end) => {
      const bytes = wrap(`reading ${entry}/${LOG}`, () => readAt(log, start, (end ?? size) - start));
      let w;
      try {
        w = frame.walk(bytes, start, firstSeq, end !== null);
      } catch (err) {
        if (err instanceof frame.Damage) throw damaged(entry, err.at, err.why);
        throw err;
      }
      // A bounded read must end where the offsets file said; if not, that
      // file is stale and the unbounded read decides.
      if (end !== null && end !== w.end) throw damaged(entry, w.end, 'stale offsets file');
      const out = [];
      for (let i = 0; i < w.offsets.length && out.length < limit; i++) {
        if (firstSeq + i < from) continue;
        const f = frame.decode(bytes.subarray(w.offsets[i] - start));
        if (f.whole) out.push(new Uint8Array(f.whole.payload));
      }
      return out;
    };
    try {
      return readFrom(start, firstSeq, bounded);
    } catch (err) {
      // The offsets file may be stale; the log itself decides.
      if (start !== 0 || bounded !== null) return readFrom(0, 0, null);
      throw err;
    }
  }

  /** Index entries of a collection, descending, after `after`. */
  scan(c, after, limit) {
    checkName('collection', c);
    return wrap(`reading index/${c}.log`, () => this.index.scan(c, after, limit));
  }

  /** Replace a key's summary without appending. */
  reindex(c, k, summary) {
    const entry = this.#entry(c, k);
    wrap(`indexing ${entry}`, () => this.index.put(c, k, summary));
  }

  /** Keys of a collection that have a log, descending, after `after`. */
  keys(c, after, limit) {
    checkName('collection', c);
    return wrap(`listing ${c}`, () =>
      this.#listDir(c)
        .filter((k) => (after == null || k < after) && fs.existsSync(path.join(this.root, c, k, LOG)))
        .slice(0, limit),
    );
  }

  /**
   * A key's document and its version, or null.
   * @returns {{ version: number, data: Uint8Array } | null}
   */
  get(c, k) {
    return this.#readDoc(this.#entry(c, k));
  }

  /**
   * Replace a key's document if its version is `expected` (0: absent);
   * returns the new version.
   * @param {string} c @param {string} k @param {Uint8Array} data
   * @param {number} expected @param {boolean} durable
   * @returns {number}
   */
  put(c, k, data, expected, durable) {
    const entry = this.#entry(c, k);
    if (data.length > frame.MAX_PAYLOAD) {
      throw new StoreError('full', `document of ${data.length} bytes`);
    }
    const dir = path.join(this.root, entry);
    if (expected === 0 && !fs.existsSync(dir)) {
      if (!durable) {
        // A snapshot written late, after its key was removed.
        throw conflict(`${entry} does not exist; a non-durable document never creates it`);
      }
      wrap(`creating ${entry}`, () => {
        const newCollection = !fs.existsSync(path.join(this.root, c));
        fs.mkdirSync(dir, { recursive: true });
        if (newCollection) syncDir(this.root);
        syncDir(path.join(this.root, c));
      });
    }
    const lock = this.#lock(entry);
    if (lock === null) throw conflict(`${entry} does not exist`);
    try {
      const current = this.#readDoc(entry)?.version ?? 0;
      if (current !== expected) {
        throw conflict(`expected version ${expected} of ${entry}, found ${current}`);
      }
      const version = current + 1;
      // Without `durable` still atomic (a reader sees the old or the new
      // document), but after a power loss it may be either, or unreadable:
      // asked only for data the history can rebuild.
      wrap(`writing ${entry}`, () => writeAtomically(dir, 'doc', encodeDoc(version, data), durable));
      return version;
    } finally {
      fs.closeSync(lock);
    }
  }

  /** Remove a key if its log holds exactly `expectedLength` records. */
  remove(c, k, expectedLength) {
    const entry = this.#entry(c, k);
    const dir = path.join(this.root, entry);
    if (!fs.existsSync(dir)) return;
    const lock = this.#lock(entry);
    // Removed by another writer meanwhile.
    if (lock === null) return;
    try {
      const length = wrap(entry, () => {
        const log = openOrNull(path.join(dir, LOG), 'r');
        if (log === null) return 0;
        const idx = openOrNull(path.join(dir, IDX), 'r');
        try {
          return this.#tail(entry, log, idx).count;
        } finally {
          fs.closeSync(log);
          if (idx !== null) fs.closeSync(idx);
        }
      });
      if (length !== expectedLength) {
        throw conflict(`${entry}: expected ${expectedLength} records, found ${length}`);
      }
      // Rename first: the key disappears atomically, and writers check
      // under the lock that their files are still at the key's path. Then
      // unlink the lock file, which tells readers with cached handles.
      const nanos = Number(process.hrtime.bigint() % 1_000_000_000n);
      const trash = path.join(this.root, c, `.trash-${k}-${process.pid}-${nanos}`);
      wrap(`removing ${entry}`, () => fs.renameSync(dir, trash));
      wrap(`syncing ${entry}`, () => syncDir(path.join(this.root, c)));
      try {
        fs.unlinkSync(path.join(trash, 'lock'));
      } catch {
        // Only a hint to readers; the rename was the removal.
      }
      try {
        this.index.put(c, k, Buffer.alloc(0));
      } catch {
        // Repaired by a rebuild of the index.
      }
      wrap(`deleting ${entry}`, () => fs.rmSync(trash, { recursive: true, force: true }));
    } finally {
      fs.closeSync(lock);
    }
  }

  #entry(c, k) {
    checkName('collection', c);
    checkName('key', k);
    return `${c}/${k}`;
  }

  #requestReindex() {
    writeAtomically(this.root, REINDEX, Buffer.alloc(0), true);
  }

  /** Valid key names in a collection directory, descending. */
  #listDir(c) {
    let names;
    try {
      names = fs.readdirSync(path.join(this.root, c));
    } catch (e) {
      if (e.code === 'ENOENT') return [];
      throw e;
    }
    return names.filter(isName).sort().reverse();
  }

  /** Take the key's writer lock; null if the key does not exist. Closing
   * the descriptor releases it. */
  #lock(entry) {
    try {
      return lockPath(path.join(this.root, entry, 'lock'), true);
    } catch (e) {
      if (e.code === 'ENOENT') return null;
      throw ioError(`locking ${entry}`, e);
    }
  }

  /** Whether the lock file held open is still the one at the key's path. */
  #current(lockFd, dir) {
    try {
      return fs.fstatSync(lockFd).ino === fs.statSync(path.join(dir, 'lock')).ino;
    } catch {
      return false;
    }
  }

  #readDoc(entry) {
    let bytes;
    try {
      bytes = fs.readFileSync(path.join(this.root, entry, 'doc'));
    } catch (e) {
      if (e.code === 'ENOENT') return null;
      throw ioError(`reading ${entry}/doc`, e);
    }
    const doc = decodeDoc(bytes);
    if (!doc) throw new StoreError('io', `${entry}/doc is damaged`);
    return doc;
  }

  /** Walk the whole log from the start. */
  #walkAll(entry) {
    const bytes = wrap(`reading ${entry}/${LOG}`, () => {
      try {
        return fs.readFileSync(path.join(this.root, entry, LOG));
      } catch (e) {
        if (e.code === 'ENOENT') return Buffer.alloc(0);
        throw e;
      }
    });
    try {
      return frame.walk(bytes, 0, 0);
    } catch (e) {
      if (e instanceof frame.Damage) throw damaged(entry, e.at, e.why);
      throw e;
    }
  }

  /**
   * Where a log's committed records end, how many there are, and how much
   * of the offsets file is right. Starts at the last recorded offset (O(1)
   * for a healthy log); falls back to a full walk if the offsets file does
   * not check out.
   */
  #tail(entry, log, idxFd) {
    const idx = new Offsets(idxFd);
    const size = fs.fstatSync(log).size;
    const last = idx.get(idx.len - 1);
    if (last !== null && last < size) {
      try {
        const w = frame.walk(readAt(log, last, size - last), last, idx.len - 1);
        if (w.offsets[0] === last) {
          return tail(idx.len - 1 + w.offsets.length, w.end, w.tornBytes, idx.len, idx.len, w.offsets.slice(1));
        }
      } catch {
        // The full walk below decides.
      }
    }
    const w = this.#walkAll(entry);
    return tail(w.offsets.length, w.end, w.tornBytes, 0, idx.len, w.offsets);
  }

  /** Make the log end at its last whole append and the offsets file match
   * it. The caller holds the key's lock. */
  #fixTail(entry, t, log, idx) {
    if (t.tornBytes > 0) {
      wrap(`cutting ${entry}/${LOG}`, () => {
        fs.ftruncateSync(log, t.end);
        fs.fsyncSync(log);
      });
    }
    if (t.idxValid !== t.idxLen || t.extra.length > 0) {
      wrap(`indexing ${entry}/${LOG}`, () => {
        const bytes = Buffer.alloc(t.extra.length * 8);
        t.extra.forEach((o, i) => bytes.writeBigUInt64LE(BigInt(o), i * 8));
        fs.ftruncateSync(idx, t.idxValid * 8);
        writeAll(idx, bytes, t.idxValid * 8);
      });
    }
  }
}

/** A log's committed end, as `#tail` found it. */
function tail(count, end, tornBytes, idxValid, idxLen, extra) {
  const clean = tornBytes === 0 && idxValid === idxLen && extra.length === 0;
  return { count, end, tornBytes, idxValid, idxLen, extra, clean };
}

/**
 * The WIT `store` interface over `store`, as jco calls it: u64s are
 * BigInts (positions and versions are Numbers inside: they stay far below
 * 2^53), failures thrown with a `store-error` payload.
 * @param {FsStore} store
 */
export function storeInterface(store) {
  const n = (v) => Number(v);
  // A system error the store did not name (it happens where none was
  // expected) is still a store error, not an exception through the
  // component.
  const guard = (what, f) => {
    try {
      return f();
    } catch (e) {
      throw ioError(what, e);
    }
  };
  return {
    append: (c, k, seq, records, summary) =>
      guard(`appending to ${c}/${k}`, () => store.append(c, k, n(seq), records, summary)),
    read: (c, k, from, limit) => guard(`reading ${c}/${k}`, () => store.read(c, k, n(from), limit)),
    scan: (c, after, limit) => guard(`scanning ${c}`, () => store.scan(c, after ?? null, limit)),
    reindex: (c, k, summary) => guard(`indexing ${c}/${k}`, () => store.reindex(c, k, summary)),
    keys: (c, after, limit) => guard(`listing ${c}`, () => store.keys(c, after ?? null, limit)),
    get: (c, k) =>
      guard(`reading ${c}/${k}`, () => {
        const doc = store.get(c, k);
        return doc === null ? undefined : { version: BigInt(doc.version), data: doc.data };
      }),
    put: (c, k, data, expected, durable) =>
      guard(`writing ${c}/${k}`, () => BigInt(store.put(c, k, data, n(expected), durable))),
    remove: (c, k, expectedLength) => guard(`removing ${c}/${k}`, () => store.remove(c, k, n(expectedLength))),
  };
}
