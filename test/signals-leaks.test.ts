import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckInput, CheckOutput } from '../src/authz/envoy-client.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import { issueCert, thumbprintOf } from '../src/devkit/pki.js';
import { createSigningKey, signAccessToken, writeJwks, type SigningKey } from '../src/devkit/signing-key.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import { silentLogger } from '../src/telemetry/log.js';
import { claimsOf, headerOf, issuerRequest } from './support/issuer-client.js';
import { trustIssuerYaml } from './support/mesh-issuer.js';
import { startSidecar, type SidecarProcess } from './support/process.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * Issue 16 #3: a validly signed token in the wrong hands is revoked mesh-wide by the sidecar that
 * sees it (a real issuer over TLS, sidecar processes, Redis); a forged one revokes nothing.
 */

const ISS = 'https://sts.leaks.test';
/** A second trusted issuer whose tokens carry no cnf: bearer tokens, for the two-callers case. */
const LEGACY = 'https://legacy.leaks.test';
const ID = {
  orders: 'spiffe://leaks.test/ns/shop/sa/orders',
  frontend: 'spiffe://leaks.test/ns/shop/sa/frontend',
  stranger: 'spiffe://leaks.test/ns/shop/sa/stranger',
  mobile: 'spiffe://leaks.test/ns/edge/sa/mobile',
} as const;
type Workload = keyof typeof ID;

const prefix = uniquePrefix();
let mesh: TrustDomain<Workload>;
let legacyKey: SigningKey;
let issuer: RunningIssuer;
let mobileKey: DpopKey;
/** Two sidecars with leaks: revoke (the default) and one with leaks: report, each auditing to its own file. */
let revoking: SidecarProcess[];
let reporting: SidecarProcess;
const auditFiles: string[] = [];

function sidecarYaml(name: string, auditKey: string, leaks?: 'report'): string {
  const file = path.join(mesh.dir, `${name}.yaml`);
  const audit = path.join(mesh.dir, `${name}-audit.jsonl`);
  auditFiles.push(audit);
  writeFileSync(file, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
audience: ${ID.orders}
binding: none
${trustIssuerYaml(ISS, issuer.url, mesh.ca.certPath)}  - issuer: ${LEGACY}
    jwks_file: legacy-jwks.json
    algorithms: [ES256]
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}${leaks ?? ''}", resync_interval: 200ms }
audit: { output: ${audit}, signing_key_file: ${auditKey} }
${leaks ? `leaks: ${leaks}\n` : ''}routes:
  - name: read
    path_prefix: /orders/
`);
  return file;
}

beforeAll(async () => {
  await requireSharedRedis();
  mesh = await createTrustDomain('leaks', ID);
  const serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  legacyKey = await createSigningKey('ES256', 'legacy-1');
  writeJwks(path.join(mesh.dir, 'legacy-jwks.json'), [legacyKey]);
  mobileKey = await createDpopKey();
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')} }
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
clients:
  - { id: ${ID.frontend}, grants: [client_credentials], audiences: [${ID.orders}] }
  - { id: ${ID.stranger}, grants: [client_credentials], audiences: [${ID.orders}] }
  - { id: ${ID.mobile}, grants: [client_credentials], audiences: [${ID.orders}], dpop: true }
`, { baseDir: mesh.dir }), { log: silentLogger });
  const auditKey = path.join(mesh.dir, 'audit-key.pem');
  writeFileSync(auditKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const configs = [sidecarYaml('revoke-0', auditKey), sidecarYaml('revoke-1', auditKey), sidecarYaml('report', auditKey, 'report')];
  // One after another: node processes starting at once on a loaded CI machine take long.
  revoking = [await startSidecar(configs[0]!, 30_000), await startSidecar(configs[1]!, 30_000)];
  reporting = await startSidecar(configs[2]!, 30_000);
}, 120_000);

afterAll(async () => {
  await Promise.all([...(revoking ?? []), ...(reporting ? [reporting] : [])].map((s) => s.stop()));
  await issuer?.stop();
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  mesh?.cleanup();
});

async function tokenFor(workload: Workload, dpop?: string): Promise<string> {
  const reply = await issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: mesh.workloads[workload],
    form: { grant_type: 'client_credentials', audience: ID.orders }, ...(dpop && { headers: { dpop } }),
  });
  expect(reply.status).toBe(200);
  return reply.body.access_token;
}

const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);
/** A request to GET /orders/1 by `as` (its principal and certificate, or one given). */
const read = async (sidecar: SidecarProcess, token: string, as: Workload, extra: Partial<CheckInput> = {}) => codeOf(await sidecar.envoy.check({
  path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: ID[as], certificatePem: mesh.workloads[as].certPem, ...extra,
}));

/** Every sidecar given, polled until each answers `code` (at most `withinMs`); their answers. */
async function untilEvery(sidecars: SidecarProcess[], code: string, ask: (s: SidecarProcess) => Promise<string | undefined>, withinMs = 1000) {
  const started = performance.now();
  return Promise.all(sidecars.map(async (s) => {
    let answer = await ask(s);
    while (answer !== code && performance.now() - started < withinMs) {
      await new Promise((r) => setTimeout(r, 10));
      answer = await ask(s);
    }
    return answer;
  }));
}

/** The token_leak_suspected records of an audit file, without the chain's own fields. */
function audited(file: string): Record<string, any>[] {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l))
    .filter((r) => r.event === 'token_leak_suspected')
    .map(({ seq: _seq, time: _time, prev: _prev, event: _event, ...fields }) => fields);
}

const metricsOf = async (sidecar: SidecarProcess) => (await fetch(`http://${sidecar.admin}/metrics`)).text();

const settle = () => new Promise((r) => setTimeout(r, 500));

describe('leaks: revoke', () => {
  it('a token presented with another workload\'s certificate is then denied everywhere, also with the right one', async () => {
    const token = await tokenFor('frontend');
    const sibling = await tokenFor('frontend');
    expect(await read(revoking[0]!, token, 'frontend')).toBe('allowed');
    expect(await read(revoking[0]!, token, 'stranger')).toBe('binding_mismatch');
    expect(await untilEvery(revoking, 'token_revoked', (s) => read(s, token, 'frontend'))).toEqual(['token_revoked', 'token_revoked']);
    // Only that token: the same client's other token lives.
    expect(await read(revoking[1]!, sibling, 'frontend')).toBe('allowed');

    const leakFingerprint = fingerprint(ISS, claimsOf(token).jti);
    await expect.poll(() => audited(auditFiles[0]!).filter((r) => r.token_fingerprint === leakFingerprint)).toEqual([{
      decision: 'deny', code: 'binding_mismatch', route: 'read', leak: 'wrong_certificate', issuer: ISS, audience: ID.orders,
      subject: ID.frontend, client: ID.frontend, caller: ID.stranger, token_fingerprint: leakFingerprint,
      presented_fingerprint: thumbprintOf(mesh.workloads.stranger.certPem), revoked: 'jti',
    }]);
    const text = readFileSync(auditFiles[0]!, 'utf8');
    expect(text).not.toContain(token.split('.')[2]);
    expect(text).not.toContain(claimsOf(token).jti);
    expect(await metricsOf(revoking[0]!)).toMatch(/hopguard_leaks_total\{kind="wrong_certificate"\} 1/);
  });

  it('a forged token (copied claims, another key) with a wrong certificate revokes nothing', async () => {
    const real = await tokenFor('frontend');
    const attacker = await createSigningKey('ES256');
    const forged = await new SignJWT(claimsOf(real)).setProtectedHeader({ ...headerOf(real), alg: 'ES256' }).sign(attacker.privateKey);
    expect(await read(revoking[0]!, forged, 'stranger')).toBe('invalid_signature');
    const unknownIssuer = await signAccessToken(attacker, { iss: 'https://evil.leaks.test', aud: ID.orders, sub: ID.frontend, jti: claimsOf(real).jti });
    expect(await read(revoking[0]!, unknownIssuer, 'stranger')).toBe('unknown_issuer');
    await settle();
    for (const s of revoking) expect(await read(s, real, 'frontend')).toBe('allowed');
    expect(audited(auditFiles[0]!).filter((r) => r.token_fingerprint === fingerprint(ISS, claimsOf(real).jti))).toEqual([]);
  });

  it('its own client\'s rotated certificate is refused, not taken for a leak', async () => {
    const token = await tokenFor('frontend');
    const rotated = issueCert(mesh.ca, mesh.dir, { name: 'frontend-rotated', uriSan: ID.frontend, clientAuth: true });
    expect(await read(revoking[0]!, token, 'frontend', { certificatePem: rotated.certPem })).toBe('binding_mismatch');
    await settle();
    for (const s of revoking) expect(await read(s, token, 'frontend')).toBe('allowed');
  });

  it('a bearer token seen from two callers is revoked, and then denied to both', async () => {
    const token = await signAccessToken(legacyKey, { iss: LEGACY, aud: ID.orders, sub: ID.frontend });
    expect(await read(revoking[0]!, token, 'frontend')).toBe('allowed');
    expect(await read(revoking[0]!, token, 'frontend')).toBe('allowed');
    expect(await read(revoking[0]!, token, 'stranger')).toBe('token_revoked');
    expect(await untilEvery(revoking, 'token_revoked', (s) => read(s, token, 'frontend'))).toEqual(['token_revoked', 'token_revoked']);
    await expect.poll(() => audited(auditFiles[0]!).filter((r) => r.leak === 'two_callers')).toEqual([expect.objectContaining({
      decision: 'deny', code: 'token_revoked', caller: ID.stranger, other_caller: ID.frontend, revoked: 'jti',
      token_fingerprint: fingerprint(LEGACY, claimsOf(token).jti),
    })]);
  });

  it('a DPoP-bound token with a valid proof by another key is revoked, then denied with the right key', async () => {
    const token = await tokenFor('mobile', await dpopProof(mobileKey, { htm: 'POST', htu: `${ISS}/token` }));
    const htu = 'https://service.local/orders/1';
    const withProof = async (s: SidecarProcess, key: DpopKey) => codeOf(await s.envoy.check({
      path: '/orders/1', headers: { authorization: `DPoP ${token}`, dpop: await dpopProof(key, { htm: 'GET', htu, accessToken: token }) },
    }));
    expect(await withProof(revoking[0]!, mobileKey)).toBe('allowed');
    const thief = await createDpopKey();
    expect(await withProof(revoking[0]!, thief)).toBe('dpop_invalid');
    expect(await untilEvery(revoking, 'token_revoked', (s) => withProof(s, mobileKey))).toEqual(['token_revoked', 'token_revoked']);
    await expect.poll(() => audited(auditFiles[0]!).filter((r) => r.leak === 'wrong_dpop_key')).toEqual([expect.objectContaining({
      code: 'dpop_invalid', presented_fingerprint: thief.jkt, revoked: 'jti', client: ID.mobile,
    })]);
    expect(await metricsOf(revoking[0]!)).toMatch(/hopguard_leaks_total\{kind="wrong_dpop_key"\} 1/);
  });
});

describe('leaks: report', () => {
  it('counts and audits, and revokes nothing', async () => {
    const token = await tokenFor('frontend');
    expect(await read(reporting, token, 'stranger')).toBe('binding_mismatch');
    const bearer = await signAccessToken(legacyKey, { iss: LEGACY, aud: ID.orders, sub: ID.frontend });
    expect(await read(reporting, bearer, 'frontend')).toBe('allowed');
    expect(await read(reporting, bearer, 'stranger')).toBe('allowed');
    await settle();
    expect(await read(reporting, token, 'frontend')).toBe('allowed');
    expect(await read(reporting, bearer, 'frontend')).toBe('allowed');
    await expect.poll(() => audited(auditFiles[2]!).map((r) => [r.leak, r.decision, r.revoked])).toEqual([
      ['wrong_certificate', 'deny', undefined], ['two_callers', 'allow', undefined],
    ]);
    const metrics = await metricsOf(reporting);
    expect(metrics).toMatch(/hopguard_leaks_total\{kind="wrong_certificate"\} 1/);
    expect(metrics).toMatch(/hopguard_leaks_total\{kind="two_callers"\} 1/);
  });
});
