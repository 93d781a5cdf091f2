// flock(2) from Node, which has no binding for it: util-linux's flock(1) is
// run on a descriptor it inherits from us. A flock lock belongs to the open
// file description, which the child shares with us, so the lock stays held
// after flock(1) exits, until we close our descriptor. The Rust store and
// outbox use flock (not fcntl locks) on the same files, so Node and Rust
// processes exclude each other.

import { closeSync, openSync, constants } from 'node:fs';
import { spawnSync } from 'node:child_process';

/**
 * Take a flock on the open file `fd`, waiting for it.
 * @param {number} fd
 * @param {boolean} exclusive
 * @param {string} what the file, for messages
 */
export function flock(fd, exclusive, what) {
  const run = spawnSync('flock', [exclusive ? '-x' : '-s', '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
  });
  // Failures carry a `code`, like system errors, so the store reports them
  // as `io` errors.
  if (run.error) {
    const hint = run.error.code === 'ENOENT' ? ' (flock(1) of util-linux is needed)' : '';
    throw Object.assign(new Error(`flock(1) on ${what}: ${run.error.message}${hint}`), { code: 'EFLOCK' });
  }
  if (run.status !== 0) {
    const why = run.stderr.toString().trim() || `exit status ${run.status ?? run.signal}`;
    throw Object.assign(new Error(`flock(1) on ${what}: ${why}`), { code: 'EFLOCK' });
  }
}

/**
 * Open `path` (creating it) and lock it. Closing the returned descriptor
 * releases the lock.
 * @param {string} path
 * @param {boolean} exclusive
 * @returns {number}
 */
export function lockPath(path, exclusive) {
  const fd = openSync(path, constants.O_RDWR | constants.O_CREAT);
  try {
    flock(fd, exclusive, path);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}
