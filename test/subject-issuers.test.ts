import { createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../src/audit/audit-verify.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert, thumbprintOf } from '../src/devkit/pki.js';
import { createSigningKey, signAccessToken, writeJwks, type AccessTokenInput, type SigningKey } from '../src/devkit/signing-key.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { silentLogger } from '../src/telemetry/log.js';
import { writeAuditKeyPair } from './support/audit-keys.js';
import { claimsOf, issuerRequest, type IssuerReply } from './support/issuer-client.js';
import { ISS, MESH_ID } from './support/mesh-issuer.js';
import { runCli } from './support/process.js';
import { startOtlpHttpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

// The edge (frontend) trades the user's identity provider token for one of this issuer.
const IDP = 'https://idp.test.local/realms/shop';
/** A second identity provider that issues typ JWT, trusted with the default typ [at+jwt]. */
const STRICT_IDP = 'https://login.test.local';
const WEB_CLIENT = 'shop-web';
const ID = { frontend: MESH_ID.frontend, orders: MESH_ID.orders, ledger: MESH_ID.ledger, admin: MESH_ID.admin } as const;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
const JWT_TOKEN = 'urn:ietf:params:oauth:token-type:jwt';

let mesh: TrustDomain<keyof typeof ID>;
let idpKey: SigningKey;
let issuer: RunningIssuer;
let receiver: OtlpReceiver;
let auditPath: string;
let auditPublicKey: KeyObject;
const prefix = uniquePrefix();
/** Every subject token sent, to show none of them reaches a response or the audit log. */
const sent: string[] = [];

beforeAll(async () => {
  await requireSharedRedis();
  mesh = await createTrustDomain('subject-issuers', ID);
  receiver = await startOtlpHttpReceiver();
  idpKey = await createSigningKey('ES256', 'idp-1');
  writeJwks(path.join(mesh.dir, 'idp-jwks.json'), [idpKey]);
  writeJwks(path.join(mesh.dir, 'login-jwks.json'), [idpKey]);
  const audit = writeAuditKeyPair(mesh.dir);
  auditPublicKey = createPublicKey(readFileSync(audit.publicPath));
  auditPath = path.join(mesh.dir, 'issuer-audit.jsonl');
  const server = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: keys }
token_ttl: 5m
refresh_ttl: 10m
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
telemetry: { tracing: true, endpoint: ${receiver.endpoint}, protocol: http/protobuf }
audit: { output: ${auditPath}, signing_key_file: ${audit.privatePath}, flush_interval: 20ms }
jwks: { refetch_interval: 200ms }
clients:
  - id: ${ID.frontend}
    grants: [token_exchange]
    audiences: [${ID.orders}]
    scopes: [orders:read, orders:write, ledger:write]
  - id: ${ID.orders}
    grants: [token_exchange]
    audiences: [${ID.ledger}]
    scopes: [ledger:write]
  - { id: ${ID.admin}, grants: [client_credentials], admin: true }
subject_issuers:
  - issuer: ${IDP}
    jwks_file: idp-jwks.json
    algorithms: [ES256]
    audience: ${WEB_CLIENT}
    max_ttl: 1h
    typ: [at+jwt, JWT]
    clients: [${ID.frontend}]
  - issuer: ${STRICT_IDP}
    jwks_file: login-jwks.json
    algorithms: [ES256]
    audience: ${WEB_CLIENT}
    clients: [${ID.frontend}]
`, { baseDir: mesh.dir }), { log: silentLogger });
}, 60_000);

afterAll(async () => {
  await issuer?.stop();
  await receiver?.close();
  mesh?.cleanup();
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
});

/** A user's access token as the identity provider issues it to the web client. */
async function userToken(input: Partial<AccessTokenInput> = {}, key: SigningKey = idpKey): Promise<string> {
  const token = await signAccessToken(key, {
    iss: IDP, aud: WEB_CLIENT, sub: 'alice', clientId: WEB_CLIENT, scope: 'openid profile orders:read ledger:write', ttl: 120, ...input,
  });
  sent.push(token);
  return token;
}

const exchange = (who: keyof typeof ID, subjectToken: string, audience: string, extra: Record<string, string> = {}) =>
  issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: mesh.workloads[who],
    form: { grant_type: EXCHANGE, subject_token: subjectToken, subject_token_type: ACCESS_TOKEN, audience, ...extra },
  });

/** invalid_grant naming why, and nothing of the token sent. */
function refused(reply: IssuerReply, token: string, why: string | RegExp): void {
  expect(reply.status).toBe(400);
  expect(reply.body.error).toBe('invalid_grant');
  expect(reply.body.error_description).toMatch(why);
  const text = JSON.stringify(reply);
  for (const part of token.split('.')) expect(text).not.toContain(part);
}

describe('a subject issuer\'s token exchanged at the edge', () => {
  it('starts the chain: sub the user, act the edge client, bound to its certificate, scope narrowed, exp within the user token', async () => {
    const user = await userToken();
    const reply = await exchange('frontend', user, ID.orders);
    expect(reply.status).toBe(200);
    const claims = claimsOf(reply.body.access_token);
    const userClaims = claimsOf(user);
    expect(claims).toMatchObject({ iss: ISS, sub: 'alice', client_id: ID.frontend, aud: ID.orders, act: { sub: ID.frontend } });
    expect(claims.act).toEqual({ sub: ID.frontend });
    expect(claims.cnf).toEqual({ 'x5t#S256': thumbprintOf(mesh.workloads.frontend.certPem) });
    // openid and profile are the user token's but not the client's; orders:write the client's but not the user's.
    expect(claims.scope).toBe('orders:read ledger:write');
    expect(claims.exp).toBeLessThanOrEqual(userClaims.exp);
    expect(reply.body.issued_token_type).toBe(ACCESS_TOKEN);

    // The next hop exchanges that token as any other: orders outermost, the edge nested.
    const onward = await exchange('orders', reply.body.access_token, ID.ledger);
    expect(onward.status).toBe(200);
    const next = claimsOf(onward.body.access_token);
    expect(next).toMatchObject({ iss: ISS, sub: 'alice', aud: ID.ledger, scope: 'ledger:write' });
    expect(next.act).toEqual({ sub: ID.orders, act: { sub: ID.frontend } });
    expect(next.cnf).toEqual({ 'x5t#S256': thumbprintOf(mesh.workloads.orders.certPem) });
    expect(next.exp).toBeLessThanOrEqual(userClaims.exp);
  });

  it('is refused to a client the subject issuer does not list (invalid_grant: to it the issuer is unknown)', async () => {
    const user = await userToken();
    refused(await exchange('orders', user, ID.ledger), user, /unknown_issuer/);
  });

  it('is refused, never echoed, for a wrong audience, an expired token, an unknown issuer, a wrong algorithm or an unknown kid', async () => {
    const cases: [string, Promise<string>, RegExp][] = [
      ['wrong audience', userToken({ aud: 'another-app' }), /audience_mismatch/],
      ['expired', userToken({ iat: Math.floor(Date.now() / 1000) - 600, ttl: 300 }), /token_expired/],
      ['unknown issuer', userToken({ iss: 'https://evil.test.local' }), /unknown_issuer/],
      ['wrong algorithm', createSigningKey('ES384', 'idp-1').then((k) => userToken({}, k)), /disallowed_algorithm/],
      ['unknown kid', createSigningKey('ES256', 'idp-2').then((k) => userToken({}, k)), /unknown_key/],
      ['lifetime over max_ttl', userToken({ ttl: 7200 }), /token_lifetime_too_long/],
    ];
    for (const [name, made, why] of cases) {
      const token = await made;
      const reply = await exchange('frontend', token, ID.orders);
      expect(reply.body?.error, name).toBe('invalid_grant');
      refused(reply, token, why);
    }
  });

  it('accepts typ JWT only from a subject issuer configured with typ: [at+jwt, JWT], under either subject_token_type', async () => {
    const jwtTyped = await userToken({ header: { typ: 'JWT' } });
    const reply = await exchange('frontend', jwtTyped, ID.orders, { subject_token_type: JWT_TOKEN });
    expect(reply.status).toBe(200);
    expect(claimsOf(reply.body.access_token).sub).toBe('alice');
    const strict = await userToken({ iss: STRICT_IDP, header: { typ: 'JWT' } });
    refused(await exchange('frontend', strict, ID.orders), strict, /wrong_token_type/);
    const strictAccessToken = await userToken({ iss: STRICT_IDP });
    expect((await exchange('frontend', strictAccessToken, ID.orders)).status).toBe(200);
  });

  it('is refused when bound to another holder (another certificate, a DPoP key) and accepted when bound to the caller\'s certificate', async () => {
    const toOrders = await userToken({ certThumbprint: thumbprintOf(mesh.workloads.orders.certPem) });
    refused(await exchange('frontend', toOrders, ID.orders), toOrders, /bound to another holder/);
    const toKey = await userToken({ claims: { cnf: { jkt: 'A'.repeat(43) } } });
    refused(await exchange('frontend', toKey, ID.orders), toKey, /bound to another holder/);
    const toFrontend = await userToken({ certThumbprint: thumbprintOf(mesh.workloads.frontend.certPem) });
    expect((await exchange('frontend', toFrontend, ID.orders)).status).toBe(200);
  });

  it('is refused when it already carries act: the edge client is the first actor', async () => {
    const withActor = await userToken({ claims: { act: { sub: ID.orders } } });
    refused(await exchange('frontend', withActor, ID.orders), withActor, /must not carry act/);
  });

  it('is refused once hopguard revoke --subject revoked the user', async () => {
    const before = await userToken({ sub: 'bob', iat: Math.floor(Date.now() / 1000) - 2 });
    expect((await exchange('frontend', before, ID.orders)).status).toBe(200);
    const authzConfig = path.join(mesh.dir, 'revoke.yaml');
    writeFileSync(authzConfig, `
listen: 127.0.0.1:0
audience: ${ID.orders}
issuers:
  - { issuer: ${ISS}, jwks_file: ${mesh.jwksPath}, algorithms: [ES256] }
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}" }
routes:
  - { name: all, path_prefix: / }
`);
    const revoked = await runCli(['revoke', '--config', authzConfig, '--subject', 'bob']);
    expect(revoked.stderr).toBe('');
    expect(revoked.code).toBe(0);
    let reply = await exchange('frontend', before, ID.orders);
    for (const started = Date.now(); reply.status === 200 && Date.now() - started < 3000;) {
      await new Promise((r) => setTimeout(r, 50));
      reply = await exchange('frontend', before, ID.orders);
    }
    refused(reply, before, /revoked/);
    // Another user is untouched.
    expect((await exchange('frontend', await userToken({ sub: 'carol' }), ID.orders)).status).toBe(200);
  });

  it('is revoked by subject, through the issuer, for as long as a subject issuer\'s token may live (its max_ttl)', async () => {
    const before = await userToken({ sub: 'erin', iat: Math.floor(Date.now() / 1000) - 2 });
    const reply = await issuerRequest(issuer.url, '/revoke', { caPem: mesh.ca.certPem, client: mesh.workloads.admin, form: { subject: 'erin' } });
    expect(reply.status).toBe(200);
    refused(await exchange('frontend', before, ID.orders), before, /revoked/);
    const redis = new Redis(SHARED_REDIS_URL);
    try {
      const record = JSON.parse((await redis.hget(`${prefix}revocations`, 'subject:erin'))!);
      // max_ttl 1h, beyond refresh_ttl (10m) and token_ttl (5m): a revocation gone sooner would let the token be exchanged again.
      expect(record.expiresAtMs).toBeGreaterThanOrEqual(Date.now() + 3600_000 - 60_000);
    } finally {
      redis.disconnect();
    }
  });

  it('is audited and traced with the subject issuer, the user and the edge actor, and never the token', async () => {
    const user = await userToken({ sub: 'dave' });
    expect((await exchange('frontend', user, ID.orders)).status).toBe(200);
    await issuer.stop();
    const text = readFileSync(auditPath, 'utf8');
    for (const token of sent) for (const part of token.split('.').slice(1)) expect(text).not.toContain(part);
    const records = text.trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'exchange');
    const dave = records.filter((r) => r.subject === 'dave');
    expect(dave).toEqual([expect.objectContaining({
      decision: 'allow', subject_issuer: IDP, client: ID.frontend, caller: ID.frontend, actors: [ID.frontend], audience: ID.orders,
    })]);
    // The onward exchange of the issuer's own token names no subject issuer.
    expect(records.filter((r) => r.decision === 'allow' && r.client === ID.orders).every((r) => r.subject_issuer === undefined)).toBe(true);
    expect(records.some((r) => r.decision === 'deny' && r.code === 'invalid_grant')).toBe(true);
    expect((await verifyAuditLog(auditPath, [auditPublicKey])).findings).toEqual([]);
    const span = receiver.spans.find((s) => s.attributes['hopguard.token.fingerprint'] === dave[0].token_fingerprint);
    expect(span?.attributes).toMatchObject({ 'hopguard.grant': 'token_exchange', 'hopguard.subject_issuer': IDP, 'hopguard.caller': ID.frontend });
    const spans = JSON.stringify(receiver.spans);
    for (const token of sent) for (const part of token.split('.').slice(1)) expect(spans).not.toContain(part);
  });
});
