import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RedisStore } from '../src/store/redis-store.js';
import { parseRevocationRecord } from '../src/store/revocation-index.js';
import { revocationRecord } from '../src/store/revocation-request.js';
import type { RevocationRecord, RevocationSubject } from '../src/store/store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { ISSUER, READ_ORDERS_ROUTES_YAML, authzYaml, createFixtures, writeConfigFile, type Fixtures } from './support/harness.js';
import { runCli } from './support/process.js';
import { RedisProcess, SHARED_REDIS_URL, deleteKeysUnder, freePort, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * Revocations only grow, across replicas sharing one Redis: a later, shorter revocation of the
 * same thing (a) by client, (b) by jti or certificate, does not shorten it, and (c) a record
 * expiring at 1 published or written straight into Redis lifts nothing, anywhere, for good.
 * Replicas whose clock runs ahead stand for "later": what they still find is still revoked then.
 */
const HOUR = 3_600_000;
const ISSUER_POLICY = { issuers: [{ issuer: ISSUER, maxTtlMs: 24 * HOUR }], clockSkewMs: 30_000 };

let fixtures: Fixtures;
let admin: Redis;
let prefix: string;
let cliConfig: string;
const stores: RedisStore[] = [];

/** A replica; `aheadMs` runs its clock ahead. */
async function replica(aheadMs = 0, url = SHARED_REDIS_URL): Promise<RedisStore> {
  const store = await RedisStore.open(url, {
    keyPrefix: prefix, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 100,
  }, silentLogger, () => Date.now() + aheadMs);
  stores.push(store);
  return store;
}

async function eventually(condition: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`not within ${timeoutMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const stored = async (field: string) => parseRevocationRecord((await admin.hget(`${prefix}revocations`, field)) ?? '', field);
const beforeOf = (record: RevocationRecord | undefined) => (record && 'before' in record.revocation ? record.revocation.before : undefined);
const tokenOf = (fields: Partial<RevocationSubject>): RevocationSubject => ({
  jtiFingerprint: 'fp-unrevoked', sub: 'spiffe://test.local/ns/shop/sa/other', clientId: 'other', iat: Math.floor(Date.now() / 1000) - 60, ...fields,
});

beforeAll(async () => {
  await requireSharedRedis();
  admin = new Redis(SHARED_REDIS_URL);
  fixtures = await createFixtures();
});
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
});
afterAll(() => {
  admin.disconnect();
  fixtures.cleanup();
});

function useFreshPrefix() {
  prefix = uniquePrefix();
  // An operator's config: the default max_ttl (10m), far shorter than the issuer's refresh_ttl.
  cliConfig = writeConfigFile(fixtures, `grow-${prefix.replace(/\W/g, '')}.yaml`,
    `${authzYaml(fixtures)}store: ${SHARED_REDIS_URL}\nredis:\n  key_prefix: "${prefix}"\n${READ_ORDERS_ROUTES_YAML}`);
}

async function revokeWithCli(args: string[]): Promise<void> {
  const { code, stderr } = await runCli(['revoke', '--config', cliConfig, ...args]);
  expect(stderr).toBe('');
  expect(code).toBe(0);
}

describe('revocations only grow', () => {
  it('(a) hopguard revoke --client under a 10m max_ttl keeps the issuer\'s 24 h client revocation: a refresh token stays dead past 12 minutes', async () => {
    useFreshPrefix();
    const client = 'orders-batch';
    // How the issuer checks a refresh token of this client (sub and client_id are the client).
    const refresh = tokenOf({ sub: client, clientId: client });
    const running = await replica(13 * 60_000);
    const issuer = await replica();
    const issued = revocationRecord({ client }, ISSUER_POLICY, Date.now());
    await issuer.revoke(issued);
    await eventually(() => running.findRevocation(refresh) !== undefined, 'the issuer\'s revocation reaches the replica');

    await revokeWithCli(['--client', client]);
    const merged = await stored(`client:${client}`);
    expect(merged?.expiresAtMs).toBe(issued.expiresAtMs);
    expect(beforeOf(merged)).toBeGreaterThan(beforeOf(issued)!);
    // The CLI's later `before` reaches the running replica, and its 24 h stay.
    await eventually(() => beforeOf(running.findRevocation(refresh)) === beforeOf(merged), 'the merged record reaches the replica');
    expect(running.findRevocation(refresh)?.expiresAtMs).toBe(issued.expiresAtMs);
    expect((await replica(13 * 60_000)).findRevocation(refresh)).toEqual(merged);
  });

  it('(b) hopguard revoke --cert-thumbprint --for 500h, then --for 1h: a replica started later still refuses after an hour', async () => {
    useFreshPrefix();
    const thumbprint = 'A'.repeat(43);
    const token = tokenOf({ certThumbprint: thumbprint });
    await revokeWithCli(['--cert-thumbprint', thumbprint, '--for', '500h']);
    const long = await stored(`cert:${thumbprint}`);
    expect(long!.expiresAtMs).toBeGreaterThan(Date.now() + 499 * HOUR);
    await revokeWithCli(['--cert-thumbprint', thumbprint, '--for', '1h']);
    expect(await stored(`cert:${thumbprint}`)).toEqual(long);
    expect((await replica(2 * HOUR)).findRevocation(token)).toEqual(long);
  });

  it('(b) a jti revoked for 24 h, then for 1 h by another replica: every replica, and one started later, still refuses after an hour', async () => {
    useFreshPrefix();
    const token = tokenOf({ jtiFingerprint: 'fp-stolen' });
    const [first, second, running] = await Promise.all([replica(), replica(), replica(2 * HOUR)]);
    const long: RevocationRecord = { revocation: { kind: 'jti', fingerprint: 'fp-stolen' }, expiresAtMs: Date.now() + 24 * HOUR };
    await first.revoke(long);
    await second.revoke({ ...long, expiresAtMs: Date.now() + HOUR });
    expect(await stored('jti:fp-stolen')).toEqual(long);
    await eventually(() => running.findRevocation(token) !== undefined, 'the revocation reaches the replica');
    for (const store of [first, second, running, await replica(2 * HOUR)]) expect(store.findRevocation(token)).toEqual(long);
  });

  it('(c) a subject record expiring at 1, published or written into Redis, lifts the revocation nowhere, and Redis grows back', async () => {
    useFreshPrefix();
    const sub = 'spiffe://test.local/ns/shop/sa/compromised';
    const field = `subject:${sub}`;
    const token = tokenOf({ sub });
    const [a, b] = await Promise.all([replica(), replica()]);
    const live = revocationRecord({ subject: sub }, ISSUER_POLICY, Date.now());
    await a.revoke(live);
    await eventually(() => b.findRevocation(token) !== undefined, 'the revocation reaches b');

    const lifted = JSON.stringify({ ...live, expiresAtMs: 1 });
    await admin.publish(`${prefix}revocations`, lifted);
    await admin.publish(`${prefix}revocations`, JSON.stringify({ ...live, revocation: { ...live.revocation, before: 0 } }));
    // Messages arrive in order: once this one is in, the two before it were handled.
    const marker: RevocationRecord = { revocation: { kind: 'jti', fingerprint: 'fp-marker' }, expiresAtMs: Date.now() + HOUR };
    await admin.publish(`${prefix}revocations`, JSON.stringify(marker));
    await eventually(() => [a, b].every((s) => s.findRevocation(tokenOf({ jtiFingerprint: 'fp-marker' })) !== undefined), 'the marker reaches a and b');
    for (const store of [a, b]) expect(store.findRevocation(token)).toEqual(live);

    // Written straight into the hash, without a version bump; then garbage over it.
    for (const hostile of [lifted, '{"revocation":', JSON.stringify({ ...live, expiresAtMs: 'never' })]) {
      await admin.hset(`${prefix}revocations`, field, hostile);
      await eventually(async () => (await stored(field))?.expiresAtMs === live.expiresAtMs, `Redis grows back after ${hostile.slice(0, 14)}…`);
      for (const store of [a, b, await replica()]) expect(store.findRevocation(token)).toEqual(live);
    }
  });

  it('a Redis restarted empty (no data, no loaded scripts) gets every live revocation back, merged, and takes new ones', async () => {
    useFreshPrefix();
    const server = new RedisProcess(await freePort());
    await server.start();
    const own = new Redis(server.url);
    try {
      const store = await replica(0, server.url);
      const kept: RevocationRecord = { revocation: { kind: 'client', value: 'c', before: 1_700_000_000.5 }, expiresAtMs: Date.now() + HOUR };
      await store.revoke(kept);
      await server.kill();
      await server.start();
      const field = 'client:c';
      await eventually(async () => parseRevocationRecord((await own.hget(`${prefix}revocations`, field)) ?? '', field) !== undefined, 'the write-back');
      expect(parseRevocationRecord((await own.hget(`${prefix}revocations`, field))!, field)).toEqual(kept);
      await store.revoke({ ...kept, expiresAtMs: kept.expiresAtMs + 1 });
      expect(parseRevocationRecord((await own.hget(`${prefix}revocations`, field))!, field)?.expiresAtMs).toBe(kept.expiresAtMs + 1);
    } finally {
      own.disconnect();
      await Promise.all(stores.splice(0).map((s) => s.close()));
      await server.kill();
    }
  });
});
