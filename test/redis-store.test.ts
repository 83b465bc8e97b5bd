import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import { StoreUnavailableError, type RevocationRecord } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import type { RedisOptions } from '../src/vocabulary/redis-options.js';
import {
  RedisSentinel, SHARED_REDIS_URL, deleteKeysUnder, freePort, keysUnder, requireSharedRedis, uniquePrefix,
} from './support/redis.js';

let prefix: string;
let admin: Redis;
const stores: RedisStore[] = [];

const options = (): RedisOptions => ({ keyPrefix: prefix, commandTimeoutMs: 250, maxStalenessMs: 30_000, resyncIntervalMs: 200 });
async function open(): Promise<RedisStore> {
  const store = await RedisStore.open(SHARED_REDIS_URL, options(), silentLogger);
  stores.push(store);
  return store;
}
const subject = (jtiFingerprint: string, extra = {}) => ({ jtiFingerprint, sub: 's', clientId: 'c', iat: Math.floor(Date.now() / 1000), ...extra });
const jtiRevocation = (fp: string, ttlMs = 60_000): RevocationRecord => ({ revocation: { kind: 'jti', fingerprint: fp }, expiresAtMs: Date.now() + ttlMs });

async function until(condition: () => boolean, timeoutMs = 3000): Promise<number> {
  const started = performance.now();
  while (!condition()) {
    if (performance.now() - started > timeoutMs) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - started;
}

beforeAll(async () => {
  await requireSharedRedis();
  admin = new Redis(SHARED_REDIS_URL);
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
});
afterAll(() => admin.disconnect());

describe('RedisStore', () => {
  it('records a one-time use once, with an expiry at the token\'s exp + skew', async () => {
    prefix = uniquePrefix();
    const store = await open();
    const expiresAt = Date.now() + 60_000;
    expect(await store.markUsed('fp-1', expiresAt)).toBe(true);
    expect(await store.markUsed('fp-1', expiresAt)).toBe(false);
    const ttl = await admin.pttl(`${prefix}used:fp-1`);
    expect(ttl).toBeGreaterThan(55_000);
    expect(ttl).toBeLessThanOrEqual(60_000);
  });

  it('first use wins across replicas: 3 stores, 100 concurrent uses, exactly one true', async () => {
    prefix = uniquePrefix();
    const replicas = await Promise.all([open(), open(), open()]);
    const results = await Promise.all(Array.from({ length: 100 }, (_, i) => replicas[i % 3]!.markUsed('same-token', Date.now() + 60_000)));
    expect(results.filter(Boolean)).toHaveLength(1);
  });

  it('propagates a revocation to another replica through pub/sub', async () => {
    prefix = uniquePrefix();
    const [a, b] = await Promise.all([open(), open()]);
    expect(b.findRevocation(subject('fp-r'))).toBeUndefined();
    await a.revoke(jtiRevocation('fp-r'));
    const delay = await until(() => b.findRevocation(subject('fp-r')) !== undefined, 1000);
    expect(delay).toBeLessThan(1000);
  });

  it('picks up a revocation whose message it missed at the next resync', async () => {
    prefix = uniquePrefix();
    const store = await open();
    // Written as another replica would, but with the PUBLISH lost.
    await admin.hset(`${prefix}revocations`, 'jti:fp-missed', JSON.stringify(jtiRevocation('fp-missed')));
    await admin.incr(`${prefix}revocations:version`);
    await until(() => store.findRevocation(subject('fp-missed')) !== undefined);
  });

  it('writes back revocations Redis lost (a restart without persistence)', async () => {
    prefix = uniquePrefix();
    const store = await open();
    await store.revoke(jtiRevocation('fp-kept'));
    await admin.del(`${prefix}revocations`, `${prefix}revocations:version`);
    const deadline = Date.now() + 3000;
    while (!(await admin.hexists(`${prefix}revocations`, 'jti:fp-kept')) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await admin.hexists(`${prefix}revocations`, 'jti:fp-kept')).toBe(1);
    expect(store.findRevocation(subject('fp-kept'))).toBeDefined();
  });

  it('drops expired revocations from memory and from Redis', async () => {
    prefix = uniquePrefix();
    const store = await open();
    await store.revoke(jtiRevocation('fp-short', 300));
    expect(store.findRevocation(subject('fp-short'))).toBeDefined();
    await new Promise((r) => setTimeout(r, 350));
    expect(store.findRevocation(subject('fp-short'))).toBeUndefined();
    await until(() => store.revocationCount === 0);
    await admin.incr(`${prefix}revocations:version`);
    const deadline = Date.now() + 3000;
    while ((await admin.hlen(`${prefix}revocations`)) > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect(await admin.hlen(`${prefix}revocations`)).toBe(0);
  });

  it('ignores records in Redis that are not revocations', async () => {
    prefix = uniquePrefix();
    await admin.hset(`${prefix}revocations`, 'jti:junk', '{"revocation":{"kind":"jti"},"expiresAtMs":"soon"}');
    const store = await open();
    expect(store.revocationCount).toBe(0);
    expect(store.health().state).toBe('ok');
  });

  it('starts failing closed when Redis is down, and answers at once rather than hang', async () => {
    prefix = uniquePrefix();
    const store = await RedisStore.open(`redis://127.0.0.1:${await freePort()}`, options(), silentLogger);
    stores.push(store);
    expect(store.health().state).toBe('unavailable');
    const started = performance.now();
    await expect(store.markUsed('fp', Date.now() + 1000)).rejects.toBeInstanceOf(StoreUnavailableError);
    expect(performance.now() - started).toBeLessThan(500);
  });

  it('works through Sentinel: ioredis finds the master from a redis-sentinel:// URL', async () => {
    prefix = uniquePrefix();
    const sentinel = new RedisSentinel();
    await sentinel.start();
    try {
      const [a, b] = await Promise.all([0, 1].map(() => RedisStore.open(sentinel.url, options(), silentLogger)));
      stores.push(a!, b!);
      expect(a!.health().state).toBe('ok');
      expect(await a!.markUsed('fp-s', Date.now() + 10_000)).toBe(true);
      expect(await b!.markUsed('fp-s', Date.now() + 10_000)).toBe(false);
      await a!.revoke(jtiRevocation('fp-sentinel'));
      await until(() => b!.findRevocation(subject('fp-sentinel')) !== undefined, 1000);
    } finally {
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await sentinel.stop();
    }
  });

  it('keeps only fingerprints under its prefix', async () => {
    prefix = uniquePrefix();
    const store = await open();
    await store.markUsed('fp-x', Date.now() + 10_000);
    await store.revoke({ revocation: { kind: 'subject', value: 'spiffe://a/b', before: 1 }, expiresAtMs: Date.now() + 10_000 });
    expect((await keysUnder(admin, prefix)).sort()).toEqual([`${prefix}revocations`, `${prefix}revocations:version`, `${prefix}used:fp-x`]);
  });
});
