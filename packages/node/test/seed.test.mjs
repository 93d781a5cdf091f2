// `agent-session/seed`: the original module's names and shapes. Its usage
// example runs unchanged but for the import line; the session can be
// resumed in another process; where the sessions live follows the original
// (./.agent-sessions, AGENT_SESSION_DIR, configure).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { openSessionsSync } from '../src/index.js';
import * as seed from '../src/seed.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SEED = path.join(HERE, '../src/seed.js');

function tempDir(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-seed-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Run `script` with node in `cwd`; its stdout. */
function run(script, cwd, env = {}) {
  const r = spawnSync(process.execPath, [script], {
    cwd,
    env: { ...process.env, AGENT_SESSION_DIR: '', ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.error, undefined, `${script} did not finish`);
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

async function only(dir) {
  const s = await openSessionsSync({ dir });
  try {
    const { sessions } = s.list({}, null, 10);
    assert.equal(sessions.length, 1);
    return { session: sessions[0], events: s.events(sessions[0].id).events };
  } finally {
    s.close();
  }
}

test("the original's usage example runs unchanged, in ./.agent-sessions", async (t) => {
  const cwd = tempDir(t);
  const out = run(path.join(HERE, 'fixtures/seed-usage.mjs'), cwd);
  assert.equal(out, 'Resuming from iteration 2\n');
  const { session, events } = await only(path.join(cwd, '.agent-sessions'));
  assert.equal(session.status, 'completed');
  assert.equal(session.userId, 'user123');
  assert.equal(session.maxIterations, 50);
  assert.equal(session.result, 'Feature implemented successfully');
  assert.deepEqual(
    events.map((e) => e.kind),
    ['start', 'iteration', 'iteration', 'pause', 'resume', 'complete'],
  );
});

test('paused in one process, resumed in another; AGENT_SESSION_DIR chooses the directory', async (t) => {
  const cwd = tempDir(t);
  const dir = path.join(cwd, 'elsewhere');
  const first = path.join(cwd, 'first.mjs');
  fs.writeFileSync(
    first,
    `import { startSession, incrementIteration, pauseSession } from ${JSON.stringify(SEED)};
     const s = await startSession('Implement feature X', 'developer', { userId: 'u', maxIterations: 4 });
     await incrementIteration(s.id, { phase: 'analysis' });
     await incrementIteration(s.id, { phase: 'implementation' });
     await pauseSession(s.id, 'Waiting for user approval');
     console.log(s.id);`,
  );
  const second = path.join(cwd, 'second.mjs');
  fs.writeFileSync(
    second,
    `import { resumeSession, getSessionContext, isSessionResumable, getSessionProgress, completeSession } from ${JSON.stringify(SEED)};
     const id = process.argv[2] ?? process.env.SESSION_ID;
     await resumeSession(id);
     const context = getSessionContext(id);
     console.log(JSON.stringify({ iterations: context.iterations, status: context.status,
       recent: context.recentHistory.map((e) => e.kind), resumable: isSessionResumable(id),
       progress: getSessionProgress(context.session) }));
     await completeSession(id, { merged: true });
     console.log(isSessionResumable(id));`,
  );
  const id = run(first, cwd, { AGENT_SESSION_DIR: dir }).trim();
  const [context, resumable] = run(second, cwd, { AGENT_SESSION_DIR: dir, SESSION_ID: id }).trim().split('\n');
  assert.deepEqual(JSON.parse(context), {
    iterations: 2,
    status: 'active',
    recent: ['start', 'iteration', 'iteration', 'pause', 'resume'],
    resumable: true,
    progress: 50,
  });
  assert.equal(resumable, 'false');
  assert.equal((await only(dir)).session.status, 'completed');
  assert.ok(!fs.existsSync(path.join(cwd, '.agent-sessions')), 'the default directory was not used');
});

test('the queries, maintenance and utilities, through configure({ dir })', async (t) => {
  const dir = tempDir(t);
  seed.configure({ dir });
  t.after(() => seed.closeSessions());
  const a = await seed.startSession('a', 'review', { channelId: 'c1' });
  const b = await seed.startSession('b', 'developer', { channelId: 'c1', maxIterations: 1 });
  const c = await seed.startSession('c');
  await seed.pauseSession(a.id);
  await seed.incrementIteration(b.id); // reaches its bound: timeout
  await seed.failSession(c.id, new Error('broken'));
  await seed.recordLearning(a.id, 'insight', 'EXPERTISE.md');
  await seed.addEvent(a.id, 'note', { text: 'x' });

  assert.deepEqual((await seed.getPausedSessions()).map((s) => s.id), [a.id]);
  assert.deepEqual((await seed.getFailedSessions()).map((s) => s.id), [c.id]);
  assert.deepEqual(await seed.getActiveSessions(), []);
  assert.deepEqual(await seed.getCompletedSessions(), []);
  // Newest first; offset and limit page through.
  assert.deepEqual((await seed.listSessions({ channelId: 'c1' })).map((s) => s.id), [b.id, a.id]);
  assert.deepEqual((await seed.listSessions({ offset: 1, limit: 1 })).map((s) => s.id), [b.id]);
  assert.deepEqual((await seed.findSessions({ mode: 'review' })).map((s) => s.id), [a.id]);
  const stats = await seed.getSessionStats();
  assert.equal(stats.total, 3);
  assert.equal(stats.byStatus.timeout, 1);

  const doc = await seed.exportSession(c.id);
  await seed.deleteSession(c.id);
  assert.equal((await seed.importSession(doc)).status, 'failed');
  assert.deepEqual(await seed.cleanupOldSessions(30), []);
  assert.equal(seed.isSessionResumable(a), true);
  assert.equal(seed.getSessionProgress(b.id), 100);
  assert.equal(typeof seed.getSessionDuration(a.id), 'number');
  const context = seed.getSessionContext(a.id);
  assert.equal(context.recentHistory.at(-1).kind, 'note');
  assert.equal(context.recentHistory.at(-2).data.expertiseFile, 'EXPERTISE.md');
  assert.throws(() => seed.getSessionContext('0190-missing'), (e) => e instanceof seed.SessionError && e.code === 'not-found');
  assert.deepEqual(await seed.listSessions({ limit: 0 }), []);
  await assert.rejects(seed.resumeSession(c.id), { name: 'SessionError', code: 'invalid-transition' });
  await assert.rejects(
    seed.configureWebhook({ url: 'http://127.0.0.1:9/hook', secret: 'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw' }),
    { code: 'invalid-input' },
  );
});
