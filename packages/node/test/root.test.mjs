// The `root` capability (src/root.js) of the Node host:
// - the shared cases of ../../tests/root/cases.json (format in its README),
//   each run in a child process of its own, so that a call that waits (on
//   a FIFO, say) is killed after a bound instead of hanging the run; the
//   calls go through `rootImports`, so what is tested is what jco's glue
//   gets (BigInt u64s, Uint8Array bytes, failures as a thrown `payload`);
// - what the cases cannot say declaratively: `gone`, exclusion across
//   processes (another Node process, and Python's flock), crash semantics
//   of `append` and `replace` under SIGKILL, files of another user.
//
// This file is also the program of those child processes: with
// ROOT_TEST_CHILD set, it runs one child role and declares no test.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { spawn, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import koffi from 'koffi';

import { Root, RootError, rootImports, sys } from '../src/root.js';

const THIS = fileURLToPath(import.meta.url);
const HERE = path.dirname(THIS);
const CASES = path.resolve(HERE, '../../../tests/root/cases.json');
const ROOT_JS = path.resolve(HERE, '../src/root.js');

const ERROR_CODES = new Set(['not-found', 'exists', 'refused', 'gone', 'full', 'read-only', 'io']);

/** WIT name -> the import's name in jco's object. */
const camel = (name) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase());

/** The WIT parameter types of each function, for converting case args. */
const SIGNATURES = {
  stat: ['string'],
  read: ['string', 'u64', 'u64'],
  append: ['string', 'bytes', 'bool'],
  'write-at': ['string', 'u64', 'bytes'],
  truncate: ['string', 'u64', 'bool'],
  replace: ['string', 'bytes', 'bool'],
  'create-dir': ['string', 'bool'],
  'sync-dir': ['string'],
  list: ['string'],
  rename: ['string', 'string'],
  'remove-file': ['string'],
  'remove-tree': ['string'],
  lock: ['string', 'bool', 'bool'],
  unlock: ['handle'],
};

/** What jco's generated glue does with what an import throws
 * (`getErrorPayload`): an own `payload` is the `err` case; an Error without
 * one traps the component. */
function call(imports, name, args) {
  const f = imports[camel(name)];
  assert.equal(typeof f, 'function', `rootImports has no ${camel(name)}`);
  try {
    return { value: f(...args) };
  } catch (e) {
    if (e && Object.prototype.hasOwnProperty.call(e, 'payload')) return { error: e.payload };
    return { trap: e };
  }
}

function tempDir(prefix = 'agent-session-root-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

const openFds = () => fs.readdirSync('/proc/self/fd').length;

let mkfifoFn;
function mkfifo(p, mode) {
  mkfifoFn ??= koffi.load(null).func('int mkfifo(const char *path, unsigned int mode)');
  if (mkfifoFn(p, mode) !== 0) throw new Error(`mkfifo ${p}: errno ${koffi.errno()}`);
  fs.chmodSync(p, mode);
}

/** `dir`, recursively, without following links: kinds, link targets and
 * file bytes. */
function snapshot(dir) {
  const out = {};
  (function walk(rel) {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const p = path.join(dir, r);
      const st = fs.lstatSync(p);
      if (st.isSymbolicLink()) out[r] = ['link', fs.readlinkSync(p)];
      else if (st.isDirectory()) {
        out[r] = ['dir'];
        walk(r);
      } else if (st.isFile()) out[r] = ['file', fs.readFileSync(p).toString('base64')];
      else out[r] = ['other', st.mode];
    }
  })('');
  return out;
}

// --- one shared case (run in a child) ---------------------------------------

function setupStep(tmp, step) {
  const at = (rel) => {
    const p = path.join(tmp, rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    return p;
  };
  if ('mkdir' in step) fs.mkdirSync(path.join(tmp, step.mkdir), { recursive: true });
  else if ('write' in step) fs.writeFileSync(at(step.write), step.text, 'utf8');
  else if ('symlink' in step) fs.symlinkSync(step.symlink, at(step.at));
  else if ('hardlink' in step) fs.linkSync(path.join(tmp, step.hardlink), at(step.at));
  else if ('fifo' in step) mkfifo(at(step.fifo), 0o644);
  else throw new Error(`unknown setup step ${JSON.stringify(step)}`);
}

function convertArgs(name, args, results, where) {
  const types = SIGNATURES[name];
  assert.ok(types, `${where}: unknown function ${name}`);
  assert.equal(args.length, types.length, `${where}: ${name} takes ${types.length} arguments`);
  return args.map((a, i) => {
    switch (types[i]) {
      case 'u64':
        return BigInt(a);
      case 'bytes':
        return new Uint8Array(Buffer.from(a.text, 'utf8'));
      case 'handle':
        if (typeof a === 'number') return BigInt(a);
        assert.equal(typeof results[a.handle], 'bigint', `${where}: step ${a.handle} returned no handle`);
        return results[a.handle];
      default:
        return a;
    }
  });
}

function expectOk(name, got, ok, where) {
  switch (name) {
    case 'append':
      assert.equal(typeof got, 'bigint', `${where}: append returns a BigInt`);
      assert.equal(got, BigInt(ok), where);
      break;
    case 'create-dir':
    case 'remove-file':
    case 'remove-tree':
      assert.equal(typeof got, 'boolean', `${where}: a bool`);
      assert.equal(got, ok, where);
      break;
    case 'read':
      assert.ok(got instanceof Uint8Array, `${where}: read returns a Uint8Array`);
      assert.deepEqual(Buffer.from(got), Buffer.from(ok.text, 'utf8'), where);
      break;
    case 'list':
      assert.ok(Array.isArray(got) && got.every((n) => typeof n === 'string'), `${where}: a list of strings`);
      assert.deepEqual([...got].sort(), ok, where);
      break;
    case 'stat':
      if (ok === null) {
        assert.equal(got, undefined, `${where}: none`);
      } else {
        assert.ok(got && typeof got === 'object', `${where}: a stat record`);
        assert.deepEqual(Object.keys(got).sort(), ['directory', 'id', 'size'], where);
        assert.equal(typeof got.size, 'bigint', `${where}: size is a BigInt`);
        assert.equal(typeof got.id, 'bigint', `${where}: id is a BigInt`);
        assert.deepEqual({ size: got.size, directory: got.directory }, { size: BigInt(ok.size), directory: ok.directory }, where);
      }
      break;
    case 'lock':
      if (ok === 'handle') assert.equal(typeof got, 'bigint', `${where}: a handle (BigInt)`);
      else assert.equal(got, undefined, `${where}: none`);
      break;
    default:
      assert.equal(ok, null, `${where}: a unit result is null in the case file`);
      assert.equal(got, undefined, where);
  }
}

/** Run case `index` in the empty directory `tmp` (the parent removes it). */
function runCase(index, tmp) {
  const { cases } = JSON.parse(fs.readFileSync(CASES, 'utf8'));
  const c = cases[index];
  fs.mkdirSync(path.join(tmp, 'root'));
  fs.mkdirSync(path.join(tmp, 'outside'));
  for (const step of c.setup ?? []) setupStep(tmp, step);
  const before = snapshot(path.join(tmp, 'outside'));
  const fds = openFds();
  const root = new Root(path.join(tmp, 'root'));
  const imports = rootImports(root);
  const results = [];
  const handles = [];
  try {
    c.steps.forEach((step, i) => {
      const where = `${c.name}, step ${i} ${JSON.stringify(step).slice(0, 300)}`;
      if ('check' in step) {
        assert.deepEqual(fs.readFileSync(path.join(tmp, step.check)), Buffer.from(step.text, 'utf8'), where);
        return;
      }
      if ('check_absent' in step) {
        assert.throws(() => fs.lstatSync(path.join(tmp, step.check_absent)), { code: 'ENOENT' }, where);
        return;
      }
      const args = convertArgs(step.call, step.args, results, where);
      const got = call(imports, step.call, args);
      if (got.trap) throw new Error(`${where}: threw without a payload (the component would trap): ${got.trap?.stack ?? got.trap}`);
      if ('err' in step) {
        assert.ok(got.error, `${where}: expected ${step.err}, got ${String(got.value)}`);
        assert.deepEqual(Object.keys(got.error).sort(), ['code', 'message'], where);
        assert.ok(ERROR_CODES.has(got.error.code), `${where}: ${got.error.code} is no error-code`);
        assert.equal(got.error.code, step.err, `${where}: ${got.error.message}`);
        assert.equal(typeof got.error.message, 'string', where);
        const paths = step.args.filter((a, k) => SIGNATURES[step.call][k] === 'string');
        assert.ok(
          paths.some((p) => got.error.message.includes(p) || got.error.message.includes(JSON.stringify(p))),
          `${where}: the message names the path: ${got.error.message}`,
        );
      } else {
        if (got.error) assert.fail(`${where}: failed ${got.error.code}: ${got.error.message}`);
        expectOk(step.call, got.value, step.ok, where);
        results[i] = got.value;
        if (step.call === 'lock' && typeof got.value === 'bigint') handles.push(got.value);
      }
    });
  } finally {
    for (const h of handles) imports.unlock(h);
    root.close();
  }
  assert.deepEqual(snapshot(path.join(tmp, 'outside')), before, `${c.name}: outside/ changed`);
  assert.equal(openFds(), fds, `${c.name}: descriptors were left open`);
}

// --- child roles --------------------------------------------------------------

/** A fixed-size record of the crash test: record k, 64 bytes (a divisor of
 * the page size, so no record straddles a page). */
const RECORD = 64;
const record = (k) => Buffer.from(`record ${String(k).padStart(10, '0')} `.padEnd(RECORD - 1, '.') + '\n');

/** Version k of the replaced document: large (several pages), and each
 * version differs in length and in every byte from the one before. */
const version = (k) => {
  const body = (k % 2 ? 'B' : 'A').repeat(150_000 + (k % 3) * 37_000);
  return Buffer.from(`version ${k}\n${body}\nend ${k}\n`);
};

async function child(role, args) {
  const say = (line) => fs.writeSync(1, `${line}\n`);
  // Whatever happens, a child does not outlive its test by long.
  setTimeout(() => process.exit(3), 60_000).unref();
  switch (role) {
    case 'case':
      runCase(Number(args[0]), args[1]);
      return;
    case 'case-by-segment':
      // As on a kernel without openat2 (Linux before 5.6): every path is
      // resolved one segment at a time.
      sys.openBeneath = () => undefined;
      runCase(Number(args[0]), args[1]);
      return;
    case 'append': {
      const imports = rootImports(new Root(args[0]));
      for (let k = 0; ; k++) {
        const size = imports.append('log', record(k), true);
        say(String(size));
      }
    }
    case 'replace': {
      const imports = rootImports(new Root(args[0]));
      for (let k = 1; ; k++) {
        imports.replace('doc', version(k), true);
        say(String(k));
      }
    }
    case 'hold': {
      // Hold a lock (waiting for it) until stdin closes.
      const imports = rootImports(new Root(args[0]));
      const h = imports.lock(args[1], args[2] === 'exclusive', true);
      say(`locked ${h}`);
      process.stdin.resume();
      await new Promise((resolve) => process.stdin.on('end', resolve));
      return;
    }
    case 'wait-lock': {
      // Wait for a lock (blocked in flock: no bound on the wait); say what
      // came of it.
      const imports = rootImports(new Root(args[0], { lockTimeoutMs: Infinity }));
      say('ready');
      let out;
      try {
        out = { handle: String(imports.lock(args[1], true, true)) };
      } catch (e) {
        out = { error: e.payload ?? String(e) };
      }
      say(JSON.stringify(out));
      return;
    }
    case 'try': {
      const imports = rootImports(new Root(args[0]));
      const h = imports.lock(args[1], args[2] === 'exclusive', false);
      say(h === undefined ? 'none' : 'granted');
      return;
    }
    case 'remove-tree-race': {
      // remove-tree `t` while, between the look at `t/sub` (a directory)
      // and its open, `sub` becomes a link to the FIFO `args[1]` outside.
      const imports = rootImports(new Root(args[0]));
      const open = fs.openSync;
      let swapped = 0;
      fs.openSync = (p, ...rest) => {
        const where = Buffer.isBuffer(p) ? p.toString() : String(p);
        if (swapped === 0 && where.endsWith('/sub')) {
          swapped++;
          fs.rmdirSync(where);
          fs.symlinkSync(args[1], where);
        }
        return open(p, ...rest);
      };
      const removed = imports.removeTree('t');
      fs.openSync = open;
      say(JSON.stringify({ removed, swapped }));
      return;
    }
    default:
      throw new Error(`unknown child role ${role}`);
  }
}

const ROLE = process.env.ROOT_TEST_CHILD;
if (ROLE) {
  await child(ROLE, process.argv.slice(2));
  process.exit(0);
}

// --- helpers of the tests (parent side) ---------------------------------------

function childEnv(role) {
  const env = { ...process.env, ROOT_TEST_CHILD: role };
  // Not a test process of the runner's.
  delete env.NODE_TEST_CONTEXT;
  return env;
}

/** Run a child role to completion, killed after `ms`. */
function runChild(role, args, ms = 30_000) {
  return spawnSync(process.execPath, [THIS, ...args], {
    env: childEnv(role),
    encoding: 'utf8',
    timeout: ms,
    killSignal: 'SIGKILL',
  });
}

/** A running child role: its stdout lines as they come, and its end. */
function startChild(t, role, args) {
  const proc = spawn(process.execPath, [THIS, ...args], {
    env: childEnv(role),
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const lines = [];
  let waiter = null;
  let stderr = '';
  proc.stderr.on('data', (d) => (stderr += d));
  readline.createInterface({ input: proc.stdout }).on('line', (line) => {
    lines.push(line);
    waiter?.();
  });
  const exited = new Promise((resolve) => proc.on('exit', (code, signal) => resolve({ code, signal })));
  t.after(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  });
  return {
    proc,
    lines,
    stderr: () => stderr,
    exited,
    /** The first line matching `pred`, waiting at most `ms`. */
    async line(pred, ms = 20_000) {
      const deadline = Date.now() + ms;
      for (;;) {
        const found = lines.find(pred);
        if (found !== undefined) return found;
        const left = deadline - Date.now();
        if (left <= 0 || proc.exitCode !== null || proc.signalCode !== null) {
          throw new Error(`child ${role} printed no expected line (got ${JSON.stringify(lines.slice(-5))}); stderr: ${stderr}`);
        }
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, Math.min(left, 200));
          waiter = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    },
    async exit(ms = 20_000) {
      let timer;
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => {
          proc.kill('SIGKILL');
          reject(new Error(`child ${role} did not exit within ${ms} ms; stderr: ${stderr}`));
        }, ms);
      });
      try {
        return await Promise.race([exited, timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Wait until some process is blocked in flock on the file with inode
 * `ino` (a `->` line of /proc/locks). */
async function waitForBlockedFlock(ino, ms = 20_000) {
  const deadline = Date.now() + ms;
  const pattern = new RegExp(`->\\s+FLOCK\\s+\\S+\\s+\\S+\\s+\\d+\\s+[0-9a-f]+:[0-9a-f]+:${ino}\\s`);
  while (Date.now() < deadline) {
    if (pattern.test(fs.readFileSync('/proc/locks', 'utf8'))) return;
    await sleep(20);
  }
  throw new Error(`no process waited for a flock on inode ${ino} within ${ms} ms`);
}

function tempRoot(t) {
  const dir = tempDir();
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function openRoot(t, dir) {
  const root = new Root(dir);
  t.after(() => root.close());
  return rootImports(root);
}

function errorOf(f) {
  try {
    f();
  } catch (e) {
    assert.ok(Object.prototype.hasOwnProperty.call(e, 'payload'), `thrown without a payload: ${e}`);
    return e.payload;
  }
  assert.fail('did not fail');
}

// --- the tests -----------------------------------------------------------------

for (const [suite, role] of [
  ['shared root cases (tests/root/cases.json)', 'case'],
  ['shared root cases, without openat2 (tests/root/cases.json)', 'case-by-segment'],
]) describe(suite, () => {
  assert.ok(fs.existsSync(CASES), `${CASES} is missing`);
  const { cases } = JSON.parse(fs.readFileSync(CASES, 'utf8'));
  assert.ok(cases.length > 0, 'no cases');
  cases.forEach((c, i) => {
    test(c.name, (t) => {
      const run = runChild(role, [String(i), tempRoot(t)]);
      if (run.error?.code === 'ETIMEDOUT' || run.signal === 'SIGKILL') {
        assert.fail(`case ${JSON.stringify(c.name)} did not finish in time (a call waited?)\n${run.stderr}`);
      }
      assert.equal(run.status, 0, `case ${JSON.stringify(c.name)} failed:\n${run.stderr}${run.stdout}`);
    });
  });
});

describe('root', () => {
  test('the library never starts a process', () => {
    const source = fs.readFileSync(ROOT_JS, 'utf8');
    assert.doesNotMatch(source, /child_process|spawn|exec(File)?Sync/);
  });

  test('jco conventions: BigInt u64s, Uint8Array bytes, failures as a thrown payload', (t) => {
    const dir = tempRoot(t);
    const r = openRoot(t, dir);
    assert.equal(r.createDir('d', true), true);
    assert.equal(r.append('d/f', new Uint8Array([1, 2, 3]), true), 3n);
    const st = r.stat('d/f');
    assert.equal(st.size, 3n);
    assert.equal(st.id, BigInt(fs.statSync(path.join(dir, 'd/f')).ino));
    assert.equal(st.directory, false);
    const bytes = r.read('d/f', 1n, 2n ** 64n - 1n);
    assert.ok(bytes instanceof Uint8Array);
    assert.deepEqual([...bytes], [2, 3]);
    assert.deepEqual([...r.read('d/f', 2n ** 64n - 1n, 10n)], []);
    const payload = errorOf(() => r.read('d/missing', 0n, 1n));
    assert.equal(payload.code, 'not-found');
    assert.match(payload.message, /d\/missing/);
    // A RootError is an Error (a stack for people), with the payload jco takes.
    try {
      r.truncate('nowhere/x', 0n, false);
      assert.fail('truncate of a missing file');
    } catch (e) {
      assert.ok(e instanceof RootError && e instanceof Error);
      assert.deepEqual(Object.keys(e.payload).sort(), ['code', 'message']);
    }
    // replace changes the id; a directory's size is 0.
    r.replace('d/f', new Uint8Array([9]), false);
    assert.notEqual(r.stat('d/f').id, st.id);
    assert.equal(r.stat('d').size, 0n);
  });

  test('no descriptor is left open, failures included', (t) => {
    const dir = tempRoot(t);
    const before = openFds();
    const root = new Root(dir);
    const r = rootImports(root);
    for (let i = 0; i < 3; i++) {
      r.createDir('a/b', true);
      r.append('a/b/log', new Uint8Array(10), true);
      r.writeAt('a/b/idx', 5n, new Uint8Array(3));
      r.read('a/b/log', 0n, 100n);
      r.truncate('a/b/log', 4n, true);
      r.replace('a/doc', new Uint8Array(5), true);
      r.stat('a/b/log');
      r.list('a/b');
      r.syncDir('a');
      r.rename('a/doc', 'a/doc2');
      r.removeFile('a/doc2');
      errorOf(() => r.read('a/b', 0n, 1n));
      errorOf(() => r.read('a/missing/x', 0n, 1n));
      errorOf(() => r.rename('a/missing', 'a/x'));
      const h = r.lock('a/l', true, false);
      assert.equal(r.lock('a/l', true, false), undefined);
      r.unlock(h);
      r.unlock(h);
      r.removeTree('a');
    }
    root.close();
    assert.equal(openFds(), before);
  });

  test('busy: a waiting lock gives up once lockTimeoutMs has passed', (t) => {
    const dir = tempRoot(t);
    const holder = openRoot(t, dir);
    holder.createDir('d', false);
    const h = holder.lock('d/l', true, false);
    const waiter = new Root(dir, { lockTimeoutMs: 300 });
    t.after(() => waiter.close());
    const started = performance.now();
    const e = errorOf(() => waiter.lock('d/l', false, true));
    const waited = performance.now() - started;
    assert.equal(e.code, 'busy');
    assert.match(e.message, /d\/l.*300 ms/);
    assert.ok(waited >= 300 && waited < 3000, `waited ${waited} ms`);
    // Granted once free, within the bound.
    holder.unlock(h);
    const again = waiter.lock('d/l', false, true);
    assert.equal(typeof again, 'bigint');
    waiter.unlock(again);
    assert.throws(() => new Root(dir, { lockTimeoutMs: -1 }), TypeError);
  });

  test('gone: the file locked was moved, removed or replaced while the lock was awaited', async (t) => {
    const mutations = {
      'its directory renamed away': (r) => r.rename('d', 'd2'),
      'the file removed': (r) => r.removeFile('d/l'),
      'the file replaced': (r) => r.replace('d/l', new Uint8Array([1]), false),
      'the file renamed away': (r) => r.rename('d/l', 'd/l2'),
      nothing: () => {},
    };
    for (const [what, mutate] of Object.entries(mutations)) {
      const dir = tempRoot(t);
      const holder = openRoot(t, dir);
      const other = openRoot(t, dir);
      holder.createDir('d', false);
      const h = holder.lock('d/l', true, false);
      assert.equal(typeof h, 'bigint');
      const ino = fs.statSync(path.join(dir, 'd/l')).ino;
      const waiter = startChild(t, 'wait-lock', [dir, 'd/l']);
      await waiter.line((l) => l === 'ready');
      await waitForBlockedFlock(ino);
      mutate(other);
      holder.unlock(h);
      const out = JSON.parse(await waiter.line((l) => l.startsWith('{')));
      await waiter.exit();
      if (what === 'nothing') {
        assert.ok(out.handle, `${what}: ${JSON.stringify(out)}`);
      } else {
        assert.equal(out.error?.code, 'gone', `${what}: ${JSON.stringify(out)}`);
        assert.match(out.error.message, /d\/l/);
      }
    }
  });

  test('locks exclude another process, and are released when it ends', async (t) => {
    const dir = tempRoot(t);
    const r = openRoot(t, dir);
    r.createDir('a', false);

    // Another process holds an exclusive lock: no lock here.
    const ex = startChild(t, 'hold', [dir, 'a/l', 'exclusive']);
    await ex.line((l) => l.startsWith('locked'));
    assert.equal(r.lock('a/l', true, false), undefined);
    assert.equal(r.lock('a/l', false, false), undefined);
    ex.proc.stdin.end();
    assert.equal((await ex.exit()).code, 0, ex.stderr());
    const h = r.lock('a/l', true, false);
    assert.equal(typeof h, 'bigint');

    // Held here: the other process gets none, shared or exclusive.
    assert.equal(runChild('try', [dir, 'a/l', 'exclusive']).stdout.trim(), 'none');
    assert.equal(runChild('try', [dir, 'a/l', 'shared']).stdout.trim(), 'none');
    r.unlock(h);
    assert.equal(runChild('try', [dir, 'a/l', 'exclusive']).stdout.trim(), 'granted');

    // Shared with shared, not with exclusive.
    const sh = startChild(t, 'hold', [dir, 'a/l', 'shared']);
    await sh.line((l) => l.startsWith('locked'));
    const s = r.lock('a/l', false, false);
    assert.equal(typeof s, 'bigint');
    assert.equal(r.lock('a/l', true, false), undefined);
    r.unlock(s);
    // A process killed while holding its lock releases it.
    sh.proc.kill('SIGKILL');
    await sh.exit();
    assert.equal(typeof r.lock('a/l', true, false), 'bigint');
  });

  test("locks exclude Python's flock on the same file (as the other hosts take it)", (t) => {
    const python = spawnSync('python3', ['-c', 'import fcntl'], { encoding: 'utf8' });
    if (python.error || python.status !== 0) {
      t.skip('python3 is not available');
      return;
    }
    const dir = tempRoot(t);
    const r = openRoot(t, dir);
    const tryFromPython = (how) => {
      const script = [
        'import fcntl, sys',
        'f = open(sys.argv[1], "rb")',
        'try:',
        `    fcntl.flock(f, fcntl.${how} | fcntl.LOCK_NB)`,
        '    print("got")',
        'except BlockingIOError:',
        '    print("busy")',
      ].join('\n');
      const run = spawnSync('python3', ['-c', script, path.join(dir, 'l')], { encoding: 'utf8', timeout: 20_000 });
      assert.equal(run.status, 0, run.stderr);
      return run.stdout.trim();
    };
    const h = r.lock('l', true, false);
    assert.equal(tryFromPython('LOCK_SH'), 'busy');
    r.unlock(h);
    const s = r.lock('l', false, false);
    assert.equal(tryFromPython('LOCK_SH'), 'got');
    assert.equal(tryFromPython('LOCK_EX'), 'busy');
    r.unlock(s);
    assert.equal(tryFromPython('LOCK_EX'), 'got');
  });

  test('a process killed while appending with sync leaves whole records, at least up to the last size returned', async (t) => {
    for (let round = 0; round < 3; round++) {
      const dir = tempRoot(t);
      const writer = startChild(t, 'append', [dir]);
      // Some records first, then a kill at a random moment.
      await writer.line(() => writer.lines.length >= 1 + Math.floor(Math.random() * 20));
      await sleep(Math.floor(Math.random() * 150));
      writer.proc.kill('SIGKILL');
      const { signal } = await writer.exit();
      assert.equal(signal, 'SIGKILL', writer.stderr());
      const sizes = writer.lines.filter((l) => /^\d+$/.test(l)).map(Number);
      sizes.forEach((s, k) => assert.equal(s, (k + 1) * RECORD, 'sizes returned'));
      const last = sizes.at(-1);
      const log = fs.readFileSync(path.join(dir, 'log'));
      assert.equal(log.length % RECORD, 0, `${log.length} bytes: a torn record`);
      assert.ok(log.length >= last, `${log.length} bytes, but ${last} were returned`);
      for (let k = 0; k < log.length / RECORD; k++) {
        assert.deepEqual(log.subarray(k * RECORD, (k + 1) * RECORD), record(k), `record ${k}`);
      }
    }
  });

  test('a process killed while replacing leaves the old content or the new, never a mix', async (t) => {
    for (let round = 0; round < 3; round++) {
      const dir = tempRoot(t);
      openRoot(t, dir).replace('doc', version(0), true);
      const writer = startChild(t, 'replace', [dir]);
      await writer.line(() => writer.lines.length >= 1 + Math.floor(Math.random() * 5));
      await sleep(Math.floor(Math.random() * 100));
      writer.proc.kill('SIGKILL');
      await writer.exit();
      const done = writer.lines.filter((l) => /^\d+$/.test(l)).map(Number);
      const last = done.at(-1) ?? 0;
      const doc = fs.readFileSync(path.join(dir, 'doc'));
      const k = Number(/^version (\d+)\n/.exec(doc.subarray(0, 32).toString())?.[1]);
      assert.ok(k === last || k === last + 1, `version ${k} found, ${last} was the last replace returned`);
      assert.ok(doc.equals(version(k)), `version ${k} is not whole`);
      const strays = fs.readdirSync(dir).filter((n) => n !== 'doc');
      assert.ok(strays.length <= 1, `stray files: ${strays}`);
      for (const n of strays) assert.match(n, /^\.doc\.\d+-[0-9a-f]+\.tmp$/);
    }
  });

  test("a file of another user is refused unless it is the root owner's (needs root)", (t) => {
    if (process.geteuid() !== 0) {
      t.skip('chown needs root');
      return;
    }
    const dir = tempRoot(t);
    fs.writeFileSync(path.join(dir, 'foreign'), 'x');
    fs.chownSync(path.join(dir, 'foreign'), 4242, 4242);
    fs.writeFileSync(path.join(dir, 'mine'), 'y');
    const r = openRoot(t, dir);
    for (const f of [
      () => r.stat('foreign'),
      () => r.read('foreign', 0n, 10n),
      () => r.append('foreign', new Uint8Array([1]), false),
      () => r.writeAt('foreign', 0n, new Uint8Array([1])),
      () => r.truncate('foreign', 0n, false),
      () => r.replace('foreign', new Uint8Array([1]), false),
      () => r.lock('foreign', true, false),
    ]) {
      assert.equal(errorOf(f).code, 'refused');
    }
    assert.equal(fs.readFileSync(path.join(dir, 'foreign'), 'utf8'), 'x');
    assert.equal(r.stat('mine').size, 1n);
    // It can still be removed (the entry is the root's).
    assert.equal(r.removeFile('foreign'), true);

    // A root owned by another user: that user's files are accepted too,
    // and this user's; a third user's are not.
    const other = tempRoot(t);
    fs.chownSync(other, 4242, 4242);
    for (const [name, uid] of [['owners', 4242], ['mine', 0], ['third', 4343]]) {
      fs.writeFileSync(path.join(other, name), 'z');
      fs.chownSync(path.join(other, name), uid, uid);
    }
    const o = openRoot(t, other);
    assert.deepEqual([...o.read('owners', 0n, 10n)], [0x7a]);
    assert.deepEqual([...o.read('mine', 0n, 10n)], [0x7a]);
    assert.equal(errorOf(() => o.read('third', 0n, 10n)).code, 'refused');
  });

  test('choices of tests/root/README.md that no shared case exercises', (t) => {
    const dir = tempRoot(t);
    const r = openRoot(t, dir);
    r.createDir('d/sub', false);
    r.append('f', new Uint8Array([1]), false);
    mkfifo(path.join(dir, 'p'), 0o644);
    // A directory over a file: exists (the file is left alone).
    assert.equal(errorOf(() => r.rename('d', 'f')).code, 'exists');
    assert.equal(r.stat('f').size, 1n);
    // The root is no file.
    for (const f of [
      () => r.append('.', new Uint8Array([1]), false),
      () => r.writeAt('.', 0n, new Uint8Array([1])),
      () => r.truncate('.', 0n, false),
      () => r.replace('.', new Uint8Array([1]), false),
      () => r.lock('.', true, false),
    ]) {
      assert.equal(errorOf(f).code, 'refused');
    }
    // A FIFO on the way is a non-directory like a file: not there.
    assert.equal(r.stat('p/x'), undefined);
    assert.equal(errorOf(() => r.read('p/x', 0n, 1n)).code, 'not-found');
    assert.equal(errorOf(() => r.list('p/x')).code, 'not-found');
    assert.equal(r.removeFile('p/x'), false);
    assert.equal(r.removeTree('p/x'), false);
    assert.equal(errorOf(() => r.createDir('p/x', false)).code, 'exists');
    // remove-tree removes a FIFO inside the tree without opening it.
    mkfifo(path.join(dir, 'd/sub/q'), 0o644);
    assert.equal(r.removeTree('d'), true);
    assert.deepEqual(r.list('.').sort(), ['f', 'p']);
  });

  test('remove-tree never opens a FIFO nor follows a link, even to a directory swapped meanwhile', (t) => {
    // Run in a child process killed after a bound: a walk that opened a
    // FIFO would block forever.
    const tmp = tempRoot(t);
    const outside = path.join(tmp, 'outside');
    const tree = path.join(tmp, 'root/t');
    fs.mkdirSync(outside);
    mkfifo(path.join(outside, 'fifo'), 0o644);
    fs.mkdirSync(path.join(tree, 'sub'), { recursive: true });
    fs.mkdirSync(path.join(tree, 'd'));
    mkfifo(path.join(tree, 'q'), 0o644);
    mkfifo(path.join(tree, 'd/q'), 0o644);
    fs.symlinkSync(path.join(outside, 'fifo'), path.join(tree, 'link'));
    fs.symlinkSync('../../../outside/fifo', path.join(tree, 'd/link'));
    fs.writeFileSync(path.join(tree, 'd/f'), 'x');
    const done = runChild('remove-tree-race', [path.join(tmp, 'root'), path.join(outside, 'fifo')], 20_000);
    assert.equal(done.signal, null, `the child was killed (blocked on a FIFO?); stderr: ${done.stderr}`);
    assert.equal(done.status, 0, done.stderr);
    assert.deepEqual(JSON.parse(done.stdout), { removed: true, swapped: 1 });
    assert.deepEqual(fs.readdirSync(path.join(tmp, 'root')), []);
    assert.ok(fs.lstatSync(path.join(outside, 'fifo')).isFIFO());
    assert.deepEqual(fs.readdirSync(outside), ['fifo']);
  });

  test('every file open carries O_NOFOLLOW | O_NONBLOCK | O_NOCTTY', (t) => {
    // Whatever is there when the file is opened (a link, a FIFO, a device,
    // a terminal), the open neither follows it, nor waits, nor makes a
    // terminal the controlling one, before fstat refuses it. (A terminal
    // cannot be planted in a test: a pts node made with mknod outside
    // devpts does not open.)
    const { O_DIRECTORY, O_NOFOLLOW, O_NONBLOCK, O_NOCTTY } = fs.constants;
    const r = openRoot(t, tempRoot(t));
    // Opens with O_PATH (to fstat a path, never to read or write it) open
    // nothing and are left out.
    const O_PATH = 0o10000000;
    const opened = [];
    const { openAt, openBeneath } = sys;
    const watch = (name, flags) => {
      if ((flags & (O_DIRECTORY | O_PATH)) === 0) opened.push([path.basename(name), flags]);
    };
    sys.openAt = (dirfd, name, flags, ...rest) => {
      watch(name, flags);
      return openAt(dirfd, name, flags, ...rest);
    };
    sys.openBeneath = (dirfd, p, flags, ...rest) => {
      watch(p, flags);
      return openBeneath(dirfd, p, flags, ...rest);
    };
    try {
      r.createDir('d', false);
      r.append('d/f', new Uint8Array([1, 2, 3]), true);
      r.writeAt('d/f', 1n, new Uint8Array([4]));
      r.truncate('d/f', 1n, true);
      r.read('d/f', 0n, 10n);
      r.replace('d/g', new Uint8Array([5]), true);
      r.unlock(r.lock('d/l', true, false));
    } finally {
      Object.assign(sys, { openAt, openBeneath });
    }
    const names = new Set(opened.map(([n]) => n));
    assert.ok(names.has('f') && names.has('l') && [...names].some((n) => n.startsWith('.g.')), [...names].join(' '));
    const need = O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
    for (const [name, flags] of opened) assert.equal(flags & need, need, `${name} opened with ${flags.toString(8)}`);
  });

  test('a file is opened with one openat2 call, found or not', (t) => {
    // The segment-by-segment resolution is for failures that need naming
    // (a link, a non-directory on the way), not for the common case.
    const r = openRoot(t, tempRoot(t));
    r.createDir('d', false);
    r.append('d/f', new Uint8Array([1, 2, 3]), true);
    const { openAt } = sys;
    let bySegment = 0;
    sys.openAt = (...args) => {
      bySegment++;
      return openAt(...args);
    };
    try {
      r.append('d/f', new Uint8Array([4]), true);
      r.writeAt('d/f', 1n, new Uint8Array([5]));
      r.truncate('d/f', 2n, false);
      assert.equal(r.read('d/f', 0n, 10n).length, 2);
      assert.equal(r.stat('d/f').size, 2n);
      assert.equal(r.stat('d/missing'), undefined);
      assert.equal(errorOf(() => r.read('d/missing', 0n, 1n)).code, 'not-found');
      assert.equal(errorOf(() => r.read('nodir/missing', 0n, 1n)).code, 'not-found');
      r.unlock(r.lock('d/l', true, false));
    } finally {
      sys.openAt = openAt;
    }
    assert.equal(bySegment, 0);
  });

  test('a path is resolved again from the root each call: a directory moved away is not followed', (t) => {
    const dir = tempRoot(t);
    const r = openRoot(t, dir);
    r.createDir('a/b', false);
    r.append('a/b/f', new Uint8Array([1]), false);
    fs.renameSync(path.join(dir, 'a'), path.join(dir, 'moved'));
    fs.symlinkSync('moved', path.join(dir, 'a'));
    assert.equal(errorOf(() => r.read('a/b/f', 0n, 1n)).code, 'refused');
    assert.equal(r.stat('moved/b/f').size, 1n);
  });
});
