// The OpenAI Agents SDK's session memory (the `Session` interface of
// @openai/agents) on agent-session: a conversation is a session whose key
// is the session id (mode "openai-agents"), started the first time an
// item is added; its items are events of the session's history.
//
//   import { AgentSession } from 'agent-session/openai-agents';
//   const session = new AgentSession({ sessionId: 'conversation-1', dir: './.agent-sessions' });
//   await run(agent, 'hello', { session });
//
// It behaves as the SDK's MemorySession does for JSON items (a `limit` of
// 0 or below gives none, undefined all; popping an empty conversation
// gives undefined), durably and across processes. Popping and clearing
// are recorded as events: nothing is rewritten. Items are JSON values
// (what the SDK's items are); every rule is the component's
// (`conversations` in wit/session.wit).

import { randomUUID } from 'node:crypto';
import { notFound, use, writing } from './shared.js';

/** The mode of the sessions that are conversations. */
export const MODE = 'openai-agents';
const TASK = 'OpenAI Agents conversation';

/** The most items a read asks for (the WIT `limit` is a u32). */
const U32_MAX = 0xffff_ffff;

/**
 * A conversation of the OpenAI Agents SDK kept in agent-session.
 * @implements {import('@openai/agents').Session}
 */
export class AgentSession {
  #use;
  #id;
  #ref;
  #how;

  /**
   * @param {{ sessionId?: string, dir?: string, sessions?: object, task?: string }} options
   *   `sessionId`: the conversation's id (the session's key; a random UUID
   *   when absent). `dir` (opened in a worker shared by every adapter of
   *   the process on it) or `sessions` (already opened): where it is kept.
   *   `task`: the task of the session started for it.
   */
  constructor({ sessionId = randomUUID(), dir, sessions, task = TASK } = {}) {
    if ((dir === undefined) === (sessions === undefined)) {
      throw new TypeError('AgentSession: one of `dir` (a directory) and `sessions` (opened sessions) is required');
    }
    if (typeof sessionId !== 'string') throw new TypeError('AgentSession: `sessionId` must be a string');
    this.#use = use(dir ?? sessions, 'AgentSession');
    this.#id = sessionId;
    this.#ref = { key: sessionId };
    this.#how = { task, mode: MODE };
  }

  async getSessionId() {
    return this.#id;
  }

  /**
   * The last `limit` items (all when undefined), oldest first.
   * @param {number} [limit]
   */
  async getItems(limit) {
    // MemorySession's arithmetic: a limit of 0 or below (or null) gives
    // none; NaN and Infinity give all; a fraction counts as the next integer.
    if (limit <= 0) return [];
    const n = limit === undefined ? null : Math.ceil(Number(limit));
    const sessions = await this.#use.sessions;
    try {
      return await sessions.items(this.#ref, Number.isNaN(n) || n > U32_MAX ? null : n);
    } catch (e) {
      if (notFound(e)) return [];
      throw e;
    }
  }

  /**
   * Add items at the end, in one append (starting the conversation's
   * session if it has none yet).
   * @param {unknown[]} items
   */
  async addItems(items) {
    if (items.length === 0) return;
    const sessions = await this.#use.sessions;
    await writing(sessions, this.#ref, this.#how, () => sessions.addItems(this.#ref, items));
  }

  /** Take the last item off and return it; undefined if there is none. */
  async popItem() {
    const sessions = await this.#use.sessions;
    try {
      return await sessions.popItem(this.#ref);
    } catch (e) {
      if (notFound(e)) return undefined;
      throw e;
    }
  }

  /** Empty the conversation (its history keeps what was said). */
  async clearSession() {
    const sessions = await this.#use.sessions;
    try {
      await sessions.clearItems(this.#ref);
    } catch (e) {
      if (!notFound(e)) throw e;
    }
  }

  /** Close the sessions opened from `dir`, once no other adapter of this
   * process uses them (`sessions` given to the constructor stay open). */
  async close() {
    await this.#use.release();
  }
}
