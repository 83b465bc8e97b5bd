import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyAuditLog } from '../src/audit/audit-verify.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { silentLogger } from '../src/telemetry/log.js';
import { issuerRequest } from './support/issuer-client.js';
import { startOtlpHttpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
} as const;
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';

let mesh: TrustDomain<keyof typeof ID>;
let receiver: OtlpReceiver;
let issuer: RunningIssuer;
let auditPath: string;
let publicKey: ReturnType<typeof generateKeyPairSync>['publicKey'];
const tokens: string[] = [];

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-audit', ID);
  receiver = await startOtlpHttpReceiver();
  const keys = generateKeyPairSync('ed25519');
  publicKey = keys.publicKey;
  writeFileSync(path.join(mesh.dir, 'audit.pem'), keys.privateKey.export({ type: 'pkcs8', format: 'pem' }));
  auditPath = path.join(mesh.dir, 'issuer-audit.jsonl');
  const server = issueCert(mesh.ca, mesh.dir, { name: 'server', ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: https://sts.test.local
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: keys }
telemetry: { tracing: true, endpoint: ${receiver.endpoint}, protocol: http/protobuf }
audit: { output: ${auditPath}, signing_key_file: audit.pem, flush_interval: 20ms }
clients:
  - { id: ${ID.frontend}, grants: [client_credentials], audiences: [${ID.orders}], scopes: [orders:read] }
  - { id: ${ID.orders}, grants: [token_exchange], audiences: [spiffe://test.local/ns/shop/sa/payments], scopes: [orders:read] }
`, { baseDir: mesh.dir }), { log: silentLogger });
}, 30_000);

afterAll(async () => {
  await receiver?.close();
  mesh?.cleanup();
});

const post = (who: keyof typeof ID, endpoint: string, form: Record<string, string>) => issuerRequest(issuer.url, endpoint, {
  caPem: mesh.ca.certPem, client: mesh.workloads[who], form, headers: { traceparent: `00-${TRACE}-00f067aa0ba902b7-01` },
});

describe('the issuer\'s events', () => {
  it('are audited, allowed and refused, in a log that verifies, and traced under the caller\'s trace', async () => {
    const issued = await post('frontend', '/token', { grant_type: 'client_credentials', audience: ID.orders });
    expect(issued.status).toBe(200);
    tokens.push(issued.body.access_token);
    const exchanged = await post('orders', '/token', {
      grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange', subject_token: issued.body.access_token,
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token', audience: 'spiffe://test.local/ns/shop/sa/payments',
    });
    expect(exchanged.status).toBe(200);
    tokens.push(exchanged.body.access_token);
    expect((await post('frontend', '/token', { grant_type: 'client_credentials', audience: 'spiffe://elsewhere' })).body.error).toBe('invalid_target');
    expect((await post('frontend', '/revoke', { token: issued.body.access_token })).status).toBe(200);
    await issuer.stop();

    const records = readFileSync(auditPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => ['issuance', 'exchange', 'refresh', 'revocation'].includes(r.event));
    expect(records.map((r) => [r.event, r.decision, r.code])).toEqual([
      ['issuance', 'allow', undefined], ['exchange', 'allow', undefined], ['issuance', 'deny', 'invalid_target'], ['revocation', 'allow', undefined],
    ]);
    expect(records[1]).toMatchObject({ client: ID.orders, caller: ID.orders, subject: ID.frontend, actors: [ID.orders], trace_id: TRACE });
    expect(records[3]).toMatchObject({ revoked: 'jti', caller: ID.frontend });
    const report = await verifyAuditLog(auditPath, [publicKey]);
    expect(report.findings).toEqual([]);
    expect(report.closed).toBe(true);

    const spans = receiver.spans.filter((s) => s.name.startsWith('hopguard.issuer.'));
    expect(spans.map((s) => s.name).sort()).toEqual(['hopguard.issuer.revoke', 'hopguard.issuer.token', 'hopguard.issuer.token', 'hopguard.issuer.token']);
    for (const span of spans) {
      expect(span.traceId).toBe(TRACE);
      expect(span.parentSpanId).toBe('00f067aa0ba902b7');
    }
    expect(spans.find((s) => s.attributes['hopguard.deny_code'] === 'invalid_target')).toBeDefined();
    const issuance = spans.find((s) => s.attributes['hopguard.grant'] === 'client_credentials')!;
    expect(issuance.attributes['hopguard.caller']).toBe(ID.frontend);
    expect(records[0].token_fingerprint).toBe(issuance.attributes['hopguard.token.fingerprint']);

    // Identifiers only: no token, no signature, anywhere.
    const everything = readFileSync(auditPath, 'utf8') + JSON.stringify(spans);
    for (const token of tokens) for (const part of token.split('.')) expect(everything).not.toContain(part);
  });
});
