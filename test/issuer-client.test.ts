import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, readFileSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { createCa, issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { IssuerClient } from '../src/issuer-client/issuer-client.js';
import { IssuerClientError } from '../src/issuer-client/issuer-client-error.js';
import type { IssuedToken } from '../src/issuer-client/issued-token.js';
import { TokenCache } from '../src/issuer-client/token-cache.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { ConfigError } from '../src/schema/config-error.js';
import { silentLogger } from '../src/telemetry/log.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';

const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
  payments: 'spiffe://test.local/ns/shop/sa/payments',
  ledger: 'spiffe://test.local/ns/shop/sa/ledger',
} as const;

let mesh: TrustDomain<keyof typeof ID>;
let issuer: RunningIssuer;
let auditPath: string;
const clients: IssuerClient[] = [];

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-client', ID);
  const server = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  auditPath = path.join(mesh.dir, 'audit.jsonl');
  writeFileSync(path.join(mesh.dir, 'audit.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: https://sts.test.local
tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: keys }
audit: { output: ${auditPath}, signing_key_file: audit.pem, flush_interval: 10ms }
rate_limit: { per_second: 1000, burst: 1000 }
clients:
  - { id: ${ID.frontend}, grants: [client_credentials], audiences: [${ID.orders}], scopes: [orders:read, payments:write] }
  - { id: ${ID.orders}, grants: [token_exchange, client_credentials], audiences: [${ID.payments}], scopes: [payments:write] }
`, { baseDir: mesh.dir }), { log: silentLogger });
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.close();
  await issuer?.stop();
  mesh?.cleanup();
});

/** An IssuerClient as orders' sidecar, over copies of orders' files (so a test may rotate them). */
function ordersClient(overrides: Record<string, unknown> = {}, name = `orders-${clients.length}`) {
  const certFile = path.join(mesh.dir, `${name}.crt`);
  const keyFile = path.join(mesh.dir, `${name}.key`);
  copyFileSync(mesh.workloads.orders.certPath, certFile);
  copyFileSync(mesh.workloads.orders.keyPath, keyFile);
  const client = new IssuerClient({
    tokenEndpoint: `${issuer.url}/token`, caFile: mesh.ca.certPath, certFile, keyFile, certPollMs: 50, ...overrides,
  });
  clients.push(client);
  return { client, certFile, keyFile };
}

async function subjectToken(): Promise<string> {
  const reply = await issuerRequest(issuer.url, '/token', {
    caPem: mesh.ca.certPem, client: mesh.workloads.frontend,
    form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read payments:write' },
  });
  return reply.body.access_token;
}

/** Issuer requests as its audit log counts them, once the log has settled. */
async function audited(event: 'exchange' | 'issuance', client = ID.orders): Promise<number> {
  const count = () => readFileSync(auditPath, 'utf8').trim().split('\n').filter((line) => {
    const record = JSON.parse(line);
    return record.event === event && record.client === client;
  }).length;
  let last = -1;
  for (;;) {
    await new Promise((resolve) => setTimeout(resolve, 150));
    const now = count();
    if (now === last) return now;
    last = now;
  }
}

async function failure(work: Promise<unknown>): Promise<IssuerClientError> {
  const err = await work.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(IssuerClientError);
  return err as IssuerClientError;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** Until `ready` or `ms`. */
async function eventually(ready: () => boolean, ms = 5_000): Promise<void> {
  const started = Date.now();
  while (!ready()) {
    if (Date.now() - started > ms) throw new Error(`not ready within ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

describe('IssuerClient', () => {
  it('exchanges a subject token for one bound to this workload\'s certificate, for the audience asked', async () => {
    const { client } = ordersClient();
    const subject = await subjectToken();
    const issued = await client.exchange({ subjectToken: subject, audience: ID.payments, scopes: ['payments:write'] });
    const claims = claimsOf(issued.accessToken);
    expect(claims).toMatchObject({
      sub: ID.frontend, aud: ID.payments, scope: 'payments:write', act: { sub: ID.orders },
      cnf: { 'x5t#S256': mesh.workloads.orders.thumbprint },
    });
    expect(issued.boundTo).toBe(mesh.workloads.orders.thumbprint);
    expect(issued.expiresAtMs).toBeGreaterThan(Date.now());
    expect(Math.abs(issued.expiresAtMs - claims.exp * 1000)).toBeLessThan(5_000);
    // It prints without the token.
    expect(JSON.stringify(issued)).not.toContain(issued.accessToken);
  });

  it('gets this workload\'s own token with client_credentials', async () => {
    const { client } = ordersClient();
    const issued = await client.clientCredentials({ audience: ID.payments, scopes: ['payments:write'] });
    expect(claimsOf(issued.accessToken)).toMatchObject({ sub: ID.orders, aud: ID.payments, cnf: { 'x5t#S256': mesh.workloads.orders.thumbprint } });
  });

  it('a refused audience is exchange_refused with the issuer\'s OAuth error, and never echoes the token', async () => {
    const { client } = ordersClient();
    const subject = await subjectToken();
    const err = await failure(client.exchange({ subjectToken: subject, audience: ID.ledger }));
    expect(err).toMatchObject({ code: 'exchange_refused', oauthError: 'invalid_target' });
    expect(`${err.message} ${JSON.stringify(err)}`).not.toContain(subject);
    const garbage = await failure(client.exchange({ subjectToken: 'not-a-token', audience: ID.payments }));
    expect(garbage).toMatchObject({ code: 'exchange_refused', oauthError: 'invalid_grant' });
    expect(garbage.message).not.toContain('not-a-token');
  });

  it('an issuer whose port is closed is issuer_unavailable at once', async () => {
    const { client } = ordersClient({ tokenEndpoint: `https://127.0.0.1:${await freePort()}/token`, timeoutMs: 500 });
    const started = Date.now();
    const err = await failure(client.clientCredentials({ audience: ID.payments }));
    expect(err.code).toBe('issuer_unavailable');
    expect(err.message).toContain('ECONNREFUSED');
    expect(Date.now() - started).toBeLessThan(500 + 2_000);
  });

  it('an issuer that accepts the connection and never answers is issuer_unavailable within the timeout', async () => {
    const held: net.Socket[] = [];
    const silent = net.createServer((socket) => held.push(socket));
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as net.AddressInfo;
      const { client } = ordersClient({ tokenEndpoint: `https://127.0.0.1:${port}/token`, timeoutMs: 400 });
      const started = Date.now();
      const err = await failure(client.exchange({ subjectToken: await subjectToken(), audience: ID.payments }));
      const elapsed = Date.now() - started;
      expect(err.code).toBe('issuer_unavailable');
      expect(err.message).toContain('no answer within 400 ms');
      expect(elapsed).toBeGreaterThanOrEqual(350);
      expect(elapsed).toBeLessThan(400 + 2_000);
    } finally {
      for (const socket of held) socket.destroy();
      silent.close();
    }
  });

  it('an issuer with a certificate from another CA is issuer_unavailable (TLS failure)', async () => {
    const other = createCa(path.join(mesh.dir, 'other-ca'), 'other-ca');
    const { client } = ordersClient({ caFile: other.certPath });
    const err = await failure(client.clientCredentials({ audience: ID.payments }));
    expect(err.code).toBe('issuer_unavailable');
  });

  it('recovers by itself when the issuer comes back', async () => {
    const port = await freePort();
    const { client } = ordersClient({ tokenEndpoint: `https://127.0.0.1:${port}/token`, timeoutMs: 500 });
    expect((await failure(client.clientCredentials({ audience: ID.payments }))).code).toBe('issuer_unavailable');
    // The issuer comes back at that address (a TCP relay to it: the TLS session is end to end).
    const target = new URL(issuer.url);
    const relay = net.createServer((socket) => {
      const upstream = net.connect(Number(target.port), target.hostname);
      socket.pipe(upstream).pipe(socket);
      socket.on('error', () => upstream.destroy());
      upstream.on('error', () => socket.destroy());
    });
    await new Promise<void>((resolve) => relay.listen(port, '127.0.0.1', resolve));
    try {
      const issued = await client.clientCredentials({ audience: ID.payments });
      expect(claimsOf(issued.accessToken).aud).toBe(ID.payments);
    } finally {
      client.close();
      relay.close();
    }
  });

  it('refuses options it does not know or cannot use, naming each key', () => {
    let err: unknown;
    try {
      new IssuerClient({ tokenEndpoint: 'http://sts/token', caFile: '', certFile: mesh.workloads.orders.certPath, keyFile: mesh.workloads.orders.keyPath, timeoutMs: 0, retries: 3 });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems.map((p) => p.path).sort()).toEqual(['caFile', 'retries', 'timeoutMs', 'tokenEndpoint']);
    expect(() => ordersClient({ keyFile: mesh.workloads.frontend.keyPath })).toThrow(/keyFile: the key does not match the certificate/);
  });
});

describe('TokenCache over the issuer', () => {
  it('10 concurrent misses make one issuer request; per_request makes one per call', async () => {
    const { client } = ordersClient();
    const cache = new TokenCache<IssuedToken>({ maxEntries: 100 });
    const subject = await subjectToken();
    const mint = () => client.exchange({ subjectToken: subject, audience: ID.payments });
    const before = await audited('exchange');
    const tokens = await Promise.all(Array.from({ length: 10 }, () => cache.get('payments', mint)));
    expect(new Set(tokens.map((t) => t.accessToken)).size).toBe(1);
    expect(await audited('exchange')).toBe(before + 1);
    await cache.get('payments', mint);
    expect(await audited('exchange')).toBe(before + 1);

    const perRequest = await Promise.all(Array.from({ length: 3 }, () => cache.get('payments', mint, { perRequest: true })));
    expect(new Set(perRequest.map((t) => t.accessToken)).size).toBe(3);
    expect(await audited('exchange')).toBe(before + 4);
  });

  it('rotating the certificate files binds the next exchange to the new certificate and clears the cache', async () => {
    const { client, certFile, keyFile } = ordersClient();
    const cache = new TokenCache<IssuedToken>({ maxEntries: 100 });
    const changes: string[] = [];
    client.onCertificateChange((pair) => {
      changes.push(pair.thumbprint);
      cache.clear();
    });
    const subject = await subjectToken();
    const mint = () => client.exchange({ subjectToken: subject, audience: ID.payments });
    const old = await cache.get('payments', mint);
    expect(old.boundTo).toBe(mesh.workloads.orders.thumbprint);

    // A garbage certificate file keeps the old pair, and so does a half-written one (new
    // certificate, old key).
    writeFileSync(certFile, 'garbage');
    const next = issueCert(mesh.ca, path.join(mesh.dir, 'rotated'), { name: 'orders', uriSan: ID.orders, clientAuth: true });
    await new Promise((resolve) => setTimeout(resolve, 300));
    writeFileSync(certFile, next.certPem);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(changes).toEqual([]);
    expect(client.thumbprint).toBe(mesh.workloads.orders.thumbprint);
    const stillOld = await client.exchange({ subjectToken: subject, audience: ID.payments });
    expect(claimsOf(stillOld.accessToken).cnf['x5t#S256']).toBe(mesh.workloads.orders.thumbprint);
    expect(cache.size).toBe(1);

    writeFileSync(keyFile, next.keyPem);
    await eventually(() => changes.length > 0);
    expect(changes).toEqual([next.thumbprint]);
    expect(next.thumbprint).not.toBe(mesh.workloads.orders.thumbprint);
    expect(cache.size).toBe(0);
    const before = await audited('exchange');
    const rebound = await cache.get('payments', mint);
    expect(await audited('exchange')).toBe(before + 1);
    expect(rebound.boundTo).toBe(next.thumbprint);
    expect(claimsOf(rebound.accessToken).cnf['x5t#S256']).toBe(next.thumbprint);
  });
});
