// The framework adapters' cost, beside the frameworks' in-memory stores
// (MemorySaver, MemorySession: nothing durable, so for scale only):
// LangGraph `put` and OpenAI Agents `addItems` latency, then
// `getTuple` (latest) and `getItems(10)` with 200 and with 2,000
// checkpoints (items) in the thread (conversation).
//
//   node bench/frameworks.mjs [dir] [reads]
//
// Ours go through the worker a directory opens (what `new
// AgentSessionSaver(dir)` and `new AgentSession({ dir })` do); every put
// and add is durable (fdatasync). Prints a table.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MemorySaver, emptyCheckpoint, uuid6 } from '@langchain/langgraph-checkpoint';
import { MemorySession } from '@openai/agents';
import { AgentSessionSaver } from '../src/langgraph.js';
import { AgentSession } from '../src/openai-agents.js';

const dir = process.argv[2] ?? fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-bench-frameworks-'));
const READS = Number(process.argv[3] ?? 200);
const SIZES = [200, 2000];

const micros = (ms) => Math.round(ms * 1000);

function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { mean: micros(s.reduce((a, b) => a + b, 0) / s.length), p50: micros(at(0.5)), p99: micros(at(0.99)) };
}

async function timed(n, f) {
  const samples = [];
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    await f(i);
    samples.push(performance.now() - t);
  }
  return samples;
}

/** A checkpoint of a chat-like graph at step `i`: the last messages and a
 * counter, both new at this step (about 1 KiB). */
function checkpointAt(i) {
  const cp = { ...emptyCheckpoint(), id: uuid6(-1) };
  cp.channel_values = {
    messages: Array.from({ length: 5 }, (_, k) => ({ role: k % 2 ? 'assistant' : 'user', content: `message ${i - k} `.repeat(8) })),
    step: i,
  };
  cp.channel_versions = { messages: i + 1, step: i + 1 };
  cp.versions_seen = { agent: { messages: i } };
  return cp;
}

async function langgraph(saver, thread) {
  const out = {};
  let parent;
  let made = 0;
  const put = async () => {
    const cp = checkpointAt(made);
    const config = { configurable: { thread_id: thread, checkpoint_ns: '', ...(parent && { checkpoint_id: parent }) } };
    const r = await saver.put(config, cp, { source: 'loop', step: made, parents: {} }, cp.channel_versions);
    parent = r.configurable.checkpoint_id;
    made += 1;
  };
  const puts = [];
  for (const size of SIZES) {
    puts.push(...(await timed(size - made, put)));
    const latest = { configurable: { thread_id: thread, checkpoint_ns: '' } };
    const got = await saver.getTuple(latest);
    if (got.checkpoint.channel_values.step !== made - 1) throw new Error('getTuple is not the latest');
    out[`getTuple(latest) at ${size}`] = summary(await timed(READS, () => saver.getTuple(latest)));
  }
  out.put = summary(puts);
  return out;
}

async function openai(session) {
  const out = {};
  let made = 0;
  const add = async () => {
    await session.addItems([{ type: 'message', role: made % 2 ? 'assistant' : 'user', content: `message ${made} `.repeat(8) }]);
    made += 1;
  };
  const adds = [];
  for (const size of SIZES) {
    adds.push(...(await timed(size - made, add)));
    const got = await session.getItems(10);
    if (got.length !== 10 || got[9].content !== `message ${made - 1} `.repeat(8)) throw new Error('getItems(10) is not the last 10');
    out[`getItems(10) at ${size}`] = summary(await timed(READS, () => session.getItems(10)));
  }
  out.addItems = summary(adds);
  return out;
}

const ours = new AgentSessionSaver(dir);
const theirs = new MemorySaver();
const conversation = new AgentSession({ sessionId: 'bench', dir });
const memory = new MemorySession({ sessionId: 'bench' });
// Warm-up: the opening (worker, compile) is not what is measured.
await ours.getTuple({ configurable: { thread_id: 'warm-up' } });

const started = performance.now();
const rows = [];
const results = [
  ['LangGraph', await langgraph(ours, 'bench'), await langgraph(theirs, 'bench')],
  ['OpenAI Agents', await openai(conversation), await openai(memory)],
];
for (const [framework, a, b] of results) {
  for (const op of Object.keys(a)) rows.push([framework, op, a[op], b[op]]);
}
await ours.close();
await conversation.close();

const cpus = os.cpus();
const lines = [
  `bench/frameworks.mjs, ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus.length} x ${cpus[0]?.model ?? '?'}, ${dir}`,
  `${READS} reads per row; puts and adds durable (fdatasync) on ours; µs; took ${Math.round((performance.now() - started) / 1000)} s; ` +
    `load average at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`,
  '',
  '| framework | operation | ours mean / p50 / p99 | in-memory mean / p50 / p99 |',
  '|---|---|---|---|',
  ...rows.map(([f, op, a, b]) => `| ${f} | ${op} | ${a.mean} / ${a.p50} / ${a.p99} | ${b.mean} / ${b.p50} / ${b.p99} |`),
];
console.log(lines.join('\n'));
if (!process.argv[2]) fs.rmSync(dir, { recursive: true, force: true });
