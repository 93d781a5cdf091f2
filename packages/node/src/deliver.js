// The webhook sender of a Node process: the loop around the component's
// `delivery` interface. The component claims what is due (one sender per
// root at a time, across processes and hosts, under the root's sender
// lock), checks each notification's event, signs, and decides what every
// answer means; this file only makes the HTTP requests and reports what
// came back:
//
// - node:http / node:https, which never follow a redirect (a 3xx is the
//   receiver's answer) and use no proxy;
// - a `lookup` that resolves the endpoint's name and lets through only the
//   addresses the component's `check-address` allows, so the address
//   actually dialled is the one checked (a name resolving to loopback is
//   refused; so is one that resolves differently on a second look);
// - a timeout from the start of the request to the response head.

import dns from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';

import { SessionError } from './error.js';

/** The defaults of the Rust host's `deliver`. */
export const DEFAULT_TIMEOUT_MS = 15_000;
export const DEFAULT_CONCURRENCY = 16;
export const DEFAULT_POLL_MS = 1000;
/** Looks made to pick up what this process just queued come at most this
 * often (a look lists the outbox). */
const KICK_MS = 10;

const VERSION = '0.4.0';

/** A refusal by the address policy, told apart from other lookup errors. */
class Refused extends Error {}

/**
 * Make one request; never throws. Resolves to the answer in the WIT
 * `answer` shape, with when it started and how long it took.
 * @param {{url: string, headers: [string, string][], body: string}} request
 * @param {{timeoutMs: number, checkAddress: (host: string, address: string) => string | null}} how
 *   `checkAddress` says why an address may not be dialled, or null.
 */
export function send(request, { timeoutMs, checkAddress, agents = null }) {
  const at = Date.now();
  const started = performance.now();
  const done = (answer) => ({ at, durationMs: Math.round(performance.now() - started), answer });
  return new Promise((resolve) => {
    let url;
    try {
      url = new URL(request.url);
    } catch (e) {
      resolve(done({ tag: 'failed', val: `${request.url} is not a URL: ${e.message}` }));
      return;
    }
    const lookup = (hostname, options, callback) => {
      dns.lookup(hostname, { all: true, family: options?.family ?? 0, hints: options?.hints }, (err, found) => {
        if (err) return callback(err);
        let refused = null;
        let allowed;
        try {
          allowed = found.filter(({ address }) => {
            const why = checkAddress(hostname, address);
            if (why !== null) refused ??= why;
            return why === null;
          });
        } catch (e) {
          // Never thrown out of a DNS callback (that would end the process).
          return callback(new Refused(`the address policy could not be asked: ${e.message}`));
        }
        if (allowed.length === 0) {
          return callback(refused ? new Refused(refused) : new Error(`${hostname} resolves to no address`));
        }
        if (options?.all) callback(null, allowed);
        else callback(null, allowed[0].address, allowed[0].family);
      });
    };
    // An IP literal is dialled without a lookup: checked here. (The
    // component refused special literals before handing the request out,
    // reading the URL as its own parser does; this reads it as Node does.)
    const literal = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (net.isIP(literal)) {
      let why;
      try {
        why = checkAddress(literal, literal);
      } catch (e) {
        why = `the address policy could not be asked: ${e.message}`;
      }
      if (why !== null) {
        resolve(done({ tag: 'refused', val: why }));
        return;
      }
    }
    const headers = Object.fromEntries(request.headers);
    headers['user-agent'] = `agent-session/${VERSION}`;
    headers['content-length'] = Buffer.byteLength(request.body);
    const secure = url.protocol === 'https:';
    const client = secure ? https : http;
    // Connections are kept for the next request to the same endpoint: the
    // policy was applied when each was dialled (in `lookup`).
    const agent = agents ? agents[secure ? 'https' : 'http'](lookup) : false;
    let settled = false;
    const finish = (answer) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(done(answer));
    };
    const req = client.request(url, { method: 'POST', headers, lookup, agent }, (res) => {
      const retryAfter = res.headers['retry-after'];
      finish({ tag: 'response', val: { status: res.statusCode, retryAfter: typeof retryAfter === 'string' ? retryAfter : undefined } });
      // The body is not needed; reading it lets the socket close.
      res.resume();
      res.on('error', () => {});
    });
    const timer = setTimeout(() => {
      finish({ tag: 'failed', val: `timed out after ${timeoutMs} ms` });
      req.destroy();
    }, timeoutMs);
    // A reused connection that the endpoint closed meanwhile is an error
    // like any other (retried on the schedule).
    req.on('error', (e) => {
      if (e instanceof Refused) finish({ tag: 'refused', val: e.message });
      else finish({ tag: 'failed', val: `could not connect: ${e.message}` });
    });
    req.end(request.body);
  });
}

/** What a pass or a sender did, as the Rust host's `deliver --once` says. */
function emptyReport() {
  return { delivered: 0, failed: 0, discarded: 0, pending: 0, next_due: null };
}

function count(report, delivery) {
  if (delivery.state === 'delivered') report.delivered++;
  else if (delivery.state === 'failed') report.failed++;
  else if (delivery.state === 'discarded') report.discarded++;
}

/**
 * The sender loop over an API that answers the `delivery` functions
 * synchronously (`SyncSessions`' internal ones, on this thread).
 */
export class Deliverer {
  #api;
  #options;
  #inFlight = new Set();
  #timer = null;
  #due = 0;
  #sending = false;
  #stopped = false;
  #lastLook = 0;
  /** @type {(() => void) | null} */
  #idle = null;
  /** @type {Promise<void> | null} */
  #stopping = null;
  /** Kept-alive connections, one pool per scheme, made on first use (the
   * pool's `lookup` is the policy's, so every connection dialled is
   * checked). */
  #pools = {};
  #agents = {
    http: (lookup) => (this.#pools.http ??= new http.Agent(this.#poolOptions(lookup))),
    https: (lookup) => (this.#pools.https ??= new https.Agent(this.#poolOptions(lookup))),
  };

  #poolOptions(lookup) {
    // An idle connection is closed after 2 s, before most servers close it
    // (a request on a connection the server just closed fails).
    return { keepAlive: true, maxSockets: this.#options.concurrency, timeout: 2000, lookup };
  }

  /**
   * @param {object} api `startSending`, `claimDue`, `checkAddress`,
   *   `recordAnswer`, `stopSending` (see sync.js)
   * @param {{allow?: string[], retryScheduleMs?: number[], timeoutMs?: number, concurrency?: number, pollMs?: number}} options
   */
  constructor(api, options = {}) {
    this.#api = api;
    // Timers hold at most 2^31 - 1 ms (longer ones fire at once).
    const bounded = (v, name, min, max) => {
      if (!(Number.isInteger(v) && v >= min && v <= max)) {
        throw new TypeError(`webhooks.${name} must be a whole number from ${min} to ${max}, not ${v}`);
      }
      return v;
    };
    const schedule = options.retryScheduleMs;
    if (schedule !== undefined && !(Array.isArray(schedule) && schedule.every((v) => Number.isInteger(v) && v >= 0))) {
      throw new TypeError('webhooks.retryScheduleMs must be a list of whole numbers of milliseconds');
    }
    this.#options = {
      allow: options.allow ?? [],
      // Undefined: the component's default schedule.
      retryScheduleMs: schedule,
      timeoutMs: bounded(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, 'timeoutMs', 1, 2 ** 31 - 1),
      concurrency: bounded(options.concurrency ?? DEFAULT_CONCURRENCY, 'concurrency', 1, 1024),
      pollMs: bounded(options.pollMs ?? DEFAULT_POLL_MS, 'pollMs', 1, 2 ** 31 - 1),
    };
  }

  /** Become the root's sender: true, or false while another process is. */
  acquire() {
    if (!this.#sending) {
      this.#sending = this.#api.startSending({ scheduleMs: this.#options.retryScheduleMs, allow: this.#options.allow });
    }
    return this.#sending;
  }

  /** Deliver until `stop`: what is due, what any process queues (looked
   * for every `pollMs`), retries when due. Waits its turn while another
   * process is the root's sender. Its timers do not keep the process
   * alive; requests in flight do. */
  run() {
    this.#schedule(0);
  }

  /** Whether this process is the root's sender now. */
  get sending() {
    return this.#sending;
  }

  /** Look soon: something may just have been queued by this process. */
  kick() {
    if (this.#sending && !this.#stopped) this.#schedule(Math.max(0, this.#lastLook + KICK_MS - performance.now()));
  }

  #schedule(ms) {
    if (this.#stopped) return;
    const at = performance.now() + ms;
    if (this.#timer && this.#due <= at) return;
    clearTimeout(this.#timer);
    this.#due = at;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#look();
    }, ms);
    this.#timer.unref();
  }

  #look() {
    if (this.#stopped) return;
    let next = this.#options.pollMs;
    try {
      if (!this.acquire()) {
        this.#schedule(next);
        return;
      }
      this.#lastLook = performance.now();
      const room = this.#options.concurrency - this.#inFlight.size;
      if (room > 0) {
        const due = this.#api.claimDue(Date.now(), room);
        for (const request of due.requests) this.#attempt(request);
        if (due.nextDue !== null) next = Math.min(next, Math.max(0, due.nextDue - Date.now()));
      }
    } catch (e) {
      // Looked at again at the next poll (the disk may be full); what is
      // in flight goes on.
      process.emitWarning(`agent-session: delivering webhooks: ${e.message}`);
    }
    this.#schedule(next);
  }

  #attempt(request, report = null) {
    const p = send(request, {
      timeoutMs: this.#options.timeoutMs,
      checkAddress: (host, address) => this.#api.checkAddress(host, address),
      agents: this.#agents,
    }).then(({ at, durationMs, answer }) => {
      try {
        const d = this.#api.recordAnswer(request.id, at, durationMs, answer);
        if (report) count(report, d);
      } catch (e) {
        // Handed out again by the claims, to be attempted when due (after
        // `close`, by the next sender: expected, not worth a warning).
        if (!this.#stopped) process.emitWarning(`agent-session: recording delivery ${request.id}: ${e.message}`);
      }
      this.#inFlight.delete(p);
      // The next of its session may go now; looked for a few at a time
      // while many are in flight (a look costs about as much for one).
      const busy = this.#inFlight.size > this.#options.concurrency >> 1;
      if (!report) this.#schedule(busy ? 2 : 0);
      if (this.#inFlight.size === 0) this.#idle?.();
    });
    this.#inFlight.add(p);
    return p;
  }

  /**
   * Attempt what is due now, wait for those attempts, and report (as
   * `agent-session deliver --once`). Throws while another process is the
   * root's sender.
   */
  async once() {
    if (!this.acquire()) throw new SessionError('conflict', 'another sender is delivering from this root');
    const report = emptyReport();
    // What falls due after the pass began (a retry) waits for the next.
    const dueBy = Date.now();
    for (;;) {
      const room = this.#options.concurrency - this.#inFlight.size;
      const due = room > 0 ? this.#api.claimDue(dueBy, room) : { requests: [], settled: [] };
      for (const d of due.settled) count(report, d);
      for (const request of due.requests) this.#attempt(request, report);
      if (this.#inFlight.size === 0) break;
      // A finished attempt may let the next of its session go. Claimed a
      // few at a time: each look costs about as much for one as for four.
      const batch = Math.max(1, this.#options.concurrency >> 2);
      do await Promise.race(this.#inFlight);
      while (this.#inFlight.size > this.#options.concurrency - batch);
    }
    const left = this.#api.claimDue(dueBy, 0);
    report.pending = left.waiting;
    report.next_due = left.nextDue === null ? null : new Date(left.nextDue).toISOString();
    return report;
  }

  /** Stop: no new looks; the attempts in flight are finished and recorded
   * first, then the root's sender lock is released. */
  stop() {
    this.#stopping ??= (async () => {
      this.#stopped = true;
      clearTimeout(this.#timer);
      this.#timer = null;
      if (this.#inFlight.size > 0) await new Promise((resolve) => (this.#idle = resolve));
      try {
        if (this.#sending) this.#api.stopSending();
      } catch (e) {
        process.emitWarning(`agent-session: stopping the webhook sender: ${e.message}`);
      }
      this.#sending = false;
      for (const pool of Object.values(this.#pools)) pool.destroy();
    })();
    return this.#stopping;
  }

  /** The component instance was dropped (a trap), and the sender lock
   * with it: taken again at the next look. */
  reset() {
    this.#sending = false;
  }
}
