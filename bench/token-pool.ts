/**
 * Unique access tokens for the soak, signed ahead of the load by a worker thread: an ES256
 * signature costs ~30 µs of CPU when batched (~140 µs one at a time), so signing on the load's
 * event loop would pace the load. Every token is signAccessToken's, with a fresh jti.
 *
 * This file is also the worker's script: the worker answers each request for N tokens with N
 * tokens, signed in batches.
 */

import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads';
import { signAccessToken, type AccessTokenInput, type SigningKey } from '../src/devkit/signing-key.js';

/** Signatures in flight at once in the worker: WebCrypto runs them on libuv's thread pool. */
const BATCH = 200;

interface SignerData {
  key: SigningKey;
  input: AccessTokenInput;
}

export class TokenPool {
  private readonly worker: Worker;
  private tokens: string[] = [];
  private next = 0;
  private requested = false;
  private failure: Error | undefined;
  private onTokens: (() => void) | undefined;
  /** Times take() found no token ready: the load waited on signing. */
  stalls = 0;

  /** `ahead`: how many tokens to keep signed before they are needed. */
  constructor(key: SigningKey, input: AccessTokenInput, private readonly ahead: number) {
    this.worker = new Worker(new URL(import.meta.url), { workerData: { key, input } satisfies SignerData });
    this.worker.on('message', (batch: string[]) => {
      this.tokens = [...this.tokens.slice(this.next), ...batch];
      this.next = 0;
      this.requested = false;
      this.onTokens?.();
    });
    this.worker.on('error', (err) => {
      this.failure = err;
      this.onTokens?.();
    });
  }

  /** Resolves once `ahead` tokens are signed: the pool the load starts with. */
  async fill(): Promise<void> {
    this.request();
    await new Promise<void>((resolve) => { this.onTokens = resolve; });
    this.onTokens = undefined;
    if (this.failure) throw this.failure;
  }

  /** A token never handed out before, or undefined if none is signed yet (counted as a stall). */
  take(): string | undefined {
    if (this.failure) throw this.failure;
    if (this.tokens.length - this.next < this.ahead / 2) this.request();
    if (this.next === this.tokens.length) {
      this.stalls++;
      return undefined;
    }
    return this.tokens[this.next++];
  }

  close(): Promise<number> {
    return this.worker.terminate();
  }

  private request(): void {
    if (this.requested) return;
    this.requested = true;
    this.worker.postMessage(this.ahead);
  }
}

if (!isMainThread) {
  const { key, input } = workerData as SignerData;
  parentPort!.on('message', async (count: number) => {
    const batch: string[] = [];
    while (batch.length < count) {
      const size = Math.min(BATCH, count - batch.length);
      batch.push(...(await Promise.all(Array.from({ length: size }, () => signAccessToken(key, input)))));
    }
    parentPort!.postMessage(batch);
  });
}
