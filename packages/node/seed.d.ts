// Types of `agent-session/seed` (src/seed.js): the function names and
// argument shapes of the TypeScript module this package replaces, over the
// same engine. Where that module's summary shows no shape, the one here is
// the natural one, documented on each function.

import type {
  Event,
  ExportDocument,
  Json,
  OpenOptions,
  Session,
  SessionFilter,
  SessionStats,
  ToolCall,
  WebhookConfig,
  WebhookInput,
} from './index.js';

export type { Event, ExportDocument, Json, Session, SessionStats, ToolCall, WebhookConfig } from './index.js';
export { SessionError } from './index.js';

/** Where the sessions live (default `./.agent-sessions`, or the
 * `AGENT_SESSION_DIR` environment variable) and the other options of
 * `openSessions`, for the calls that follow. */
export function configure(config?: Partial<OpenOptions>): void;

/** The options of `startSession` (default mode: `default`; default
 * maxIterations: 100). */
export interface StartSessionOptions {
  userId?: string | null;
  channelId?: string | null;
  maxIterations?: number | null;
  context?: { [key: string]: Json } | null;
}

/** Start a new active session. */
export function startSession(task: string, mode?: string | null, options?: StartSessionOptions): Promise<Session>;
/** Pause an active session, with a reason. */
export function pauseSession(id: string, reason?: string | null): Promise<Session>;
/** Resume a paused session. */
export function resumeSession(id: string): Promise<Session>;
/** Complete an active or paused session, with a JSON result (a string here
 * in the original's usage). */
export function completeSession(id: string, result?: Json): Promise<Session>;
/** Fail an active or paused session; an Error stands for its message. */
export function failSession(id: string, error: string | Error): Promise<Session>;

/** Count one iteration, with optional JSON data; reaching maxIterations
 * ends the session with status `timeout`. */
export function incrementIteration(id: string, data?: Json): Promise<Session>;
/** Record a tool call: `{ name, input, output, durationMs }`. */
export function recordToolCall(id: string, toolCall: ToolCall): Promise<Event>;
/** Record an insight, and the expertise file it belongs in. */
export function recordLearning(id: string, insight: string, expertiseFile?: string | null): Promise<Event>;
/** Record a custom event (its type not one of the engine's own). */
export function addEvent(id: string, type: string, data?: Json): Promise<Event>;

/** What `getSessionContext` returns: what an agent needs to resume. */
export interface SessionContext {
  sessionId: string;
  task: string;
  mode: string;
  status: Session['status'];
  /** Iterations done so far. */
  iterations: number;
  maxIterations: number;
  /** The accumulated context (merged updates). */
  context: { [key: string]: Json };
  /** The last 10 events, oldest first. */
  recentHistory: Event[];
  /** Active or paused. */
  resumable: boolean;
  session: Session;
}

/** Everything needed to resume the session, at once (not a Promise: the
 * original's usage reads it without `await`). Takes a session or its id. */
export function getSessionContext(id: string | Session): SessionContext;
/** Merge into the context: top-level keys are replaced, null removes one. */
export function updateContext(id: string, patch: { [key: string]: Json }): Promise<Session>;

/** A filter of `listSessions`, with the original's pagination. */
export interface ListFilter extends SessionFilter {
  /** At most this many sessions (all when left out). */
  limit?: number;
  /** Skip this many first. */
  offset?: number;
}

/** Sessions matching `filter`, newest first. */
export function listSessions(filter?: ListFilter): Promise<Session[]>;
/** The same as `listSessions`. */
export function findSessions(filter?: ListFilter): Promise<Session[]>;
export function getActiveSessions(): Promise<Session[]>;
export function getPausedSessions(): Promise<Session[]>;
export function getCompletedSessions(): Promise<Session[]>;
export function getFailedSessions(): Promise<Session[]>;
/** Counts by status and mode, average iterations, success rate. */
export function getSessionStats(filter?: SessionFilter): Promise<SessionStats>;

/** Remove completed, failed and timed-out sessions that ended more than
 * `days` (default 30) days ago; active and paused ones never. Resolves to
 * the ids removed. */
export function cleanupOldSessions(days?: number): Promise<string[]>;
/** The same as `cleanupOldSessions`. */
export function cleanupSessions(days?: number): Promise<string[]>;
/** Remove one session and its history. */
export function deleteSession(id: string): Promise<void>;
/** The same as `deleteSession`. */
export function removeSession(id: string): Promise<void>;
/** The session and its whole history as a portable JSON document. */
export function exportSession(id: string): Promise<ExportDocument>;
/** Recreate an exported session (its id must not exist yet). */
export function importSession(document: ExportDocument): Promise<Session>;

/** Set the webhook endpoint that lifecycle notifications go to. */
export function configureWebhook(config: WebhookInput): Promise<WebhookConfig>;

/** Whether the session can be resumed (active or paused); at once. */
export function isSessionResumable(id: string | Session): boolean;
/** Milliseconds from creation to end (or to now); at once. */
export function getSessionDuration(id: string | Session): number;
/** Iteration / maxIterations, from 0 to 100; at once. */
export function getSessionProgress(id: string | Session): number;

/** Close this process's sessions (a later call opens them again). */
export function closeSessions(): Promise<void>;
