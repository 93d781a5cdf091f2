// The error of the session API (its own module, so that src/args.js can
// throw it without importing src/index.js).

/** The cases of the WIT `session-error` variant. */
export const ERROR_CODES = new Set([
  'not-found',
  'invalid-transition',
  'invalid-input',
  'conflict',
  'storage',
  'limit-exceeded',
]);

/**
 * A failure of the session API: `code` is the WIT `session-error` case,
 * the message the component's (or, for an argument its WIT type cannot
 * hold, the wrapper's: see src/args.js).
 */
export class SessionError extends Error {
  /**
   * @param {'not-found' | 'invalid-transition' | 'invalid-input' | 'conflict' | 'storage' | 'limit-exceeded'} code
   * @param {string} message
   */
  constructor(code, message) {
    super(message);
    this.name = 'SessionError';
    this.code = code;
  }
}
