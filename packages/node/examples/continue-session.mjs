#!/usr/bin/env node
// Continue a session another host (the Rust CLI, Python) started in the
// same directory: resume it if paused, count one iteration, record a
// learning, then hand it on (pause) or complete it. Prints the final
// session as JSON.
//
//   node examples/continue-session.mjs <dir> <session-id> <pause|complete>

import { openSessions, SessionError } from '../src/index.js';

const [dir, id, end] = process.argv.slice(2);
if (!dir || !id || !['pause', 'complete'].includes(end)) {
  console.error('usage: continue-session.mjs <dir> <session-id> <pause|complete>');
  process.exit(2);
}

try {
  // The component runs in a worker thread; every call returns a Promise.
  const sessions = await openSessions({ dir });
  if ((await sessions.get(id)).status === 'paused') await sessions.resume(id);
  await sessions.iterate(id, { host: 'node' });
  await sessions.recordLearning(id, { insight: 'continued from Node through jco' });
  const final =
    end === 'pause' ? await sessions.pause(id, 'handed on by node') : await sessions.complete(id, { by: 'node' });
  await sessions.close();
  console.log(JSON.stringify(final, null, 2));
} catch (e) {
  console.error(e instanceof SessionError ? `${e.code}: ${e.message}` : e);
  process.exit(1);
}
