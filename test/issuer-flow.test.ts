import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthz, type RunningAuthz } from '../src/authz/authz-service.js';
import { EnvoyClient, type CheckOutput } from '../src/authz/envoy-client.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import { createCa, issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { createKeyFile } from '../src/issuer/keyring.js';
import { silentLogger } from '../src/telemetry/log.js';
import { claimsOf, headerOf, issuerRequest } from './support/issuer-client.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

const ISS = 'https://sts.test.local';
const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
  payments: 'spiffe://test.local/ns/shop/sa/payments',
  ledger: 'spiffe://test.local/ns/shop/sa/ledger',
  admin: 'spiffe://test.local/ns/ops/sa/admin',
  mobile: 'spiffe://test.local/ns/edge/sa/mobile-gateway',
  unknown: 'spiffe://test.local/ns/shop/sa/unknown',
} as const;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';

let mesh: TrustDomain<keyof typeof ID>;
let issuer: RunningIssuer;
let orders: { authz: RunningAuthz; envoy: EnvoyClient };
let payments: { authz: RunningAuthz; envoy: EnvoyClient };
const prefix = uniquePrefix();

const issuerYaml = (dir: string, serverCert: IssuedCert) => `
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(dir, 'keys')}, publish_ahead: 2s }
token_ttl: 5m
refresh_ttl: 1h
max_delegation_depth: 2
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
rate_limit: { per_second: 1, burst: 200 }
clients:
  - id: ${ID.frontend}
    grants: [client_credentials, refresh_token]
    audiences: [${ID.orders}]
    scopes: [orders:read, orders:write, payments:write]
  - id: ${ID.orders}
    grants: [client_credentials, token_exchange]
    audiences: [${ID.payments}]
    scopes: [payments:write]
  - id: ${ID.payments}
    grants: [token_exchange]
    audiences: [${ID.ledger}]
    scopes: [payments:write]
  - id: ${ID.ledger}
    grants: [token_exchange]
    audiences: [${ID.orders}]
    scopes: [payments:write]
  - id: ${ID.admin}
    grants: [client_credentials]
    admin: true
  - id: ${ID.mobile}
    grants: [client_credentials]
    audiences: [${ID.orders}]
    scopes: [orders:read]
    dpop: true
`;

async function startSidecar(audience: string, routes: string) {
  const config = parseAuthzConfig(`
listen: 127.0.0.1:0
admin: off
audience: ${audience}
binding: mtls_or_dpop
issuers:
  - issuer: ${ISS}
    jwks_uri: ${issuer.url}/.well-known/jwks.json
    jwks_ca_file: ${mesh.ca.certPath}
    algorithms: [ES256]
jwks: { refresh_interval: 1s, refetch_interval: 200ms }
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
routes:
${routes}`, { baseDir: mesh.dir });
  const authz = await startAuthz(config, { log: silentLogger });
  return { authz, envoy: new EnvoyClient(authz.grpcAddress) };
}

const as = (who: keyof typeof ID) => mesh.workloads[who];
const token = (who: keyof typeof ID, form: Record<string, string>) =>
  issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, client: as(who), form });
const revoke = (who: keyof typeof ID, form: Record<string, string>) =>
  issuerRequest(issuer.url, '/revoke', { caPem: mesh.ca.certPem, client: as(who), form });
const frontendToken = async (scope = 'orders:read payments:write') =>
  (await token('frontend', { grant_type: 'client_credentials', audience: ID.orders, scope })).body;
const exchange = (who: keyof typeof ID, subject: string, audience: string, extra: Record<string, string> = {}) =>
  token(who, { grant_type: EXCHANGE, subject_token: subject, subject_token_type: ACCESS_TOKEN, audience, ...extra });

const readOrder = (accessToken: string, caller: keyof typeof ID = 'frontend', cert: IssuedCert = as(caller)) =>
  orders.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${accessToken}` }, principal: ID[caller], certificatePem: cert.certPem });
const pay = (accessToken: string, caller: keyof typeof ID = 'orders') =>
  payments.envoy.check({ method: 'POST', path: '/payments', headers: { authorization: `Bearer ${accessToken}` }, principal: ID[caller], certificatePem: as(caller).certPem });
const code = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);

async function deniedWithin(check: () => Promise<CheckOutput>, expected: string, ms = 1000): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < ms) {
    if (code(await check()) === expected) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`not ${expected} within ${ms} ms`);
}

beforeAll(async () => {
  await requireSharedRedis();
  mesh = await createTrustDomain('issuer', ID);
  const serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', dnsSans: ['localhost'], ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(issuerYaml(mesh.dir, serverCert), { baseDir: mesh.dir }), { log: silentLogger });
  orders = await startSidecar(ID.orders, `
  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }
`);
  payments = await startSidecar(ID.payments, `
  - { name: pay, methods: [POST], path: /payments, scopes: [payments:write], callers: [${ID.orders}] }
`);
}, 60_000);

afterAll(async () => {
  for (const s of [orders, payments]) {
    s?.envoy.close();
    await s?.authz.stop();
  }
  await issuer?.stop();
  mesh?.cleanup();
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
});

describe('the hop-by-hop flow', () => {
  it('frontend gets a short-lived, audience-bound, certificate-bound token for orders', async () => {
    const reply = await token('frontend', { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' });
    expect(reply.status).toBe(200);
    expect(reply.headers['cache-control']).toBe('no-store');
    expect(reply.body).toMatchObject({ token_type: 'Bearer', scope: 'orders:read payments:write' });
    expect(reply.body.expires_in).toBeLessThanOrEqual(300);
    const header = headerOf(reply.body.access_token);
    expect(header).toMatchObject({ typ: 'at+jwt', alg: 'ES256' });
    expect(typeof header.kid).toBe('string');
    const claims = claimsOf(reply.body.access_token);
    expect(claims).toMatchObject({ iss: ISS, sub: ID.frontend, client_id: ID.frontend, aud: ID.orders, cnf: { 'x5t#S256': as('frontend').thumbprint } });
    expect(claims.exp - claims.iat).toBe(300);
    expect(claims.jti).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('orders\' sidecar allows it with frontend\'s certificate, and denies it with any other', async () => {
    const t = (await frontendToken()).access_token;
    expect(code(await readOrder(t))).toBe('allowed');
    expect(code(await readOrder(t, 'frontend', as('unknown')))).toBe('binding_mismatch');
    expect(code(await readOrder(t, 'orders'))).toBe('binding_mismatch');
  });

  it('orders exchanges it for payments: payments allows it, sees the act chain, and denies the original token', async () => {
    const original = (await frontendToken()).access_token;
    const reply = await exchange('orders', original, ID.payments, { scope: 'payments:write' });
    expect(reply.status).toBe(200);
    expect(reply.body.issued_token_type).toBe(ACCESS_TOKEN);
    const next = reply.body.access_token;
    const claims = claimsOf(next);
    expect(claims).toMatchObject({
      sub: ID.frontend, client_id: ID.orders, aud: ID.payments, scope: 'payments:write',
      act: { sub: ID.orders }, cnf: { 'x5t#S256': as('orders').thumbprint },
    });
    expect(claims.exp).toBeLessThanOrEqual(claimsOf(original).exp);

    const allowed = await pay(next);
    expect(allowed.allowed).toBe(true);
    expect(allowed.raw.dynamic_metadata.fields.act.structValue.fields.sub.stringValue).toBe(ID.orders);
    expect(code(await pay(original))).toBe('audience_mismatch');
    expect(code(await pay(original, 'frontend'))).toBe('audience_mismatch');
  });

  it('nests the act chain and bounds the delegation depth', async () => {
    const first = (await exchange('orders', (await frontendToken()).access_token, ID.payments)).body.access_token;
    const second = await exchange('payments', first, ID.ledger);
    expect(second.status).toBe(200);
    expect(claimsOf(second.body.access_token).act).toEqual({ sub: ID.payments, act: { sub: ID.orders } });
    const third = await exchange('ledger', second.body.access_token, ID.orders);
    expect(third.status).toBe(400);
    expect(third.body.error).toBe('invalid_grant');
  });

  it('only narrows scope: a scope the subject token lacks, or the actor may not have, is invalid_scope', async () => {
    const subject = (await frontendToken('orders:read')).access_token;
    expect((await exchange('orders', subject, ID.payments, { scope: 'payments:write' })).body.error).toBe('invalid_scope');
    const broad = (await frontendToken('orders:read orders:write payments:write')).access_token;
    expect((await exchange('orders', broad, ID.payments, { scope: 'orders:write' })).body.error).toBe('invalid_scope');
    expect(claimsOf((await exchange('orders', broad, ID.payments)).body.access_token).scope).toBe('payments:write');
  });
});

describe('revocation', () => {
  it('a client revokes its own token (RFC 7009); every sidecar denies it within 1 s', async () => {
    const t = (await frontendToken()).access_token;
    expect(code(await readOrder(t))).toBe('allowed');
    const reply = await revoke('frontend', { token: t, token_type_hint: 'access_token' });
    expect(reply.status).toBe(200);
    const delay = await deniedWithin(() => readOrder(t), 'token_revoked');
    console.log(`[issuer] revoked at the issuer → denied at orders' sidecar after ${delay.toFixed(1)} ms`);
  });

  it('answers 200 for an unknown or garbage token, and refuses to revoke another client\'s token', async () => {
    expect((await revoke('frontend', { token: 'not-a-token' })).status).toBe(200);
    const t = (await frontendToken()).access_token;
    const other = await revoke('orders', { token: t });
    expect(other.status).toBe(400);
    expect(other.body.error).toBe('unauthorized_client');
    expect(code(await readOrder(t))).toBe('allowed');
  });

  it('an admin client revokes every token of a subject', async () => {
    const t = (await frontendToken()).access_token;
    const exchanged = (await exchange('orders', t, ID.payments)).body.access_token;
    await new Promise((r) => setTimeout(r, 1100));
    expect((await revoke('orders', { subject: ID.frontend })).status).toBe(400);
    expect((await revoke('admin', { subject: ID.frontend, reason: 'test' })).status).toBe(200);
    await deniedWithin(() => readOrder(t), 'token_revoked');
    await deniedWithin(() => pay(exchanged), 'token_revoked');
    await new Promise((r) => setTimeout(r, 1100));
    expect(code(await readOrder((await frontendToken()).access_token))).toBe('allowed');
  });
});

describe('refresh tokens', () => {
  it('rotate on every use; reusing an old one revokes the whole family', async () => {
    const first = await frontendToken();
    expect(typeof first.refresh_token).toBe('string');
    const second = (await token('frontend', { grant_type: 'refresh_token', refresh_token: first.refresh_token })).body;
    expect(second.refresh_token).not.toBe(first.refresh_token);
    expect(code(await readOrder(second.access_token))).toBe('allowed');

    const reuse = await token('frontend', { grant_type: 'refresh_token', refresh_token: first.refresh_token });
    expect(reuse.status).toBe(400);
    expect(reuse.body.error).toBe('invalid_grant');
    const afterReuse = await token('frontend', { grant_type: 'refresh_token', refresh_token: second.refresh_token });
    expect(afterReuse.body.error).toBe('invalid_grant');
    await deniedWithin(() => readOrder(second.access_token), 'token_revoked');
  });

  it('are bound to the client\'s certificate', async () => {
    const first = await frontendToken();
    const twin = issueCert(mesh.ca, mesh.dir, { name: 'frontend-twin', uriSan: ID.frontend, clientAuth: true });
    const reply = await issuerRequest(issuer.url, '/token', {
      caPem: mesh.ca.certPem, client: twin, form: { grant_type: 'refresh_token', refresh_token: first.refresh_token },
    });
    expect(reply.body.error).toBe('invalid_grant');
  });

  it('are never accepted as access tokens', async () => {
    const { refresh_token: refresh } = await frontendToken();
    expect(code(await readOrder(refresh))).toBe('wrong_token_type');
  });
});

describe('errors', () => {
  const form = { grant_type: 'client_credentials', audience: ID.orders };
  it.each([
    ['no client certificate', undefined, form, 401, 'invalid_client'],
    ['an unregistered certificate', 'unknown', form, 401, 'invalid_client'],
    ['an audience the client may not have', 'frontend', { ...form, audience: ID.ledger }, 400, 'invalid_target'],
    ['audience and resource that differ', 'frontend', { ...form, resource: ID.payments }, 400, 'invalid_target'],
    ['no audience', 'frontend', { grant_type: 'client_credentials' }, 400, 'invalid_request'],
    ['a scope the client may not have', 'frontend', { ...form, scope: 'admin' }, 400, 'invalid_scope'],
    ['an unknown grant', 'frontend', { grant_type: 'password' }, 400, 'unsupported_grant_type'],
    ['a grant this client may not use', 'payments', { ...form, audience: ID.ledger }, 400, 'unauthorized_client'],
    ['no grant_type', 'frontend', { audience: ID.orders }, 400, 'invalid_request'],
    ['exchange without subject_token_type', 'orders', { grant_type: EXCHANGE, subject_token: 'x', audience: ID.payments }, 400, 'invalid_request'],
    ['exchange of garbage', 'orders', { grant_type: EXCHANGE, subject_token: 'x.y.z', subject_token_type: ACCESS_TOKEN, audience: ID.payments }, 400, 'invalid_grant'],
  ] as const)('%s', async (_what, who, body, status, error) => {
    const reply = await issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, ...(who && { client: as(who) }), form: body });
    expect(reply.status).toBe(status);
    expect(reply.body.error).toBe(error);
    expect(reply.headers['cache-control']).toBe('no-store');
  });

  it('a certificate from another CA is invalid_client', async () => {
    const otherCa = createCa(mesh.dir, 'other-ca');
    const impostor = issueCert(otherCa, mesh.dir, { name: 'impostor', uriSan: ID.frontend, clientAuth: true });
    const reply = await issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, client: impostor, form });
    expect(reply.body.error).toBe('invalid_client');
  });

  it('only the audience of a token may exchange it', async () => {
    const t = (await frontendToken()).access_token;
    expect((await exchange('payments', t, ID.ledger)).body.error).toBe('invalid_grant');
  });

  it('a repeated parameter or a JSON body is invalid_request', async () => {
    const repeated = await issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, client: as('frontend'), form: `grant_type=client_credentials&audience=${encodeURIComponent(ID.orders)}&audience=x` });
    expect(repeated.body.error).toBe('invalid_request');
    const json = await issuerRequest(issuer.url, '/token', { caPem: mesh.ca.certPem, client: as('frontend'), form: '{}', contentType: 'application/json' });
    expect(json.body.error).toBe('invalid_request');
  });

  it('rate-limits per client with 429 and Retry-After', async () => {
    const replies = await Promise.all(Array.from({ length: 230 }, () => token('admin', { grant_type: 'client_credentials', audience: ID.orders })));
    const limited = replies.filter((r) => r.status === 429);
    expect(limited.length).toBeGreaterThan(0);
    expect(Number(limited[0]!.headers['retry-after'])).toBeGreaterThanOrEqual(1);
    // Other clients are not affected.
    expect((await token('frontend', form)).status).toBe(200);
  });
});

describe('DPoP at the issuer (RFC 9449 §5)', () => {
  const tokenEndpoint = `${ISS}/token`;
  const withProof = async (who: keyof typeof ID, key: DpopKey, proof?: string) => issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: as(who), form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' },
    headers: { dpop: proof ?? await dpopProof(key, { htm: 'POST', htu: tokenEndpoint }) },
  });

  it('a proof from a DPoP client yields token_type DPoP and cnf.jkt, which the sidecar holds it to', async () => {
    const key = await createDpopKey();
    const reply = await withProof('mobile', key);
    expect(reply.status).toBe(200);
    expect(reply.body.token_type).toBe('DPoP');
    const accessToken = reply.body.access_token;
    expect(claimsOf(accessToken).cnf).toEqual({ jkt: key.jkt });
    const htu = 'https://orders.shop.example/orders/1';
    const check = async (authorization: string, proofKey = key) => orders.envoy.check({
      path: '/orders/1', host: 'orders.shop.example',
      headers: { authorization, dpop: await dpopProof(proofKey, { htm: 'GET', htu, accessToken }) },
    });
    expect(code(await check(`DPoP ${accessToken}`))).toBe('allowed');
    expect(code(await check(`Bearer ${accessToken}`))).toBe('binding_mismatch');
    expect(code(await check(`DPoP ${accessToken}`, await createDpopKey()))).toBe('dpop_invalid');
  });

  it('refuses a replayed proof, a proof for another endpoint, and a proof from a client not configured for DPoP', async () => {
    const key = await createDpopKey();
    const proof = await dpopProof(key, { htm: 'POST', htu: tokenEndpoint });
    expect((await withProof('mobile', key, proof)).status).toBe(200);
    expect((await withProof('mobile', key, proof)).body.error).toBe('invalid_dpop_proof');
    expect((await withProof('mobile', key, await dpopProof(key, { htm: 'POST', htu: `${ISS}/revoke` }))).body.error).toBe('invalid_dpop_proof');
    expect((await withProof('frontend', key)).body.error).toBe('invalid_dpop_proof');
  });

  it('advertises its DPoP algorithms', async () => {
    const meta = await issuerRequest(issuer.url, '/.well-known/oauth-authorization-server', { caPem: mesh.ca.certPem });
    expect(meta.body.dpop_signing_alg_values_supported).toContain('ES256');
  });
});

describe('discovery and keys', () => {
  it('publishes RFC 8414 metadata and a JWKS with cache headers, no client certificate needed', async () => {
    const meta = await issuerRequest(issuer.url, '/.well-known/oauth-authorization-server', { caPem: mesh.ca.certPem });
    expect(meta.body).toMatchObject({
      issuer: ISS, token_endpoint: `${ISS}/token`, jwks_uri: `${ISS}/.well-known/jwks.json`,
      tls_client_certificate_bound_access_tokens: true, token_endpoint_auth_methods_supported: ['tls_client_auth'],
    });
    expect(meta.body.grant_types_supported).toContain(EXCHANGE);
    const jwks = await issuerRequest(issuer.url, '/.well-known/jwks.json', { caPem: mesh.ca.certPem });
    expect(jwks.headers['cache-control']).toBe('public, max-age=1');
    for (const key of jwks.body.keys) expect(Object.keys(key).sort()).toEqual(['alg', 'crv', 'kid', 'kty', 'use', 'x', 'y']);
  });

  it('rotates keys while traffic flows: the next key is published before it signs, and nothing is denied', async () => {
    const before = headerOf((await frontendToken()).access_token).kid;
    const next = await createKeyFile(path.join(mesh.dir, 'keys'), 'ES256', Date.now() + 2000);
    await issuer.keyring.load();
    const publishedEarly = (await issuerRequest(issuer.url, '/.well-known/jwks.json', { caPem: mesh.ca.certPem })).body.keys.map((k: { kid: string }) => k.kid);
    expect(publishedEarly).toContain(next);
    expect(headerOf((await frontendToken()).access_token).kid).toBe(before);
    const outcomes: string[] = [];
    const kids = new Set<string>();
    const deadline = Date.now() + 4000;
    while (Date.now() < deadline) {
      const t = (await frontendToken()).access_token;
      kids.add(headerOf(t).kid);
      outcomes.push(code(await readOrder(t))!);
      // Paced under frontend's own rate limit (burst 200).
      await new Promise((r) => setTimeout(r, 25));
    }
    expect(kids).toEqual(new Set([before, next]));
    expect([...new Set(outcomes)]).toEqual(['allowed']);
    const published = (await issuerRequest(issuer.url, '/.well-known/jwks.json', { caPem: mesh.ca.certPem })).body.keys.map((k: { kid: string }) => k.kid);
    expect(published).toEqual(expect.arrayContaining([before, next]));
    console.log(`[issuer] key rotation under traffic: ${outcomes.length} checks, all allowed`);
  });
});
