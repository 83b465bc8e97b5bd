/**
 * Every file hopguard reads (its config, JWKS, certificates, keys, secrets, manifests) goes
 * through here: opened, checked to be a regular file no larger than its kind's limit, and read
 * at most limit + 1 bytes. So `/dev/zero`, a FIFO or a file that grows while it is read costs
 * at most the limit, never the memory it would take to find out.
 */

import { closeSync, constants, fstatSync, openSync, readSync, type Stats } from 'node:fs';
import { ConfigError } from './config-error.js';

const KiB = 1024;
const MiB = 1024 * KiB;
const CHUNK = 64 * KiB;

export interface FileKind {
  limit: number;
  /** Names the limit in an error: "the limit for a JWKS". */
  name: string;
}

export const FILE_KINDS = {
  config: { limit: MiB, name: 'a config file' },
  jwks: { limit: MiB, name: 'a JWKS' },
  // A CA bundle may be a whole system bundle (~220 KB).
  certificate: { limit: MiB, name: 'a certificate file' },
  key: { limit: 64 * KiB, name: 'a key file' },
  secret: { limit: 64 * KiB, name: 'a secret file' },
  manifests: { limit: 8 * MiB, name: 'a manifest file' },
  // `data:` files for route conditions: held in memory by every worker, reread on reload.
  data: { limit: 4 * MiB, name: 'a data file' },
} as const satisfies Record<string, FileKind>;

/** A file that could not be read, or was refused; the message says why and never quotes the file. */
export class FileReadError extends Error {
  override readonly name = 'FileReadError';
}

/** The whole file, if it is a regular file within `kind`'s limit. */
export function readBoundedFile(path: string, kind: FileKind): Buffer {
  let fd: number;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat below refuses it.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    throw new FileReadError(describeErrno(err));
  }
  try {
    const stats = fstatSync(fd);
    if (!stats.isFile()) throw new FileReadError(`it is ${fileType(stats)}, not a regular file`);
    if (stats.size > kind.limit) throw tooLarge(kind);
    return readAtMost(fd, kind);
  } catch (err) {
    if (err instanceof FileReadError) throw err;
    throw new FileReadError(describeErrno(err));
  } finally {
    closeSync(fd);
  }
}

/** Standard input (a pipe, a terminal or a file), read up to `kind`'s limit. */
export function readBoundedStdin(kind: FileKind): Buffer {
  return readAtMost(0, kind);
}

/**
 * A file a config key names: a ConfigError on `key` otherwise, naming the file and why, e.g.
 * `issuers[0].jwks_file: cannot read /etc/keys.json: it does not exist (ENOENT)`.
 */
export function readConfiguredFile(path: string, key: string, kind: FileKind): Buffer {
  try {
    return readBoundedFile(path, kind);
  } catch (err) {
    if (!(err instanceof FileReadError)) throw err;
    throw new ConfigError([{ path: key, message: `cannot read ${path}: ${err.message}` }], undefined, { cause: err });
  }
}

/** Stops after limit + 1 bytes: the size fstat gave may be wrong (procfs) or outdated (a growing file). */
function readAtMost(fd: number, kind: FileKind): Buffer {
  const chunks: Buffer[] = [];
  let length = 0;
  while (length <= kind.limit) {
    const chunk = Buffer.allocUnsafe(Math.min(CHUNK, kind.limit + 1 - length));
    const read = readSync(fd, chunk, 0, chunk.length, null);
    if (read === 0) break;
    chunks.push(chunk.subarray(0, read));
    length += read;
  }
  if (length > kind.limit) throw tooLarge(kind);
  return Buffer.concat(chunks, length);
}

function tooLarge(kind: FileKind): FileReadError {
  return new FileReadError(`it is larger than ${formatBytes(kind.limit)}, the limit for ${kind.name}`);
}

function formatBytes(bytes: number): string {
  return bytes % MiB === 0 ? `${bytes / MiB} MiB` : `${bytes / KiB} KiB`;
}

function fileType(stats: Stats): string {
  if (stats.isDirectory()) return 'a directory';
  if (stats.isCharacterDevice()) return 'a character device';
  if (stats.isBlockDevice()) return 'a block device';
  if (stats.isFIFO()) return 'a FIFO';
  if (stats.isSocket()) return 'a socket';
  return 'an unusual file';
}

const ERRNO_WORDS: Record<string, string> = {
  ENOENT: 'it does not exist',
  EACCES: 'permission denied: check its mode and the user hopguard runs as',
  EPERM: 'permission denied: check its mode and the user hopguard runs as',
  ELOOP: 'a symbolic link loop',
  ENOTDIR: 'a part of the path is not a directory',
  ENAMETOOLONG: 'the path is too long',
  EISDIR: 'it is a directory, not a regular file',
};

function describeErrno(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === undefined) return 'unexpected error';
  return `${ERRNO_WORDS[code] ?? 'read failed'} (${code})`;
}
