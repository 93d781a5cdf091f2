// Sessions named by the caller's key, conversations and checkpoints
// (agent:session@0.4.0) through the Node API, on the calling thread and in
// the worker; racing starts of one key from several processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { openSessions, openSessionsSync, SessionError, SyncSessions } from '../src/index.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..');
const WIT = path.resolve(PKG, '../../wit/session.wit');
const SRC = pathToFileURL(path.join(PKG, 'src/index.js')).href;

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-threads-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function open(t) {
  const s = await openSessionsSync({ dir: tempRoot(t) });
  t.after(() => s.close());
  return s;
}

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());
const json = (v) => ({ type: 'json', bytes: new TextEncoder().encode(JSON.stringify(v)) });
const unjson = (t) => JSON.parse(new TextDecoder().decode(t.bytes));
const isError = (code, pattern) => (e) => e instanceof SessionError && e.code === code && pattern.test(e.message);

test('every function of the WIT conversations and checkpoints interfaces is a method, typed in index.d.ts', () => {
  const wit = fs.readFileSync(WIT, 'utf8');
  const dts = fs.readFileSync(path.join(PKG, 'index.d.ts'), 'utf8');
  for (const [iface, count] of [['conversations', 4], ['checkpoints', 7]]) {
    const body = wit.slice(wit.indexOf(`interface ${iface} {`));
    const names = [...body.slice(0, body.indexOf('\n}')).matchAll(/^\s*%?([a-z-]+): func\(/gm)].map((m) => camel(m[1]));
    assert.equal(names.length, count, `${iface}: ${names}`);
    for (const name of names) {
      assert.equal(typeof SyncSessions.prototype[name], 'function', `SyncSessions.${name}`);
      assert.match(dts, new RegExp(`\\n  ${name}\\(`), `index.d.ts declares ${name}`);
    }
  }
});

test('start with a key is get-or-create, and every operation takes { key } where it takes an id', async (t) => {
  const s = await open(t);
  const a = s.start({ task: 'chat', key: 'thread-1', mode: 'langgraph', userId: 'u' });
  assert.equal(a.key, 'thread-1');
  assert.equal(s.start({ task: 'chat' }).key, null);
  // The same key: the session as it is, the other options not applied.
  const again = s.start({ task: 'something else', key: 'thread-1', mode: 'other' });
  assert.equal(again.id, a.id);
  assert.equal(again.task, 'chat');
  assert.equal(again.mode, 'langgraph');
  assert.equal(again.eventCount, 1);
  const k = { key: 'thread-1' };
  assert.equal(s.get(k).id, a.id);
  assert.equal(s.get({ id: a.id }).key, 'thread-1');
  assert.equal(s.iterate(k, { step: 1 }).iteration, 1);
  assert.equal(s.recordToolCall(k, { name: 'ls', input: {}, output: [], durationMs: 1 }).kind, 'tool_call');
  assert.equal(s.recordLearning(k, { insight: 'x' }).kind, 'learning');
  assert.equal(s.recordEvent(k, 'note', { n: 1 }).kind, 'note');
  assert.deepEqual(s.updateContext(k, { repo: 'x' }).context, { repo: 'x' });
  assert.equal(s.events(k, 0, 100).events.length, 6);
  assert.equal(s.recentEvents(k).length, 6);
  assert.equal(s.resumptionContext(k).session.id, a.id);
  assert.equal(s.pause(k, 'lunch').status, 'paused');
  assert.equal(s.isResumable(k), true);
  assert.equal(s.resume(k).status, 'active');
  assert.equal(typeof s.duration(k), 'number');
  assert.equal(s.progress(k), 1);
  assert.equal(s.export(k).session.key, 'thread-1');
  assert.equal(s.complete(k, { ok: true }).status, 'completed');
  // A key that looks like an id is still a key; an id is not a key.
  assert.throws(() => s.get({ key: a.id }), isError('not-found', /key/));
  assert.throws(() => s.get('thread-1'), isError('not-found', /./));
  s.delete(k);
  assert.throws(() => s.get(k), isError('not-found', /thread-1/));
  // A new session may take the key again.
  assert.notEqual(s.start({ task: 'chat', key: 'thread-1' }).id, a.id);
});

test('a session reference the WIT cannot carry is refused before the call', async (t) => {
  const s = await open(t);
  assert.throws(() => s.get(42), isError('invalid-input', /^get: id must be a string, got the number 42$/));
  assert.throws(() => s.get({ key: 7 }), isError('invalid-input', /^get: session\.key must be a string, got the number 7$/));
  assert.throws(() => s.get({}), isError('invalid-input', /^get: session must be an id \(a string\), \{ key \} or \{ id \}/));
  assert.throws(() => s.get({ key: 'a', id: 'b' }), isError('invalid-input', /^get: session must be/));
  assert.throws(() => s.copyCheckpoints({ key: 'a' }, 3), isError('invalid-input', /^copy-checkpoints: to must be a string/));
  assert.throws(() => s.start({ task: 't', key: 5 }), isError('invalid-input', /^start: options\.key must be a string/));
  // What the component judges: a key's size and characters.
  assert.throws(() => s.start({ task: 't', key: '' }), isError('invalid-input', /key/));
  assert.throws(() => s.start({ task: 't', key: 'a\nb' }), isError('invalid-input', /key/));
  assert.throws(() => s.start({ task: 't', key: 'x'.repeat(513) }), isError('invalid-input', /key/));
  assert.equal(s.start({ task: 't', key: 'é'.repeat(256) }).key, 'é'.repeat(256));
});

test('a conversation: items added, read from the end, popped and cleared, all recorded', async (t) => {
  const s = await open(t);
  const k = { key: 'conversation-1' };
  assert.throws(() => s.addItems(k, [1]), isError('not-found', /conversation-1/));
  s.start({ task: 'chat', key: 'conversation-1' });
  assert.deepEqual(s.items(k), []);
  assert.equal(s.popItem(k), undefined);
  const items = [{ role: 'user', content: 'hi' }, null, 'text', 3.5, [1, { a: [] }]];
  assert.equal(s.addItems(k, items).eventCount, 1 + items.length);
  assert.deepEqual(s.items(k), items);
  assert.deepEqual(s.items(k, 2), items.slice(-2));
  assert.deepEqual(s.items(k, 0), []);
  assert.deepEqual(s.items(k, 100), items);
  assert.deepEqual(s.popItem(k), [1, { a: [] }]);
  s.popItem(k);
  s.popItem(k);
  // A null item pops as null, an empty conversation as undefined.
  assert.equal(s.popItem(k), null);
  assert.deepEqual(s.items(k), [{ role: 'user', content: 'hi' }]);
  s.clearItems(k);
  assert.deepEqual(s.items(k), []);
  assert.equal(s.popItem(k), undefined);
  s.addItems(k, [{ after: 'clear' }]);
  assert.deepEqual(s.items(k), [{ after: 'clear' }]);
  // Nothing was rewritten: every change is an event.
  const kinds = s.events(k, 0, 1000).events.map((e) => e.kind);
  assert.deepEqual(kinds, ['start', 'item', 'item', 'item', 'item', 'item', 'item_pop', 'item_pop', 'item_pop', 'item_pop', 'items_clear', 'item']);
  // Items above 16 KiB are kept beside the history, and read back whole.
  const big = { text: 'x'.repeat(200_000) };
  s.addItems(k, [big, { small: true }]);
  assert.deepEqual(s.items(k, 2), [big, { small: true }]);
  assert.throws(() => s.addItems(k, [{ n: NaN }]), isError('invalid-input', /^add-items: items\[0\]\.n must be a JSON value/));
  assert.throws(() => s.addItems(k, 'x'), isError('invalid-input', /^add-items: items must be an array/));
  s.complete(k);
  assert.throws(() => s.addItems(k, [1]), isError('invalid-transition', /./));
});

test('checkpoints: values per channel version, writes, latest, listing, copy, drops and prune', async (t) => {
  const s = await open(t);
  const k = { key: 'thread-1' };
  s.start({ task: 'graph', key: 'thread-1', mode: 'langgraph' });
  assert.equal(s.getCheckpoint(k), null);
  assert.equal(s.getCheckpoint({ key: 'no-such-thread' }), null);
  s.putCheckpoint(k, {
    id: 'c1',
    checkpoint: json({ v: 4, id: 'c1' }),
    metadata: { source: 'input', step: -1, run_id: 'r1' },
    channelVersions: { a: 1, b: 1 },
    newValues: [
      { channel: 'a', version: 1, value: json('a1') },
      { channel: 'b', version: 1, value: json('b1') },
    ],
  });
  s.putWrites(k, '', 'c1', 'task-1', 'p', [['a', json('w1')], ['__error__', json('e1')]]);
  s.putWrites(k, '', 'c1', 'task-1', 'p', [['a', json('w2')], ['__error__', json('e2')]]);
  // The child puts a new value of `a` only: `b` is the parent's.
  s.putCheckpoint(k, {
    id: 'c2',
    parentId: 'c1',
    checkpoint: json({ v: 4, id: 'c2' }),
    metadata: { source: 'loop', step: 0, run_id: 'r2' },
    channelVersions: { a: 2, b: 1 },
    newValues: [{ channel: 'a', version: 2, value: json('a2') }],
  });
  const latest = s.getCheckpoint(k);
  assert.equal(latest.id, 'c2');
  assert.equal(latest.parentId, 'c1');
  assert.equal(latest.key, 'thread-1');
  assert.deepEqual(latest.metadata, { source: 'loop', step: 0, run_id: 'r2' });
  assert.ok(latest.checkpoint.bytes instanceof Uint8Array);
  assert.deepEqual(Object.fromEntries(latest.channelValues.map(([c, v]) => [c, unjson(v)])), { a: 'a2', b: 'b1' });
  assert.deepEqual(latest.pendingWrites, []);
  const first = s.getCheckpoint(k, '', 'c1');
  assert.equal(first.parentId, null);
  assert.deepEqual(Object.fromEntries(first.channelValues.map(([c, v]) => [c, unjson(v)])), { a: 'a1', b: 'b1' });
  // A regular write is kept once per task and position; `__error__` replaces.
  assert.deepEqual(
    first.pendingWrites.map((w) => [w.taskId, w.taskPath, w.channel, unjson(w.value)]),
    [['task-1', 'p', '__error__', 'e2'], ['task-1', 'p', 'a', 'w1']],
  );
  const ids = (page) => page.checkpoints.map((c) => c.id);
  assert.deepEqual(ids(s.listCheckpoints({ session: k })), ['c2', 'c1']);
  assert.deepEqual(ids(s.listCheckpoints({ session: k, before: 'c2' })), ['c1']);
  assert.deepEqual(ids(s.listCheckpoints({ session: k, metadata: { source: 'input' } })), ['c1']);
  assert.deepEqual(ids(s.listCheckpoints({ session: k, limit: 1 })), ['c2']);
  assert.deepEqual(ids(s.listCheckpoints({ threads: { mode: 'langgraph' }, ns: 'other' })), []);
  assert.equal(s.listCheckpoints({ session: k }).nextCursor, null);
  // Copy into another thread (it must exist), ids kept.
  s.start({ task: 'graph', key: 'thread-2', mode: 'langgraph' });
  s.copyCheckpoints(k, { key: 'thread-2' });
  assert.deepEqual(ids(s.listCheckpoints({ session: { key: 'thread-2' } })), ['c2', 'c1']);
  assert.throws(() => s.copyCheckpoints(k, { key: 'thread-3' }), isError('not-found', /thread-3/));
  // Drops are recorded, never rewritten.
  assert.equal(s.dropRuns({ mode: 'langgraph' }, ['r2']), 2);
  assert.deepEqual(ids(s.listCheckpoints({ session: k })), ['c1']);
  assert.equal(s.dropRuns({ mode: 'langgraph' }, []), 0);
  s.putCheckpoint(k, { id: 'c3', parentId: 'c1', checkpoint: json({ v: 4 }), channelVersions: { a: 1 } });
  s.pruneCheckpoints(k);
  assert.deepEqual(ids(s.listCheckpoints({ session: k })), ['c3']);
  assert.deepEqual(Object.fromEntries(s.getCheckpoint(k).channelValues.map(([c, v]) => [c, unjson(v)])), { a: 'a1' });
  const kinds = s.events(k, 0, 1000).events.map((e) => e.kind);
  assert.deepEqual(kinds, ['start', 'checkpoint', 'writes', 'writes', 'checkpoint', 'checkpoints_drop', 'checkpoint', 'checkpoints_drop']);
  // What the WIT types cannot carry.
  assert.throws(() => s.putWrites(k, '', 'c1', 't', '', [['a', { type: 'json', bytes: 'x' }]]), isError('invalid-input', /^put-writes: writes\[0\]\[1\]\.bytes must be bytes \(a Uint8Array\)/));
  assert.throws(() => s.putWrites(k, '', 'c1', 't', '', [['a']]), isError('invalid-input', /^put-writes: writes\[0\] must be a pair/));
  assert.throws(() => s.putCheckpoint(k, { id: 'x', checkpoint: json({}), metadata: [] }), isError('invalid-input', /metadata/));
});

test('the worker gives the same: keys, items, checkpoints with their bytes', async (t) => {
  const dir = tempRoot(t);
  const s = await openSessions({ dir });
  t.after(() => s.close());
  const a = await s.start({ task: 'chat', key: 'k' });
  assert.equal((await s.start({ task: 'x', key: 'k' })).id, a.id);
  await s.addItems({ key: 'k' }, [{ n: 1 }, null]);
  assert.equal(await s.popItem({ key: 'k' }), null);
  assert.equal(await s.popItem({ key: 'k' }).then(() => s.popItem({ key: 'k' })), undefined);
  const bytes = new Uint8Array(3 << 20).map((_, i) => (i * 7) & 0xff);
  await s.putCheckpoint({ key: 'k' }, { id: 'c1', checkpoint: { type: 'bytes', bytes }, channelVersions: {} });
  const got = await s.getCheckpoint(a.id, '', 'c1');
  assert.ok(got.checkpoint.bytes instanceof Uint8Array);
  assert.equal(Buffer.compare(Buffer.from(got.checkpoint.bytes), Buffer.from(bytes)), 0);
  await assert.rejects(s.get({ key: 9 }), isError('invalid-input', /session\.key/));
});

/** A process that opens `dir`, says "ready", waits for "go" on its stdin,
 * starts a session with `key` and prints its id. */
const RACER = `
  import { openSessionsSync } from ${JSON.stringify(SRC)};
  const [dir, key] = process.argv.slice(1);
  const s = await openSessionsSync({ dir });
  process.stdout.write('ready\\n');
  process.stdin.once('data', () => {
    const session = s.start({ task: 'race ' + process.pid, key });
    process.stdout.write(session.id + '\\n');
    s.close();
    process.exit(0);
  });
`;

/** Run `n` racers; resolves to their ids. Every wait is bounded. */
function race(dir, key, n, boundMs = 60_000) {
  return new Promise((resolve, reject) => {
    const procs = [];
    const out = [];
    let ready = 0;
    let done = 0;
    const timer = setTimeout(() => {
      for (const p of procs) p.kill('SIGKILL');
      reject(new Error(`the racers did not finish in ${boundMs} ms: ${JSON.stringify(out)}`));
    }, boundMs);
    for (let i = 0; i < n; i++) {
      const p = spawn(process.execPath, ['--input-type=module', '-e', RACER, dir, key], { stdio: ['pipe', 'pipe', 'pipe'] });
      procs.push(p);
      out.push({ stdout: '', stderr: '' });
      p.stderr.on('data', (d) => (out[i].stderr += d));
      p.stdout.on('data', (d) => {
        const before = out[i].stdout;
        out[i].stdout += d;
        if (!before.includes('ready\n') && out[i].stdout.includes('ready\n') && ++ready === n) {
          // Everyone has opened the directory: go, all at once.
          for (const q of procs) q.stdin.write('go\n');
        }
      });
      p.on('exit', (code) => {
        if (code !== 0) {
          clearTimeout(timer);
          for (const q of procs) q.kill('SIGKILL');
          reject(new Error(`racer ${i} exited with ${code}: ${out[i].stderr}`));
          return;
        }
        if (++done === n) {
          clearTimeout(timer);
          resolve(out.map((o) => o.stdout.split('\n')[1]));
        }
      });
    }
  });
}

test('racing starts of one key from six processes make one session, and every process gets it', async (t) => {
  const dir = tempRoot(t);
  const ids = await race(dir, 'same-thread', 6);
  assert.equal(ids.length, 6);
  for (const id of ids) assert.match(id, /^[0-9a-f-]{36}$/);
  assert.equal(new Set(ids).size, 1, JSON.stringify(ids));
  const s = await openSessionsSync({ dir });
  t.after(() => s.close());
  const page = s.list({}, null, 100);
  assert.deepEqual(page.sessions.map((x) => [x.id, x.key]), [[ids[0], 'same-thread']]);
  // One start in its history: the losers made nothing.
  assert.deepEqual(s.events({ key: 'same-thread' }).events.map((e) => e.kind), ['start']);
});
