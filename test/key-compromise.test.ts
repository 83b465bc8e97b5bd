import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { importJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckOutput } from '../src/authz/envoy-client.js';
import { loadIssuerConfigFile } from '../src/config/load-issuer-config.js';
import { issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { signAccessToken, type SigningKey } from '../src/devkit/signing-key.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { RedisStore } from '../src/store/redis-store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { headerOf, issuerRequest } from './support/issuer-client.js';
import { runCli, spawnCli, startSidecar, type SidecarProcess, type Spawned } from './support/process.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * Issue 12 #5: a leaked signing key. `keys rotate --now` must stop sidecars trusting the old key
 * after token_ttl + skew (not refresh_ttl), and `keys revoke` must withdraw it everywhere at once.
 */
const ISS = 'https://sts.test.local';
const FRONTEND = 'spiffe://test.local/ns/shop/sa/frontend';
const ORDERS = 'spiffe://test.local/ns/shop/sa/orders';
const MIN = 60_000;
// token_ttl 5m and clock_skew 30s: a replaced key leaves the JWKS 5.5 minutes after its successor signs.
const PUBLISHED_MS = 5.5 * MIN;

let mesh: TrustDomain<'frontend'>;
let server: IssuedCert;
beforeAll(async () => {
  mesh = await createTrustDomain('key-compromise', { frontend: FRONTEND });
  server = issueCert(mesh.ca, mesh.dir, { name: 'server', ipSans: ['127.0.0.1'], serverAuth: true });
});
afterAll(() => mesh.cleanup());

function writeIssuerConfig(name: string, store: string): string {
  const file = path.join(mesh.dir, `${name}.yaml`);
  writeFileSync(file, `listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${name}-keys, publish_ahead: 1h }
token_ttl: 5m
refresh_ttl: 1h
clock_skew: 30s
${store}
clients:
  - id: ${FRONTEND}
    grants: [client_credentials, refresh_token]
    audiences: [${ORDERS}]
    scopes: [orders:read]
`);
  return file;
}

const keyFiles = (name: string) => readdirSync(path.join(mesh.dir, `${name}-keys`)).sort();
const tokens = (url: string, form: Record<string, string>) =>
  issuerRequest(url, '/token', { caPem: mesh.ca.certPem, client: mesh.workloads.frontend, form });
const clientCredentials = (url: string) => tokens(url, { grant_type: 'client_credentials', audience: ORDERS });
const refresh = (url: string, refreshToken: string) => tokens(url, { grant_type: 'refresh_token', refresh_token: refreshToken });
const publishedKids = async (url: string): Promise<string[]> =>
  (await issuerRequest(url, '/.well-known/jwks.json', { caPem: mesh.ca.certPem })).body.keys.map((k: { kid: string }) => k.kid);
const kidOf = (token: string): string => headerOf(token).kid;

/** Polls until `ready` holds; fails with `what` after a generous deadline (a loaded machine is slow, not wrong). */
async function eventually(what: string, ready: () => Promise<boolean>, deadlineMs = 15_000): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    if (await ready()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${deadlineMs} ms: ${what}`);
}

describe('keys rotate --now: a replaced key leaves the JWKS after token_ttl + skew', () => {
  let issuer: RunningIssuer;
  let configFile: string;
  let offsetMs = 0;

  beforeAll(async () => {
    configFile = writeIssuerConfig('rotate', 'store: memory');
    issuer = await startIssuer(loadIssuerConfigFile(configFile), { log: silentLogger, now: () => Date.now() + offsetMs });
  });
  afterAll(() => issuer.stop());

  it('sidecars see it for token_ttl + skew, the issuer still refreshes its refresh tokens, and keys revoke kills those', async () => {
    const first = (await clientCredentials(issuer.url)).body;
    const spare = (await clientCredentials(issuer.url)).body;
    const replaced = kidOf(first.access_token);
    expect(kidOf(first.refresh_token)).toBe(replaced);

    const rotated = await runCli(['keys', 'rotate', '--config', configFile, '--now']);
    expect(rotated.code).toBe(0);
    const successor = /added key (\S+)/.exec(rotated.stdout)![1]!;
    await eventually('the issuer signs with the new key', async () => kidOf((await clientCredentials(issuer.url)).body.access_token) === successor);

    offsetMs = PUBLISHED_MS - 10_000;
    expect(await publishedKids(issuer.url)).toEqual([replaced, successor]);
    offsetMs = PUBLISHED_MS + 10_000;
    expect(await publishedKids(issuer.url)).toEqual([successor]);

    const refreshed = await refresh(issuer.url, first.refresh_token);
    expect(refreshed.status).toBe(200);
    expect(kidOf(refreshed.body.refresh_token)).toBe(successor);

    // With store: memory only the key file tells: the issuer drops it, sidecars at their next JWKS fetch.
    const revoked = await runCli(['keys', 'revoke', '--config', configFile, replaced]);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`revoked key ${replaced}`);
    expect(revoked.stdout).toContain('next JWKS fetch');
    expect(keyFiles('rotate')).toEqual([`${successor}.json`]);
    await eventually('the spare refresh token is refused', async () => (await refresh(issuer.url, spare.refresh_token)).body?.error === 'invalid_grant');
  });
});

describe('keys revoke on a Redis store: withdrawn at once, everywhere', () => {
  const prefix = uniquePrefix();
  let configFile: string;
  let issuerProc: Spawned;
  let url: string;
  let firstKid: string;
  let sidecars: SidecarProcess[] = [];
  const redisStore = `store: ${SHARED_REDIS_URL}\nredis: { key_prefix: "${prefix}", resync_interval: 200ms, command_timeout: 2s }`;
  const read = (sidecar: SidecarProcess, token: string) => sidecar.envoy.check({
    path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: FRONTEND, certificatePem: mesh.workloads.frontend.certPem,
  });
  const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);
  const revocationFields = async () => {
    const client = new Redis(SHARED_REDIS_URL);
    try {
      return (await client.hkeys(`${prefix}revocations`)).sort();
    } finally {
      client.disconnect();
    }
  };

  beforeAll(async () => {
    await requireSharedRedis();
    configFile = writeIssuerConfig('redis', redisStore);
    issuerProc = spawnCli(['issuer', '--config', configFile]);
    url = (await issuerProc.logEvent('issuer_started')).url;
    firstKid = (await issuerProc.logEvent('signing_key_created')).kid;
    // Sidecars refetch the JWKS only for an unknown kid (max-age is 30 min): what they learn
    // about a revoked key within the test comes through the store.
    const sidecarConfig = path.join(mesh.dir, 'orders.yaml');
    writeFileSync(sidecarConfig, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
audience: ${ORDERS}
issuers:
  - issuer: ${ISS}
    jwks_uri: ${url}/.well-known/jwks.json
    jwks_ca_file: ${mesh.ca.certPath}
    algorithms: [ES256]
    max_ttl: 5m
jwks: { refresh_interval: 1h, refetch_interval: 200ms }
${redisStore}
routes:
  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }
`);
    sidecars = await Promise.all([0, 1].map(() => startSidecar(sidecarConfig)));
  }, 60_000);
  afterAll(async () => {
    await Promise.all(sidecars.map((s) => s.stop()));
    issuerProc?.child.kill('SIGTERM');
    await issuerProc?.exited;
    await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  });

  it('refuses the key that signs now, and a kid that does not exist, changing nothing', async () => {
    const before = { files: keyFiles('redis'), revocations: await revocationFields() };
    const signing = await runCli(['keys', 'revoke', '--config', configFile, firstKid]);
    expect(signing.code).toBe(2);
    expect(signing.stderr).toContain(`key ${firstKid} signs now`);
    expect(signing.stderr).toContain('keys rotate --config');
    const unknown = await runCli(['keys', 'revoke', '--config', configFile, '../20250101T000000Z-00000000']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no key ../20250101T000000Z-00000000 in');
    expect({ files: keyFiles('redis'), revocations: await revocationFields() }).toEqual(before);
  });

  it('after keys rotate --now and keys revoke, both sidecars deny its tokens, forged ones too, as token_revoked; the JWKS drops it; its refresh tokens are dead', async () => {
    const leaked = (await clientCredentials(url)).body;
    expect(kidOf(leaked.access_token)).toBe(firstKid);
    // What a thief holding the key file can do: sign tokens of its own making.
    const file = JSON.parse(readFileSync(path.join(mesh.dir, 'redis-keys', `${firstKid}.json`), 'utf8'));
    const stolen: SigningKey = { alg: 'ES256', kid: firstKid, privateKey: await importJWK(file.private_jwk, 'ES256') as CryptoKey, publicJwk: {} };
    const forge = () => signAccessToken(stolen, {
      iss: ISS, aud: ORDERS, sub: FRONTEND, scope: 'orders:read', certThumbprint: mesh.workloads.frontend.thumbprint,
    });
    const forgedBefore = await forge();
    for (const s of sidecars) {
      expect(codeOf(await read(s, leaked.access_token))).toBe('allowed');
      expect(codeOf(await read(s, forgedBefore))).toBe('allowed');
    }

    const rotated = await runCli(['keys', 'rotate', '--config', configFile, '--now']);
    expect(rotated.code).toBe(0);
    const successor = /added key (\S+)/.exec(rotated.stdout)![1]!;
    await eventually('the issuer signs with the new key', async () => kidOf((await clientCredentials(url)).body.access_token) === successor);
    // Before the revocation, a replaced key is still trusted, as it must be for tokens in flight.
    for (const s of sidecars) expect(codeOf(await read(s, leaked.access_token))).toBe('allowed');

    const revoked = await runCli(['keys', 'revoke', '--config', configFile, firstKid, '--reason', 'leaked']);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toContain(`revoked every token signed by ${ISS}'s key ${firstKid}; enforced until`);
    expect(revoked.stdout).not.toMatch(/"d"|private/);

    await Promise.all(sidecars.map((s, i) => eventually(`sidecar ${i} denies the leaked key's token as token_revoked`,
      async () => codeOf(await read(s, leaked.access_token)) === 'token_revoked')));
    const forgedAfter = await forge();
    for (const s of sidecars) {
      expect(codeOf(await read(s, forgedBefore))).toBe('token_revoked');
      expect(codeOf(await read(s, forgedAfter))).toBe('token_revoked');
    }
    await eventually('the JWKS no longer lists the revoked key', async () => !(await publishedKids(url)).includes(firstKid));
    expect(await publishedKids(url)).toEqual([successor]);
    const refused = await refresh(url, leaked.refresh_token);
    expect(refused.status).toBe(400);
    expect(refused.body.error).toBe('invalid_grant');

    const fresh = (await clientCredentials(url)).body.access_token;
    for (const s of sidecars) expect(codeOf(await read(s, fresh))).toBe('allowed');
  });
});

describe('a revoked key whose file stays (a read-only key directory)', () => {
  const prefix = uniquePrefix();
  let issuer: RunningIssuer;
  let configFile: string;
  let feed: RedisStore;

  beforeAll(async () => {
    await requireSharedRedis();
    configFile = writeIssuerConfig('readonly', `store: ${SHARED_REDIS_URL}\nredis: { key_prefix: "${prefix}", resync_interval: 200ms, command_timeout: 2s }`);
    issuer = await startIssuer(loadIssuerConfigFile(configFile), { log: silentLogger });
    feed = await RedisStore.open(SHARED_REDIS_URL, { keyPrefix: prefix, commandTimeoutMs: 2000, maxStalenessMs: 30_000, resyncIntervalMs: 200 }, silentLogger);
  });
  afterAll(async () => {
    await issuer?.stop();
    await feed?.close();
    await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  });

  it('the issuer refuses its refresh tokens from the store record alone', async () => {
    const held = (await clientCredentials(issuer.url)).body;
    const spare = (await clientCredentials(issuer.url)).body;
    const kid = kidOf(held.refresh_token);
    expect(kidOf(spare.refresh_token)).toBe(kid);
    const rotated = await runCli(['keys', 'rotate', '--config', configFile, '--now']);
    expect(rotated.code).toBe(0);
    await eventually('the issuer signs with the new key', async () => kidOf((await clientCredentials(issuer.url)).body.access_token) !== kid);
    // A replaced key's refresh tokens still refresh until the key is revoked.
    expect((await refresh(issuer.url, held.refresh_token)).status).toBe(200);

    // What `keys revoke` writes, with the key file left in place, as a read-only Secret mount leaves it.
    await feed.revoke({ revocation: { kind: 'key', issuer: ISS, kid }, expiresAtMs: Date.now() + 2 * 3_600_000, reason: 'leaked' });
    expect(keyFiles('readonly')).toContain(`${kid}.json`);
    // Each refresh attempt spends the token, so wait for the feed (pub/sub, else five resyncs) and try once.
    await new Promise((r) => setTimeout(r, 1000));
    const refused = await refresh(issuer.url, spare.refresh_token);
    expect(refused.body.error).toBe('invalid_grant');
    expect(refused.body.error_description).toBe('the refresh token has been revoked');
    const other = (await clientCredentials(issuer.url)).body;
    expect(kidOf(other.refresh_token)).not.toBe(kid);
    expect((await refresh(issuer.url, other.refresh_token)).status).toBe(200);
  });
});
