// Types of the agent-session Node API (src/index.js). Hand-written from
// wit/session.wit (agent:session@0.4.0): keep in sync with it.
//
// `openSessions` runs the component in a worker thread: the methods of
// `Sessions` return Promises of what those of `SyncSessions` (from
// `openSessionsSync`, on the calling thread) return.
//
// WIT -> JS: a `session-ref` is an id (a string) or `{ key }`; records
// are objects with camelCase fields; `option` none is null (but `popItem`
// gives undefined for no item); `list<u8>` is a Uint8Array; u64 is number (an integer argument may be a bigint too); JSON-text
// values are JS values (`Json`); `session-stats` counts are objects from
// name to count. Failures throw SessionError. The component judges every
// argument; one its WIT type cannot hold (a number for a string, -1 for a
// count, NaN or undefined for a JSON value, a status that is not one, a
// left-out required field) is SessionError 'invalid-input' too, thrown
// before the call, worded as the Python package words it (src/args.js).

/** An integer argument: a number or a bigint, from 0 to the WIT type's
 * largest value (u32: 4294967295, u64: 2^64 - 1). */
export type Integer = number | bigint;

/** A JSON value (context, results, event data, tool input and output). */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** active <-> paused -> completed | failed | timeout (the last three are terminal). */
export type SessionStatus = 'active' | 'paused' | 'completed' | 'failed' | 'timeout';

/** The cases of the WIT `session-error` variant. */
export type SessionErrorCode =
  | 'not-found'
  | 'invalid-transition'
  | 'invalid-input'
  | 'conflict'
  | 'storage'
  | 'limit-exceeded';

/** Every failure of the session API, with the component's message. */
export class SessionError extends Error {
  constructor(code: SessionErrorCode, message: string);
  readonly name: 'SessionError';
  readonly code: SessionErrorCode;
}

/** How a call names a session: its id (a string), or the key it was
 * started with (`{ key }`; `{ id }` names an id too). A key that looks
 * like an id is still a key: the two never mix. */
export type SessionRef = string | { key: string; id?: undefined } | { id: string; key?: undefined };

/** A session's current state. Times are milliseconds since the Unix epoch. */
export interface Session {
  id: string;
  /** The caller's key (a LangGraph thread id, a conversation id), if the
   * session was started with one. */
  key: string | null;
  task: string;
  mode: string;
  userId: string | null;
  channelId: string | null;
  status: SessionStatus;
  iteration: number;
  maxIterations: number;
  /** A JSON object. */
  context: { [key: string]: Json };
  /** The reason given with the last pause, if paused. */
  pauseReason: string | null;
  /** The result given on completion, if completed. */
  result: Json;
  /** The error given on failure, if failed. */
  error: string | null;
  createdAt: number;
  updatedAt: number;
  /** Set when the session reached a terminal status. */
  endedAt: number | null;
  /** Number of events in the session's history. */
  eventCount: number;
  /** The history length this state was read at; every change bumps it. */
  version: number;
}

/** One entry of a session's history. */
export interface Event {
  /** Position in the history, from 0, without gaps. */
  seq: number;
  /** start, iteration, tool_call, learning, pause, resume, complete, error, timeout, or a custom kind. */
  kind: string;
  timestamp: number;
  data: Json;
}

/** Arguments of `start`. */
export interface StartOptions {
  /** With a key, `start` is get-or-create: the session that has the key is
   * returned as it is (the other options are not applied); else one is
   * made with it. Racing starts of one key, in any process, all get the
   * same session. 1 to 512 bytes, no control characters. */
  key?: string | null;
  task: string;
  /** "default" when absent. */
  mode?: string | null;
  userId?: string | null;
  channelId?: string | null;
  /** 100 when absent. */
  maxIterations?: Integer | null;
  /** A JSON object; {} when absent. */
  context?: { [key: string]: Json } | null;
}

/** A tool call to record. */
export interface ToolCall {
  name: string;
  input: Json;
  output: Json;
  /** Required (a WIT `u64`, not an `option`). */
  durationMs: Integer;
}

/** Something the agent learned. */
export interface Learning {
  insight: string;
  /** Where the insight was (or should be) written down. */
  expertiseFile?: string | null;
}

/** Which sessions a query selects; every present field must match. */
export interface SessionFilter {
  userId?: string | null;
  channelId?: string | null;
  mode?: string | null;
  status?: SessionStatus | null;
  createdAfter?: Integer | null;
  createdBefore?: Integer | null;
  updatedAfter?: Integer | null;
  updatedBefore?: Integer | null;
}

/** One page of a listing, newest first. */
export interface SessionPage {
  sessions: Session[];
  /** Pass to the next `list` call to continue; null on the last page. */
  nextCursor: string | null;
  /** Sessions of this page whose history could not be read, as "<id>: <why>". */
  unreadable: string[];
}

/** One page of a history, in sequence order. */
export interface EventPage {
  events: Event[];
  /** Position to read from next; null when the end was reached. */
  nextSeq: number | null;
}

/** Aggregates over the sessions a filter selects. */
export interface SessionStats {
  total: number;
  byStatus: Record<SessionStatus, number>;
  byMode: Record<string, number>;
  /** Mean iteration count. */
  averageIterations: number;
  /** completed / (completed + failed + timeout); 0 when none ended. */
  successRate: number;
}

/** What `cleanup` removed, or would remove on a dry run. */
export interface CleanupReport {
  dryRun: boolean;
  removed: string[];
}

/** Everything needed to pick a session up again. */
export interface Resumption {
  session: Session;
  /** The last (at most 10) events, oldest first. */
  recentEvents: Event[];
  resumable: boolean;
}

/** What an index check or rebuild found. */
export interface IndexReport {
  /** Sessions whose history was read. */
  sessions: number;
  /** Sessions whose index entry did not match their history. */
  stale: string[];
  /** Sessions whose history could not be read, with the reason. */
  unreadable: string[];
}

/** Where lifecycle notifications go. */
export interface WebhookConfig {
  url: string;
  /** `whsec_` followed by base64. */
  secret: string;
  /** Event kinds to send; empty means every lifecycle event. */
  eventKinds: string[];
  enabled: boolean;
}

/** `setWebhook`'s argument: `eventKinds` defaults to [], `enabled` to true. */
export interface WebhookInput {
  url: string;
  secret: string;
  eventKinds?: string[];
  enabled?: boolean;
}

/** One attempt to send a notification. */
export interface DeliveryAttempt {
  /** When it started, ms since the epoch. */
  at: number;
  /** How long until the response head (or the error). */
  durationMs: number;
  /** The HTTP status, if an answer came. */
  status: number | null;
  /** What went wrong, if anything. */
  error: string | null;
  /** The sender's address policy refused to dial the endpoint: no request
   * was made, and a sender allowed to dial it tries at once. */
  refused: boolean;
}

/** A webhook notification and what became of it (its secret left out). */
export interface Delivery {
  /** The `webhook-id`. */
  id: string;
  sessionId: string;
  /** Position of its event in the session's history. */
  seq: number;
  /** e.g. `session.completed`. */
  kind: string;
  url: string;
  /** When it was raised, ms since the epoch. */
  timestamp: number;
  state: 'pending' | 'delivered' | 'failed' | 'discarded';
  /** When the next attempt is due (pending deliveries). */
  nextAttemptAt: number;
  attempts: DeliveryAttempt[];
  /** Why it failed or was discarded. */
  reason: string | null;
}

/** `OpenOptions.webhooks`: this process as the directory's webhook sender. */
export interface WebhookDelivery {
  /** Run a sender in this process (one per directory at a time, whatever
   * the host: the others wait their turn). Default: false. */
  deliver?: boolean;
  /** Exceptions to the address policy for the addresses dialled.
   * Default: `webhookAllow`. */
  allow?: string[];
  /** Delays before the retries, in ms (jittered by ±20 %); after the last
   * a delivery is given up. Default: 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h. */
  retryScheduleMs?: number[];
  /** Per request, to the response head. Default: 15000. */
  timeoutMs?: number;
  /** Requests in flight at once. Default: 16. */
  concurrency?: number;
  /** How often to look for what other processes queued. Default: 1000. */
  pollMs?: number;
}

/** Bytes as a framework's serializer made them, with its type tag. */
export interface TypedValue {
  type: string;
  bytes: Uint8Array;
}

/** A channel's value at a version; `value` null: the channel was emptied. */
export interface ChannelValue {
  channel: string;
  /** A number or a string. */
  version: number | string;
  value?: TypedValue | null;
}

/** A checkpoint to put (LangGraph's rules: wit/session.wit, `checkpoints`). */
export interface NewCheckpoint {
  /** Namespace; "" (the root graph) when absent. */
  ns?: string;
  id: string;
  parentId?: string | null;
  /** The checkpoint without its channel values. */
  checkpoint: TypedValue;
  /** A JSON object; {} when absent. */
  metadata?: { [key: string]: Json };
  /** The checkpoint's channel versions; {} when absent. */
  channelVersions?: { [channel: string]: number | string };
  /** The values of the channels that got a new version; [] when absent. */
  newValues?: ChannelValue[];
}

/** A write pending on a checkpoint. */
export interface PendingWrite {
  taskId: string;
  taskPath: string;
  channel: string;
  value: TypedValue;
}

/** A checkpoint as read back. */
export interface CheckpointTuple {
  sessionId: string;
  /** The session's key (the thread id), if it has one. */
  key: string | null;
  ns: string;
  id: string;
  parentId: string | null;
  checkpoint: TypedValue;
  /** A JSON object. */
  metadata: { [key: string]: Json };
  /** For each channel of the checkpoint's versions that has a value. */
  channelValues: [string, TypedValue][];
  /** Sorted by task path, task id and position. */
  pendingWrites: PendingWrite[];
}

/** Which checkpoints `listCheckpoints` returns: newest first within a
 * thread and namespace. */
export interface CheckpointQuery {
  /** One thread; absent: every session `threads` selects. */
  session?: SessionRef | null;
  threads?: SessionFilter;
  /** Only this namespace; absent: every one. */
  ns?: string | null;
  /** Only this checkpoint. */
  id?: string | null;
  /** Only checkpoints whose id sorts before this one. */
  before?: string | null;
  /** Top-level metadata keys that must equal these values (a null matches
   * a missing key). */
  metadata?: { [key: string]: Json } | null;
  /** At most this many, over all pages. */
  limit?: Integer | null;
}

/** One page of a checkpoint listing. */
export interface CheckpointPage {
  checkpoints: CheckpointTuple[];
  /** Pass back, with the same query, for the next page; null at the end. */
  nextCursor: string | null;
}

/** An exported session: the portable JSON document of `export` / `import`. */
export type ExportDocument = { [key: string]: Json };

export interface OpenOptions {
  /** The directory of the sessions (created if needed); shareable with the Rust CLI. */
  dir: string;
  /** Instead of the package's build: the module jco generated (its .js file or
   * directory), or a component .wasm to transpile now. */
  component?: string;
  /** Exceptions to the webhook address policy `setWebhook` applies
   * (addresses, ranges like `10.0.0.0/8`, host names), as the CLI's
   * `--webhook-allow`. Default: none. */
  webhookAllow?: string[];
  /** How long a call waits for a session another process is writing
   * before failing with `SessionError('conflict')`, in milliseconds.
   * Default: `DEFAULT_LOCK_TIMEOUT_MS` (5000); `Infinity`: no bound. */
  lockTimeoutMs?: number;
  /** Deliver the directory's webhook notifications from this process:
   * signed, retried, in order per session, SSRF-safe (README "Webhooks"). */
  webhooks?: WebhookDelivery;
}

/** The kinds of the events the engine writes itself (`recordEvent` refuses
 * them). Their data's own field names are camelCase in this API (as
 * `durationMs`); stored, exported and sent in webhooks they are snake_case. */
export const BUILT_IN_KINDS: ReadonlySet<string>;

/** The default of `OpenOptions.lockTimeoutMs`. */
export const DEFAULT_LOCK_TIMEOUT_MS: number;

/** The session API over one directory, on the calling thread: every
 * method is synchronous (and blocks the thread while it works). */
export interface SyncSessions {
  start(options: StartOptions): Session;
  get(id: SessionRef): Session;
  pause(id: SessionRef, reason?: string | null): Session;
  resume(id: SessionRef): Session;
  complete(id: SessionRef, result?: Json): Session;
  fail(id: SessionRef, error: string): Session;

  iterate(id: SessionRef, data?: Json): Session;
  recordToolCall(id: SessionRef, call: ToolCall): Event;
  recordLearning(id: SessionRef, learning: Learning): Event;
  recordEvent(id: SessionRef, kind: string, data: Json): Event;
  /** At most `limit` (max 1000, default 100) events from position `from` (default 0). */
  events(id: SessionRef, from?: Integer, limit?: Integer): EventPage;
  recentEvents(id: SessionRef): Event[];

  /** Merge into the context: top-level keys are replaced, a null value removes the key. */
  updateContext(id: SessionRef, patch: { [key: string]: Json }): Session;
  resumptionContext(id: SessionRef): Resumption;

  /** Newest first, at most `limit` (max 1000, default 100). */
  list(filter?: SessionFilter, cursor?: string | null, limit?: Integer): SessionPage;
  stats(filter?: SessionFilter): SessionStats;

  /** Remove ended sessions older than `olderThanDays` (30 when null). */
  cleanup(olderThanDays?: Integer | null, dryRun?: boolean): CleanupReport;
  delete(id: SessionRef): void;
  rebuildIndex(dryRun?: boolean): IndexReport;
  export(id: SessionRef): ExportDocument;
  import(document: ExportDocument): Session;

  /** Add items (JSON values) at the end of the conversation, in one append
   * (the session must be active or paused). */
  addItems(id: SessionRef, items: Json[]): Session;
  /** The last `limit` items (all with null), oldest first. */
  items(id: SessionRef, limit?: Integer | null): Json[];
  /** Take the last item off and return it; undefined if there is none (a
   * null item pops as null). Recorded as an event. */
  popItem(id: SessionRef): Json | undefined;
  /** Empty the conversation (recorded as an event). */
  clearItems(id: SessionRef): Session;

  /** Put a checkpoint in an active or paused session. */
  putCheckpoint(id: SessionRef, checkpoint: NewCheckpoint): void;
  /** Put writes (`[channel, value]`) of task `taskId` pending on checkpoint
   * `checkpointId` of namespace `ns`. */
  putWrites(
    id: SessionRef,
    ns: string,
    checkpointId: string,
    taskId: string,
    taskPath: string,
    writes: [string, TypedValue][],
  ): void;
  /** Checkpoint `checkpointId` of namespace `ns` (default ""), or the latest;
   * null if there is none (or no such session). */
  getCheckpoint(id: SessionRef, ns?: string, checkpointId?: string | null): CheckpointTuple | null;
  /** Checkpoints matching `query`, a page at a time. */
  listCheckpoints(query?: CheckpointQuery, cursor?: string | null): CheckpointPage;
  /** Copy every checkpoint and write of `from` into `to` (ids kept); both
   * must exist. */
  copyCheckpoints(from: SessionRef, to: SessionRef): void;
  /** Drop the checkpoints whose metadata `run_id` is one of `runIds` in every
   * session `threads` selects; how many sessions changed. */
  dropRuns(threads: SessionFilter, runIds: string[]): number;
  /** Drop every checkpoint but the latest of each namespace. */
  pruneCheckpoints(id: SessionRef): void;

  /** Set the endpoint; an enabled one must pass `checkWebhookUrl` with the
   * `webhookAllow` exceptions given to `openSessions`. */
  setWebhook(config: WebhookInput): WebhookConfig;
  /** Whether webhooks may be sent to `url` under the address policy with
   * the exceptions `allow`; throws `SessionError('invalid-input')` if not. */
  checkWebhookUrl(url: string, allow?: string[]): void;
  getWebhook(): WebhookConfig | null;
  clearWebhook(): void;
  /** Disable the endpoint if it still points at `url` (a compare-and-set,
   * as after a 410); whether it was disabled. */
  disableWebhook(url: string): boolean;
  /** Every webhook delivery of the directory, oldest first. */
  deliveries(): Delivery[];
  /** Stop this process's sender (`webhooks.deliver`) after the attempts in
   * flight are recorded. */
  stopDelivering(): Promise<void>;

  isResumable(id: SessionRef): boolean;
  /** Milliseconds from creation to end (or to now). */
  duration(id: SessionRef): number;
  /** Iteration / max-iterations, from 0 to 100. */
  progress(id: SessionRef): number;

  /** Release this process's outbox segment (ending the process does too);
   * a sender running here stops without waiting for its attempts in flight
   * (they are sent again by the next sender: see `stopDelivering`). */
  close(): void;
}

/** The session API over one directory, in a worker thread: the methods of
 * `SyncSessions`, each returning a Promise. Calls run one at a time, in the
 * order they were made; none blocks the application's event loop. */
export type Sessions = {
  [K in Exclude<keyof SyncSessions, 'close' | 'stopDelivering'>]: (
    ...args: Parameters<SyncSessions[K]>
  ) => Promise<ReturnType<SyncSessions[K]>>;
} & {
  stopDelivering(): Promise<void>;
  /** Release this process's outbox segment and end the worker (after the
   * calls made before, and after a sender running here has recorded its
   * attempts in flight); later calls reject. */
  close(): Promise<void>;
};

/** The classes of the objects `openSessions` and `openSessionsSync`
 * resolve to, for `instanceof` (only those functions make them). */
export const Sessions: { readonly prototype: Sessions; new (...args: never[]): Sessions };
export const SyncSessions: { readonly prototype: SyncSessions; new (...args: never[]): SyncSessions };

/** Open the sessions stored in `dir` (created if needed), in a worker thread. */
export function openSessions(options: OpenOptions): Promise<Sessions>;

/** Open the sessions stored in `dir` (created if needed), to be called
 * synchronously on this thread. */
export function openSessionsSync(options: OpenOptions): Promise<SyncSessions>;
