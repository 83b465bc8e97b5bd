import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAuthz, type RunningAuthz } from '../src/authz/authz-service.js';
import { EnvoyClient, checkRequestMessage, type CheckInput, type CheckOutput } from '../src/authz/envoy-client.js';
import { authorizationService } from '../src/authz/envoy-protos.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { createLogger, silentLogger, type Logger } from '../src/telemetry/log.js';
import { DENY_CODES, type DenyCode } from '../src/vocabulary/deny-codes.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';
import { startOtlpHttpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { ISS, MESH_ID, type MeshWorkload } from './support/mesh-issuer.js';
import { spawnCli } from './support/process.js';

// Spans are exported 100 ms after they end, so a test sees them while the servers run.
process.env.OTEL_BSP_SCHEDULE_DELAY = '100';

/**
 * Egress with real processes' parts: an issuer over TLS, sidecars over gRPC with the official
 * protos, frontend → orders → payments with handles only. orders' application never sees a token.
 */

const ID = MESH_ID;
const PAYMENTS_HOST = 'payments.shop.svc.cluster.local';
const HANDLE = 'x-hopguard-handle';

let mesh: TrustDomain<MeshWorkload>;
let issuer: RunningIssuer;
let auditPath: string;
let signingKey: string;
let serverCert: { certPath: string; keyPath: string };
let receiver: OtlpReceiver;
type Sidecar = { authz: RunningAuthz; inbound: EnvoyClient; outbound?: EnvoyClient };
let orders: Sidecar;
/** Another sidecar of orders' (its own handle key), with other_hosts: deny and an issuer that is not there. */
let stray: Sidecar;
let payments: Sidecar;
/** orders again, with tracing, /metrics and its own audit log, and its log lines kept. */
let traced: Sidecar;
let tracedAudit: string;
const tracedLog: string[] = [];

const issuerYaml = (serverCert: { certPath: string; keyPath: string }, signingKey: string, { listen = '127.0.0.1:0', tokenTtl = '5m' } = {}) => `
listen: ${listen}
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')}, publish_ahead: 2s }
token_ttl: ${tokenTtl}
${tracedTelemetry('issuer')}
rate_limit: { per_second: 1000, burst: 1000 }
audit: { output: ${auditPath}, allows: all, signing_key_file: ${signingKey}, flush_interval: 50ms }
clients:
  - id: ${ID.frontend}
    grants: [client_credentials]
    audiences: [${ID.orders}]
    scopes: [orders:read, payments:write]
  - id: ${ID.orders}
    grants: [client_credentials, token_exchange]
    audiences: [${ID.payments}]
    scopes: [payments:write]
`;

/** Spans to the file's OTLP receiver, as `service`. */
const tracedTelemetry = (service: string) => `telemetry: { tracing: true, service_name: ${service}, endpoint: ${receiver.endpoint}, protocol: http/protobuf }`;

const sidecarYaml = (audience: string, routes: string, extra = '', admin = 'off') => `
listen: 127.0.0.1:0
admin: ${admin}
audience: ${audience}
issuers:
  - issuer: ${ISS}
    jwks_uri: ${issuer.url}/.well-known/jwks.json
    jwks_ca_file: ${mesh.ca.certPath}
    algorithms: [ES256]
routes:
${routes}
${extra}`;

const egressYaml = (tokenEndpoint: string, otherHosts: 'passthrough' | 'deny', pair: { certPath: string; keyPath: string } = mesh.workloads.orders) => `
issuer_client:
  token_endpoint: ${tokenEndpoint}
  ca_file: ${mesh.ca.certPath}
  cert_file: ${pair.certPath}
  key_file: ${pair.keyPath}
  timeout: 1s
egress:
  listen: 127.0.0.1:0
  handle_baggage: true
  other_hosts: ${otherHosts}
  destinations:
    - host: ${PAYMENTS_HOST}
      audience: ${ID.payments}
      scopes: [payments:write]
    - host: "*.ledger.svc"
      audience: ${ID.ledger}
    - host: once.payments.svc
      audience: ${ID.payments}
      per_request: true
    - host: own.payments.svc
      audience: ${ID.payments}
      without_handle: client_credentials
`;

const ORDERS_ROUTES = '  - { name: read-orders, methods: [GET], path_prefix: /orders/, scopes: [orders:read] }';

async function startSidecar(yaml: string, log: Logger = silentLogger): Promise<Sidecar> {
  const authz = await startAuthz(parseAuthzConfig(yaml, { baseDir: mesh.dir }), { log });
  return {
    authz,
    inbound: new EnvoyClient(authz.grpcAddress),
    ...(authz.egressAddress && { outbound: new EnvoyClient(authz.egressAddress) }),
  };
}

/** An exchange is audited once the issuer has answered it; the log is flushed every 50 ms. */
function exchangesAudited(): number {
  const text = readFileSync(auditPath, 'utf8');
  return text.split('\n').filter((line) => line.includes('"event":"exchange"') && line.includes('"decision":"allow"')).length;
}

async function settledExchanges(): Promise<number> {
  await new Promise((r) => setTimeout(r, 300));
  return exchangesAudited();
}

const frontendToken = async () => {
  const reply = await issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: mesh.workloads.frontend,
    form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' },
  });
  expect(reply.status).toBe(200);
  return reply.body.access_token as string;
};

/** frontend calls orders: what orders' application receives (its handle) from orders' inbound allow. */
async function handleAt(sidecar: Sidecar, token: string): Promise<string> {
  const out = await sidecar.inbound.check({
    path: '/orders/1', headers: { authorization: `Bearer ${token}` },
    principal: ID.frontend, certificatePem: mesh.workloads.frontend.certPem,
  });
  expect(out.allowed).toBe(true);
  return out.headers[HANDLE]!;
}

/** orders' application calls out: Envoy's outbound listener asks the egress check. */
const outbound = (sidecar: Sidecar, input: Partial<CheckInput> & { headers?: Record<string, string> }) =>
  sidecar.outbound!.check({ method: 'POST', path: '/payments', host: `${PAYMENTS_HOST}:8443`, ...input });

function expectDenied(out: CheckOutput, code: DenyCode, error: string = DENY_CODES[code].bodyError) {
  expect(out.allowed).toBe(false);
  expect(out.body).toEqual({ error, code, trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) });
  expect(out.httpStatus).toBe(DENY_CODES[code].http);
  expect(out.headers['content-type']).toBe('application/json');
}

beforeAll(async () => {
  receiver = await startOtlpHttpReceiver();
  mesh = await createTrustDomain('egress', ID);
  auditPath = path.join(mesh.dir, 'issuer-audit.jsonl');
  signingKey = path.join(mesh.dir, 'audit.key');
  writeFileSync(signingKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(issuerYaml(serverCert, signingKey), { baseDir: mesh.dir }), { log: silentLogger });
  orders = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml(`${issuer.url}/token`, 'passthrough')));
  stray = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml('https://127.0.0.1:1/token', 'deny')));
  tracedAudit = path.join(mesh.dir, 'traced-audit.jsonl');
  traced = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, `${egressYaml(`${issuer.url}/token`, 'deny')}
${tracedTelemetry('orders-hopguard')}
audit: { output: ${tracedAudit}, allows: none, signing_key_file: ${signingKey}, flush_interval: 50ms }
`, '127.0.0.1:0'), createLogger((line) => tracedLog.push(line)));
  payments = await startSidecar(sidecarYaml(ID.payments, `  - { name: pay, methods: [POST], path: /payments, scopes: [payments:write], callers: [${ID.orders}] }`));
}, 60_000);

afterAll(async () => {
  for (const sidecar of [orders, stray, traced, payments]) {
    sidecar?.inbound.close();
    sidecar?.outbound?.close();
    await sidecar?.authz.stop();
  }
  await issuer?.stop();
  mesh?.cleanup();
  await receiver?.close();
});

describe('egress: frontend → orders → payments with handles only', () => {
  it('exchanges orders\' handle for a token for payments, bound to orders, that payments\' sidecar allows', async () => {
    const inbound = await frontendToken();
    const handle = await handleAt(orders, inbound);
    const out = await outbound(orders, { headers: { [HANDLE]: handle, authorization: 'Bearer set-by-the-application' } });
    expect(out.allowed).toBe(true);
    // Set with overwrite (the application's own authorization is replaced), never also removed.
    const set = out.raw.ok_response.headers.find((h: any) => h.header.key === 'authorization');
    expect(set.append_action).toBe('OVERWRITE_IF_EXISTS_OR_ADD');
    expect(out.headersToRemove).toEqual([HANDLE]);
    const token = out.headers.authorization!.replace(/^Bearer /, '');
    const claims = claimsOf(token);
    expect(claims).toMatchObject({
      aud: ID.payments, sub: ID.frontend, client_id: ID.orders, scope: 'payments:write',
      act: { sub: ID.orders }, cnf: { 'x5t#S256': mesh.workloads.orders.thumbprint },
    });
    expect(claims.exp).toBeLessThanOrEqual(claimsOf(inbound).exp);

    const pay = await payments.inbound.check({
      method: 'POST', path: '/payments', headers: { authorization: `Bearer ${token}` },
      principal: ID.orders, certificatePem: mesh.workloads.orders.certPem,
    });
    expect(pay.allowed).toBe(true);
  });

  it('makes one exchange for two outbound calls with one handle', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const before = await settledExchanges();
    const first = await outbound(orders, { headers: { [HANDLE]: handle } });
    const second = await outbound(orders, { headers: { [HANDLE]: handle } });
    expect(first.allowed && second.allowed).toBe(true);
    expect(second.headers.authorization).toBe(first.headers.authorization);
    expect(await settledExchanges()).toBe(before + 1);
  });

  it('makes one exchange for concurrent outbound calls with one handle and destination', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const before = await settledExchanges();
    const outs = await Promise.all(Array.from({ length: 8 }, () => outbound(orders, { headers: { [HANDLE]: handle } })));
    expect(outs.every((out) => out.allowed)).toBe(true);
    expect(new Set(outs.map((out) => out.headers.authorization)).size).toBe(1);
    expect(await settledExchanges()).toBe(before + 1);
  });

  it('makes one exchange per call for a per_request destination', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const before = await settledExchanges();
    const first = await outbound(orders, { host: 'once.payments.svc', headers: { [HANDLE]: handle } });
    const second = await outbound(orders, { host: 'once.payments.svc', headers: { [HANDLE]: handle } });
    expect(first.allowed && second.allowed).toBe(true);
    expect(second.headers.authorization).not.toBe(first.headers.authorization);
    expect(await settledExchanges()).toBe(before + 2);
  });

  it('gives this workload\'s own token where the destination says without_handle: client_credentials', async () => {
    const out = await outbound(orders, { host: 'own.payments.svc', headers: {} });
    expect(out.allowed).toBe(true);
    const claims = claimsOf(out.headers.authorization!.replace(/^Bearer /, ''));
    expect(claims).toMatchObject({ aud: ID.payments, sub: ID.orders, client_id: ID.orders, cnf: { 'x5t#S256': mesh.workloads.orders.thumbprint } });
    expect(claims.act).toBeUndefined();
  });

  it('exchanges again, bound to the new certificate, once the workload certificate files are rotated', async () => {
    const files = { certPath: path.join(mesh.dir, 'rotating.pem'), keyPath: path.join(mesh.dir, 'rotating-key.pem') };
    writeFileSync(files.certPath, mesh.workloads.orders.certPem);
    writeFileSync(files.keyPath, mesh.workloads.orders.keyPem);
    const rotating = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml(`${issuer.url}/token`, 'deny', files)));
    try {
      const handle = await handleAt(rotating, await frontendToken());
      const boundTo = async () => claimsOf((await outbound(rotating, { headers: { [HANDLE]: handle } })).headers.authorization!.replace(/^Bearer /, '')).cnf['x5t#S256'];
      expect(await boundTo()).toBe(mesh.workloads.orders.thumbprint);
      const renewed = issueCert(mesh.ca, mesh.dir, { name: 'orders-renewed', uriSan: ID.orders, clientAuth: true });
      writeFileSync(files.keyPath, renewed.keyPem);
      writeFileSync(files.certPath, renewed.certPem);
      // The files are polled every second; a wide margin for load.
      const deadline = Date.now() + 10_000;
      let seen = await boundTo();
      while (seen !== renewed.thumbprint && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 200));
        seen = await boundTo();
      }
      expect(seen).toBe(renewed.thumbprint);
    } finally {
      rotating.inbound.close();
      rotating.outbound?.close();
      await rotating.authz.stop();
    }
  }, 20_000);

  it('removes the handle for a host no destination names and leaves the application\'s authorization alone (passthrough)', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const out = await outbound(orders, { host: 'example.com', headers: { [HANDLE]: handle, authorization: 'Bearer the-applications-own' } });
    expect(out.allowed).toBe(true);
    expect(out.headers.authorization).toBeUndefined();
    expect(out.headersToRemove).toEqual([HANDLE]);
  });

  it('reads the handle from baggage when the header is absent, and lets no handle member leave the pod', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const out = await outbound(orders, { headers: { baggage: `userId=alice, hopguard-handle=${handle}` } });
    expect(out.allowed).toBe(true);
    expect(claimsOf(out.headers.authorization!.replace(/^Bearer /, '')).aud).toBe(ID.payments);
    expect(out.headers.baggage).toBe('userId=alice');
    const passthrough = await outbound(orders, { host: 'example.com', headers: { baggage: `hopguard-handle=${handle}` } });
    expect(passthrough.allowed).toBe(true);
    expect(passthrough.headersToRemove).toEqual([HANDLE, 'baggage']);
    expectDenied(await outbound(orders, { headers: { baggage: `hopguard-handle=${handle},hopguard-handle=${handle}` } }), 'malformed_request');
    expectDenied(await outbound(orders, { headers: { baggage: 'hopguard-handle=hgh1.forged' } }), 'handle_invalid');
  });

  it('answers a cached token\'s calls alike, and still takes a handle member out of baggage on a later one', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const [first, second, third] = [await outbound(orders, { headers: { [HANDLE]: handle } }), await outbound(orders, { headers: { [HANDLE]: handle } }), await outbound(orders, { headers: { [HANDLE]: handle } })];
    for (const out of [first, second, third]) {
      expect(out.allowed).toBe(true);
      expect(out.headersToRemove).toEqual([HANDLE]);
      expect(out.headers.baggage).toBeUndefined();
    }
    expect(second.headers.authorization).toBe(first.headers.authorization);
    expect(third.headers.authorization).toBe(first.headers.authorization);
    const withBaggage = await outbound(orders, { headers: { [HANDLE]: handle, baggage: `userId=alice,hopguard-handle=${handle}` } });
    expect(withBaggage.headers.authorization).toBe(first.headers.authorization);
    expect(withBaggage.headers.baggage).toBe('userId=alice');
    const onlyHandle = await outbound(orders, { headers: { [HANDLE]: handle, baggage: `hopguard-handle=${handle}` } });
    expect(onlyHandle.headersToRemove).toEqual([HANDLE, 'baggage']);
  });

  it('denies a handle from another sidecar, a tampered one, none, and two', async () => {
    const handle = await handleAt(orders, await frontendToken());
    expectDenied(await outbound(stray, { headers: { [HANDLE]: handle } }), 'handle_invalid');
    const tampered = handle.slice(0, -3) + (handle.endsWith('AAA') ? 'BBB' : 'AAA');
    expectDenied(await outbound(orders, { headers: { [HANDLE]: tampered } }), 'handle_invalid');
    const missing = await outbound(orders, { headers: {} });
    expectDenied(missing, 'handle_missing');
    expect(missing.headers['www-authenticate']).toBe('Bearer realm="hopguard"');
    expectDenied(await outbound(orders, { headerMap: [[HANDLE, handle], [HANDLE, handle]] }), 'malformed_request');
  });

  it('answers no_destination under other_hosts: deny, and issuer_unavailable when the issuer is not there', async () => {
    expectDenied(await outbound(stray, { host: 'example.com', headers: {} }), 'no_destination');
    const handle = await handleAt(stray, await frontendToken());
    const started = performance.now();
    expectDenied(await outbound(stray, { headers: { [HANDLE]: handle } }), 'issuer_unavailable');
    // Within issuer_client.timeout (1s), with a wide margin for load.
    expect(performance.now() - started).toBeLessThan(3_000);
  });

  it('answers exchange_refused with the issuer\'s OAuth error for an audience orders may not ask for', async () => {
    const handle = await handleAt(orders, await frontendToken());
    expectDenied(await outbound(orders, { host: 'books.ledger.svc', headers: { [HANDLE]: handle } }), 'exchange_refused', 'invalid_target');
  });

  it('is a check of its own: the inbound listener never hands out a token', async () => {
    const handle = await handleAt(orders, await frontendToken());
    const out = await orders.inbound.check({ method: 'POST', path: '/payments', host: PAYMENTS_HOST, headers: { [HANDLE]: handle } });
    expect(out.allowed).toBe(false);
    expect(out.headers.authorization).toBeUndefined();
    expect(orders.authz.egressAddress).not.toBe(orders.authz.grpcAddress);
  });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const randomId = (bytes: number) => randomBytes(bytes).toString('hex');
const bearerOf = (out: CheckOutput) => out.headers.authorization!.replace(/^Bearer /, '');

/** The spans of `traceId` once `done` says enough have arrived (exported every 100 ms), or after 10 s. */
async function spansOf(traceId: string, done: (spans: ReceivedSpan[]) => boolean): Promise<ReceivedSpan[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const spans = receiver.spans.filter((span) => span.traceId === traceId);
    if (done(spans) || Date.now() > deadline) return spans;
    await sleep(100);
  }
}

const scrape = async () => (await fetch(`http://${traced.authz.adminAddress}/metrics`)).text();

/** A counter of the traced sidecar's /metrics, the series with exactly these labels; 0 when it has none. */
async function counter(name: string, labels: Record<string, string>): Promise<number> {
  const wanted = JSON.stringify(Object.entries(labels).sort());
  for (const line of (await scrape()).split('\n')) {
    const sample = /^(\w+)\{(.*)\} (\S+)$/.exec(line);
    if (sample?.[1] !== name) continue;
    const found = [...sample[2]!.matchAll(/(\w+)="([^"]*)"/g)].map(([, key, value]) => [key, value]);
    if (JSON.stringify(found.sort()) === wanted) return Number(sample[3]);
  }
  return 0;
}

/** The traced sidecar's egress audit records of `traceId`, once `count` are written (flushed every 50 ms). */
async function egressAudit(traceId: string, count: number): Promise<Record<string, unknown>[]> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const records = readFileSync(tracedAudit, 'utf8').split('\n').filter((line) => line !== '').map((line) => JSON.parse(line))
      .filter((record) => record.event === 'egress' && record.trace_id === traceId);
    if (records.length >= count || Date.now() > deadline) return records;
    await sleep(50);
  }
}

describe('egress telemetry: the outbound check\'s span, metrics and audit', () => {
  it('traces, counts and audits each outbound check in the request\'s trace, with no token or handle in any of it', async () => {
    const inbound = await frontendToken();
    const handle = await handleAt(traced, inbound);
    const traceId = randomId(16);
    const envoySpan = randomId(8);
    const series = {
      allowed: ['hopguard_egress_decisions_total', { decision: 'allow', code: 'allowed', audience: ID.payments }],
      refused: ['hopguard_egress_decisions_total', { decision: 'deny', code: 'exchange_refused', audience: ID.ledger }],
      nowhere: ['hopguard_egress_decisions_total', { decision: 'deny', code: 'no_destination', audience: '' }],
      exchangedOk: ['hopguard_egress_token_requests_total', { grant: 'token_exchange', outcome: 'ok' }],
      exchangedRefused: ['hopguard_egress_token_requests_total', { grant: 'token_exchange', outcome: 'refused' }],
      hit: ['hopguard_egress_token_cache_lookups_total', { result: 'hit' }],
      miss: ['hopguard_egress_token_cache_lookups_total', { result: 'miss' }],
    } as const;
    const counts = async () => Object.fromEntries(await Promise.all(Object.entries(series).map(async ([key, [name, labels]]) => [key, await counter(name, labels)])));
    const before = await counts();

    // Envoy's ext_authz client span is in the gRPC metadata, as on the inbound listener.
    const call = (host: string) => outbound(traced, { host, headers: { [HANDLE]: handle }, traceparent: `00-${traceId}-${envoySpan}-01` });
    const first = await call(`${PAYMENTS_HOST}:8443`);
    const second = await call(PAYMENTS_HOST);
    expect(first.allowed && second.allowed).toBe(true);
    expectDenied(await call('books.ledger.svc'), 'exchange_refused', 'invalid_target');
    expectDenied(await call('example.com'), 'no_destination');

    const spans = await spansOf(traceId, (all) => all.filter((span) => span.name === 'hopguard.egress').length === 4
      && all.filter((span) => span.name === 'hopguard.issuer.token').length === 2);
    const egress = spans.filter((span) => span.name === 'hopguard.egress');
    expect(egress).toHaveLength(4);
    for (const span of egress) {
      expect(span).toMatchObject({ service: 'orders-hopguard', kind: 2, parentSpanId: envoySpan });
    }
    const byAttributes = (attributes: Record<string, unknown>) => {
      const found = egress.filter((span) => Object.entries(attributes).every(([key, value]) => span.attributes[key] === value));
      expect(found, JSON.stringify(attributes)).toHaveLength(1);
      return found[0]!;
    };
    const payments = { 'hopguard.decision': 'allow', 'hopguard.destination': PAYMENTS_HOST, 'hopguard.audience': ID.payments, 'server.address': PAYMENTS_HOST };
    const miss = byAttributes({ ...payments, 'hopguard.cache_hit': false });
    byAttributes({ ...payments, 'hopguard.cache_hit': true });
    const refused = byAttributes({
      'hopguard.decision': 'deny', 'hopguard.deny_code': 'exchange_refused', 'hopguard.destination': '*.ledger.svc',
      'hopguard.audience': ID.ledger, 'server.address': 'books.ledger.svc', 'hopguard.cache_hit': false,
    });
    const nowhere = byAttributes({ 'hopguard.decision': 'deny', 'hopguard.deny_code': 'no_destination', 'server.address': 'example.com' });
    expect(nowhere.attributes['hopguard.destination']).toBeUndefined();
    // The issuer's span of each exchange is a child of the outbound check that asked for it.
    const issued = spans.filter((span) => span.name === 'hopguard.issuer.token');
    expect(issued.map((span) => span.parentSpanId).sort()).toEqual([miss.spanId, refused.spanId].sort());

    const after = await counts();
    expect(Object.fromEntries(Object.keys(series).map((key) => [key, after[key] - before[key]]))).toEqual({
      allowed: 2, refused: 1, nowhere: 1, exchangedOk: 1, exchangedRefused: 1, hit: 1, miss: 2,
    });

    // Denials, and the allow whose token this check obtained; not the cache hit.
    const records = await egressAudit(traceId, 3);
    const summary = records.map(({ decision, code, destination, audience }) => ({ decision, code, destination, audience }));
    expect(summary).toEqual(expect.arrayContaining([
      { decision: 'allow', code: undefined, destination: PAYMENTS_HOST, audience: ID.payments },
      { decision: 'deny', code: 'exchange_refused', destination: '*.ledger.svc', audience: ID.ledger },
      { decision: 'deny', code: 'no_destination', destination: undefined, audience: undefined },
    ]));
    expect(records).toHaveLength(3);

    const everything = [JSON.stringify(receiver.spans), readFileSync(tracedAudit, 'utf8'), tracedLog.join(''), await scrape()].join('\n');
    for (const secret of [inbound, handle, bearerOf(first)]) {
      // Any of its parts: a signature or a payload alone would be a leak too.
      for (const part of secret.split('.').filter((p) => p.length > 16)) expect(everything).not.toContain(part);
    }
  });
});

describe('egress while the issuer is down', () => {
  it('keeps handing out a cached token until it nears expiry, answers issuer_unavailable otherwise within the timeout, and recovers by itself', async () => {
    const port = new URL(issuer.url).port;
    let running = true;
    const stopIssuer = async () => {
      running = false;
      await issuer.stop();
    };
    const startIssuerWith = async (tokenTtl: string) => {
      issuer = await startIssuer(parseIssuerConfig(issuerYaml(serverCert, signingKey, { listen: `127.0.0.1:${port}`, tokenTtl }), { baseDir: mesh.dir }), { log: silentLogger });
      running = true;
    };
    // 12 s tokens: the cache hands one out until 5 s (its least margin) before its exp.
    await stopIssuer();
    await startIssuerWith('12s');
    try {
      const cachedHandle = await handleAt(traced, await frontendToken());
      const uncachedHandle = await handleAt(traced, await frontendToken());
      const first = await outbound(traced, { headers: { [HANDLE]: cachedHandle } });
      expect(first.allowed).toBe(true);
      const expMs = claimsOf(bearerOf(first)).exp * 1000;
      const unavailable = () => counter('hopguard_egress_token_requests_total', { grant: 'token_exchange', outcome: 'unavailable' });
      const unavailableBefore = await unavailable();
      await stopIssuer();
      const stoppedAt = Date.now();

      const started = performance.now();
      expectDenied(await outbound(traced, { headers: { [HANDLE]: uncachedHandle } }), 'issuer_unavailable');
      // Within issuer_client.timeout (1s), with a wide margin for load.
      expect(performance.now() - started).toBeLessThan(3_000);

      let lastAllowMs = 0;
      let denied: CheckOutput | undefined;
      while (denied === undefined && Date.now() < expMs + 2_000) {
        const out = await outbound(traced, { headers: { [HANDLE]: cachedHandle } });
        if (out.allowed) {
          expect(out.headers.authorization).toBe(first.headers.authorization);
          lastAllowMs = Date.now();
        } else {
          denied = out;
        }
        await sleep(200);
      }
      expect(denied, 'the cached token is handed out past its expiry').toBeDefined();
      expectDenied(denied!, 'issuer_unavailable');
      // exp is whole seconds, the cache's expiry the answer's expires_in: a second either way, and the poll.
      expect(lastAllowMs - stoppedAt).toBeGreaterThan(0);
      expect(lastAllowMs).toBeGreaterThan(expMs - 5_000 - 1_500);
      expect(await unavailable()).toBeGreaterThanOrEqual(unavailableBefore + 2);
    } finally {
      if (running) await stopIssuer();
      await startIssuerWith('5m');
    }
    // The same sidecar, not restarted: its next exchange reaches the issuer again.
    const recovered = await outbound(traced, { headers: { [HANDLE]: await handleAt(traced, await frontendToken()) } });
    expect(recovered.allowed).toBe(true);
    expect(claimsOf(bearerOf(recovered)).aud).toBe(ID.payments);
  }, 40_000);
});

/** A check on a connection of its own: grpc-js would otherwise share one between clients to one address. */
function checkOnNewConnection(address: string, input: CheckInput): Promise<{ code: number; headers: Record<string, string> }> {
  const Authorization = authorizationService();
  const client = new Authorization(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as grpc.Client & Record<string, any>;
  return new Promise((resolve, reject) => {
    client.Check(checkRequestMessage(input), (err: Error | null, raw: any) => {
      client.close();
      if (err) return reject(err);
      const headers: Record<string, string> = {};
      for (const h of raw.ok_response?.headers ?? []) headers[h.header.key] = h.header.value;
      resolve({ code: raw.status?.code ?? 0, headers });
    });
  });
}

describe('egress with workers: 2', () => {
  it('opens a handle at whichever worker the outbound check reaches: they share the primary\'s key', async () => {
    const file = path.join(mesh.dir, 'workers.yaml');
    writeFileSync(file, `${sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml(`${issuer.url}/token`, 'deny'))}workers: 2\n`);
    const proc = spawnCli(['authz', '--config', file]);
    try {
      const started = await proc.logEvent('authz_started');
      expect(started.workers).toBe(2);
      const inbound = await frontendToken();
      // New connections go to the workers in turn: handles made by both, opened by both.
      const handles: string[] = [];
      for (let i = 0; i < 4; i++) {
        const out = await checkOnNewConnection(started.grpc, {
          path: '/orders/1', headers: { authorization: `Bearer ${inbound}` }, principal: ID.frontend, certificatePem: mesh.workloads.frontend.certPem,
        });
        expect(out.code).toBe(0);
        handles.push(out.headers[HANDLE]!);
      }
      const [first, second] = [...new Set(handles)];
      expect(second).toBeDefined();
      // Each handle twice in a row: whatever the turn, each worker gets the other's handle once.
      for (const handle of [first!, first!, second!, second!]) {
        const out = await checkOnNewConnection(started.egress, { method: 'POST', path: '/payments', host: PAYMENTS_HOST, headers: { [HANDLE]: handle } });
        expect(out.code).toBe(0);
        expect(claimsOf(out.headers.authorization!.replace(/^Bearer /, '')).aud).toBe(ID.payments);
      }
      expect(proc.stderr()).not.toContain(handles[0]);
    } finally {
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
    }
  }, 30_000);
});
