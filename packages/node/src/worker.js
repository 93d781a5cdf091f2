// The thread that runs the component for `openSessions` (index.js): it
// opens the synchronous API (sync.js) on the directory and answers calls,
// one at a time, in the order they were made. Calls come on the worker's
// port (answered with a message) and, for the few synchronous ones, on a
// second port, answered by a message plus a wake-up of the waiting thread.
// Calls made while the directory is being opened wait for it; if it could
// not be opened, each is answered with that failure.

import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { openSessionsSync } from './sync.js';
import { SessionError } from './error.js';

/** A failure as plain data, for the other thread to throw again. */
function failure(e) {
  if (e instanceof SessionError) return { kind: 'session', code: e.code, message: e.message };
  if (e instanceof TypeError) return { kind: 'type', message: e.message };
  return { kind: 'error', name: e?.name ?? 'Error', message: String(e?.message ?? e) };
}

const { options, syncPort, wake } = workerData;
const flag = new Int32Array(wake);
let sessions;
let openFailure;

const opened = openSessionsSync(options).then(
  (s) => {
    sessions = s;
    parentPort.postMessage({ ready: true });
  },
  (e) => {
    openFailure = failure(e);
    parentPort.postMessage({ ready: false, error: openFailure });
  },
);

function answer(id, method, args) {
  if (openFailure) return { id, error: openFailure };
  try {
    return { id, ok: method === 'close' ? sessions.close() : sessions[method](...args) };
  } catch (e) {
    return { id, error: failure(e) };
  }
}

/** How long the worker looks for the next call after answering one
 * before it goes back to sleep, in ms. An application awaiting its calls
 * one by one makes the next within tens of microseconds of getting the
 * answer; a worker that slept meanwhile takes about as long again to wake
 * (measured: 30-60 µs a wake-up on a 2-core VM, so a call cost two). */
const LINGER_MS = 0.25;

function serve({ id, method, args }) {
  parentPort.postMessage(answer(id, method, args));
}

// Every call waits for the same opening, so they still run in the order
// they came.
parentPort.on('message', async (call) => {
  await opened;
  serve(call);
  for (let until = performance.now() + LINGER_MS; performance.now() < until; ) {
    const next = receiveMessageOnPort(parentPort);
    if (next) {
      serve(next.message);
      until = performance.now() + LINGER_MS;
    }
  }
});
syncPort.on('message', async ({ id, method, args }) => {
  await opened;
  syncPort.postMessage(answer(id, method, args));
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
});
