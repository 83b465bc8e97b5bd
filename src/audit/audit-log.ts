/**
 * The audit log writer: hash-chained JSON lines with Ed25519-signed checkpoints (format in
 * audit-chain.ts), to a file or stdout (audit-sink.ts).
 *
 * `record()` only queues: checks never wait for the disk. Every `flush_interval` the queue
 * is serialized, chained and written in one append; a checkpoint is added after
 * `checkpoint_records` records or `checkpoint_interval`, and on close (marked closing).
 * A file is synced to disk at each checkpoint.
 *
 * Loss window, bounded: a crash loses the records still queued (at most `flush_interval`
 * of them, and never more than MAX_QUEUED); a machine crash can also lose what was written
 * since the last checkpoint's sync. Records after the last checkpoint are on disk but not
 * yet signed. If the writer falls MAX_QUEUED records behind, new records are dropped and a
 * `records_dropped` line with their count takes their place in the chain.
 *
 * A write that fails (a full disk) leaves nothing in the file, and its records are counted
 * as dropped, never as written. The chain goes on from the last line written, and the first
 * write that succeeds again starts with a `records_dropped` marker naming the seqs that were
 * not written: `audit verify` tells that gap from a deletion. Until the run's first line is
 * written, every write starts with it.
 *
 * Each process run appends a run to the file (audit-run.ts), continuing its chain, and logs
 * the chain's head when it opens and closes the log. `close()` rejects, naming the file,
 * when the closing checkpoint could not be written: the process then exits non-zero.
 */

import type { KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../telemetry/log.js';
import { keyId, lineHash, signCheckpoint } from './audit-chain.js';
import type { AuditConfig } from './audit-config.js';
import { errorCode } from './audit-errors.js';
import { checkAuditOutput, readAuditSigningKey } from './audit-files.js';
import { auditFields, type AuditEvent } from './audit-event.js';
import { WriteFailures } from './audit-loss.js';
import type { Resume } from './audit-resume.js';
import { newLogId, type RunIdentity } from './audit-run.js';
import { openSink, SinkWriteError, type Sink } from './audit-sink.js';

export interface AuditRecorder {
  /** Queues one event. Never blocks and never throws. */
  record(event: AuditEvent): void;
  /** Writes what is queued and a closing checkpoint, then releases the file; rejects if the checkpoint could not be written. */
  close(): Promise<void>;
}

export const AUDIT_OFF: AuditRecorder = { record() {}, close: async () => undefined };

export interface AuditLogDeps {
  log: Logger;
  /** Told how many records were written (in the file) or dropped (queue full, or the write failed): metrics. */
  onRecords?: (outcome: 'written' | 'dropped', count: number) => void;
}

/** ~300 bytes a record: at most some 30 MB held if the disk stalls. */
const MAX_QUEUED = 100_000;
/** A burst this large is written at once rather than at the next tick. */
const FLUSH_AT = 4096;

export async function openAuditLog(config: AuditConfig, deps: AuditLogDeps): Promise<AuditRecorder> {
  const key = readAuditSigningKey(config);
  if (!config.output || !key) return AUDIT_OFF;
  checkAuditOutput(config);
  const { sink, resume } = await openSink(config.output);
  return new AuditWriter(sink, key, resume, config, deps);
}

/** Where the chain stands in the sink: a failed write puts it back. */
interface ChainState {
  /** The hash of the last line in the sink. */
  head: string;
  sinceCheckpoint: number;
  lastCheckpointMs: number;
}

class AuditWriter implements AuditRecorder {
  private queue: { timeMs: number; event: AuditEvent }[] = [];
  /** Dropped at the queue bound since the last `records_dropped` line written. */
  private overflowed = 0;
  /** The last seq given out, written or not: a seq is never reused. */
  private seq: number;
  private chain: ChainState;
  /** The run's first line, until it is written. */
  private opener: string | undefined;
  /** A failed write may have left part of a line: nothing more is appended. */
  private torn: SinkWriteError | undefined;
  private readonly failures: WriteFailures;
  private readonly keyId: string;
  private readonly identity: RunIdentity;
  private writing: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  constructor(
    private readonly sink: Sink,
    private readonly key: KeyObject,
    resume: Resume,
    private readonly config: AuditConfig,
    private readonly deps: AuditLogDeps,
  ) {
    this.seq = resume.seq;
    this.chain = { head: resume.head, sinceCheckpoint: 0, lastCheckpointMs: Date.now() };
    this.keyId = keyId(key);
    this.failures = new WriteFailures(sink.name, deps.log);
    // A log written before run identities gets an id now: its older lines stay as they are.
    this.identity = { log: resume.log ?? newLogId(), writer: config.writer ?? hostname(), run: resume.run + 1 };
    // Chained to the resumed head, which nothing else can move before this line is written.
    this.opener = JSON.stringify({
      seq: ++this.seq,
      time: new Date().toISOString(),
      event: 'log_opened',
      ...this.identity,
      ...(resume.previousClosed !== undefined && { previous_closed: resume.previousClosed }),
      ...(resume.followsTornLine && { follows_torn_line: true }),
      prev: this.chain.head,
    });
    this.deps.log.info('audit_log_opened', { ...this.identity, seq: this.seq, head: lineHash(this.opener) });
    void this.flush();
    this.timer = setInterval(() => void this.flush(), config.flushIntervalMs).unref();
  }

  record(event: AuditEvent): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.overflowed++;
      this.deps.onRecords?.('dropped', 1);
      return;
    }
    this.queue.push({ timeMs: Date.now(), event });
    // Off the check path: serializing a burst waits for the next turn of the event loop.
    if (this.queue.length === FLUSH_AT) setImmediate(() => void this.flush());
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    try {
      await this.flush(true);
    } finally {
      await this.sink.close();
    }
    // The chain's head on the operational log (stderr), which ships elsewhere: an anchor the
    // audit file's writer cannot rewrite, for `audit verify --head`.
    this.deps.log.info('audit_log_closed', { ...this.identity, seq: this.seq, head: this.chain.head });
  }

  /** One write at a time, in order: each flush waits for the one before. Only a closing one rejects. */
  private flush(closing = false): Promise<void> {
    const done = this.writing.then(() => this.writeQueued(closing));
    this.writing = done.catch(() => undefined);
    return done;
  }

  private async writeQueued(closing: boolean): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    if (this.torn) {
      this.lost(batch.length, this.torn, undefined);
      if (closing) throw this.notClosed(this.torn);
      return;
    }
    const written = this.chain;
    this.chain = { ...written };
    const firstSeq = this.seq + 1;
    const lines: string[] = [];
    if (this.opener) lines.push(this.link(this.opener));
    const loss = this.failures.loss;
    if (loss?.fromSeq !== undefined) {
      lines.push(this.append({
        time: new Date().toISOString(), event: 'records_dropped', reason: 'write_failed', error: loss.error,
        since: new Date(loss.sinceMs).toISOString(), count: loss.records, lost_seqs: [loss.fromSeq, this.seq],
      }));
    }
    let checkpointed = false;
    for (const { timeMs, event } of batch) {
      lines.push(this.append({ time: new Date(timeMs).toISOString(), event: event.event, ...auditFields(event) }));
      if (this.chain.sinceCheckpoint >= this.config.checkpointRecords) {
        lines.push(this.checkpoint(false));
        checkpointed = true;
      }
    }
    // Records may overflow while this write is on its way: those go into the next marker.
    const overflowed = this.overflowed;
    if (overflowed > 0) {
      lines.push(this.append({ time: new Date().toISOString(), event: 'records_dropped', reason: 'queue_full', count: overflowed }));
    }
    const due = this.chain.sinceCheckpoint > 0 && Date.now() - this.chain.lastCheckpointMs >= this.config.checkpointIntervalMs;
    if (closing || due) {
      lines.push(this.checkpoint(closing));
      checkpointed = true;
    }
    if (lines.length === 0) return;
    try {
      await this.sink.write(`${lines.join('\n')}\n`, checkpointed);
    } catch (err) {
      const failure = err instanceof SinkWriteError ? err : new SinkWriteError(errorCode(err), false);
      this.chain = written;
      if (failure.torn) this.torn = failure;
      this.lost(batch.length, failure, this.seq >= firstSeq ? firstSeq : undefined);
      if (closing) throw this.notClosed(failure);
      return;
    }
    this.opener = undefined;
    if (overflowed > 0) this.deps.log.warn('audit_records_dropped', { count: overflowed });
    this.overflowed -= overflowed;
    this.failures.recovered();
    if (batch.length > 0) this.deps.onRecords?.('written', batch.length);
  }

  private lost(records: number, failure: SinkWriteError, fromSeq: number | undefined): void {
    this.failures.failed(failure.code, records, fromSeq);
    if (records > 0) this.deps.onRecords?.('dropped', records);
  }

  private notClosed(failure: SinkWriteError): Error {
    const lost = this.failures.totalRecords;
    return new Error(`audit.output ${this.sink.name}: the log was not closed: its closing checkpoint could not be written (${failure.code})` +
      `${failure.torn ? ', and the file may end in part of a line' : ''}; this run lost ${lost} record${lost === 1 ? '' : 's'}`);
  }

  /** Adds a line to the chain: `seq` first, `prev` last. */
  private append(fields: Record<string, unknown>): string {
    return this.link(JSON.stringify({ seq: ++this.seq, ...fields, prev: this.chain.head }));
  }

  /** Makes `line` the chain's head. */
  private link(line: string): string {
    this.chain.head = lineHash(line);
    this.chain.sinceCheckpoint++;
    return line;
  }

  private checkpoint(closing: boolean): string {
    const unsigned = JSON.stringify({
      seq: ++this.seq,
      time: new Date().toISOString(),
      event: 'checkpoint',
      ...this.identity,
      records: this.chain.sinceCheckpoint,
      key: this.keyId,
      ...(closing && { closing: true }),
      prev: this.chain.head,
    });
    const line = signCheckpoint(unsigned, this.key);
    this.chain.head = lineHash(line);
    this.chain.sinceCheckpoint = 0;
    this.chain.lastCheckpointMs = Date.now();
    return line;
  }
}
