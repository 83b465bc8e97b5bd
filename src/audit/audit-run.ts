/**
 * A run is one writer process's stretch of an audit log: it opens with a `log_opened` line,
 * and that line and each of the run's checkpoints carry its identity: `log`, the log's id,
 * made when the file is created and kept by every later run; `writer`, who wrote the run
 * (`audit.writer`, else the host name); `run`, counting from 1. A run's first line chains to
 * the last line of the run before (`prev`), so the run's first checkpoint signs that it
 * continues exactly that run: deleting the end of a run, or splicing in another log's run
 * (even one signed with the same key), shows.
 */

import { randomBytes } from 'node:crypto';

export interface RunIdentity {
  log: string;
  writer: string;
  run: number;
}

/** 96 random bits, base64url: unique per log file, and names nothing. */
export function newLogId(): string {
  return randomBytes(12).toString('base64url');
}

/** The identity a `log_opened` or checkpoint line carries; undefined for a line written before runs had one. */
export function runIdentity(record: { log?: unknown; writer?: unknown; run?: unknown }): RunIdentity | undefined {
  const { log, writer, run } = record;
  if (typeof log !== 'string' || typeof writer !== 'string' || typeof run !== 'number' || !Number.isSafeInteger(run) || run < 1) return undefined;
  return { log, writer, run };
}

export function sameRun(a: RunIdentity, b: RunIdentity): boolean {
  return a.log === b.log && a.writer === b.writer && a.run === b.run;
}

/** A run as a message names it; a hostile log's long values are cut. */
export function describeRun(id: RunIdentity): string {
  return `run ${id.run} of log ${quoted(id.log)} (writer ${quoted(id.writer)})`;
}

export function quoted(text: string): string {
  return JSON.stringify(text.length > 80 ? `${text.slice(0, 80)}…` : text);
}
