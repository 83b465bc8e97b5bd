import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import { parseRevocationRecord, revocationKey } from '../src/store/revocation-index.js';
import type { RevocationRecord } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import { CHECKOUT, ISSUER, STRANGER, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * Whoever can write to Redis (or publish on its channel) sends a sidecar hostile revocation
 * records: random JSON, wrong types, huge and NaN-ish numbers, expiresAtMs of 1 or below,
 * `__proto__`, 1 MB strings, deep nesting. Against a sidecar holding live revocations of every
 * kind: nothing crashes, no revocation is shortened or lifted (in memory or, after a resync, in
 * Redis), every revoked token stays refused through the gRPC API, and records that are not
 * revocations are ignored and counted. FUZZ_RUNS scales the runs, as in fuzz.test.ts.
 */
const SCALE = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => ({ numRuns: n * SCALE });
const HOUR = 3_600_000;
const MEGABYTE = 'x'.repeat(1 << 20);

const prefix = uniquePrefix();
const hash = `${prefix}revocations`;
const channel = hash;
let fixtures: Fixtures;
let admin: Redis;
let store: RedisStore;
let server: Running;
let live: { record: RevocationRecord; token: string; asStranger: boolean }[];

const SUBJECT = 'spiffe://test.local/ns/shop/sa/revoked-subject';
const CLIENT = 'revoked-client';

beforeAll(async () => {
  await requireSharedRedis();
  admin = new Redis(SHARED_REDIS_URL);
  fixtures = await createFixtures();
  store = await RedisStore.open(SHARED_REDIS_URL, {
    keyPrefix: prefix, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 20,
  }, silentLogger);
  server = await startServer(authzConfig(fixtures), store);
  const iat = Math.floor(Date.now() / 1000) - 10;
  const expiresAtMs = Date.now() + HOUR;
  const before = iat + 5;
  live = [
    { record: { revocation: { kind: 'jti', fingerprint: fingerprint(ISSUER, 'fuzz-jti') }, expiresAtMs }, token: await fixtures.token({ jti: 'fuzz-jti' }), asStranger: false },
    { record: { revocation: { kind: 'subject', value: SUBJECT, before }, expiresAtMs }, token: await fixtures.token({ sub: SUBJECT, iat }), asStranger: false },
    { record: { revocation: { kind: 'client', value: CLIENT, before }, expiresAtMs }, token: await fixtures.token({ clientId: CLIENT, iat }), asStranger: false },
    {
      record: { revocation: { kind: 'cert', thumbprint: fixtures.stranger.thumbprint }, expiresAtMs },
      token: await fixtures.token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint }),
      asStranger: true,
    },
  ];
  for (const { record } of live) await store.revoke(record);
});
afterAll(async () => {
  await server?.stop();
  await store?.close();
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  admin?.disconnect();
  fixtures?.cleanup();
});

const liveFields = () => live.map(({ record }) => revocationKey(record.revocation));

/** JSON number-ish tokens a record's numbers may be replaced with, most of them not finite numbers. */
const notANumber = fc.constantFrom('1e400', '-1e400', '"NaN"', 'NaN', 'Infinity', 'null', 'true', '"1"', '[]', '{}', '0x10', '"1e999"');
const number = fc.oneof(
  notANumber,
  fc.constantFrom('1', '0', '-1', '-0', '1e308', '5e-324', '9007199254740993'),
  fc.double().map((n) => JSON.stringify(n)),
  fc.integer().map(String),
);
const jsonString = fc.oneof(fc.string(), fc.constantFrom(SUBJECT, CLIENT, '__proto__', 'constructor', MEGABYTE)).map((s) => JSON.stringify(s));
const kind = fc.oneof(fc.constantFrom('"jti"', '"cert"', '"subject"', '"client"', '"__proto__"', '1', 'null', '["subject"]'), jsonString);
const idName = fc.constantFrom('fingerprint', 'thumbprint', 'value', '__proto__');

/** Looks like a revocation record; numbers given. */
const recordLike = (expiresAtMs: fc.Arbitrary<string>) => fc.record({
  kind, idName, id: fc.oneof(jsonString, number), before: number, expiresAtMs, reason: fc.option(fc.oneof(jsonString, number)),
}).map((r) => `{"revocation":{"kind":${r.kind},"${r.idName}":${r.id},"before":${r.before}},"expiresAtMs":${r.expiresAtMs}${r.reason === null ? '' : `,"reason":${r.reason}`}}`);

/** A live revocation's record gone small: expired, revoking before 0, or hidden behind `__proto__`. */
const shortenedLive = () => fc.constantFrom(...live.flatMap(({ record }) => {
  const text = JSON.stringify(record.revocation);
  const small = JSON.stringify({ ...record.revocation, ...('before' in record.revocation && { before: 0 }) });
  return [
    JSON.stringify({ ...record, expiresAtMs: 1 }),
    `{"revocation":${small},"expiresAtMs":-1e308}`,
    `{"revocation":${small},"expiresAtMs":${record.expiresAtMs}}`,
    `{"__proto__":{"expiresAtMs":1},"revocation":${text}}`,
    `{"revocation":{"__proto__":${small}},"expiresAtMs":1}`,
    `{"__proto__":{"revocation":${small},"expiresAtMs":1}}`,
  ];
}));
const hostileText = () => fc.oneof(
  recordLike(number),
  shortenedLive(),
  fc.json(),
  fc.string(),
  fc.constantFrom(MEGABYTE, '['.repeat(100_000), '{"a":'.repeat(10_000), '', '{}', 'null', '{"revocation":null,"expiresAtMs":1}'),
);
/** Not a revocation, for sure: its expiry is not a finite number. */
const malformedText = recordLike(notANumber);

/** The store still holds each live revocation in full, and the sidecar refuses each revoked token. */
async function expectEveryRevocationHolds(): Promise<void> {
  expect(store.health().state).toBe('ok');
  for (const { record, token, asStranger } of live) {
    const held = store.findRevocation(subjectOf(record));
    expect(covers(held, record)).toBe(true);
    const out = await server.envoy.check({
      path: '/orders/1', headers: { authorization: `Bearer ${token}` },
      principal: asStranger ? STRANGER : CHECKOUT, certificatePem: asStranger ? fixtures.stranger.certPem : fixtures.checkout.certPem,
    });
    expect(out.body?.code).toBe('token_revoked');
  }
}

const covers = (held: RevocationRecord | undefined, record: RevocationRecord) => held !== undefined
  && held.expiresAtMs >= record.expiresAtMs
  && (!('before' in record.revocation) || ('before' in held.revocation && held.revocation.before >= record.revocation.before));

function subjectOf(record: RevocationRecord) {
  const r = record.revocation;
  return {
    jtiFingerprint: r.kind === 'jti' ? r.fingerprint : 'none', sub: r.kind === 'subject' ? r.value : 'none',
    clientId: r.kind === 'client' ? r.value : 'none', iat: 0, ...(r.kind === 'cert' && { certThumbprint: r.thumbprint }),
  };
}

async function eventually(condition: () => Promise<boolean> | boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

let markers = 0;
/** Publishes the texts, then a marker record; messages arrive in order, so once it is in, they all were handled. */
async function publishAll(texts: string[]): Promise<void> {
  for (const text of texts) await admin.publish(channel, text);
  const marker: RevocationRecord = { revocation: { kind: 'jti', fingerprint: `marker-${markers++}` }, expiresAtMs: Date.now() + HOUR };
  await admin.publish(channel, JSON.stringify(marker));
  await eventually(() => store.findRevocation(subjectOf(marker)) !== undefined, 'the marker message arrives');
}

describe('hostile revocation records from Redis', () => {
  it('published on the channel: nothing crashes, nothing is shortened, every revoked token stays refused', async () => {
    await fc.assert(fc.asyncProperty(fc.array(hostileText(), { minLength: 1, maxLength: 5 }), async (texts) => {
      await publishAll(texts);
      await expectEveryRevocationHolds();
    }), runs(40));
  }, 120_000);

  it('published records that are not revocations are ignored and counted', async () => {
    await fc.assert(fc.asyncProperty(fc.array(malformedText, { minLength: 1, maxLength: 5 }), async (texts) => {
      const before = store.ignoredRecordCount;
      await publishAll(texts);
      expect(store.ignoredRecordCount - before).toBe(texts.length);
      await expectEveryRevocationHolds();
    }), runs(20));
  }, 120_000);

  it('written into the hash (with or without a version bump): the store keeps every revocation and grows Redis back', async () => {
    const field = fc.oneof(fc.constantFrom(...liveFields()), fc.constantFrom('__proto__', 'subject:', 'jti:'), fc.string());
    const writes = fc.array(fc.tuple(field, hostileText()), { minLength: 1, maxLength: 4 });
    await fc.assert(fc.asyncProperty(writes, fc.boolean(), async (pairs, bump) => {
      for (const [key, text] of pairs) await admin.hset(hash, key, text);
      if (bump) await admin.incr(`${prefix}revocations:version`);
      // The periodic full read, or the version bump, merges the index back into Redis.
      await eventually(async () => {
        for (const { record } of live) {
          const key = revocationKey(record.revocation);
          if (!covers(parseRevocationRecord((await admin.hget(hash, key)) ?? '', key), record)) return false;
        }
        return true;
      }, 'every live revocation is whole in Redis again');
      await expectEveryRevocationHolds();
    }), runs(25));
    // A replica started now finds every revocation as well, hostile records and all.
    const late = await RedisStore.open(SHARED_REDIS_URL, {
      keyPrefix: prefix, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 10_000,
    }, silentLogger);
    try {
      for (const { record } of live) expect(covers(late.findRevocation(subjectOf(record)), record)).toBe(true);
    } finally {
      await late.close();
    }
  }, 180_000);
});
