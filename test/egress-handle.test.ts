import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvoyClient, upstreamHeaders, type CheckInput, type CheckOutput } from '../src/authz/envoy-client.js';
import type { AuthzConfig } from '../src/config/authz-config.js';
import { baggageWithHandle, baggageWithoutHandle, readBaggageHandles } from '../src/egress/baggage.js';
import { HANDLE_PREFIX, HandleSealer, MAX_HANDLE_LENGTH, newHandleKey } from '../src/egress/handle.js';
import { OpenedHandles } from '../src/egress/opened-handles.js';
import { MAX_TOKEN_LENGTH } from '../src/token/compact-jws.js';
import {
  AUDIENCE, CHECKOUT, authzConfig, createFixtures, route, startServer, type Fixtures, type Running,
} from './support/harness.js';

const HANDLE_HEADER = 'x-hopguard-handle';
/** Three base64url segments, as a compact JWS is: anywhere in a header value. */
const JWT_SHAPE = /[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}/;
const nowS = () => Math.floor(Date.now() / 1000);

/** With egress on, no route may forward the token: these are the harness's routes minus that one. */
const ROUTES = [
  route('create-payment', { methods: ['POST'], path: '/payments', scopes: ['payments:write'], callers: [CHECKOUT], oneTime: true }),
  route('read-orders', { methods: ['GET'], pathPrefix: '/orders/', scopes: ['orders:read'] }),
  route('health', { path: '/healthz', public: true }),
];

const PAYMENTS = { host: 'payments.svc', audience: 'spiffe://test.local/ns/shop/sa/payments', scopes: [], perRequest: false, withoutHandle: 'deny' as const };

export function egressConfig(fixtures: Fixtures, overrides: Partial<AuthzConfig> = {}): AuthzConfig {
  return authzConfig(fixtures, {
    routes: ROUTES,
    issuerClient: {
      tokenEndpoint: 'https://127.0.0.1:1/token', transport: 'tls',
      caFile: fixtures.ca.certPath, certFile: fixtures.checkout.certPath, keyFile: fixtures.checkout.keyPath,
      timeoutMs: 2000,
    },
    egress: { listen: { kind: 'tcp', host: '127.0.0.1', port: 0 }, handleHeader: HANDLE_HEADER, handleBaggage: false, otherHosts: 'passthrough', destinations: [] },
    ...overrides,
  });
}

/** What the application receives: the request's headers, less those removed, with those set (overwriting). */
function applicationHeaders(sent: Record<string, string>, out: CheckOutput): Record<string, string> {
  for (const h of out.raw.ok_response.headers ?? []) expect(h.append_action).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
  return upstreamHeaders(sent, out);
}

describe('handle sealing', () => {
  const key = newHandleKey();
  const sealer = new HandleSealer(key, AUDIENCE);
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
  const exp = nowS() + 60;

  it('opens what it sealed, and is one opaque blob, not a JWT', () => {
    const handle = sealer.seal(token, exp);
    expect(handle).toMatch(/^hgh1\.[A-Za-z0-9_-]+$/);
    expect(handle.split('.')).toHaveLength(2);
    expect(handle).not.toContain(token.split('.')[1]);
    expect(sealer.open(handle, Date.now())).toEqual({ ok: true, token, exp });
    // A fresh IV each time: two handles of one token differ, and both open.
    const again = sealer.seal(token, exp);
    expect(again).not.toBe(handle);
    expect(sealer.open(again, Date.now())).toMatchObject({ ok: true, token });
  });

  it('refuses a tampered handle: any changed character', () => {
    const handle = sealer.seal(token, exp);
    const body = handle.slice(HANDLE_PREFIX.length);
    for (const at of [0, 8, 20, Math.floor(body.length / 2), body.length - 2]) {
      const flipped = body[at] === 'A' ? 'B' : 'A';
      const tampered = HANDLE_PREFIX + body.slice(0, at) + flipped + body.slice(at + 1);
      expect(sealer.open(tampered, Date.now())).toEqual({ ok: false, reason: 'not_ours' });
    }
  });

  it('refuses a handle of another sidecar: another key, or another audience under the same key', () => {
    const handle = sealer.seal(token, exp);
    expect(new HandleSealer(newHandleKey(), AUDIENCE).open(handle, Date.now())).toEqual({ ok: false, reason: 'not_ours' });
    expect(new HandleSealer(key, 'spiffe://test.local/ns/shop/sa/payments').open(handle, Date.now())).toEqual({ ok: false, reason: 'not_ours' });
  });

  it('expires with the token it carries', () => {
    const handle = sealer.seal(token, exp);
    expect(sealer.open(handle, exp * 1000 - 1)).toMatchObject({ ok: true });
    expect(sealer.open(handle, exp * 1000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('refuses malformed and oversized handles unopened', () => {
    for (const bad of ['', 'hgh1.', 'hgh1.!!!', 'hgh2.AAAA', token, `hgh1.${'A'.repeat(20)}`, `hgh1.${'A'.repeat(MAX_HANDLE_LENGTH)}`]) {
      expect(sealer.open(bad, Date.now())).toEqual({ ok: false, reason: 'malformed' });
    }
  });

  it('is bounded: the longest token a verifier accepts makes a handle within MAX_HANDLE_LENGTH', () => {
    const longest = sealer.seal('a'.repeat(MAX_TOKEN_LENGTH), exp);
    expect(longest.length).toBeLessThanOrEqual(MAX_HANDLE_LENGTH);
    expect(sealer.open(longest, Date.now())).toMatchObject({ ok: true });
    expect(() => sealer.seal('a'.repeat(MAX_TOKEN_LENGTH + 1), exp)).toThrow();
  });
});

describe('opened handles (the outbound check\'s)', () => {
  const token = 'eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhIn0.c2ln';
  const exp = nowS() + 60;
  /** A sealer that counts how often it really opens (decrypts) a handle. */
  class CountingSealer extends HandleSealer {
    opens = 0;
    override open(handle: string, nowMs: number) {
      this.opens++;
      return super.open(handle, nowMs);
    }
  }
  const sealer = new CountingSealer(newHandleKey(), AUDIENCE);
  const opened = new OpenedHandles(sealer);

  it('decrypts a handle once: the same handle again is found by its text, with its token\'s digest', () => {
    const handle = sealer.seal(token, exp);
    const before = sealer.opens;
    const first = opened.open(handle, Date.now());
    expect(first).toEqual({ ok: true, exp, subject: { token, digest: createHash('sha256').update(token).digest('base64url') } });
    expect(opened.open(handle, Date.now())).toEqual(first);
    expect(sealer.opens - before).toBe(1);
  });

  it('refuses a handle it opened before once its token\'s exp has passed', () => {
    const handle = sealer.seal(token, exp);
    expect(opened.open(handle, exp * 1000 - 1)).toMatchObject({ ok: true });
    expect(opened.open(handle, exp * 1000)).toEqual({ ok: false, reason: 'expired' });
    expect(opened.open(handle, exp * 1000 + 60_000)).toEqual({ ok: false, reason: 'expired' });
  });

  it('keeps no handle that did not open: each try is refused by the sealer again', () => {
    const body = sealer.seal(token, exp).slice(HANDLE_PREFIX.length);
    const tampered = `${HANDLE_PREFIX}${body[0] === 'A' ? 'B' : 'A'}${body.slice(1)}`;
    const before = sealer.opens;
    for (let i = 0; i < 3; i++) expect(opened.open(tampered, Date.now())).toEqual({ ok: false, reason: 'not_ours' });
    expect(sealer.opens - before).toBe(3);
  });
});

describe('handles on inbound allows (gRPC)', () => {
  let fixtures: Fixtures;
  let server: Running;
  beforeAll(async () => {
    fixtures = await createFixtures();
    const config = egressConfig(fixtures);
    server = await startServer({ ...config, egress: { ...config.egress!, destinations: [PAYMENTS] } });
  });
  afterAll(async () => {
    await server?.stop();
    fixtures?.cleanup();
  });

  const asCheckout = () => ({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });
  const check = (input: CheckInput) => server.envoy.check({ ...asCheckout(), ...input });

  it('sets the handle on an allow with overwrite, never also removing it, the same handle for the same token', async () => {
    const token = await fixtures.token({ jti: 'handle-1' });
    const first = await check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` } });
    expect(first.allowed).toBe(true);
    const handle = first.headers[HANDLE_HEADER];
    expect(handle).toMatch(/^hgh1\.[A-Za-z0-9_-]+$/);
    expect(first.headersToRemove).not.toContain(HANDLE_HEADER);
    expect(first.headersToRemove).toContain('authorization');
    // A cache hit answers the handle made at verification.
    const second = await check({ path: '/orders/2', headers: { authorization: `Bearer ${token}` } });
    expect(second.headers[HANDLE_HEADER]).toBe(handle);
    const other = await check({ path: '/orders/1', headers: { authorization: `Bearer ${await fixtures.token({ jti: 'handle-2' })}` } });
    expect(other.headers[HANDLE_HEADER]).not.toBe(handle);
  });

  it('overwrites a handle the client sent on a token route, and removes it on a public route', async () => {
    const token = await fixtures.token({ jti: 'forged-1' });
    const forged = 'hgh1.forged-by-the-client';
    const onToken = await check({ path: '/orders/1', headers: { authorization: `Bearer ${token}`, [HANDLE_HEADER]: forged } });
    expect(onToken.allowed).toBe(true);
    expect(applicationHeaders({ [HANDLE_HEADER]: forged }, onToken)[HANDLE_HEADER]).toMatch(/^hgh1\.[A-Za-z0-9_-]{40,}$/);
    expect(onToken.headers[HANDLE_HEADER]).not.toBe(forged);
    const onPublic = await check({ path: '/healthz', headers: { [HANDLE_HEADER]: forged } });
    expect(onPublic.allowed).toBe(true);
    expect(onPublic.headers[HANDLE_HEADER]).toBeUndefined();
    expect(onPublic.headersToRemove).toContain(HANDLE_HEADER);
  });

  it('lets no JWT reach the application, on any route', async () => {
    const requests: CheckInput[] = [
      { path: '/orders/7', headers: { authorization: `Bearer ${await fixtures.token({ jti: 'jwt-1' })}`, 'x-request-id': 'r1' } },
      { method: 'POST', path: '/payments', headers: { authorization: `Bearer ${await fixtures.token({ jti: 'jwt-2' })}` } },
      { path: '/healthz', headers: { authorization: `Bearer ${await fixtures.token({ jti: 'jwt-3' })}`, dpop: await fixtures.token({ jti: 'proof' }) } },
    ];
    for (const input of requests) {
      const out = await check(input);
      expect(out.allowed, input.path).toBe(true);
      const seen = applicationHeaders(input.headers!, out);
      for (const [name, value] of Object.entries(seen)) expect(value, `${input.path} ${name}`).not.toMatch(JWT_SHAPE);
    }
  });

  it('refuses an expired handle at the outbound check, before any exchange', async () => {
    // Within clock_skew the inbound check still accepts a token 20 s past its exp; its handle expires with the token.
    const lapsed = await fixtures.token({ jti: 'lapsed', iat: nowS() - 40, ttl: 20 });
    const inbound = await check({ path: '/orders/1', headers: { authorization: `Bearer ${lapsed}` } });
    expect(inbound.allowed).toBe(true);
    const egress = new EnvoyClient(server.authz.egressAddress!);
    try {
      // A destination that needs the handle: the issuer (127.0.0.1:1) is never reached.
      const out = await egress.check({ host: 'payments.svc', path: '/payments', headers: { [HANDLE_HEADER]: inbound.headers[HANDLE_HEADER]! } });
      expect(out.allowed).toBe(false);
      expect(out.body?.code).toBe('handle_invalid');
    } finally {
      egress.close();
    }
  });

  it('denies a handle presented as a bearer token: malformed_token', async () => {
    const token = await fixtures.token({ jti: 'as-bearer' });
    const allowed = await check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` } });
    const handle = allowed.headers[HANDLE_HEADER]!;
    const out = await check({ path: '/orders/1', headers: { authorization: `Bearer ${handle}` } });
    expect(out.allowed).toBe(false);
    expect(out.body?.code).toBe('malformed_token');
    expect(out.httpStatus).toBe(401);
  });
});

describe('the handle in baggage (egress.handle_baggage)', () => {
  it('reads, adds and strips only the hopguard-handle member', () => {
    expect(readBaggageHandles(' userId=alice , hopguard-handle = hgh1.a;ttl=3,tenant=t1')).toEqual({ handles: ['hgh1.a'], rest: 'userId=alice,tenant=t1' });
    expect(readBaggageHandles('hopguard-handle=x,hopguard-handle=y').handles).toEqual(['x', 'y']);
    expect(readBaggageHandles('not-hopguard-handle=x,hopguard-handlex=y')).toEqual({ handles: [], rest: 'not-hopguard-handle=x,hopguard-handlex=y' });
    expect(baggageWithHandle('', 'hgh1.h')).toBe('hopguard-handle=hgh1.h');
    expect(baggageWithHandle('a=1', 'hgh1.h')).toBe('a=1,hopguard-handle=hgh1.h');
    expect(baggageWithoutHandle(undefined)).toBeUndefined();
    expect(baggageWithoutHandle('a=1')).toBeUndefined();
    expect(baggageWithoutHandle('a=1,hopguard-handle=x')).toEqual({ set: 'a=1' });
    expect(baggageWithoutHandle('hopguard-handle=x')).toEqual({ remove: true });
  });

  let fixtures: Fixtures;
  let server: Running;
  beforeAll(async () => {
    fixtures = await createFixtures();
    const config = egressConfig(fixtures);
    server = await startServer({ ...config, egress: { ...config.egress!, handleBaggage: true } });
  });
  afterAll(async () => {
    await server?.stop();
    fixtures?.cleanup();
  });
  const check = (input: CheckInput) => server.envoy.check({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem, ...input });

  it('puts the handle in baggage beside the application\'s members, replacing a forged one', async () => {
    const token = await fixtures.token({ jti: 'baggage-1' });
    const plain = await check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` } });
    const handle = plain.headers[HANDLE_HEADER]!;
    expect(plain.headers.baggage).toBe(`hopguard-handle=${handle}`);
    // The same token again with a baggage header: answered fresh, not from the encoded allow.
    const sent = { authorization: `Bearer ${token}`, baggage: 'userId=alice,hopguard-handle=hgh1.forged' };
    const withBaggage = await check({ path: '/orders/2', headers: sent });
    expect(applicationHeaders(sent, withBaggage).baggage).toBe(`userId=alice,hopguard-handle=${handle}`);
    expect(withBaggage.headersToRemove).not.toContain('baggage');
  });

  it('takes a forged handle member out of baggage on a public route', async () => {
    const keep = await check({ path: '/healthz', headers: { baggage: 'userId=alice,hopguard-handle=hgh1.forged' } });
    expect(applicationHeaders({ baggage: 'userId=alice,hopguard-handle=hgh1.forged' }, keep).baggage).toBe('userId=alice');
    const only = await check({ path: '/healthz', headers: { baggage: 'hopguard-handle=hgh1.forged' } });
    expect(only.headersToRemove).toContain('baggage');
    const none = await check({ path: '/healthz', headers: { baggage: 'userId=alice' } });
    expect(none.headersToRemove).not.toContain('baggage');
    expect(none.headers.baggage).toBeUndefined();
  });
});
