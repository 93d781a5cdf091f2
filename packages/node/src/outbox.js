// The notification outbox intake: the WIT `notify` interface, writing what
// the Rust outbox (`host/src/outbox.rs`) takes in. Delivery stays with the
// Rust sender (`agent-session deliver` on the same root).
//
// `enqueue` appends the notification, as the JSON of the Rust
// `Notification`, in a marked frame (marker `ASNQ`) to this process's
// intake segment `outbox/intake/<pid>-<16 hex>.log`: one write + fdatasync
// (the segment's directory entry was made durable when it was created). The
// process holds a shared flock on its segment while it may still write, so
// a sender can tell live segments from those of ended processes.

import fs from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';

import * as marked from './marked.js';
import { flock } from './flock.js';
import { syncDir, writeAll } from './files.js';

const OUTBOX_DIR = 'outbox';
const DONE_DIR = 'outbox/done';
const INTAKE_DIR = 'outbox/intake';
const INTAKE_MARK = Buffer.from('ASNQ');
/** A new segment past this size, so the old one can be taken in and
 * deleted while the process goes on. */
const SEGMENT_MAX = 4 << 20;

/**
 * The JSON of a notification as serde writes the Rust `Notification`
 * (snake_case keys, in declaration order; u64s as exact integers).
 * @param {{ id: string, sessionId: string, seq: bigint | number, url: string,
 *   secret: string, kind: string, timestamp: bigint | number, body: string }} n
 */
export function notificationJson(n) {
  const s = JSON.stringify;
  const u64 = (v) => BigInt(v).toString();
  return (
    `{"id":${s(n.id)},"session_id":${s(n.sessionId)},"seq":${u64(n.seq)},"url":${s(n.url)},` +
    `"secret":${s(n.secret)},"kind":${s(n.kind)},"timestamp":${u64(n.timestamp)},"body":${s(n.body)}}`
  );
}

/** The notification outbox of one root. */
export class Outbox {
  /**
   * The outbox of the root at `root` (its directories made if needed).
   * @param {string} root
   */
  static open(root) {
    root = path.resolve(root);
    if (!fs.existsSync(path.join(root, INTAKE_DIR))) {
      fs.mkdirSync(path.join(root, DONE_DIR), { recursive: true });
      fs.mkdirSync(path.join(root, INTAKE_DIR), { recursive: true });
      // Segments are trusted to be durable once their own entry is.
      syncDir(path.join(root, OUTBOX_DIR));
      syncDir(root);
    }
    return new Outbox(root);
  }

  /** @param {string} root an absolute path */
  constructor(root) {
    this.root = root;
    /** This process's segment: descriptor (holding the shared lock) and
     * name. @type {{ fd: number, name: string } | null} */
    this.segment = null;
  }

  /**
   * Queue a notification durably. Throws (an `Error`) if it could not be.
   * @param {Parameters<typeof notificationJson>[0]} n
   */
  enqueue(n) {
    // The core makes ids from `msg_` + UUID v7: safe file names. Check
    // anyway, since any component may call this import.
    if (typeof n.id !== 'string' || !/^[A-Za-z0-9_-]+$/.test(n.id)) {
      throw new Error(`notification id ${JSON.stringify(n.id)} is not a safe file name`);
    }
    const frame = marked.encode(INTAKE_MARK, Buffer.from(notificationJson(n)));
    try {
      const fd = this.#segmentFd();
      // O_APPEND and one write per frame: the frames of concurrent writers
      // never interleave.
      writeAll(fd, frame);
      fs.fdatasyncSync(fd);
    } catch (e) {
      // A failed write may have left part of a frame: later frames go to a
      // new segment, not behind it.
      this.#dropSegment();
      throw new Error(`queueing in ${INTAKE_DIR}: ${e.message}`);
    }
  }

  /** Release this process's segment (its lock goes with the descriptor). */
  close() {
    this.#dropSegment();
  }

  /** The segment to append to: the current one, or a new one. */
  #segmentFd() {
    if (this.segment && fs.fstatSync(this.segment.fd).size < SEGMENT_MAX) return this.segment.fd;
    const name = `${process.pid}-${randomBytes(8).toString('hex')}.log`;
    const intake = path.join(this.root, INTAKE_DIR);
    // Made under a name senders do not look at, and locked before it gets
    // its real one: a sender must never take a segment that is about to be
    // written for one whose process has ended.
    const fresh = path.join(intake, `.${name}.new`);
    const { O_WRONLY, O_APPEND, O_CREAT, O_EXCL } = fs.constants;
    const fd = fs.openSync(fresh, O_WRONLY | O_APPEND | O_CREAT | O_EXCL);
    try {
      flock(fd, false, fresh);
      fs.renameSync(fresh, path.join(intake, name));
      syncDir(intake);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    // The previous segment's lock goes with its descriptor.
    this.#dropSegment();
    this.segment = { fd, name };
    return fd;
  }

  #dropSegment() {
    if (this.segment) fs.closeSync(this.segment.fd);
    this.segment = null;
  }
}

/**
 * The WIT `notify` interface over `outbox`, as jco calls it: a failure is
 * thrown with its message as the `err` payload.
 * @param {Outbox} outbox
 */
export function notifyInterface(outbox) {
  return {
    enqueue(notification) {
      try {
        outbox.enqueue(notification);
      } catch (e) {
        throw Object.assign(new Error(e.message), { payload: e.message });
      }
    },
  };
}
