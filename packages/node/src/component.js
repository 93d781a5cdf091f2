// Loading the session component as jco transpiled it (`npm run build`
// writes gen/), and making instances of it.
//
// The module is transpiled with `--instantiation async`, but instances are
// made synchronously: the core modules are compiled once, up front, and
// then `instantiate` never meets a promise (jco's generated code returns
// the exports at once in that case). So a trapped instance can be replaced
// inside a synchronous call.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { WASIShim } from '@bytecodealliance/preview2-shim/instantiation';

const GEN = fileURLToPath(new URL('../gen/', import.meta.url));
const DEFAULT_MODULE = path.join(GEN, 'agent_session_on_root.js');

/**
 * A loaded component: `instantiate(imports)` makes a fresh instance and
 * returns its `sessions`, `conversations`, `checkpoints` and `delivery`
 * exports.
 * @typedef {{ instantiate: (imports: { root: object }) => Record<string, Function> }} Component
 */

/**
 * Load the component.
 * @param {string} [component] the module jco generated (its `.js` file or
 *   its directory), or a component `.wasm` to transpile now (with jco, a
 *   development dependency); default: the package's gen/ module.
 * @returns {Promise<Component>}
 */
export async function loadComponent(component) {
  const { modulePath, temporary } = await resolveModule(component);
  const dir = path.dirname(modulePath);
  const stem = path.basename(modulePath, '.js');
  let instantiate;
  // The core modules jco split the component into: `<stem>.core*.wasm`.
  const cores = new Map();
  try {
    ({ instantiate } = await import(pathToFileURL(modulePath).href));
    for (const name of fs.readdirSync(dir)) {
      if (name.startsWith(`${stem}.core`) && name.endsWith('.wasm')) {
        cores.set(name, await WebAssembly.compile(fs.readFileSync(path.join(dir, name))));
      }
    }
  } finally {
    // Everything is in memory now.
    if (temporary) fs.rmSync(dir, { recursive: true, force: true });
  }
  const getCoreModule = (name) => {
    const module = cores.get(name);
    if (!module) throw new Error(`the component module ${modulePath} asks for ${name}, which is not beside it`);
    return module;
  };
  const instantiateCore = (module, imports) => new WebAssembly.Instance(module, imports);
  // Clocks and randomness are what the component uses; nothing else is
  // granted (no preopened directory, no environment, no network).
  const wasi = new WASIShim({
    sandbox: { preopens: {}, env: {}, args: ['agent-session'], enableNetwork: false },
  }).getImportObject();
  return {
    instantiate({ root }) {
      const instance = instantiate(getCoreModule, { ...wasi, 'agent:session/root': root }, instantiateCore);
      if (typeof instance?.then === 'function') {
        throw new Error(`${modulePath} did not instantiate synchronously; transpile it with --instantiation async`);
      }
      // One namespace: the interfaces share no function name.
      return { ...instance.sessions, ...instance.conversations, ...instance.checkpoints, ...instance.delivery };
    },
  };
}

/** The module to load, and whether it was made for this load only. */
async function resolveModule(component) {
  if (component === undefined) {
    if (!fs.existsSync(DEFAULT_MODULE)) {
      throw new Error(
        `the transpiled component is missing (${DEFAULT_MODULE}): run \`npm run build\` in ${path.dirname(GEN)}`,
      );
    }
    return { modulePath: DEFAULT_MODULE, temporary: false };
  }
  const target = path.resolve(component);
  if (target.endsWith('.wasm')) return { modulePath: await transpile(target), temporary: true };
  if (fs.statSync(target).isDirectory()) {
    const js = fs.readdirSync(target).filter((f) => f.endsWith('.js'));
    if (js.length !== 1) {
      throw new Error(`${target} should hold one module transpiled by jco, found ${js.length} .js files`);
    }
    return { modulePath: path.join(target, js[0]), temporary: false };
  }
  return { modulePath: target, temporary: false };
}

/** Transpile a component `.wasm` into a new temporary directory. */
async function transpile(wasm) {
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-session-jco-'));
  return transpileTo(wasm, out);
}

/**
 * Transpile the component `.wasm` into the directory `out` (made if
 * missing), as this module loads it (`--instantiation async`); returns the
 * path of the JavaScript module. Needs @bytecodealliance/jco, a development
 * dependency (`npm run build` uses this too).
 * @param {string} wasm
 * @param {string} out
 */
export async function transpileTo(wasm, out) {
  let jco;
  try {
    jco = await import('@bytecodealliance/jco');
  } catch (e) {
    throw new Error(`transpiling ${wasm} needs @bytecodealliance/jco (a development dependency): ${e.message}`);
  }
  const name = path.basename(wasm, '.wasm');
  const { files } = await jco.transpile(fs.readFileSync(wasm), { name, instantiation: 'async', quiet: true });
  for (const [file, bytes] of Object.entries(files)) {
    fs.mkdirSync(path.dirname(path.join(out, file)), { recursive: true });
    fs.writeFileSync(path.join(out, file), bytes);
  }
  return path.join(out, `${name}.js`);
}
