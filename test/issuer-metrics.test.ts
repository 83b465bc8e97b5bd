import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { createKeyFile } from '../src/issuer/keyring.js';
import { silentLogger } from '../src/telemetry/log.js';
import { issuerRequest } from './support/issuer-client.js';

/**
 * Issue 16 #4: the issuer's /metrics on its admin listener counts what it did, by outcome:
 * issuance, exchange, refresh, revocation, refresh-token reuse, rate-limited requests, key rotations.
 */

const ISS = 'https://sts.metrics.test';
const ID = {
  frontend: 'spiffe://metrics.test/ns/shop/sa/frontend',
  orders: 'spiffe://metrics.test/ns/shop/sa/orders',
  payments: 'spiffe://metrics.test/ns/shop/sa/payments',
  busy: 'spiffe://metrics.test/ns/shop/sa/busy',
} as const;
const EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';

let mesh: TrustDomain<keyof typeof ID>;
let issuer: RunningIssuer;
let keysDir: string;

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-metrics', ID);
  const cert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  keysDir = path.join(mesh.dir, 'keys');
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuer: ${ISS}
tls: { cert: ${cert.certPath}, key: ${cert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${keysDir}, publish_ahead: 1s }
rate_limit: { per_second: 0.01, burst: 30 }
clients:
  - { id: ${ID.frontend}, grants: [client_credentials, refresh_token], audiences: [${ID.orders}], scopes: [payments:write] }
  - { id: ${ID.orders}, grants: [token_exchange], audiences: [${ID.payments}], scopes: [payments:write] }
  - { id: ${ID.busy}, grants: [client_credentials], audiences: [${ID.orders}] }
`, { baseDir: mesh.dir }), { log: silentLogger });
}, 60_000);

afterAll(async () => {
  await issuer?.stop();
  mesh?.cleanup();
});

const post = (as: keyof typeof ID, pathName: string, form: Record<string, string>) =>
  issuerRequest(issuer.url, pathName, { caPem: mesh.ca.certPem, client: mesh.workloads[as], form });
const scrape = async () => (await fetch(`http://${issuer.adminAddress}/metrics`)).text();
const count = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\d+)`, 'm').exec(text)?.[1] ?? 0);

describe('issuer /metrics', () => {
  it('counts issuance, exchange, refresh and revocation by outcome, and refresh-token reuse', async () => {
    const first = await post('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders, scope: 'payments:write' });
    expect(first.status).toBe(200);
    expect((await post('frontend', '/token', { grant_type: 'client_credentials', audience: ID.payments })).body.error).toBe('invalid_target');
    const exchanged = await post('orders', '/token', {
      grant_type: EXCHANGE, subject_token: first.body.access_token, subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: ID.payments, scope: 'payments:write',
    });
    expect(exchanged.status).toBe(200);
    const refreshed = await post('frontend', '/token', { grant_type: 'refresh_token', refresh_token: first.body.refresh_token });
    expect(refreshed.status).toBe(200);
    // The first refresh token again: reuse, its family is revoked.
    expect((await post('frontend', '/token', { grant_type: 'refresh_token', refresh_token: first.body.refresh_token })).body.error).toBe('invalid_grant');
    expect((await post('frontend', '/revoke', { token: refreshed.body.access_token })).status).toBe(200);

    const text = await scrape();
    expect(count(text, 'hopguard_issuer_tokens_total{event="issuance",outcome="ok"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_tokens_total{event="issuance",outcome="invalid_target"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_tokens_total{event="exchange",outcome="ok"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_tokens_total{event="refresh",outcome="ok"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_tokens_total{event="refresh",outcome="invalid_grant"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_refresh_token_reuse_total')).toBe(1);
    expect(count(text, 'hopguard_issuer_revocations_total{source="refresh_reuse",outcome="ok"}')).toBe(1);
    expect(count(text, 'hopguard_issuer_revocations_total{source="revoke",outcome="ok"}')).toBe(1);
  });

  it('counts requests refused by the rate limit', async () => {
    const answers = [];
    for (let i = 0; i < 32; i++) answers.push((await post('busy', '/token', { grant_type: 'client_credentials', audience: ID.orders })).status);
    const limited = answers.filter((s) => s === 429).length;
    expect(limited).toBeGreaterThanOrEqual(2);
    const text = await scrape();
    expect(count(text, 'hopguard_issuer_rate_limited_total')).toBe(limited);
    expect(count(text, 'hopguard_issuer_tokens_total{event="issuance",outcome="slow_down"}')).toBe(limited);
  });

  it('counts a key rotation once the new key signs', async () => {
    expect(count(await scrape(), 'hopguard_issuer_key_rotations_total')).toBe(0);
    await createKeyFile(keysDir, 'ES256', Date.now() + 1000);
    await expect.poll(async () => count(await scrape(), 'hopguard_issuer_key_rotations_total'), { timeout: 6000, interval: 200 }).toBe(1);
  });
});
