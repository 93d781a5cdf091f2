// A TypeScript program using both APIs the package exports: type-checked
// with `tsc --strict --noEmit` (test/types.test.mjs), never run. A wrong
// shape in index.d.ts or seed.d.ts fails the check; so does a line
// expected to be an error (ts-expect-error) that type-checks.

import {
  openSessions,
  openSessionsSync,
  SessionError,
  DEFAULT_LOCK_TIMEOUT_MS,
  BUILT_IN_KINDS,
  type Session,
  Sessions,
  SyncSessions,
  type Event,
  type Delivery,
  type Json,
  type TypedValue,
  type CheckpointTuple,
  type CheckpointPage,
} from 'agent-session';
import {
  configure,
  startSession,
  incrementIteration,
  recordToolCall,
  recordLearning,
  pauseSession,
  resumeSession,
  completeSession,
  failSession,
  getSessionContext,
  listSessions,
  getActiveSessions,
  getPausedSessions,
  getCompletedSessions,
  getFailedSessions,
  getSessionStats,
  cleanupOldSessions,
  deleteSession,
  exportSession,
  importSession,
  configureWebhook,
  isSessionResumable,
  getSessionDuration,
  getSessionProgress,
  type SessionContext,
} from 'agent-session/seed';

export async function withPromises(): Promise<number> {
  const s: Sessions = await openSessions({ dir: './sessions', lockTimeoutMs: DEFAULT_LOCK_TIMEOUT_MS });
  const started: Session = await s.start({ task: 'write the parser', maxIterations: 5, context: { repo: 'x' } });
  const step: Session = await s.iterate(started.id, { step: 1 });
  const call: Event = await s.recordToolCall(started.id, { name: 'grep', input: ['fn'], output: null, durationMs: 3 });
  const page = await s.events(started.id, 0, 10);
  const kinds: string[] = page.events.map((e) => e.kind);
  const stats = await s.stats({ status: 'active' });
  // @ts-expect-error: the async API's methods return Promises
  const notYet: Session = s.get(started.id);
  const isOne: boolean = s instanceof Sessions && !(s instanceof SyncSessions);
  await s.close();
  void [step, call, kinds, notYet, isOne, BUILT_IN_KINDS.has('start')];
  return stats.total;
}

export async function deliveringWebhooks(): Promise<number> {
  const s: Sessions = await openSessions({
    dir: './sessions',
    webhookAllow: ['10.0.0.0/8'],
    webhooks: { deliver: true, retryScheduleMs: [1000, 60_000], timeoutMs: 5000 },
  });
  const all: Delivery[] = await s.deliveries();
  const refused: boolean = all.some((d) => d.state === 'pending' && d.attempts.some((a) => a.refused));
  const disabled: boolean = await s.disableWebhook('https://hooks.example.com/gone');
  // @ts-expect-error: a delivery's state is one of four
  const odd: boolean = all[0]?.state === 'lost';
  await s.stopDelivering();
  await s.close();
  void [refused, disabled, odd];
  return all.length;
}

export async function onThisThread(): Promise<boolean> {
  const s: SyncSessions = await openSessionsSync({ dir: './sessions' });
  const a: Session = s.start({ task: 't' });
  try {
    s.fail(a.id, 'no');
  } catch (e) {
    if (e instanceof SessionError && e.code === 'invalid-transition') return false;
  }
  // @ts-expect-error: a status must be one of the statuses
  s.list({ status: 'sleeping' });
  return s.isResumable(a.id);
}

export async function seedNames(): Promise<void> {
  configure({ dir: './.agent-sessions' });
  // The original's usage example, as it was written.
  const session = await startSession('Implement feature X', 'developer', {
    userId: 'user123',
    channelId: 'channel456',
    maxIterations: 50,
  });
  await incrementIteration(session.id, { phase: 'analysis' });
  await incrementIteration(session.id, { phase: 'implementation' });
  await pauseSession(session.id, 'Waiting for user approval');
  await resumeSession(session.id);
  const context: SessionContext = getSessionContext(session.id);
  const iterations: number = context.iterations;
  await completeSession(session.id, 'Feature implemented successfully');

  await recordToolCall(session.id, { name: 'ls', input: {}, output: [], durationMs: 1 });
  await recordLearning(session.id, 'cache the index', 'EXPERTISE.md');
  const lists: Session[][] = await Promise.all([
    listSessions({ userId: 'user123', limit: 10, offset: 0 }),
    getActiveSessions(),
    getPausedSessions(),
    getCompletedSessions(),
    getFailedSessions(),
  ]);
  const rate: number = (await getSessionStats()).successRate;
  const removed: string[] = await cleanupOldSessions(30);
  const doc = await exportSession(session.id);
  await deleteSession(session.id);
  await importSession(doc);
  await configureWebhook({ url: 'https://hooks.example.com/agents', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' });
  const done: boolean = isSessionResumable(session);
  const ms: number = getSessionDuration(session.id);
  const pct: number = getSessionProgress(session.id);
  await failSession(session.id, new Error('too late')).catch(() => undefined);
  // @ts-expect-error: the seed's context is not a Promise
  await getSessionContext(session.id).then(() => undefined);
  void [iterations, lists, rate, removed, done, ms, pct];
}

export async function keysItemsAndCheckpoints(): Promise<number> {
  const s: Sessions = await openSessions({ dir: './sessions' });
  const thread: Session = await s.start({ task: 'chat', key: 'thread-1', mode: 'langgraph' });
  const key: string | null = thread.key;
  const same: Session = await s.get({ key: 'thread-1' });
  await s.pause(thread.id, 'by id still');
  await s.addItems({ key: 'thread-1' }, [{ role: 'user', content: 'hi' }]);
  const last: Json[] = await s.items({ key: 'thread-1' }, 10);
  const popped: Json | undefined = await s.popItem({ key: 'thread-1' });
  const bytes = Uint8Array.from([123, 125]);
  const value: TypedValue = { type: 'json', bytes };
  await s.putCheckpoint({ key: 'thread-1' }, {
    id: 'c1',
    checkpoint: value,
    metadata: { source: 'input', step: -1 },
    channelVersions: { messages: 1 },
    newValues: [{ channel: 'messages', version: 1, value }],
  });
  await s.putWrites({ key: 'thread-1' }, '', 'c1', 'task-1', '', [['messages', value]]);
  const got: CheckpointTuple | null = await s.getCheckpoint({ key: 'thread-1' });
  const page: CheckpointPage = await s.listCheckpoints({ threads: { mode: 'langgraph' }, limit: 10 });
  await s.copyCheckpoints({ key: 'thread-1' }, same.id);
  const changed: number = await s.dropRuns({ mode: 'langgraph' }, ['run-1']);
  await s.pruneCheckpoints({ key: 'thread-1' });
  // @ts-expect-error: a session is named by an id or by { key }, not both
  await s.get({ key: 'thread-1', id: thread.id });
  // @ts-expect-error: a value's bytes are a Uint8Array
  await s.putWrites({ key: 'thread-1' }, '', 'c1', 'task-1', '', [['messages', { type: 'json', bytes: '{}' }]]);
  const sync: SyncSessions = await openSessionsSync({ dir: './sessions' });
  const cleared: Session = sync.clearItems({ key: 'thread-1' });
  await s.close();
  void [key, last, popped, got?.pendingWrites[0]?.value.bytes, page.nextCursor, changed, cleared];
  return got?.channelValues.length ?? 0;
}
