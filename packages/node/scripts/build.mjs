// Transpile the session-on-root component (the session component with the
// directory store linked in, host/build.rs) to JavaScript with jco (into gen/); its path comes from
// AGENT_SESSION_COMPONENT, or the cargo build's output in the workspace.
import { existsSync, rmSync } from 'node:fs';
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

// A fresh gen/: the loader takes every core module beside the JS module.
const gen = resolve(pkg, 'gen');
rmSync(gen, { recursive: true, force: true });
await transpileTo(wasm, gen);
