// The types the package ships (index.d.ts, seed.d.ts) as a TypeScript user
// meets them: test/types/program.ts, which uses both APIs, must type-check
// under `--strict` (through the compiler's API, as tsc would run it).

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
