import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import type http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { createCa, issueCert, type IssuedCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { IssuerClient } from '../src/issuer-client/issuer-client.js';
import { IssuerClientError } from '../src/issuer-client/issuer-client-error.js';
import type { IssuedToken } from '../src/issuer-client/issued-token.js';
import { TokenCache } from '../src/issuer-client/token-cache.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { ConfigError } from '../src/schema/config-error.js';
import { createLogger, silentLogger, type Logger } from '../src/telemetry/log.js';
import { incomingContext, mapGetter } from '../src/telemetry/tracing.js';
import { claimsOf, issuerRequest } from './support/issuer-client.js';

const ID = {
  frontend: 'spiffe://test.local/ns/shop/sa/frontend',
  orders: 'spiffe://test.local/ns/shop/sa/orders',
  payments: 'spiffe://test.local/ns/shop/sa/payments',
  ledger: 'spiffe://test.local/ns/shop/sa/ledger',
} as const;

let mesh: TrustDomain<keyof typeof ID>;
let issuer: RunningIssuer;
let shortLived: RunningIssuer;
let serverCert: IssuedCert;
let auditPath: string;
const clients: IssuerClient[] = [];
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const CLIENTS = `
clients:
  - { id: ${ID.frontend}, grants: [client_credentials], audiences: [${ID.orders}], scopes: [orders:read, payments:write] }
  - { id: ${ID.orders}, grants: [token_exchange, client_credentials], audiences: [${ID.payments}], scopes: [payments:write] }
`;

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-client', ID);
  serverCert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  const server = serverCert;
  const tls = `tls: { cert: ${server.certPath}, key: ${server.keyPath}, client_ca: ${mesh.ca.certPath} }`;
  auditPath = path.join(mesh.dir, 'audit.jsonl');
  writeFileSync(path.join(mesh.dir, 'audit.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: https://sts.test.local
${tls}
keys: { dir: keys }
audit: { output: ${auditPath}, signing_key_file: audit.pem, flush_interval: 10ms }
rate_limit: { per_second: 1000, burst: 1000 }
${CLIENTS}`, { baseDir: mesh.dir }), { log: silentLogger });
  // Tokens that live 10 s: usable for 5 s (a 5 s margin before exp), so renewal shows within a test.
  shortLived = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: https://sts.test.local
${tls}
keys: { dir: keys-short }
token_ttl: 10s
rate_limit: { per_second: 1000, burst: 1000 }
${CLIENTS}`, { baseDir: mesh.dir }), { log: silentLogger });
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.close();
  await issuer?.stop();
  await shortLived?.stop();
  mesh?.cleanup();
});

/** An IssuerClient as orders' sidecar, over copies of orders' files (so a test may rotate them). */
function ordersClient(overrides: Record<string, unknown> = {}, log: Logger = silentLogger) {
  const name = `orders-${clients.length}`;
  const certFile = path.join(mesh.dir, `${name}.crt`);
  const keyFile = path.join(mesh.dir, `${name}.key`);
  copyFileSync(mesh.workloads.orders.certPath, certFile);
  copyFileSync(mesh.workloads.orders.keyPath, keyFile);
  const client = new IssuerClient({
    tokenEndpoint: `${issuer.url}/token`, caFile: mesh.ca.certPath, certFile, keyFile, certPollMs: 50, ...overrides,
  }, log);
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

const auditRecords = (): Record<string, any>[] => readFileSync(auditPath, 'utf8').trim().split('\n').map((line) => JSON.parse(line));

/** Issuer requests as its audit log counts them, once the log has settled. */
async function audited(event: 'exchange' | 'issuance', client = ID.orders): Promise<number> {
  const count = () => auditRecords().filter((record) => record.event === event && record.client === client).length;
  let last = -1;
  for (;;) {
    await sleep(150);
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

/**
 * A TCP relay on 127.0.0.1:`port` to the issuer at `target` (the TLS session stays end to end):
 * down, it drops every connection, open or new, as an issuer that went away.
 */
async function relayTo(target: string, port = 0) {
  const { hostname, port: targetPort } = new URL(target);
  const open = new Set<net.Socket>();
  let down = false;
  const server = net.createServer((socket) => {
    if (down) {
      socket.destroy();
      return;
    }
    const upstream = net.connect(Number(targetPort), hostname);
    for (const end of [socket, upstream]) {
      open.add(end);
      end.on('close', () => open.delete(end));
      end.on('error', () => { socket.destroy(); upstream.destroy(); });
    }
    socket.pipe(upstream).pipe(socket);
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  const setDown = (value: boolean) => {
    down = value;
    if (down) for (const end of open) end.destroy();
  };
  return {
    url: `https://127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    setDown,
    close() {
      setDown(true);
      server.close();
    },
  };
}

/** Until `ready` or `ms`. */
async function eventually(ready: () => boolean, ms = 5_000): Promise<void> {
  const started = Date.now();
  while (!ready()) {
    if (Date.now() - started > ms) throw new Error(`not ready within ${ms} ms`);
    await sleep(20);
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

  it('asks within the caller\'s trace: the issuer audits the exchange under it', async () => {
    const { client } = ordersClient();
    const trace = randomBytes(16).toString('hex');
    const context = incomingContext([new Map([['traceparent', `00-${trace}-00f067aa0ba902b7-01`]]), mapGetter]);
    await client.exchange({ subjectToken: await subjectToken(), audience: ID.payments, context });
    await audited('exchange');
    expect(auditRecords().filter((record) => record.trace_id === trace).map((record) => record.event)).toEqual(['exchange']);
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
    // The issuer comes back at that address.
    const relay = await relayTo(issuer.url, port);
    try {
      const issued = await client.clientCredentials({ audience: ID.payments });
      expect(claimsOf(issued.accessToken).aud).toBe(ID.payments);
    } finally {
      client.close();
      relay.close();
    }
  });

  it('an answer that is neither a token nor an OAuth refusal is issuer_unavailable', async () => {
    const json = { 'content-type': 'application/json' };
    const answers: Record<string, (res: http.ServerResponse) => void> = {
      '/bad-gateway': (res) => res.writeHead(502, { 'content-type': 'text/html' }).end('<html>bad gateway</html>'),
      '/unavailable': (res) => res.writeHead(503, json).end(JSON.stringify({ error: 'temporarily_unavailable' })),
      '/slow-down': (res) => res.writeHead(429, json).end(JSON.stringify({ error: 'slow_down' })),
      '/html': (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html></html>'),
      '/no-token': (res) => res.writeHead(200, json).end(JSON.stringify({ token_type: 'Bearer', expires_in: 300 })),
      '/no-error': (res) => res.writeHead(400, json).end(JSON.stringify({ message: 'no' })),
      '/huge': (res) => res.writeHead(200, json).end(JSON.stringify({ access_token: 'x'.repeat(200_000), token_type: 'Bearer', expires_in: 300 })),
      '/trickle': (res) => {
        res.writeHead(200, json).write('{');
        const timer = setInterval(() => res.write(' '), 50);
        res.on('close', () => clearInterval(timer));
      },
    };
    const fake = https.createServer({ cert: serverCert.certPem, key: serverCert.keyPem }, (req, res) => {
      req.resume();
      answers[req.url ?? '']!(res);
    });
    await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = fake.address() as net.AddressInfo;
      for (const answer of Object.keys(answers)) {
        const { client } = ordersClient({ tokenEndpoint: `https://127.0.0.1:${port}${answer}`, timeoutMs: 500 });
        const started = Date.now();
        const err = await failure(client.clientCredentials({ audience: ID.payments }));
        expect([answer, err.code]).toEqual([answer, 'issuer_unavailable']);
        expect(Date.now() - started).toBeLessThan(500 + 2_000);
      }
    } finally {
      fake.closeAllConnections();
      fake.close();
    }
  });

  it('follows a rotation by symlink swap, as Kubernetes secret volumes make it', async () => {
    const volume = path.join(mesh.dir, 'volume');
    const writeVersion = (version: string, pair: IssuedCert) => {
      mkdirSync(path.join(volume, version), { recursive: true });
      writeFileSync(path.join(volume, version, 'tls.crt'), pair.certPem);
      writeFileSync(path.join(volume, version, 'tls.key'), pair.keyPem);
    };
    writeVersion('v1', mesh.workloads.orders);
    symlinkSync('v1', path.join(volume, '..data'));
    symlinkSync('..data/tls.crt', path.join(volume, 'tls.crt'));
    symlinkSync('..data/tls.key', path.join(volume, 'tls.key'));
    const { client } = ordersClient({ certFile: path.join(volume, 'tls.crt'), keyFile: path.join(volume, 'tls.key') });
    expect(client.thumbprint).toBe(mesh.workloads.orders.thumbprint);

    const next = issueCert(mesh.ca, path.join(mesh.dir, 'swapped'), { name: 'orders', uriSan: ID.orders, clientAuth: true });
    writeVersion('v2', next);
    symlinkSync('v2', path.join(volume, '..data_tmp'));
    renameSync(path.join(volume, '..data_tmp'), path.join(volume, '..data'));
    await eventually(() => client.thumbprint === next.thumbprint);
    const issued = await client.clientCredentials({ audience: ID.payments });
    expect(claimsOf(issued.accessToken).cnf['x5t#S256']).toBe(next.thumbprint);
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
    const lines: string[] = [];
    const { client, certFile, keyFile } = ordersClient({}, createLogger((line) => lines.push(line)));
    const events = (event: string) => lines.filter((line) => JSON.parse(line).event === event);
    const cache = new TokenCache<IssuedToken>({ maxEntries: 100 });
    const changes: string[] = [];
    client.onCertificateChange(() => {
      throw new Error('a listener that fails stops neither the others nor the process');
    });
    client.onCertificateChange((pair) => {
      changes.push(pair.thumbprint);
      cache.clear();
    });
    const subject = await subjectToken();
    const mint = () => client.exchange({ subjectToken: subject, audience: ID.payments });
    const own = () => client.clientCredentials({ audience: ID.payments });
    const old = await cache.get('payments', mint);
    expect(old.boundTo).toBe(mesh.workloads.orders.thumbprint);
    expect((await cache.keepFresh('own', own)).boundTo).toBe(mesh.workloads.orders.thumbprint);

    // A garbage certificate file keeps the old pair, and so does a half-written one (new
    // certificate, old key).
    writeFileSync(certFile, 'garbage');
    const next = issueCert(mesh.ca, path.join(mesh.dir, 'rotated'), { name: 'orders', uriSan: ID.orders, clientAuth: true });
    await sleep(300);
    writeFileSync(certFile, next.certPem);
    await sleep(300);
    expect(changes).toEqual([]);
    expect(client.thumbprint).toBe(mesh.workloads.orders.thumbprint);
    // Said once per version of the files (garbage, then half-written; maybe the empty file
    // between), not once per poll (a dozen here).
    expect(events('workload_certificate_reload_failed').length).toBeGreaterThanOrEqual(2);
    expect(events('workload_certificate_reload_failed').length).toBeLessThanOrEqual(4);
    const stillOld = await client.exchange({ subjectToken: subject, audience: ID.payments });
    expect(claimsOf(stillOld.accessToken).cnf['x5t#S256']).toBe(mesh.workloads.orders.thumbprint);
    expect(cache.size).toBe(2);

    writeFileSync(keyFile, next.keyPem);
    await eventually(() => changes.length > 0);
    expect(changes).toEqual([next.thumbprint]);
    expect(events('workload_certificate_reloaded')).toHaveLength(1);
    expect(events('workload_certificate_listener_failed')).toHaveLength(1);
    expect(lines.join('\n')).not.toMatch(/BEGIN|PRIVATE|garbage/);
    expect(next.thumbprint).not.toBe(mesh.workloads.orders.thumbprint);
    expect(cache.has('payments')).toBe(false);
    // A kept-fresh key is minted again at once, over the new certificate.
    expect(claimsOf((await cache.keepFresh('own', own)).accessToken).cnf['x5t#S256']).toBe(next.thumbprint);
    const before = await audited('exchange');
    const rebound = await cache.get('payments', mint);
    expect(await audited('exchange')).toBe(before + 1);
    expect(rebound.boundTo).toBe(next.thumbprint);
    expect(claimsOf(rebound.accessToken).cnf['x5t#S256']).toBe(next.thumbprint);
  });
});

describe('TokenCache.keepFresh over the issuer', () => {
  it('renews before expiry, so a caller never waits; a failing issuer keeps the old token until it nears expiry, then the error surfaces', async () => {
    const relay = await relayTo(shortLived.url);
    const { client } = ordersClient({ tokenEndpoint: `${relay.url}/token`, timeoutMs: 1_000 });
    const cache = new TokenCache<IssuedToken>({ maxEntries: 10 });
    const HELD_MS = 600;
    let mints = 0;
    // Each answer is held back, so a caller that waited on the issuer would show it.
    const mint = async () => {
      mints += 1;
      const token = await client.clientCredentials({ audience: ID.payments });
      await sleep(HELD_MS);
      return token;
    };
    const seen = new Set([(await cache.keepFresh('own', mint)).accessToken]);
    const margin = 5_000;
    const usableUntil = (token: IssuedToken) => token.expiresAtMs - margin;
    // Longer than one token's usable part (10 s lifetime - 5 s margin).
    for (const end = Date.now() + 6_000; Date.now() < end; await sleep(100)) {
      const started = Date.now();
      const token = await cache.keepFresh('own', mint);
      expect(Date.now() - started).toBeLessThan(HELD_MS);
      expect(usableUntil(token)).toBeGreaterThan(started);
      seen.add(token.accessToken);
    }
    expect(seen.size).toBeGreaterThanOrEqual(2);
    // No request beyond the renewals (one may be under way).
    expect(mints).toBeLessThanOrEqual(seen.size + 1);

    relay.setDown(true);
    await sleep(HELD_MS + 200);
    const held = await cache.keepFresh('own', mint);
    let error: IssuerClientError | undefined;
    for (const end = usableUntil(held) + 3_000; error === undefined && Date.now() < end; await sleep(100)) {
      try {
        expect((await cache.keepFresh('own', mint)).accessToken).toBe(held.accessToken);
      } catch (err) {
        error = err as IssuerClientError;
        expect(Date.now()).toBeGreaterThanOrEqual(usableUntil(held));
      }
    }
    expect(error).toBeInstanceOf(IssuerClientError);
    expect(error!.code).toBe('issuer_unavailable');

    relay.setDown(false);
    expect(usableUntil(await cache.keepFresh('own', mint))).toBeGreaterThan(Date.now());
    cache.close();
    relay.close();
  }, 30_000);
});

describe('TokenCache', () => {
  let now = 1_000_000;
  const clock = () => now;
  const tokenFor = (id: string, lifetimeMs: number) => ({ id, expiresAtMs: now + lifetimeMs, lifetimeMs });

  it('hands a token out until max(10% of its lifetime, 5 s) before its exp, then mints again', async () => {
    const cache = new TokenCache<ReturnType<typeof tokenFor>>({ maxEntries: 10, now: clock });
    let minted = 0;
    const mint = (lifetimeMs: number) => async () => tokenFor(`t${++minted}`, lifetimeMs);
    expect((await cache.get('long', mint(100_000))).id).toBe('t1');
    now += 89_999;
    expect((await cache.get('long', mint(100_000))).id).toBe('t1');
    now += 1;
    expect((await cache.get('long', mint(100_000))).id).toBe('t2');
    expect((await cache.get('short', mint(20_000))).id).toBe('t3');
    now += 14_999;
    expect((await cache.get('short', mint(20_000))).id).toBe('t3');
    now += 1;
    expect((await cache.get('short', mint(20_000))).id).toBe('t4');
    // Too short-lived to be handed out twice.
    await cache.get('brief', mint(5_000));
    expect(cache.has('brief')).toBe(false);
  });

  it('keeps at most maxEntries, the least recently used going first', async () => {
    const cache = new TokenCache<ReturnType<typeof tokenFor>>({ maxEntries: 2, now: clock });
    for (const key of ['a', 'b', 'c']) await cache.get(key, async () => tokenFor(key, 60_000));
    expect(cache.size).toBe(2);
    expect([cache.has('a'), cache.has('b'), cache.has('c')]).toEqual([false, true, true]);
  });

  it('a failed mint fails every caller waiting on it, and the next caller tries again', async () => {
    const cache = new TokenCache<ReturnType<typeof tokenFor>>({ maxEntries: 10, now: clock });
    let calls = 0;
    const failing = async () => {
      calls += 1;
      await sleep(10);
      throw new Error('down');
    };
    const results = await Promise.allSettled([1, 2, 3].map(() => cache.get('k', failing)));
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected', 'rejected']);
    expect(calls).toBe(1);
    expect((await cache.get('k', async () => tokenFor('ok', 60_000))).id).toBe('ok');
  });

  it('a mint under way when clear() is called does not fill the cache', async () => {
    const cache = new TokenCache<ReturnType<typeof tokenFor>>({ maxEntries: 10, now: clock });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => { release = resolve; });
    const before = cache.get('k', async () => { await gate; return tokenFor('old-certificate', 60_000); });
    cache.clear();
    release();
    expect((await before).id).toBe('old-certificate');
    expect(cache.has('k')).toBe(false);
    expect((await cache.get('k', async () => tokenFor('new-certificate', 60_000))).id).toBe('new-certificate');
  });
});
