// The session API on the calling thread: the agent-session component (the
// same .wasm the Rust host runs) through jco, over a directory in the Rust
// store's format. Every call blocks its thread until the component is done
// (storage I/O and lock waits included); `openSessions` (index.js) runs this
// in a worker instead.
//
//   const s = await openSessionsSync({ dir: './sessions' });
//   const session = s.start({ task: 'write the parser' });
//   s.iterate(session.id, { step: 1 });
//
// Methods mirror the WIT `sessions`, `conversations` and `checkpoints`
// interfaces in camelCase; a session is named by its id (a string) or by
// its key (`{ key }`). Values are plain objects with camelCase fields;
// JSON-text values are JS values; `list<u8>` is a Uint8Array;
// u64s are Numbers; `option` none is null. Failures throw `SessionError`:
// the component judges every argument; one its WIT type cannot hold (a
// number for a string, -1 for a count, NaN in a JSON value) is refused
// before the call, as `invalid-input` too (src/args.js).

import { Root, RootError, rootImports } from './root.js';
import { Deliverer } from './deliver.js';
import { loadComponent } from './component.js';
import { ERROR_CODES, SessionError } from './error.js';
import * as a from './args.js';

export { SessionError };

// Present while the index must be rebuilt (after a migration or a lost
// index file); the directory store writes it, the host that opens the root
// runs the rebuild, as the Rust host does.
const REINDEX = 'REINDEX';

/**
 * Open the sessions stored in `dir` (created if needed), to be called on
 * this thread. A root whose index must be rebuilt (after a lost index
 * file) is reindexed first, as the Rust host does.
 * @param {import('../index.d.ts').OpenOptions} options
 *   `webhookAllow`: exceptions to the webhook address policy that
 *   `setWebhook` applies (addresses, ranges, host names; as the CLI's
 *   `--webhook-allow`). `component`: the module jco generated (file or
 *   directory) or a component `.wasm`, instead of the package's build.
 *   `lockTimeoutMs`: how long a call waits for a session another process
 *   is writing (default 5000; then `SessionError('conflict')`).
 * @returns {Promise<SyncSessions>}
 */
export async function openSessionsSync({ dir, component, webhookAllow = [], lockTimeoutMs, webhooks } = {}) {
  if (typeof dir !== 'string' || dir === '') throw new TypeError('openSessions: `dir` (a directory) is required');
  const allow = a.strings(webhookAllow, 'openSessions: webhookAllow');
  const sending = senderOptions(webhooks, allow);
  let root;
  try {
    root = new Root(dir, { lockTimeoutMs });
  } catch (e) {
    if (e instanceof TypeError) throw e;
    throw new SessionError('storage', `opening the session store at ${dir}: ${e.message}`);
  }
  const sessions = new SyncSessions(await loadComponent(component), root, allow);
  // The first call opens the store (a new root is made one; an old format
  // is migrated). After a lost index file (or a migration) the index is
  // rebuilt in place before anything else runs, as the Rust host does.
  try {
    sessions.list({}, null, 1);
    // Root.stat answers undefined when nothing is there.
    if (root.stat(REINDEX) != null) {
      sessions.rebuildIndex(false);
      root.removeFile(REINDEX);
      // Make the removal durable (else a crash brings REINDEX back, and
      // with it another full rebuild on the next open).
      root.syncDir('.');
    }
  } catch (e) {
    root.close();
    if (e instanceof RootError) {
      throw new SessionError('storage', `rebuilding the index of ${dir}: ${e.message}`);
    }
    throw e;
  }
  if (sending) {
    let deliverer;
    try {
      deliverer = new Deliverer(sessions[SENDING], sending);
      // Now, so that a bad allow rule fails the opening (while another
      // process is the sender, this one waits its turn).
      deliverer.acquire();
    } catch (e) {
      sessions.close();
      throw e;
    }
    sessions[DELIVERER] = deliverer;
    deliverer.run();
  }
  return sessions;
}

/** The sender's options from `OpenOptions.webhooks`, or null for none. */
function senderOptions(webhooks, webhookAllow) {
  if (webhooks === undefined || webhooks === null) return null;
  const w = a.record(webhooks, 'openSessions: webhooks');
  if (!a.bool(w.deliver ?? false, 'openSessions: webhooks.deliver')) return null;
  const ms = (v, where) => (v === undefined ? undefined : Number(a.u32(v, where)));
  // The sender checks the ranges (deliver.js), for its command too.
  return {
    allow: w.allow === undefined ? webhookAllow : a.strings(w.allow, 'openSessions: webhooks.allow'),
    retryScheduleMs: w.retryScheduleMs?.map((v, i) => ms(v, `openSessions: webhooks.retryScheduleMs[${i}]`)),
    timeoutMs: ms(w.timeoutMs, 'openSessions: webhooks.timeoutMs'),
    concurrency: ms(w.concurrency, 'openSessions: webhooks.concurrency'),
    pollMs: ms(w.pollMs, 'openSessions: webhooks.pollMs'),
  };
}

/** The component's `delivery` functions, for the sender (deliver.js); a
 * symbol, not part of the API. */
export const SENDING = Symbol('sending');
/** The sender this process runs, if `webhooks.deliver` asked for one. */
const DELIVERER = Symbol('deliverer');
/** Operations that may queue a notification: the sender looks soon after. */
const NOTIFYING = new Set(['start', 'pause', 'resume', 'complete', 'fail', 'iterate', 'import']);

// --- conversions of the jco values to the API's ---

const num = (v) => (v === undefined || v === null ? null : Number(v));
const opt = (v) => (v === undefined ? null : v);
const parse = (text) => (text === undefined || text === null ? null : JSON.parse(text));

const session = (s) => ({
  id: s.id,
  key: opt(s.key),
  task: s.task,
  mode: s.mode,
  userId: opt(s.userId),
  channelId: opt(s.channelId),
  status: s.status,
  iteration: s.iteration,
  maxIterations: s.maxIterations,
  context: parse(s.context),
  pauseReason: opt(s.pauseReason),
  result: parse(s.result),
  error: opt(s.error),
  createdAt: num(s.createdAt),
  updatedAt: num(s.updatedAt),
  endedAt: num(s.endedAt),
  eventCount: num(s.eventCount),
  version: num(s.version),
});

/** The kinds of the events the engine itself writes (core's
 * `event_kind::BUILT_IN`; `recordEvent` refuses them). */
export const BUILT_IN_KINDS = new Set([
  'start',
  'iteration',
  'tool_call',
  'learning',
  'pause',
  'resume',
  'complete',
  'error',
  'timeout',
  'context',
  'item',
  'item_pop',
  'items_clear',
  'checkpoint',
  'writes',
  'checkpoints_drop',
]);

/** camelCase names, by the snake_case ones met (the engine's few). */
const camelNames = new Map();

function camel(k) {
  let c = camelNames.get(k);
  if (c === undefined) {
    c = k.replace(/_([a-z0-9])/g, (_, ch) => ch.toUpperCase());
    // Bounded: a custom kind never gets here, but a bound costs nothing.
    if (camelNames.size < 1024) camelNames.set(k, c);
  }
  return c;
}

/**
 * An event's data as the API gives it: the fields the engine defines in
 * the data of its own events are camelCase here, as in every record
 * (`duration_ms` is `durationMs`). Only those top-level names change: what
 * they hold (a tool's input, a context, an iteration's data) and the data
 * of custom events are the user's JSON, as stored.
 */
function eventData(kind, data) {
  if (!BUILT_IN_KINDS.has(kind) || data === null || typeof data !== 'object' || Array.isArray(data)) return data;
  let snake = false;
  for (const k in data) {
    if (k.includes('_')) {
      snake = true;
      break;
    }
  }
  if (!snake) return data;
  const out = {};
  for (const k in data) out[camel(k)] = data[k];
  return out;
}

const event = (e) => ({
  seq: num(e.seq),
  kind: e.kind,
  timestamp: num(e.timestamp),
  data: eventData(e.kind, parse(e.data)),
});

const webhook = (w) => ({ url: w.url, secret: w.secret, eventKinds: [...w.eventKinds], enabled: w.enabled });
const delivery = (d) => ({
  id: d.id,
  sessionId: d.sessionId,
  seq: num(d.seq),
  kind: d.kind,
  url: d.url,
  timestamp: num(d.timestamp),
  state: d.state,
  nextAttemptAt: num(d.nextAttemptAt),
  attempts: d.attempts.map((t) => ({
    at: num(t.at),
    durationMs: num(t.durationMs),
    status: opt(t.status),
    error: opt(t.error),
    refused: t.refused,
  })),
  reason: opt(d.reason),
});

/** A value read back (`typed-text`: base64, see the WIT) as `{ type, bytes }`. */
const typedValue = (t) => {
  // Copied out of Buffer's shared pool, so the value owns its memory.
  return { type: t.type, bytes: new Uint8Array(Buffer.from(t.base64, 'base64')) };
};

const checkpointTuple = (t) => ({
  sessionId: t.sessionId,
  key: opt(t.key),
  ns: t.ns,
  id: t.id,
  parentId: opt(t.parentId),
  checkpoint: typedValue(t.checkpoint),
  metadata: parse(t.metadata),
  channelValues: t.channelValues.map(([channel, value]) => [channel, typedValue(value)]),
  pendingWrites: t.pendingWrites.map((w) => ({
    taskId: w.taskId,
    taskPath: w.taskPath,
    channel: w.channel,
    value: typedValue(w.value),
  })),
});

function filter(f, where) {
  a.record(f, where);
  return {
    userId: a.optStr(f.userId, `${where}.user-id`),
    channelId: a.optStr(f.channelId, `${where}.channel-id`),
    mode: a.optStr(f.mode, `${where}.mode`),
    status: a.optStatus(f.status, `${where}.status`),
    createdAfter: a.optU64(f.createdAfter, `${where}.created-after`),
    createdBefore: a.optU64(f.createdBefore, `${where}.created-before`),
    updatedAfter: a.optU64(f.updatedAfter, `${where}.updated-after`),
    updatedBefore: a.optU64(f.updatedBefore, `${where}.updated-before`),
  };
}

/**
 * The session API over one directory. Synchronous: every call runs the
 * component on the calling thread (storage I/O included).
 */
export class SyncSessions {
  #component;
  #imports;
  /** The instance, reused across calls (the component keeps nothing
   * between calls); dropped after a trap. */
  #exports = null;
  /** `close` was called: the sender's functions refuse. */
  #closed = false;
  #root;
  #webhookAllow;

  /** @internal use `openSessionsSync` */
  constructor(component, root, webhookAllow = []) {
    this.#component = component;
    this.#imports = { root: rootImports(root) };
    this.#root = root;
    this.#webhookAllow = webhookAllow;
  }

  #call(name, ...args) {
    this.#exports ??= this.#component.instantiate(this.#imports);
    try {
      const out = this.#exports[name](...args);
      if (NOTIFYING.has(name)) this[DELIVERER]?.kick();
      return out;
    } catch (e) {
      const p = e?.payload;
      if (p && ERROR_CODES.has(p.tag)) throw new SessionError(p.tag, p.val);
      // A trap, or an exception that unwound the component: its state can
      // no longer be trusted; the next call gets a fresh instance, and the
      // locks this one held are released.
      this.#exports = null;
      this.#root.releaseLocks();
      // The sender lock went with them: this process's sender takes it
      // again (what it had in flight is sent again, at least once).
      this[DELIVERER]?.reset();
      throw e;
    }
  }

  // --- lifecycle ---

  /**
   * Start a new active session.
   * @param {import('../index.d.ts').StartOptions} options
   * @returns {import('../index.d.ts').Session}
   */
  start(options) {
    const o = a.record(options, 'start: options');
    return session(
      this.#call('start', {
        key: a.optStr(o.key, 'start: options.key'),
        task: a.str(o.task, 'start: options.task'),
        mode: a.optStr(o.mode, 'start: options.mode'),
        userId: a.optStr(o.userId, 'start: options.user-id'),
        channelId: a.optStr(o.channelId, 'start: options.channel-id'),
        maxIterations: a.optU32(o.maxIterations, 'start: options.max-iterations'),
        context: a.optJson(o.context, 'start: options.context'),
      }),
    );
  }

  /**
   * Read a session.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').Session}
   */
  get(id) {
    return session(this.#call('get', a.ref(id, 'get')));
  }

  /**
   * Pause an active session.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {string | null} [reason]
   * @returns {import('../index.d.ts').Session}
   */
  pause(id, reason = null) {
    return session(this.#call('pause', a.ref(id, 'pause'), a.optStr(reason, 'pause: reason')));
  }

  /**
   * Resume a paused session.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').Session}
   */
  resume(id) {
    return session(this.#call('resume', a.ref(id, 'resume')));
  }

  /**
   * Complete an active or paused session.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {unknown} [result] a JSON value; null: none
   * @returns {import('../index.d.ts').Session}
   */
  complete(id, result = null) {
    return session(this.#call('complete', a.ref(id, 'complete'), a.optJson(result, 'complete: result')));
  }

  /**
   * Fail an active or paused session.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {string} error
   * @returns {import('../index.d.ts').Session}
   */
  fail(id, error) {
    return session(this.#call('fail', a.ref(id, 'fail'), a.str(error, 'fail: error')));
  }

  // --- iterations and events ---

  /**
   * Count one iteration of an active session; reaching its max-iterations
   * moves it to `timeout`.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {unknown} [data] a JSON value; null: none
   * @returns {import('../index.d.ts').Session}
   */
  iterate(id, data = null) {
    return session(this.#call('iterate', a.ref(id, 'iterate'), a.optJson(data, 'iterate: data')));
  }

  /**
   * Record a tool call in an active session's history.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {import('../index.d.ts').ToolCall} call
   * @returns {import('../index.d.ts').Event}
   */
  recordToolCall(id, call) {
    const c = a.record(call, 'record-tool-call: call');
    return event(
      this.#call('recordToolCall', a.ref(id, 'record-tool-call'), {
        name: a.str(c.name, 'record-tool-call: call.name'),
        input: a.json(c.input, 'record-tool-call: call.input'),
        output: a.json(c.output, 'record-tool-call: call.output'),
        durationMs: a.u64(c.durationMs, 'record-tool-call: call.duration-ms'),
      }),
    );
  }

  /**
   * Record a learning in an active or paused session's history.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {import('../index.d.ts').Learning} learning
   * @returns {import('../index.d.ts').Event}
   */
  recordLearning(id, learning) {
    const l = a.record(learning, 'record-learning: learning');
    return event(
      this.#call('recordLearning', a.ref(id, 'record-learning'), {
        insight: a.str(l.insight, 'record-learning: learning.insight'),
        expertiseFile: a.optStr(l.expertiseFile, 'record-learning: learning.expertise-file'),
      }),
    );
  }

  /**
   * Record a custom event (its kind not one of the built-in ones).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {string} kind
   * @param {unknown} data a JSON value
   * @returns {import('../index.d.ts').Event}
   */
  recordEvent(id, kind, data) {
    return event(
      this.#call(
        'recordEvent',
        a.ref(id, 'record-event'),
        a.str(kind, 'record-event: kind'),
        a.json(data, 'record-event: data'),
      ),
    );
  }

  /**
   * Read the history from position `from`, at most `limit` events (max 1000).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {number} [from]
   * @param {number} [limit]
   * @returns {import('../index.d.ts').EventPage}
   */
  events(id, from = 0, limit = 100) {
    const page = this.#call('events', a.ref(id, 'events'), a.u64(from, 'events: from'), a.u32(limit, 'events: limit'));
    return { events: page.events.map(event), nextSeq: num(page.nextSeq) };
  }

  /**
   * The last 10 events, oldest first.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').Event[]}
   */
  recentEvents(id) {
    return this.#call('recentEvents', a.ref(id, 'recent-events')).map(event);
  }

  // --- context ---

  /**
   * Merge a JSON object into the session's context: top-level keys are
   * replaced, a null value removes the key.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {Record<string, unknown>} patch
   * @returns {import('../index.d.ts').Session}
   */
  updateContext(id, patch) {
    return session(this.#call('updateContext', a.ref(id, 'update-context'), a.json(patch, 'update-context: patch')));
  }

  /**
   * The session, its recent history and whether it can be resumed.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').Resumption}
   */
  resumptionContext(id) {
    const r = this.#call('resumptionContext', a.ref(id, 'resumption-context'));
    return { session: session(r.session), recentEvents: r.recentEvents.map(event), resumable: r.resumable };
  }

  // --- queries ---

  /**
   * Sessions matching `filter`, newest first, at most `limit` (max 1000).
   * @param {import('../index.d.ts').SessionFilter} [f]
   * @param {string | null} [cursor] the previous page's `nextCursor`
   * @param {number} [limit]
   * @returns {import('../index.d.ts').SessionPage}
   */
  list(f = {}, cursor = null, limit = 100) {
    const page = this.#call(
      'list',
      filter(f, 'list: filter'),
      a.optStr(cursor, 'list: cursor'),
      a.u32(limit, 'list: limit'),
    );
    return {
      sessions: page.sessions.map(session),
      nextCursor: opt(page.nextCursor),
      unreadable: [...page.unreadable],
    };
  }

  /**
   * Aggregates over the sessions matching `filter`.
   * @param {import('../index.d.ts').SessionFilter} [f]
   * @returns {import('../index.d.ts').SessionStats}
   */
  stats(f = {}) {
    const s = this.#call('stats', filter(f, 'stats: filter'));
    return {
      total: num(s.total),
      byStatus: Object.fromEntries(s.byStatus.map((c) => [c.status, num(c.count)])),
      byMode: Object.fromEntries(s.byMode.map((c) => [c.mode, num(c.count)])),
      averageIterations: s.averageIterations,
      successRate: s.successRate,
    };
  }

  // --- maintenance ---

  /**
   * Remove completed, failed and timed-out sessions that ended more than
   * `olderThanDays` days ago (30 when null); active and paused ones never.
   * @param {number | null} [olderThanDays]
   * @param {boolean} [dryRun] only report what would be removed
   * @returns {import('../index.d.ts').CleanupReport}
   */
  cleanup(olderThanDays = null, dryRun = false) {
    const r = this.#call(
      'cleanup',
      a.optU32(olderThanDays, 'cleanup: older-than-days'),
      a.bool(dryRun, 'cleanup: dry-run'),
    );
    return { dryRun: r.dryRun, removed: [...r.removed] };
  }

  /**
   * Remove one session and its history.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   */
  delete(id) {
    this.#call('delete', a.ref(id, 'delete'));
  }

  /**
   * Compare the index with the histories and, unless `dryRun`, refresh
   * every entry that differs.
   * @param {boolean} [dryRun]
   * @returns {import('../index.d.ts').IndexReport}
   */
  rebuildIndex(dryRun = false) {
    const r = this.#call('rebuildIndex', a.bool(dryRun, 'rebuild-index: dry-run'));
    return { sessions: num(r.sessions), stale: [...r.stale], unreadable: [...r.unreadable] };
  }

  /**
   * The session and its whole history as a portable JSON document.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').ExportDocument}
   */
  export(id) {
    return JSON.parse(this.#call('export', a.ref(id, 'export')));
  }

  /**
   * Recreate a session from an exported document (the id is kept; it
   * must not exist yet).
   * @param {import('../index.d.ts').ExportDocument} document
   * @returns {import('../index.d.ts').Session}
   */
  import(document) {
    return session(this.#call('import', a.json(document, 'import: document')));
  }

  // --- conversations ---

  /**
   * Add items (JSON values) at the end of the session's conversation, in
   * one append. The session must be active or paused.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {unknown[]} items JSON values
   * @returns {import('../index.d.ts').Session}
   */
  addItems(id, items) {
    return session(
      this.#call('addItems', a.ref(id, 'add-items'), a.array(items, 'add-items: items', a.json)),
    );
  }

  /**
   * The conversation's last `limit` items (all with null), oldest first.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {number | null} [limit]
   * @returns {unknown[]}
   */
  items(id, limit = null) {
    return this.#call('items', a.ref(id, 'items'), a.optU32(limit, 'items: limit')).map((t) => JSON.parse(t));
  }

  /**
   * Take the conversation's last item off (recorded as an event) and
   * return it; undefined if there is none (a null item pops as null).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {unknown}
   */
  popItem(id) {
    const item = this.#call('popItem', a.ref(id, 'pop-item'));
    return item === undefined || item === null ? undefined : JSON.parse(item);
  }

  /**
   * Empty the conversation (recorded as an event).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {import('../index.d.ts').Session}
   */
  clearItems(id) {
    return session(this.#call('clearItems', a.ref(id, 'clear-items')));
  }

  // --- checkpoints ---

  /**
   * Put a checkpoint in an active or paused session (LangGraph's rules:
   * see wit/session.wit, `checkpoints`).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {import('../index.d.ts').NewCheckpoint} checkpoint
   */
  putCheckpoint(id, checkpoint) {
    const where = 'put-checkpoint: checkpoint';
    const c = a.record(checkpoint, where);
    this.#call('putCheckpoint', a.ref(id, 'put-checkpoint'), {
      ns: a.str(c.ns ?? '', `${where}.ns`),
      id: a.str(c.id, `${where}.id`),
      parentId: a.optStr(c.parentId, `${where}.parent-id`),
      checkpoint: a.typed(c.checkpoint, `${where}.checkpoint`),
      metadata: a.json(c.metadata ?? {}, `${where}.metadata`),
      channelVersions: a.json(c.channelVersions ?? {}, `${where}.channel-versions`),
      newValues: a.array(c.newValues ?? [], `${where}.new-values`, (v, at) => {
        a.record(v, at);
        return {
          channel: a.str(v.channel, `${at}.channel`),
          version: a.json(v.version, `${at}.version`),
          value: v.value === undefined || v.value === null ? undefined : a.typed(v.value, `${at}.value`),
        };
      }),
    });
  }

  /**
   * Put the writes (`[channel, value]`) of task `taskId` pending on
   * checkpoint `checkpointId` of namespace `ns`.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {string} ns
   * @param {string} checkpointId
   * @param {string} taskId
   * @param {string} taskPath
   * @param {[string, import('../index.d.ts').TypedValue][]} writes
   */
  putWrites(id, ns, checkpointId, taskId, taskPath, writes) {
    this.#call(
      'putWrites',
      a.ref(id, 'put-writes'),
      a.str(ns, 'put-writes: ns'),
      a.str(checkpointId, 'put-writes: checkpoint-id'),
      a.str(taskId, 'put-writes: task-id'),
      a.str(taskPath, 'put-writes: task-path'),
      a.array(writes, 'put-writes: writes', (w, at) => {
        a.pair(w, at);
        return [a.str(w[0], `${at}[0]`), a.typed(w[1], `${at}[1]`)];
      }),
    );
  }

  /**
   * Checkpoint `checkpointId` of namespace `ns`, or the latest one; null if
   * there is none (or no such session).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @param {string} [ns]
   * @param {string | null} [checkpointId]
   * @returns {import('../index.d.ts').CheckpointTuple | null}
   */
  getCheckpoint(id, ns = '', checkpointId = null) {
    const t = this.#call(
      'getCheckpoint',
      a.ref(id, 'get-checkpoint'),
      a.str(ns, 'get-checkpoint: ns'),
      a.optStr(checkpointId, 'get-checkpoint: id'),
    );
    return t === undefined || t === null ? null : checkpointTuple(t);
  }

  /**
   * Checkpoints matching `query`, newest first within a thread and
   * namespace, a page at a time.
   * @param {import('../index.d.ts').CheckpointQuery} [query]
   * @param {string | null} [cursor] the previous page's `nextCursor`
   * @returns {import('../index.d.ts').CheckpointPage}
   */
  listCheckpoints(query = {}, cursor = null) {
    const where = 'list-checkpoints: query';
    const q = a.record(query, where);
    const page = this.#call(
      'listCheckpoints',
      {
        session: a.optRef(q.session, 'list-checkpoints', 'query.session'),
        threads: filter(q.threads ?? {}, `${where}.threads`),
        ns: a.optStr(q.ns, `${where}.ns`),
        id: a.optStr(q.id, `${where}.id`),
        before: a.optStr(q.before, `${where}.before`),
        metadata: a.optJson(q.metadata, `${where}.metadata`),
        limit: a.optU32(q.limit, `${where}.limit`),
      },
      a.optStr(cursor, 'list-checkpoints: cursor'),
    );
    return { checkpoints: page.checkpoints.map(checkpointTuple), nextCursor: opt(page.nextCursor) };
  }

  /**
   * Copy every checkpoint and write of session `from` into session `to`
   * (ids kept), in one append; both must exist.
   * @param {import('../index.d.ts').SessionRef} from
   * @param {import('../index.d.ts').SessionRef} to
   */
  copyCheckpoints(from, to) {
    this.#call('copyCheckpoints', a.ref(from, 'copy-checkpoints', 'from'), a.ref(to, 'copy-checkpoints', 'to'));
  }

  /**
   * Drop (from every read; recorded as an event) the checkpoints whose
   * metadata `run_id` is one of `runIds`, with their writes, in every
   * session `threads` selects.
   * @param {import('../index.d.ts').SessionFilter} threads
   * @param {string[]} runIds
   * @returns {number} how many sessions changed
   */
  dropRuns(threads, runIds) {
    return this.#call('dropRuns', filter(threads, 'drop-runs: threads'), a.strings(runIds, 'drop-runs: run-ids'));
  }

  /**
   * Drop every checkpoint but the latest of each namespace (recorded as
   * an event; the values the latest needs stay).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   */
  pruneCheckpoints(id) {
    this.#call('pruneCheckpoints', a.ref(id, 'prune-checkpoints'));
  }

  // --- webhooks ---

  /**
   * Set (or replace) the webhook endpoint. Notifications are queued in the
   * directory's outbox; the Rust CLI's `agent-session deliver` sends them.
   * @param {import('../index.d.ts').WebhookInput} config
   * @returns {import('../index.d.ts').WebhookConfig}
   */
  setWebhook(config) {
    const c = a.record(config, 'set-webhook: config');
    const wit = {
      url: a.str(c.url, 'set-webhook: config.url'),
      secret: a.str(c.secret, 'set-webhook: config.secret'),
      eventKinds: a.strings(c.eventKinds ?? [], 'set-webhook: config.event-kinds'),
      enabled: a.bool(c.enabled ?? true, 'set-webhook: config.enabled'),
    };
    // The address policy, with this host's exceptions (`webhookAllow`),
    // as every host applies it when an endpoint is set.
    if (wit.enabled) this.checkWebhookUrl(wit.url, this.#webhookAllow);
    return webhook(this.#call('setWebhook', wit));
  }

  /**
   * Whether webhooks may be sent to `url` under the address policy, with
   * the exceptions `allow` (addresses, ranges like `10.0.0.0/8`, host
   * names): http(s), and an IP-address host (any form) that is not
   * loopback, private, link-local or another special-purpose address
   * unless allowed. Host names pass (checked where they are dialled).
   * Throws `SessionError('invalid-input')` saying why not.
   * @param {string} url
   * @param {string[]} [allow]
   */
  checkWebhookUrl(url, allow = []) {
    this.#call(
      'checkWebhookUrl',
      a.str(url, 'check-webhook-url: url'),
      a.strings(allow, 'check-webhook-url: allow'),
    );
  }

  /**
   * The webhook endpoint, or null if none is set.
   * @returns {import('../index.d.ts').WebhookConfig | null}
   */
  getWebhook() {
    const w = this.#call('getWebhook');
    return w === undefined || w === null ? null : webhook(w);
  }

  /** Remove the webhook endpoint. */
  clearWebhook() {
    this.#call('clearWebhook');
  }

  /**
   * Disable the endpoint if it still points at `url` and is enabled (what
   * a sender does when `url` answered 410 Gone): a compare-and-set, so an
   * endpoint set again meanwhile stays as set.
   * @param {string} url
   * @returns {boolean} whether it was disabled
   */
  disableWebhook(url) {
    return this.#call('disableWebhook', a.str(url, 'disable-webhook: url'));
  }

  // --- utilities ---

  /**
   * Whether the session can be resumed (active or paused).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {boolean}
   */
  isResumable(id) {
    return this.#call('isResumable', a.ref(id, 'is-resumable'));
  }

  /**
   * Milliseconds from creation to end (or to now, if not ended).
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {number}
   */
  duration(id) {
    return num(this.#call('duration', a.ref(id, 'duration')));
  }

  /**
   * Iteration / max-iterations as a percentage from 0 to 100.
   * @param {import('../index.d.ts').SessionRef} id the id, or `{ key }`
   * @returns {number}
   */
  progress(id) {
    return this.#call('progress', a.ref(id, 'progress'));
  }

  /**
   * Every webhook delivery of this directory, pending and finished, oldest
   * first: its attempts (status, error, whether the address policy
   * refused it) and why it failed or was discarded. Secrets are not shown.
   * @returns {import('../index.d.ts').Delivery[]}
   */
  deliveries() {
    return this.#call('deliveries').map(delivery);
  }

  /**
   * Stop this process's webhook sender (`webhooks.deliver`): the attempts
   * in flight are finished and recorded, then the root's sender lock is
   * released. `close` stops it too, without waiting for them (what was in
   * flight is sent again by the next sender).
   * @returns {Promise<void>}
   */
  async stopDelivering() {
    await this[DELIVERER]?.stop();
  }

  /** The component's `delivery` functions, for deliver.js. @internal */
  get [SENDING]() {
    const call = (name, ...args) => {
      // After `close`, not a new instance: what the sender had in flight
      // is sent again by the next sender.
      if (this.#closed) throw new SessionError('invalid-input', 'the sessions were closed');
      return this.#call(name, ...args);
    };
    return {
      startSending: ({ scheduleMs, allow }) =>
        // jco takes a list<u64> as a BigUint64Array.
        call('startSending', { scheduleMs: scheduleMs && BigUint64Array.from(scheduleMs, BigInt), allow }),
      claimDue: (dueBy, limit) => {
        const d = call('claimDue', BigInt(Math.max(0, Math.floor(dueBy))), limit);
        return {
          requests: d.requests,
          settled: d.settled.map(delivery),
          waiting: d.waiting,
          nextDue: num(d.nextDue),
        };
      },
      // The policy's reason, or null if `address` may be dialled.
      checkAddress: (host, address) => {
        if (this.#closed || !this.#exports) return 'the sender stopped before dialling';
        try {
          this.#exports.checkAddress(host, address);
          return null;
        } catch (e) {
          if (typeof e?.payload === 'string') return e.payload;
          throw e;
        }
      },
      recordAnswer: (id, at, durationMs, answer) =>
        delivery(call('recordAnswer', id, BigInt(at), BigInt(durationMs), answer)),
      stopSending: () => this.#exports && !this.#closed && call('stopSending'),
    };
  }

  /** Release this process's outbox segment (the process's end does too):
   * the instance is dropped with the locks it held; a later call starts a
   * new one. A webhook sender running here stops (see `stopDelivering`). */
  close() {
    this[DELIVERER]?.stop();
    this.#closed = true;
    this.#exports = null;
    this.#root.releaseLocks();
  }
}
