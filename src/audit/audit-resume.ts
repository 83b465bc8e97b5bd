/**
 * Where a writer goes on from in an existing log file: the chain's head (the last whole
 * record, as `audit verify` reads the chain) and the identity of the last run, read
 * backwards from the file's end. A last line torn by a crash or a full disk is skipped, and
 * so is any line that is not a record: the chain goes on from the last good one, and the
 * next run's first line says it follows a torn line. A last record that lacks only its
 * newline is whole: the chain goes on from it.
 */

import type { FileHandle } from 'node:fs/promises';
import { GENESIS, lineHash } from './audit-chain.js';
import { auditFileError } from './audit-errors.js';
import { runIdentity } from './audit-run.js';

export interface Resume {
  seq: number;
  head: string;
  /** The log's id, kept by the next run; undefined for a new file, or one written before logs had ids. */
  log?: string;
  /** The last run's number; 0 when there is none with an identity. */
  run: number;
  /** undefined for a new file. */
  previousClosed?: boolean;
  /** The file ends in part of a line, which the chain skips. */
  followsTornLine?: true;
}

export const NEW_LOG: Resume = { seq: 0, head: GENESIS, run: 0 };

/** Read backwards in pieces this large: the last checkpoint is usually within the first. */
const CHUNK = 1 << 20;

interface TailRecord {
  seq?: unknown;
  prev?: unknown;
  event?: unknown;
  closing?: unknown;
  log?: unknown;
  writer?: unknown;
  run?: unknown;
}

export async function readResume(handle: FileHandle, path: string): Promise<{ resume: Resume; cutShort: boolean }> {
  const { size } = await handle.stat();
  if (size === 0) return { resume: NEW_LOG, cutShort: false };
  let cutShort = false;
  let torn = false;
  let resume: Resume | undefined;
  for await (const { bytes, complete } of linesBackwards(handle, size)) {
    const record = parseTailRecord(bytes);
    if (!complete) {
      cutShort = true;
      // A part of a line never parses: a record's JSON closes with its last byte.
      torn = !record;
    }
    if (!record) continue;
    resume ??= {
      seq: record.seq as number,
      head: lineHash(bytes),
      run: 0,
      previousClosed: record.event === 'checkpoint' && record.closing === true,
      ...(torn && { followsTornLine: true }),
    };
    // The nearest run header or checkpoint names the last run (or shows the log predates run identities).
    if (record.event === 'log_opened' || record.event === 'checkpoint') {
      const identity = runIdentity(record);
      if (identity) Object.assign(resume, { log: identity.log, run: identity.run });
      break;
    }
  }
  if (!resume) throw auditFileError('audit.output', path, 'holds no audit record: move it aside or choose another audit.output');
  return { resume, cutShort };
}

function parseTailRecord(bytes: Buffer): TailRecord | undefined {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    if (typeof value !== 'object' || value === null) return undefined;
    const record = value as TailRecord;
    return Number.isSafeInteger(record.seq) && typeof record.prev === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

/** The file's lines, last first; `complete` is false for a last line without its newline. */
async function* linesBackwards(handle: FileHandle, size: number): AsyncGenerator<{ bytes: Buffer; complete: boolean }> {
  /** The start of the file still unread, and the bytes read after it up to the next newline. */
  let rest = Buffer.alloc(0);
  let complete = false;
  for (let end = size; end > 0;) {
    const start = Math.max(0, end - CHUNK);
    const chunk = Buffer.alloc(end - start);
    await handle.read(chunk, 0, chunk.length, start);
    end = start;
    const data = Buffer.concat([chunk, rest]);
    let lineEnd = data.length;
    for (let nl = data.lastIndexOf(0x0a, lineEnd - 1); nl >= 0; nl = lineEnd > 0 ? data.lastIndexOf(0x0a, lineEnd - 1) : -1) {
      const bytes = data.subarray(nl + 1, lineEnd);
      if (complete || bytes.length > 0) yield { bytes, complete };
      complete = true;
      lineEnd = nl;
    }
    rest = data.subarray(0, lineEnd);
  }
  if (complete || rest.length > 0) yield { bytes: rest, complete };
}
