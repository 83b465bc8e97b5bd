import { X509Certificate } from 'node:crypto';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readCredential } from '../src/authz/credentials.js';
import type { CheckInput } from '../src/authz/envoy-client.js';
import { readHopRequest } from '../src/authz/hop-request.js';
import { RequestPathError, normalizeRequestPath } from '../src/policy/request-path.js';
import { decodeCompactJws } from '../src/token/compact-jws.js';
import { normalizeHtu } from '../src/token/dpop-proof.js';
import { TokenError } from '../src/token/token-error.js';
import { presentedCertificate } from '../src/token/token-binding.js';
import { CHECKOUT, authzConfig, createFixtures, route, startServer, type Fixtures, type Running } from './support/harness.js';

/**
 * Property-based tests over whole CheckRequests, token strings and certificates: no input
 * crashes the server, throws out of the handler (internal_error), or is allowed without a
 * valid token for its route. FUZZ_RUNS scales every property (`npm run fuzz` runs 50x more).
 */
const SCALE = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => ({ numRuns: n * SCALE });
const counts: Record<string, number> = {};
const count = (what: string) => { counts[what] = (counts[what] ?? 0) + 1; };

let fixtures: Fixtures;
let server: Running;
let validToken: string;

beforeAll(async () => {
  fixtures = await createFixtures();
  server = await startServer(authzConfig(fixtures, {
    routes: [
      route('health', { path: '/healthz', public: true }),
      route('read', { methods: ['GET'], pathPrefix: '/orders/', scopes: ['orders:read'] }),
      route('pay', { methods: ['POST'], path: '/payments', oneTime: true }),
    ],
  }));
  validToken = await fixtures.token();
});
afterAll(async () => {
  console.log(`fuzz cases run: ${JSON.stringify(counts)}`);
  await server.stop();
  fixtures.cleanup();
});

/** The oracle, independent of the code under test: node's X509 parser finds one certificate with the same DER. */
function sameCertificate(pem: string, bound: string): boolean {
  if ((pem.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length !== 1) return false;
  try {
    return new X509Certificate(pem).raw.equals(new X509Certificate(bound).raw);
  } catch {
    return false;
  }
}

/** Public iff the path normalizes to the public route: nothing else may be allowed without the valid token. */
function allowedWithoutToken(path: string): boolean {
  try {
    return normalizeRequestPath(path) === '/healthz';
  } catch {
    return false;
  }
}

const headerName = fc.oneof(
  fc.constantFrom('authorization', 'dpop', 'x-hopguard-subject', 'traceparent', 'x-forwarded-client-cert', 'Authorization'),
  fc.string({ minLength: 1, maxLength: 20 }),
);
const credentialText = fc.oneof(
  fc.string({ maxLength: 200 }),
  fc.string({ maxLength: 200 }).map((s) => `Bearer ${s}`),
  fc.string({ maxLength: 200 }).map((s) => `DPoP ${s}`),
  fc.array(fc.base64String({ maxLength: 80 }), { minLength: 1, maxLength: 6 }).map((parts) => `Bearer ${parts.join('.')}`),
);
const pathText = fc.oneof(
  fc.constantFrom('/healthz', '/orders/1', '/payments', '/orders/../healthz', '/%68ealthz', '/healthz?x=1', '//healthz'),
  fc.string({ maxLength: 60 }).map((s) => `/${s}`),
  fc.webUrl().map((u) => new URL(u).pathname + new URL(u).search),
  fc.string({ maxLength: 60 }),
);

const checkInput: fc.Arbitrary<CheckInput> = fc.record({
  method: fc.oneof(fc.constantFrom('GET', 'POST', 'get', ''), fc.string({ maxLength: 10 })),
  path: pathText,
  host: fc.string({ maxLength: 30 }),
  principal: fc.oneof(fc.constant(CHECKOUT), fc.string({ maxLength: 40 })),
  certificatePem: fc.oneof(fc.constant(undefined), fc.string({ maxLength: 200 }), fc.constant(undefined).map(() => fixtures.checkout.certPem)),
  headerShape: fc.boolean(),
  headers: fc.array(fc.tuple(headerName, fc.oneof(credentialText, fc.string({ maxLength: 100 }))), { maxLength: 6 }),
  rawBytes: fc.uint8Array({ maxLength: 64 }),
}).map(({ headerShape, headers, rawBytes, certificatePem, ...rest }) => ({
  ...rest,
  ...(certificatePem !== undefined && { certificatePem }),
  ...(headerShape
    ? { headerMap: [...headers, ['x-raw', Buffer.from(rawBytes)] as [string, Buffer]] }
    : { headers: Object.fromEntries(headers) }),
}));

describe('fuzz: whole CheckRequests through the gRPC API', () => {
  it('never crashes, never errors, and never allows a request without the valid token (except the public route)', async () => {
    await fc.assert(fc.asyncProperty(checkInput, async (input) => {
      count('check requests');
      const out = await server.envoy.check(input);
      expect(out.body?.code).not.toBe('internal_error');
      if (out.allowed) expect(allowedWithoutToken(input.path)).toBe(true);
    }), runs(300));
  });

  it('never allows a mutated token: any change to a valid token is denied', async () => {
    const mutation = fc.tuple(fc.nat(), fc.constantFrom('replace', 'insert', 'delete', 'swap-segments', 'pad'), fc.string({ minLength: 1, maxLength: 1 }));
    await fc.assert(fc.asyncProperty(mutation, async ([at, kind, ch]) => {
      count('mutated tokens');
      const i = at % validToken.length;
      const segments = validToken.split('.');
      const mutated = kind === 'replace' ? validToken.slice(0, i) + ch + validToken.slice(i + 1)
        : kind === 'insert' ? validToken.slice(0, i) + ch + validToken.slice(i)
          : kind === 'delete' ? validToken.slice(0, i) + validToken.slice(i + 1)
            : kind === 'swap-segments' ? [segments[1], segments[0], segments[2]].join('.')
              : segments.map((s, n) => (n === at % 3 ? `${s}=` : s)).join('.');
      fc.pre(mutated !== validToken);
      const out = await server.envoy.check({
        path: '/orders/1', headers: { authorization: `Bearer ${mutated}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
      });
      expect(out.allowed).toBe(false);
      expect(out.body?.code).not.toBe('internal_error');
    }), runs(300));
  });

  it('accepts a certificate if and only if it is the one the token is bound to (same DER, any PEM spelling)', async () => {
    const pem = (body: string) => `-----BEGIN CERTIFICATE-----\n${body}\n-----END CERTIFICATE-----\n`;
    const certificate = fc.oneof(
      fc.string({ maxLength: 300 }),
      fc.base64String({ maxLength: 400 }).map(pem),
      fc.constantFrom(fixtures.stranger.certPem, fixtures.ca.certPem, `${fixtures.checkout.certPem}${fixtures.checkout.certPem}`),
      fc.nat({ max: 200 }).map((n) => fixtures.checkout.certPem.slice(0, n) + fixtures.checkout.certPem.slice(n + 1)),
    );
    await fc.assert(fc.asyncProperty(certificate, async (certificatePem) => {
      count('certificates');
      const out = await server.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${validToken}` }, principal: CHECKOUT, certificatePem });
      // RFC 8705 thumbprints are over the DER: a PEM with other line breaks is still the same certificate.
      const same = sameCertificate(certificatePem, fixtures.checkout.certPem);
      expect(out.allowed).toBe(same);
      if (!same) expect(out.body?.code).toBe('binding_mismatch');
    }), runs(200));
  });
});

describe('fuzz: the parsers', () => {
  /** Only the module's own typed errors may come out of a parser. */
  const onlyTyped = (fn: () => unknown) => {
    try {
      fn();
    } catch (err) {
      expect(err instanceof TokenError || err instanceof RequestPathError).toBe(true);
    }
  };

  it('decodeCompactJws, normalizeRequestPath, normalizeHtu, readCredential and presentedCertificate throw nothing untyped', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), fc.string({ maxLength: 100 }), (text, other) => {
      count('parser inputs');
      onlyTyped(() => decodeCompactJws(text));
      onlyTyped(() => decodeCompactJws(`${Buffer.from(text).toString('base64url')}.${Buffer.from(other).toString('base64url')}.AA`));
      onlyTyped(() => normalizeRequestPath(text));
      expect(() => normalizeHtu(text)).not.toThrow();
      expect(() => presentedCertificate(text)).not.toThrow();
      expect(() => readCredential(readHopRequest({ attributes: { request: { http: { path: other, headers: { authorization: text, dpop: other } } } } }), () => false)).not.toThrow();
    }), runs(3000));
  });

  it('readCredential reads the same credential whether or not the token was verified before', () => {
    // Only a token that passed the b64token check can have been verified; skipping the check
    // for it must change nothing, whatever the header holds around it.
    const b64token = /^[A-Za-z0-9\-._~+/]+=*$/;
    const headerText = fc.oneof(
      fc.string({ maxLength: 80 }),
      fc.tuple(fc.constantFrom('Bearer', 'bearer', 'DPoP', 'dpop', 'Basic', 'Bearer,'), fc.constantFrom(' ', '  ', '\t', ''),
        fc.stringMatching(/^[A-Za-z0-9._~+/=, -]{0,40}$/), fc.constantFrom('', ' ', '\n')).map((parts) => parts.join('')),
    );
    fc.assert(fc.property(headerText, (authorization) => {
      count('credential headers');
      const request = readHopRequest({ attributes: { request: { http: { path: '/x', headers: { authorization } } } } });
      expect(readCredential(request, (token) => b64token.test(token))).toEqual(readCredential(request, () => false));
    }), runs(3000));
  });
});
