import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * A mesh that has revoked 100,000 tokens: a sidecar must still sync them all within the default
 * command_timeout (250 ms per command). One HGETALL of that hash took longer, so the sidecar never
 * became ready; the store now reads it in pages.
 */
const COUNT = 100_000;
const prefix = uniquePrefix();
const fingerprintOf = (i: number) => `jti-${String(i).padStart(39, '0')}`;

beforeAll(async () => {
  await requireSharedRedis();
  const client = new Redis(SHARED_REDIS_URL);
  try {
    const expiresAtMs = Date.now() + 3_600_000;
    for (let start = 0; start < COUNT; start += 10_000) {
      const batch = client.pipeline();
      for (let i = start; i < start + 10_000; i++) {
        const revocation = { kind: 'jti', fingerprint: fingerprintOf(i) };
        batch.hset(`${prefix}revocations`, `jti:${revocation.fingerprint}`, JSON.stringify({ revocation, expiresAtMs }));
      }
      await batch.exec();
    }
    await client.incr(`${prefix}revocations:version`);
  } finally {
    client.disconnect();
  }
}, 60_000);

afterAll(() => deleteKeysUnder(SHARED_REDIS_URL, prefix));

describe('RedisStore with 100,000 revocations', () => {
  it('syncs them all under the default command timeout', async () => {
    const store = await RedisStore.open(SHARED_REDIS_URL, {
      keyPrefix: prefix, commandTimeoutMs: 250, maxStalenessMs: 30_000, resyncIntervalMs: 10_000,
    }, silentLogger);
    try {
      expect(store.health().state).toBe('ok');
      expect(store.revocationCount).toBe(COUNT);
      const subject = { sub: 's', clientId: 'c', iat: 0 };
      expect(store.findRevocation({ ...subject, jtiFingerprint: fingerprintOf(COUNT - 1) })?.revocation.kind).toBe('jti');
      expect(store.findRevocation({ ...subject, jtiFingerprint: 'never-revoked' })).toBeUndefined();
    } finally {
      await store.close();
    }
  });
});
