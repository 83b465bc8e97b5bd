import { verify, type KeyObject, type VerifyKeyObjectInput } from 'node:crypto';
import { Worker } from 'node:worker_threads';

/**
 * Signature checks, done in one worker thread and in batches: the checks asked for during one
 * turn of the event loop go over in messages of up to MAX_BATCH and come back the same way. The event loop keeps
 * answering other checks meanwhile, and the math runs on another core. Batching matters: waking
 * a sleeping thread costs tens of µs of the event loop's time on a virtual machine (~25–60 µs on
 * the 2-core VM of the benchmark), which libuv's thread pool pays for almost every token and a
 * batch pays once. If the worker fails, what it owed and what follows is checked inline until the
 * next batch starts a new one. Each batch has an id its reply must carry: a reply that comes late
 * from a worker that failed or was replaced, or out of step, never answers another batch.
 */

export interface SignatureJob {
  hash: string | null;
  key: KeyObject;
  /** How crypto.verify reads the key: dsaEncoding, padding, saltLength. */
  options: Omit<VerifyKeyObjectInput, 'key'>;
  data: Buffer;
  signature: Buffer;
}

interface Pending extends SignatureJob {
  resolve(valid: boolean): void;
}

interface Batch {
  id: number;
  jobs: Pending[];
}

/** What the worker posts back for one batch. */
interface BatchReply {
  batch: number;
  results: boolean[];
}

// The worker's side, as source: it runs as CommonJS, wherever this module was loaded from.
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const { verify } = require('node:crypto');
const keys = new Map();
parentPort.on('message', ({ batch, newKeys, jobs }) => {
  for (const [id, key] of newKeys) keys.set(id, key);
  parentPort.postMessage({ batch, results: jobs.map(({ hash, keyId, options, data, signature }) => {
    try {
      return verify(hash, data, { ...options, key: keys.get(keyId) }, signature);
    } catch {
      return false;
    }
  }) });
});
`;

let worker: Worker | undefined;
let queued: Pending[] = [];
/** Batches sent, in order: the worker answers them in the same order. */
const sent: Batch[] = [];
let nextBatchId = 0;
const keyIds = new WeakMap<KeyObject, number>();
let nextKeyId = 0;
/** Keys the current worker has been sent. */
let workerKeys = new Set<number>();

/**
 * Jobs per message at most. With one batch per turn, a burst of new tokens goes over as one
 * batch that the worker verifies while the event loop, all its checks waiting, sits idle; then
 * the event loop finishes them while the worker sits idle. Smaller batches, and the first job
 * of a burst sent at once to an idle worker, let the two overlap.
 */
const MAX_BATCH = 16;

export function verifyInWorker(job: SignatureJob): Promise<boolean> {
  return new Promise((resolve) => {
    queued.push({ ...job, resolve });
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
  const newKeys: [number, KeyObject][] = [];
  const jobs = batch.map(({ hash, key, options, data, signature }) => {
    let keyId = keyIds.get(key);
    if (keyId === undefined) keyIds.set(key, (keyId = nextKeyId++));
    if (!workerKeys.has(keyId)) {
      workerKeys.add(keyId);
      newKeys.push([keyId, key]);
    }
    return { hash, keyId, options, data, signature };
  });
  if (sent.length === 0) thread.ref();
  const id = nextBatchId++;
  sent.push({ id, jobs: batch });
  thread.postMessage({ batch: id, newKeys, jobs });
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
    if (oldest?.id !== batch || results?.length !== oldest.jobs.length) return void retire();
    sent.shift();
    oldest.jobs.forEach((job, i) => job.resolve(results[i] === true));
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

function verifyInline(job: Pending): void {
  try {
    job.resolve(verify(job.hash, job.data, { ...job.options, key: job.key }, job.signature));
  } catch {
    job.resolve(false);
  }
}
