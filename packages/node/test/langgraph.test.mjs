// AgentSessionSaver (agent-session/langgraph) beyond LangGraph's own suite
// (test/langgraph-validation.spec.mjs, run by vitest): a graph interrupted
// in one process and resumed in another, checkpoint states of several MiB,
// the methods the Python checkpointer has too (copyThread, deleteForRuns,
// prune), and how a thread maps onto a session.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { emptyCheckpoint, uuid6 } from '@langchain/langgraph-checkpoint';
import { openSessionsSync } from '../src/index.js';
import { AgentSessionSaver } from '../src/langgraph.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const GRAPH = path.join(HERE, 'fixtures/langgraph-graph.mjs');

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-langgraph-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function saver(t, store) {
  const s = new AgentSessionSaver(store);
  t.after(() => s.close());
  return s;
}

/** Run the graph fixture in a process of its own (bounded); its JSON line. */
function runGraph(dir, thread, phase, arg) {
  const r = spawnSync(process.execPath, [GRAPH, dir, thread, phase, arg], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.error, undefined, r.error?.message);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

const config = (thread, ns = '') => ({ configurable: { thread_id: thread, checkpoint_ns: ns } });

/** Put a checkpoint with `values` (all new) on `thread`, after `parent`. */
async function put(s, thread, values, { parent, metadata = { source: 'loop', step: 0, parents: {} }, ns = '' } = {}) {
  const cp = { ...emptyCheckpoint(), id: uuid6(-1) };
  cp.channel_values = values;
  cp.channel_versions = Object.fromEntries(Object.keys(values).map((k) => [k, 1]));
  const c = config(thread, ns);
  if (parent) c.configurable.checkpoint_id = parent;
  return s.put(c, cp, metadata, cp.channel_versions);
}

const idsOf = async (gen) => {
  const out = [];
  for await (const t of gen) out.push(t.checkpoint.id);
  return out;
};

test('a graph interrupted in one process is resumed from the checkpointer in another', async (t) => {
  const dir = tempRoot(t);
  const first = runGraph(dir, 'thread-1', 'start', '3');
  assert.deepEqual(first, {
    ran: ['double', 'approve'],
    log: ['double'],
    value: 6,
    interrupt: [{ question: 'apply +10 to 6?' }],
    next: ['approve'],
  });
  const second = runGraph(dir, 'thread-1', 'resume', 'yes');
  // `double` did not run again: the state came from the first process's
  // checkpoints; `approve` ran again to take the answer, as LangGraph does.
  assert.deepEqual(second, {
    ran: ['approve', 'square'],
    log: ['double', 'approve:yes', 'square'],
    value: 256,
    interrupt: null,
    next: [],
  });
  // Another thread of the same directory is its own.
  assert.equal(runGraph(dir, 'thread-2', 'start', '1').value, 2);
  // Each thread is a session keyed by its id, of mode "langgraph".
  const s = await openSessionsSync({ dir });
  t.after(() => s.close());
  const threads = s.list({ mode: 'langgraph' }).sessions.map((x) => x.key).sort();
  assert.deepEqual(threads, ['thread-1', 'thread-2']);
  const kinds = new Set(s.events({ key: 'thread-1' }, 0, 1000).events.map((e) => e.kind));
  assert.deepEqual([...kinds].sort(), ['checkpoint', 'start', 'writes']);
});

test('checkpoint states of several MiB round-trip, in values, writes and across a fresh opening', async (t) => {
  const dir = tempRoot(t);
  const s = saver(t, dir);
  // Incompressible text: 6 MiB in one channel, 3 MiB in another, 2 MiB in a write.
  const big = crypto.randomBytes(4.5 * 1024 * 1024).toString('base64');
  const other = crypto.randomBytes(2.25 * 1024 * 1024).toString('base64');
  const ret = await put(s, 'big', { messages: [{ role: 'user', content: big }], notes: other, small: 1 });
  const write = crypto.randomBytes(1.5 * 1024 * 1024).toString('base64');
  await s.putWrites(ret, [['messages', { content: write }]], 'task-1');
  const got = await s.getTuple(config('big'));
  assert.equal(got.checkpoint.channel_values.messages[0].content, big);
  assert.equal(got.checkpoint.channel_values.notes, other);
  assert.equal(got.checkpoint.channel_values.small, 1);
  assert.deepEqual(got.pendingWrites, [['task-1', 'messages', { content: write }]]);
  // A child that changes only `small` still reads the big values.
  const cp2 = { ...emptyCheckpoint(), id: uuid6(-1), channel_values: { small: 2 }, channel_versions: { messages: 1, notes: 1, small: 2 } };
  await s.put({ configurable: { ...ret.configurable } }, cp2, { source: 'loop', step: 1, parents: {} }, { small: 2 });
  // Read by another saver on the directory, as another process would.
  const fresh = saver(t, await openSessionsSync({ dir }));
  const latest = await fresh.getTuple(config('big'));
  assert.equal(latest.checkpoint.id, cp2.id);
  assert.equal(latest.checkpoint.channel_values.messages[0].content, big);
  assert.equal(latest.checkpoint.channel_values.small, 2);
  assert.equal((await idsOf(fresh.list(config('big')))).length, 2);
});

test('copyThread, deleteForRuns, prune and deleteThread, as the Python checkpointer has them', async (t) => {
  const s = saver(t, tempRoot(t));
  const a1 = await put(s, 'a', { x: 1 }, { metadata: { source: 'input', step: -1, parents: {}, run_id: 'run-1' } });
  const a2 = await put(s, 'a', { x: 2 }, { parent: a1.configurable.checkpoint_id, metadata: { source: 'loop', step: 0, parents: {}, run_id: 'run-2' } });
  await s.putWrites(a2, [['x', 3]], 'task');
  await put(s, 'a', { y: 1 }, { ns: 'child:1', metadata: { source: 'loop', step: 0, parents: {}, run_id: 'run-2' } });
  const ids = [a2.configurable.checkpoint_id, a1.configurable.checkpoint_id];

  await s.copyThread('a', 'b');
  assert.deepEqual(await idsOf(s.list(config('b'))), ids);
  const copied = await s.getTuple(config('b'));
  assert.deepEqual(copied.pendingWrites, [['task', 'x', 3]]);
  assert.deepEqual(copied.parentConfig, { configurable: { thread_id: 'b', checkpoint_ns: '', checkpoint_id: ids[1] } });
  assert.deepEqual(await idsOf(s.list(config('a'))), ids, 'the source is unchanged');
  await s.copyThread('no-such-thread', 'c');
  assert.deepEqual(await idsOf(s.list({ configurable: { thread_id: 'c' } })), []);

  await s.deleteForRuns(['run-2']);
  assert.deepEqual(await idsOf(s.list({ configurable: { thread_id: 'a' } })), [ids[1]]);
  assert.deepEqual(await idsOf(s.list({ configurable: { thread_id: 'b' } })), [ids[1]]);
  assert.equal(await s.getTuple({ configurable: { thread_id: 'a', checkpoint_ns: '', checkpoint_id: ids[0] } }), undefined);
  await s.deleteForRuns([]);

  const d1 = await put(s, 'd', { x: 1 });
  const d2 = await put(s, 'd', { x: 2 }, { parent: d1.configurable.checkpoint_id });
  const other = await put(s, 'e', { x: 1 });
  await s.prune(['d', 'no-such-thread']);
  assert.deepEqual(await idsOf(s.list(config('d'))), [d2.configurable.checkpoint_id]);
  assert.equal((await s.getTuple(config('d'))).checkpoint.channel_values.x, 2);
  assert.deepEqual(await idsOf(s.list(config('e'))), [other.configurable.checkpoint_id]);
  await s.prune(['d'], { strategy: 'delete' });
  assert.deepEqual(await idsOf(s.list(config('d'))), []);
  await assert.rejects(s.prune(['e'], { strategy: 'oldest' }), /unknown strategy/);

  await s.deleteThread('e');
  await s.deleteThread('e');
  assert.equal(await s.getTuple(config('e')), undefined);
  // Listing every thread: the threads left, newest first within each.
  const all = [];
  for await (const tup of s.list({})) all.push(tup.config.configurable.thread_id);
  assert.deepEqual([...new Set(all)].sort(), ['a', 'b']);
});

test('a thread is a session keyed by its id; what LangGraph gets wrong is refused', async (t) => {
  const dir = tempRoot(t);
  const sessions = await openSessionsSync({ dir });
  t.after(() => sessions.close());
  // Sessions already opened can be given, and are not closed by the saver.
  const s = new AgentSessionSaver(sessions);
  const r = await put(s, 'thread-x', { x: 1 });
  await s.close();
  const session = sessions.get({ key: 'thread-x' });
  assert.equal(session.mode, 'langgraph');
  assert.equal(session.status, 'active');
  assert.equal(sessions.getCheckpoint({ key: 'thread-x' }).id, r.configurable.checkpoint_id);
  // Without a thread id or a checkpoint id: rejected, as MemorySaver does.
  await assert.rejects(s.put({ configurable: {} }, emptyCheckpoint(), {}, {}), /thread_id/);
  await assert.rejects(s.putWrites({ configurable: { thread_id: 'x' } }, [], 'task'), /checkpoint_id/);
  assert.equal(await s.getTuple({ configurable: {} }), undefined);
  // A thread whose session ended takes no more checkpoints.
  sessions.complete({ key: 'thread-x' });
  await assert.rejects(put(s, 'thread-x', { x: 2 }), (e) => e.code === 'invalid-transition');
  assert.throws(() => new AgentSessionSaver(42), TypeError);
});

test('a number as thread id names the thread its text names, as in Python', async (t) => {
  const s = saver(t, tempRoot(t));
  const r = await put(s, 42, { n: 1 });
  assert.equal(r.configurable.thread_id, 42);
  assert.equal((await s.getTuple(config('42'))).checkpoint.id, r.configurable.checkpoint_id);
  assert.deepEqual(await idsOf(s.list(config(42))), [r.configurable.checkpoint_id]);
  // 0 is a thread id too, not "every thread".
  await put(s, 'other', { n: 2 });
  assert.deepEqual(await idsOf(s.list(config(0))), []);
  assert.equal((await idsOf(s.list({ configurable: {} }))).length, 2);
});
