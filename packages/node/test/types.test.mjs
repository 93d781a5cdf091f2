// The types the package ships (index.d.ts, seed.d.ts) as a TypeScript user
// meets them: test/types/program.ts, which uses both APIs, must type-check
// under `--strict` (through the compiler's API, as tsc would run it).

import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const HERE = path.dirname(fileURLToPath(import.meta.url));

test('a strict TypeScript program using both APIs type-checks (tsc --strict --noEmit)', () => {
  const program = ts.createProgram([path.join(HERE, 'types/program.ts')], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2022.d.ts'],
    types: [],
    skipLibCheck: false,
  });
  const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file ? `${path.relative(HERE, d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}` : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
  assert.deepEqual(diagnostics, []);
  // The check did look at the package's own declarations.
  const files = program.getSourceFiles().map((f) => path.basename(f.fileName));
  assert.ok(files.includes('index.d.ts') && files.includes('seed.d.ts'), files.join(' '));
});
