// The npm package as a user gets it: `npm pack` here, `npm install` of the
// tarball into an empty project outside the repository, and there: a full
// lifecycle across two processes through the Promise API, the original
// module's usage example through `agent-session/seed`, and a strict
// TypeScript program using both. npm itself is what is under test here (a
// user's `npm pack` and `npm install`), so it runs as a process.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { typeCheck } from './support/typecheck.mjs';

const PKG = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO = path.resolve(PKG, '../..');

function sh(cmd, args, cwd, timeout = 300_000) {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout, env: { ...process.env, AGENT_SESSION_DIR: '' } });
  assert.equal(r.error, undefined, `${cmd} ${args.join(' ')}: ${r.error?.message}`);
  assert.equal(r.status, 0, `${cmd} ${args.join(' ')} failed:\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

test('the tarball installs into an empty project and works there, with its types', async (t) => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-npm-'));
  t.after(() => fs.rmSync(work, { recursive: true, force: true }));
  assert.ok(!work.startsWith(REPO));

  // npm pack (prepack builds gen/ from the component).
  const [packed] = JSON.parse(sh('npm', ['pack', '--json', '--pack-destination', work], PKG));
  const files = packed.files.map((f) => f.path).sort();
  for (const needed of [
    'LICENSE',
    'README.md',
    'index.d.ts',
    'seed.d.ts',
    'langgraph.d.ts',
    'openai-agents.d.ts',
    'package.json',
    'src/index.js',
    'src/seed.js',
    'src/langgraph.js',
    'src/openai-agents.js',
  ]) {
    assert.ok(files.includes(needed), `${needed} in the tarball`);
  }
  assert.ok(files.some((f) => /^gen\/.*\.core\.wasm$/.test(f)), 'the component in the tarball');
  assert.deepEqual(
    files.filter((f) => /^(test|bench|examples|scripts|node_modules)\//.test(f)),
    [],
    'no tests, benches, examples or build scripts',
  );

  const project = path.join(work, 'project');
  fs.mkdirSync(project);
  fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  sh('npm', ['install', '--no-audit', '--no-fund', path.join(work, packed.filename)], project);
  const installed = path.join(project, 'node_modules/agent-session');
  const manifest = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
  assert.equal(manifest.private, undefined);
  // Nothing in the installed code points back into the repository.
  for (const f of fs.readdirSync(path.join(installed, 'src'))) {
    const text = fs.readFileSync(path.join(installed, 'src', f), 'utf8');
    assert.doesNotMatch(text, /\.\.\/\.\.\/target|\/work\//, f);
  }

  // A lifecycle across two processes, the way an app would use it.
  fs.writeFileSync(
    path.join(project, 'first.mjs'),
    `import { openSessions } from 'agent-session';
     const s = await openSessions({ dir: './data' });
     const a = await s.start({ task: 'ship', userId: 'u', maxIterations: 3 });
     await s.iterate(a.id, { step: 1 });
     await s.recordToolCall(a.id, { name: 'grep', input: { q: 'x' }, output: [], durationMs: 4 });
     await s.pause(a.id, 'lunch');
     await s.close();
     console.log(a.id);`,
  );
  fs.writeFileSync(
    path.join(project, 'second.mjs'),
    `import { openSessions } from 'agent-session';
     const s = await openSessions({ dir: './data' });
     const id = process.argv[2];
     await s.resume(id);
     const r = await s.resumptionContext(id);
     await s.iterate(id);
     const done = await s.complete(id, { ok: true });
     const stats = await s.stats();
     console.log(JSON.stringify({ iteration: r.session.iteration, last: r.recentEvents.at(-1).kind,
       tool: r.recentEvents[2].data.durationMs, status: done.status, total: stats.total }));
     await s.close();`,
  );
  const id = sh(process.execPath, ['first.mjs'], project).trim();
  assert.match(id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(JSON.parse(sh(process.execPath, ['second.mjs', id], project)), {
    iteration: 1,
    last: 'resume',
    tool: 4,
    status: 'completed',
    total: 1,
  });

  // The original module's usage example, through the seed names.
  fs.copyFileSync(path.join(PKG, 'test/fixtures/seed-usage.mjs'), path.join(project, 'seed-usage.mjs'));
  assert.equal(sh(process.execPath, ['seed-usage.mjs'], project), 'Resuming from iteration 2\n');
  assert.ok(fs.existsSync(path.join(project, '.agent-sessions/sessions')));

  // The types, as the installed package declares them.
  fs.copyFileSync(path.join(PKG, 'test/types/program.ts'), path.join(project, 'program.ts'));
  const { diagnostics, files: checked } = typeCheck(path.join(project, 'program.ts'));
  assert.deepEqual(diagnostics, []);
  assert.ok(
    checked.some((f) => f.startsWith(installed) && f.endsWith('seed.d.ts')),
    'the installed declarations were checked',
  );
});
