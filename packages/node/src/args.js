// Arguments of the API as the component's WIT types take them. A value the
// WIT type cannot hold (a number for a string, -1 for a u32, undefined for
// a JSON value) is a programming error: a TypeError naming the argument,
// thrown before the component is called. Values of the right type that
// break a rule (an empty task, a bad URL) are the component's to refuse,
// with a SessionError.

const STATUSES = new Set(['active', 'paused', 'completed', 'failed', 'timeout']);

function describe(v) {
  if (v === null || v === undefined) return String(v);
  if (typeof v === 'string') return `the string ${JSON.stringify(v.slice(0, 40))}`;
  if (typeof v === 'object') return Array.isArray(v) ? 'an array' : 'an object';
  return `${typeof v} ${String(v)}`;
}

function need(ok, where, expected, v) {
  if (!ok) throw new TypeError(`${where} must be ${expected}, got ${describe(v)}`);
}

const absent = (v) => v === undefined || v === null;

/** A string. */
export function str(v, where) {
  need(typeof v === 'string', where, 'a string', v);
  return v;
}

/** An optional string (null/undefined: none). */
export const optStr = (v, where) => (absent(v) ? undefined : str(v, where));

/** A u32. */
export function u32(v, where) {
  need(Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff, where, 'an integer from 0 to 4294967295', v);
  return v;
}

/** An optional u32. */
export const optU32 = (v, where) => (absent(v) ? undefined : u32(v, where));

/** A u64, as the BigInt jco takes. Numbers above 2^53 are not exact, so
 * they are not taken. */
export function u64(v, where) {
  need(Number.isSafeInteger(v) && v >= 0, where, 'a non-negative safe integer', v);
  return BigInt(v);
}

/** An optional u64. */
export const optU64 = (v, where) => (absent(v) ? undefined : u64(v, where));

/** A boolean. */
export function bool(v, where) {
  need(typeof v === 'boolean', where, 'a boolean', v);
  return v;
}

/** A list of strings. */
export function strings(v, where) {
  need(Array.isArray(v) && v.every((s) => typeof s === 'string'), where, 'an array of strings', v);
  return v;
}

/** A session status name. */
export function optStatus(v, where) {
  if (absent(v)) return undefined;
  need(STATUSES.has(v), where, `one of ${[...STATUSES].join(', ')}`, v);
  return v;
}

/** A record (object). */
export function record(v, where) {
  need(v !== null && typeof v === 'object' && !Array.isArray(v), where, 'an object', v);
  return v;
}

/** The JSON text of a JSON value (the component validates its shape). */
export function json(v, where) {
  let text;
  try {
    text = JSON.stringify(v);
  } catch (e) {
    throw new TypeError(`${where} must be a JSON value: ${e.message}`);
  }
  need(text !== undefined, where, 'a JSON value', v);
  return text;
}

/** An optional JSON value (null/undefined: none). */
export const optJson = (v, where) => (absent(v) ? undefined : json(v, where));
