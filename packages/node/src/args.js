// Arguments of the API converted to the component's WIT types, and nothing
// else: every rule about a value (an empty task, a bad URL, a page size, a
// JSON context that is not an object) is the component's, so every host
// refuses the same input with the same error. What is refused here is a
// value its WIT type cannot hold at all: a number for a string, -1 or 1.5
// for a u32, a lone surrogate in a string, NaN or a function in a JSON
// value, a status that is not a `session-status`. That is a
// SessionError('invalid-input') too, worded exactly as the Python package
// words it (agent_session/_args.py is this module in Python; both run
// tests/conformance/wrapper-cases/), with the argument named as in the WIT
// (`start: options.max-iterations`), the same in every host.

import { SessionError } from './error.js';

const STATUSES = ['active', 'paused', 'completed', 'failed', 'timeout'];
const U32_MAX = 0xffff_ffffn;
const U64_MAX = 0xffff_ffff_ffff_ffffn;
/** Code points of a string shown in a message, as the core shows them. */
const SHOWN = 80;

function refuse(message) {
  throw new SessionError('invalid-input', message);
}

/** `s` quoted as Rust's `{:?}` quotes it (so as the core's and the CLI's
 * messages quote), for the characters a message is likely to meet:
 * quotes, backslashes, control characters and lone surrogates escaped. */
export function quote(s) {
  let out = '"';
  for (const ch of s) {
    const c = ch.codePointAt(0);
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\r') out += '\\r';
    else if (ch === '\t') out += '\\t';
    else if (c === 0) out += '\\0';
    else if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || (c >= 0xd800 && c <= 0xdfff)) out += `\\u{${c.toString(16)}}`;
    else out += ch;
  }
  return `${out}"`;
}

/** The first SHOWN code points of `s`, quoted; "..." after if it is longer. */
function shown(s) {
  let head = '';
  let n = 0;
  for (const ch of s) {
    if (n === SHOWN) return `${quote(head)}...`;
    head += ch;
    n += 1;
  }
  return quote(head);
}

/** A plain object: made by a literal, JSON.parse or Object.create(null)
 * (in any realm: a vm context has its own Object.prototype). */
function plain(v) {
  const proto = Object.getPrototypeOf(v);
  return (
    proto === null ||
    proto === Object.prototype ||
    (Object.getPrototypeOf(proto) === null && proto.constructor?.name === 'Object')
  );
}

const article = (name) => `${/^[aeiou]/i.test(name) ? 'an' : 'a'} ${name}`;

/** What `v` is, in words both hosts use ("the number -1", "nothing"). */
export function describe(v) {
  switch (typeof v) {
    case 'undefined':
      return 'nothing';
    case 'string':
      return `the string ${shown(v)}`;
    case 'boolean':
    case 'number':
      return `the ${typeof v} ${String(v)}`;
    case 'bigint':
      return `the BigInt ${String(v)}`;
    case 'function':
    case 'symbol':
      return article(typeof v);
  }
  if (v === null) return 'nothing';
  if (Array.isArray(v)) return 'an array';
  if (plain(v)) return 'an object';
  const name = Object.getPrototypeOf(v).constructor?.name;
  return typeof name === 'string' && name !== '' ? article(name) : 'an object';
}

function need(ok, where, expected, v) {
  if (!ok) refuse(`${where} must be ${expected}, got ${describe(v)}`);
}

const absent = (v) => v === undefined || v === null;

/** A string (WIT strings hold Unicode scalar values: no lone surrogates). */
export function str(v, where) {
  need(typeof v === 'string', where, 'a string', v);
  need(v.isWellFormed(), where, 'a string without lone surrogates', v);
  return v;
}

/** An optional string (null/undefined: none). */
export const optStr = (v, where) => (absent(v) ? undefined : str(v, where));

/** An integer from 0 to `max` (a BigInt), from a Number or a BigInt. */
function integer(v, where, max) {
  const value =
    typeof v === 'bigint' ? v : typeof v === 'number' && Number.isInteger(v) ? BigInt(v) : undefined;
  need(value !== undefined && value >= 0n && value <= max, where, `an integer from 0 to ${max}`, v);
  return value;
}

/** A u32, as the Number jco takes. */
export const u32 = (v, where) => Number(integer(v, where, U32_MAX));

/** An optional u32. */
export const optU32 = (v, where) => (absent(v) ? undefined : u32(v, where));

/** A u64, as the BigInt jco takes. Any integer Number (or BigInt) in range
 * is one; the component judges it (e.g. durations above 2^53 - 1). */
export const u64 = (v, where) => integer(v, where, U64_MAX);

/** An optional u64. */
export const optU64 = (v, where) => (absent(v) ? undefined : u64(v, where));

/** A boolean. */
export function bool(v, where) {
  need(typeof v === 'boolean', where, 'a boolean', v);
  return v;
}

/** A list of strings. */
export function strings(v, where) {
  need(Array.isArray(v), where, 'an array of strings', v);
  return Array.from(v, (s, i) => str(s, `${where}[${i}]`));
}

/** A `session-ref` of the argument `param` of `op`: a string is a
 * session's id, `{ key }` its key (`{ id }` an id too). The string case is
 * worded as before keys existed (`get: id must be a string`). */
export function ref(v, op, param = 'session') {
  if (v !== null && typeof v === 'object' && !Array.isArray(v)) {
    const has = (k) => Object.hasOwn(v, k) && v[k] !== undefined;
    if (has('key') && !has('id')) return { tag: 'key', val: str(v.key, `${op}: ${param}.key`) };
    if (has('id') && !has('key')) return { tag: 'id', val: str(v.id, `${op}: ${param}.id`) };
    refuse(`${op}: ${param} must be an id (a string), { key } or { id }, got ${describe(v)}`);
  }
  return { tag: 'id', val: str(v, param === 'session' ? `${op}: id` : `${op}: ${param}`) };
}

/** An optional `session-ref`. */
export const optRef = (v, op, param) => (absent(v) ? undefined : ref(v, op, param));

/** A `list<u8>`: a Uint8Array (a Buffer is one), passed as it is. */
export function bytes(v, where) {
  need(v instanceof Uint8Array, where, 'bytes (a Uint8Array)', v);
  return v;
}

/** A `typed-value`: `{ type, bytes }`, as a serializer made it. */
export function typed(v, where) {
  record(v, where);
  return { type: str(v.type, `${where}.type`), bytes: bytes(v.bytes, `${where}.bytes`) };
}

/** An array, each element converted by `each(element, where)`. */
export function array(v, where, each) {
  need(Array.isArray(v), where, 'an array', v);
  return Array.from(v, (x, i) => each(x, `${where}[${i}]`));
}

/** A pair (an array of two), as jco takes a WIT `tuple`. */
export function pair(v, where) {
  need(Array.isArray(v) && v.length === 2, where, 'a pair (an array of two)', v);
  return v;
}

/** An optional `session-status`: its name. An unknown name cannot be
 * passed (the WIT type is an enum), so it is refused here, with the
 * message of the core's own status parser (`SessionStatus::parse`, what
 * the CLI answers to `list --status`). */
export function optStatus(v, where) {
  if (absent(v)) return undefined;
  need(typeof v === 'string', where, `one of ${STATUSES.join(', ')}`, v);
  if (!STATUSES.includes(v)) {
    refuse(`unknown status ${shown(v)}; expected one of ${STATUSES.join(', ')}`);
  }
  return v;
}

/** A record (a plain object). */
export function record(v, where) {
  need(v !== null && typeof v === 'object' && !Array.isArray(v), where, 'an object', v);
  return v;
}

/** `key` as a step of a path in a message: `.name` or `["other key"]`. */
const step = (key) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(key) ? `.${key}` : `[${quote(key)}]`);

/** Refuse what JSON cannot hold, before JSON.stringify would turn it into
 * something else (NaN and Infinity into null, a function or a symbol into
 * nothing, a Date into a string, a Map into {}): only null, booleans,
 * finite numbers, strings, arrays and plain objects pass. A property whose
 * value is undefined is left out, as JSON.stringify leaves it out. Walks
 * without recursion, so any depth is looked at (the component judges it). */
function checkJson(value, where) {
  const LEAVE = {};
  const inside = new Set();
  const stack = [[value, '']];
  while (stack.length > 0) {
    const [v, at, leaving] = stack.pop();
    if (leaving === LEAVE) {
      inside.delete(v);
      continue;
    }
    const bad = (what) => refuse(`${where}${at} must be a JSON value, got ${what}`);
    switch (typeof v) {
      case 'string':
      case 'boolean':
        continue;
      case 'number':
        if (!Number.isFinite(v)) bad(describe(v));
        continue;
      case 'object':
        break;
      default:
        bad(describe(v));
    }
    if (v === null) continue;
    if (inside.has(v)) bad('an object that contains itself');
    if (Array.isArray(v)) {
      inside.add(v);
      stack.push([v, at, LEAVE]);
      for (let i = v.length - 1; i >= 0; i--) stack.push([v[i], `${at}[${i}]`]);
    } else if (plain(v)) {
      inside.add(v);
      stack.push([v, at, LEAVE]);
      const keys = Object.keys(v);
      for (let i = keys.length - 1; i >= 0; i--) {
        const x = v[keys[i]];
        if (x !== undefined) stack.push([x, `${at}${step(keys[i])}`]);
      }
    } else {
      bad(describe(v));
    }
  }
}

/** A piece of JSON text on the stack of `stringifyDeep` (checked data
 * holds no instance of a class, so none of its values is one). */
class Text {
  constructor(text) {
    this.text = text;
  }
}

/** JSON text of checked plain data, without recursion (JSON.stringify
 * overflows the stack on a few thousand levels): the text JSON.stringify
 * would make. */
function stringifyDeep(value) {
  const out = [];
  const stack = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v instanceof Text) {
      out.push(v.text);
    } else if (Array.isArray(v)) {
      out.push('[');
      stack.push(new Text(']'));
      for (let i = v.length - 1; i >= 0; i--) {
        stack.push(v[i]);
        if (i > 0) stack.push(new Text(','));
      }
    } else if (v !== null && typeof v === 'object') {
      out.push('{');
      stack.push(new Text('}'));
      const keys = Object.keys(v).filter((k) => v[k] !== undefined);
      for (let i = keys.length - 1; i >= 0; i--) {
        stack.push(v[keys[i]]);
        stack.push(new Text(`${JSON.stringify(keys[i])}:`));
        if (i > 0) stack.push(new Text(','));
      }
    } else {
      out.push(JSON.stringify(v));
    }
  }
  return out.join('');
}

/** The JSON text of a JSON value (the component judges its shape, size
 * and numbers). */
export function json(v, where) {
  checkJson(v, where);
  try {
    return JSON.stringify(v);
  } catch (e) {
    if (e instanceof RangeError) return stringifyDeep(v);
    throw e;
  }
}

/** An optional JSON value (null/undefined: none). */
export const optJson = (v, where) => (absent(v) ? undefined : json(v, where));
