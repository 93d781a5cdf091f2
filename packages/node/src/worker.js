// The thread that runs the component for `openSessions` (index.js): it
// opens the synchronous API (sync.js) on the directory and answers calls,
// one at a time, in the order they were made. Calls come on the worker's
// port (answered with a message) and, for the few synchronous ones, on a
// second port (answered by a message plus a wake-up of the waiting thread);
// the caller numbers them across both, and they run strictly in that order,
// whichever port delivers first. Calls made while the directory is being
// opened wait for it; if it could not be opened, each is answered with
// that failure. After `close`, every call is answered as closed.

import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { openSessionsSync } from './sync.js';
import { SessionError } from './error.js';

/** A failure as plain data, for the other thread to throw again. */
function failure(e) {
  if (e instanceof SessionError) return { kind: 'session', code: e.code, message: e.message };
  if (e instanceof TypeError) return { kind: 'type', message: e.message };
  return { kind: 'error', name: e?.name ?? 'Error', message: String(e?.message ?? e) };
}

const CLOSED = { kind: 'error', name: 'Error', message: 'agent-session: the sessions were closed' };

/** How long the worker looks for the next call after answering before it
 * goes back to sleep, in ms. An application awaiting its calls one by one
 * makes the next within tens of microseconds of getting the answer; a
 * worker that slept meanwhile takes about as long again to wake (measured:
 * 30-60 µs a wake-up on a 2-core VM, so a call cost two). */
const LINGER_MS = 0.25;

const { options, syncPort, wake } = workerData;
const flag = new Int32Array(wake);
let sessions;
/** Why no call can run: the opening's failure, or `close`. */
let refusal = null;
let opened = false;
/** Calls received, by number, waiting for their turn. */
const waiting = new Map();
let next = 1;

/** The reply to a call: at once, or a Promise of it (a method that waits,
 * as `stopDelivering` and a `close` that stops the webhook sender). */
function answer({ id, method, args }) {
  if (refusal) return { id, error: refusal };
  try {
    if (method === 'close') {
      refusal = CLOSED;
      // The attempts in flight are finished and recorded first.
      return sessions.stopDelivering().then(
        () => (sessions.close(), { id, ok: undefined }),
        (e) => (sessions.close(), { id, error: failure(e) }),
      );
    }
    const ok = sessions[method](...args);
    if (ok instanceof Promise) return ok.then((ok) => ({ id, ok }), (e) => ({ id, error: failure(e) }));
    return { id, ok };
  } catch (e) {
    return { id, error: failure(e) };
  }
}

/** Run every call whose turn it is. */
function drain() {
  if (!opened) return;
  for (let call = waiting.get(next); call; call = waiting.get(next)) {
    waiting.delete(next);
    next++;
    const reply = answer(call.message);
    if (reply instanceof Promise) reply.then((r) => post(r, call.sync));
    else post(reply, call.sync);
  }
}

function post(reply, sync) {
  if (sync) {
    syncPort.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  } else {
    parentPort.postMessage(reply);
  }
}

function receive(message, sync) {
  waiting.set(message.id, { message, sync });
  drain();
}

/** After answering, look for the next call a little while (see LINGER_MS). */
function linger() {
  for (let until = performance.now() + LINGER_MS; opened && !refusal && performance.now() < until; ) {
    const got = receiveMessageOnPort(parentPort);
    const sync = got ? null : receiveMessageOnPort(syncPort);
    if (got) receive(got.message, false);
    if (sync) receive(sync.message, true);
    if (got || sync) until = performance.now() + LINGER_MS;
  }
}

parentPort.on('message', (message) => {
  receive(message, false);
  linger();
});
syncPort.on('message', (message) => receive(message, true));

try {
  sessions = await openSessionsSync(options);
  parentPort.postMessage({ ready: true });
} catch (e) {
  refusal = failure(e);
  parentPort.postMessage({ ready: false, error: refusal });
}
opened = true;
drain();
