// Type-check a TypeScript file as `tsc --strict --noEmit` would, through
// the compiler's API: the diagnostics (file:line message) and the
// declaration files the check read.

import path from 'node:path';
import ts from 'typescript';

/**
 * @param {string} file
 * @param {{ libraries?: boolean }} [options] `libraries`: the file uses
 *   libraries whose own declarations need the DOM's (fetch, URL, as
 *   @types/node would give them) and are not what is under test: they are
 *   read, not checked (`skipLibCheck`, as most projects set it).
 */
export function typeCheck(file, { libraries = false } = {}) {
  const program = ts.createProgram([file], {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: libraries ? ['lib.es2022.d.ts', 'lib.dom.d.ts'] : ['lib.es2022.d.ts'],
    types: [],
    skipLibCheck: libraries,
  });
  const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file
      ? `${path.basename(d.file.fileName)}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}`
      : '';
    return `${where} ${ts.flattenDiagnosticMessageText(d.messageText, '\n')}`;
  });
  return { diagnostics, files: program.getSourceFiles().map((f) => f.fileName) };
}
