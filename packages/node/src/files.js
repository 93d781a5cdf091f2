// File primitives shared by the store and the outbox: whole writes and
// reads, directory fsync, crash-safe replacement.

import fs from 'node:fs';
import path from 'node:path';

/** `write(2)` until all of `bytes` is written (a regular file takes it in
 * one call unless it fails). At `position`, or at the file offset (the end,
 * for O_APPEND) when `position` is null. */
export function writeAll(fd, bytes, position = null) {
  let done = 0;
  while (done < bytes.length) {
    const at = position === null ? null : position + done;
    done += fs.writeSync(fd, bytes, done, bytes.length - done, at);
  }
}

/** Read `length` bytes of `fd` at `position`. */
export function readAt(fd, position, length) {
  const bytes = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = fs.readSync(fd, bytes, done, length - done, position + done);
    if (n === 0) throw Object.assign(new Error('unexpected end of file'), { code: 'EIO' });
    done += n;
  }
  return bytes;
}

/** fsync a directory, so that a create or rename in it is durable. */
export function syncDir(dir) {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Replace `dir/name` by renaming a temp file (`.<name>.tmp`) over it, so a
 * reader sees the old or the new content. With `sync`, the temp file and
 * the directory are fsynced, so the new content survives a power loss.
 */
export function writeAtomically(dir, name, bytes, sync) {
  const tmp = path.join(dir, `.${name}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    writeAll(fd, bytes);
    if (sync) fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, path.join(dir, name));
  if (sync) syncDir(dir);
}

/** The size of a file, 0 if it does not exist. */
export function fileSize(p) {
  try {
    return fs.statSync(p).size;
  } catch (e) {
    if (e.code === 'ENOENT') return 0;
    throw e;
  }
}
