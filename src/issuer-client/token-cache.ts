/**
 * Tokens the issuer gave, kept until shortly before they expire. Concurrent misses for one key
 * share one issuer request; the entries are bounded (least recently used go first); `clear()`
 * drops them all, e.g. when the certificate they are bound to is rotated. Keys kept fresh
 * (a workload's own client-credentials tokens) are renewed in the background before they go
 * stale, so their callers wait on the issuer only the first time.
 */

import { LRUCache } from 'lru-cache';

export interface ExpiringToken {
  expiresAtMs: number;
  lifetimeMs: number;
}

export type Mint<T> = () => Promise<T>;

export interface TokenCacheOptions {
  maxEntries: number;
  /** Milliseconds since the epoch; tests move it. */
  now?: () => number;
}

interface Entry<T> {
  token: T;
  /** From then on the token is not handed out: the callee must still accept it on arrival. */
  staleAtMs: number;
  /** Set for kept-fresh keys: how to renew, and the timer that will. */
  renew?: Mint<T>;
  timer?: NodeJS.Timeout;
}

const MIN_MARGIN_MS = 5_000;
const RETRY_MS = 1_000;
const MIN_RENEW_MS = 1_000;
const MAX_RETRY_MS = 30_000;

export class TokenCache<T extends ExpiringToken> {
  private readonly entries: LRUCache<string, Entry<T>>;
  private readonly pending = new Map<string, Promise<T>>();
  private readonly now: () => number;
  // Bumped by clear(): a mint started before it must not fill the cache after it.
  private generation = 0;

  constructor(options: TokenCacheOptions) {
    this.now = options.now ?? Date.now;
    this.entries = new LRUCache<string, Entry<T>>({
      max: options.maxEntries,
      dispose: (entry) => clearTimeout(entry.timer),
    });
  }

  /** The cached token for `key`, or one from `mint` (shared with concurrent callers); `perRequest` always mints. */
  get(key: string, mint: Mint<T>, { perRequest = false }: { perRequest?: boolean } = {}): Promise<T> {
    if (perRequest) return Promise.resolve().then(mint);
    return this.cached(key) ?? this.mintOnce(key, mint, false);
  }

  /**
   * As get(), and then renewed in the background before it goes stale. A failed renewal is
   * retried while the old token is still good; once it is stale the next caller mints, and
   * sees the error if the issuer still fails.
   */
  keepFresh(key: string, mint: Mint<T>): Promise<T> {
    return this.cached(key) ?? this.mintOnce(key, mint, true);
  }

  /** Drops every token; kept-fresh keys start minting again at once. */
  clear(): void {
    const kept = [...this.entries.entries()].flatMap(([key, entry]) => (entry.renew ? [[key, entry.renew] as const] : []));
    this.generation += 1;
    this.entries.clear();
    this.pending.clear();
    for (const [key, renew] of kept) this.mintOnce(key, renew, true).catch(() => undefined);
  }

  /** Stops background renewals. */
  close(): void {
    this.generation += 1;
    this.entries.clear();
    this.pending.clear();
  }

  /** Whether `key` has a token to hand out now (for a cache-hit attribute or metric). */
  has(key: string): boolean {
    const entry = this.entries.peek(key);
    return entry !== undefined && this.now() < entry.staleAtMs;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The token `key` has to hand out now, if any: what get() would return without minting. */
  current(key: string): T | undefined {
    const entry = this.entries.get(key);
    if (entry === undefined) return undefined;
    if (this.now() < entry.staleAtMs) return entry.token;
    this.entries.delete(key);
    return undefined;
  }

  private cached(key: string): Promise<T> | undefined {
    const token = this.current(key);
    return token === undefined ? undefined : Promise.resolve(token);
  }

  private mintOnce(key: string, mint: Mint<T>, keepFresh: boolean): Promise<T> {
    const inflight = this.pending.get(key);
    if (inflight) return inflight;
    const generation = this.generation;
    // Called on the next microtask, so even a mint that throws at once is a rejection here.
    const minting = Promise.resolve().then(mint).then((token) => {
      if (generation === this.generation) this.store(key, token, keepFresh ? mint : undefined);
      return token;
    }).finally(() => {
      if (this.pending.get(key) === minting) this.pending.delete(key);
    });
    this.pending.set(key, minting);
    return minting;
  }

  private store(key: string, token: T, renew: Mint<T> | undefined): void {
    const margin = Math.max(token.lifetimeMs / 10, MIN_MARGIN_MS);
    const entry: Entry<T> = { token, staleAtMs: token.expiresAtMs - margin };
    const usableMs = entry.staleAtMs - this.now();
    if (usableMs <= 0) return;
    // Renewal starts a margin before staleness, leaving that margin for retries, and never in
    // the first half of the token's use: a short-lived token must not be renewed in a loop.
    const renewInMs = Math.max(usableMs - margin, usableMs / 2);
    if (renew && renewInMs >= MIN_RENEW_MS) {
      entry.renew = renew;
      entry.timer = this.renewLater(key, entry, renewInMs, RETRY_MS);
    }
    this.entries.set(key, entry);
  }

  private renewLater(key: string, entry: Entry<T>, delayMs: number, retryMs: number): NodeJS.Timeout {
    return setTimeout(() => {
      if (this.entries.peek(key) !== entry || entry.renew === undefined) return;
      this.mintOnce(key, entry.renew, true).catch(() => {
        if (this.entries.peek(key) !== entry || this.now() + retryMs >= entry.staleAtMs) return;
        entry.timer = this.renewLater(key, entry, retryMs, Math.min(retryMs * 2, MAX_RETRY_MS));
      });
    }, delayMs).unref();
  }
}
