// The session API on Node: the agent-session component (the same .wasm the
// Rust host runs) over a directory in the Rust store's format.
//
//   import { openSessions } from 'agent-session';
//   const s = await openSessions({ dir: './sessions' });
//   const session = await s.start({ task: 'write the parser' });
//   await s.iterate(session.id, { step: 1 });
//
// `openSessions` runs the component in a worker thread: every method
// returns a Promise and nothing blocks the application's event loop, not
// even a wait for a session another process is writing (bounded by
// `lockTimeoutMs`). Calls run one at a time, in the order they were made.
// `openSessionsSync` (sync.js) gives the same methods on the calling
// thread, synchronous. Both take and return the same values (see sync.js).

import { MessageChannel, Worker, receiveMessageOnPort } from 'node:worker_threads';
import { BUILT_IN_KINDS, SyncSessions, openSessionsSync } from './sync.js';
import { SessionError } from './error.js';
import { DEFAULT_LOCK_TIMEOUT_MS } from './root.js';

export { BUILT_IN_KINDS, SessionError, SyncSessions, openSessionsSync, DEFAULT_LOCK_TIMEOUT_MS };

/** The API's methods: those of the synchronous API. */
const METHODS = Object.getOwnPropertyNames(SyncSessions.prototype).filter(
  (m) => m !== 'constructor' && m !== 'close',
);

/** The method that sends a call to the worker (a symbol: not part of the
 * API, reachable from the methods made below). */
const CALL = Symbol('call');

/** A failure from the worker, as the synchronous API would have thrown it. */
function rethrown(f) {
  if (f.kind === 'session') return new SessionError(f.code, f.message);
  if (f.kind === 'type') return new TypeError(f.message);
  return Object.assign(new Error(f.message), { name: f.name });
}

/**
 * Open the sessions stored in `dir` (created if needed) in a worker thread.
 * @param {import('../index.d.ts').OpenOptions} options
 * @returns {Promise<Sessions>}
 */
export async function openSessions(options = {}) {
  const sessions = startSessions(options);
  try {
    await sessions[READY];
  } catch (e) {
    await sessions.close().catch(() => {});
    throw e;
  }
  return sessions;
}

/**
 * Start the worker that opens the sessions in `dir`, and return at once:
 * calls made meanwhile wait for the opening (and fail as it failed). For
 * the seed-names module, whose functions are plain calls.
 * @internal
 * @param {import('../index.d.ts').OpenOptions} options
 * @returns {Sessions}
 */
export function startSessions(options = {}) {
  // Checked here, so a bad option fails where it was given.
  if (typeof options?.dir !== 'string' || options.dir === '') {
    throw new TypeError('openSessions: `dir` (a directory) is required');
  }
  const { lockTimeoutMs = DEFAULT_LOCK_TIMEOUT_MS } = options;
  if (!(typeof lockTimeoutMs === 'number' && lockTimeoutMs >= 0)) {
    throw new TypeError(`openSessions: lockTimeoutMs must be a number of milliseconds (0 or more), not ${lockTimeoutMs}`);
  }
  const { port1, port2 } = new MessageChannel();
  const wake = new SharedArrayBuffer(4);
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: { options, syncPort: port2, wake },
    transferList: [port2],
  });
  return new Sessions(worker, port1, new Int32Array(wake), lockTimeoutMs);
}

/** The opening of a `Sessions`' directory (a symbol: not part of the API). */
const READY = Symbol('ready');

/**
 * The session API over one directory, in a worker thread: the methods of
 * `SyncSessions`, each returning a Promise of what it returns.
 */
export class Sessions {
  #worker;
  #syncPort;
  #wake;
  #syncBoundMs;
  #next = 1;
  /** @type {Map<number, { resolve: Function, reject: Function }>} */
  #pending = new Map();
  /** @type {Error | null} why no more calls can be made */
  #ended = null;
  /** The worker is opening the directory (and must keep the process
   * alive until it has). */
  #opening = true;
  /** @type {Promise<void> | null} */
  #closing = null;

  /** @internal use `openSessions` */
  constructor(worker, syncPort, wake, lockTimeoutMs) {
    this.#worker = worker;
    this.#syncPort = syncPort;
    this.#wake = wake;
    let opened;
    this[READY] = new Promise((resolve, reject) => {
      opened = { resolve, reject };
    });
    // Not awaited by everyone (the seed-names module never does).
    this[READY].catch(() => {});
    // A synchronous call waits for the calls before it and its own; each
    // may wait for a lock. Past this, the worker is taken for stuck.
    this.#syncBoundMs = Number.isFinite(lockTimeoutMs) ? 4 * lockTimeoutMs + 60_000 : Infinity;
    worker.on('message', ({ id, ok, error, ready }) => {
      if (id === undefined) {
        this.#opening = false;
        if (this.#pending.size === 0) worker.unref();
        if (ready) opened.resolve();
        else opened.reject(rethrown(error));
        return;
      }
      const call = this.#pending.get(id);
      if (!call) return;
      this.#pending.delete(id);
      if (this.#pending.size === 0 && !this.#opening) worker.unref();
      if (error) call.reject(rethrown(error));
      else call.resolve(ok);
    });
    const end = (why) => {
      this.#ended ??= why;
      for (const call of this.#pending.values()) call.reject(this.#ended);
      this.#pending.clear();
    };
    worker.on('error', (e) => {
      opened.reject(e);
      end(e);
    });
    worker.on('exit', () => {
      opened.reject(new Error('agent-session: the worker ended before the sessions were opened'));
      end(new Error('agent-session: the sessions were closed'));
    });
    // An idle worker does not keep the process alive (a program that
    // forgets `close()` still exits); one opening or answering does.
    syncPort.unref();
  }

  /** Call `method` in the worker. */
  [CALL](method, args) {
    if (this.#ended) return Promise.reject(this.#ended);
    return new Promise((resolve, reject) => {
      // Calls are numbered across both ports and run in that order; a
      // number is used only once its call was sent.
      const id = this.#next;
      try {
        this.#worker.postMessage({ id, method, args });
      } catch (e) {
        // An argument no thread can receive (a function, a symbol): as
        // the synchronous API refuses a value its WIT type cannot hold.
        reject(new SessionError('invalid-input', `${method}: an argument cannot be passed: ${e.message}`));
        return;
      }
      this.#next++;
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
    });
  }

  /**
   * Call `method` in the worker and wait for it on this thread (after the
   * calls made before it): for the few functions whose callers expect a
   * value at once (the seed-names module's `getSessionContext`).
   * @internal
   */
  callSync(method, args) {
    if (this.#ended) throw this.#ended;
    const id = this.#next;
    try {
      this.#syncPort.postMessage({ id, method, args });
    } catch (e) {
      throw new SessionError('invalid-input', `${method}: an argument cannot be passed: ${e.message}`);
    }
    this.#next++;
    const deadline = performance.now() + this.#syncBoundMs;
    for (;;) {
      // Cleared before looking: an answer posted after the look sets it
      // again, and the wait below returns at once.
      Atomics.store(this.#wake, 0, 0);
      const reply = receiveMessageOnPort(this.#syncPort)?.message;
      // Answers to earlier synchronous calls that gave up waiting come
      // first; they are dropped.
      if (reply && reply.id < id) continue;
      if (reply?.id === id) {
        if (reply.error) throw rethrown(reply.error);
        return reply.ok;
      }
      const left = deadline - performance.now();
      if (left <= 0) throw new Error(`agent-session: ${method} got no answer in ${this.#syncBoundMs} ms`);
      Atomics.wait(this.#wake, 0, 0, left);
    }
  }

  /** Release this process's outbox segment and end the worker, after the
   * calls made before; calls made after reject. */
  close() {
    this.#closing ??= (async () => {
      const closed = this[CALL]('close', []);
      this.#ended ??= new Error('agent-session: the sessions were closed');
      try {
        await closed;
      } catch {
        // Closed either way: the worker ends below.
      } finally {
        this.#syncPort.close();
        await this.#worker.terminate();
      }
    })();
    return this.#closing;
  }
}

for (const method of METHODS) {
  Object.defineProperty(Sessions.prototype, method, {
    value: {
      [method](...args) {
        return this[CALL](method, args);
      },
    }[method],
    writable: true,
    configurable: true,
  });
}
