import { X509Certificate } from 'node:crypto';
import path from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import { createCa, issueCert, type IssuedCert } from '../src/devkit/pki.js';
import type { RevocationRecord } from '../src/store/store.js';
import { claimsOf } from './support/issuer-client.js';
import { parseHttpResponse } from './support/http-response.js';
import { ISS, MESH_ID as ID, startMeshIssuer, type MeshIssuer } from './support/mesh-issuer.js';
import { rawTlsRequest } from './support/raw-tls-request.js';

/**
 * Property-based tests over the issuer's HTTP surface, through real TLS connections: form
 * bodies, headers and client certificates. The issuer always answers a well-formed OAuth
 * response, grants tokens only to the client the certificate really names and only within
 * what that client may have, and lets only an admin revoke by subject or client.
 * FUZZ_RUNS scales every property, as in fuzz.test.ts; FUZZ_SEED replays a failure's seed.
 */
const SCALE = Number(process.env.FUZZ_RUNS ?? 1);
const runs = (n: number) => ({ numRuns: n * SCALE });
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const OAUTH_ERRORS = new Set([
  'invalid_request', 'invalid_client', 'invalid_grant', 'unauthorized_client', 'unsupported_grant_type', 'invalid_scope',
  'invalid_target', 'unsupported_token_type', 'slow_down', 'temporarily_unavailable', 'access_denied', 'invalid_dpop_proof',
]);
/** What each registered client may have, as mesh-issuer.ts configures it (the oracle, written out). */
const ALLOWED: Record<string, { audiences: string[]; scopes: string[]; admin: boolean }> = {
  [ID.frontend]: { audiences: [ID.orders], scopes: ['orders:read'], admin: false },
  [ID.admin]: { audiences: [], scopes: [], admin: true },
  [ID.mobile]: { audiences: [ID.orders], scopes: ['orders:read'], admin: false },
};
const TOKEN_TTL_S = 300;

/**
 * A client certificate to connect with, and the registered client it truly authenticates as (if any).
 * `unfit`: it names a client, but its CA or its key usage must make the issuer refuse it.
 */
interface Identity { name: string; cert?: IssuedCert; client?: string; unfit?: true }

let running: MeshIssuer;
let identities: Identity[];
let dpopKey: DpopKey;
const revocations: RevocationRecord[] = [];
const counts: Record<string, number> = {};
const count = (what: string) => { counts[what] = (counts[what] ?? 0) + 1; };

beforeAll(async () => {
  running = await startMeshIssuer('issuer-fuzz');
  const { mesh, store } = running;
  // Every revocation the issuer writes, to tell who caused it.
  const revoke = store.revoke.bind(store);
  store.revoke = (record) => { revocations.push(record); return revoke(record); };
  const rogueDir = path.join(mesh.dir, 'rogue');
  const rogue = createCa(rogueDir, 'rogue-ca');
  const odd = (name: string, opts: Parameters<typeof issueCert>[2] extends infer O ? Omit<O & object, 'name'> : never) =>
    issueCert(mesh.ca, path.join(mesh.dir, 'odd'), { name, clientAuth: true, ...opts });
  identities = [
    { name: 'none' },
    ...(['frontend', 'admin', 'mobile'] as const).map((w) => ({ name: w, cert: mesh.workloads[w], client: ID[w] })),
    // Mesh certificates of workloads that are not registered clients.
    { name: 'orders', cert: mesh.workloads.orders },
    { name: 'ledger', cert: mesh.workloads.ledger },
    // Valid-looking certificates naming registered clients, from a CA the issuer does not trust.
    ...(['frontend', 'admin', 'mobile'] as const).map((w) => ({
      name: `forged-${w}`, cert: issueCert(rogue, rogueDir, { name: `forged-${w}`, uriSan: ID[w], clientAuth: true }), unfit: true as const,
    })),
    // Mesh CA certificates with odd SANs: near misses of a registered id, the id in the wrong SAN type.
    { name: 'admin-slash', cert: odd('admin-slash', { uriSan: `${ID.admin}/` }) },
    { name: 'admin-upper', cert: odd('admin-upper', { uriSan: ID.admin.toUpperCase() }) },
    { name: 'admin-query', cert: odd('admin-query', { uriSan: `${ID.admin}?` }) },
    { name: 'admin-encoded', cert: odd('admin-encoded', { uriSan: ID.admin.replace('admin', '%61dmin') }) },
    { name: 'admin-as-dns', cert: odd('admin-as-dns', { dnsSans: [ID.admin] }) },
    { name: 'no-san', cert: odd('no-san', {}) },
    // Not for client authentication: the EKU is serverAuth only.
    {
      name: 'frontend-server-eku', unfit: true,
      cert: issueCert(mesh.ca, path.join(mesh.dir, 'odd'), { name: 'frontend-server-eku', uriSan: ID.frontend, serverAuth: true }),
    },
    // Odd but genuine: the admin's id plus a DNS name.
    { name: 'admin-with-dns', cert: odd('admin-with-dns', { uriSan: ID.admin, dnsSans: ['admin.ops.svc'] }), client: ID.admin },
  ];
  // The oracle's premise: a certificate said to authenticate as no client names none in its URI SANs.
  for (const { name, cert, client } of identities.filter((i) => !i.unfit)) {
    const uris = cert ? new X509Certificate(cert.certPem).subjectAltName?.split(', ') ?? [] : [];
    expect(Object.keys(ALLOWED).filter((id) => uris.includes(`URI:${id}`)), name).toEqual(client ? [client] : []);
  }
  dpopKey = await createDpopKey();
}, 60_000);

afterAll(async () => {
  console.log(`issuer fuzz cases run: ${JSON.stringify(counts)}`);
  await running?.stop();
});

const PARAMS = [
  'grant_type', 'audience', 'resource', 'scope', 'subject_token', 'subject_token_type', 'token', 'token_type_hint',
  'subject', 'client_id', 'cert_thumbprint', 'reason', 'refresh_token',
];
const plausibleValue = fc.oneof(
  fc.constantFrom(...Object.values(ID), 'client_credentials', EXCHANGE, 'refresh_token', 'orders:read', 'orders:read orders:write',
    'payments:write', 'admin', 'urn:ietf:params:oauth:token-type:access_token', ''),
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 20 }),
);
const form = fc.array(fc.tuple(fc.constantFrom(...PARAMS), plausibleValue), { maxLength: 6 })
  .map((pairs) => new URLSearchParams(pairs).toString());
/** Requests that may well be granted: what the fuzz must see both ways. */
const grantRequest = fc.record({
  audience: fc.oneof({ arbitrary: fc.constant(ID.orders), weight: 3 }, fc.constantFrom(ID.ledger, ID.admin)),
  scope: fc.option(fc.constantFrom('orders:read', 'orders:write', 'orders:read payments:write', 'admin', '')),
}).map(({ audience, scope }) => new URLSearchParams({ grant_type: 'client_credentials', audience, ...(scope !== null && { scope }) }).toString());
const adminRevocation = fc.record({
  kind: fc.constantFrom('subject', 'client_id', 'cert_thumbprint'),
  value: fc.oneof(fc.constantFrom(...Object.values(ID)), fc.string({ maxLength: 50 })),
}).map(({ kind, value }) => new URLSearchParams({ [kind]: value }).toString());
const badPercent = fc.tuple(form, fc.constantFrom('%', '%zz', '%e2%82', '%00', '%ff%fe', '+%2B%', '%%41'))
  .map(([f, bad]) => `${f}&scope=${bad}&${bad}=x`);
const huge = fc.constantFrom(60_000, 70_000, 200_000).map((n) => `grant_type=client_credentials&audience=${'a'.repeat(n)}`);

const body = fc.oneof(
  { arbitrary: grantRequest, weight: 4 },
  { arbitrary: adminRevocation, weight: 2 },
  { arbitrary: form, weight: 3 },
  { arbitrary: badPercent, weight: 1 },
  { arbitrary: fc.uint8Array({ maxLength: 512 }).map((b) => Buffer.from(b).toString('latin1')), weight: 1 },
  { arbitrary: huge, weight: 1 },
);
const contentType = fc.oneof(
  { arbitrary: fc.constant('application/x-www-form-urlencoded'), weight: 6 },
  { arbitrary: fc.constantFrom(
    'application/x-www-form-urlencoded; charset=utf-8', 'Application/X-WWW-Form-Urlencoded', 'application/json',
    'text/plain', 'multipart/form-data; boundary=x', '', null,
  ), weight: 2 },
  { arbitrary: fc.stringMatching(/^[\x21-\x7e][\x20-\x7e]{0,60}$/), weight: 1 },
);
/**
 * How the body's length is declared: truly, too short (the rest reads as a next request), too long
 * (the body never completes), chunked, not at all, not a number, or twice with different values.
 */
const framing = fc.oneof(
  { arbitrary: fc.constant('exact' as const), weight: 6 },
  { arbitrary: fc.constantFrom('short' as const, 'long' as const, 'chunked' as const, 'absent' as const, 'bogus' as const, 'twice' as const), weight: 2 },
);
const dpop = fc.oneof(
  { arbitrary: fc.constant(null), weight: 3 },
  { arbitrary: fc.constantFrom('valid' as const, 'twice' as const, 'wrong-htu' as const), weight: 2 },
  { arbitrary: fc.stringMatching(/^[\x21-\x7e]{0,300}$/), weight: 1 },
  // Bytes a header value may not hold (not CR or LF, which would end it).
  { arbitrary: fc.stringMatching(/^[\x00-\x09\x0b\x0c\x0e-\x7f]{1,40}$/), weight: 1 },
  { arbitrary: fc.tuple(fc.json(), fc.json()).map(([h, c]) => `${Buffer.from(h).toString('base64url')}.${Buffer.from(c).toString('base64url')}.AAAA`), weight: 1 },
);

const exchange = fc.record({
  path: fc.constantFrom('/token', '/revoke'),
  // Half the time a registered client's own certificate, so that grants are tried.
  identity: fc.oneof(fc.constantFrom('frontend', 'admin', 'mobile'), fc.nat()),
  body, contentType, framing, dpop,
});
type Exchange = typeof exchange extends fc.Arbitrary<infer T> ? T : never;

async function dpopHeaders(choice: Exchange['dpop']): Promise<string[]> {
  if (choice === null) return [];
  if (choice === 'valid') return [await dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/token` })];
  if (choice === 'twice') return [await dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/token` }), await dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/token` })];
  if (choice === 'wrong-htu') return [await dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/revoke` })];
  return [choice];
}

function requestBytes(x: Exchange, dpopValues: string[]): Buffer {
  const payload = Buffer.from(x.body, x.body.startsWith('grant_type') || /^[\x20-\x7e]*$/.test(x.body) ? 'utf8' : 'latin1');
  const head = [`POST ${x.path} HTTP/1.1`, 'host: 127.0.0.1', 'connection: close'];
  if (x.contentType !== null) head.push(`content-type: ${x.contentType}`);
  for (const value of dpopValues) head.push(`dpop: ${value}`);
  const length = {
    exact: payload.length, short: Math.max(0, payload.length - 3), long: payload.length + 10, chunked: undefined, absent: undefined,
    bogus: '12abc', twice: `${payload.length}\r\ncontent-length: ${payload.length + 1}`,
  }[x.framing];
  if (length !== undefined) head.push(`content-length: ${length}`);
  if (x.framing === 'chunked') {
    head.push('transfer-encoding: chunked');
    const chunk = payload.length > 0 ? Buffer.concat([Buffer.from(`${payload.length.toString(16)}\r\n`), payload, Buffer.from('\r\n')]) : Buffer.alloc(0);
    return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), chunk, Buffer.from('0\r\n\r\n')]);
  }
  return Buffer.concat([Buffer.from(`${head.join('\r\n')}\r\n\r\n`), payload]);
}

/** A granted token within what the client may have, bound to its certificate or (with a valid proof) its DPoP key. */
function checkGrant(token: Record<string, any>, identity: Identity, sentValidProof: boolean) {
  expect(identity.client, `a token for ${identity.name}, which authenticates as no client`).toBeDefined();
  const allowed = ALLOWED[identity.client!]!;
  const claims = claimsOf(token.access_token);
  expect(claims).toMatchObject({ iss: ISS, sub: identity.client, client_id: identity.client });
  expect(allowed.audiences).toContain(claims.aud);
  for (const scope of String(claims.scope ?? '').split(' ').filter(Boolean)) expect(allowed.scopes).toContain(scope);
  expect(claims.exp - claims.iat).toBeLessThanOrEqual(TOKEN_TTL_S);
  if (claims.cnf?.jkt !== undefined) {
    expect(sentValidProof && identity.client === ID.mobile).toBe(true);
    expect(claims.cnf).toEqual({ jkt: dpopKey.jkt });
    expect(token.token_type).toBe('DPoP');
  } else {
    expect(claims.cnf).toEqual({ 'x5t#S256': identity.cert!.thumbprint });
    expect(token.token_type).toBe('Bearer');
  }
}

/** Always run: requests the issuer must grant, so the oracle sees grants and revocations every time. */
const ordersRead = new URLSearchParams({ grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' }).toString();
const GRANTED_EXAMPLES: Exchange[] = [
  { path: '/token', identity: 'frontend', body: ordersRead, contentType: 'application/x-www-form-urlencoded', framing: 'exact', dpop: null },
  { path: '/token', identity: 'mobile', body: ordersRead, contentType: 'application/x-www-form-urlencoded', framing: 'chunked', dpop: 'valid' },
  { path: '/revoke', identity: 'admin', body: `client_id=${encodeURIComponent(ID.ledger)}`, contentType: 'application/x-www-form-urlencoded', framing: 'exact', dpop: null },
];

describe('the issuer over TLS, under fuzzed requests', () => {
  it('answers every request with a well-formed OAuth response, and grants only what the certificate\'s client may have', async () => {
    await fc.assert(fc.asyncProperty(exchange, async (x) => {
      const identity = typeof x.identity === 'string' ? identities.find((i) => i.name === x.identity)!
        : identities[x.identity % identities.length]!;
      const dpopValues = await dpopHeaders(x.dpop);
      revocations.length = 0;
      const raw = await rawTlsRequest(running.issuer.url, identity.cert, requestBytes(x, dpopValues), x.framing === 'long');
      if (raw === '') {
        // Only a body that never completes may go unanswered: the client left before sending it.
        expect(x.framing).toBe('long');
        count('unanswered');
        return;
      }
      const reply = parseHttpResponse(raw);
      if (process.env.DEBUG_FUZZ) console.log(JSON.stringify(raw.slice(0, 400)));
      expect(reply.headers['cache-control']).toBe('no-store');
      if (reply.status !== 200) {
        expect([400, 401, 429]).toContain(reply.status);
        expect(reply.headers['content-type']).toBe('application/json');
        expect(OAUTH_ERRORS.has(reply.body.error)).toBe(true);
        expect(typeof reply.body.error_description).toBe('string');
        expect(reply.status === 401).toBe(reply.body.error === 'invalid_client');
        count(reply.body.error);
      } else if (x.path === '/token') {
        checkGrant(reply.body, identity, x.dpop === 'valid');
        count('granted');
      } else {
        expect(reply.body).toBe('');
        count('revoke 200');
      }
      // Revocations only by an authenticated client; by subject, client or certificate only by an admin.
      if (identity.client === undefined) expect(revocations).toEqual([]);
      else if (!ALLOWED[identity.client]!.admin) expect(revocations.filter((r) => r.revocation.kind !== 'jti')).toEqual([]);
      if (revocations.length > 0) count('revoked');
    }), { ...runs(200), seed: Number(process.env.FUZZ_SEED ?? Date.now()) | 0, examples: GRANTED_EXAMPLES.map((x) => [x]) });
    // Both sides of the oracle were reached.
    expect(counts.granted).toBeGreaterThan(0);
    expect(counts.invalid_client).toBeGreaterThan(0);
    expect(counts.revoked).toBeGreaterThan(0);
  }, 120_000);
});

describe('the issuer answers before it closes', () => {
  // Found by the property above: bytes after a refused body (past its Content-Length, after
  // `connection: close`) made the issuer destroy the connection over the answer it had written.
  it('sends the 400 for an oversized body even when more bytes follow it', async () => {
    const body = `grant_type=client_credentials&audience=${'a'.repeat(70_000)}`;
    const request = Buffer.from([
      'POST /token HTTP/1.1', 'host: 127.0.0.1', 'connection: close', 'content-type: application/x-www-form-urlencoded',
      `content-length: ${body.length - 3}`, '', body,
    ].join('\r\n'));
    for (let i = 0; i < 5; i++) {
      const reply = parseHttpResponse(await rawTlsRequest(running.issuer.url, running.mesh.workloads.frontend, request));
      expect(reply.status).toBe(400);
      expect(reply.body.error_description).toBe('the request body is too large');
    }
  });
});
