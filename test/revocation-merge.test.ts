import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import { mergeRevocation, parseRevocationRecord, revocationKey } from '../src/store/revocation-index.js';
import type { Revocation, RevocationRecord } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * The one merge rule (mergeRevocation) and its Lua twin in Redis agree, and the rule only
 * grows: the merged record has the latest `before` and the latest expiry of everything merged.
 */
const SCALE = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => ({ numRuns: n * SCALE });

const beforeOf = (r: RevocationRecord) => ('before' in r.revocation ? r.revocation.before : Number.NEGATIVE_INFINITY);

/** Strings with what JSON and Lua escape differently. */
const text = fc.string({ unit: fc.constantFrom('a', 'é', '"', '\\', '/', ':', '€', '𝄞'), minLength: 1 });

/** Records of one revoked thing: what a stream of writers (issuer, CLI, resyncs) sends for it. */
function recordsOf(revocation: Revocation) {
  const record = fc.record({
    // Whole and fractional values: epoch ms and seconds as the writers make them, and odd ones.
    expiresAtMs: fc.oneof(fc.integer({ min: 1, max: 2 ** 53 - 1 }), fc.double({ min: 1, max: 1e300, noNaN: true })),
    before: fc.oneof(fc.integer({ min: 0, max: 4e9 }), fc.double({ min: -1e12, max: 1e12, noNaN: true })),
    reason: fc.option(text, { nil: undefined }),
  }).map(({ expiresAtMs, before, reason }): RevocationRecord => ({
    revocation: 'before' in revocation ? { ...revocation, before } : revocation,
    expiresAtMs,
    ...(reason !== undefined && { reason }),
  }));
  return fc.array(record, { minLength: 1, maxLength: 5 });
}

const revocations = fc.oneof(
  text.map((fingerprint): Revocation => ({ kind: 'jti', fingerprint })),
  text.map((thumbprint): Revocation => ({ kind: 'cert', thumbprint })),
  text.map((value): Revocation => ({ kind: 'subject', value, before: 0 })),
  text.map((value): Revocation => ({ kind: 'client', value, before: 0 })),
  fc.tuple(text, text).map(([issuer, kid]): Revocation => ({ kind: 'key', issuer, kid })),
);
const histories = revocations.chain(recordsOf);
const renamed = (r: Revocation, suffix: string): Revocation =>
  r.kind === 'jti' ? { ...r, fingerprint: r.fingerprint + suffix } : r.kind === 'cert' ? { ...r, thumbprint: r.thumbprint + suffix }
    : r.kind === 'key' ? { ...r, kid: r.kid + suffix } : { ...r, value: r.value + suffix };
const fold = (records: RevocationRecord[]) => records.reduce<RevocationRecord | undefined>(mergeRevocation, undefined)!;

describe('mergeRevocation', () => {
  it('keeps the latest before and the latest expiry, whatever the order', () => {
    fc.assert(fc.property(histories, (records) => {
      const merged = fold(records);
      expect(merged.expiresAtMs).toBe(Math.max(...records.map((r) => r.expiresAtMs)));
      expect(beforeOf(merged)).toBe(Math.max(...records.map(beforeOf)));
      const reversed = fold([...records].reverse());
      expect([reversed.expiresAtMs, beforeOf(reversed)]).toEqual([merged.expiresAtMs, beforeOf(merged)]);
    }), runs(200));
  });

  it('returns the held record itself when the incoming one adds nothing', () => {
    fc.assert(fc.property(histories, (records) => {
      const merged = fold(records);
      for (const record of records) expect(mergeRevocation(merged, record)).toBe(merged);
    }), runs(200));
  });

  it('never shortens: a record expiring at 1 or revoking before 0 changes nothing', () => {
    const held: RevocationRecord = { revocation: { kind: 'subject', value: 's', before: 1_700_000_000.5 }, expiresAtMs: Date.now() + 86_400_000, reason: 'r' };
    for (const incoming of [{ ...held, expiresAtMs: 1 }, { ...held, revocation: { ...held.revocation, before: 0 } }]) {
      expect(mergeRevocation(held, incoming)).toBe(held);
    }
  });
});

describe('the Lua merge in Redis', () => {
  const prefix = uniquePrefix();
  let admin: Redis;
  let store: RedisStore;
  beforeAll(async () => {
    await requireSharedRedis();
    admin = new Redis(SHARED_REDIS_URL);
    store = await RedisStore.open(SHARED_REDIS_URL, { keyPrefix: prefix, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 60_000 }, silentLogger);
  });
  afterAll(async () => {
    await store.close();
    await deleteKeysUnder(SHARED_REDIS_URL, prefix);
    admin.disconnect();
  });

  it('writes what mergeRevocation says, for any sequence of writes to one field', async () => {
    let run = 0;
    await fc.assert(fc.asyncProperty(histories, async (generated) => {
      // A field of its own per run: the store's index still holds what earlier runs wrote.
      const suffix = `#${run++}`;
      const records = generated.map((r) => ({ ...r, revocation: renamed(r.revocation, suffix) }));
      const field = revocationKey(records[0]!.revocation);
      for (const record of records) await store.revoke(record);
      const stored = parseRevocationRecord((await admin.hget(`${prefix}revocations`, field))!, field);
      expect(stored).toEqual(fold(records));
    }), runs(40));
  });

  it('writes nothing and publishes nothing when the record held already covers the incoming one', async () => {
    const field = 'client:orders-batch';
    const revocation = { kind: 'client' as const, value: 'orders-batch', before: 1_700_000_000.25 };
    const held: RevocationRecord = { revocation, expiresAtMs: Date.now() + 86_400_000 };
    await admin.hset(`${prefix}revocations`, field, JSON.stringify(held));
    const version = await admin.get(`${prefix}revocations:version`);
    const listener = new Redis(SHARED_REDIS_URL);
    const heard: string[] = [];
    listener.on('message', (_channel: string, text: string) => heard.push(text));
    await listener.subscribe(`${prefix}revocations`);
    try {
      await store.revoke({ ...held, expiresAtMs: Date.now() + 60_000 });
      await store.revoke({ ...held, revocation: { ...revocation, before: 1 } });
      // A growing write after them: once it is heard, the two before it would have been too.
      const grown = { ...held, expiresAtMs: held.expiresAtMs + 1 };
      await store.revoke(grown);
      const deadline = Date.now() + 3000;
      while (heard.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      expect(heard.map((t) => parseRevocationRecord(t, field))).toEqual([grown]);
      expect(Number(await admin.get(`${prefix}revocations:version`))).toBe(Number(version) + 1);
    } finally {
      listener.disconnect();
    }
  });
});
