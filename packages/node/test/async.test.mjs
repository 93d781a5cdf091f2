// The default API: the component in a worker thread, every method a
// Promise. Its answers are those of the synchronous API on the same
// directory; nothing it does blocks the caller's event loop, not even a
// wait for a session another process holds; the field names of the
// engine's own event data are camelCase, the user's JSON is as stored.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { BUILT_IN_KINDS, openSessions, openSessionsSync, SessionError, SyncSessions, startSessions } from '../src/index.js';
import { Root } from '../src/root.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-async-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function open(t, options) {
  const s = await openSessions(options);
  t.after(() => s.close());
  return s;
}

test('every method of the synchronous API is there, returning a Promise of the same answer', async (t) => {
  const dir = tempRoot(t);
  const s = await open(t, { dir });
  const methods = Object.getOwnPropertyNames(SyncSessions.prototype).filter((m) => m !== 'constructor');
  assert.ok(methods.length >= 27);
  for (const m of methods) assert.equal(typeof s[m], 'function', m);

  const started = s.start({ task: 'ship it', mode: 'developer', maxIterations: 3, context: { repo: 'x' } });
  assert.ok(started instanceof Promise);
  const a = await started;
  await s.iterate(a.id, { phase: 'analysis' });
  await s.recordToolCall(a.id, { name: 'grep', input: { q: 'fn' }, output: ['a.rs'], durationMs: 7 });
  await s.pause(a.id, 'review');

  // Another thread's synchronous view of the same directory agrees.
  const sync = await openSessionsSync({ dir });
  t.after(() => sync.close());
  assert.deepEqual(await s.get(a.id), sync.get(a.id));
  assert.deepEqual(await s.events(a.id), sync.events(a.id));
  assert.deepEqual(await s.stats(), sync.stats());
  assert.deepEqual(await s.resumptionContext(a.id), sync.resumptionContext(a.id));

  // Calls run in the order made, even when not awaited one by one.
  const all = await Promise.all([s.resume(a.id), s.iterate(a.id), s.iterate(a.id)]);
  assert.deepEqual(
    all.map((x) => [x.status, x.iteration]),
    [
      ['active', 1],
      ['active', 2],
      ['timeout', 3],
    ],
  );
});

test('failures are the same SessionErrors; an argument no thread can receive is invalid-input', async (t) => {
  const s = await open(t, { dir: tempRoot(t) });
  await assert.rejects(s.get('0190-nope'), (e) => e instanceof SessionError && e.code === 'not-found');
  const a = await s.start({ task: 't' });
  await assert.rejects(s.complete(a.id, () => 1), (e) => e instanceof SessionError && e.code === 'invalid-input');
  await assert.rejects(s.start({ task: 1 }), { name: 'SessionError', code: 'invalid-input' });
  await assert.rejects(openSessions({}), TypeError);
  await assert.rejects(openSessions({ dir: tempRoot(t), lockTimeoutMs: -5 }), TypeError);
});

test('a session another process holds: the call fails after lockTimeoutMs, the event loop runs meanwhile', async (t) => {
  const dir = tempRoot(t);
  const s = await open(t, { dir, lockTimeoutMs: 400 });
  const a = await s.start({ task: 't' });
  // Hold the session's writer lock, as another process writing it would.
  const other = new Root(dir, { lockTimeoutMs: 0 });
  t.after(() => other.close());
  const held = other.lock(`sessions/${a.id}/lock`, true, false);
  assert.equal(typeof held, 'bigint');

  let ticks = 0;
  const timer = setInterval(() => ticks++, 10);
  const began = performance.now();
  try {
    await assert.rejects(s.iterate(a.id), (e) => {
      assert.ok(e instanceof SessionError);
      assert.equal(e.code, 'conflict');
      assert.match(e.message, /lock/);
      return true;
    });
  } finally {
    clearInterval(timer);
  }
  const waited = performance.now() - began;
  assert.ok(waited >= 400 && waited < 5000, `waited ${waited} ms`);
  // The timer ran all along (a blocked event loop would have fired it once).
  assert.ok(ticks >= 15, `${ticks} ticks in ${waited} ms`);

  other.unlock(held);
  assert.equal((await s.iterate(a.id)).iteration, 1);
});

test('after close every call rejects; a program that never closes still exits', async (t) => {
  const dir = tempRoot(t);
  const s = await openSessions({ dir });
  await s.start({ task: 't' });
  await s.close();
  await assert.rejects(s.list(), /closed/);
  await s.close();

  const script = path.join(dir, 'forgets.mjs');
  fs.writeFileSync(
    script,
    `import { openSessions } from ${JSON.stringify(path.join(PKG, 'src/index.js'))};
    const s = await openSessions({ dir: process.argv[2] });
    console.log((await s.start({ task: 'forgotten' })).status);`,
  );
  const run = spawnSync(process.execPath, [script, dir], {
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(run.error, undefined, 'the process did not exit by itself');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'active');
});

test("the engine's event fields are camelCase; the user's JSON and custom events are as stored", async (t) => {
  const s = await open(t, { dir: tempRoot(t) });
  const a = await s.start({ task: 't', userId: 'u', maxIterations: 9, context: { some_key: 1 } });
  await s.iterate(a.id, { user_field: { nested_key: 2 } });
  await s.recordToolCall(a.id, { name: 'x', input: { snake_in: 1 }, output: { snake_out: 2 }, durationMs: 3 });
  await s.recordLearning(a.id, { insight: 'i', expertiseFile: 'E.md' });
  await s.recordEvent(a.id, 'my_kind', { own_field: true });
  const [start, iteration, tool, learning, custom] = (await s.events(a.id)).events;
  assert.deepEqual(start.data, {
    task: 't',
    mode: 'default',
    userId: 'u',
    channelId: null,
    maxIterations: 9,
    context: { some_key: 1 },
  });
  assert.deepEqual(iteration.data, { iteration: 1, data: { user_field: { nested_key: 2 } } });
  assert.deepEqual(tool.data, { name: 'x', input: { snake_in: 1 }, output: { snake_out: 2 }, durationMs: 3 });
  assert.deepEqual(learning.data, { insight: 'i', expertiseFile: 'E.md' });
  assert.deepEqual(custom.data, { own_field: true });
  // Exported documents are the stored form.
  const doc = await s.export(a.id);
  assert.equal(doc.events[2].data.duration_ms, 3);
  // Every kind treated as the engine's is one: recordEvent refuses it.
  for (const kind of BUILT_IN_KINDS) {
    await assert.rejects(s.recordEvent(a.id, kind, {}), { code: 'invalid-input' }, kind);
  }
});

test('calls run in the order made: during the opening, across the synchronous port, around close', async (t) => {
  const dir = tempRoot(t);
  const setup = await openSessionsSync({ dir });
  const id = setup.start({ task: 't' }).id;
  setup.close();

  // Made at once, while the worker is still opening the directory.
  const s = startSessions({ dir });
  t.after(() => s.close());
  const first = s.iterate(id);
  const done = s.complete(id, { ok: true });
  await first;
  // Made after the first answer, while the completion may not be answered
  // yet: it comes after the completion, so it finds the session ended.
  await assert.rejects(s.iterate(id), { code: 'invalid-transition' });
  assert.equal((await done).status, 'completed');

  // A synchronous call waits for the calls made before it.
  const other = (await s.start({ task: 'u' })).id;
  const pending = [s.iterate(other), s.iterate(other), s.pause(other)];
  const seen = s.callSync('get', [other]);
  assert.deepEqual([seen.iteration, seen.status], [2, 'paused']);
  await Promise.all(pending);

  // Calls made before close are answered; calls made after reject at once.
  const before = s.resume(other);
  const closing = s.close();
  await assert.rejects(s.iterate(other), /closed/);
  assert.equal((await before).status, 'active');
  await closing;
  assert.throws(() => s.callSync('get', [other]), /closed/);
  const after = await openSessionsSync({ dir });
  t.after(() => after.close());
  assert.equal(after.get(other).iteration, 2, 'nothing ran after close');
});
