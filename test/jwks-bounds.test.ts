import { randomUUID } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { JwksOptions } from '../src/config/authz-config.js';
import { createSigningKey, type SigningKey } from '../src/devkit/signing-key.js';
import type { Algorithm } from '../src/vocabulary/algorithms.js';
import { grpcHealth } from './support/grpc-health.js';
import { CHECKOUT, ISSUER, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';

// A real sidecar (gRPC API, admin listener) against a JWKS server on loopback that misbehaves
// in the ways a soak found: silent, dribbling one byte at a time, or serving no usable key.

type Mode = 'keys' | 'silent' | 'dribble';

/** One request as the JWKS server saw it: when it came, and when the sidecar's side closed. */
interface Seen { at: number; closedAt?: number; completed: boolean }

let fixtures: Fixtures;
let mode: Mode;
let published: () => unknown[];
let seen: Seen[];
let server: http.Server;
let url: string;
let running: Running | undefined;

beforeAll(async () => {
  fixtures = await createFixtures();
  server = http.createServer((req, res) => {
    const request: Seen = { at: Date.now(), completed: false };
    seen.push(request);
    req.socket.on('close', () => {
      request.closedAt = Date.now();
    });
    const body = JSON.stringify({ keys: published() });
    if (mode === 'silent') return;
    if (mode === 'keys') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(body, () => {
        request.completed = true;
      });
      return;
    }
    // One byte every 100 ms: a socket idle timeout never fires, the body takes ~100 s.
    res.writeHead(200, { 'content-type': 'application/json' });
    let sent = 0;
    const dribble = setInterval(() => {
      if (res.destroyed) return clearInterval(dribble);
      res.write(body[sent++]);
      if (sent === body.length) {
        clearInterval(dribble);
        res.end(() => {
          request.completed = true;
        });
      }
    }, 100);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
});

afterEach(async () => {
  await running?.stop();
  running = undefined;
  server.closeAllConnections();
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  fixtures.cleanup();
});

async function startSidecar(jwks: Partial<JwksOptions>, serving: Mode = 'keys', algorithms: Algorithm[] = ['ES256']): Promise<Running> {
  mode = serving;
  seen = [];
  running = await startServer(authzConfig(fixtures, {
    issuers: [{ issuer: ISSUER, jwksUri: url, algorithms, maxTtlMs: 600_000 }],
    jwks: { refreshIntervalMs: 3_600_000, refetchIntervalMs: 30_000, fetchTimeoutMs: 2_000, checkWaitMs: 250, ...jwks },
  }));
  return running;
}

async function check(sidecar: Running, token: string) {
  const started = Date.now();
  const out = await sidecar.envoy.check({
    path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
  });
  return { code: out.allowed ? 'allowed' : out.body?.code, elapsedMs: Date.now() - started };
}

const tokenWithKid = (kid: string) => fixtures.token({ header: { kid } });

async function readyz(sidecar: Running): Promise<{ status: number; reasons: string[] }> {
  const res = await fetch(`http://${sidecar.authz.adminAddress}/readyz`);
  return { status: res.status, reasons: ((await res.json()) as { reasons: string[] }).reasons };
}

describe('jwks.fetch_timeout is one deadline for the whole fetch', () => {
  it.each([['silent', 'silent'], ['dribbling one byte every 100 ms', 'dribble']] as const)(
    'aborts a fetch from a %s server at its deadline, and a check with a new kid does not wait for it',
    async (_name, misbehaviour) => {
      published = () => [fixtures.key.publicJwk];
      // A fetch_timeout past Envoy's 1 s, so a check that waited for the fetch would be too late.
      const sidecar = await startSidecar({ fetchTimeoutMs: 1_500, checkWaitMs: 250, refetchIntervalMs: 1_000 });
      expect((await check(sidecar, await fixtures.token())).code).toBe('allowed');
      // Past the fetch floor (1 s after the first load), so the refetch starts with the check.
      await new Promise((resolve) => setTimeout(resolve, 1_100));

      mode = misbehaviour;
      const out = await check(sidecar, await tokenWithKid('rotated-in'));
      expect(out.code).toBe('unknown_key');
      // Envoy gives up after 1 s: the answer must come before that, not when the fetch ends.
      expect(out.elapsedMs).toBeLessThan(1_000);

      expect(seen).toHaveLength(2);
      const fetch = seen[1]!;
      // Aborted by the sidecar at fetch_timeout (1.5 s), never completed by the server.
      await expect.poll(() => fetch.closedAt, { timeout: 10_000, interval: 50 }).toBeDefined();
      expect(fetch.completed).toBe(false);
      expect(fetch.closedAt! - fetch.at).toBeLessThan(4_000);
      // The sidecar keeps the last good key set and stays ready.
      expect((await check(sidecar, await fixtures.token())).code).toBe('allowed');
      expect((await readyz(sidecar)).status).toBe(200);
    },
    30_000,
  );

  it('starts unready, without hanging, when the first fetch dribbles', async () => {
    published = () => [fixtures.key.publicJwk];
    const started = Date.now();
    const sidecar = await startSidecar({ fetchTimeoutMs: 500 }, 'dribble');
    expect(Date.now() - started).toBeLessThan(2_000);
    const { status, reasons } = await readyz(sidecar);
    expect(status).toBe(503);
    expect(reasons).toEqual([`keys not loaded for issuer ${ISSUER}`]);
  }, 30_000);
});

describe('a kid the issuer rotates in', () => {
  it('is accepted within about a second while random kids flood, and the flood fetches at most once a second', async () => {
    const next: SigningKey = await createSigningKey('ES256', `next-${randomUUID()}`);
    let keys = [fixtures.key];
    published = () => keys.map((k) => k.publicJwk);
    const sidecar = await startSidecar({ refetchIntervalMs: 30_000 });
    expect((await check(sidecar, await fixtures.token())).code).toBe('allowed');

    let flooding = true;
    let flooded = 0;
    const flood = async () => {
      while (flooding) {
        const { code } = await check(sidecar, await tokenWithKid(`random-${randomUUID()}`));
        expect(code).toBe('unknown_key');
        flooded++;
      }
    };
    const floodStart = Date.now();
    const floods = Array.from({ length: 8 }, flood);
    try {
      await new Promise((resolve) => setTimeout(resolve, 1_500));
      // `keys rotate --now`: the issuer publishes the new key and signs with it at once.
      keys = [fixtures.key, next];
      const rotatedAt = Date.now();
      const token = await fixtures.token({}, next);
      let code: string | undefined;
      while ((code = (await check(sidecar, token)).code) !== 'allowed' && Date.now() - rotatedAt < 10_000) {
        expect(code).toBe('unknown_key');
      }
      expect(code).toBe('allowed');
      // One fetch floor (1 s) plus a fetch and a check: 3 s is a wide margin; the old code took refetch_interval (30 s).
      expect(Date.now() - rotatedAt).toBeLessThan(3_000);
      await new Promise((resolve) => setTimeout(resolve, 1_000));
    } finally {
      flooding = false;
      await Promise.all(floods);
    }
    const floodSeconds = (Date.now() - floodStart) / 1000;
    expect(flooded).toBeGreaterThan(20);
    // Hundreds of made-up kids, yet no more than one fetch per second (plus the first load).
    expect(seen.length - 1).toBeLessThanOrEqual(Math.ceil(floodSeconds) + 1);
  }, 30_000);

  it('is looked for once: a made-up kid is not refetched again within refetch_interval', async () => {
    published = () => [fixtures.key.publicJwk];
    const sidecar = await startSidecar({ refetchIntervalMs: 30_000, checkWaitMs: 500 });
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    const token = await tokenWithKid('made-up');
    expect((await check(sidecar, token)).code).toBe('unknown_key');
    await expect.poll(() => seen.length, { timeout: 5_000 }).toBe(2);
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    for (let i = 0; i < 5; i++) expect((await check(sidecar, token)).code).toBe('unknown_key');
    expect(seen).toHaveLength(2);
  }, 30_000);
});

describe('readiness needs a usable key per issuer', () => {
  const otherTypes = async () => {
    const ed = await createSigningKey('EdDSA', 'ed');
    const rsaSmall = { kty: 'RSA', kid: 'rsa-512', n: Buffer.alloc(64, 0xc1).toString('base64url'), e: 'AQAB' };
    const offCurve = { ...fixtures.key.publicJwk, kid: 'off-curve', y: Buffer.alloc(32, 1).toString('base64url') };
    return [ed.publicJwk, rsaSmall, offCurve, { kty: 'oct', kid: 'no-k' }, { ...fixtures.key.publicJwk, kid: 'enc', use: 'enc' }];
  };

  it.each([
    ['an empty key set', async () => []],
    ['keys of disallowed algorithms, too small, off the curve or not for signing', otherTypes],
  ])('is 503 naming the issuer for %s, on /readyz and gRPC health', async (_name, keys) => {
    const served = await keys();
    published = () => served;
    const sidecar = await startSidecar({}, 'keys', ['ES256', 'RS256']);
    const { status, reasons } = await readyz(sidecar);
    expect(status).toBe(503);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain(`no usable key for issuer ${ISSUER}`);
    expect(reasons[0]).not.toMatch(/kid|[A-Za-z0-9_-]{40}/);
    expect(await grpcHealth(sidecar.authz.grpcAddress)).toBe('NOT_SERVING');
  });

  it('is ready with one usable key among unusable ones', async () => {
    const served = [...await otherTypes(), fixtures.key.publicJwk];
    published = () => served;
    const sidecar = await startSidecar({}, 'keys', ['ES256', 'RS256']);
    expect((await readyz(sidecar)).status).toBe(200);
    expect(await grpcHealth(sidecar.authz.grpcAddress)).toBe('SERVING');
  });
});
