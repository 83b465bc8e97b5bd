import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CompactSign, compactVerify, exportJWK, generateKeyPair, type JWK } from 'jose';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { IssuerKeys } from '../src/token/issuer-keys.js';
import { createIssuerKeys, JwksLoadError, type IssuerKeysOptions } from '../src/token/jwks-source.js';
import type { Algorithm } from '../src/vocabulary/algorithms.js';

const ISSUER = 'https://sts.test';
const REFETCH_MS = 10_000;

interface TestKey { publicJwk: JWK; privateJwk: JWK; privateKey: CryptoKey }

async function makeKey(alg: 'ES256' | 'RS256' | 'Ed25519', kid?: string): Promise<TestKey> {
  const pair = await generateKeyPair(alg, { extractable: true });
  const publicJwk = await exportJWK(pair.publicKey);
  const privateJwk = await exportJWK(pair.privateKey);
  if (kid !== undefined) {
    publicJwk.kid = kid;
    privateJwk.kid = kid;
  }
  return { publicJwk, privateJwk, privateKey: pair.privateKey };
}

// What the local JWKS server answers; each test sets it.
let body: string;
let status: number;
let location: string | undefined;
let requests: number;
let server: Server;
let baseUrl: string;

let cacheControl: string | undefined;

function serve(...keys: JWK[]): void {
  body = JSON.stringify({ keys });
}

let es1: TestKey, es2: TestKey, es3: TestKey, rs1: TestKey, ed1: TestKey;

beforeAll(async () => {
  [es1, es2, es3, rs1, ed1] = await Promise.all([
    makeKey('ES256', 'es-1'), makeKey('ES256', 'es-2'), makeKey('ES256', 'es-3'),
    makeKey('RS256', 'rs-1'), makeKey('Ed25519', 'ed-1'),
  ]);
  server = createServer((_req, res) => {
    requests++;
    if (location) {
      res.writeHead(302, { location }).end();
      return;
    }
    res.writeHead(status, { 'content-type': 'application/json', ...(cacheControl && { 'cache-control': cacheControl }) }).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
});

let clock: number;
let outcomes: [string, string | undefined][];
let started: IssuerKeys[];

beforeEach(() => {
  status = 200;
  location = undefined;
  cacheControl = undefined;
  requests = 0;
  clock = 1_000_000;
  outcomes = [];
  started = [];
  serve(es1.publicJwk, rs1.publicJwk, ed1.publicJwk);
});

afterEach(() => {
  for (const keys of started) keys.stop();
});

function issuerKeys(overrides: Partial<IssuerKeysOptions> = {}): IssuerKeys {
  const keys = createIssuerKeys({
    issuer: ISSUER,
    jwksUri: baseUrl,
    algorithms: ['ES256', 'RS256', 'EdDSA', 'Ed25519'],
    refreshIntervalMs: 3_600_000,
    refetchIntervalMs: REFETCH_MS,
    fetchTimeoutMs: 2_000,
    // Generous: these tests are about what is fetched, not how long a check waits for it.
    checkWaitMs: 2_000,
    onFetch: (outcome, detail) => outcomes.push([outcome, detail]),
    now: () => clock,
    ...overrides,
  });
  started.push(keys);
  return keys;
}

/** The resolved key really is the one that signs for that kid. */
async function verifies(key: CryptoKey | undefined, signer: TestKey, alg: Algorithm): Promise<boolean> {
  if (!key) return false;
  const jws = await new CompactSign(new TextEncoder().encode('payload'))
    .setProtectedHeader({ alg })
    .sign(signer.privateKey);
  return compactVerify(jws, key).then(() => true, () => false);
}

describe('createIssuerKeys over jwks_uri', () => {
  it('loads on start and resolves keys by kid and alg', async () => {
    const keys = issuerKeys();
    expect(keys.loaded).toBe(false);
    await keys.start();
    expect(keys.loaded).toBe(true);
    expect(keys.generation).toBe(1);
    expect(requests).toBe(1);
    expect(await verifies(await keys.resolve('es-1', 'ES256'), es1, 'ES256')).toBe(true);
    expect(await verifies(await keys.resolve('rs-1', 'RS256'), rs1, 'RS256')).toBe(true);
    expect(await verifies(await keys.resolve('ed-1', 'Ed25519'), ed1, 'Ed25519')).toBe(true);
    expect(await verifies(await keys.resolve('ed-1', 'EdDSA'), ed1, 'EdDSA')).toBe(true);
    expect(outcomes).toEqual([['ok', undefined]]);
  });

  it('memoises the imported key', async () => {
    const keys = issuerKeys();
    await keys.start();
    expect(await keys.resolve('es-1', 'ES256')).toBe(await keys.resolve('es-1', 'ES256'));
  });

  it('refetches once for an unknown kid and then finds the new key', async () => {
    const keys = issuerKeys();
    await keys.start();
    serve(es1.publicJwk, es2.publicJwk);
    clock += REFETCH_MS;
    expect(await verifies(await keys.resolve('es-2', 'ES256'), es2, 'ES256')).toBe(true);
    expect(requests).toBe(2);
    expect(keys.generation).toBe(2);
    // Now known: no further request.
    clock += REFETCH_MS;
    expect(await keys.resolve('es-2', 'ES256')).toBeDefined();
    expect(requests).toBe(2);
  });

  it('does not refetch a kid looked for within the refetch interval, and does after it', async () => {
    const keys = issuerKeys();
    await keys.start();
    clock += REFETCH_MS;
    expect(await keys.resolve('es-3', 'ES256')).toBeUndefined();
    expect(requests).toBe(2);

    clock += REFETCH_MS - 1;
    serve(es1.publicJwk, es3.publicJwk);
    expect(await keys.resolve('es-3', 'ES256')).toBeUndefined();
    expect(requests).toBe(2);

    clock += 1;
    expect(await verifies(await keys.resolve('es-3', 'ES256'), es3, 'ES256')).toBe(true);
    expect(requests).toBe(3);
  });

  it('looks for a new kid at once, however recently another kid was looked for', async () => {
    const keys = issuerKeys();
    await keys.start();
    clock += REFETCH_MS;
    expect(await keys.resolve('made-up', 'ES256')).toBeUndefined();
    expect(requests).toBe(2);
    // The issuer rotates: its new kid must not wait out the made-up kid's refetch interval.
    serve(es1.publicJwk, es3.publicJwk);
    clock += 1_000;
    expect(await verifies(await keys.resolve('es-3', 'ES256'), es3, 'ES256')).toBe(true);
    expect(requests).toBe(3);
  });

  it('shares one fetch per second among all new kids, and remembers each', async () => {
    const keys = issuerKeys({ now: Date.now });
    await keys.start();
    const kids = Array.from({ length: 20 }, (_, i) => `made-up-${i}`);
    // Right after the first load: all wait for the one fetch the floor allows next.
    expect(await Promise.all(kids.map((kid) => keys.resolve(kid, 'ES256')))).toEqual(kids.map(() => undefined));
    expect(requests).toBe(2);
    expect(await Promise.all(kids.map((kid) => keys.resolve(kid, 'ES256')))).toEqual(kids.map(() => undefined));
    expect(requests).toBe(2);
  });

  it('answers within the check wait and lets the refetch finish in the background', async () => {
    const keys = issuerKeys({ now: undefined, refetchIntervalMs: 200, checkWaitMs: 20 });
    await keys.start();
    serve(es2.publicJwk);
    // The fetch floor (here the 200 ms refetch interval) has not passed since the first load.
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(requests).toBe(1);
    await expect.poll(() => keys.generation, { timeout: 2_000 }).toBe(2);
    expect(requests).toBe(2);
    expect(await keys.resolve('es-2', 'ES256')).toBeDefined();
    expect(requests).toBe(2);
  });

  it('shares one fetch among concurrent resolves of an unknown kid', async () => {
    const keys = issuerKeys();
    await keys.start();
    serve(es1.publicJwk, es2.publicJwk);
    clock += REFETCH_MS;
    const results = await Promise.all(Array.from({ length: 20 }, () => keys.resolve('es-2', 'ES256')));
    expect(requests).toBe(2);
    expect(results.every((key) => key !== undefined && key === results[0])).toBe(true);
  });

  it('keeps the last good keys when the server answers 500', async () => {
    const keys = issuerKeys();
    await keys.start();
    status = 500;
    clock += REFETCH_MS;
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(requests).toBe(2);
    expect(outcomes.at(-1)).toEqual(['error', 'HTTP 500']);
    expect(await keys.resolve('es-1', 'ES256')).toBeDefined();
    expect(keys.generation).toBe(1);
    expect(keys.loaded).toBe(true);
  });

  it.each([
    ['garbage', 'not json {', 'JWKS is not valid JSON'],
    ['no keys array', '{"keys": {}}', 'not a JWKS (expected {"keys": [...]})'],
    ['a non-object key', '{"keys": [1]}', 'JWKS has a key that is not a JSON object'],
  ])('keeps the last good keys when the server serves %s', async (_name, served, reason) => {
    const keys = issuerKeys();
    await keys.start();
    body = served;
    clock += REFETCH_MS;
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(outcomes.at(-1)).toEqual(['error', reason]);
    expect(await keys.resolve('es-1', 'ES256')).toBeDefined();
    expect(keys.generation).toBe(1);
  });

  it('refuses a JWKS holding a private key, keeping the last good set', async () => {
    const keys = issuerKeys();
    await keys.start();
    serve(es1.publicJwk, es2.privateJwk);
    clock += REFETCH_MS;
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(outcomes.at(-1)).toEqual(['error', 'JWKS contains private key material']);
    expect(await keys.resolve('es-1', 'ES256')).toBeDefined();
    expect(keys.generation).toBe(1);
  });

  it('refuses a symmetric key and fails start without echoing key material', async () => {
    serve(es1.publicJwk, { kty: 'oct', kid: 'hs', k: 'c2VjcmV0LXNlY3JldC1zZWNyZXQ' });
    const start = issuerKeys().start();
    await expect(start).rejects.toThrow(JwksLoadError);
    await expect(start).rejects.toThrow(/private key material/);
    await expect(start).rejects.not.toThrow(/c2VjcmV0/);

    serve(es1.publicJwk, es2.privateJwk);
    const err = await issuerKeys().start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwksLoadError);
    expect((err as Error).message).toContain(ISSUER);
    expect((err as Error).message).not.toContain(es2.privateJwk.d);
  });

  it('skips keys that are not for verifying signatures', async () => {
    serve(
      { ...es1.publicJwk, use: 'enc' },
      { ...es2.publicJwk, key_ops: ['encrypt'] },
      { ...es3.publicJwk, use: 'sig', key_ops: ['verify'] },
      { kty: 'oct', kid: 'no-k' },
    );
    const keys = issuerKeys();
    await keys.start();
    expect(await keys.resolve('es-1', 'ES256')).toBeUndefined();
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(await verifies(await keys.resolve('es-3', 'ES256'), es3, 'ES256')).toBe(true);
  });

  it('resolves a kid-less token only when exactly one key fits', async () => {
    const { kid: _drop1, ...anon1 } = es1.publicJwk;
    const { kid: _drop2, ...anon2 } = es2.publicJwk;
    serve(anon1, rs1.publicJwk);
    const keys = issuerKeys();
    await keys.start();
    expect(await verifies(await keys.resolve(undefined, 'ES256'), es1, 'ES256')).toBe(true);

    serve(anon1, anon2, rs1.publicJwk);
    const two = issuerKeys();
    await two.start();
    clock += REFETCH_MS;
    expect(await two.resolve(undefined, 'ES256')).toBeUndefined();
    // Ambiguity is not an unknown key: no refetch for it.
    expect(requests).toBe(2);
    expect(await verifies(await two.resolve(undefined, 'RS256'), rs1, 'RS256')).toBe(true);
  });

  it('never uses a key with an algorithm its type or alg does not fit', async () => {
    serve(es1.publicJwk, { ...es2.publicJwk, alg: 'ES384' }, rs1.publicJwk);
    const keys = issuerKeys({ algorithms: ['ES256', 'ES384', 'RS256', 'PS256'] });
    await keys.start();
    clock += REFETCH_MS;
    expect(await keys.resolve('es-1', 'RS256')).toBeUndefined();
    expect(await keys.resolve('es-1', 'ES384')).toBeUndefined();
    expect(await keys.resolve('rs-1', 'ES256')).toBeUndefined();
    expect(await keys.resolve('es-2', 'ES256')).toBeUndefined();
    expect(await keys.resolve('rs-1', 'PS256')).toBeDefined();
  });

  it('gives undefined, without fetching, for an algorithm the issuer does not allow', async () => {
    const keys = issuerKeys({ algorithms: ['ES256'] });
    await keys.start();
    clock += REFETCH_MS;
    expect(await keys.resolve('rs-1', 'RS256')).toBeUndefined();
    expect(requests).toBe(1);
  });

  it('bumps the generation only when the key set changes', async () => {
    const keys = issuerKeys();
    await keys.start();
    serve(ed1.publicJwk, rs1.publicJwk, es1.publicJwk);
    clock += REFETCH_MS;
    await keys.resolve('nope', 'ES256');
    expect(requests).toBe(2);
    expect(keys.generation).toBe(1);
  });

  it('refreshes in the background until stopped, keeping keys on failure', async () => {
    const keys = issuerKeys({ refreshIntervalMs: 30 });
    await keys.start();
    serve(es1.publicJwk, es2.publicJwk);
    await expect.poll(() => keys.generation, { timeout: 2_000 }).toBe(2);
    status = 503;
    await expect.poll(() => outcomes.some(([outcome]) => outcome === 'error'), { timeout: 2_000 }).toBe(true);
    expect(keys.generation).toBe(2);
    expect(await keys.resolve('es-2', 'ES256')).toBeDefined();
    keys.stop();
    await new Promise((resolve) => setTimeout(resolve, 60));
    const after = requests;
    await new Promise((resolve) => setTimeout(resolve, 120));
    expect(requests).toBe(after);
  });

  it('refreshes when the response\'s max-age says, never sooner than the refetch interval', async () => {
    cacheControl = 'public, max-age=0';
    const keys = issuerKeys({ refreshIntervalMs: 3_600_000, refetchIntervalMs: 300, now: Date.now });
    await keys.start();
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect(requests).toBe(1);
    await expect.poll(() => requests, { timeout: 2_000 }).toBeGreaterThanOrEqual(2);
    cacheControl = 'max-age=1';
    const before = requests;
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(requests - before).toBeLessThanOrEqual(1);
    await expect.poll(() => requests - before, { timeout: 2_500 }).toBeGreaterThanOrEqual(2);
  });

  it('refuses a redirect', async () => {
    location = 'http://127.0.0.1:1/elsewhere';
    await expect(issuerKeys().start()).rejects.toThrow(/redirect/);
  });

  it('refuses a JWKS over 1 MiB', async () => {
    body = JSON.stringify({ keys: [es1.publicJwk], padding: 'x'.repeat(1024 * 1024) });
    await expect(issuerKeys().start()).rejects.toThrow(/larger than/);
  });

  it('rejects start on an unreachable URL with a message naming the issuer', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((resolve) => closed.close(resolve));
    const keys = issuerKeys({ jwksUri: `http://127.0.0.1:${port}/jwks.json` });
    const err = await keys.start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwksLoadError);
    expect((err as Error).message).toContain(`issuer ${ISSUER}`);
    expect((err as Error).message).toContain(`127.0.0.1:${port}/jwks.json`);
    expect(keys.loaded).toBe(false);
    expect(outcomes).toEqual([['error', expect.any(String)]]);
  });

  it('refuses plain http to a host that is not loopback', () => {
    expect(() => issuerKeys({ jwksUri: 'http://sts.example.com/jwks.json' })).toThrow(TypeError);
    expect(() => issuerKeys({ jwksUri: 'http://localhost:1/jwks.json' })).not.toThrow();
  });
});

describe('createIssuerKeys over jwks_file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hopguard-jwks-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('loads from the file and rereads it for an unknown kid', async () => {
    const file = join(dir, 'jwks.json');
    await writeFile(file, JSON.stringify({ keys: [es1.publicJwk] }));
    const keys = issuerKeys({ jwksUri: undefined, jwksFile: file });
    await keys.start();
    expect(await verifies(await keys.resolve('es-1', 'ES256'), es1, 'ES256')).toBe(true);

    await writeFile(file, JSON.stringify({ keys: [es1.publicJwk, es2.publicJwk] }));
    clock += REFETCH_MS;
    expect(await verifies(await keys.resolve('es-2', 'ES256'), es2, 'ES256')).toBe(true);
    expect(keys.generation).toBe(2);
  });

  it('rejects start when the file is missing, naming issuer and file', async () => {
    const file = join(dir, 'missing.json');
    const err = await issuerKeys({ jwksUri: undefined, jwksFile: file }).start().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(JwksLoadError);
    expect((err as Error).message).toContain(ISSUER);
    expect((err as Error).message).toContain(file);
  });
});
