// The `root` capability of wit/session.wit (`agent:session/root`): one
// directory, the root, through which the directory-store component reaches
// the disk. This module is all the Node host's code that touches a root;
// see `interface root` in the WIT file for the contract (paths, refusals,
// error codes, each function's semantics) and tests/root/cases.json for the
// behaviour every host shares.
//
// Confinement (Linux only). The root directory is opened once; every path is
// then resolved beneath that descriptor, never following a symbolic link.
// A file is opened with one openat2(2) of the whole (validated) path with
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: the kernel
// refuses any symbolic link on the way or at the end, and any escape. When
// that fails (or the kernel has no openat2, before Linux 5.6), the path is
// resolved one segment at a time, which also says precisely what failed:
// each segment is opened with openat(2) in its parent's descriptor,
//
//     openat(dirfd, "<segment>", O_DIRECTORY | O_NOFOLLOW)
//
// and the segment is a single validated name (`[A-Za-z0-9._-]`, never `.`
// or `..`). O_NOFOLLOW refuses a symbolic link as the last component, so a
// directory reached this way is always a real directory beneath the root.
// The last segment of a path is then acted on by name in its parent's
// descriptor: `openat` with O_NOFOLLOW, and, where Node has no *at call,
// through the magic link of that descriptor (`/proc/self/fd/<dirfd>/<name>`:
// the kernel resolves it to exactly the directory the descriptor holds open,
// wherever it has been moved since) with `lstat`, `unlink`, `rmdir`,
// `mkdir` and `rename`, none of which follows a symbolic link in the last
// component. So nothing outside the root is read, written or removed,
// whatever the root contains or however it changes meanwhile. This needs
// /proc mounted (it is on every Linux system Node runs on) and no
// subprocess. The shared root cases run both ways (test/root.test.mjs).
//
// Node has no binding for openat2(2), openat(2) and flock(2): they are
// called from libc through koffi (an FFI with prebuilt binaries in its npm
// package). One openat2 is also far cheaper than a descriptor per segment
// (an append makes about ten `root` calls). flock locks
// are the ones the Rust and Python hosts take on the same files, so every
// host excludes every other.

import fs from 'node:fs';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';

const {
  O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY,
} = fs.constants;

/** Flags of every directory opened beneath the root. */
const DIR = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_NONBLOCK;
/** Flags added to every file opened beneath the root: a symbolic link is
 * refused, a FIFO or device never waited on, and a terminal never made the
 * controlling one: the file is opened first and checked after (fstat), so
 * whatever is there, the open must return at once and take nothing over.
 * The flags change nothing for a regular file. */
const FILE = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
/** Linux's O_CLOEXEC (x86-64 and arm64; `fs.constants` lacks it): Node
 * adds it to its own opens, `openAt` to its. */
const O_CLOEXEC = 0o2000000;
const FILE_MODE = 0o644;

/** A valid path segment (WIT: `[A-Za-z0-9._-]`, 1 to 255 bytes). */
const SEGMENT = /^[A-Za-z0-9._-]{1,255}$/;

/** errno (as Node names it) -> `error-code`; anything else is `io`. */
const CODES = {
  ENOENT: 'not-found',
  ENOTDIR: 'not-found',
  ENOSPC: 'full',
  EDQUOT: 'full',
  EROFS: 'read-only',
  ELOOP: 'refused',
  EEXIST: 'exists',
  ENOTEMPTY: 'exists',
};

/**
 * A failed call: what jco lowers into the WIT `failure` record. jco takes
 * an import's `err` case from the `payload` own property of what it throws
 * (its generated `getErrorPayload`), here `{ code, message }`.
 */
export class RootError extends Error {
  /**
   * @param {'not-found'|'exists'|'refused'|'gone'|'busy'|'full'|'read-only'|'io'} code
   * @param {string} message names the path
   */
  constructor(code, message) {
    super(message);
    this.name = 'RootError';
    this.code = code;
    this.payload = { code, message };
  }
}

const fail = (code, message) => new RootError(code, message);

/** What a system error says, without Node's `, open '/proc/self/fd/...'`
 * tail (the caller names the root-relative path instead). */
function describe(e) {
  const text = String(e?.message ?? e);
  const m = /^(E[A-Z0-9]+): ([^,]*)/.exec(text);
  return m ? `${m[2]} (${m[1]})` : text;
}

/** `e` as a RootError naming `path` (a RootError passes unchanged). */
function failure(e, what, code) {
  if (e instanceof RootError) return e;
  return fail(code ?? CODES[e?.code] ?? 'io', `${what}: ${describe(e)}`);
}

/** The name of `name` beneath the directory open as `fd`. */
const at = (fd, name) => `/proc/self/fd/${fd}/${name}`;

/**
 * Close a descriptor `sys.openAt` or `sys.openBeneath` opened (through libc,
 * as it was opened: in a worker thread, Node warns about a descriptor its
 * `fs` closes but did not open).
 */
function closeFd(fd) {
  const c = loadLibc();
  if (c.close(fd) !== 0) {
    const errno = c.errno();
    // EINTR: the descriptor is closed all the same on Linux.
    if (errno === c.EINTR) return;
    const code = c.names[errno] ?? `errno ${errno}`;
    throw Object.assign(new Error(`${code}: close failed`), { code, errno });
  }
}

function closeQuiet(fd) {
  try {
    closeFd(fd);
  } catch {
    // Nothing to do: the descriptor is gone either way.
  }
}

/** The segments of a WIT path (`[]` for `.`, the root), or `refused`. */
function segments(path) {
  if (typeof path !== 'string') throw fail('refused', `${JSON.stringify(path)} is not a path`);
  if (path === '.') return [];
  const parts = path.split('/');
  for (const part of parts) {
    if (!SEGMENT.test(part) || part === '.' || part === '..') {
      throw fail(
        'refused',
        `${JSON.stringify(path)} is not a valid path (segments of [A-Za-z0-9._-], 1 to 255 bytes, ` +
          'separated by "/", none of them "." or "..", or "." alone)',
      );
    }
  }
  return parts;
}

/** A path naming something in a directory: the directory's segments and
 * the last name. The root itself is `refused` (`what` says why). */
function entry(path, what) {
  const parts = segments(path);
  if (parts.length === 0) throw fail('refused', `"." is the root directory, ${what}`);
  return { dir: parts.slice(0, -1), name: parts[parts.length - 1] };
}

/** This process's effective user, read once (a process that changes it
 * with `process.seteuid` after loading this module is not supported). */
const EUID = BigInt(process.geteuid());

const toBigInt = (v) => (typeof v === 'bigint' ? v : BigInt(v));

/** A u64 the fs calls take as a number, or `io` past 2^53. */
function toNumber(v, what) {
  const n = toBigInt(v);
  if (n < 0n || n > BigInt(Number.MAX_SAFE_INTEGER)) throw fail('io', `${what}: ${n} is out of range`);
  return Number(n);
}

// openat(2) and flock(2), through koffi, loaded with the first root.
const LOCK_SH = 1;
const LOCK_EX = 2;
const LOCK_NB = 4;
let libc;

function loadLibc() {
  if (!libc) {
    const koffi = createRequire(import.meta.url)('koffi');
    // The process's own symbols: libc is loaded in every Node process.
    const lib = koffi.load(null);
    libc = {
      openat: lib.func('int openat(int dirfd, const char *path, int flags, ...)'),
      // syscall(2) is variadic; on Linux (x86-64, arm64) integer and
      // pointer arguments pass as for a fixed prototype, which koffi calls
      // faster.
      openat2: lib.func('long syscall(long number, int dirfd, const char *path, void *how, size_t size)'),
      flock: lib.func('int flock(int fd, int operation)'),
      close: lib.func('int close(int fd)'),
      errno: () => koffi.errno(),
      setErrno: (v) => koffi.errno(v),
      EINTR: koffi.os.errno.EINTR,
      EAGAIN: koffi.os.errno.EAGAIN,
      ENOENT: koffi.os.errno.ENOENT,
      ENOSYS: koffi.os.errno.ENOSYS,
      EPERM: koffi.os.errno.EPERM,
      EWOULDBLOCK: koffi.os.errno.EWOULDBLOCK ?? koffi.os.errno.EAGAIN,
      names: Object.fromEntries(Object.entries(koffi.os.errno).map(([k, v]) => [v, k])),
    };
  }
  return libc;
}

/** openat(2) of the single segment `name` beneath `dirfd`: the descriptor,
 * or a thrown Error whose `code` is the errno's name, as Node's fs errors. */
function openAt(dirfd, name, flags, mode = 0) {
  const c = loadLibc();
  for (;;) {
    const fd = c.openat(dirfd, name, flags | O_CLOEXEC, 'uint32_t', mode);
    if (fd >= 0) return fd;
    const errno = c.errno();
    if (errno === c.EINTR) continue;
    const code = c.names[errno] ?? `errno ${errno}`;
    throw Object.assign(new Error(`${code}: open failed`), { code, errno });
  }
}

/** openat2(2)'s number (the same on every Linux architecture). */
const SYS_OPENAT2 = 437;
/** RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS: the
 * kernel resolves the whole path beneath the descriptor, refusing any
 * symbolic link on the way or at the end (ELOOP) and any escape. */
const RESOLVE = 0x08n | 0x04n | 0x02n;
/** Linux's O_PATH (x86-64 and arm64): a descriptor only to fstat. */
const O_PATH = 0o10000000;
/** openat2's `struct open_how` (flags, mode, resolve: three u64s), reused. */
const HOW = Buffer.alloc(24);
HOW.writeBigUInt64LE(RESOLVE, 16);
/** False once the kernel (or a seccomp filter) refuses openat2. */
let openat2Works = true;

/**
 * openat2(2) of a whole validated path beneath `dirfd`, confined by the
 * kernel (see RESOLVE): the descriptor, or a negative errno. `undefined`
 * where openat2 is missing (Linux before 5.6). A failure is never final:
 * the caller resolves the path again one segment at a time, which says
 * precisely what is wrong where.
 */
function openBeneath(dirfd, path, flags, mode = 0) {
  if (!openat2Works) return undefined;
  const c = loadLibc();
  // Flags and mode fit in 32 bits; their high halves stay zero.
  HOW.writeUInt32LE(flags | O_CLOEXEC, 0);
  // openat2 refuses (EINVAL) a mode without O_CREAT.
  HOW.writeUInt32LE(flags & O_CREAT ? mode : 0, 8);
  for (;;) {
    const fd = Number(c.openat2(SYS_OPENAT2, dirfd, path, HOW, HOW.length));
    if (fd >= 0) return fd;
    const errno = c.errno();
    if (errno === c.EINTR) continue;
    // ENOSYS: a kernel before 5.6; EPERM: a seccomp filter refusing the
    // call (older container runtimes). Either way, segments from now on.
    if (errno === c.ENOSYS || errno === c.EPERM) {
      openat2Works = false;
      return undefined;
    }
    return -errno;
  }
}

/** How long a waiting `lock` waits by default before failing with `busy`:
 * far longer than any one operation holds a session's lock, short enough
 * that a stuck holder (a process stopped in a debugger, say) surfaces as an
 * error instead of a hang. */
export const DEFAULT_LOCK_TIMEOUT_MS = 5000;

/** The system calls this module makes through koffi, called through this
 * object so a test can watch them (the flags of every open). */
export const sys = { openAt, openBeneath };

/** flock `fd`: true when granted, false when LOCK_NB found it held. */
function flock(fd, operation, what) {
  const c = loadLibc();
  for (;;) {
    c.setErrno(0);
    if (c.flock(fd, operation) === 0) return true;
    const errno = c.errno();
    if (errno === c.EINTR) continue;
    if (errno === c.EWOULDBLOCK && (operation & LOCK_NB) !== 0) return false;
    const name = c.names[errno] ?? `errno ${errno}`;
    throw fail(CODES[name] ?? 'io', `${what}: flock failed (${name})`);
  }
}

/** Sleep the calling thread (a worker's, or the main thread of the
 * synchronous API, which blocks on every call anyway). */
const sleeper = new Int32Array(new SharedArrayBuffer(4));
const sleep = (ms) => Atomics.wait(sleeper, 0, 0, ms);

/**
 * flock `fd` waiting at most `timeoutMs`: true when granted, false when
 * the time passed. A blocking flock(2) cannot be given up on, so the lock
 * is tried without blocking, with pauses growing from 1 to 10 ms (a waiter
 * blocked in flock, as the Rust and Python hosts wait, gets a released
 * lock first; short pauses keep this one from losing every time).
 */
function flockWithin(fd, operation, timeoutMs, what) {
  const deadline = performance.now() + timeoutMs;
  for (let pause = 1; ; pause = Math.min(pause * 2, 10)) {
    if (flock(fd, operation | LOCK_NB, what)) return true;
    const left = deadline - performance.now();
    if (left <= 0) return false;
    sleep(Math.min(pause, left));
  }
}

/**
 * A directory granted as the `root` capability.
 *
 * Every method takes and returns what jco passes for the WIT types (u64 as
 * BigInt, `list<u8>` as Uint8Array, `option` as value or undefined) and
 * fails by throwing a {@link RootError}, never anything else.
 */
export class Root {
  #fd;
  #owner;
  #path;
  /** @type {Map<bigint, number>} lock handle -> descriptor */
  #locks = new Map();
  #nextHandle = 1n;

  /**
   * Open the directory at `dir` (creating it and its parents if missing):
   * the one ambient open; everything else is beneath it.
   * @param {string} dir
   */
  #lockTimeoutMs;

  /**
   * @param {string} dir
   * @param {{ lockTimeoutMs?: number }} [options] how long a waiting
   *   `lock` waits before failing with `busy` (default: 5000 ms; Infinity:
   *   no bound)
   */
  constructor(dir, { lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS } = {}) {
    if (!(typeof lockTimeoutMs === 'number' && lockTimeoutMs >= 0)) {
      throw new TypeError(`lockTimeoutMs must be a number of milliseconds (0 or more), not ${lockTimeoutMs}`);
    }
    this.#lockTimeoutMs = lockTimeoutMs;
    fs.mkdirSync(dir, { recursive: true });
    loadLibc();
    // Opened through `fs`, closed through `fs` (see closeFd).
    this.#fd = fs.openSync(dir, O_RDONLY | O_DIRECTORY);
    try {
      this.#owner = fs.fstatSync(this.#fd, { bigint: true }).uid;
    } catch (e) {
      fs.closeSync(this.#fd);
      throw e;
    }
    this.#path = dir;
  }

  /** The directory this root was opened on. */
  get path() {
    return this.#path;
  }

  /** Release every lock still held (the component instance that took
   * them is gone). */
  releaseLocks() {
    for (const fd of this.#locks.values()) closeQuiet(fd);
    this.#locks.clear();
  }

  /** Release every lock still held and close the root. */
  close() {
    for (const fd of this.#locks.values()) closeQuiet(fd);
    this.#locks.clear();
    if (this.#fd !== undefined) {
      try {
        fs.closeSync(this.#fd);
      } catch {
        // Gone either way.
      }
    }
    this.#fd = undefined;
  }

  // --- resolution -----------------------------------------------------

  #rootFd() {
    if (this.#fd === undefined) throw fail('io', `the root ${this.#path} is closed`);
    return this.#fd;
  }

  /**
   * Open directory `name` beneath `dirfd`. A symbolic link is `refused`;
   * a missing entry `not-found`; another non-directory `not-found` on the
   * way (`last` false) and `refused` as the path itself.
   */
  #openDirAt(dirfd, name, shown, last) {
    try {
      return sys.openAt(dirfd, name, DIR);
    } catch (e) {
      if (e.code === 'ENOTDIR' || e.code === 'ELOOP') {
        let st = null;
        try {
          st = fs.lstatSync(at(dirfd, name));
        } catch {
          // Gone meanwhile: not found.
        }
        if (st?.isSymbolicLink()) throw fail('refused', `${shown} is a symbolic link; refusing to follow it`);
        if (st && last) throw fail('refused', `${shown} is not a directory`);
        throw fail('not-found', `${shown} is not a directory`);
      }
      throw failure(e, shown);
    }
  }

  /**
   * Run `fn(fd)` on the directory `parts` names (the root for `[]`), then
   * close what was opened. `lastIsPath`: the last segment is the path
   * itself (a non-directory there is `refused`, not `not-found`).
   */
  #inDir(parts, path, fn, lastIsPath = false) {
    const root = this.#rootFd();
    let fd = root;
    try {
      for (let i = 0; i < parts.length; i++) {
        const prefix = parts.slice(0, i + 1).join('/');
        const shown = prefix === path ? path : `${prefix} (on the way to ${path})`;
        const next = this.#openDirAt(fd, parts[i], shown, lastIsPath && i === parts.length - 1);
        // The descriptor is released even if close reports an error.
        const done = fd;
        fd = next;
        if (done !== root) closeFd(done);
      }
      return fn(fd);
    } finally {
      if (fd !== root) closeQuiet(fd);
    }
  }

  /** Refuse an opened file unless it is a regular file with one link, of
   * the root's owner or of this user. Returns its (bigint) stats. */
  #checkFile(fd, path, unlinked = 'not-found') {
    const st = fs.fstatSync(fd, { bigint: true });
    if (!st.isFile()) throw fail('refused', `${path} is not a regular file; refusing it`);
    if (st.nlink > 1n) {
      throw fail('refused', `${path} has ${st.nlink} hard links (a file elsewhere?); refusing it`);
    }
    if (st.nlink === 0n) throw fail(unlinked, `${path} was removed while it was opened`);
    this.#checkOwner(st, path);
    return st;
  }

  #checkOwner(st, path) {
    const me = EUID;
    if (st.uid !== this.#owner && st.uid !== me) {
      throw fail(
        'refused',
        `${path} belongs to user ${st.uid}, neither the root's owner (${this.#owner}) nor this user (${me}); refusing it`,
      );
    }
  }

  /** Open the file at `path` with `flags` (plus O_NOFOLLOW | O_NONBLOCK | O_NOCTTY),
   * check it, and run `fn(fd, stats)`; the file is closed after, unless
   * `keep` and `fn` returned the descriptor itself. One openat2 when it
   * succeeds; else the path is resolved one segment at a time, which
   * names what failed. */
  #withFile(path, flags, fn, { keep = false, unlinked } = {}) {
    const { dir, name } = entry(path, 'not a file');
    const fast = sys.openBeneath(this.#rootFd(), path, flags | FILE, FILE_MODE);
    if (fast >= 0) return this.#useFile(fast, path, fn, keep, unlinked);
    // Missing, or a directory on the way is (no link was met: that is
    // ELOOP): what the segments would say too, without resolving them.
    if (fast === -loadLibc().ENOENT) throw fail('not-found', `${path}: no such file or directory (ENOENT)`);
    return this.#inDir(dir, path, (dirfd) => {
      let fd;
      try {
        fd = sys.openAt(dirfd, name, flags | FILE, FILE_MODE);
      } catch (e) {
        // A directory opened for writing (EISDIR), a FIFO without a reader
        // or a socket (ENXIO): not a regular file.
        if (e.code === 'EISDIR' || e.code === 'ENXIO') throw failure(e, path, 'refused');
        throw failure(e, path);
      }
      return this.#useFile(fd, path, fn, keep, unlinked);
    });
  }

  /** Check the file open as `fd` and run `fn(fd, stats)` (see #withFile). */
  #useFile(fd, path, fn, keep, unlinked) {
    let result;
    try {
      const st = this.#checkFile(fd, path, unlinked);
      result = fn(fd, st);
      return result;
    } finally {
      if (!keep || result !== fd) closeQuiet(fd);
    }
  }

  /** What is at `path` itself, never following a link (lstat): its
   * stats, or `undefined` when nothing is (ENOENT). Resolved segment by
   * segment when openat2 cannot say. */
  #lstat(path) {
    const fd = sys.openBeneath(this.#rootFd(), path, O_PATH | O_NOFOLLOW);
    if (fd >= 0) {
      try {
        return fs.fstatSync(fd, { bigint: true });
      } finally {
        closeQuiet(fd);
      }
    }
    if (fd === -loadLibc().ENOENT) return undefined;
    const { dir, name } = entry(path, 'not a file');
    return this.#inDir(dir, path, (dirfd) => {
      try {
        return fs.lstatSync(at(dirfd, name), { bigint: true });
      } catch (e) {
        if (e.code === 'ENOENT') return undefined;
        throw failure(e, path);
      }
    });
  }

  /** Run one call: any error but a RootError becomes one naming `path`. */
  #call(what, fn) {
    try {
      return fn();
    } catch (e) {
      throw failure(e, what);
    }
  }

  // --- the WIT functions ----------------------------------------------

  /** @returns {{size: bigint, id: bigint, directory: boolean} | undefined} */
  stat(path) {
    return this.#call(`stat ${path}`, () => {
      const parts = segments(path);
      if (parts.length === 0) {
        const st = fs.fstatSync(this.#rootFd(), { bigint: true });
        return { size: 0n, id: st.ino, directory: true };
      }
      try {
        const st = this.#lstat(path);
        if (st === undefined) return undefined;
        if (st.isDirectory()) return { size: 0n, id: st.ino, directory: true };
        if (st.isSymbolicLink()) throw fail('refused', `${path} is a symbolic link; refusing it`);
        if (!st.isFile()) throw fail('refused', `${path} is not a regular file; refusing it`);
        if (st.nlink > 1n) throw fail('refused', `${path} has ${st.nlink} hard links; refusing it`);
        this.#checkOwner(st, path);
        return { size: st.size, id: st.ino, directory: false };
      } catch (e) {
        // Nothing is at a path whose directory is missing.
        if (e instanceof RootError && e.code === 'not-found') return undefined;
        throw e;
      }
    });
  }

  /** @returns {Uint8Array} */
  read(path, offset, len) {
    return this.#call(`read ${path}`, () => {
      const from = toBigInt(offset);
      const want = toBigInt(len);
      return this.#withFile(path, O_RDONLY, (fd, st) => {
        const available = from < st.size ? st.size - from : 0n;
        const n = Number(want < available ? want : available);
        const buf = Buffer.alloc(n);
        let got = 0;
        while (got < n) {
          const r = fs.readSync(fd, buf, got, n - got, from + BigInt(got));
          if (r === 0) break;
          got += r;
        }
        return new Uint8Array(buf.buffer, buf.byteOffset, got);
      });
    });
  }

  /** @returns {bigint} the size after the append */
  append(path, bytes, sync) {
    return this.#call(`append ${path}`, () =>
      this.#withFile(path, O_WRONLY | O_APPEND | O_CREAT, (fd) => {
        writeAll(fd, bytes, null);
        if (sync) fs.fdatasyncSync(fd);
        return fs.fstatSync(fd, { bigint: true }).size;
      }),
    );
  }

  writeAt(path, offset, bytes) {
    return this.#call(`write-at ${path}`, () => {
      const position = toNumber(offset, `write-at ${path}`);
      this.#withFile(path, O_WRONLY | O_CREAT, (fd) => {
        fs.ftruncateSync(fd, position);
        writeAll(fd, bytes, position);
      });
    });
  }

  truncate(path, size, sync) {
    return this.#call(`truncate ${path}`, () => {
      const to = toBigInt(size);
      this.#withFile(path, O_WRONLY, (fd, st) => {
        if (to < st.size) fs.ftruncateSync(fd, Number(to));
        if (sync) fs.fsyncSync(fd);
      });
    });
  }

  replace(path, bytes, sync) {
    return this.#call(`replace ${path}`, () => {
      const { dir, name } = entry(path, 'not a file');
      this.#inDir(dir, path, (dirfd) => {
        // Where stat would refuse, replace refuses too (even though the
        // rename would only replace the entry).
        let st = null;
        try {
          st = fs.lstatSync(at(dirfd, name), { bigint: true });
        } catch (e) {
          if (e.code !== 'ENOENT') throw failure(e, path);
        }
        if (st) {
          if (st.isSymbolicLink()) throw fail('refused', `${path} is a symbolic link; refusing it`);
          if (!st.isFile()) throw fail('refused', `${path} is not a regular file; refusing it`);
          if (st.nlink > 1n) throw fail('refused', `${path} has ${st.nlink} hard links; refusing it`);
          this.#checkOwner(st, path);
        }
        const tmp = `.${name.slice(0, 200)}.${process.pid}-${crypto.randomBytes(8).toString('hex')}.tmp`;
        let fd;
        try {
          fd = sys.openAt(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | FILE, FILE_MODE);
        } catch (e) {
          throw failure(e, `${path} (temporary ${tmp})`);
        }
        let renamed = false;
        try {
          writeAll(fd, bytes, null);
          if (sync) fs.fsyncSync(fd);
          // Released even if close reports an error (never closed twice).
          const written = fd;
          fd = undefined;
          closeFd(written);
          fs.renameSync(at(dirfd, tmp), at(dirfd, name));
          renamed = true;
        } catch (e) {
          throw failure(e, path, e.code === 'EISDIR' ? 'refused' : undefined);
        } finally {
          if (fd !== undefined) closeQuiet(fd);
          if (!renamed) {
            try {
              fs.unlinkSync(at(dirfd, tmp));
            } catch {
              // Best effort: a stray temporary file is harmless.
            }
          }
        }
        if (sync) fs.fsyncSync(dirfd);
      });
    });
  }

  /** @returns {boolean} whether `path` was made by this call */
  createDir(path, sync) {
    return this.#call(`create-dir ${path}`, () => {
      const parts = segments(path);
      const root = this.#rootFd();
      let fd = root;
      let made = false;
      try {
        for (let i = 0; i < parts.length; i++) {
          const name = parts[i];
          const prefix = parts.slice(0, i + 1).join('/');
          const shown = prefix === path ? path : `${prefix} (on the way to ${path})`;
          made = false;
          let next;
          for (let attempt = 0; next === undefined; attempt++) {
            try {
              next = sys.openAt(fd, name, DIR);
            } catch (e) {
              if (e.code === 'ENOENT' && attempt < 3) {
                try {
                  fs.mkdirSync(at(fd, name));
                  made = true;
                  if (sync) fs.fsyncSync(fd);
                } catch (e2) {
                  // Made by someone else meanwhile: open it.
                  if (e2.code !== 'EEXIST') throw failure(e2, shown);
                }
                continue;
              }
              if (e.code === 'ENOTDIR' || e.code === 'ELOOP') {
                let st = null;
                try {
                  st = fs.lstatSync(at(fd, name));
                } catch {
                  // Gone meanwhile.
                }
                if (st?.isSymbolicLink()) throw fail('refused', `${shown} is a symbolic link; refusing to follow it`);
                throw fail('exists', `${shown} exists and is not a directory`);
              }
              throw failure(e, shown);
            }
          }
          const done = fd;
          fd = next;
          if (done !== root) closeFd(done);
        }
        return made;
      } finally {
        if (fd !== root) closeQuiet(fd);
      }
    });
  }

  syncDir(path) {
    return this.#call(`sync-dir ${path}`, () => {
      this.#inDir(segments(path), path, (fd) => fs.fsyncSync(fd), true);
    });
  }

  /** @returns {string[]} */
  list(path) {
    return this.#call(`list ${path}`, () =>
      this.#inDir(segments(path), path, (fd) => fs.readdirSync(`/proc/self/fd/${fd}`), true),
    );
  }

  rename(from, to) {
    return this.#call(`rename ${from} to ${to}`, () => {
      const src = entry(from, 'which is never moved');
      const dst = entry(to, 'which is never replaced');
      this.#inDir(src.dir, from, (fromfd) =>
        this.#inDir(dst.dir, to, (tofd) => {
          try {
            fs.renameSync(at(fromfd, src.name), at(tofd, dst.name));
          } catch (e) {
            // A file over a directory (EISDIR) or a directory over a file
            // (ENOTDIR, the parents being resolved already): exists.
            const code = e.code === 'EISDIR' || e.code === 'ENOTDIR' ? 'exists' : undefined;
            throw failure(e, `rename ${from} to ${to}`, code);
          }
        }),
      );
    });
  }

  /** @returns {boolean} false if nothing was there */
  removeFile(path) {
    return this.#call(`remove-file ${path}`, () => {
      const { dir, name } = entry(path, 'which is never removed');
      try {
        return this.#inDir(dir, path, (dirfd) => {
          try {
            fs.unlinkSync(at(dirfd, name));
            return true;
          } catch (e) {
            if (e.code === 'ENOENT') return false;
            if (e.code === 'EISDIR') throw fail('refused', `${path} is a directory, not a file`);
            throw failure(e, path);
          }
        });
      } catch (e) {
        if (e instanceof RootError && e.code === 'not-found') return false;
        throw e;
      }
    });
  }

  /** @returns {boolean} false if nothing was there */
  removeTree(path) {
    return this.#call(`remove-tree ${path}`, () => {
      const { dir, name } = entry(path, 'which is never removed');
      try {
        return this.#inDir(dir, path, (dirfd) => {
          let st;
          try {
            st = fs.lstatSync(at(dirfd, name));
          } catch (e) {
            if (e.code === 'ENOENT') return false;
            throw failure(e, path);
          }
          if (st.isSymbolicLink()) throw fail('refused', `${path} is a symbolic link; refusing it`);
          if (!st.isDirectory()) throw fail('refused', `${path} is not a directory`);
          removeDirAt(dirfd, Buffer.from(name), path, true);
          return true;
        });
      } catch (e) {
        if (e instanceof RootError && e.code === 'not-found' && !e.removing) return false;
        throw e;
      }
    });
  }

  /** @returns {bigint | undefined} a handle, or none if not granted */
  lock(path, exclusive, wait) {
    return this.#call(`lock ${path}`, () => {
      const operation = (exclusive ? LOCK_EX : LOCK_SH) | (wait ? 0 : LOCK_NB);
      const fd = this.#withFile(
        path,
        O_RDONLY | O_CREAT,
        (fd) => {
          const granted =
            wait && Number.isFinite(this.#lockTimeoutMs)
              ? flockWithin(fd, operation, this.#lockTimeoutMs, `lock ${path}`)
              : flock(fd, operation, `lock ${path}`);
          if (!granted && wait) {
            throw fail('busy', `${path}: another process held the lock for more than ${this.#lockTimeoutMs} ms`);
          }
          if (!granted) return undefined;
          // Granted: the file locked must still be the one at the path
          // (resolved again from the root: its directory may have moved).
          const mine = fs.fstatSync(fd, { bigint: true });
          let there = null;
          try {
            there = this.#lstat(path);
          } catch (e) {
            // Not there any more (ENOENT), or a directory on the way is
            // missing or now a link: gone. Anything else is a failure.
            const missing = e instanceof RootError ? e.code === 'not-found' || e.code === 'refused' : e.code === 'ENOENT';
            if (!missing) throw e;
          }
          if (mine.nlink === 0n || !there || there.ino !== mine.ino || there.dev !== mine.dev) {
            throw fail('gone', `${path} was removed or replaced while it was being locked`);
          }
          return fd;
        },
        { keep: true, unlinked: 'gone' },
      );
      if (fd === undefined) return undefined;
      const handle = this.#nextHandle++;
      this.#locks.set(handle, fd);
      return handle;
    });
  }

  unlock(handle) {
    try {
      const key = toBigInt(handle);
      const fd = this.#locks.get(key);
      if (fd === undefined) return;
      this.#locks.delete(key);
      // Closing the only descriptor of the open file releases its flock.
      closeQuiet(fd);
    } catch {
      // An unknown (or unreadable) handle is ignored.
    }
  }
}

/** Write all of `bytes` to `fd` (at `position`, or where the fd is: the
 * end for O_APPEND). One write unless the kernel takes fewer bytes. */
function writeAll(fd, bytes, position) {
  const data = bytes instanceof Uint8Array ? bytes : Uint8Array.from(bytes ?? []);
  let done = 0;
  while (done < data.length) {
    const n = fs.writeSync(fd, data, done, data.length - done, position === null ? null : position + done);
    if (n <= 0) throw Object.assign(new Error('EIO: write made no progress'), { code: 'EIO' });
    done += n;
  }
}

/**
 * Remove the directory `name` (a Buffer) beneath `dirfd` and everything in
 * it. Each entry is unlinked by name in its own directory's descriptor, so
 * a symbolic link is removed, never followed; a directory is opened with
 * O_NOFOLLOW before it is entered, so one swapped for a link meanwhile is
 * not entered either.
 */
function removeDirAt(dirfd, name, shown, top = false) {
  const base = (fd) => Buffer.from(`/proc/self/fd/${fd}/`);
  const child = (fd, n) => Buffer.concat([base(fd), n]);
  const mark = (e, what) => Object.assign(failure(e, what), { removing: true });
  let fd;
  try {
    fd = fs.openSync(child(dirfd, name), DIR);
  } catch (e) {
    if (e.code === 'ENOENT') return;
    if (e.code !== 'ENOTDIR' && e.code !== 'ELOOP') throw mark(e, shown);
    // No longer a directory (swapped meanwhile): the path itself is
    // refused; an entry inside the tree is removed like any other.
    if (top) throw Object.assign(fail('refused', `${shown} is not a directory`), { removing: true });
    try {
      fs.unlinkSync(child(dirfd, name));
    } catch (e2) {
      if (e2.code !== 'ENOENT') throw mark(e2, shown);
    }
    return;
  }
  try {
    const names = fs.readdirSync(base(fd), { encoding: 'buffer' });
    for (const n of names) {
      const what = `${shown}/${n.toString()}`;
      try {
        fs.unlinkSync(child(fd, n));
      } catch (e) {
        if (e.code === 'ENOENT') continue;
        if (e.code !== 'EISDIR') throw mark(e, what);
        removeDirAt(fd, n, what);
      }
    }
  } finally {
    // Opened through `fs` (a name of any bytes), closed through it.
    try {
      fs.closeSync(fd);
    } catch {
      // Gone either way.
    }
  }
  try {
    fs.rmdirSync(child(dirfd, name));
  } catch (e) {
    if (e.code !== 'ENOENT') throw mark(e, shown);
  }
}

/**
 * The import object jco's transpiled component takes for
 * `agent:session/root`: the root's functions, bound, each failing only by
 * throwing a {@link RootError} (jco lowers its `payload` into the WIT
 * `failure`); `unlock` never throws.
 * @param {Root} root
 */
export function rootImports(root) {
  const guard =
    (name, f) =>
    (...args) => {
      try {
        return f.apply(root, args);
      } catch (e) {
        throw failure(e, name);
      }
    };
  return {
    stat: guard('stat', root.stat),
    read: guard('read', root.read),
    append: guard('append', root.append),
    writeAt: guard('write-at', root.writeAt),
    truncate: guard('truncate', root.truncate),
    replace: guard('replace', root.replace),
    createDir: guard('create-dir', root.createDir),
    syncDir: guard('sync-dir', root.syncDir),
    list: guard('list', root.list),
    rename: guard('rename', root.rename),
    removeFile: guard('remove-file', root.removeFile),
    removeTree: guard('remove-tree', root.removeTree),
    lock: guard('lock', root.lock),
    unlock: (handle) => {
      try {
        root.unlock(handle);
      } catch {
        // unlock has no error case.
      }
    },
  };
}
