import { randomBytes } from 'node:crypto';
import type { Logger } from '../telemetry/log.js';
import type { RedisOptions } from '../vocabulary/redis-options.js';
import type { StoreHealth } from '../vocabulary/store-health.js';
import { createRedisClient, whenReady, type RedisClient } from './redis-connection.js';
import { RevocationIndex, mergeRevocation, parseRevocationRecord, revocationKey } from './revocation-index.js';
import { withDeadline } from './deadline.js';
import { defineRevocationScripts, mergeRevocations, revocationKeys, writeRevocation } from './revocation-scripts.js';
import { UseReleaser, defineUseRelease } from './use-release.js';
import { StoreUnavailableError, type HeldUses, type OneTimeCounts, type RevocationRecord, type RevocationSubject, type Store } from './store.js';

/**
 * Shared state for a mesh of sidecars.
 *
 * Keys (all under `redis.key_prefix`; values hold fingerprints, never tokens):
 *   <prefix>used:<fingerprint>    one-time use, SET NX PX until exp + skew, holding the check's claim
 *   <prefix>revocations           hash: revocation key → record (JSON)
 *   <prefix>revocations:version   bumped on every change, so an idle resync is one GET
 *   <prefix>set:<name>            issuer bookkeeping (a refresh family's access-token fingerprints)
 * and the channel <prefix>revocations carries each new record to every sidecar.
 *
 * Each sidecar mirrors the revocations in memory (checks never wait on Redis for them),
 * fed by pub/sub and a periodic resync. Revocations only grow until they expire: every write
 * is a merge in Redis (revocation-scripts.ts), every record read or received merges into the
 * index, and a resync merges both ways, writing back whatever Redis lost (a restart without
 * persistence) or had shortened (a hostile writer). Records that are not revocations are
 * ignored and counted, never logged.
 */
export class RedisStore implements Store {
  private readonly index: RevocationIndex;
  private readonly keys: { used: string; sets: string; hash: string; version: string; channel: string };
  private resyncTimer: NodeJS.Timeout | undefined;
  private resyncing: Promise<void> | undefined;
  /** Until the first full sync the state is unknown: fail closed. */
  private synced = false;
  /** When the feed was last seen broken; undefined while it is whole. */
  private feedLostAtMs: number | undefined;
  private seenVersion: string | null | undefined;
  /** Resyncs since the last full read: one in FULL_READ_EVERY reads the hash even if the version did not move. */
  private resyncsSinceFullRead = 0;
  /** Records read or received that were not revocations, and how many of them were logged. */
  private ignored = 0;
  private ignoredLogged = 0;
  private closed = false;
  private readonly releaser: UseReleaser;
  /** One-time marks hold `<claimPrefix><counter>`: unique to the check across every replica. */
  private readonly claimPrefix = `${randomBytes(9).toString('base64url')}:`;
  private claims = 0;

  private constructor(
    private readonly commands: RedisClient,
    private readonly subscriber: RedisClient,
    private readonly options: RedisOptions,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.index = new RevocationIndex(now);
    this.releaser = new UseReleaser(commands, log, now);
    const prefix = options.keyPrefix;
    this.keys = { used: `${prefix}used:`, sets: `${prefix}set:`, ...revocationKeys(prefix) };
  }

  /** Connects and loads the revocations; with Redis down it still returns, failing closed until it can sync. */
  static async open(url: string, options: RedisOptions, log: Logger, now: () => number = Date.now): Promise<RedisStore> {
    const commands = createRedisClient(url, options, 'commands', log);
    const subscriber = createRedisClient(url, options, 'subscriber', log);
    defineRevocationScripts(commands);
    defineUseRelease(commands);
    const store = new RedisStore(commands, subscriber, options, log, now);
    store.watch();
    await Promise.all([whenReady(commands, options.commandTimeoutMs * 4), whenReady(subscriber, options.commandTimeoutMs * 4)]);
    await store.resync();
    store.resyncTimer = setInterval(() => void store.resync(), options.resyncIntervalMs).unref();
    return store;
  }

  /**
   * SET NX with a value unique to this check, answered within command_timeout of the call
   * however many checks are in flight. A SET that is not answered in time may still be
   * applied when Redis wakes, so it is released at once (in the background, after the SET on
   * the same connection): the check's state_unavailable leaves the token unspent.
   */
  async markUsed(jtiFingerprint: string, expiresAtMs: number, held?: HeldUses): Promise<boolean> {
    const key = `${this.keys.used}${jtiFingerprint}`;
    const claim = `${this.claimPrefix}${(this.claims++).toString(36)}`;
    const ttl = Math.max(1, Math.ceil(expiresAtMs - this.now()));
    let reply;
    try {
      reply = await withDeadline(this.commands.set(key, claim, 'PX', ttl, 'NX'), this.options.commandTimeoutMs);
    } catch {
      this.releaser.release(key, claim, expiresAtMs);
      throw new StoreUnavailableError('redis did not record the one-time use');
    }
    if (reply !== 'OK') return false;
    held?.push(() => this.releaser.release(key, claim, expiresAtMs));
    return true;
  }

  findRevocation(token: RevocationSubject): RevocationRecord | undefined {
    return this.index.find(token);
  }

  async revoke(record: RevocationRecord): Promise<void> {
    await writeRevocation(this.commands, this.keys, record);
    this.index.add(record);
  }

  async addToSet(name: string, member: string, expiresAtMs: number): Promise<void> {
    const key = `${this.keys.sets}${name}`;
    try {
      await this.commands.sadd(key, member);
      // Only ever lengthen: members added later may live longer than the first.
      await this.commands.pexpireat(key, Math.ceil(expiresAtMs), 'GT');
      await this.commands.pexpireat(key, Math.ceil(expiresAtMs), 'NX');
    } catch {
      throw new StoreUnavailableError('redis did not record the set member');
    }
  }

  async members(name: string): Promise<string[]> {
    try {
      return await this.commands.smembers(`${this.keys.sets}${name}`);
    } catch {
      throw new StoreUnavailableError('redis did not answer');
    }
  }

  health(): StoreHealth {
    if (!this.synced) return { state: 'unavailable' };
    if (this.feedLostAtMs === undefined) return { state: 'ok' };
    if (this.now() - this.feedLostAtMs <= this.options.maxStalenessMs) return { state: 'degraded', sinceMs: this.feedLostAtMs };
    return { state: 'unavailable' };
  }

  /** Revocations held in memory (for metrics and tests). */
  get revocationCount(): number {
    return this.index.size;
  }

  oneTimeCounts(): OneTimeCounts {
    return { refusedFull: 0, releasesAbandoned: this.releaser.abandonedCount };
  }

  /** Records read from Redis or received that were not revocations (for metrics and tests). */
  get ignoredRecordCount(): number {
    return this.ignored;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.releaser.close();
    clearInterval(this.resyncTimer);
    await Promise.allSettled([this.resyncing]);
    this.subscriber.disconnect();
    this.commands.disconnect();
  }

  private watch(): void {
    const sub = this.subscriber;
    sub.on('message', (channel: string, text: string) => {
      if (channel !== this.keys.channel) return;
      const record = parseRevocationRecord(text);
      if (record) this.index.add(record);
      else this.ignored++;
    });
    // Messages sent while the subscriber was away are lost: a resync fills the gap.
    sub.on('ready', () => {
      sub.subscribe(this.keys.channel).then(() => this.resync(true), () => this.feedLost());
    });
    sub.on('close', () => this.feedLost());
    // ioredis reconnects by itself; errors are reported through 'close'. Without a listener they would be thrown.
    sub.on('error', () => undefined);
    this.commands.on('error', () => undefined);
  }

  private feedLost(): void {
    if (this.closed || this.feedLostAtMs !== undefined) return;
    this.feedLostAtMs = this.now();
    this.log.warn('revocation_feed_lost', { max_staleness_ms: this.options.maxStalenessMs });
  }

  /** One at a time; `full` forces a full read even if the version did not move. */
  private resync(full = false): Promise<void> {
    this.resyncing ??= this.syncOnce(full).finally(() => { this.resyncing = undefined; });
    return this.resyncing;
  }

  private async syncOnce(full: boolean): Promise<void> {
    if (this.closed) return;
    try {
      const version = await this.commands.get(this.keys.version);
      // No version key: shared state is empty or was lost, so merge (and write back) whatever is known here.
      // A writer that does not bump the version (one that shortened a record) is caught by the periodic full read.
      if (full || !this.synced || this.feedLostAtMs !== undefined || version === null || version !== this.seenVersion
        || ++this.resyncsSinceFullRead >= FULL_READ_EVERY) {
        this.resyncsSinceFullRead = 0;
        await this.mergeAll();
        this.seenVersion = await this.commands.get(this.keys.version);
      }
      this.index.sweep();
      this.logIgnored();
      this.synced = true;
      if (this.feedLostAtMs !== undefined && this.subscriber.status === 'ready') {
        this.log.info('revocation_feed_restored', { lost_ms: this.now() - this.feedLostAtMs });
        this.feedLostAtMs = undefined;
      }
    } catch {
      this.feedLost();
    }
  }

  /**
   * Reads the shared hash in HSCAN pages rather than one HGETALL: with 100,000 revocations an
   * HGETALL reply takes longer than command_timeout (so the sync never succeeded) and holds
   * Redis for its whole length; each page is small and quick. Every record read merges into the
   * index; every live record the hash does not hold in full (missing, shortened, not a
   * revocation) is merged back into it.
   */
  private async mergeAll(): Promise<void> {
    const now = this.now();
    const whole = new Set<string>();
    const expired: string[] = [];
    let cursor = '0';
    do {
      const [next, page] = await this.commands.hscan(this.keys.hash, cursor, 'COUNT', SCAN_PAGE);
      for (let i = 0; i + 1 < page.length; i += 2) {
        const key = page[i]!;
        const text = page[i + 1]!;
        const record = parseRevocationRecord(text, key);
        if (!record) this.ignored++;
        else if (record.expiresAtMs <= now) expired.push(key, text);
        else if (mergeRevocation(record, this.index.add(record)) === record) whole.add(key);
      }
      cursor = next;
    } while (cursor !== '0');
    for (let i = 0; i < expired.length; i += 2 * SCAN_PAGE) {
      await this.commands.deleteRevocationsUnchanged(this.keys.hash, ...expired.slice(i, i + 2 * SCAN_PAGE));
    }
    const behind = [...this.index.records()].filter((r) => !whole.has(revocationKey(r.revocation)));
    const restored = await mergeRevocations(this.commands, this.keys, behind);
    if (restored > 0) this.log.warn('revocations_restored', { count: restored });
  }

  private logIgnored(): void {
    if (this.ignored === this.ignoredLogged) return;
    this.log.warn('revocation_records_ignored', { count: this.ignored - this.ignoredLogged });
    this.ignoredLogged = this.ignored;
  }
}

/** Revocations read or deleted per command. */
const SCAN_PAGE = 1000;

/** Resyncs between two full reads of the hash when its version does not move (the periodic one). */
const FULL_READ_EVERY = 10;
