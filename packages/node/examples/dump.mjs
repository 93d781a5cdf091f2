#!/usr/bin/env node
// Print what this host reads in a directory, in a form every host's
// dump prints alike (the cross-host format test compares them): the
// listing, every history, the stats.
//
//   node examples/dump.mjs <dir>

import { BUILT_IN_KINDS, openSessionsSync, SessionError } from '../src/index.js';

// The API gives the engine's own event fields in camelCase; every host's
// dump prints them as stored.
const snake = (k) => k.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
const stored = (e) =>
  BUILT_IN_KINDS.has(e.kind) && e.data && typeof e.data === 'object' && !Array.isArray(e.data)
    ? Object.fromEntries(Object.entries(e.data).map(([k, v]) => [snake(k), v]))
    : e.data;

const [dir] = process.argv.slice(2);
if (!dir) {
  console.error('usage: dump.mjs <dir>');
  process.exit(2);
}

try {
  const sessions = await openSessionsSync({ dir });
  const page = sessions.list({}, null, 1000);
  const events = {};
  for (const s of page.sessions) {
    events[s.id] = sessions.events(s.id, 0, 1000).events.map((e) => [e.seq, e.kind, stored(e)]);
  }
  const st = sessions.stats();
  console.log(
    JSON.stringify({
      sessions: page.sessions.map((s) => [s.id, s.status, s.iteration, s.eventCount, s.version, s.task]),
      unreadable: page.unreadable,
      events,
      stats: {
        total: st.total,
        by_status: st.byStatus,
        by_mode: st.byMode,
        average_iterations: st.averageIterations,
        success_rate: st.successRate,
      },
    }),
  );
  sessions.close();
} catch (e) {
  console.error(e instanceof SessionError ? `${e.code}: ${e.message}` : e);
  process.exit(1);
}
