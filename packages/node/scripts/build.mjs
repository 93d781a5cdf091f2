// Transpile the session-on-root component (the session component with the
// directory store linked in, host/build.rs) to JavaScript with jco (into
// gen/); its path comes from AGENT_SESSION_COMPONENT, or the cargo build's
// output in the workspace. Also copies the repository's LICENSE beside
// package.json. `npm pack` runs this first (prepack), so a tarball always
// carries the component it was built from.
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { transpileTo } from '../src/component.js';

const pkg = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const wasm = resolve(
  pkg,
  process.env.AGENT_SESSION_COMPONENT ??
    '../../target/wasm-guest/wasm32-wasip2/release/agent_session_on_root.wasm',
);

if (!existsSync(wasm)) {
  console.error(
    `agent-session: no component at ${wasm}; build it with cargo build --release -p agent-session-host ` +
      '(or point AGENT_SESSION_COMPONENT at the .wasm)',
  );
  process.exit(1);
}

// gen/ is made again only when the component changed (tests running at
// the same time load it; `npm pack` runs this too), and swapped in whole:
// a fresh directory, since the loader takes every core module beside the
// JS module.
const gen = resolve(pkg, 'gen');
const stamp = resolve(gen, 'component.sha256');
const digest = createHash('sha256').update(readFileSync(wasm)).digest('hex');
const current = existsSync(stamp) ? readFileSync(stamp, 'utf8').trim() : null;
if (current !== digest) {
  const fresh = resolve(pkg, `gen.${process.pid}.tmp`);
  const old = resolve(pkg, `gen.${process.pid}.old`);
  rmSync(fresh, { recursive: true, force: true });
  await transpileTo(wasm, fresh);
  writeFileSync(resolve(fresh, 'component.sha256'), `${digest}\n`);
  if (existsSync(gen)) renameSync(gen, old);
  renameSync(fresh, gen);
  rmSync(old, { recursive: true, force: true });
}
copyFileSync(resolve(pkg, '../../LICENSE'), resolve(pkg, 'LICENSE'));
