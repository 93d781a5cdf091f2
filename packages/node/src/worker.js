// The thread that runs the component for `openSessions` (index.js): it
// opens the synchronous API (sync.js) on the directory and answers calls,
// one at a time, in the order they were made. Calls come on the worker's
// port (answered with a message) and, for the few synchronous ones, on a
// second port, answered by a message plus a wake-up of the waiting thread.

import { parentPort, workerData } from 'node:worker_threads';
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

function run(method, args) {
  if (method === 'close') {
    sessions.close();
    return undefined;
  }
  return sessions[method](...args);
}

function answer(id, method, args) {
  try {
    return { id, ok: run(method, args) };
  } catch (e) {
    return { id, error: failure(e) };
  }
}

try {
  sessions = await openSessionsSync(options);
  parentPort.postMessage({ ready: true });
} catch (e) {
  parentPort.postMessage({ ready: false, error: failure(e) });
}

if (sessions) {
  parentPort.on('message', ({ id, method, args }) => parentPort.postMessage(answer(id, method, args)));
  syncPort.on('message', ({ id, method, args }) => {
    syncPort.postMessage(answer(id, method, args));
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
}
