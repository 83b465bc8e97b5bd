import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckInput, CheckOutput } from '../src/authz/envoy-client.js';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import { DpopNonces } from '../src/token/dpop-nonce.js';
import { accessTokenHash, normalizeHtu, verifyDpopProof } from '../src/token/dpop-proof.js';
import type { BindingMode } from '../src/vocabulary/binding.js';
import { CHECKOUT, STRANGER, authzConfig, createFixtures, route, startServer, type Fixtures, type Running } from './support/harness.js';

// RFC 9449 §7.1, Figures 13 and 14: a proof for a GET of https://resource.example.org/protectedresource.
const RFC_PROOF = 'eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6IkVDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCRnMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JEQSIsImNydiI6IlAtMjU2In19'
  + '.eyJqdGkiOiJlMWozVl9iS2ljOC1MQUVCIiwiaHRtIjoiR0VUIiwiaHR1IjoiaHR0cHM6Ly9yZXNvdXJjZS5leGFtcGxlLm9yZy9wcm90ZWN0ZWRyZXNvdXJjZSIsImlhdCI6MTU2MjI2MjYxOCwiYXRoIjoiZlVIeU8ycjJaM0RaNTNFc05yV0JiMHhXWG9hTnk1OUlpS0NBcWtzbVFFbyJ9'
  + '.2oW9RP35yRqzhrtNP86L-Ey71EOptxRimPPToA1plemAgR6pxHF8y6-yqyVnmcw6Fy1dqd-jfxSYoMxhAJpLjA';
const RFC_ACCESS_TOKEN = 'Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU';
const RFC_JKT = '0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I';
const RFC_EXPECTATION = {
  method: 'GET', htu: 'https://resource.example.org/protectedresource', accessToken: RFC_ACCESS_TOKEN, jkt: RFC_JKT,
  algorithms: ['ES256'], now: 1562262618_000, maxAgeMs: 60_000, skewMs: 30_000,
};

describe('RFC 9449 known answer', () => {
  it('the §7.1 example proof verifies with the clock frozen at its iat', async () => {
    expect(accessTokenHash(RFC_ACCESS_TOKEN)).toBe('fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo');
    expect(await verifyDpopProof(RFC_PROOF, RFC_EXPECTATION)).toEqual({ jti: 'e1j3V_bKic8-LAEB', iat: 1562262618, jkt: RFC_JKT });
  });

  it.each([
    ['another method', { method: 'POST' }, 'htm'],
    ['another URI', { htu: 'https://resource.example.org/other' }, 'htu'],
    ['another access token', { accessToken: 'other' }, 'ath'],
    ['another key binding', { jkt: 'x'.repeat(43) }, 'bound'],
    ['an hour later', { now: 1562262618_000 + 3600_000 }, 'window'],
    ['an algorithm not allowed', { algorithms: ['EdDSA'] }, 'algorithm'],
  ])('is refused for %s', async (_what, change, fragment) => {
    await expect(verifyDpopProof(RFC_PROOF, { ...RFC_EXPECTATION, ...change })).rejects.toThrow(fragment);
  });
});

describe('normalizeHtu (RFC 3986 §6.2.2–6.2.3)', () => {
  it.each([
    ['HTTPS://Resource.Example.ORG:443/protectedresource?x=1#f', 'https://resource.example.org/protectedresource'],
    ['https://resource.example.org/a/./b/../c', 'https://resource.example.org/a/c'],
    ['https://resource.example.org/%7euser/%2fx', 'https://resource.example.org/~user/%2Fx'],
    ['http://resource.example.org:80', 'http://resource.example.org/'],
    ['https://resource.example.org:8443/x', 'https://resource.example.org:8443/x'],
  ])('%s → %s', (uri, normalized) => {
    expect(normalizeHtu(uri)).toBe(normalized);
  });

  it('refuses what is not an http(s) URI', () => {
    expect(normalizeHtu('ftp://x/y')).toBeUndefined();
    expect(normalizeHtu('/relative')).toBeUndefined();
  });
});

const HTU = 'https://orders.shop.example/orders/1';
const proof = (client: DpopKey, accessToken: string | undefined, claims: Record<string, unknown> = {}, header: Record<string, unknown> = {}) =>
  dpopProof(client, { htm: 'GET', htu: HTU, ...(accessToken !== undefined && { accessToken }) }, claims, header);

let fixtures: Fixtures;
let servers: Record<BindingMode, Running>;
let alice: DpopKey;
let mallory: DpopKey;

beforeAll(async () => {
  fixtures = await createFixtures();
  [alice, mallory] = await Promise.all([createDpopKey(), createDpopKey()]);
  const routes = [route('read', { methods: ['GET'], pathPrefix: '/orders/' })];
  const entries = await Promise.all((['dpop', 'mtls_or_dpop', 'mtls'] as const).map(async (binding) =>
    [binding, await startServer(authzConfig(fixtures, { binding, routes }))] as const));
  servers = Object.fromEntries(entries) as Record<BindingMode, Running>;
});
afterAll(async () => {
  await Promise.all(Object.values(servers).map((s) => s.stop()));
  fixtures.cleanup();
});

const boundToAlice = () => fixtures.token({ certThumbprint: undefined, claims: { cnf: { jkt: alice.jkt } } });
const send = (binding: BindingMode, headers: Record<string, string>, extra: Partial<CheckInput> = {}): Promise<CheckOutput> =>
  servers[binding].envoy.check({ path: '/orders/1', host: 'orders.shop.example', headers, ...extra });
const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);

describe('DPoP at the sidecar', () => {
  it('allows a DPoP-bound token with a fresh proof of its key', async () => {
    const token = await boundToAlice();
    const out = await send('dpop', { authorization: `DPoP ${token}`, dpop: await proof(alice, token) });
    expect(out.allowed).toBe(true);
    expect(out.raw.dynamic_metadata.fields.binding.stringValue).toBe('dpop');
  });

  it('mtls_or_dpop accepts either binding; mtls refuses DPoP-bound tokens', async () => {
    const token = await boundToAlice();
    expect(codeOf(await send('mtls_or_dpop', { authorization: `DPoP ${token}`, dpop: await proof(alice, token) }))).toBe('allowed');
    const certBound = await fixtures.token();
    expect(codeOf(await send('mtls_or_dpop', { authorization: `Bearer ${certBound}` }, { certificatePem: fixtures.checkout.certPem, principal: CHECKOUT }))).toBe('allowed');
    expect(codeOf(await send('mtls', { authorization: `DPoP ${token}`, dpop: await proof(alice, token) }))).toBe('binding_mismatch');
  });

  it('answers a DPoP request in the DPoP scheme, with algs (RFC 9449 §7.1)', async () => {
    const token = await boundToAlice();
    const out = await send('dpop', { authorization: `DPoP ${token}`, dpop: await proof(mallory, token) });
    expect(out.body?.error).toBe('invalid_dpop_proof');
    expect(out.httpStatus).toBe(401);
    expect(out.headers['www-authenticate']).toMatch(/^DPoP realm="hopguard", algs="ES256 EdDSA RS256 PS256", error="invalid_dpop_proof"/);
    const none = await send('dpop', {});
    expect(none.headers['www-authenticate']).toBe('DPoP realm="hopguard", algs="ES256 EdDSA RS256 PS256"');
  });
});

describe('DPoP attacks', () => {
  const attacks: [string, (token: string) => Promise<Record<string, string>>, string][] = [
    ['replayed proof', async (t) => { const p = await proof(alice, t); await send('dpop', { authorization: `DPoP ${t}`, dpop: p }); return { authorization: `DPoP ${t}`, dpop: p }; }, 'dpop_invalid'],
    ['wrong htm', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { htm: 'POST' }) }), 'dpop_invalid'],
    ['wrong htu host', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { htu: 'https://evil.example/orders/1' }) }), 'dpop_invalid'],
    ['wrong htu path', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { htu: 'https://orders.shop.example/orders/2' }) }), 'dpop_invalid'],
    ['stale iat', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { iat: Math.floor(Date.now() / 1000) - 300 }) }), 'dpop_invalid'],
    ['future iat', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { iat: Math.floor(Date.now() / 1000) + 300 }) }), 'dpop_invalid'],
    ['missing ath', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, undefined) }), 'dpop_invalid'],
    ['ath of another token', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, `${t}x`) }), 'dpop_invalid'],
    ['attacker key', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(mallory, t) }), 'dpop_invalid'],
    ['attacker key under the victim\'s jwk header', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(mallory, t, {}, { jwk: alice.jwk }) }), 'dpop_invalid'],
    ['private key in jwk', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, {}, { jwk: { ...alice.jwk, d: 'AAAA' } }) }), 'dpop_invalid'],
    ['huge jti', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, { jti: 'j'.repeat(5000) }) }), 'dpop_invalid'],
    ['wrong typ', async (t) => ({ authorization: `DPoP ${t}`, dpop: await proof(alice, t, {}, { typ: 'JWT' }) }), 'dpop_invalid'],
    ['alg none proof', async (t) => {
      const [, payload] = (await proof(alice, t)).split('.');
      const header = Buffer.from(JSON.stringify({ typ: 'dpop+jwt', alg: 'none', jwk: alice.jwk })).toString('base64url');
      return { authorization: `DPoP ${t}`, dpop: `${header}.${payload}.` };
    }, 'dpop_invalid'],
    ['no DPoP header', async (t) => ({ authorization: `DPoP ${t}` }), 'dpop_invalid'],
    ['two proofs joined', async (t) => ({ authorization: `DPoP ${t}`, dpop: `${await proof(alice, t)},${await proof(alice, t)}` }), 'dpop_invalid'],
    ['DPoP-bound token under the Bearer scheme', async (t) => ({ authorization: `Bearer ${t}`, dpop: await proof(alice, t) }), 'binding_mismatch'],
  ];

  it.each(attacks)('%s is denied', async (_attack, build, expected) => {
    const token = await boundToAlice();
    const out = await send('dpop', await build(token));
    expect(codeOf(out)).toBe(expected);
    expect(JSON.stringify(out.body)).not.toContain(token.split('.')[1]);
  });

  it('two DPoP headers in header_map are denied', async () => {
    const token = await boundToAlice();
    const out = await servers.dpop.envoy.check({
      path: '/orders/1', host: 'orders.shop.example',
      headerMap: [['authorization', `DPoP ${token}`], ['dpop', await proof(alice, token)], ['dpop', await proof(alice, token)]],
    });
    expect(codeOf(out)).toBe('dpop_invalid');
  });

  it('a certificate-bound token under the DPoP scheme is denied', async () => {
    const token = await fixtures.token();
    expect(codeOf(await send('mtls_or_dpop', { authorization: `DPoP ${token}`, dpop: await proof(alice, token) }, { certificatePem: fixtures.checkout.certPem }))).toBe('binding_mismatch');
  });

  it('an unbound token under the DPoP scheme is denied', async () => {
    const token = await fixtures.token({ certThumbprint: undefined });
    expect(codeOf(await send('dpop', { authorization: `DPoP ${token}`, dpop: await proof(alice, token) }))).toBe('binding_mismatch');
  });
});

describe('DPoP server nonces (RFC 9449 §9)', () => {
  it('a nonce is good in its window and the next, only with the secret that made it', () => {
    const nonces = new DpopNonces(Buffer.from('secret-a'), 60_000);
    const t = 1_700_000_000_000;
    const nonce = nonces.issue(t);
    expect(nonces.valid(nonce, t)).toBe(true);
    expect(nonces.valid(nonce, t + 60_000)).toBe(true);
    expect(nonces.valid(nonce, t + 120_000)).toBe(false);
    expect(new DpopNonces(Buffer.from('secret-b'), 60_000).valid(nonce, t)).toBe(false);
    for (const bad of [undefined, 42, '', 'x.y', `${nonce}.z`, `${nonce.split('.')[0]}.${'A'.repeat(22)}`]) expect(nonces.valid(bad, t)).toBe(false);
  });

  it('a proof without the server nonce gets use_dpop_nonce and a DPoP-Nonce; with it, the request passes on any replica', async () => {
    const secretFile = path.join(fixtures.dir, 'dpop-nonce.secret');
    writeFileSync(secretFile, 'shared-between-replicas');
    const config = authzConfig(fixtures, {
      binding: 'dpop',
      routes: [route('read', { methods: ['GET'], pathPrefix: '/orders/' })],
      dpop: { algorithms: ['ES256'], maxAgeMs: 60_000, nonce: { secretFile, lifetimeMs: 60_000 } },
    });
    const [one, two] = await Promise.all([startServer(config), startServer(config)]);
    try {
      const token = await boundToAlice();
      const ask = (replica: Running, claims: Record<string, unknown> = {}) => proof(alice, token, claims)
        .then((p) => replica.envoy.check({ path: '/orders/1', host: 'orders.shop.example', headers: { authorization: `DPoP ${token}`, dpop: p } }));
      const challenged = await ask(one);
      expect(codeOf(challenged)).toBe('dpop_nonce_required');
      expect(challenged.httpStatus).toBe(401);
      expect(challenged.headers['www-authenticate']).toContain('error="use_dpop_nonce"');
      const nonce = challenged.headers['dpop-nonce'];
      expect(nonce).toMatch(/^[0-9a-z]+\.[A-Za-z0-9_-]{22}$/);
      expect(codeOf(await ask(one, { nonce }))).toBe('allowed');
      expect(codeOf(await ask(two, { nonce }))).toBe('allowed');
      expect(codeOf(await ask(one, { nonce: `${nonce!.split('.')[0]}.${'A'.repeat(22)}` }))).toBe('dpop_nonce_required');
    } finally {
      await Promise.all([one.stop(), two.stop()]);
    }
  });
});

describe('a DPoP proof on a request denied after its replay check', () => {
  it('is not spent: the proof the wrong caller sent is still good once for the right one', async () => {
    const server = await startServer(authzConfig(fixtures, {
      binding: 'dpop', routes: [route('read', { methods: ['GET'], pathPrefix: '/orders/', callers: [CHECKOUT] })],
    }));
    try {
      const token = await boundToAlice();
      const headers = { authorization: `DPoP ${token}`, dpop: await proof(alice, token) };
      const ask = (principal: string) => server.envoy.check({ path: '/orders/1', host: 'orders.shop.example', headers, principal });
      expect(codeOf(await ask(STRANGER))).toBe('caller_not_allowed');
      expect(codeOf(await ask(CHECKOUT))).toBe('allowed');
      expect(codeOf(await ask(CHECKOUT))).toBe('dpop_invalid');
    } finally {
      await server.stop();
    }
  });
});
