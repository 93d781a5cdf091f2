// Types of agent-session/openai-agents (src/openai-agents.js): the OpenAI
// Agents SDK's session memory on agent-session. Its types come from
// @openai/agents (a peer dependency).

import type { AgentInputItem, Session } from '@openai/agents';
import type { Sessions, SyncSessions } from './index.js';

/** The mode of the sessions that are conversations ("openai-agents"). */
export const MODE: 'openai-agents';

export type AgentSessionOptions = {
  /** The conversation's id, the session's key. Default: a random UUID. */
  sessionId?: string;
  /** The task of the session started for the conversation. Default:
   * "OpenAI Agents conversation". */
  task?: string;
} & (
  | {
      /** The directory of the sessions (opened in a worker shared by every
       * adapter of the process on it, closed with the last of them). */
      dir: string;
      sessions?: undefined;
    }
  | {
      /** Sessions already opened (`openSessions`, `openSessionsSync`); they
       * stay open. */
      sessions: Sessions | SyncSessions;
      dir?: undefined;
    }
);

/**
 * A conversation of the OpenAI Agents SDK kept in agent-session: a session
 * whose key is the session id (mode "openai-agents"), started when an item
 * is first added. It answers as the SDK's MemorySession does for JSON
 * items, durably and across processes; popping and clearing are recorded
 * as events.
 */
export class AgentSession implements Session {
  constructor(options: AgentSessionOptions);
  getSessionId(): Promise<string>;
  /** The last `limit` items (all when undefined; none for 0 or less), oldest first. */
  getItems(limit?: number): Promise<AgentInputItem[]>;
  /** Add items (JSON values) in one append. */
  addItems(items: AgentInputItem[]): Promise<void>;
  /** Take the last item off and return it; undefined if there is none. */
  popItem(): Promise<AgentInputItem | undefined>;
  /** Empty the conversation (its history keeps what was said). */
  clearSession(): Promise<void>;
  /** Close the sessions opened from `dir` once no other adapter of this
   * process uses them. */
  close(): Promise<void>;
}
