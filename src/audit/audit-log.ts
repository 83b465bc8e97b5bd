/**
 * The audit log writer: hash-chained JSON lines with Ed25519-signed checkpoints (format in
 * audit-chain.ts), to a file or stdout.
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
 * Each process run appends a run to the file (audit-run.ts), continuing its chain, and logs
 * the chain's head when it opens and closes the log.
 */

import { open, type FileHandle } from 'node:fs/promises';
import type { KeyObject } from 'node:crypto';
import { hostname } from 'node:os';
import type { Logger } from '../telemetry/log.js';
import { keyId, lineHash, readEd25519Key, signCheckpoint } from './audit-chain.js';
import type { AuditConfig, AuditOutput } from './audit-config.js';
import { auditFields, type AuditEvent } from './audit-event.js';
import { NEW_LOG, readResume, type Resume } from './audit-resume.js';
import { newLogId, type RunIdentity } from './audit-run.js';

export interface AuditRecorder {
  /** Queues one event. Never blocks and never throws. */
  record(event: AuditEvent): void;
  /** Writes what is queued and a closing checkpoint, then releases the file. */
  close(): Promise<void>;
}

export const AUDIT_OFF: AuditRecorder = { record() {}, close: async () => undefined };

export interface AuditLogDeps {
  log: Logger;
  /** Told how many records were written or dropped (metrics). */
  onRecords?: (outcome: 'written' | 'dropped', count: number) => void;
}

/** ~300 bytes a record: at most some 30 MB held if the disk stalls. */
const MAX_QUEUED = 100_000;
/** A burst this large is written at once rather than at the next tick. */
const FLUSH_AT = 4096;

interface Sink {
  write(text: string, sync: boolean): Promise<void>;
  close(): Promise<void>;
}

export async function openAuditLog(config: AuditConfig, deps: AuditLogDeps): Promise<AuditRecorder> {
  if (!config.output) return AUDIT_OFF;
  if (!config.signingKeyFile) throw new Error('audit: signing_key_file is required');
  const key = readEd25519Key(config.signingKeyFile, 'private');
  const { sink, resume } = await openSink(config.output);
  return new AuditWriter(sink, key, resume, config, deps);
}

class AuditWriter implements AuditRecorder {
  private queue: { timeMs: number; event: AuditEvent }[] = [];
  private dropped = 0;
  private seq: number;
  private head: string;
  private readonly keyId: string;
  private readonly identity: RunIdentity;
  private sinceCheckpoint = 0;
  private lastCheckpointMs = Date.now();
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
    this.head = resume.head;
    this.keyId = keyId(key);
    // A log written before run identities gets an id now: its older lines stay as they are.
    this.identity = { log: resume.log ?? newLogId(), writer: config.writer ?? hostname(), run: resume.run + 1 };
    const opened = this.append({
      time: new Date().toISOString(),
      event: 'log_opened',
      ...this.identity,
      ...(resume.previousClosed !== undefined && { previous_closed: resume.previousClosed }),
    });
    this.announceHead('audit_log_opened');
    this.writing = this.write([opened], false);
    this.timer = setInterval(() => void this.flush(), config.flushIntervalMs).unref();
  }

  record(event: AuditEvent): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
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
    await this.flush(true);
    await this.sink.close();
    this.announceHead('audit_log_closed');
  }

  /**
   * The chain's head on the operational log (stderr), which ships elsewhere: an anchor the
   * audit file's writer cannot rewrite, for `audit verify --head`.
   */
  private announceHead(event: string): void {
    this.deps.log.info(event, { ...this.identity, seq: this.seq, head: this.head });
  }

  /** One write at a time, in order: each flush waits for the one before. */
  private flush(closing = false): Promise<void> {
    this.writing = this.writing.then(() => this.writeQueued(closing));
    return this.writing;
  }

  private async writeQueued(closing: boolean): Promise<void> {
    const batch = this.queue;
    this.queue = [];
    const lines: string[] = [];
    let checkpointed = false;
    for (const { timeMs, event } of batch) {
      lines.push(this.append({ time: new Date(timeMs).toISOString(), event: event.event, ...auditFields(event) }));
      if (this.sinceCheckpoint >= this.config.checkpointRecords) {
        lines.push(this.checkpoint(false));
        checkpointed = true;
      }
    }
    if (this.dropped > 0) {
      lines.push(this.append({ time: new Date().toISOString(), event: 'records_dropped', count: this.dropped }));
      this.deps.onRecords?.('dropped', this.dropped);
      this.deps.log.warn('audit_records_dropped', { count: this.dropped });
      this.dropped = 0;
    }
    const due = this.sinceCheckpoint > 0 && Date.now() - this.lastCheckpointMs >= this.config.checkpointIntervalMs;
    if (closing || due) {
      lines.push(this.checkpoint(closing));
      checkpointed = true;
    }
    if (lines.length > 0) await this.write(lines, checkpointed);
    if (batch.length > 0) this.deps.onRecords?.('written', batch.length);
  }

  private async write(lines: string[], sync: boolean): Promise<void> {
    try {
      await this.sink.write(`${lines.join('\n')}\n`, sync);
    } catch (err) {
      // The chain has moved on in memory: verify will show the gap these lines leave.
      this.deps.log.error('audit_write_failed', { error: (err as NodeJS.ErrnoException).code ?? 'unknown', lines: lines.length });
    }
  }

  /** Adds a line to the chain: `seq` first, `prev` last. */
  private append(fields: Record<string, unknown>): string {
    const line = JSON.stringify({ seq: ++this.seq, ...fields, prev: this.head });
    this.head = lineHash(line);
    this.sinceCheckpoint++;
    return line;
  }

  private checkpoint(closing: boolean): string {
    const unsigned = JSON.stringify({
      seq: ++this.seq,
      time: new Date().toISOString(),
      event: 'checkpoint',
      ...this.identity,
      records: this.sinceCheckpoint,
      key: this.keyId,
      ...(closing && { closing: true }),
      prev: this.head,
    });
    const line = signCheckpoint(unsigned, this.key);
    this.head = lineHash(line);
    this.sinceCheckpoint = 0;
    this.lastCheckpointMs = Date.now();
    return line;
  }
}

async function openSink(output: AuditOutput): Promise<{ sink: Sink; resume: Resume }> {
  if (output.kind === 'stdout') {
    // Each process run is a chain of its own on stdout: verify one run's lines.
    const sink: Sink = {
      write: (text) => new Promise((resolve, reject) => process.stdout.write(text, (err) => (err ? reject(err) : resolve()))),
      close: async () => undefined,
    };
    return { sink, resume: NEW_LOG };
  }
  const handle = await open(output.path, 'a+', 0o640);
  try {
    const { resume, cutShort } = await readResume(handle, output.path);
    // A line cut short by a crash stays, on a line of its own, for verify to report.
    if (cutShort) await handle.write('\n');
    return { sink: fileSink(handle), resume };
  } catch (err) {
    await handle.close();
    throw err;
  }
}

function fileSink(handle: FileHandle): Sink {
  return {
    async write(text, sync) {
      await handle.write(text);
      if (sync) await handle.datasync();
    },
    close: () => handle.close(),
  };
}
