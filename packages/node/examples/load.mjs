#!/usr/bin/env node
// A load generator on Node: the directory-store counterpart of the Rust
// one (host/examples/load.rs), with the same flags, the same operations,
// the same op ids and the same output, so that the crash and concurrency
// checks written for the Rust generator can run against this one, or
// against Rust, Node and Python processes working on one directory at
// once.
//
//   node examples/load.mjs --dir /tmp/root --sessions 3 --threads 2 --ops 100 --tag n1
//
// Flags come in pairs: --dir D (default ./.agent-sessions), --sessions N
// (3, at least 1), --threads T (2), --ops K (100 per thread), --tag TAG
// (the process id). `--store` and `--deliver` of the Rust generator are not
// supported (Node only has the directory store, and does not deliver
// webhooks). A bad flag exits with 2, a failure to open the directory (or
// to list or start sessions) with 1, the end of the work with 0.
//
// The sessions: the newest resumable (active or paused) ones of `list`,
// topped up with new ones (task "load", maxIterations 1_000_000), each
// printed as `ack start-<tag> start <id>`. Then K operations per worker t,
// op ids `<tag>-<t>-<n>`, on session ids[(n + t) % N], by n % 5:
//   0, 1: a tool call, input {"op": op}, output {"pad": "x" * (n % 7 * 300)},
//         duration n ms                         (kind `tool`)
//   2, 3: an iteration with data {"op": op}     (kind `iterate`)
//   4:    pause with reason op, or resume if the session is paused
//         (kind `pause` / `resume`; `get` if reading the status failed)
// Each call's outcome is one line on stdout:
//   ack <op> <kind> <id>                the host acknowledged it
//   conflict <op> <kind> <id>           SessionError `conflict`
//   refused <op> <kind> <id>            SessionError `invalid-transition`
//   error <op> <kind> <id> <message>    anything else
// written with fs.writeSync(1, ...) before the next call, so that a
// process killed (SIGKILL) at any moment has printed exactly what was
// acknowledged before it: process.stdout.write may queue writes to a pipe.
//
// Threads: the Node API is synchronous (every call runs the component on
// the calling thread), so the T "threads" are logical workers interleaved
// on the one thread: for each n, workers t = 0..T-1 take their turn. The
// op ids, kinds and sessions are those the Rust threads would produce;
// only the interleaving within this process differs. The concurrency that
// matters -- this process writing while OTHER processes (Rust, Node,
// Python) write the same sessions -- is real.

import fs from 'node:fs';
import { openSessionsSync, SessionError } from '../src/index.js';

const FLAGS = '--dir, --sessions, --threads, --ops, --tag';

function usage(message) {
  fs.writeSync(2, `load.mjs: ${message}\n`);
  process.exit(2);
}

function parse(argv) {
  const a = {
    dir: './.agent-sessions',
    sessions: 3,
    threads: 2,
    ops: 100,
    tag: String(process.pid),
  };
  for (let i = 0; i < argv.length; i += 2) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (value === undefined) usage(`${flag} needs a value`);
    const number = () => {
      if (!/^\+?[0-9]+$/.test(value) || !Number.isSafeInteger(Number(value))) {
        usage(`${flag} needs a number, got ${JSON.stringify(value)}`);
      }
      return Number(value);
    };
    switch (flag) {
      case '--dir':
        a.dir = value;
        break;
      case '--sessions':
        a.sessions = number();
        break;
      case '--threads':
        a.threads = number();
        break;
      case '--ops':
        a.ops = number();
        break;
      case '--tag':
        a.tag = value;
        break;
      case '--store':
      case '--deliver':
        usage(`${flag} is only supported by the Rust load generator; expected ${FLAGS}`);
        break;
      default:
        usage(`unknown argument ${flag}; expected ${FLAGS}`);
    }
  }
  if (a.sessions === 0) usage('--sessions must be at least 1');
  return a;
}

/** One line on stdout, in the pipe before this returns. */
function say(line) {
  const buf = Buffer.from(`${line}\n`);
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(1, buf, off);
    } catch (e) {
      // A non-blocking stdout (a pipe Node set O_NONBLOCK on) that is full.
      if (e.code !== 'EAGAIN') throw e;
    }
  }
}

/** A failure as the rest of an `error` line: on one line. */
function describe(e) {
  const text = e instanceof SessionError ? `${e.code}: ${e.message}` : String(e?.message ?? e);
  return text.replace(/\s*\n\s*/g, ' ');
}

const args = parse(process.argv.slice(2));

let host;
let ids;
try {
  host = await openSessionsSync({ dir: args.dir });
  // The sessions to work on: the newest active or paused ones, topped up
  // with new ones.
  ids = host
    .list({}, null, 100)
    .sessions.filter((s) => s.status === 'active' || s.status === 'paused')
    .map((s) => s.id)
    .slice(0, args.sessions);
  while (ids.length < args.sessions) {
    const s = host.start({ task: 'load', maxIterations: 1_000_000 });
    say(`ack start-${args.tag} start ${s.id}`);
    ids.push(s.id);
  }
} catch (e) {
  fs.writeSync(2, `load.mjs: ${args.dir}: ${describe(e)}\n`);
  process.exit(1);
}

/** Operation n (of some worker) on session id: its kind, and a function that runs it. */
function operation(n, id, op) {
  switch (n % 5) {
    case 0:
    case 1:
      return [
        'tool',
        () =>
          host.recordToolCall(id, {
            name: 'load',
            input: { op },
            output: { pad: 'x'.repeat((n % 7) * 300) },
            durationMs: n,
          }),
      ];
    case 2:
    case 3:
      return ['iterate', () => host.iterate(id, { op })];
    default: {
      let status;
      try {
        status = host.get(id).status;
      } catch (e) {
        return [
          'get',
          () => {
            throw e;
          },
        ];
      }
      if (status === 'paused') return ['resume', () => host.resume(id)];
      return ['pause', () => host.pause(id, op)];
    }
  }
}

for (let n = 0; n < args.ops; n++) {
  for (let t = 0; t < args.threads; t++) {
    const id = ids[(n + t) % ids.length];
    const op = `${args.tag}-${t}-${n}`;
    const [kind, run] = operation(n, id, op);
    let line;
    try {
      run();
      line = `ack ${op} ${kind} ${id}`;
    } catch (e) {
      const code = e instanceof SessionError ? e.code : null;
      if (code === 'conflict') line = `conflict ${op} ${kind} ${id}`;
      // Another writer paused (or resumed) first.
      else if (code === 'invalid-transition') line = `refused ${op} ${kind} ${id}`;
      else line = `error ${op} ${kind} ${id} ${describe(e)}`;
    }
    say(line);
  }
}
host.close();
process.exit(0);
