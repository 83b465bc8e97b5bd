import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckOutput } from '../src/authz/envoy-client.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { createSigningKey, writeJwks, type SigningKey } from '../src/devkit/signing-key.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { silentLogger } from '../src/telemetry/log.js';
import { holdTls } from './support/held-connection.js';
import { parseHttpResponse } from './support/http-response.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';
import { trustIssuerYaml } from './support/mesh-issuer.js';
import { startSidecar, type SidecarProcess } from './support/process.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';
import { EVENT, encryptedSet, pushSet, signSet, type SetInput } from './support/ssf-transmitter.js';

/**
 * Issue 16 #1: Security Event Tokens pushed to a real issuer over TLS (RFC 8935), revoking
 * through a real Redis at real sidecar processes. The transmitter is this test, signing as an
 * identity provider would; no identity provider's own transmitter runs here.
 */

const ISS = 'https://sts.ssf.test';
const IDP = 'https://idp.ssf.test';
const ID = {
  orders: 'spiffe://ssf.test/ns/shop/sa/orders',
  alice: 'spiffe://ssf.test/ns/shop/sa/alice',
  bob: 'spiffe://ssf.test/ns/shop/sa/bob',
  carol: 'spiffe://ssf.test/ns/shop/sa/carol',
  dave: 'spiffe://ssf.test/ns/shop/sa/dave',
  erin: 'spiffe://ssf.test/ns/shop/sa/erin',
  frank: 'spiffe://ssf.test/ns/shop/sa/frank',
  victim: 'spiffe://ssf.test/ns/shop/sa/victim',
} as const;
type Caller = Exclude<keyof typeof ID, 'orders'>;

const prefix = uniquePrefix();
let mesh: TrustDomain<keyof typeof ID>;
let serverCert: IssuedCert;
let idpKey: SigningKey;
let issuer: RunningIssuer;
let replica: RunningIssuer;
let sidecars: SidecarProcess[];
let auditFile: string;
let replicaAuditFile: string;

function issuerYaml(audit: string, auditKey: string): string {
  return `
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')} }
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
audit: { output: ${audit}, signing_key_file: ${auditKey} }
clients:
${(Object.keys(ID) as (keyof typeof ID)[]).filter((k) => k !== 'orders').map((k) => `  - id: ${ID[k]}
    grants: [client_credentials]
    audiences: [${ID.orders}]
    scopes: [orders:read]`).join('\n')}
signals:
  transmitters:
    - issuer: ${IDP}
      jwks_file: idp-jwks.json
      algorithms: [ES256]
`;
}

beforeAll(async () => {
  await requireSharedRedis();
  mesh = await createTrustDomain('ssf', ID);
  serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  idpKey = await createSigningKey('ES256', 'idp-1');
  writeJwks(path.join(mesh.dir, 'idp-jwks.json'), [idpKey]);
  const auditKey = path.join(mesh.dir, 'audit-key.pem');
  writeFileSync(auditKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  auditFile = path.join(mesh.dir, 'issuer-audit.jsonl');
  replicaAuditFile = path.join(mesh.dir, 'replica-audit.jsonl');
  issuer = await startIssuer(parseIssuerConfig(issuerYaml(auditFile, auditKey), { baseDir: mesh.dir }), { log: silentLogger });
  // A second replica on the same store: a SET it is sent after the first replica took it is a no-op.
  replica = await startIssuer(parseIssuerConfig(issuerYaml(replicaAuditFile, auditKey), { baseDir: mesh.dir }), { log: silentLogger });
  const sidecarConfig = path.join(mesh.dir, 'orders.yaml');
  writeFileSync(sidecarConfig, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
audience: ${ID.orders}
${trustIssuerYaml(ISS, issuer.url, mesh.ca.certPath)}store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
routes:
  - name: read
    path_prefix: /orders/
`);
  // One after another: three node processes starting at once on a loaded CI machine take long.
  sidecars = [];
  for (let i = 0; i < 3; i++) sidecars.push(await startSidecar(sidecarConfig, 30_000));
}, 120_000);

afterAll(async () => {
  await Promise.all((sidecars ?? []).map((s) => s.stop()));
  await replica?.stop();
  await issuer?.stop();
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  mesh?.cleanup();
});

async function tokenFor(caller: Caller): Promise<string> {
  const reply = await issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: mesh.workloads[caller],
    form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' },
  });
  expect(reply.status).toBe(200);
  return reply.body.access_token;
}

const read = (sidecar: SidecarProcess, caller: Caller, token: string) => sidecar.envoy.check({
  path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: ID[caller], certificatePem: mesh.workloads[caller].certPem,
});
const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);

/** Per sidecar, how long until it denied `token` as token_revoked (Infinity past 3 s). */
async function revokedWithin(caller: Caller, token: string, started: number): Promise<number[]> {
  return Promise.all(sidecars.map(async (s) => {
    while (performance.now() - started < 3000) {
      if (codeOf(await read(s, caller, token)) === 'token_revoked') return performance.now() - started;
      await new Promise((r) => setTimeout(r, 5));
    }
    return Number.POSITIVE_INFINITY;
  }));
}

async function everySidecar(caller: Caller, token: string): Promise<string[]> {
  return Promise.all(sidecars.map(async (s) => codeOf(await read(s, caller, token))!));
}

/** Until the next whole second: a token minted then has an iat after a revocation "before now". */
const nextSecond = () => new Promise((r) => setTimeout(r, 1000 - (Date.now() % 1000) + 50));

const set = (input: Omit<SetInput, 'iss' | 'aud'> & Partial<Pick<SetInput, 'iss' | 'aud'>>, key = idpKey) =>
  signSet(key, { iss: IDP, aud: ISS, ...input });
const push = (body: string, to = issuer) => pushSet(to.url, mesh.ca.certPem, body);

function audited(file = auditFile): Record<string, any>[] {
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => r.event === 'security_event');
}

const issuerMetrics = async () => (await fetch(`http://${issuer.adminAddress}/metrics`)).text();

describe('SETs that revoke a subject, at every sidecar within 1 s', () => {
  const cases: [string, Caller, Record<string, Record<string, unknown>>, Record<string, unknown>][] = [
    ['CAEP session-revoked (iss_sub)', 'alice', { [EVENT.sessionRevoked]: { event_timestamp: Math.floor(Date.now() / 1000) + 3600 } }, { format: 'iss_sub', iss: IDP, sub: ID.alice }],
    ['CAEP credential-change revoke (uri)', 'bob', { [EVENT.credentialChange]: { credential_type: 'x509', change_type: 'revoke' } }, { format: 'uri', uri: ID.bob }],
    ['RISC account-disabled (opaque)', 'carol', { [EVENT.accountDisabled]: { reason: 'hijacking' } }, { format: 'opaque', id: ID.carol }],
    ['RISC credential-compromise (complex user)', 'dave', { [EVENT.credentialCompromise]: { credential_type: 'password' } },
      { format: 'complex', user: { format: 'iss_sub', iss: IDP, sub: ID.dave }, device: { format: 'opaque', id: 'laptop-7' } }],
  ];

  it.each(cases)('%s: earlier tokens denied everywhere, later ones allowed', async (_name, caller, events, subId) => {
    const earlier = await tokenFor(caller);
    expect(await everySidecar(caller, earlier)).toEqual(['allowed', 'allowed', 'allowed']);
    const body = await set({ events, subId });
    const sent = performance.now();
    const reply = await push(body);
    expect(reply.status).toBe(202);
    expect(reply.body).toBeUndefined();
    // From the issuer's 202: the SET is in the store, and the feed carries it to each sidecar.
    const started = performance.now();
    const delays = await revokedWithin(caller, earlier, started);
    console.log(`[ssf ${_name}] 202 after ${(started - sent).toFixed(0)} ms; revoked at the sidecars ${delays.map((d) => d.toFixed(0)).join(', ')} ms later`);
    expect(Math.max(...delays)).toBeLessThan(1000);
    await nextSecond();
    const later = await tokenFor(caller);
    expect(await everySidecar(caller, later)).toEqual(['allowed', 'allowed', 'allowed']);
    // The 202 does not wait for the audit file: the record is queued and written at the next
    // flush_interval (250 ms, later on a loaded machine), so it is waited for.
    await expect.poll(() => audited().filter((r) => r.subject === ID[caller]), { timeout: 5_000 }).toEqual([expect.objectContaining({
      decision: 'allow', issuer: IDP, revoked: 'subject', set_id: claimsOf(body).jti,
    })]);
  });

  it('an event-level subject (older CAEP drafts) is read when there is no sub_id', async () => {
    const earlier = await tokenFor('erin');
    const reply = await push(await set({ events: { [EVENT.accountPurged]: { subject: { format: 'uri', uri: ID.erin } } } }));
    expect(reply.status).toBe(202);
    expect(Math.max(...await revokedWithin('erin', earlier, performance.now()))).toBeLessThan(1000);
  });
});

describe('CAEP token-claims-change with a jwt_id subject', () => {
  it('revokes exactly that token, at every sidecar', async () => {
    const named = await tokenFor('frank');
    const other = await tokenFor('frank');
    const started = performance.now();
    const reply = await push(await set({
      subId: { format: 'jwt_id', iss: ISS, jti: claimsOf(named).jti },
      events: { [EVENT.tokenClaimsChange]: { claims: { role: 'ro-admin' } } },
    }));
    expect(reply.status).toBe(202);
    expect(Math.max(...await revokedWithin('frank', named, started))).toBeLessThan(1000);
    expect(await everySidecar('frank', other)).toEqual(['allowed', 'allowed', 'allowed']);
  });

  it('with another subject format revokes nothing (202, counted)', async () => {
    const token = await tokenFor('frank');
    const reply = await push(await set({ subId: { format: 'uri', uri: ID.frank }, events: { [EVENT.tokenClaimsChange]: { claims: { role: 'x' } } } }));
    expect(reply.status).toBe(202);
    await new Promise((r) => setTimeout(r, 400));
    expect(await everySidecar('frank', token)).toEqual(['allowed', 'allowed', 'allowed']);
  });
});

describe('SETs refused: 400 with the RFC 8935 err, nothing revoked', () => {
  const victim = { format: 'uri', uri: ID.victim };
  const revoking = { [EVENT.sessionRevoked]: {} };
  const now = () => Math.floor(Date.now() / 1000);
  const cases: [string, () => Promise<string>, string][] = [
    ['wrong signature (another key, same kid)', async () => set({ subId: victim, events: revoking }, await createSigningKey('ES256', 'idp-1')), 'invalid_key'],
    ['unknown kid', async () => set({ subId: victim, events: revoking }, await createSigningKey('ES256', 'idp-unknown')), 'invalid_key'],
    ['an algorithm the transmitter may not use', async () => set({ subId: victim, events: revoking }, await createSigningKey('RS256', 'idp-1')), 'invalid_key'],
    ['unknown issuer', () => set({ iss: 'https://evil.test', subId: victim, events: revoking }), 'invalid_issuer'],
    ['wrong audience', () => set({ aud: 'https://someone-else.test', subId: victim, events: revoking }), 'invalid_audience'],
    ['typ missing', () => set({ subId: victim, events: revoking, header: { typ: undefined } }), 'invalid_request'],
    ['typ JWT', () => set({ subId: victim, events: revoking, header: { typ: 'JWT' } }), 'invalid_request'],
    ['iat older than max_age', () => set({ subId: victim, events: revoking, iat: now() - 3600 }), 'invalid_request'],
    ['iat in the future', () => set({ subId: victim, events: revoking, iat: now() + 600 }), 'invalid_request'],
    ['no iat', () => set({ subId: victim, events: revoking, claims: { iat: undefined } }), 'invalid_request'],
    ['an exp (an ID token, not a SET)', () => set({ subId: victim, events: revoking, claims: { exp: now() + 300 } }), 'invalid_request'],
    ['a sub claim', () => set({ subId: victim, events: revoking, claims: { sub: ID.victim } }), 'invalid_request'],
    ['no events', () => set({ subId: victim, events: {} }), 'invalid_request'],
    ['an unsupported subject format (email)', () => set({ subId: { format: 'email', email: 'v@ssf.test' }, events: revoking }), 'invalid_request'],
    ['no subject', () => set({ events: revoking }), 'invalid_request'],
    ['a JWE', () => encryptedSet({ iss: IDP, aud: ISS, events: revoking }), 'invalid_request'],
    ['garbage', async () => 'this is not a token', 'invalid_request'],
    ['unsigned (alg none)', async () => {
      const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
      return `${part({ alg: 'none', typ: 'secevent+jwt' })}.${part({ iss: IDP, aud: ISS, iat: now(), jti: 'x', sub_id: victim, events: revoking })}.`;
    }, 'invalid_request'],
  ];

  it.each(cases)('%s', async (_name, make, err) => {
    const reply = await push(await make());
    expect(reply.status).toBe(400);
    expect(reply.headers['content-type']).toBe('application/json');
    expect(reply.body).toEqual({ err, description: expect.any(String) });
  });

  it('1 MB: invalid_request, answered without reading it', async () => {
    const conn = (await holdTls(issuer.url))!;
    conn.socket.write(`POST /ssf/events HTTP/1.1\r\nhost: issuer\r\ncontent-type: application/secevent+jwt\r\ncontent-length: ${1024 * 1024}\r\n\r\n`);
    conn.socket.write('a'.repeat(16 * 1024));
    expect(await conn.closedWithin(5000)).toBeDefined();
    expect(parseHttpResponse(conn.received())).toMatchObject({ status: 400, body: { err: 'invalid_request' } });
  });

  it('the wrong content type: invalid_request', async () => {
    const reply = await pushSet(issuer.url, mesh.ca.certPem, await set({ subId: victim, events: revoking }), 'application/jwt');
    expect(reply).toMatchObject({ status: 400, body: { err: 'invalid_request' } });
  });

  it('left the victim\'s token allowed everywhere and audited none of them', async () => {
    const token = await tokenFor('victim');
    await new Promise((r) => setTimeout(r, 400));
    expect(await everySidecar('victim', token)).toEqual(['allowed', 'allowed', 'allowed']);
    expect(audited().filter((r) => r.subject === ID.victim)).toEqual([]);
  });
});

describe('each SET is acted on and audited once', () => {
  it('a resent jti is a no-op, at this replica and at another one on the same store', async () => {
    const body = await set({ subId: { format: 'opaque', id: 'stream-1' }, events: { [EVENT.verification]: { state: 'c3RhdGU' } } });
    const jti = claimsOf(body).jti;
    for (const to of [issuer, issuer, replica]) expect((await push(body, to)).status).toBe(202);
    await expect.poll(() => audited().filter((r) => r.set_id === jti)).toEqual([
      expect.objectContaining({ decision: 'allow', issuer: IDP, security_events: ['verification'] }),
    ]);
    expect(audited(replicaAuditFile).filter((r) => r.set_id === jti)).toEqual([]);
  });

  it('a SET above an access token\'s 16 KiB but within 64 KiB is read', async () => {
    const body = await set({ subId: { format: 'opaque', id: 'stream-1' }, events: { [EVENT.verification]: { state: 'x'.repeat(40_000) } } });
    expect(body.length).toBeGreaterThan(16 * 1024);
    expect((await push(body)).status).toBe(202);
  });

  it('an event type it does not act on is accepted and counted', async () => {
    const reply = await push(await set({
      subId: { format: 'uri', uri: ID.victim },
      events: { 'https://schemas.openid.net/secevent/caep/event-type/assurance-level-change': { current_level: 'nist-aal1' } },
    }));
    expect(reply.status).toBe(202);
    const metrics = await issuerMetrics();
    expect(metrics).toMatch(/hopguard_issuer_security_events_total\{event="other",outcome="unknown_type"\} 1/);
    expect(metrics).toMatch(/hopguard_issuer_security_events_total\{event="verification",outcome="duplicate"\} 1/);
    expect(metrics).toMatch(/hopguard_issuer_security_events_total\{event="verification",outcome="verification"\} 2/);
    expect(metrics).toMatch(/hopguard_issuer_security_events_total\{event="session-revoked",outcome="revoked"\} 1/);
    expect(metrics).toMatch(/hopguard_issuer_security_events_total\{event="unverified",outcome="invalid_key"\} \d/);
  });
});
