#!/usr/bin/env node
// What the Promise API (the component in a worker) costs next to the
// synchronous one on the calling thread, side by side in one run on one
// disk, and what it spares the application's event loop:
//
//   node packages/node/bench/async.mjs [dir] [n=300]
//
//   1. open + first call in a new process (import, worker start, compiling
//      the core modules, opening the directory, one `get`), median of 5;
//   2. a durable recordToolCall and a `get`, each awaited alone, n times:
//      direct (openSessionsSync) and through the worker (openSessions),
//      interleaved in rounds so that the disk's drift hits both alike;
//   3. the main thread's event-loop delay (perf_hooks.monitorEventLoopDelay)
//      while 1,000 calls are in flight at once, and while the same 1,000
//      run on the calling thread (the baseline the worker is for).
//
// Targets: open + first call ≤ 150 ms; worker append ≤ 1.1× direct, worker
// get ≤ direct + 100 µs; event-loop delay p99 ≤ 5 ms. Prints a table with
// the machine; the medians are of per-call times (µs).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';

import { openSessions, openSessionsSync } from '../src/index.js';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const base = process.argv[2] ?? os.tmpdir();
const n = Number(process.argv[3] ?? 300);
const dir = fs.mkdtempSync(path.join(base, 'agent-session-async-bench-'));

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const us = (t0) => Number(process.hrtime.bigint() - t0) / 1000;
const CALL = { name: 'search', input: { q: 'x'.repeat(347) }, output: { hits: 3 }, durationMs: 12 };

try {
  // 1. A new process: import + open + first call.
  const script = path.join(dir, 'first-call.mjs');
  fs.writeFileSync(
    script,
    `const t0 = performance.now();
     const { openSessions } = await import(${JSON.stringify(path.join(PKG, 'src/index.js'))});
     const s = await openSessions({ dir: process.argv[2] });
     await s.list({}, null, 1);
     console.log(performance.now() - t0);
     await s.close();`,
  );
  const firstCall = [];
  for (let i = 0; i < 5; i++) {
    const r = spawnSync(process.execPath, [script, path.join(dir, 'root')], { encoding: 'utf8', timeout: 60_000 });
    if (r.status !== 0) throw new Error(`first-call.mjs failed: ${r.stderr}`);
    firstCall.push(Number(r.stdout.trim()));
  }

  // 2. Per call, direct and through the worker, interleaved.
  // A root each: two writers of one root would each read the other's
  // index entries on every call.
  const direct = await openSessionsSync({ dir: path.join(dir, 'direct') });
  const worker = await openSessions({ dir: path.join(dir, 'worker') });
  // A bound far past the bench's iterations.
  const a = direct.start({ task: 'direct', maxIterations: 1_000_000 });
  const b = await worker.start({ task: 'worker', maxIterations: 1_000_000 });
  const times = { directAppend: [], workerAppend: [], directGet: [], workerGet: [] };
  for (let i = 0; i < 20; i++) {
    direct.recordToolCall(a.id, CALL);
    await worker.recordToolCall(b.id, CALL);
  }
  for (let round = 0; round < n / 10; round++) {
    for (let i = 0; i < 10; i++) {
      let t0 = process.hrtime.bigint();
      direct.recordToolCall(a.id, CALL);
      times.directAppend.push(us(t0));
      t0 = process.hrtime.bigint();
      await worker.recordToolCall(b.id, CALL);
      times.workerAppend.push(us(t0));
    }
    for (let i = 0; i < 10; i++) {
      let t0 = process.hrtime.bigint();
      direct.get(a.id);
      times.directGet.push(us(t0));
      t0 = process.hrtime.bigint();
      await worker.get(b.id);
      times.workerGet.push(us(t0));
    }
  }

  // 3. The event loop while 1,000 calls are in flight.
  const delay = async (burst) => {
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    await burst();
    // One more turn, so the last delay is recorded.
    await new Promise((r) => setTimeout(r, 5));
    h.disable();
    return { p99: h.percentile(99) / 1e6, max: h.max / 1e6 };
  };
  const workerLoop = await delay(() =>
    Promise.all(Array.from({ length: 1000 }, (_, i) => (i % 2 ? worker.get(b.id) : worker.iterate(b.id)))),
  );
  const directLoop = await delay(async () => {
    for (let i = 0; i < 1000; i++) {
      if (i % 2) direct.get(a.id);
      else direct.iterate(a.id);
      // Let the monitor's timer in between, as other work would be.
      if (i % 100 === 0) await new Promise((r) => setImmediate(r));
    }
  });
  await worker.close();
  direct.close();

  const m = Object.fromEntries(Object.entries(times).map(([k, v]) => [k, median(v)]));
  const f = (x) => x.toFixed(1).padStart(9);
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(`machine: ${cpu}, ${os.cpus().length} cores; Node ${process.version}; disk: ${dir}`);
  console.log(`open + first call in a new process (median of 5): ${median(firstCall).toFixed(1)} ms (target <= 150)`);
  console.log('per call, median µs          direct    worker');
  console.log(`durable recordToolCall     ${f(m.directAppend)} ${f(m.workerAppend)}   ${(m.workerAppend / m.directAppend).toFixed(2)}x (target <= 1.1x)`);
  console.log(`get                        ${f(m.directGet)} ${f(m.workerGet)}   +${(m.workerGet - m.directGet).toFixed(1)} µs (target <= +100)`);
  console.log('event-loop delay during 1,000 calls, ms   p99      max');
  console.log(`  through the worker                 ${f(workerLoop.p99)} ${f(workerLoop.max)}   (target p99 <= 5)`);
  console.log(`  on the calling thread (baseline)   ${f(directLoop.p99)} ${f(directLoop.max)}`);
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
