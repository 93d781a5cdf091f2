// The types the package ships (index.d.ts, seed.d.ts, langgraph.d.ts,
// openai-agents.d.ts) as a TypeScript user meets them: test/types/program.ts,
// which uses both APIs, and test/types/adapters.ts, which uses the
// framework adapters with the frameworks' own types, must type-check under
// `--strict` (through the compiler's API, as tsc would run it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { typeCheck } from './support/typecheck.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));

test('a strict TypeScript program using both APIs type-checks (tsc --strict --noEmit)', () => {
  const { diagnostics, files } = typeCheck(path.join(HERE, 'types/program.ts'));
  assert.deepEqual(diagnostics, []);
  // The check did look at the package's own declarations.
  const names = files.map((f) => path.basename(f));
  assert.ok(names.includes('index.d.ts') && names.includes('seed.d.ts'), names.join(' '));
});

test('a strict TypeScript program using the framework adapters type-checks with the frameworks\' types', () => {
  // The frameworks' declarations (and so ours, .d.ts files too) are read,
  // not checked themselves (skipLibCheck): the program's use of them is
  // what is checked, e.g. that an AgentSession is the SDK's `Session` and
  // an AgentSessionSaver LangGraph's `BaseCheckpointSaver`.
  const { diagnostics, files } = typeCheck(path.join(HERE, 'types/adapters.ts'), { libraries: true });
  assert.deepEqual(diagnostics, []);
  const names = files.map((f) => path.basename(f));
  assert.ok(names.includes('langgraph.d.ts') && names.includes('openai-agents.d.ts'), names.join(' '));
  // The frameworks' own declarations were read, not taken as any.
  assert.ok(files.some((f) => f.includes('@langchain/langgraph-checkpoint/')), 'LangGraph types checked');
  assert.ok(files.some((f) => f.includes('@openai/agents-core/')), 'OpenAI Agents types checked');
});
