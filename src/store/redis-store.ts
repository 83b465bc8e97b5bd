import type { RedisOptions } from '../config/authz-config.js';
import type { Logger } from '../telemetry/log.js';
import { createRedisClient, type RedisClient } from './redis-connection.js';
import { RevocationIndex, parseRevocationRecord, revocationKey } from './revocation-index.js';
import {
  StoreUnavailableError, type RevocationRecord, type RevocationSubject, type Store, type StoreHealth,
} from './store.js';

/**
 * Shared state for a mesh of sidecars.
 *
 * Keys (all under `redis.key_prefix`; values hold fingerprints, never tokens):
 *   <prefix>used:<fingerprint>    one-time use, SET NX PX until exp + skew
 *   <prefix>revocations           hash: revocation key → record (JSON)
 *   <prefix>revocations:version   bumped on every change, so an idle resync is one GET
 *   <prefix>set:<name>            issuer bookkeeping (a refresh family's access-token fingerprints)
 * and the channel <prefix>revocations carries each new record to every sidecar.
 *
 * Each sidecar mirrors the revocations in memory (checks never wait on Redis for them),
 * fed by pub/sub and a periodic resync. Revocations only grow until they expire, so a
 * resync merges, and writes back whatever Redis lost (a restart without persistence).
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
  private closed = false;

  private constructor(
    private readonly commands: RedisClient,
    private readonly subscriber: RedisClient,
    private readonly options: RedisOptions,
    private readonly log: Logger,
    private readonly now: () => number,
  ) {
    this.index = new RevocationIndex(now);
    const prefix = options.keyPrefix;
    this.keys = { used: `${prefix}used:`, sets: `${prefix}set:`, hash: `${prefix}revocations`, version: `${prefix}revocations:version`, channel: `${prefix}revocations` };
  }

  /** Connects and loads the revocations; with Redis down it still returns, failing closed until it can sync. */
  static async open(url: string, options: RedisOptions, log: Logger, now: () => number = Date.now): Promise<RedisStore> {
    const commands = createRedisClient(url, options, 'commands');
    const subscriber = createRedisClient(url, options, 'subscriber');
    const store = new RedisStore(commands, subscriber, options, log, now);
    store.watch();
    await Promise.all([whenReady(commands, options.commandTimeoutMs * 4), whenReady(subscriber, options.commandTimeoutMs * 4)]);
    await store.resync();
    store.resyncTimer = setInterval(() => void store.resync(), options.resyncIntervalMs).unref();
    return store;
  }

  async markUsed(jtiFingerprint: string, expiresAtMs: number): Promise<boolean> {
    const ttl = Math.max(1, Math.ceil(expiresAtMs - this.now()));
    try {
      return (await this.commands.set(`${this.keys.used}${jtiFingerprint}`, '1', 'PX', ttl, 'NX')) === 'OK';
    } catch {
      throw new StoreUnavailableError('redis did not record the one-time use');
    }
  }

  findRevocation(token: RevocationSubject): RevocationRecord | undefined {
    return this.index.find(token);
  }

  async revoke(record: RevocationRecord): Promise<void> {
    const text = JSON.stringify(record);
    try {
      await this.commands.hset(this.keys.hash, revocationKey(record.revocation), text);
      await this.commands.incr(this.keys.version);
      await this.commands.publish(this.keys.channel, text);
    } catch {
      throw new StoreUnavailableError('redis did not record the revocation');
    }
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

  async close(): Promise<void> {
    this.closed = true;
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
      if (full || !this.synced || this.feedLostAtMs !== undefined || version === null || version !== this.seenVersion) {
        await this.mergeAll();
        this.seenVersion = await this.commands.get(this.keys.version);
      }
      this.index.sweep();
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
   * Redis for its whole length; each page is small and quick.
   */
  private async mergeAll(): Promise<void> {
    const now = this.now();
    const shared = new Set<string>();
    const expired: string[] = [];
    let cursor = '0';
    do {
      const [next, page] = await this.commands.hscan(this.keys.hash, cursor, 'COUNT', SCAN_PAGE);
      for (let i = 0; i + 1 < page.length; i += 2) {
        const key = page[i]!;
        shared.add(key);
        const record = parseRevocationRecord(page[i + 1]!);
        if (!record || record.expiresAtMs <= now) expired.push(key);
        else this.index.add(record);
      }
      cursor = next;
    } while (cursor !== '0');
    const missing = [...this.index.records()].filter((r) => !shared.has(revocationKey(r.revocation)));
    for (let i = 0; i < expired.length; i += SCAN_PAGE) await this.commands.hdel(this.keys.hash, ...expired.slice(i, i + SCAN_PAGE));
    if (missing.length > 0) {
      const restore = this.commands.pipeline();
      for (const record of missing) restore.hsetnx(this.keys.hash, revocationKey(record.revocation), JSON.stringify(record));
      restore.incr(this.keys.version);
      await restore.exec();
      this.log.warn('revocations_restored', { count: missing.length });
    }
  }
}

/** Revocations read, or expired ones deleted, per command. */
const SCAN_PAGE = 1000;

/** Waits for the first connection, but not for long: a Redis that is down at start must not hold up the sidecar. */
function whenReady(client: RedisClient, timeoutMs: number): Promise<void> {
  if (client.status === 'ready') return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off('ready', done);
      resolve();
    };
    const timer = setTimeout(done, Math.max(timeoutMs, 1000));
    client.once('ready', done);
  });
}
