// The Node package's webhook sender (`webhooks: { deliver: true }`), with a
// real receiver on 127.0.0.1. The same scenarios against every host's sender
// process are tests/it/senders.rs; these cover the in-process API.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { openSessions, openSessionsSync } from '../src/index.js';

const SECRET = 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw';

/** A receiver answering with `reply(n)` (a status, or [status, ms delay]). */
async function receiver(reply = () => 200) {
  const got = [];
  let connections = 0;
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const n = got.length;
      got.push({ headers: req.headers, body });
      const r = reply(n);
      const [status, delay] = Array.isArray(r) ? r : [r, 0];
      setTimeout(() => {
        res.writeHead(status);
        res.end();
      }, delay);
    });
  });
  server.on('connection', () => connections++);
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    got,
    port,
    connections: () => connections,
    url: (host = '127.0.0.1') => `http://${host}:${port}/hooks`,
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

/** Wait (at most 10 s) until `ready()`. */
async function until(ready, what) {
  const deadline = Date.now() + 10_000;
  while (!(await ready())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Verify a Standard Webhooks signature. */
function verify({ headers, body }) {
  const key = Buffer.from(SECRET.slice('whsec_'.length), 'base64');
  const signed = `${headers['webhook-id']}.${headers['webhook-timestamp']}.${body}`;
  const expected = crypto.createHmac('sha256', key).update(signed).digest('base64');
  assert.equal(headers['webhook-signature'], `v1,${expected}`);
}

const tempDir = () => fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-deliver-'));

test('a Node-only process delivers every lifecycle event, signed, in order', async () => {
  const rx = await receiver();
  const dir = tempDir();
  const s = await openSessions({ dir, webhookAllow: ['127.0.0.1'], webhooks: { deliver: true } });
  try {
    await s.setWebhook({ url: rx.url(), secret: SECRET });
    const a = await s.start({ task: 'notified' });
    await s.pause(a.id, 'lunch');
    await s.resume(a.id);
    await s.complete(a.id, { ok: true });
    await until(() => rx.got.length >= 4, 'four notifications');
    const kinds = rx.got.map((r) => JSON.parse(r.body).type);
    assert.deepEqual(kinds, ['session.started', 'session.paused', 'session.resumed', 'session.completed']);
    rx.got.forEach(verify);
    await until(async () => (await s.deliveries()).every((d) => d.state === 'delivered'), 'the records');
    const ds = await s.deliveries();
    assert.equal(ds.length, 4);
    assert.equal(ds[3].attempts[0].status, 200);
    assert.equal(JSON.stringify(ds).includes(SECRET.slice(6)), false, 'no secret is shown');
  } finally {
    await s.close();
    await rx.close();
  }
  assert.equal(rx.got.length, 4, 'nothing arrives twice');
});

test('retries follow the schedule; close waits for the attempt in flight', async () => {
  const rx = await receiver((n) => (n === 0 ? 500 : [200, 300]));
  const dir = tempDir();
  const s = await openSessionsSync({
    dir,
    webhookAllow: ['127.0.0.1'],
    webhooks: { deliver: true, retryScheduleMs: [20], pollMs: 50 },
  });
  s.setWebhook({ url: rx.url(), secret: SECRET, eventKinds: ['session.started'] });
  s.start({ task: 'flaky receiver' });
  // The second attempt is in flight (the receiver takes 300 ms).
  await until(() => rx.got.length >= 2, 'the retry');
  await s.stopDelivering();
  s.close();
  await rx.close();
  const again = await openSessionsSync({ dir });
  const [d] = again.deliveries();
  again.close();
  assert.equal(d.state, 'delivered', 'recorded before the sender stopped');
  assert.deepEqual(d.attempts.map((a) => a.status), [500, 200]);
  assert.equal(rx.got[0].headers['webhook-id'], rx.got[1].headers['webhook-id']);
});

test('a name that resolves to loopback is refused without a connection, and waits for an allowed sender', async () => {
  const rx = await receiver();
  const dir = tempDir();
  const strict = await openSessions({
    dir,
    webhookAllow: ['localhost'],
    webhooks: { deliver: true, allow: [], retryScheduleMs: [3_600_000] },
  });
  await strict.setWebhook({ url: rx.url('localhost'), secret: SECRET });
  await strict.start({ task: 'refused' });
  await until(async () => (await strict.deliveries())[0]?.attempts.length === 1, 'the refusal');
  const [d] = await strict.deliveries();
  await strict.close();
  assert.equal(d.state, 'pending');
  assert.equal(d.attempts[0].refused, true);
  assert.match(d.attempts[0].error, /loopback/);
  assert.equal(rx.connections(), 0);

  // Due in an hour for that sender; at once for one allowed to dial it.
  const allowed = await openSessions({ dir, webhooks: { deliver: true, allow: ['localhost'] } });
  await until(() => rx.got.length === 1, 'the delivery');
  await until(async () => (await allowed.deliveries())[0].state === 'delivered', 'the record');
  await allowed.close();
  await rx.close();
});

test('what Node reads as a loopback literal is never dialled', async () => {
  const rx = await receiver();
  const dir = tempDir();
  const s = await openSessionsSync({ dir, webhookAllow: ['127.0.0.1'], webhooks: { deliver: true, allow: [] } });
  // Forms a WHATWG parser decodes to 127.0.0.1: refused when set...
  for (const host of ['%31%32%37.0.0.1', '127.0.0.1%2e', '\uff11\uff12\uff17.\uff10.\uff10.\uff11', '127\u30020\u30020\u30021']) {
    assert.throws(() => s.setWebhook({ url: `http://${host}:${rx.port}/x`, secret: SECRET }), /webhook url/, host);
  }
  // ...and a backslash ends the host, as Node reads it: a loopback literal.
  s.setWebhook({ url: `http://127.0.0.1:${rx.port}\\hook`, secret: SECRET });
  s.start({ task: 'disguised' });
  await until(() => s.deliveries()[0]?.attempts.length === 1, 'the refusal');
  assert.equal(s.deliveries()[0].attempts[0].refused, true);
  assert.equal(rx.connections(), 0);
  const stopping = s.stopDelivering();
  s.close();
  await stopping; // a second stop (close's) does not hang the first
  await rx.close();
});

test('one sender per directory: the second waits its turn', async () => {
  const rx = await receiver();
  const dir = tempDir();
  const opts = { dir, webhookAllow: ['127.0.0.1'], webhooks: { deliver: true, pollMs: 50 } };
  const first = await openSessions(opts);
  const second = await openSessions(opts);
  await first.setWebhook({ url: rx.url(), secret: SECRET });
  await second.start({ task: 'from the second' });
  await until(() => rx.got.length === 1, 'the first delivery');
  await first.close();
  // The second becomes the sender and delivers what it queues.
  await second.start({ task: 'after the first closed' });
  await until(() => rx.got.length === 2, 'the second delivery');
  await second.close();
  await rx.close();
  const ids = new Set(rx.got.map((r) => r.headers['webhook-id']));
  assert.equal(ids.size, 2);
});

test('bad sender options are refused where they are given', async () => {
  const dir = tempDir();
  await assert.rejects(openSessionsSync({ dir, webhooks: { deliver: true, timeoutMs: -1 } }), /timeoutMs/);
  await assert.rejects(openSessionsSync({ dir, webhooks: 'yes' }), /webhooks/);
  await assert.rejects(openSessions({ dir, webhooks: { deliver: true, allow: ['not a rule/99'] } }), /allow rule/);
  await assert.rejects(openSessionsSync({ dir, webhooks: { deliver: true, concurrency: 0 } }), /concurrency/);
  await assert.rejects(openSessionsSync({ dir, webhooks: { deliver: true, pollMs: 2 ** 31 } }), /pollMs/);
  // Longer than 30 days between two retries: the component refuses it.
  await assert.rejects(openSessionsSync({ dir, webhooks: { deliver: true, retryScheduleMs: [31 * 86_400_000] } }), /30 days/);
  const s = await openSessionsSync({ dir, webhooks: { deliver: false } });
  assert.deepEqual(s.deliveries(), []);
  s.close();
});
