#!/usr/bin/env node
// Deliver a directory's queued webhook notifications from Node: the same
// sender `openSessions({ webhooks: { deliver: true } })` runs in a process,
// on its own (as the Rust CLI's `agent-session deliver`, whose flags it
// takes). One sender runs per directory at a time, whatever its host.

import { parseArgs } from 'node:util';
import { openSessionsSync, SENDING } from '../src/sync.js';
import { Deliverer } from '../src/deliver.js';

const HELP = `Usage: agent-session-deliver --dir DIR [options]

Deliver the webhook notifications queued in DIR: signed (Standard
Webhooks), retried with backoff, every attempt recorded in DIR. Runs until
SIGINT/SIGTERM (finishing the attempts in flight) unless --once is given.
Only one sender delivers from a directory at a time (any host); this one
waits its turn.

Options:
  --dir DIR               the sessions directory (required)
  --allow LIST            exceptions to the address policy, comma-separated:
                          addresses, ranges (10.0.0.0/8), host names
  --retry-schedule LIST   delays before the retries, e.g. 5s,5m,30m,2h
                          (default 5s,5m,30m,2h,5h,10h,10h)
  --timeout DURATION      per request, to the response head (default 15s)
  --concurrency N         requests in flight at once (default 16)
  --poll DURATION         how often to look for what others queued (default 1s)
  --once                  attempt what is due now, wait, print a JSON report, exit
  -h, --help              this help
`;

function duration(text, flag) {
  const m = /^(\d+)(ms|s|m|h)$/.exec(text.trim());
  if (!m) throw new Error(`${flag}: ${JSON.stringify(text)} is not a duration like 500ms, 15s, 5m or 2h`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2]];
}

const list = (s) => (s ?? '').split(',').map((x) => x.trim()).filter(Boolean);

async function main() {
  const { values } = parseArgs({
    options: {
      dir: { type: 'string' },
      allow: { type: 'string' },
      'retry-schedule': { type: 'string' },
      timeout: { type: 'string' },
      concurrency: { type: 'string' },
      poll: { type: 'string' },
      once: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (!values.dir) throw new Error('--dir is required (see --help)');
  const concurrency = values.concurrency === undefined ? undefined : Number(values.concurrency);
  if (concurrency !== undefined && !(Number.isInteger(concurrency) && concurrency > 0)) {
    throw new Error(`--concurrency: ${values.concurrency} is not a positive whole number`);
  }
  const options = {
    allow: list(values.allow),
    retryScheduleMs: values['retry-schedule'] === undefined ? undefined : list(values['retry-schedule']).map((d) => duration(d, '--retry-schedule')),
    timeoutMs: values.timeout === undefined ? undefined : duration(values.timeout, '--timeout'),
    pollMs: values.poll === undefined ? undefined : duration(values.poll, '--poll'),
    concurrency,
  };
  const sessions = await openSessionsSync({ dir: values.dir });
  const deliverer = new Deliverer(sessions[SENDING], options);
  if (values.once) {
    try {
      process.stdout.write(`${JSON.stringify(await deliverer.once())}\n`);
    } finally {
      await deliverer.stop();
      sessions.close();
    }
    return 0;
  }
  const stopped = new Promise((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  deliverer.run();
  process.stderr.write(`delivering webhooks from ${values.dir}/outbox (Ctrl-C to stop)\n`);
  // Its timers do not hold the process: this does, until a signal.
  const keepAlive = setInterval(() => {}, 1 << 30);
  await stopped;
  clearInterval(keepAlive);
  await deliverer.stop();
  sessions.close();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`agent-session-deliver: ${e.message}\n`);
    process.exit(e?.code === 'conflict' ? 1 : 2);
  },
);
