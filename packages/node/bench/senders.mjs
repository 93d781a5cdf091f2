#!/usr/bin/env node
// The Node side of the webhook sender benchmark (host/benches/senders.rs):
// operation latency with an endpoint and this process's sender delivering
// to the bench's receiver, next to no endpoint.
//
//   node packages/node/bench/senders.mjs <dir> <receiver url|none> [sessions=100]
//
// In <dir> (fresh), through the package's public async API
// (`openSessions({ dir, webhooks: { deliver: true } })` when a receiver is
// given): for each session, start, iterate, complete, each awaited and timed
// alone (2 notifications per session: started and completed). Then, with a
// receiver, it waits (at most 60 s) until every delivery is recorded.
//
// stdout: one line of JSON: {"op_us": {"median", "p99", "n"}, "drain_ms"}
// (drain_ms: from the last operation until every delivery was recorded).

import { openSessions } from '../src/index.js';

const [dir, url, n = '100'] = process.argv.slice(2);
if (!dir || !url) {
  process.stderr.write('usage: senders.mjs <dir> <receiver url|none> [sessions]\n');
  process.exit(2);
}
const sessions = Number(n);
const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';
const withHook = url !== 'none';
const s = await openSessions({
  dir,
  webhookAllow: ['127.0.0.1'],
  webhooks: withHook ? { deliver: true } : undefined,
});
if (withHook) await s.setWebhook({ url, secret: SECRET });
const times = [];
const timed = async (f) => {
  const t = process.hrtime.bigint();
  const out = await f();
  times.push(Number(process.hrtime.bigint() - t) / 1000);
  return out;
};
for (let i = 0; i < sessions; i++) {
  const a = await timed(() => s.start({ task: `bench ${i}` }));
  await timed(() => s.iterate(a.id, { step: 1 }));
  await timed(() => s.complete(a.id));
}
const last = performance.now();
let drainMs = null;
if (withHook) {
  const deadline = last + 60_000;
  for (;;) {
    const all = await s.deliveries();
    if (all.length === 2 * sessions && all.every((d) => d.state !== 'pending')) break;
    if (performance.now() > deadline) throw new Error('the deliveries did not settle in 60 s');
    await new Promise((r) => setTimeout(r, 10));
  }
  drainMs = performance.now() - last;
}
await s.close();
times.sort((x, y) => x - y);
const at = (p) => times[Math.min(times.length - 1, Math.floor(p * times.length))];
process.stdout.write(`${JSON.stringify({ op_us: { median: at(0.5), p99: at(0.99), n: times.length }, drain_ms: drainMs })}\n`);
