// The sessions the framework adapters (langgraph.js, openai-agents.js) work
// on: the `openSessions` / `openSessionsSync` object they were given, or
// one opened from a directory, shared by every adapter of this process on
// that directory (one worker per directory, however many threads or
// conversations) and closed when the last of them is closed. An idle
// worker keeps no process alive, so a program that never closes still
// exits.

import path from 'node:path';
import { openSessions } from './index.js';
import { SessionError } from './error.js';

/** @type {Map<string, { sessions: Promise<import('../index.d.ts').Sessions>, users: number }>} */
const opened = new Map();

/**
 * What an adapter works on: `store` is a directory (opened in a worker,
 * shared) or the object `openSessions` or `openSessionsSync` resolved to.
 * @param {unknown} store
 * @param {string} who the adapter's name, for messages
 * @returns {{ sessions: Promise<any>, release: () => Promise<void> }}
 */
export function use(store, who) {
  if (typeof store === 'string' && store !== '') {
    const dir = path.resolve(store);
    let entry = opened.get(dir);
    if (!entry) {
      entry = { sessions: openSessions({ dir }), users: 0 };
      // Failures reach the calls that use it; a failed opening is not kept.
      entry.sessions.catch(() => opened.get(dir) === entry && opened.delete(dir));
      opened.set(dir, entry);
    }
    entry.users += 1;
    let released = false;
    return {
      sessions: entry.sessions,
      async release() {
        if (released) return;
        released = true;
        entry.users -= 1;
        if (entry.users > 0) return;
        if (opened.get(dir) === entry) opened.delete(dir);
        await (await entry.sessions.catch(() => null))?.close();
      },
    };
  }
  if (store !== null && typeof store === 'object' && typeof store.putCheckpoint === 'function') {
    return { sessions: Promise.resolve(store), release: async () => {} };
  }
  throw new TypeError(`${who}: a directory or the sessions openSessions (or openSessionsSync) opened is required`);
}

/** Whether `e` says that the session named does not exist. */
export const notFound = (e) => e instanceof SessionError && e.code === 'not-found';

/**
 * Run `write` on a session named by `key`, starting the session first
 * (get-or-create by key: racing starts get one session) if it does not
 * exist yet.
 * @template T
 * @param {any} sessions
 * @param {{ key: string }} ref
 * @param {{ task: string, mode: string }} how
 * @param {() => T | Promise<T>} write
 * @returns {Promise<T>}
 */
export async function writing(sessions, ref, how, write) {
  try {
    return await write();
  } catch (e) {
    if (!notFound(e)) throw e;
  }
  await sessions.start({ key: ref.key, task: how.task, mode: how.mode });
  return write();
}
