import { generateKeyPairSync } from 'node:crypto';
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
import { silentLogger } from '../src/telemetry/log.js';
import { DENY_CODES, type DenyCode } from '../src/vocabulary/deny-codes.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';
import { ISS, MESH_ID, type MeshWorkload } from './support/mesh-issuer.js';
import { spawnCli } from './support/process.js';

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
type Sidecar = { authz: RunningAuthz; inbound: EnvoyClient; outbound?: EnvoyClient };
let orders: Sidecar;
/** Another sidecar of orders' (its own handle key), with other_hosts: deny and an issuer that is not there. */
let stray: Sidecar;
let payments: Sidecar;

const issuerYaml = (serverCert: { certPath: string; keyPath: string }, signingKey: string) => `
listen: 127.0.0.1:0
admin: off
issuer: ${ISS}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')}, publish_ahead: 2s }
token_ttl: 5m
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

const sidecarYaml = (audience: string, routes: string, extra = '') => `
listen: 127.0.0.1:0
admin: off
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

async function startSidecar(yaml: string): Promise<Sidecar> {
  const authz = await startAuthz(parseAuthzConfig(yaml, { baseDir: mesh.dir }), { log: silentLogger });
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
  mesh = await createTrustDomain('egress', ID);
  auditPath = path.join(mesh.dir, 'issuer-audit.jsonl');
  const signingKey = path.join(mesh.dir, 'audit.key');
  writeFileSync(signingKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(issuerYaml(serverCert, signingKey), { baseDir: mesh.dir }), { log: silentLogger });
  orders = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml(`${issuer.url}/token`, 'passthrough')));
  stray = await startSidecar(sidecarYaml(ID.orders, ORDERS_ROUTES, egressYaml('https://127.0.0.1:1/token', 'deny')));
  payments = await startSidecar(sidecarYaml(ID.payments, `  - { name: pay, methods: [POST], path: /payments, scopes: [payments:write], callers: [${ID.orders}] }`));
}, 60_000);

afterAll(async () => {
  for (const sidecar of [orders, stray, payments]) {
    sidecar?.inbound.close();
    sidecar?.outbound?.close();
    await sidecar?.authz.stop();
  }
  await issuer?.stop();
  mesh?.cleanup();
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
