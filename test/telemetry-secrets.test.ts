import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exportJWK } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckInput } from '../src/authz/envoy-client.js';
import { createSigningKey, type SigningKey } from '../src/devkit/signing-key.js';
import { compileCondition } from '../src/policy/route-conditions.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { StoreUnavailableError } from '../src/store/store.js';
import { createLogger } from '../src/telemetry/log.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import { DENY_CODES, MESSAGE_DENY_CODES, OUTBOUND_DENY_CODES, type DenyCode } from '../src/vocabulary/deny-codes.js';
import { AUDIENCE, CHECKOUT, DEFAULT_ROUTES, ISSUER, STRANGER, authzConfig, createFixtures, route, startServer, type Fixtures } from './support/harness.js';
import { startOtlpHttpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * Tokens pushed through every deny path (and the allow paths), with tracing, OTLP metrics,
 * the audit log (every allow too) and logging on; then every span, metric label, audit
 * record and log line is searched for any part of any token, and for key material.
 */

let fixtures: Fixtures;
let receiver: OtlpReceiver;
const tokens: string[] = [];
const keys: SigningKey[] = [];
const logLines: string[] = [];
const codesSeen = new Set<string>();
let metricsText = '';
let auditText = '';
let auditPem = '';
let checks = 0;
/** A claim value a failing condition reads: never in a body, span, metric, audit record or log. */
const TENANT = 'tenant-claim-5e0c7a';
const conditionBodies: string[] = [];

type Mode = 'ok' | 'stale' | 'broken' | 'redis-down';
let mode: Mode = 'ok';

function storeWithFaults(): MemoryStore {
  const store = new MemoryStore();
  const find = store.findRevocation.bind(store);
  const markUsed = store.markUsed.bind(store);
  store.health = () => (mode === 'stale' ? { state: 'unavailable' } : { state: 'ok' });
  store.findRevocation = (token) => {
    if (mode === 'broken') throw new Error('bug');
    return find(token);
  };
  store.markUsed = async (fp, until) => {
    if (mode === 'redis-down') throw new StoreUnavailableError('redis down');
    return markUsed(fp, until);
  };
  return store;
}

beforeAll(async () => {
  fixtures = await createFixtures();
  receiver = await startOtlpHttpReceiver();
  const { privateKey } = generateKeyPairSync('ed25519');
  auditPem = privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();
  writeFileSync(join(fixtures.dir, 'audit.pem'), auditPem);
  const store = storeWithFaults();
  const server = await startServer(authzConfig(fixtures, {
    routes: [...DEFAULT_ROUTES, route('tenant', {
      pathPrefix: '/tenants/', conditions: [compileCondition('own-tenant', "request.path.startsWith('/tenants/' + token.claims.tenant + '/')")],
    })],
    telemetry: { tracing: true, otlpMetrics: true, endpoint: receiver.endpoint },
    audit: {
      output: { kind: 'file', path: join(fixtures.dir, 'audit.jsonl') }, allows: 'all', allowSampleRate: 1,
      signingKeyFile: join(fixtures.dir, 'audit.pem'), checkpointRecords: 10, checkpointIntervalMs: 1000, flushIntervalMs: 10,
    },
  }), store, createLogger((line) => logLines.push(line)));

  const impostor = await createSigningKey('ES256', fixtures.key.kid);
  const es384 = await createSigningKey('ES384');
  keys.push(fixtures.key, impostor, es384);
  const now = Math.floor(Date.now() / 1000);
  const token = async (overrides: Parameters<Fixtures['token']>[0] = {}, key?: SigningKey) => {
    const t = await fixtures.token(overrides, key);
    tokens.push(t);
    return t;
  };
  const asCheckout = { principal: CHECKOUT, certificatePem: fixtures.checkout.certPem };
  const check = async (input: Partial<CheckInput>, as: Mode = 'ok') => {
    mode = as;
    const out = await server.envoy.check({ path: '/orders/42', ...asCheckout, ...input } as CheckInput);
    mode = 'ok';
    checks++;
    codesSeen.add(out.allowed ? 'allow' : out.body!.code!);
    return out;
  };
  const bearer = (t: string) => ({ authorization: `Bearer ${t}` });

  try {
    const good = await token({ jti: 'secret-scan-1' });
    await check({ headers: bearer(good) });
    await check({ method: 'POST', path: '/payments', headers: bearer(good) });
    await check({ method: 'POST', path: '/payments', headers: bearer(good) });
    await check({});
    await check({ headers: { authorization: `Bearer ${good},Bearer ${good}` } });
    await check({ headerMap: [['authorization', `Bearer ${good}`], ['authorization', `Bearer ${good}`]] });
    await check({ path: `/orders/42?access_token=${good}`, headers: bearer(good) });
    await check({ path: `/orders/42?access_token=${good}` });
    await check({ headers: { authorization: `Basic ${good}` } });
    await check({ headers: { ...bearer(good), 'x-request-id': good, traceparent: good } });
    await check({ headers: bearer(`${good}x`) });
    await check({ headers: bearer(await token({ claims: { exp: '9999999999' } })) });
    await check({ headers: bearer(await token({}, impostor)) });
    await check({ headers: bearer(await token({ iss: 'https://evil.example' })) });
    await check({ headers: bearer(await token({ header: { kid: 'no-such-key' } })) });
    await check({ headers: bearer(await token({}, es384)) });
    await check({ headers: bearer(await token({ header: { typ: 'JWT' } })) });
    await check({ headers: bearer(await token({ iat: now - 400, ttl: 300 })) });
    await check({ headers: bearer(await token({ claims: { nbf: now + 120 } })) });
    await check({ headers: bearer(await token({ ttl: 3600 })) });
    await check({ headers: bearer(await token({ aud: 'spiffe://test.local/ns/shop/sa/payments' })) });
    await check({ headers: bearer(await token({ certThumbprint: undefined })) });
    await check({ headers: bearer(await token()), certificatePem: fixtures.stranger.certPem });
    const revoked = await token({ jti: 'revoked-1' });
    await store.revoke({ revocation: { kind: 'jti', fingerprint: fingerprint(ISSUER, 'revoked-1') }, expiresAtMs: Date.now() + 60_000 });
    await check({ headers: bearer(revoked) });
    await check({ headers: bearer(await token({ scope: 'orders:write' })) });
    await check({
      method: 'POST', path: '/payments', headers: bearer(await token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint })),
      principal: STRANGER, certificatePem: fixtures.stranger.certPem,
    });
    await check({ path: '/admin', headers: bearer(await token()) });
    const conditionFailed = await check({ path: '/tenants/acme/orders', headers: bearer(await token({ claims: { tenant: TENANT } })) });
    conditionBodies.push(JSON.stringify(conditionFailed.raw));
    await check({ headers: bearer(await token()) }, 'stale');
    await check({ method: 'POST', path: '/payments', headers: bearer(await token()) }, 'redis-down');
    await check({ headers: bearer(await token()) }, 'broken');
    await check({ path: '/healthz', headers: bearer(await token()) });
  } finally {
    metricsText = await (await fetch(`http://${server.authz.adminAddress}/metrics`)).text();
    await server.stop();
  }
  auditText = readFileSync(join(fixtures.dir, 'audit.jsonl'), 'utf8');
});
afterAll(async () => {
  await receiver.close();
  fixtures.cleanup();
});

/** Every piece of text that must never hold a token: whole, any of its segments, or any key. */
async function forbidden(): Promise<string[]> {
  const pieces = tokens.flatMap((t) => [t, ...t.split('.').filter((s) => s.length >= 16)]);
  for (const key of keys) {
    const jwk = await exportJWK(key.privateKey);
    pieces.push(jwk.d!, jwk.x!, jwk.y!);
  }
  pieces.push(...auditPem.split('\n').filter((l) => l.length > 0 && !l.startsWith('-----')));
  pieces.push(TENANT);
  return [...new Set(pieces)];
}

describe('no token, signature or key material leaves hopguard', () => {
  it('went through every deny path', () => {
    // DPoP proofs are exercised by their own suite, the outbound check by the egress suites, the message check by the messages suites.
    const codes = Object.keys(DENY_CODES).filter((code) => !code.startsWith('dpop')
      && !OUTBOUND_DENY_CODES.includes(code as DenyCode) && !MESSAGE_DENY_CODES.includes(code as DenyCode));
    expect([...codesSeen].sort()).toEqual([...codes, 'allow'].sort());
  });

  it('saw what it scans: a span, an audit record and the metrics of every check, and a log line', () => {
    const spans = receiver.spans.filter((s) => s.name === 'hopguard.check');
    expect(spans).toHaveLength(checks);
    expect(auditText.split('\n').filter((l) => l.includes('"event":"validation"'))).toHaveLength(checks);
    expect(receiver.points.filter((p) => p.metric === 'hopguard.decisions').reduce((n, p) => n + p.value, 0)).toBe(checks);
    expect(logLines.map((l) => JSON.parse(l).event)).toContain('check_failed');
    // The fingerprint is what names a token: it is there.
    expect(JSON.stringify(spans)).toContain(fingerprint(ISSUER, 'secret-scan-1'));
    expect(auditText).toContain(fingerprint(ISSUER, 'secret-scan-1'));
  });

  it.each([
    ['span names and attributes', () => JSON.stringify(receiver.spans)],
    ['OTLP metric points and labels', () => JSON.stringify(receiver.points)],
    ['Prometheus /metrics', () => metricsText],
    ['audit records', () => auditText],
    ['log lines', () => logLines.join('\n')],
    ['the condition_failed response', () => conditionBodies.join('\n')],
  ])('in %s', async (_where, text) => {
    const corpus = text();
    expect(corpus.length).toBeGreaterThan(0);
    for (const piece of await forbidden()) expect(corpus.includes(piece), `found ${piece.slice(0, 12)}…`).toBe(false);
  });

  it('names the failed condition in the span, the metric and the audit record', () => {
    const span = receiver.spans.find((s) => s.attributes['hopguard.deny_code'] === 'condition_failed');
    expect(span?.attributes).toMatchObject({ 'hopguard.condition': 'own-tenant', 'hopguard.route': 'tenant' });
    expect(metricsText).toMatch(/hopguard_condition_failures_total\{[^}]*condition="own-tenant"[^}]*\} 1/);
    const record = auditText.trimEnd().split('\n').map((l) => JSON.parse(l)).find((r) => r.code === 'condition_failed');
    expect(record).toMatchObject({ decision: 'deny', route: 'tenant', condition: 'own-tenant' });
    // The body (a JSON string inside the response) names it.
    expect(conditionBodies[0]).toContain('\\"condition\\":\\"own-tenant\\"');
  });

  it('audits the identity of a verified token by fingerprint, and nothing of an unverified one', () => {
    const records = auditText.trimEnd().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'validation');
    const expired = records.find((r) => r.code === 'token_expired');
    expect(expired).toMatchObject({ decision: 'deny', audience: AUDIENCE, route: 'read-orders', caller: CHECKOUT });
    expect(expired).not.toHaveProperty('subject');
    expect(expired).not.toHaveProperty('token_fingerprint');
    const allowed = records.find((r) => r.decision === 'allow' && r.route === 'read-orders');
    expect(allowed).toMatchObject({ issuer: ISSUER, subject: CHECKOUT, client: CHECKOUT, token_fingerprint: fingerprint(ISSUER, 'secret-scan-1') });
  });
});
