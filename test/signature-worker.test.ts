import type { Worker, WorkerOptions } from 'node:worker_threads';
import { SignJWT, generateKeyPair } from 'jose';
import { beforeAll, describe, expect, it, vi } from 'vitest';
import { signatureJob, verifyJwsSignature } from '../src/token/jws-signature.js';
import { verifyInWorker } from '../src/token/signature-worker.js';

/**
 * The signature worker is a real thread; the test only watches which threads start, and can ask
 * the next one to crash after answering some batches (an uncaught exception, as a bug would).
 * Whatever happens to a thread, every check gets its own verdict, never another batch's.
 * Bursts go to the thread (verifyInWorker); the last tests are about when verifyJwsSignature
 * keeps a check on the event loop instead.
 */
const threads = vi.hoisted(() => ({ started: [] as Worker[], crashAfterBatches: undefined as number | undefined }));

vi.mock('node:worker_threads', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:worker_threads')>();
  class WatchedWorker extends real.Worker {
    constructor(source: string, options: WorkerOptions) {
      const crashAfter = threads.crashAfterBatches;
      threads.crashAfterBatches = undefined;
      // Registered after the real handler: the thread answers that many batches, then throws.
      const crash = crashAfter === undefined ? ''
        : `\nlet answered = 0;\nparentPort.on('message', () => { if (++answered === ${crashAfter}) throw new Error('worker crashed'); });`;
      super(`${source}${crash}`, options);
      threads.started.push(this);
    }
  }
  return { ...real, Worker: WatchedWorker };
});

let token: string;
let forged: string;
let publicKey: CryptoKey;

beforeAll(async () => {
  const pair = await generateKeyPair('ES256');
  publicKey = pair.publicKey as CryptoKey;
  token = await new SignJWT({ sub: 'a' }).setProtectedHeader({ alg: 'ES256' }).sign(pair.privateKey);
  const other = await new SignJWT({ sub: 'b' }).setProtectedHeader({ alg: 'ES256' }).sign(pair.privateKey);
  // The signature of another payload: invalid for this one.
  forged = `${token.split('.').slice(0, 2).join('.')}.${other.split('.')[2]}`;
});

type Verdict = 'valid' | 'invalid';
const mixed = (i: number): Verdict => (i % 3 === 0 ? 'invalid' : 'valid');

/** `count` checks in one burst (every third forged, by default): many batches of up to 16 in flight at once. */
function burst(count: number, verdict: (i: number) => Verdict = mixed) {
  const expected = Array.from({ length: count }, (_, i) => verdict(i));
  return { expected, verdicts: Promise.all(expected.map((e) => threaded(e === 'valid' ? token : forged))) };
}

/** A check on the signature thread, valid or not. */
const threaded = (jws: string) => verifyInWorker(signatureJob(jws, 'ES256', publicKey)!).then((valid): Verdict => (valid ? 'valid' : 'invalid'));
const current = () => threads.started.at(-1)!;
const nextReply = (thread: Worker) => new Promise<unknown>((resolve) => thread.once('message', resolve));

/** Ends the current thread, so that the next check starts a new one. */
/** A live thread, and the reply it posted for one check of a valid token. */
async function replyForValidToken(): Promise<{ thread: Worker; reply: unknown }> {
  await burst(1).verdicts;
  const thread = current();
  const reply = nextReply(thread);
  await burst(1, () => 'valid').verdicts;
  return { thread, reply: await reply };
}

async function withoutWorker(): Promise<void> {
  await burst(1).verdicts;
  await current().terminate();
}

describe('the signature worker', () => {
  it('a thread killed mid-burst: every pending check is answered with its own verdict, and a new thread takes over', async () => {
    await burst(1).verdicts;
    const killed = current();
    const { expected, verdicts } = burst(300);
    await nextReply(killed);
    await killed.terminate();
    expect(await verdicts).toEqual(expected);

    const after = burst(40);
    expect(await after.verdicts).toEqual(after.expected);
    expect(current()).not.toBe(killed);
  });

  it('a thread that crashes (uncaught exception) after two batches: every check still gets its own verdict', async () => {
    await withoutWorker();
    threads.crashAfterBatches = 2;
    const { expected, verdicts } = burst(300);
    const crashing = current();
    expect(await verdicts).toEqual(expected);
    const after = burst(40);
    expect(await after.verdicts).toEqual(after.expected);
    expect(current()).not.toBe(crashing);
  });

  it('a late reply from a failed thread does not answer the batch its replacement is verifying', async () => {
    // A reply of the thread about to fail, as it posted it before failing.
    const { thread: failed, reply: staleReply } = await replyForValidToken();
    // Node can deliver a thread's crash ahead of the replies it posted just before: 'error' first.
    failed.emit('error', new Error('worker crashed'));
    const { expected, verdicts } = burst(20, () => 'invalid');
    // The burst's first batch goes to the new thread in this turn's immediates, before it can answer.
    await new Promise((r) => setImmediate(r));
    expect(current()).not.toBe(failed);
    failed.emit('message', staleReply);
    expect(await verdicts).toEqual(expected);
    await failed.terminate();
  });

  it('a reply for another batch from the current thread is refused, and the checks it claimed to answer get their own verdicts', async () => {
    const { thread, reply: earlierReply } = await replyForValidToken();
    // Sent at once to the idle thread: the first check is a batch of its own, in flight now.
    const { expected, verdicts } = burst(20, () => 'invalid');
    thread.emit('message', earlierReply);
    expect(await verdicts).toEqual(expected);
  });

  it('one check at a time, with the event loop idle between: each is verified on the event loop, no thread is woken', async () => {
    await withoutWorker();
    const before = threads.started.length;
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setImmediate(r));
      expect(await verifyJwsSignature(i % 2 ? forged : token, 'ES256', publicKey)).toBe(i % 2 ? 'invalid' : 'valid');
    }
    expect(threads.started.length).toBe(before);
  });

  it('a burst in one turn goes to the thread (beside at most one check on the event loop), each with its own verdict', async () => {
    await withoutWorker();
    const before = threads.started.length;
    const expected = Array.from({ length: 40 }, (_, i) => mixed(i));
    const verdicts = await Promise.all(expected.map((e) => verifyJwsSignature(e === 'valid' ? token : forged, 'ES256', publicKey)));
    expect(verdicts).toEqual(expected);
    expect(threads.started.length).toBe(before + 1);
  });
});
