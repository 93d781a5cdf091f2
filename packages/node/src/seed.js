// The function names and argument shapes of the TypeScript module this
// package replaces (`agent-session/seed`), over the same engine: a program
// written against that module moves over by changing its import line.
//
//   import { startSession, incrementIteration, completeSession } from 'agent-session/seed';
//   const session = await startSession('Implement feature X', 'developer', { userId: 'u1', maxIterations: 50 });
//   await incrementIteration(session.id, { phase: 'analysis' });
//   await completeSession(session.id, 'done');
//
// The sessions live in `./.agent-sessions` (relative to the working
// directory when first used) unless `AGENT_SESSION_DIR` or `configure({ dir })`
// says otherwise. One worker (index.js) serves every call of the process.
// Lifecycle, event and query functions return Promises, as in the
// original; `getSessionContext`, `isSessionResumable`, `getSessionDuration`
// and `getSessionProgress` answer at once (the original's usage calls
// `getSessionContext` without `await`), waiting on this thread for the
// worker. Every rule is the engine's: this module only renames and
// reshapes arguments and results (see index.d.ts for each shape).

import path from 'node:path';
import { SessionError, startSessions } from './index.js';

export { SessionError };

/** The directory of the original module, relative to the working directory. */
const DEFAULT_DIR = '.agent-sessions';

let options = null;
/** @type {import('../index.d.ts').Sessions | null} */
let current = null;

/**
 * Choose where the sessions live (and the other options of `openSessions`)
 * for the calls that follow; the sessions opened so far are closed.
 * @param {Partial<import('../index.d.ts').OpenOptions>} [config]
 */
export function configure(config = {}) {
  if (config === null || typeof config !== 'object') throw new TypeError('configure: an options object is expected');
  const previous = current;
  current = null;
  options = { ...config };
  // Closed after the calls made on it so far (the worker answers in order).
  previous?.close().catch(() => {});
}

/** The sessions of this process, opened on first use. */
function sessions() {
  if (!current) {
    // An empty one is no choice (not the working directory).
    const dir = options?.dir || process.env.AGENT_SESSION_DIR || DEFAULT_DIR;
    current = startSessions({ ...options, dir: path.resolve(dir) });
  }
  return current;
}

/** A session or its id, as the utilities take either. */
const idOf = (s) => (s !== null && typeof s === 'object' && 'id' in s ? s.id : s);

// --- lifecycle ---

export function startSession(task, mode, opts = {}) {
  const o = opts ?? {};
  return sessions().start({
    task,
    mode,
    userId: o.userId,
    channelId: o.channelId,
    maxIterations: o.maxIterations,
    context: o.context,
  });
}

export const pauseSession = (id, reason) => sessions().pause(id, reason ?? null);
export const resumeSession = (id) => sessions().resume(id);
export const completeSession = (id, result) => sessions().complete(id, result ?? null);
export const failSession = (id, error) => sessions().fail(id, error instanceof Error ? error.message : error);

// --- iterations and events ---

export const incrementIteration = (id, data) => sessions().iterate(id, data ?? null);
export const recordToolCall = (id, toolCall) => sessions().recordToolCall(id, toolCall);
export const recordLearning = (id, insight, expertiseFile) =>
  sessions().recordLearning(id, { insight, expertiseFile: expertiseFile ?? null });
export const addEvent = (id, type, data) => sessions().recordEvent(id, type, data ?? null);

// --- context ---

/**
 * Everything needed to resume a session, at once: see `SessionContext` in
 * index.d.ts.
 */
export function getSessionContext(id) {
  const s = sessions();
  const r = s.callSync('resumptionContext', [idOf(id)]);
  const session = r.session;
  return {
    sessionId: session.id,
    task: session.task,
    mode: session.mode,
    status: session.status,
    iterations: session.iteration,
    maxIterations: session.maxIterations,
    context: session.context,
    recentHistory: r.recentEvents,
    resumable: r.resumable,
    session,
  };
}

export const updateContext = (id, patch) => sessions().updateContext(id, patch);

// --- queries ---

/** The largest page the engine returns. */
const PAGE = 1000;

/**
 * Sessions matching `filter`, newest first; `offset` skips, `limit` bounds
 * (all when left out).
 */
export async function listSessions(filter = {}) {
  const { limit, offset = 0, ...where } = filter ?? {};
  const s = sessions();
  const out = [];
  if (limit !== undefined && limit <= 0) return out;
  let skip = offset;
  let cursor = null;
  do {
    const page = await s.list(where, cursor, PAGE);
    for (const session of page.sessions) {
      if (skip > 0) skip--;
      else out.push(session);
      if (limit !== undefined && out.length >= limit) return out;
    }
    cursor = page.nextCursor;
  } while (cursor !== null);
  return out;
}

export const findSessions = listSessions;
export const getActiveSessions = () => listSessions({ status: 'active' });
export const getPausedSessions = () => listSessions({ status: 'paused' });
export const getCompletedSessions = () => listSessions({ status: 'completed' });
export const getFailedSessions = () => listSessions({ status: 'failed' });
export const getSessionStats = (filter = {}) => sessions().stats(filter);

// --- maintenance ---

/** Remove completed, failed and timed-out sessions that ended more than
 * `days` days ago (the engine's retention, 30 days, when left out);
 * resolves to the ids removed. */
export async function cleanupOldSessions(days) {
  return (await sessions().cleanup(days ?? null, false)).removed;
}

export const cleanupSessions = cleanupOldSessions;
export const deleteSession = (id) => sessions().delete(id);
export const removeSession = deleteSession;
export const exportSession = (id) => sessions().export(id);
export const importSession = (document) => sessions().import(document);

// --- webhooks ---

/** Set the webhook endpoint (`{ url, secret, eventKinds?, enabled? }`). */
export const configureWebhook = (config) => sessions().setWebhook(config);

// --- utilities (answered at once) ---

export const isSessionResumable = (id) => sessions().callSync('isResumable', [idOf(id)]);
export const getSessionDuration = (id) => sessions().callSync('duration', [idOf(id)]);
export const getSessionProgress = (id) => sessions().callSync('progress', [idOf(id)]);

/** Close this process's sessions (later calls open them again). */
export async function closeSessions() {
  const s = current;
  current = null;
  await s?.close();
}
