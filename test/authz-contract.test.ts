import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckInput, CheckOutput } from '../src/authz/envoy-client.js';
import { createSigningKey, writeJwks } from '../src/devkit/signing-key.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { StoreUnavailableError, type Store } from '../src/store/store.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import { DENY_CODES, type DenyCode } from '../src/vocabulary/deny-codes.js';
import {
  CHECKOUT, ISSUER, STRANGER, authzConfig, createFixtures, route, startServer,
  type Fixtures, type Running,
} from './support/harness.js';

let fixtures: Fixtures;
let store: MemoryStore;
let server: Running;
const now = () => Math.floor(Date.now() / 1000);

beforeAll(async () => {
  fixtures = await createFixtures();
  store = new MemoryStore();
  server = await startServer(authzConfig(fixtures), store);
});
afterAll(async () => {
  await server.stop();
  fixtures.cleanup();
});

const asCheckout = () => ({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const getOrder = async (token: string, extra: Partial<CheckInput> = {}) =>
  server.envoy.check({ path: '/orders/42', headers: bearer(token), ...asCheckout(), ...extra });

/** The design's deny contract: status, RFC 6750 challenge, JSON body that echoes nothing. */
function expectDenied(out: CheckOutput, code: DenyCode, token?: string) {
  const spec = DENY_CODES[code];
  expect(out.allowed).toBe(false);
  expect(out.body?.code).toBe(code);
  expect(out.httpStatus).toBe(spec.http);
  expect(out.grpcCode).toBe(spec.grpc);
  expect(out.body?.error).toBe(spec.bodyError);
  expect(out.body?.trace_id).toMatch(/^[0-9a-f]{32}$/);
  expect(Object.keys(out.body ?? {}).sort()).toEqual(['code', 'error', 'trace_id']);
  expect(out.headers['content-type']).toBe('application/json');
  const challenge = out.headers['www-authenticate'];
  if ('bearerError' in spec) expect(challenge).toContain(`error="${spec.bearerError}"`);
  else if (code === 'missing_token') expect(challenge).toBe('Bearer realm="hopguard"');
  else expect(challenge).toBeUndefined();
  if (token) {
    const text = JSON.stringify(out.raw);
    for (const part of token.split('.')) expect(text).not.toContain(part);
  }
  for (const h of out.raw.denied_response.headers) expect(h.append_action).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
}

describe('allow', () => {
  it('sets identity headers with overwrite, removes the token and forged x-hopguard-* headers', async () => {
    const token = await fixtures.token({ jti: 'allow-1' });
    const out = await getOrder(token, {
      headers: { ...bearer(token), 'x-hopguard-subject': 'admin', 'x-hopguard-role': 'root', 'x-other': '1' },
    });
    expect(out.allowed).toBe(true);
    expect(out.headers).toEqual({
      'x-hopguard-subject': CHECKOUT,
      'x-hopguard-client-id': CHECKOUT,
      'x-hopguard-scope': 'orders:read payments:write',
      'x-hopguard-token-id': 'allow-1',
    });
    for (const h of out.raw.ok_response.headers) {
      expect(h.append_action).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
      expect(h.append).toEqual({ value: false });
    }
    expect(out.headersToRemove.sort()).toEqual(['authorization', 'x-hopguard-role']);
  });

  it('puts the verified claims in dynamic_metadata for access logs and RBAC', async () => {
    const token = await fixtures.token({ jti: 'meta-1', claims: { act: { sub: 'spiffe://test.local/ns/shop/sa/frontend' } } });
    const out = await getOrder(token);
    const fields = out.raw.dynamic_metadata.fields;
    expect(fields.decision.stringValue).toBe('allow');
    expect(fields.route.stringValue).toBe('read-orders');
    expect(fields.binding.stringValue).toBe('mtls');
    expect(fields.iss.stringValue).toBe(ISSUER);
    expect(fields.sub.stringValue).toBe(CHECKOUT);
    expect(fields.jti.stringValue).toBe('meta-1');
    expect(fields.act.structValue.fields.sub.stringValue).toBe('spiffe://test.local/ns/shop/sa/frontend');
  });

  it('keeps the authorization header on a forward_token route', async () => {
    const out = await server.envoy.check({ method: 'POST', path: '/exchange', headers: bearer(await fixtures.token()), ...asCheckout() });
    expect(out.allowed).toBe(true);
    expect(out.headersToRemove).not.toContain('authorization');
  });

  it('removes a client-sent x-hopguard-scope when the token has no scope', async () => {
    const token = await fixtures.token({ scope: undefined });
    const out = await server.envoy.check({
      method: 'POST', path: '/exchange', headers: { ...bearer(token), 'x-hopguard-scope': 'orders:write' }, ...asCheckout(),
    });
    expect(out.allowed).toBe(true);
    expect(out.headers['x-hopguard-scope']).toBeUndefined();
    expect(out.headersToRemove).toContain('x-hopguard-scope');
  });

  it('lets a public route through without a token, still stripping identity headers', async () => {
    const out = await server.envoy.check({ path: '/healthz', headers: { 'x-hopguard-subject': 'admin' } });
    expect(out.allowed).toBe(true);
    expect(out.headersToRemove).toContain('x-hopguard-subject');
  });

  it('reads header_map (encode_raw_headers) as well as headers', async () => {
    const token = await fixtures.token();
    const out = await server.envoy.check({ path: '/orders/42', headerMap: [['authorization', `Bearer ${token}`]], ...asCheckout() });
    expect(out.allowed).toBe(true);
  });

  it('matches routes on the normalized path: query dropped, unreserved escapes decoded', async () => {
    const token = await fixtures.token();
    expect((await getOrder(token, { path: '/orders/42?expand=items' })).allowed).toBe(true);
    expect((await getOrder(token, { path: '/%6Frders/42' })).allowed).toBe(true);
  });
});

describe('deny codes', () => {
  it('missing_token: 401 with a bare challenge (RFC 6750 §3.1)', async () => {
    expectDenied(await server.envoy.check({ path: '/orders/42', ...asCheckout() }), 'missing_token');
  });

  it.each([
    ['two authorization headers in header_map', { headerMap: [['authorization', 'Bearer a'], ['authorization', 'Bearer b']] }],
    ['two credentials joined by Envoy', { headers: { authorization: 'Bearer a,Bearer b' } }],
    ['an unknown scheme', { headers: { authorization: 'Basic dXNlcjpwYXNz' } }],
    ['a token in the query too', { path: '/orders/42?access_token=abc', headers: { authorization: 'Bearer abc' } }],
    ['a token in the query only', { path: '/orders/42?access%5Ftoken=abc' }],
    ['a dot-segment path', { path: '/orders/../payments' }],
    ['an encoded dot-segment path', { path: '/orders/%2e%2E/payments' }],
    ['an encoded slash', { path: '/orders%2F42' }],
    ['an empty segment', { path: '//orders/42' }],
  ] as [string, Partial<CheckInput>][])('malformed_request: %s', async (_what, input) => {
    expectDenied(await server.envoy.check({ path: '/orders/42', ...asCheckout(), ...input } as CheckInput), 'malformed_request');
  });

  // Tomcat, Jetty and Spring strip ";params" before resolving dot segments: each of these is
  // /admin/users to them, and was allowed here as read-orders.
  it.each([
    '/orders/..;/admin/users', '/orders/..;x=1/admin/users', '/orders/%2e%2e;/admin/users', '/orders/%2E%2e;/admin/users',
    '/orders/.%2e;/admin/users', '/orders/..%3b/admin/users', '/orders/.;x/../admin/users', '/orders;/../admin/users',
  ])('malformed_request: a dot segment behind ";params", %s, even with a valid token', async (path) => {
    const token = await fixtures.token();
    expectDenied(await getOrder(token, { path }), 'malformed_request', token);
  });

  it.each([
    ['audience_mismatch', { aud: 'spiffe://test.local/ns/shop/sa/payments' }],
    ['token_expired', { iat: now() - 400, ttl: 300 }],
    ['token_not_yet_valid', { claims: { nbf: now() + 120 } }],
    ['token_lifetime_too_long', { ttl: 3600 }],
    ['unknown_issuer', { iss: 'https://evil.example' }],
    ['wrong_token_type', { header: { typ: 'JWT' } }],
    ['malformed_token', { claims: { exp: '9999999999' } }],
    ['unknown_key', { header: { kid: 'no-such-key' } }],
  ] as [DenyCode, object][])('%s', async (code, overrides) => {
    const token = await fixtures.token(overrides);
    expectDenied(await getOrder(token), code, token);
  });

  it('invalid_signature: a key that is not the issuer\'s, under the issuer\'s kid', async () => {
    const impostor = await createSigningKey('ES256', fixtures.key.kid);
    const token = await fixtures.token({}, impostor);
    expectDenied(await getOrder(token), 'invalid_signature', token);
  });

  it('disallowed_algorithm: an algorithm the issuer is not allowed', async () => {
    const es384 = await createSigningKey('ES384');
    const token = await fixtures.token({}, es384);
    expectDenied(await getOrder(token), 'disallowed_algorithm', token);
  });

  it('binding_required: an unbound token where binding is mtls', async () => {
    const token = await fixtures.token({ certThumbprint: undefined });
    expectDenied(await getOrder(token), 'binding_required', token);
  });

  it('binding_mismatch: the token replayed with another certificate, or none', async () => {
    const token = await fixtures.token();
    expectDenied(await getOrder(token, { certificatePem: fixtures.stranger.certPem }), 'binding_mismatch', token);
    expectDenied(await getOrder(token, { certificatePem: undefined }), 'binding_mismatch', token);
  });

  it('insufficient_scope: 403 naming the route\'s scopes', async () => {
    const token = await fixtures.token({ scope: 'orders:write' });
    const out = await getOrder(token);
    expectDenied(out, 'insufficient_scope', token);
    expect(out.headers['www-authenticate']).toContain('scope="orders:read"');
  });

  it('caller_not_allowed: a principal the route does not list', async () => {
    const token = await fixtures.token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint });
    const out = await server.envoy.check({
      method: 'POST', path: '/payments', headers: bearer(token), principal: STRANGER, certificatePem: fixtures.stranger.certPem,
    });
    expectDenied(out, 'caller_not_allowed', token);
  });

  it('no_route: nothing matches the method and path', async () => {
    const token = await fixtures.token();
    expectDenied(await getOrder(token, { path: '/admin' }), 'no_route', token);
    expectDenied(await getOrder(token, { method: 'DELETE' }), 'no_route', token);
  });
});

describe('revocation', () => {
  const revoke = (revocation: Parameters<Store['revoke']>[0]['revocation']) =>
    store.revoke({ revocation, expiresAtMs: Date.now() + 600_000 });

  it('by token id, even after the token was cached', async () => {
    const token = await fixtures.token({ jti: 'revoke-me' });
    expect((await getOrder(token)).allowed).toBe(true);
    await revoke({ kind: 'jti', fingerprint: fingerprint(ISSUER, 'revoke-me') });
    expectDenied(await getOrder(token), 'token_revoked', token);
  });

  it('by subject: tokens issued before the revocation die, later ones live', async () => {
    const sub = 'spiffe://test.local/ns/shop/sa/checkout-2';
    const old = await fixtures.token({ sub, iat: now() - 10 });
    await revoke({ kind: 'subject', value: sub, before: now() - 5 });
    expectDenied(await getOrder(old), 'token_revoked', old);
    expect((await getOrder(await fixtures.token({ sub }))).allowed).toBe(true);
  });

  it('by client id', async () => {
    const token = await fixtures.token({ clientId: 'client-to-revoke', iat: now() - 10 });
    await revoke({ kind: 'client', value: 'client-to-revoke', before: now() });
    expectDenied(await getOrder(token), 'token_revoked', token);
  });

  for (const kind of ['subject', 'client'] as const) {
    // floor(iat) ≤ floor(T): a NumericDate iat with a fraction (T + 0.5) once outlived a revocation at T.
    it(`by ${kind}, in the same second: iat T + 0.5 after a revocation at T dies; iat T + 1 lives`, async () => {
      const value = `spiffe://test.local/ns/shop/sa/same-second-${kind}`;
      const t = now() - 2;
      await revoke({ kind, value, before: t });
      const claims = kind === 'subject' ? { sub: value } : { clientId: value };
      const sameSecond = await fixtures.token({ ...claims, iat: t + 0.5 });
      expectDenied(await getOrder(sameSecond), 'token_revoked', sameSecond);
      expect((await getOrder(await fixtures.token({ ...claims, iat: t + 1 }))).allowed).toBe(true);
    });
  }

  it('by certificate thumbprint', async () => {
    const token = await fixtures.token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint });
    const asStranger = { principal: STRANGER, certificatePem: fixtures.stranger.certPem };
    expect((await getOrder(token, asStranger)).allowed).toBe(true);
    await revoke({ kind: 'cert', thumbprint: fixtures.stranger.thumbprint });
    expectDenied(await getOrder(token, asStranger), 'token_revoked', token);
  });
});

describe('one-time routes', () => {
  const pay = (token: string) =>
    server.envoy.check({ method: 'POST', path: '/payments', headers: bearer(token), ...asCheckout() });

  it('accept a token once; the second use is token_replayed', async () => {
    const token = await fixtures.token();
    expect((await pay(token)).allowed).toBe(true);
    expectDenied(await pay(token), 'token_replayed', token);
  });

  it('do not burn a token on a request that fails another check', async () => {
    const token = await fixtures.token();
    expectDenied(await server.envoy.check({
      method: 'POST', path: '/payments', headers: bearer(token), principal: STRANGER, certificatePem: fixtures.checkout.certPem,
    }), 'caller_not_allowed', token);
    expect((await pay(token)).allowed).toBe(true);
  });
});

describe('failures inside hopguard deny, never error', () => {
  it('state_unavailable (503) when one-time use cannot be recorded', async () => {
    const failing = new MemoryStore();
    failing.markUsed = async () => { throw new StoreUnavailableError('redis down'); };
    const other = await startServer(authzConfig(fixtures), failing);
    try {
      const token = await fixtures.token();
      const out = await other.envoy.check({ method: 'POST', path: '/payments', headers: bearer(token), ...asCheckout() });
      expectDenied(out, 'state_unavailable', token);
      expect((await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() })).allowed).toBe(true);
    } finally {
      await other.stop();
    }
  });

  it('state_unavailable when revocation state is too old to trust', async () => {
    const stale = new MemoryStore();
    stale.health = () => ({ state: 'unavailable' });
    const other = await startServer(authzConfig(fixtures), stale);
    try {
      const token = await fixtures.token();
      expectDenied(await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() }), 'state_unavailable', token);
    } finally {
      await other.stop();
    }
  });

  it('internal_error (500) on an unexpected fault, and the server keeps serving', async () => {
    const broken = new MemoryStore();
    let fail = true;
    const real = broken.findRevocation.bind(broken);
    broken.findRevocation = (t) => { if (fail) throw new Error('bug'); return real(t); };
    const other = await startServer(authzConfig(fixtures), broken);
    try {
      const token = await fixtures.token();
      expectDenied(await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() }), 'internal_error', token);
      fail = false;
      expect((await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() })).allowed).toBe(true);
    } finally {
      await other.stop();
    }
  });
});

describe('trace ids', () => {
  const metadataTrace = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const headerTrace = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

  it('come from the gRPC metadata first, then the request header', async () => {
    const both = await server.envoy.check({ path: '/orders/1', headers: { traceparent: headerTrace }, traceparent: metadataTrace });
    expect(both.body?.trace_id).toBe('0af7651916cd43dd8448eb211c80319c');
    const header = await server.envoy.check({ path: '/orders/1', headers: { traceparent: headerTrace } });
    expect(header.body?.trace_id).toBe('4bf92f3577b34da6a3ce929d0e0e4736');
  });

  it('are fresh when none is sent or it is invalid', async () => {
    const a = await server.envoy.check({ path: '/orders/1', headers: { traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' } });
    const b = await server.envoy.check({ path: '/orders/1' });
    expect(a.body?.trace_id).not.toBe('0'.repeat(32));
    expect(a.body?.trace_id).not.toBe(b.body?.trace_id);
  });
});

describe('verification cache', () => {
  it('never skips binding: a cached token replayed with another certificate is denied', async () => {
    const token = await fixtures.token();
    expect((await getOrder(token)).allowed).toBe(true);
    expectDenied(await getOrder(token, { certificatePem: fixtures.stranger.certPem }), 'binding_mismatch', token);
  });

  it('never outlives the token: an entry is rechecked against the clock', async () => {
    const other = await startServer(authzConfig(fixtures, { clockSkewMs: 0 }), new MemoryStore());
    try {
      const token = await fixtures.token({ ttl: 2, iat: now() });
      expect((await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() })).allowed).toBe(true);
      await new Promise((r) => setTimeout(r, 2100));
      expectDenied(await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() }), 'token_expired', token);
    } finally {
      await other.stop();
    }
  });

  it('is dropped when the key set changes: a removed key stops verifying', async () => {
    const rotated = await createSigningKey('ES256', 'rotated');
    const config = authzConfig(fixtures, {
      issuers: [{ issuer: ISSUER, jwksFile: `${fixtures.dir}/rotating-jwks.json`, algorithms: ['ES256'], maxTtlMs: 600_000 }],
      jwks: { refreshIntervalMs: 300_000, refetchIntervalMs: 1, fetchTimeoutMs: 2000, checkWaitMs: 250 },
    });
    writeJwks(`${fixtures.dir}/rotating-jwks.json`, [fixtures.key]);
    const other = await startServer(config, new MemoryStore());
    try {
      const token = await fixtures.token();
      expect((await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() })).allowed).toBe(true);
      // The issuer drops the old key; a token under a new kid makes hopguard reread the set.
      writeJwks(`${fixtures.dir}/rotating-jwks.json`, [rotated]);
      const fresh = await fixtures.token({}, rotated);
      expect((await other.envoy.check({ path: '/orders/1', headers: bearer(fresh), ...asCheckout() })).allowed).toBe(true);
      expectDenied(await other.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() }), 'unknown_key', token);
    } finally {
      await other.stop();
    }
  });
});

describe('binding: none', () => {
  it('accepts an unbound token, but still holds a bound one to its certificate', async () => {
    const config = authzConfig(fixtures, {
      binding: 'none',
      routes: [route('any', { pathPrefix: '/' })],
    });
    const other = await startServer(config, new MemoryStore());
    try {
      const unbound = await fixtures.token({ certThumbprint: undefined });
      expect((await other.envoy.check({ path: '/x', headers: bearer(unbound) })).allowed).toBe(true);
      const bound = await fixtures.token();
      expectDenied(await other.envoy.check({ path: '/x', headers: bearer(bound) }), 'binding_mismatch', bound);
      expect((await other.envoy.check({ path: '/x', headers: bearer(bound), ...asCheckout() })).allowed).toBe(true);
    } finally {
      await other.stop();
    }
  });
});

describe('a path that the application could read as another route', () => {
  it('is refused when ";params" or case change the route, and matched when they do not', async () => {
    // A stricter route before a looser one: Tomcat reads /orders/admin;x/users as /orders/admin/users,
    // ASP.NET reads /orders/ADMIN/users as it too.
    const other = await startServer(authzConfig(fixtures, {
      routes: [
        route('admin', { pathPrefix: '/orders/admin/', scopes: ['orders:admin'] }),
        route('read-orders', { pathPrefix: '/orders/', scopes: ['orders:read'] }),
      ],
    }), new MemoryStore());
    try {
      const token = await fixtures.token();
      const check = (path: string) => other.envoy.check({ path, headers: bearer(token), ...asCheckout() });
      for (const path of ['/orders/admin;x/users', '/orders/admin%3Bx/users', '/orders/ADMIN/users', '/orders/Admin;x/users']) {
        expectDenied(await check(path), 'malformed_request', token);
      }
      expectDenied(await check('/orders/admin/users'), 'insufficient_scope', token);
      for (const path of ['/orders/42;v=2', '/orders/42%3bv=2', '/orders/ABC-42']) expect((await check(path)).allowed).toBe(true);
    } finally {
      await other.stop();
    }
  });
});
