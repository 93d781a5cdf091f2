// LangGraph's checkpointer (`BaseCheckpointSaver` of
// @langchain/langgraph-checkpoint) on agent-session: a thread is a session
// whose key is the thread id (mode "langgraph"), started the first time
// the thread is written.
//
//   import { AgentSessionSaver } from 'agent-session/langgraph';
//   const graph = builder.compile({ checkpointer: new AgentSessionSaver('./.agent-sessions') });
//
// Every rule (values per channel version, which writes are kept, their
// order, what "latest" is, filters, drops) is the component's
// (`checkpoints` in wit/session.wit); this module only maps LangGraph's
// configs and tuples onto it, with the JavaScript-only parts of LangGraph's
// contract: the values go through `this.serde`, a `v < 4` checkpoint gets
// its parent's pending sends, `parentConfig` is left out when there is no
// parent, and metadata is stored as given (JSON; no merge of the config).

import { BaseCheckpointSaver, TASKS, getCheckpointId, maxChannelVersion } from '@langchain/langgraph-checkpoint';
import { notFound, use, writing } from './shared.js';

/** The mode of the sessions that are LangGraph threads. */
export const MODE = 'langgraph';
const TASK = 'LangGraph thread';

/** The most a listing asks for (the WIT `limit` is a u32). */
const U32_MAX = 0xffff_ffff;

/** A serializer's `[type, bytes]` as the WIT `typed-value`. */
function typed([type, bytes]) {
  return { type, bytes: typeof bytes === 'string' ? new TextEncoder().encode(bytes) : bytes };
}

const missing = (what, field) =>
  new Error(
    `AgentSessionSaver.${what}: the config has no "${field}" in its "configurable" property ` +
      '(e.g. graph.invoke(input, { configurable: { thread_id: "my-thread" } }))',
  );

/**
 * LangGraph's checkpointer on agent-session.
 */
export class AgentSessionSaver extends BaseCheckpointSaver {
  #use;
  #how;

  /**
   * @param {string | import('../index.d.ts').Sessions | import('../index.d.ts').SyncSessions} store
   *   a directory (opened in a worker shared by every adapter of the
   *   process on it), or sessions already opened
   * @param {{ serde?: import('@langchain/langgraph-checkpoint').SerializerProtocol, task?: string }} [options]
   *   `task`: the task of the sessions started for threads
   */
  constructor(store, { serde, task = TASK } = {}) {
    super(serde);
    this.#use = use(store, 'AgentSessionSaver');
    this.#how = { task, mode: MODE };
  }

  /** The thread's session, by its key. */
  // A thread id is a key: LangGraph's own savers store String(thread_id)
  // too, and the Python adapter str(thread_id), so a number names the same
  // thread from both.
  static #thread(threadId) {
    return { key: String(threadId) };
  }

  async getTuple(config) {
    const c = config?.configurable ?? {};
    if (c.thread_id === undefined || c.thread_id === null) return undefined;
    const sessions = await this.#use.sessions;
    const t = await sessions.getCheckpoint(
      AgentSessionSaver.#thread(c.thread_id),
      c.checkpoint_ns ?? '',
      getCheckpointId(config) || null,
    );
    return t === null ? undefined : this.#tuple(sessions, t);
  }

  async *list(config, options) {
    const { before, limit, filter } = options ?? {};
    const c = config?.configurable ?? {};
    if (limit !== undefined && limit !== null && !(limit > 0)) return;
    const query = {
      session: c.thread_id === undefined || c.thread_id === null ? null : AgentSessionSaver.#thread(c.thread_id),
      threads: { mode: MODE },
      ns: c.checkpoint_ns ?? null,
      id: c.checkpoint_id || null,
      before: before?.configurable?.checkpoint_id || null,
      // A filter value left undefined matches a missing key, as in
      // MemorySaver (`metadata[k] === undefined`): null says so here.
      metadata:
        filter && Object.keys(filter).length > 0
          ? Object.fromEntries(Object.entries(filter).map(([k, v]) => [k, v === undefined ? null : v]))
          : null,
      limit: limit === undefined || limit === null || limit > U32_MAX ? null : Math.ceil(limit),
    };
    const sessions = await this.#use.sessions;
    let cursor = null;
    do {
      const page = await sessions.listCheckpoints(query, cursor);
      for (const t of page.checkpoints) yield await this.#tuple(sessions, t);
      cursor = page.nextCursor;
    } while (cursor !== null);
  }

  async put(config, checkpoint, metadata, newVersions) {
    const c = config?.configurable ?? {};
    if (c.thread_id === undefined || c.thread_id === null) throw missing('put', 'thread_id');
    const ns = c.checkpoint_ns ?? '';
    const { channel_values: values = {}, ...rest } = checkpoint;
    const newValues = [];
    for (const [channel, version] of Object.entries(newVersions ?? {})) {
      const has = Object.hasOwn(values, channel) && values[channel] !== undefined;
      newValues.push({ channel, version, value: has ? typed(await this.serde.dumpsTyped(values[channel])) : null });
    }
    const put = {
      ns,
      id: checkpoint.id,
      parentId: c.checkpoint_id || null,
      checkpoint: typed(await this.serde.dumpsTyped(rest)),
      metadata: metadata ?? {},
      channelVersions: checkpoint.channel_versions ?? {},
      newValues,
    };
    const sessions = await this.#use.sessions;
    const thread = AgentSessionSaver.#thread(c.thread_id);
    await writing(sessions, thread, this.#how, () => sessions.putCheckpoint(thread, put));
    return { configurable: { thread_id: c.thread_id, checkpoint_ns: ns, checkpoint_id: checkpoint.id } };
  }

  async putWrites(config, writes, taskId, taskPath = '') {
    const c = config?.configurable ?? {};
    if (c.thread_id === undefined || c.thread_id === null) throw missing('putWrites', 'thread_id');
    if (c.checkpoint_id === undefined || c.checkpoint_id === null) throw missing('putWrites', 'checkpoint_id');
    const list = [];
    for (const [channel, value] of writes) list.push([channel, typed(await this.serde.dumpsTyped(value))]);
    const sessions = await this.#use.sessions;
    const thread = AgentSessionSaver.#thread(c.thread_id);
    await writing(sessions, thread, this.#how, () =>
      sessions.putWrites(thread, c.checkpoint_ns ?? '', c.checkpoint_id, taskId, taskPath ?? '', list),
    );
  }

  /** Remove the thread (its session and history); nothing if there is none. */
  async deleteThread(threadId) {
    const sessions = await this.#use.sessions;
    try {
      await sessions.delete(AgentSessionSaver.#thread(threadId));
    } catch (e) {
      if (!notFound(e)) throw e;
    }
  }

  /**
   * Copy every checkpoint and write of one thread into another (ids kept),
   * in one append; the target is started if needed. A missing source
   * copies nothing.
   * @param {string} sourceThreadId
   * @param {string} targetThreadId
   */
  async copyThread(sourceThreadId, targetThreadId) {
    const sessions = await this.#use.sessions;
    const source = AgentSessionSaver.#thread(sourceThreadId);
    const target = AgentSessionSaver.#thread(targetThreadId);
    try {
      await sessions.get(source);
    } catch (e) {
      if (notFound(e)) return;
      throw e;
    }
    await writing(sessions, target, this.#how, () => sessions.copyCheckpoints(source, target));
  }

  /**
   * Drop the checkpoints (and their writes) of the runs `runIds` (their
   * metadata `run_id`) in every thread; recorded, never rewritten.
   * @param {string[]} runIds
   */
  async deleteForRuns(runIds) {
    const sessions = await this.#use.sessions;
    await sessions.dropRuns({ mode: MODE }, [...runIds]);
  }

  /**
   * Keep only the latest checkpoint of each namespace of these threads
   * (`keep_latest`, recorded as an event), or delete them (`delete`).
   * @param {string[]} threadIds
   * @param {{ strategy?: 'keep_latest' | 'delete' }} [options]
   */
  async prune(threadIds, { strategy = 'keep_latest' } = {}) {
    if (strategy !== 'keep_latest' && strategy !== 'delete') {
      throw new Error(`AgentSessionSaver.prune: unknown strategy ${JSON.stringify(strategy)} (keep_latest or delete)`);
    }
    const sessions = await this.#use.sessions;
    for (const threadId of threadIds) {
      if (strategy === 'delete') {
        await this.deleteThread(threadId);
        continue;
      }
      try {
        await sessions.pruneCheckpoints(AgentSessionSaver.#thread(threadId));
      } catch (e) {
        if (!notFound(e)) throw e;
      }
    }
  }

  /** Close the sessions opened from a directory, once no other adapter of
   * this process uses them (sessions given to the constructor stay open). */
  async close() {
    await this.#use.release();
  }

  /** A checkpoint tuple of the component as LangGraph's. */
  async #tuple(sessions, t) {
    const checkpoint = await this.serde.loadsTyped(t.checkpoint.type, t.checkpoint.bytes);
    const values = {};
    for (const [channel, v] of t.channelValues) values[channel] = await this.serde.loadsTyped(v.type, v.bytes);
    checkpoint.channel_values = values;
    if (checkpoint.v < 4 && t.parentId !== null) {
      // Checkpoints before v4 kept the sends of a step as the parent's
      // writes on TASKS: they become the channel's value, as MemorySaver
      // migrates them.
      const parent = await sessions.getCheckpoint(t.sessionId, t.ns, t.parentId);
      const sends = [];
      for (const w of parent?.pendingWrites ?? []) {
        if (w.channel === TASKS) sends.push(await this.serde.loadsTyped(w.value.type, w.value.bytes));
      }
      checkpoint.channel_values[TASKS] = sends;
      checkpoint.channel_versions ??= {};
      const versions = Object.values(checkpoint.channel_versions);
      checkpoint.channel_versions[TASKS] =
        versions.length > 0 ? maxChannelVersion(...versions) : this.getNextVersion(undefined);
    }
    const pendingWrites = [];
    for (const w of t.pendingWrites) {
      pendingWrites.push([w.taskId, w.channel, await this.serde.loadsTyped(w.value.type, w.value.bytes)]);
    }
    const thread = t.key ?? t.sessionId;
    const tuple = {
      config: { configurable: { thread_id: thread, checkpoint_ns: t.ns, checkpoint_id: t.id } },
      checkpoint,
      metadata: t.metadata,
      pendingWrites,
    };
    if (t.parentId !== null) {
      tuple.parentConfig = { configurable: { thread_id: thread, checkpoint_ns: t.ns, checkpoint_id: t.parentId } };
    }
    return tuple;
  }
}
