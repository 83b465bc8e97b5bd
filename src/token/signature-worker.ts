import { verify, type VerifyKeyObjectInput } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * Signature checks: on the event loop when it has nothing else to do, otherwise in one worker
 * thread, in batches.
 *
 * Which one (verifySignature): a hand-off costs a wake-up of each thread (~25-60 µs of latency each
 * on the 2-core VM of the benchmark) and the event loop's time to pack and unpack the job. That
 * buys something only when the event loop has other checks to work on meanwhile. So a check is
 * verified inline when the signature thread has nothing outstanding and no check was verified
 * inline since the event loop last went round (one check in flight, or the first of a quiet
 * turn); every other check of a turn goes to the thread. At one check in flight nothing is handed
 * off; under load at most one check a turn, and only while the thread is idle, is verified here.
 *
 * The hand-off: the checks asked for during one turn of the event loop go over in messages of
 * up to MAX_BATCH, each one ArrayBuffer that is transferred, not copied (signing inputs and
 * signatures written straight into it from the token), and come back as one byte per check.
 * If the worker fails, what it owed and what follows is checked inline until the next batch
 * starts a new one. Each batch has an id its reply must carry: a reply that comes late from a
 * worker that failed or was replaced, or out of step, never answers another batch.
 */

export interface SignatureJob {
  hash: string | null;
  /** The key and how crypto.verify reads it (dsaEncoding, padding, saltLength): one object per key and algorithm, reused. */
  key: VerifyKeyObjectInput;
  /** A compact JWS whose segments were checked to be base64url: the signing input is token[0, dot), the signature what follows. */
  token: string;
  dot: number;
}

interface Pending {
  job: SignatureJob;
  resolve(valid: boolean): void;
}

interface Batch {
  id: number;
  jobs: Pending[];
}

/** What the worker posts back for one batch: one byte per check, 1 for a signature that verifies. */
interface BatchReply {
  batch: number;
  results: Uint8Array;
}

/** Per check in a batch's buffer: key id, signing input length, signature length (u32 each), then the bytes of both. */
const JOB_HEADER = 12;

// The worker's side, as source: it runs as CommonJS, wherever this module was loaded from.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { verify } = require('node:crypto');
const keys = [];
parentPort.on('message', ({ batch, newKeys, count, bytes }) => {
  for (const [id, hash, key] of newKeys) keys[id] = { hash, key };
  const view = new DataView(bytes);
  const results = new Uint8Array(count);
  let at = 0;
  for (let i = 0; i < count; i++) {
    const key = keys[view.getUint32(at)];
    const dataLength = view.getUint32(at + 4);
    const signatureLength = view.getUint32(at + 8);
    const data = new Uint8Array(bytes, at + ${JOB_HEADER}, dataLength);
    const signature = new Uint8Array(bytes, at + ${JOB_HEADER} + dataLength, signatureLength);
    at += ${JOB_HEADER} + dataLength + signatureLength;
    try {
      results[i] = key !== undefined && verify(key.hash, data, key.key, signature) ? 1 : 0;
    } catch {
      results[i] = 0;
    }
  }
  parentPort.postMessage({ batch, results }, [results.buffer]);
});
`;

let worker: Worker | undefined;
let queued: Pending[] = [];
/** Batches sent, in order: the worker answers them in the same order. */
const sent: Batch[] = [];
let nextBatchId = 0;
const keyIds = new WeakMap<VerifyKeyObjectInput, number>();
let nextKeyId = 0;
/** Keys the current worker has been sent. */
let workerKeys = new Set<number>();
/** A check was verified inline since the event loop last went round. */
let inlinedThisTurn = false;
const newTurn = () => {
  inlinedThisTurn = false;
};

/**
 * Jobs per message at most. With one batch per turn, a burst of new tokens goes over as one
 * batch that the worker verifies while the event loop, all its checks waiting, sits idle; then
 * the event loop finishes them while the worker sits idle. Smaller batches, and the first job
 * of a burst sent at once to an idle worker, let the two overlap.
 */
const MAX_BATCH = 16;

/** Inline or on the signature thread, whichever answers sooner (see above). */
export function verifySignature(job: SignatureJob): Promise<boolean> {
  if (inlinedThisTurn || sent.length > 0 || queued.length > 0) return verifyInWorker(job);
  inlinedThisTurn = true;
  setImmediate(newTurn);
  return Promise.resolve(verifyHere(job));
}

/** Always on the signature thread (unless it cannot start). */
export function verifyInWorker(job: SignatureJob): Promise<boolean> {
  return new Promise((resolve) => {
    queued.push({ job, resolve });
    if (queued.length >= MAX_BATCH || (sent.length === 0 && worker)) flush();
    else if (queued.length === 1) setImmediate(flush);
  });
}

function flush(): void {
  if (queued.length === 0) return;
  const batch = queued;
  queued = [];
  const thread = worker ?? startWorker();
  if (!thread) return void batch.forEach(verifyInline);
  const newKeys: [number, string | null, VerifyKeyObjectInput][] = [];
  let size = 0;
  for (const { job } of batch) {
    let keyId = keyIds.get(job.key);
    if (keyId === undefined) keyIds.set(job.key, (keyId = nextKeyId++));
    if (!workerKeys.has(keyId)) {
      workerKeys.add(keyId);
      newKeys.push([keyId, job.hash, job.key]);
    }
    // base64url: 3 bytes per 4 characters, rounded down (no padding).
    size += JOB_HEADER + job.dot + Math.floor(((job.token.length - job.dot - 1) * 3) / 4);
  }
  const bytes = Buffer.from(new ArrayBuffer(size));
  let at = 0;
  for (const { job } of batch) {
    const { token, dot } = job;
    bytes.writeUInt32BE(keyIds.get(job.key)!, at);
    // latin1 with a length: only the signing input's characters are written.
    const data = bytes.write(token, at + JOB_HEADER, dot, 'latin1');
    const signature = bytes.write(token.slice(dot + 1), at + JOB_HEADER + data, 'base64url');
    bytes.writeUInt32BE(data, at + 4);
    bytes.writeUInt32BE(signature, at + 8);
    at += JOB_HEADER + data + signature;
  }
  if (sent.length === 0) thread.ref();
  const id = nextBatchId++;
  sent.push({ id, jobs: batch });
  thread.postMessage({ batch: id, newKeys, count: batch.length, bytes: bytes.buffer }, [bytes.buffer]);
}

function startWorker(): Worker | undefined {
  let thread: Worker;
  try {
    thread = new Worker(WORKER_SOURCE, { eval: true });
  } catch {
    return undefined;
  }
  worker = thread;
  workerKeys = new Set();
  thread.unref();
  thread.on('message', ({ batch, results }: BatchReply) => {
    // A worker that failed may still deliver what it posted before: its batches were checked inline.
    if (worker !== thread) return;
    const oldest = sent[0];
    if (oldest?.id !== batch || !(results instanceof Uint8Array) || results.length !== oldest.jobs.length) return void retire();
    sent.shift();
    oldest.jobs.forEach((pending, i) => pending.resolve(results[i] === 1));
    // Idle: the worker must not keep the process alive.
    if (sent.length === 0) thread.unref();
  });
  /** Failed, or out of step: what it still owed is checked here instead; the next batch starts a new one. */
  const retire = () => {
    if (worker !== thread) return;
    worker = undefined;
    for (const batch of sent.splice(0)) batch.jobs.forEach(verifyInline);
    void thread.terminate();
  };
  thread.on('error', retire);
  thread.on('exit', retire);
  return thread;
}

function verifyInline(pending: Pending): void {
  pending.resolve(verifyHere(pending.job));
}

/** On this thread. */
export function verifyHere({ hash, key, token, dot }: SignatureJob): boolean {
  try {
    return verify(hash, Buffer.from(token.slice(0, dot), 'latin1'), key, Buffer.from(token.slice(dot + 1), 'base64url'));
  } catch {
    return false;
  }
}
