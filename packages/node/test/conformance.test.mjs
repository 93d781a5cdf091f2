// The conformance suite (../../tests/conformance/*.json, format in its
// README) on the Node host: the component through jco, on the Node
// filesystem store. Every scenario file is one test, on a fresh directory;
// like the Rust runners, it writes the transcript of what each step
// returned to target/conformance/node.json (or
// $AGENT_SESSION_CONFORMANCE_OUT) for compare.py.
//
// Then the wrapper cases (../../tests/conformance/wrapper-cases/*.json,
// README "Wrapper cases"), which only the Node and Python hosts run: the
// same format, with exact error messages and values JSON cannot write
// (NaN), for what the wrappers themselves refuse.

import { after, test } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { BUILT_IN_KINDS, openSessionsSync, SessionError } from '../src/index.js';
import { SENDING } from '../src/sync.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SCENARIOS = path.resolve(HERE, '../../../tests/conformance');
const WRAPPER_CASES = path.join(SCENARIOS, 'wrapper-cases');
const OUT = process.env.AGENT_SESSION_CONFORMANCE_OUT ?? path.resolve(HERE, '../../../target/conformance');

// --- canonical form (README "Canonical form") <-> the Node API ---

const camel = (k) => k.replace(/_([a-z0-9])/g, (_, c) => c.toUpperCase());
const snake = (k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** Output fields whose values are JSON values or maps by name: their
 * contents keep their keys. */
const RAW_OUT = new Set(['context', 'result', 'data', 'byStatus', 'byMode']);

/** A canonical record as the API takes it: only its own keys change (the
 * argument records are flat; their JSON fields keep their keys). */
function toApi(record) {
  if (record === null || typeof record !== 'object') return record;
  return Object.fromEntries(Object.entries(record).map(([k, v]) => [camel(k), v]));
}

/** An API value in canonical form. The data of the engine's own events
 * has camelCase top-level names in the Node API; canonical is as stored.
 * A session's `key` is left out when it has none, as the core's records
 * leave it out. */
function canonical(v) {
  if (v === undefined || v === null) return null;
  if (Array.isArray(v)) return v.map(canonical);
  if (typeof v !== 'object') return v;
  const fields = Object.entries(v).filter(([k, x]) => !(k === 'key' && x === null));
  const out = Object.fromEntries(fields.map(([k, x]) => [snake(k), RAW_OUT.has(k) ? x : canonical(x)]));
  if (BUILT_IN_KINDS.has(v.kind) && 'seq' in v && out.data && typeof out.data === 'object' && !Array.isArray(out.data)) {
    out.data = Object.fromEntries(Object.entries(out.data).map(([k, x]) => [snake(k), x]));
  }
  return out;
}

/** Which arguments of an operation are records (the rest are strings,
 * numbers, options or JSON values, passed as they are). */
const RECORD_ARGS = {
  start: [0],
  'record-tool-call': [1],
  'record-learning': [1],
  list: [0],
  stats: [0],
  'set-webhook': [0],
};

/** The `delivery` interface's functions (delivery/ scenarios), through
 * the functions the package's sender calls. */
const DELIVERY_OPS = {
  'start-sending': (s, [o]) => s[SENDING].startSending({ scheduleMs: o.schedule_ms ?? undefined, allow: o.allow }),
  'claim-due': (s, [dueBy, limit]) => s[SENDING].claimDue(dueBy, limit),
  'record-answer': (s, [id, at, durationMs, answer]) => {
    const [[tag, val]] = Object.entries(answer);
    const wit = tag === 'response' ? { status: val.status, retryAfter: val.retry_after ?? undefined } : val;
    return s[SENDING].recordAnswer(id, at, durationMs, { tag, val: wit });
  },
  'stop-sending': (s) => (s[SENDING].stopSending(), null),
  deliveries: (s) => s.deliveries(),
};

/** Call `op` (its WIT name) with canonical `args`; the canonical outcome:
 * `{ ok }` or `{ error: { error, message } }`. Anything else thrown means
 * the host is broken, and goes on up. */
function call(sessions, op, args) {
  if (Object.hasOwn(DELIVERY_OPS, op)) {
    try {
      return { ok: canonical(DELIVERY_OPS[op](sessions, args)) };
    } catch (e) {
      if (e instanceof SessionError) return { error: { error: e.code, message: e.message } };
      throw e;
    }
  }
  const method = camel(op.replace(/-/g, '_'));
  if (typeof sessions[method] !== 'function' || method === 'close') throw new Error(`unknown operation ${op}`);
  const records = RECORD_ARGS[op] ?? [];
  const apiArgs = args.map((a, i) => (records.includes(i) ? toApi(a) : a));
  try {
    const value = sessions[method](...apiArgs);
    return { ok: op === 'export' ? value : canonical(value) };
  } catch (e) {
    if (e instanceof SessionError) return { error: { error: e.code, message: e.message } };
    throw e;
  }
}

// --- patterns (README "Patterns") ---

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const literal = (s) => (s.startsWith('$$') ? s.slice(1) : s);

/** The value of a `$name.path` reference, undefined if `s` is not one. */
function reference(s, names) {
  if (!s.startsWith('$') || s.startsWith('$$') || s === '$any') return undefined;
  const [name, ...parts] = s.slice(1).split('.');
  if (!Object.hasOwn(names, name)) throw new Error(`no value kept as ${JSON.stringify(name)}`);
  let v = names[name];
  for (const p of parts) {
    const next = Array.isArray(v) ? (/^\d+$/.test(p) ? v[Number(p)] : undefined) : isObject(v) ? v[p] : undefined;
    if (next === undefined) throw new Error(`${s}: no ${JSON.stringify(p)}`);
    v = next;
  }
  return { value: v };
}

/** Numbers JSON cannot write, made by `{"$number": name}` in wrapper cases. */
const NUMBERS = { NaN, Infinity, '-Infinity': -Infinity };

/** `v` with references and generators replaced (`$number` too in wrapper
 * cases). */
function substitute(v, names, wrapper = false) {
  if (typeof v === 'string') return reference(v, names)?.value ?? literal(v);
  if (Array.isArray(v)) return v.map((x) => substitute(x, names, wrapper));
  if (isObject(v)) {
    const keys = Object.keys(v);
    if (keys.length === 1 && keys[0] === '$now') {
      if (!Number.isInteger(v.$now)) throw new Error('$now takes a number of milliseconds');
      return Date.now() + v.$now;
    }
    if (keys.length === 1 && keys[0] === '$repeat') {
      const [unit, n] = Array.isArray(v.$repeat) ? v.$repeat : [];
      if (typeof unit !== 'string' || !Number.isInteger(n) || n < 0) throw new Error('$repeat takes [string, count]');
      return unit.repeat(n);
    }
    if (wrapper && keys.length === 1 && keys[0] === '$number') {
      if (!Object.hasOwn(NUMBERS, v.$number)) throw new Error('$number takes "NaN", "Infinity" or "-Infinity"');
      return NUMBERS[v.$number];
    }
    return Object.fromEntries(keys.map((k) => [k, substitute(v[k], names, wrapper)]));
  }
  return v;
}

const show = (v) => JSON.stringify(v);

/** Throws where `actual` does not match `pattern`. */
function match(pattern, actual, names, at = '') {
  const fail = (why) => {
    throw new Error(`at ${at || '.'}: ${why}`);
  };
  if (typeof pattern === 'string') {
    if (pattern === '$any') {
      if (actual === null) fail('expected a value, got null');
      return;
    }
    const ref = reference(pattern, names);
    if (ref) return match(ref.value, actual, names, at);
    if (actual !== literal(pattern)) fail(`expected ${show(literal(pattern))}, got ${show(actual)}`);
    return;
  }
  if (isObject(pattern)) {
    const keys = Object.keys(pattern);
    if (keys.length === 1 && keys[0] === '$len') {
      let len;
      if (Array.isArray(actual)) len = actual.length;
      else if (typeof actual === 'string') len = [...actual].length;
      else fail(`expected an array or string, got ${show(actual)}`);
      if (pattern.$len !== len) fail(`expected length ${pattern.$len}, got ${len}`);
      return;
    }
    if (keys.length === 1 && (keys[0] === '$gte' || keys[0] === '$lte')) {
      const bound = substitute(pattern[keys[0]], names);
      if (typeof bound !== 'number') throw new Error('the bound is not a number');
      if (typeof actual !== 'number') fail(`expected a number, got ${show(actual)}`);
      if (keys[0] === '$gte' ? !(actual >= bound) : !(actual <= bound)) fail(`expected ${keys[0]} ${bound}, got ${actual}`);
      return;
    }
    if (!isObject(actual)) fail(`expected an object, got ${show(actual)}`);
    for (const k of keys) {
      if (!Object.hasOwn(actual, k)) fail(`no field ${show(k)}`);
      match(pattern[k], actual[k], names, `${at}.${k}`);
    }
    return;
  }
  if (Array.isArray(pattern)) {
    if (!Array.isArray(actual)) fail(`expected an array, got ${show(actual)}`);
    if (pattern.length !== actual.length) fail(`expected ${pattern.length} elements, got ${actual.length}`);
    pattern.forEach((p, i) => match(p, actual[i], names, `${at}.${i}`));
    return;
  }
  // Numbers by value (1 and 1.0 are the same number in JS); null, booleans.
  if (pattern !== actual) fail(`expected ${show(pattern)}, got ${show(actual)}`);
}

// --- transcripts (README "Transcripts") ---

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g;
const TIMES = new Set(['created_at', 'updated_at', 'ended_at', 'timestamp']);
/** In the delivery scenarios, also the times of attempts and retries, and
 * what a request signs (its body, its timestamp and signature headers). */
const DELIVERY_TIMES = new Set([...TIMES, 'at', 'next_attempt_at', 'next_due']);
const VARYING_HEADERS = new Set(['webhook-timestamp', 'webhook-signature']);

/** An outcome with what legitimately differs between runs masked. */
function comparable(op, v, delivery = false) {
  if (op === 'duration' && typeof v === 'number') return '<duration>';
  if (typeof v === 'string') return v.replace(UUID, '<uuid>');
  if (Array.isArray(v)) return v.map((x) => comparable(op, x, delivery));
  if (isObject(v)) {
    const times = delivery ? DELIVERY_TIMES : TIMES;
    return Object.fromEntries(
      Object.entries(v).map(([k, x]) => [
        k.replace(UUID, '<uuid>'),
        times.has(k) && typeof x === 'number'
          ? '<time>'
          : k === 'next_cursor' && typeof x === 'string'
            ? '<cursor>'
            : delivery && k === 'body' && typeof x === 'string'
              ? '<varies>'
              : delivery && k === 'headers' && Array.isArray(x)
                ? x.map((h) => (VARYING_HEADERS.has(h[0]) ? [h[0], '<varies>'] : comparable(op, h, delivery)))
                : comparable(op, x, delivery),
      ]),
    );
  }
  return v;
}

// --- the runner ---

/** Run the scenario `file` of `dir`; `wrapper`: a wrapper case (README
 * "Wrapper cases"): `$number` generators, and an expected message is the
 * whole message. */
async function runScenario(dir, file, transcript, wrapper = false) {
  const scenario = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8'));
  if (!Array.isArray(scenario.steps)) throw new Error(`${file}: no "steps" array`);
  const store = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-conformance-'));
  const sessions = await openSessionsSync({ dir: store });
  try {
    const names = {};
    scenario.steps.forEach((step, i) => {
      const op = step.op;
      const where = `${file}, step ${i} (${op})`;
      let outcome;
      try {
        const args = (step.args ?? []).map((a) => substitute(a, names, wrapper));
        outcome = call(sessions, op, args);
      } catch (e) {
        throw new Error(`${where}: ${e.stack ?? e}`);
      }
      transcript.push([op, comparable(op, outcome.error ?? outcome.ok, path.basename(dir) === 'delivery')]);
      const expect = step.expect ?? {};
      const actual = outcome.error ? `error ${show(outcome.error)}` : `ok ${show(outcome.ok)}`;
      const failed = (why) => new Error(`${where}: ${why}\n  expected: ${show(expect)}\n  actual:   ${actual}`);
      if ('ok' in outcome && 'ok' in expect && !('error' in expect)) {
        try {
          match(expect.ok, outcome.ok, names);
        } catch (e) {
          throw failed(e.message);
        }
      } else if (outcome.error && typeof expect.error === 'string' && !('ok' in expect)) {
        if (outcome.error.error !== expect.error) throw failed(`expected error ${expect.error}`);
        if (wrapper && outcome.error.message !== expect.message) {
          throw failed(`expected the message ${show(expect.message)}`);
        }
        if (typeof expect.message === 'string' && !outcome.error.message.includes(expect.message)) {
          throw failed(`expected a message containing ${show(expect.message)}`);
        }
      } else {
        throw failed('the outcome is not the one expected');
      }
      if (typeof step.as === 'string' && 'ok' in outcome) names[step.as] = outcome.ok;
    });
  } finally {
    sessions.close();
    fs.rmSync(store, { recursive: true, force: true });
  }
}

const files = fs
  .readdirSync(SCENARIOS)
  .filter((f) => f.endsWith('.json'))
  .sort();
const transcripts = {};
let passed = 0;

test('there are conformance scenarios', () => {
  if (files.length === 0) throw new Error(`no scenarios in ${SCENARIOS}`);
});

for (const file of files) {
  test(`conformance: ${file}`, async () => {
    transcripts[file] = [];
    await runScenario(SCENARIOS, file, transcripts[file]);
    passed += 1;
  });
}

const DELIVERY = path.join(SCENARIOS, 'delivery');
const deliveryFiles = fs
  .readdirSync(DELIVERY)
  .filter((f) => f.endsWith('.json'))
  .sort();
const deliveryTranscripts = {};
let deliveryPassed = 0;

test('there are delivery scenarios', () => {
  if (deliveryFiles.length === 0) throw new Error(`no scenarios in ${DELIVERY}`);
});

for (const file of deliveryFiles) {
  test(`conformance, delivery: ${file}`, async () => {
    deliveryTranscripts[file] = [];
    await runScenario(DELIVERY, file, deliveryTranscripts[file]);
    deliveryPassed += 1;
  });
}

const wrapperFiles = fs
  .readdirSync(WRAPPER_CASES)
  .filter((f) => f.endsWith('.json'))
  .sort();

test('there are wrapper cases', () => {
  if (wrapperFiles.length === 0) throw new Error(`no wrapper cases in ${WRAPPER_CASES}`);
});

for (const file of wrapperFiles) {
  test(`wrapper cases: ${file}`, async () => {
    await runScenario(WRAPPER_CASES, file, [], true);
  });
}

after(() => {
  fs.mkdirSync(OUT, { recursive: true });
  fs.writeFileSync(path.join(OUT, 'node.json'), JSON.stringify(transcripts, null, 2));
  fs.writeFileSync(path.join(OUT, 'node-delivery.json'), JSON.stringify(deliveryTranscripts, null, 2));
  process.stdout.write(`conformance (node/jco): ${passed} of ${files.length} scenarios passed\n`);
  process.stdout.write(`conformance (node/jco, delivery): ${deliveryPassed} of ${deliveryFiles.length} scenarios passed\n`);
});
