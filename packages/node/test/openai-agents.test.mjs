// AgentSession (agent-session/openai-agents) against the SDK's own
// MemorySession: seeded random sequences of addItems / getItems(limit) /
// popItem / clearSession give the same results at every step; and a
// Runner with a fake model (no network) keeps its conversation in it
// across two processes.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { MemorySession } from '@openai/agents';
import { openSessionsSync } from '../src/index.js';
import { AgentSession } from '../src/openai-agents.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const RUNNER = path.join(HERE, 'fixtures/openai-runner.mjs');

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-openai-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** mulberry32: a small seeded generator, so a failing sequence can be replayed. */
function generator(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (xs) => xs[int(xs.length)];
  return { next, int, pick };
}

const WORDS = ['hello', 'héllo', '日本語', 'emoji 🎉', '', 'a "quoted" \\ line\nnext', 'tab\there'];
// Keys that are not integer-like (JS would list those first, whatever the
// order they were written in: both sides would, but say nothing of us).
const KEYS = ['role', 'content', 'type', 'id', 'status', 'call_id', 'name', 'arguments', 'x-y', 'ümlaut'];

/** A JSON-safe value: safe integers, finite floats (no -0), strings,
 * booleans, null, arrays and objects. */
function value(r, depth = 0) {
  const kind = r.int(depth > 2 ? 5 : 7);
  switch (kind) {
    case 0:
      return r.int(2) === 0 ? r.int(1000) - 500 : r.int(2 ** 31) * 2 ** 21 + r.int(2 ** 21);
    case 1: {
      const f = (r.next() - 0.5) * 10 ** r.int(12);
      return Object.is(f, -0) ? 0.5 : f;
    }
    case 2:
      return r.pick(WORDS) + (r.int(3) === 0 ? ` ${r.int(100)}` : '');
    case 3:
      return r.int(2) === 0;
    case 4:
      return null;
    case 5:
      return Array.from({ length: r.int(4) }, () => value(r, depth + 1));
    default:
      return object(r, depth + 1);
  }
}

function object(r, depth) {
  const o = {};
  for (let i = r.int(5); i > 0; i--) o[r.pick(KEYS)] = value(r, depth);
  return o;
}

/** An item: mostly objects shaped like the SDK's, now and then any JSON value. */
function item(r) {
  if (r.int(10) === 0) return value(r, 2);
  return { type: 'message', role: r.pick(['user', 'assistant']), content: value(r, 1), ...object(r, 1) };
}

const LIMITS = [undefined, undefined, 0, 1, 2, 3, 5, 8, 100, -1, null, 2.5, Infinity, NaN];

/** Apply one random step to both; what each returned. */
async function step(r, ours, theirs) {
  const op = r.pick(['add', 'add', 'add', 'get', 'get', 'get', 'pop', 'pop', 'clear']);
  switch (op) {
    case 'add': {
      const items = Array.from({ length: r.int(4) }, () => item(r));
      return [`addItems(${items.length})`, await ours.addItems(items), await theirs.addItems(items)];
    }
    case 'get': {
      const limit = r.pick(LIMITS);
      return [`getItems(${limit})`, await ours.getItems(limit), await theirs.getItems(limit)];
    }
    case 'pop':
      return ['popItem()', await ours.popItem(), await theirs.popItem()];
    default:
      return ['clearSession()', await ours.clearSession(), await theirs.clearSession()];
  }
}

async function differential(seed, steps, makeOurs) {
  const r = generator(seed);
  // Two conversations in one directory, interleaved: each against its own MemorySession.
  const pairs = [0, 1].map((i) => [makeOurs(`conversation-${seed}-${i}`), new MemorySession({ sessionId: `conversation-${seed}-${i}` })]);
  const done = [];
  try {
    for (let i = 0; i < steps; i++) {
      const [ours, theirs] = pairs[r.int(2)];
      const [what, a, b] = await step(r, ours, theirs);
      done.push(what);
      assert.deepStrictEqual(a, b, `seed ${seed}, step ${i}: ${what} (after ${done.slice(-8).join(', ')})`);
    }
    // And at the end, everything.
    for (const [ours, theirs] of pairs) {
      assert.deepStrictEqual(await ours.getItems(), await theirs.getItems());
      assert.equal(await ours.getSessionId(), await theirs.getSessionId());
    }
  } finally {
    for (const [ours] of pairs) await ours.close();
  }
  return done;
}

test('random add / get(limit) / pop / clear sequences: AgentSession answers as MemorySession at every step', async (t) => {
  const dir = tempRoot(t);
  for (const seed of [1, 2, 3]) {
    const done = await differential(seed, 150, (sessionId) => new AgentSession({ sessionId, dir }));
    // The sequences did what they were for.
    for (const op of ['addItems', 'getItems', 'popItem', 'clearSession']) {
      assert.ok(done.some((d) => d.startsWith(op)), `seed ${seed} made ${op}`);
    }
  }
  // On sessions opened on this thread too.
  const sessions = await openSessionsSync({ dir });
  t.after(() => sessions.close());
  await differential(4, 100, (sessionId) => new AgentSession({ sessionId, sessions }));
  // Every conversation is a session of mode "openai-agents", keyed by its id.
  const keys = sessions.list({ mode: 'openai-agents' }, null, 100).sessions.map((s) => s.key);
  assert.ok(keys.includes('conversation-1-0') && keys.includes('conversation-4-1'), keys.join(' '));
});

test('a conversation that was never written reads empty, and its first write starts it', async (t) => {
  const dir = tempRoot(t);
  const s = new AgentSession({ sessionId: 'fresh', dir });
  t.after(() => s.close());
  assert.deepEqual(await s.getItems(), []);
  assert.equal(await s.popItem(), undefined);
  await s.clearSession();
  await s.addItems([]);
  const sessions = await openSessionsSync({ dir });
  t.after(() => sessions.close());
  assert.deepEqual(sessions.list().sessions, [], 'reads and empty writes start nothing');
  await s.addItems([{ role: 'user', content: 'hi' }]);
  const started = sessions.get({ key: 'fresh' });
  assert.equal(started.mode, 'openai-agents');
  await s.popItem();
  await s.clearSession();
  // Popping and clearing are recorded; the history keeps what was said.
  assert.deepEqual(sessions.events({ key: 'fresh' }).events.map((e) => e.kind), ['start', 'item', 'item_pop', 'items_clear']);
  const random = new AgentSession({ dir });
  t.after(() => random.close());
  assert.match(await random.getSessionId(), /^[0-9a-f-]{36}$/);
  assert.throws(() => new AgentSession({ sessionId: 'x' }), TypeError);
  await assert.rejects(s.addItems([{ f: () => 1 }]), (e) => e.code === 'invalid-input');
});

/** One Runner turn in a process of its own (bounded); its JSON line. */
function turn(dir, id, text) {
  const env = { ...process.env };
  delete env.OPENAI_API_KEY;
  const r = spawnSync(process.execPath, [RUNNER, dir, id, text], { encoding: 'utf8', timeout: 60_000, env });
  assert.equal(r.error, undefined, r.error?.message);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout.trim().split('\n').at(-1));
}

test('a Runner with a fake model keeps its conversation in AgentSession across two processes', async (t) => {
  const dir = tempRoot(t);
  const first = turn(dir, 'chat-1', 'hello');
  assert.deepEqual(first.before, []);
  assert.equal(first.output, 'reply to hello after 1 items');
  assert.equal(first.after.length, 2);
  const second = turn(dir, 'chat-1', 'again');
  // The second process saw what the first said, and the model got it all.
  assert.deepEqual(second.before, first.after);
  assert.deepEqual(second.input.slice(0, 2), first.after);
  assert.deepEqual(second.input[2], { type: 'message', role: 'user', content: 'again' });
  assert.equal(second.output, 'reply to again after 3 items');
  assert.deepEqual(
    second.after.map((i) => [i.role, typeof i.content === 'string' ? i.content : i.content[0].text]),
    [
      ['user', 'hello'],
      ['assistant', 'reply to hello after 1 items'],
      ['user', 'again'],
      ['assistant', 'reply to again after 3 items'],
    ],
  );
  // Another conversation in the same directory starts empty.
  assert.deepEqual(turn(dir, 'chat-2', 'hi').before, []);
});
