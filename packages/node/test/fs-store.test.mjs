// The Node filesystem store and outbox on their own: positions, torn
// tails, document versions, locks seen from another process, and the
// bytes they write.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { crc32 } from 'node:zlib';

import { FsStore, StoreError } from '../src/fs-store.js';
import { Outbox } from '../src/outbox.js';
import { lockPath } from '../src/flock.js';
import * as frame from '../src/frame.js';

const b = (s) => Buffer.from(s);
const strings = (records) => records.map((r) => Buffer.from(r).toString());

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-store-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function rejects(f, tag) {
  assert.throws(f, (e) => e instanceof StoreError && e.tag === tag && e.payload.tag === tag);
}

/** What another process gets when it tries `flock(path, how | LOCK_NB)`:
 * "got" or "busy". */
function tryLockFromPython(file, how) {
  const script = [
    'import fcntl, sys',
    'f = open(sys.argv[1], "rb")',
    'try:',
    `    fcntl.flock(f, fcntl.${how} | fcntl.LOCK_NB)`,
    '    print("got")',
    'except BlockingIOError:',
    '    print("busy")',
  ].join('\n');
  const run = spawnSync('python3', ['-c', script, file], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  return run.stdout.trim();
}

test('an append names its position: a taken or skipped one is a conflict', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a')], b('s0'));
  rejects(() => s.append('c', 'k', 0, [b('x')], b('s')), 'conflict');
  rejects(() => s.append('c', 'k', 2, [b('x')], b('s')), 'conflict');
  // A key that does not exist is only created at position 0.
  rejects(() => s.append('c', 'other', 1, [b('x')], b('s')), 'conflict');
  s.append('c', 'k', 1, [b('b'), b('c')], b('s2'));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a', 'b', 'c']);
  assert.deepEqual(strings(s.read('c', 'k', 1, 1)), ['b']);
  assert.deepEqual(s.read('c', 'k', 3, 10), []);
  // Another handle on the same root sees the same log and index.
  const again = FsStore.open(s.root);
  assert.deepEqual(strings(again.read('c', 'k', 2, 10)), ['c']);
  assert.deepEqual(
    again.scan('c', null, 10).map((e) => [e.key, Buffer.from(e.summary).toString()]),
    [['k', 's2']],
  );
  assert.deepEqual(s.keys('c', null, 10), ['k']);
  rejects(() => s.remove('c', 'k', 2), 'conflict');
  s.remove('c', 'k', 3);
  assert.deepEqual(s.read('c', 'k', 0, 10), []);
  assert.deepEqual(again.scan('c', null, 10), []);
  assert.deepEqual(fs.readdirSync(path.join(s.root, 'c')), [], 'no trash left behind');
});

test('names that are not [A-Za-z0-9_-]{1,64} are refused before any path is formed', (t) => {
  const s = FsStore.open(tempRoot(t));
  for (const bad of ['', '..', 'a/b', 'x'.repeat(65), 'é']) {
    rejects(() => s.append('c', bad, 0, [b('a')], b('')), 'invalid-key');
    rejects(() => s.get(bad, 'k'), 'invalid-key');
  }
});

test('the log is framed as the Rust store frames it', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('one'), b('two!')], b(''));
  const log = fs.readFileSync(path.join(s.root, 'c/k/events.log'));
  // len | seq | header crc | payload crc | payload; the first frame of a
  // two-record append carries the "more follows" bit.
  assert.equal(log.readUInt32LE(0), 0x8000_0003);
  assert.equal(log.readBigUInt64LE(4), 0n);
  assert.equal(log.readUInt32LE(12), crc32(log.subarray(0, 12)));
  assert.equal(log.readUInt32LE(16), crc32(b('one')));
  assert.equal(log.subarray(20, 23).toString(), 'one');
  assert.equal(log.readUInt32LE(23), 4);
  assert.equal(log.readBigUInt64LE(27), 1n);
  const idx = fs.readFileSync(path.join(s.root, 'c/k/events.idx'));
  assert.deepEqual([idx.readBigUInt64LE(0), idx.readBigUInt64LE(8)], [0n, 23n]);
  assert.equal(fs.readFileSync(path.join(s.root, 'FORMAT'), 'utf8'), 'agent-session-fs 2\n');
});

test('a torn append is skipped by readers and cut by the next append', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a')], b(''));
  const log = path.join(s.root, 'c/k/events.log');
  const good = fs.statSync(log).size;
  // A crash in the middle of a two-record append.
  const torn = frame.encodeBatch(1, [b('b'), b('c')]);
  fs.appendFileSync(log, torn.subarray(0, torn.length - 1));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a'], 'readers skip it');
  s.append('c', 'k', 1, [b('d')], b(''));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a', 'd']);
  assert.equal(fs.statSync(log).size, good + frame.HEADER + 1, 'the torn bytes are gone');
  // Zeros after the end (size grown, data lost) are a tear too.
  fs.appendFileSync(log, Buffer.alloc(64));
  s.append('c', 'k', 2, [b('e')], b(''));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a', 'd', 'e']);
});

test('a lost or stale offsets file is rebuilt from the log', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a'), b('b')], b(''));
  const idx = path.join(s.root, 'c/k/events.idx');
  fs.truncateSync(idx, 0);
  assert.deepEqual(strings(s.read('c', 'k', 1, 10)), ['b']);
  s.append('c', 'k', 2, [b('c')], b(''));
  assert.equal(fs.statSync(idx).size, 3 * 8);
  fs.writeFileSync(idx, Buffer.alloc(24, 0xff));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a', 'b', 'c']);
  rejects(() => s.append('c', 'k', 2, [b('x')], b('')), 'conflict');
});

test('damage before the end of a log is an error naming the file', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'bad', 0, [b('first'), b('second')], b(''));
  s.append('c', 'good', 0, [b('fine')], b(''));
  const log = path.join(s.root, 'c/bad/events.log');
  const bytes = fs.readFileSync(log);
  bytes[frame.HEADER] ^= 1; // the first record's payload
  fs.writeFileSync(log, bytes);
  assert.throws(
    () => s.read('c', 'bad', 0, 10),
    (e) => e instanceof StoreError && e.tag === 'io' && e.message.includes('c/bad/events.log is damaged'),
  );
  assert.deepEqual(strings(s.read('c', 'good', 0, 10)), ['fine']);
});

test('out of space or quota is `full`, other system errors `io`; nothing is appended', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a')], b(''));
  const log = path.join(s.root, 'c/k/events.log');
  const size = fs.statSync(log).size;
  const write = fs.writeSync;
  t.after(() => (fs.writeSync = write));
  for (const [code, tag] of [['ENOSPC', 'full'], ['EDQUOT', 'full'], ['EIO', 'io']]) {
    fs.writeSync = () => {
      throw Object.assign(new Error(`${code}: failed, write`), { code });
    };
    assert.throws(
      () => s.append('c', 'k', 1, [b('b')], b('')),
      (e) => e instanceof StoreError && e.tag === tag && e.message.startsWith(`appending to c/k: ${code}`),
    );
    fs.writeSync = write;
    assert.equal(fs.statSync(log).size, size);
  }
  s.append('c', 'k', 1, [b('b')], b(''));
});

test('documents are versioned: a stale version is a conflict', (t) => {
  const s = FsStore.open(tempRoot(t));
  assert.equal(s.get('cfg', 'doc'), null);
  // A non-durable put never creates a key (a late snapshot of a removed one).
  rejects(() => s.put('cfg', 'doc', b('late'), 0, false), 'conflict');
  assert.equal(s.put('cfg', 'doc', b('v1'), 0, true), 1);
  rejects(() => s.put('cfg', 'doc', b('again'), 0, true), 'conflict');
  assert.equal(s.put('cfg', 'doc', b('v2'), 1, false), 2);
  rejects(() => s.put('cfg', 'doc', b('stale'), 1, true), 'conflict');
  const doc = s.get('cfg', 'doc');
  assert.equal(doc.version, 2);
  assert.equal(Buffer.from(doc.data).toString(), 'v2');
  // ASD1 | version u64 | length u32 | crc32(version, data) | data
  const raw = fs.readFileSync(path.join(s.root, 'cfg/doc/doc'));
  assert.equal(raw.subarray(0, 4).toString(), 'ASD1');
  assert.equal(raw.readBigUInt64LE(4), 2n);
  assert.equal(raw.readUInt32LE(12), 2);
  assert.equal(raw.readUInt32LE(16), crc32(b('v2'), crc32(raw.subarray(4, 12))));
  raw[raw.length - 1] ^= 1;
  fs.writeFileSync(path.join(s.root, 'cfg/doc/doc'), raw);
  rejects(() => s.get('cfg', 'doc'), 'io');
});

test('a key lock held by Node excludes another process, and is gone on close', (t) => {
  const root = tempRoot(t);
  const file = path.join(root, 'lock');
  const fd = lockPath(file, true);
  assert.equal(tryLockFromPython(file, 'LOCK_EX'), 'busy');
  assert.equal(tryLockFromPython(file, 'LOCK_SH'), 'busy');
  fs.closeSync(fd);
  assert.equal(tryLockFromPython(file, 'LOCK_EX'), 'got');
  const shared = lockPath(file, false);
  assert.equal(tryLockFromPython(file, 'LOCK_SH'), 'got');
  assert.equal(tryLockFromPython(file, 'LOCK_EX'), 'busy');
  fs.closeSync(shared);
});

test('an append waits while another process holds the key lock', async (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a')], b(''));
  const lock = path.join(s.root, 'c/k/lock');
  const released = path.join(s.root, 'released');
  // Another writer (as the Rust store would) holds the lock for a while,
  // and leaves a mark just before it lets go.
  const script = [
    'import fcntl, sys, time',
    'f = open(sys.argv[1], "rb")',
    'fcntl.flock(f, fcntl.LOCK_EX)',
    'print("held", flush=True)',
    'time.sleep(0.3)',
    'open(sys.argv[2], "w").close()',
  ].join('\n');
  const holder = spawn('python3', ['-c', script, lock, released], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise((resolve) => holder.stdout.once('data', resolve));
  s.append('c', 'k', 1, [b('b')], b(''));
  assert.ok(fs.existsSync(released), 'the append waited for the lock');
  await new Promise((resolve) => holder.once('exit', resolve));
  assert.deepEqual(strings(s.read('c', 'k', 0, 10)), ['a', 'b']);
});

test('a writer never appends to a key removed under it', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('c', 'k', 0, [b('a')], b(''));
  // A remover renamed the key away (and crashed before deleting it).
  fs.renameSync(path.join(s.root, 'c/k'), path.join(s.root, 'c/.trash-k-1-1'));
  rejects(() => s.append('c', 'k', 1, [b('b')], b('')), 'conflict');
  assert.deepEqual(s.keys('c', null, 10), []);
});

test('the summary index: last frame wins, torn frames are skipped', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.reindex('c', 'a', b('1'));
  s.reindex('c', 'b', b('2'));
  const file = path.join(s.root, 'index/c.log');
  // A frame torn by a killed writer, then frames of another writer.
  fs.appendFileSync(file, Buffer.from('ASIX\x09\x00\x00\x00garbage'));
  s.reindex('c', 'a', b('3'));
  s.reindex('c', 'c', b('4'));
  s.reindex('c', 'b', b(''));
  const fresh = FsStore.open(s.root);
  const all = fresh.scan('c', null, 10).map((e) => [e.key, Buffer.from(e.summary).toString()]);
  assert.deepEqual(all, [['c', '4'], ['a', '3']]);
  assert.deepEqual(fresh.scan('c', 'c', 10).map((e) => e.key), ['a']);
  assert.deepEqual(fresh.scan('c', null, 1).map((e) => e.key), ['c']);
  // Compaction keeps the live entries only, and other handles reload.
  const { before, after } = fresh.index.compact('c');
  assert.ok(after < before);
  assert.deepEqual(s.scan('c', null, 10).map((e) => e.key), ['c', 'a']);
});

test('a root of the first format is refused with what to do', (t) => {
  const root = tempRoot(t);
  fs.writeFileSync(path.join(root, 'FORMAT'), 'agent-session-fs 1\n');
  assert.throws(() => FsStore.open(root), /format 1.*Rust CLI/s);
});

test('a lost index file asks for a rebuild', (t) => {
  const s = FsStore.open(tempRoot(t));
  s.append('sessions', 'k', 0, [b('a')], b('s'));
  assert.equal(s.needsReindex(), false);
  fs.rmSync(path.join(s.root, 'index/sessions.log'));
  const reopened = FsStore.open(s.root);
  assert.equal(reopened.needsReindex(), true);
  reopened.clearIndex('sessions');
  reopened.reindexed();
  assert.equal(FsStore.open(s.root).needsReindex(), false);
});

/** The notifications in a segment file (marked frames `ASNQ`). */
function segmentBodies(file) {
  const bytes = fs.readFileSync(file);
  const out = [];
  for (let at = 0; at < bytes.length; ) {
    assert.equal(bytes.subarray(at, at + 4).toString(), 'ASNQ');
    const len = bytes.readUInt32LE(at + 4);
    const body = bytes.subarray(at + 12, at + 12 + len);
    assert.equal(bytes.readUInt32LE(at + 8), crc32(body));
    out.push(JSON.parse(body.toString()));
    at += 12 + len;
  }
  return out;
}

const notification = (i) => ({
  id: `msg_0192-${i}`,
  sessionId: '0192f3a0-0000-7000-8000-000000000001',
  seq: BigInt(i),
  url: 'https://hooks.example.com/x',
  secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
  kind: 'session.started',
  timestamp: 1795853197633n,
  body: '{"type":"session.started","data":{"x":"\\"quoted\\"\\n"}}',
});

test('notifications go to a locked segment of this process, as the Rust outbox reads them', (t) => {
  const root = tempRoot(t);
  const outbox = Outbox.open(root);
  t.after(() => outbox.close());
  outbox.enqueue(notification(0));
  outbox.enqueue(notification(1));
  const intake = path.join(root, 'outbox/intake');
  const names = fs.readdirSync(intake);
  assert.equal(names.length, 1, `one segment, no leftovers: ${names}`);
  assert.match(names[0], new RegExp(`^${process.pid}-[0-9a-f]{16}\\.log$`));
  assert.ok(fs.existsSync(path.join(root, 'outbox/done')));
  const file = path.join(intake, names[0]);
  assert.deepEqual(segmentBodies(file), [0, 1].map((i) => ({
    id: `msg_0192-${i}`,
    session_id: '0192f3a0-0000-7000-8000-000000000001',
    seq: i,
    url: 'https://hooks.example.com/x',
    secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw',
    kind: 'session.started',
    timestamp: 1795853197633,
    body: '{"type":"session.started","data":{"x":"\\"quoted\\"\\n"}}',
  })));
  // Held (shared) while this process may still write: a sender sees it live.
  assert.equal(tryLockFromPython(file, 'LOCK_EX'), 'busy');
  assert.equal(tryLockFromPython(file, 'LOCK_SH'), 'got');
  outbox.close();
  assert.equal(tryLockFromPython(file, 'LOCK_EX'), 'got');
});

test('a notification id that is not a safe file name is refused', (t) => {
  const outbox = Outbox.open(tempRoot(t));
  t.after(() => outbox.close());
  for (const id of ['', '../x', 'a b', 'é']) {
    assert.throws(() => outbox.enqueue({ ...notification(0), id }), /not a safe file name/);
  }
});
