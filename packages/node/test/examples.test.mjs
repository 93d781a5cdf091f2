// The README's framework snippets, examples/langgraph-saver.mjs and
// examples/openai-agents-session.mjs, run as a user runs them: twice each,
// in two processes, on one directory; the second run continues the first.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const EXAMPLES = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../examples');

function tempRoot(t) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-examples-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Run an example (bounded, without network credentials); its output. */
function example(name, args) {
  const env = { ...process.env };
  delete env.OPENAI_API_KEY;
  const r = spawnSync(process.execPath, [path.join(EXAMPLES, name), ...args], { encoding: 'utf8', timeout: 60_000, env });
  assert.equal(r.error, undefined, r.error?.message);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout;
}

test('the LangGraph example stops for the review in one process and finishes in the next', (t) => {
  const dir = tempRoot(t);
  assert.equal(example('langgraph-saver.mjs', [dir]), 'waiting for review (ship it?): plan\n');
  assert.equal(example('langgraph-saver.mjs', [dir]), 'finished: plan -> review: yes -> ship\n');
});

test('the OpenAI Agents example continues its conversation in the next process', (t) => {
  const dir = tempRoot(t);
  assert.equal(
    example('openai-agents-session.mjs', [dir, 'hello']),
    'I was given 1 item(s) of this conversation.\n2 items in the conversation\n',
  );
  assert.equal(
    example('openai-agents-session.mjs', [dir, 'again']),
    'I was given 3 item(s) of this conversation.\n4 items in the conversation\n',
  );
});
