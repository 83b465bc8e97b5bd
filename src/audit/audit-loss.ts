/**
 * Writes that failed (a full disk, an I/O error), until one succeeds again: what the next
 * `records_dropped` marker records in the chain (how many records, which seqs, since when,
 * why), and the error log, one line per LOG_INTERVAL_MS at most, counting what it did not
 * print: a full disk fails every flush.
 */

import type { Logger } from '../telemetry/log.js';

const LOG_INTERVAL_MS = 10_000;

export interface Loss {
  /** Audit records lost: the events, not the writer's own lines (checkpoints, markers). */
  records: number;
  /** The first seq given to a line that was not written; undefined while none was. */
  fromSeq?: number;
  /** The last failure's errno code. */
  error: string;
  sinceMs: number;
}

export class WriteFailures {
  /** Lost since the last write that succeeded. */
  loss: Loss | undefined;
  /** Records this run lost, recorded in the chain or not. */
  totalRecords = 0;
  private failures = 0;
  private loggedMs = -Infinity;
  private unlogged = { failures: 0, records: 0 };
  /** An error line was printed for the current loss: say when it is over. */
  private announced = false;

  constructor(
    private readonly file: string,
    private readonly log: Logger,
  ) {}

  /** `fromSeq`: the failed write's first seq, if it gave out any. */
  failed(error: string, records: number, fromSeq: number | undefined): void {
    const now = Date.now();
    this.loss ??= { records: 0, error, sinceMs: now };
    this.loss.records += records;
    this.loss.error = error;
    this.loss.fromSeq ??= fromSeq;
    this.totalRecords += records;
    this.failures++;
    this.unlogged.failures++;
    this.unlogged.records += records;
    if (now - this.loggedMs < LOG_INTERVAL_MS) return;
    this.log.error('audit_write_failed', { file: this.file, key: 'audit.output', error, failures: this.unlogged.failures, records_lost: this.unlogged.records });
    this.loggedMs = now;
    this.unlogged = { failures: 0, records: 0 };
    this.announced = true;
  }

  /** A write succeeded, with the marker of the loss in it. */
  recovered(): void {
    if (!this.loss) return;
    if (this.announced) {
      this.log.warn('audit_write_recovered', { file: this.file, key: 'audit.output', error: this.loss.error, failures: this.failures, records_lost: this.loss.records });
    }
    this.loss = undefined;
    this.failures = 0;
    this.announced = false;
  }
}
