#!/usr/bin/env node
// The Node side of the side-by-side host benchmark (host/benches/hosts.rs
// runs the same workload in Rust in-process, then spawns this script and
// packages/python/bench/workload.py, and prints one table).
//
//   node packages/node/bench/workload.mjs <dir> [sessions=20] [appends=200]
//
// <dir> is a fresh empty directory the caller made; the sessions are opened
// in it through the package's public API (`openSessions({ dir })`, durable:
// every append is fdatasync'ed). The workload, identical in every host:
//
//   1. start <sessions> sessions (task "bench", mode "bench");
//   2. warm-up: 5 recordToolCall on one more, throwaway session (not timed);
//   3. for each session in turn, <appends> recordToolCall, one at a time,
//      each timed alone: tool "search", input {"q": QUERY}, output
//      {"hits": 3}, duration 12 ms. QUERY (below) is 347 characters, which
//      makes the stored event 512 bytes (a 20-byte frame header + 492 bytes
//      of JSON) at a two-digit seq, 511 / 513 at one / three digits;
//   4. for each session, 10 times in a row: read the last 10 events with
//      events(id, eventCount - 10, 10), each call timed alone. (The API also
//      has recentEvents(id), the last 10; events() with the computed `from`
//      is used so that every host does the same call.)
//
// stdout: one line of JSON, nothing else:
//   {"host":"node","record_tool_call_us":{"median","p90","p99","n"},
//    "read_last_10_us":{"median","p90","n"},"open_ms","version"}
// Times are µs (one decimal) from process.hrtime.bigint(); percentile p of
// n sorted samples is sample[min(n - 1, floor(p * n))], so the median is
// sample[floor(n / 2)], as in host/benches/common. open_ms is the time of
// openSessions (loading the jco module, compiling its core modules,
// instantiating, opening the store); the package import is not in it.
//
// Bounded: sessions 1..1000, appends 1..100000, and a watchdog (a worker
// thread, so it fires even while the main thread is blocked in a call)
// that kills the process after BENCH_TIMEOUT_S seconds (default 600).
// Any failure: a message on stderr, exit status 1 (2 for bad arguments).
// BENCH_VERBOSE=1 prints a summary (and the import time) on stderr;
// BENCH_COMPONENT=<jco module, its directory, or a .wasm> runs another build
// than the package's gen/ (openSessions' `component` option).

import fs from 'node:fs';
import { Worker } from 'node:worker_threads';

const PHRASE = 'how do durable agent sessions store tool calls on disk? ';
/** 347 characters of text (the phrase repeated, cut). */
const QUERY = PHRASE.repeat(Math.ceil(347 / PHRASE.length)).slice(0, 347);
const TOOL_CALL = { name: 'search', input: { q: QUERY }, output: { hits: 3 }, durationMs: 12 };
const WARMUP = 5;
const READS_PER_SESSION = 10;
const LAST = 10;

const verbose = process.env.BENCH_VERBOSE === '1';
const log = (msg) => verbose && process.stderr.write(`workload.mjs: ${msg}\n`);

function usage(msg) {
  process.stderr.write(`workload.mjs: ${msg}\nusage: node workload.mjs <dir> [sessions=20] [appends=200]\n`);
  process.exit(2);
}

function intArg(text, fallback, name, max) {
  if (text === undefined) return fallback;
  if (!/^[0-9]+$/.test(text)) usage(`${name} must be a whole number, got ${JSON.stringify(text)}`);
  const n = Number(text);
  if (n < 1 || n > max) usage(`${name} must be between 1 and ${max}, got ${n}`);
  return n;
}

/** Kill the process after `seconds`, even if the main thread is stuck in a
 * synchronous call (the worker writes to fd 2 itself). */
function watchdog(seconds) {
  const w = new Worker(
    `const { workerData: s } = require('node:worker_threads');
     setTimeout(() => {
       require('node:fs').writeSync(2, 'workload.mjs: gave up after ' + s + ' s (BENCH_TIMEOUT_S)\\n');
       process.kill(process.pid, 'SIGKILL');
     }, s * 1000);`,
    { eval: true, workerData: seconds },
  );
  w.unref();
  return w;
}

const hrUs = (t0, t1) => Number(t1 - t0) / 1000;
const round1 = (x) => Math.round(x * 10) / 10;

function summary(samples, percentiles) {
  const s = Float64Array.from(samples).sort();
  const at = (p) => round1(s[Math.min(s.length - 1, Math.floor(p * s.length))]);
  const out = { median: at(0.5) };
  for (const [key, p] of percentiles) out[key] = at(p);
  out.n = s.length;
  return out;
}

function packageVersion(name) {
  try {
    const url = new URL(`../node_modules/${name}/package.json`, import.meta.url);
    return JSON.parse(fs.readFileSync(url, 'utf8')).version ?? '?';
  } catch {
    return '?';
  }
}

async function main() {
  const [dir, sessionsArg, appendsArg, ...rest] = process.argv.slice(2);
  if (dir === undefined || dir === '') usage('<dir> is required');
  if (rest.length > 0) usage(`unexpected arguments: ${rest.join(' ')}`);
  const nSessions = intArg(sessionsArg, 20, 'sessions', 1000);
  const nAppends = intArg(appendsArg, 200, 'appends', 100_000);
  const timeout = Number(process.env.BENCH_TIMEOUT_S ?? 600);
  if (!(timeout > 0)) usage(`BENCH_TIMEOUT_S must be a positive number, got ${process.env.BENCH_TIMEOUT_S}`);
  watchdog(timeout);
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new Error(`${dir} is not a directory (the caller makes a fresh empty one)`);
  }
  if (fs.readdirSync(dir).length > 0) throw new Error(`${dir} is not empty`);

  // The package's public entry point, by its name (a self-reference).
  let t0 = process.hrtime.bigint();
  const { openSessionsSync: openSessions } = await import('agent-session');
  const importMs = hrUs(t0, process.hrtime.bigint()) / 1000;

  // BENCH_COMPONENT: another build to measure (openSessions' `component`:
  // a jco module or directory, or a .wasm, transpiled inside open_ms).
  const component = process.env.BENCH_COMPONENT || undefined;
  t0 = process.hrtime.bigint();
  const s = await openSessions({ dir, component });
  const openMs = hrUs(t0, process.hrtime.bigint()) / 1000;
  log(`import ${importMs.toFixed(1)} ms, openSessions ${openMs.toFixed(1)} ms`);

  // 1. The sessions.
  const ids = [];
  for (let i = 0; i < nSessions; i++) ids.push(s.start({ task: 'bench', mode: 'bench' }).id);

  // 2. Warm-up, not timed.
  const spare = s.start({ task: 'bench', mode: 'bench' }).id;
  for (let i = 0; i < WARMUP; i++) s.recordToolCall(spare, TOOL_CALL);

  // 3. Durable appends, each timed alone.
  const appendUs = new Float64Array(nSessions * nAppends);
  let k = 0;
  for (const id of ids) {
    for (let i = 0; i < nAppends; i++) {
      const a = process.hrtime.bigint();
      const e = s.recordToolCall(id, TOOL_CALL);
      const b = process.hrtime.bigint();
      appendUs[k++] = hrUs(a, b);
      if (e.seq !== i + 1 || e.kind !== 'tool_call') {
        throw new Error(`recordToolCall returned seq ${e.seq} kind ${e.kind}, expected seq ${i + 1} kind tool_call`);
      }
    }
    log(`appended ${nAppends} to session ${ids.indexOf(id) + 1}/${nSessions}`);
  }

  // 4. The last 10 events, 10 times per session, each read timed alone.
  const readUs = new Float64Array(nSessions * READS_PER_SESSION);
  k = 0;
  for (const id of ids) {
    const count = s.get(id).eventCount;
    if (count !== nAppends + 1) throw new Error(`session ${id} has ${count} events, expected ${nAppends + 1}`);
    const from = Math.max(0, count - LAST);
    for (let r = 0; r < READS_PER_SESSION; r++) {
      const a = process.hrtime.bigint();
      const page = s.events(id, from, LAST);
      const b = process.hrtime.bigint();
      readUs[k++] = hrUs(a, b);
      const got = page.events;
      if (got.length !== count - from || got[got.length - 1].seq !== count - 1) {
        throw new Error(`events(${id}, ${from}, ${LAST}) returned ${got.length} events, expected ${count - from}`);
      }
    }
  }
  s.close();

  const result = {
    host: 'node',
    record_tool_call_us: summary(appendUs, [['p90', 0.9], ['p99', 0.99]]),
    read_last_10_us: summary(readUs, [['p90', 0.9]]),
    open_ms: round1(openMs),
    version:
      `node ${process.version} (V8 ${process.versions.v8}), ` +
      `jco ${packageVersion('@bytecodealliance/jco')}, preview2-shim ${packageVersion('@bytecodealliance/preview2-shim')}`,
  };
  log(JSON.stringify(result));
  // Written synchronously: the process exits right after.
  fs.writeSync(1, `${JSON.stringify(result)}\n`);
}

main().then(
  () => process.exit(0),
  (e) => {
    const what = e?.code ? `${e.name ?? 'Error'} (${e.code})` : (e?.name ?? 'Error');
    fs.writeSync(2, `workload.mjs: ${what}: ${e?.message ?? e}\n`);
    if (verbose && e?.stack) fs.writeSync(2, `${e.stack}\n`);
    process.exit(1);
  },
);
