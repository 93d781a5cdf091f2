// The Node API around the component: its shape against the WIT, value
// conversions, errors, recovery after a trap, and several processes on
// one directory.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { openSessionsSync as openSessions, SessionError, SyncSessions as Sessions } from '../src/index.js';
import { Root } from '../src/root.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PKG = path.resolve(HERE, '..');
const WIT = path.resolve(PKG, '../../wit/session.wit');

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-api-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

async function open(t, options = {}) {
  const s = await openSessions({ dir: tempRoot(t), ...options });
  t.after(() => s.close());
  return s;
}

const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

test('every function of the WIT sessions interface is a method, typed in index.d.ts', () => {
  const wit = fs.readFileSync(WIT, 'utf8');
  const body = wit.slice(wit.indexOf('interface sessions {'));
  const names = [...body.slice(0, body.indexOf('\n}')).matchAll(/^\s*%?([a-z-]+): func\(/gm)].map((m) => camel(m[1]));
  assert.ok(names.length >= 27, `found ${names.length} functions in ${WIT}`);
  const dts = fs.readFileSync(path.join(PKG, 'index.d.ts'), 'utf8');
  for (const name of names) {
    assert.equal(typeof Sessions.prototype[name], 'function', `Sessions.${name}`);
    assert.match(dts, new RegExp(`\\n  ${name}\\(`), `index.d.ts declares ${name}`);
  }
});

test('values are plain objects: camelCase, numbers, null for none, JSON as values', async (t) => {
  const s = await open(t);
  const a = s.start({ task: 'convert', mode: 'developer', maxIterations: 3, context: { repo: { name: 'x' } } });
  assert.equal(typeof a.createdAt, 'number');
  assert.equal(a.userId, null);
  assert.deepEqual(a.context, { repo: { name: 'x' } });
  assert.equal(a.endedAt, null);
  const it = s.iterate(a.id, { step: [1, 'two', null] });
  assert.equal(it.iteration, 1);
  const call = s.recordToolCall(a.id, { name: 'grep', input: { q: 'fn' }, output: ['a.rs'], durationMs: 12 });
  assert.equal(call.kind, 'tool_call');
  assert.equal(typeof call.seq, 'number');
  const page = s.events(a.id, 1, 1);
  assert.deepEqual(page.events[0].data.data, { step: [1, 'two', null] });
  assert.equal(page.nextSeq, 2);
  const done = s.complete(a.id, { pr: 7 });
  assert.deepEqual(done.result, { pr: 7 });
  assert.equal(typeof done.endedAt, 'number');
  const stats = s.stats();
  assert.deepEqual(stats.byStatus, { active: 0, paused: 0, completed: 1, failed: 0, timeout: 0 });
  assert.deepEqual(stats.byMode, { developer: 1 });
  assert.equal(stats.successRate, 1);
  assert.deepEqual(s.list({ status: 'completed' }).sessions.map((x) => x.id), [a.id]);
  assert.equal(s.getWebhook(), null);
  assert.equal(typeof s.duration(a.id), 'number');
  // An exported document is a JS value and imports again elsewhere.
  const doc = s.export(a.id);
  assert.equal(typeof doc, 'object');
  const other = await open(t);
  assert.equal(other.import(doc).status, 'completed');
  assert.equal(other.events(a.id, 0, 10).events.length, done.eventCount);
});

test('failures are SessionErrors with the WIT case, wrong argument types too (invalid-input)', async (t) => {
  const s = await open(t);
  const a = s.start({ task: 't' });
  assert.throws(
    () => s.resume(a.id),
    (e) => e instanceof SessionError && e instanceof Error && e.code === 'invalid-transition' && e.message.includes(a.id),
  );
  assert.throws(() => s.get('01a22131-2141-7368-a21f-a0cd87416cf8'), { name: 'SessionError', code: 'not-found' });
  assert.throws(() => s.start({ task: '' }), { code: 'invalid-input' });
  // What the WIT types cannot carry is refused before the call, as the
  // Python package refuses it (more in tests/conformance/wrapper-cases/).
  const refused = (message) => ({ name: 'SessionError', code: 'invalid-input', message });
  assert.throws(() => s.get(42), refused('get: id must be a string, got the number 42'));
  assert.throws(
    () => s.start({ task: 't', maxIterations: -1 }),
    refused('start: options.max-iterations must be an integer from 0 to 4294967295, got the number -1'),
  );
  assert.throws(() => s.recordEvent(a.id, 'note', undefined), refused('record-event: data must be a JSON value, got nothing'));
  assert.throws(
    () => s.list({ status: 'sleeping' }),
    refused('unknown status "sleeping"; expected one of active, paused, completed, failed, timeout'),
  );
  assert.throws(
    () => s.recordToolCall(a.id, { name: 'ls', input: {}, output: {} }),
    refused('record-tool-call: call.duration-ms must be an integer from 0 to 18446744073709551615, got nothing'),
  );
  assert.throws(() => s.start(null), refused('start: options must be an object, got nothing'));
  assert.throws(
    () => s.recordLearning(a.id, 'insight'),
    refused('record-learning: learning must be an object, got the string "insight"'),
  );
  // None of that disturbed the instance.
  assert.equal(s.iterate(a.id).iteration, 1);
});

test('JSON values: what JSON cannot hold is refused, not turned into something else', async (t) => {
  const s = await open(t);
  const a = s.start({ task: 't' });
  const refused = (message) => ({ name: 'SessionError', code: 'invalid-input', message });
  // JSON.stringify would store null for these, or leave them out.
  assert.throws(() => s.iterate(a.id, { x: NaN }), refused('iterate: data.x must be a JSON value, got the number NaN'));
  assert.throws(
    () => s.iterate(a.id, [1, Infinity]),
    refused('iterate: data[1] must be a JSON value, got the number Infinity'),
  );
  assert.throws(() => s.iterate(a.id, { f: () => 1 }), refused('iterate: data.f must be a JSON value, got a function'));
  assert.throws(() => s.iterate(a.id, { s: Symbol('x') }), refused('iterate: data.s must be a JSON value, got a symbol'));
  assert.throws(() => s.iterate(a.id, [1, undefined]), refused('iterate: data[1] must be a JSON value, got nothing'));
  // eslint-disable-next-line no-sparse-arrays
  assert.throws(() => s.iterate(a.id, [1, , 3]), refused('iterate: data[1] must be a JSON value, got nothing'));
  // ... or would throw a TypeError.
  assert.throws(
    () => s.iterate(a.id, { n: 10n }),
    refused('iterate: data.n must be a JSON value, got the BigInt 10'),
  );
  const loop = { a: {} };
  loop.a.back = loop;
  assert.throws(
    () => s.updateContext(a.id, loop),
    refused('update-context: patch.a.back must be a JSON value, got an object that contains itself'),
  );
  // Objects that are not plain data: JSON.stringify would write a Date as
  // a string and a Map as {}.
  assert.throws(
    () => s.iterate(a.id, { when: new Date(0) }),
    refused('iterate: data.when must be a JSON value, got a Date'),
  );
  assert.throws(() => s.complete(a.id, new Map()), refused('complete: result must be a JSON value, got a Map'));
  assert.throws(
    () => s.iterate(a.id, { b: new Uint8Array(2) }),
    refused('iterate: data.b must be a JSON value, got an Uint8Array'),
  );
  assert.throws(
    () => s.iterate(a.id, { 'a b': { 'c"': NaN } }),
    refused('iterate: data["a b"]["c\\""] must be a JSON value, got the number NaN'),
  );
  // A property that is undefined is left out, as JSON.stringify leaves it
  // out (the JavaScript way of saying "absent"); a shared (not circular)
  // object is fine; an object without a prototype is plain data.
  const shared = { k: 1 };
  const bare = Object.create(null);
  bare.z = true;
  assert.deepEqual(s.updateContext(a.id, { keep: 1, gone: undefined, one: shared, two: shared, bare }).context, {
    keep: 1,
    one: { k: 1 },
    two: { k: 1 },
    bare: { z: true },
  });
  // Any depth is serialized (without overflowing the stack) and judged by
  // the component, as in every host.
  let deep = 'end';
  for (let i = 0; i < 20000; i++) deep = [deep];
  assert.throws(
    () => s.iterate(a.id, deep),
    refused('iteration data is not valid JSON: recursion limit exceeded at line 1 column 128'),
  );
  assert.equal(s.get(a.id).eventCount, 2);
});

test('integers: Numbers and BigInts in the WIT range pass, the component judges them', async (t) => {
  const s = await open(t);
  const a = s.start({ task: 't', maxIterations: 5n });
  assert.equal(a.maxIterations, 5);
  const refused = (message) => ({ name: 'SessionError', code: 'invalid-input', message });
  // 2^53 is an integer Number: the component refuses it as a duration (not
  // exact in every host), as it does in Rust and Python.
  assert.throws(
    () => s.recordToolCall(a.id, { name: 'ls', input: {}, output: {}, durationMs: 2 ** 53 }),
    refused('tool duration must be at most 9007199254740991 ms, got 9007199254740992'),
  );
  const call = s.recordToolCall(a.id, { name: 'ls', input: {}, output: {}, durationMs: 2n ** 53n - 1n });
  assert.equal(call.data.durationMs, 2 ** 53 - 1);
  assert.deepEqual(s.events(a.id, 2n ** 64n - 1n, 1), { events: [], nextSeq: null });
  assert.throws(
    () => s.events(a.id, 2n ** 64n, 1),
    refused('events: from must be an integer from 0 to 18446744073709551615, got the BigInt 18446744073709551616'),
  );
  assert.throws(
    () => s.events(a.id, 2 ** 64, 1),
    refused('events: from must be an integer from 0 to 18446744073709551615, got the number 18446744073709552000'),
  );
  assert.throws(
    () => s.list({}, null, 2 ** 32),
    refused('list: limit must be an integer from 0 to 4294967295, got the number 4294967296'),
  );
  assert.equal(s.list({ createdAfter: 0, createdBefore: 2 ** 60 }).sessions.length, 1);
});

test('a failure below the root capability is a storage error, and the next call works', async (t) => {
  const read = Root.prototype.read;
  let broken = false;
  Root.prototype.read = function (...args) {
    if (broken) throw new RangeError('a bug under the store');
    return read.apply(this, args);
  };
  try {
    const s = await open(t);
    const a = s.start({ task: 't' });
    broken = true;
    assert.throws(() => s.get(a.id), (e) => e instanceof SessionError && e.code === 'storage');
    broken = false;
    assert.equal(s.get(a.id).id, a.id);
  } finally {
    Root.prototype.read = read;
  }
});

test('a lost index is rebuilt when the directory is opened', async (t) => {
  const dir = tempRoot(t);
  const s = await openSessions({ dir });
  const ids = [s.start({ task: 'one' }).id, s.start({ task: 'two' }).id];
  s.close();
  fs.rmSync(path.join(dir, 'index/sessions.log'));
  const again = await openSessions({ dir });
  t.after(() => again.close());
  assert.deepEqual(again.list().sessions.map((x) => x.id), ids.reverse());
  assert.equal(fs.existsSync(path.join(dir, 'REINDEX')), false);
});

test('the index is rebuilt on open only when REINDEX is there', async (t) => {
  const rebuild = Sessions.prototype.rebuildIndex;
  const rebuilds = [];
  Sessions.prototype.rebuildIndex = function (...args) {
    rebuilds.push(args);
    return rebuild.apply(this, args);
  };
  t.after(() => {
    Sessions.prototype.rebuildIndex = rebuild;
  });
  const dir = tempRoot(t);
  const opened = [];
  t.after(() => opened.forEach((s) => s.close()));
  const reopen = async () => {
    const s = await openSessions({ dir });
    opened.push(s);
    return s;
  };
  const id = (await reopen()).start({ task: 'one' }).id;
  assert.deepEqual(rebuilds, []);
  await reopen();
  assert.deepEqual(rebuilds, [], 'a plain reopen rebuilt the index');
  fs.writeFileSync(path.join(dir, 'REINDEX'), '');
  const again = await reopen();
  assert.deepEqual(rebuilds, [[false]]);
  assert.equal(fs.existsSync(path.join(dir, 'REINDEX')), false);
  assert.deepEqual(again.list().sessions.map((x) => x.id), [id]);
  await reopen();
  assert.equal(rebuilds.length, 1);
});

test('the component can be given as a transpiled module or as a .wasm', async (t) => {
  const viaDir = await open(t, { component: path.join(PKG, 'gen') });
  assert.equal(viaDir.start({ task: 'from gen/' }).status, 'active');
  const wasm =
    process.env.AGENT_SESSION_COMPONENT ??
    path.resolve(PKG, '../../target/wasm-guest/wasm32-wasip2/release/agent_session_on_root.wasm');
  assert.ok(fs.existsSync(wasm), `no component at ${wasm}: cargo build --release -p agent-session-host`);
  const viaWasm = await open(t, { component: wasm });
  assert.equal(viaWasm.start({ task: 'from the .wasm' }).status, 'active');
});

/** Run `iterations` iterate calls on session `id` in a new process; resolves
 * to how many it made and how many were refused as conflicts. */
function iterateInAnotherProcess(dir, id, iterations) {
  const script = `
    import { openSessionsSync as openSessions } from ${JSON.stringify(path.join(PKG, 'src/index.js'))};
    const s = await openSessions({ dir: process.argv[1] });
    let made = 0, conflicts = 0;
    for (let i = 0; i < ${iterations}; i++) {
      try { s.iterate(process.argv[2], { pid: process.pid }); made++; }
      catch (e) { if (e.code === 'conflict') conflicts++; else throw e; }
    }
    console.log(JSON.stringify({ made, conflicts }));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script, dir, id], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`child exited ${code}`))));
  });
}

test('processes writing one session never lose or duplicate an iteration', async (t) => {
  const dir = tempRoot(t);
  const s = await openSessions({ dir });
  t.after(() => s.close());
  const id = s.start({ task: 'contended', maxIterations: 1000 }).id;
  const results = await Promise.all([1, 2, 3].map(() => iterateInAnotherProcess(dir, id, 15)));
  const made = results.reduce((n, r) => n + r.made, 0);
  const final = s.get(id);
  assert.equal(final.iteration, made, JSON.stringify(results));
  assert.equal(final.eventCount, made + 1);
  const seqs = s.events(id, 0, 1000).events.map((e) => e.seq);
  assert.deepEqual(seqs, [...seqs.keys()]);
});

test('a listing names the sessions whose history cannot be read', async (t) => {
  const dir = tempRoot(t);
  const s = await openSessions({ dir });
  t.after(() => s.close());
  const good = s.start({ task: 'good' }).id;
  const bad = s.start({ task: 'bad' }).id;
  s.iterate(bad);
  s.iterate(bad);
  // A flipped byte inside the first of three records: damage, not a tear.
  const log = path.join(dir, 'sessions', bad, 'events.log');
  const bytes = fs.readFileSync(log);
  bytes[40] ^= 0xff;
  fs.writeFileSync(log, bytes);
  const page = s.list();
  assert.deepEqual(page.sessions.map((x) => x.id), [good]);
  assert.equal(page.unreadable.length, 1);
  assert.ok(page.unreadable[0].startsWith(`${bad}: `), page.unreadable[0]);
});

test('setWebhook applies the address policy, with the exceptions given to openSessions', async (t) => {
  const secret = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
  const s = await open(t);
  for (const url of ['http://127.0.0.1:9/hook', 'http://127.1/hook', 'http://[::1]/', 'http://169.254.169.254/']) {
    assert.throws(
      () => s.setWebhook({ url, secret }),
      (e) => e instanceof SessionError && e.code === 'invalid-input' && /refused to send a webhook/.test(e.message),
      url,
    );
  }
  assert.equal(s.getWebhook(), null, 'nothing was set');
  // A disabled endpoint is only stored; a name is checked where it is dialled.
  assert.equal(s.setWebhook({ url: 'http://127.0.0.1:9/hook', secret, enabled: false }).enabled, false);
  assert.equal(s.setWebhook({ url: 'https://hooks.example.com/a', secret }).enabled, true);
  const allowed = await open(t, { webhookAllow: ['127.0.0.1'] });
  assert.equal(allowed.setWebhook({ url: 'http://127.0.0.1:9/hook', secret }).url, 'http://127.0.0.1:9/hook');
  await assert.rejects(openSessions({ dir: tempRoot(t), webhookAllow: '127.0.0.1' }), SessionError);
});
