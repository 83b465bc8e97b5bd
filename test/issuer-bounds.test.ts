import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDpopKey, dpopProof, type DpopKey } from '../src/devkit/dpop-client.js';
import type { RunningWebhook } from '../src/inject/webhook-server.js';
import type { LogFields, Logger } from '../src/telemetry/log.js';
import type { ServerBounds } from '../src/tls/server-bounds.js';
import { dribble, holdTcp, holdTls } from './support/held-connection.js';
import { parseHttpResponse } from './support/http-response.js';
import { issuerRequest } from './support/issuer-client.js';
import { ISS, MESH_ID as ID, startMeshIssuer, type MeshIssuer } from './support/mesh-issuer.js';
import { startTestWebhook } from './support/test-webhook.js';
import { floodTokens } from './support/token-flood.js';

/**
 * Issue 18 item 7: the issuer and the injector webhook hold every client to the bounds of
 * server-bounds.ts (here shortened; node's defaults were 120 s for a handshake, 60 s for
 * headers, 300 s for a request, no cap), through real TLS connections.
 */
const BOUNDS: ServerBounds = { handshakeMs: 600, headersMs: 600, bodyMs: 1_000, keepAliveMs: 500, idleMs: 3_000, maxConnections: 24 };
/** How late a cut may come: node checks on an interval, and the machine is shared. */
const MARGIN_MS = 2_500;

let running: MeshIssuer;
let webhook: RunningWebhook;
let dpopKey: DpopKey;
const logged: { event: string; fields: LogFields }[] = [];
const log: Logger = { info() {}, warn: (event, fields = {}) => logged.push({ event, fields }), error: (event, fields = {}) => logged.push({ event, fields }) };
const events = (event: string) => logged.filter((l) => l.event === event).map((l) => l.fields);

beforeAll(async () => {
  running = await startMeshIssuer('issuer-bounds', { rateLimit: { perSecond: 20, burst: 40 }, serverBounds: BOUNDS, log });
  webhook = await startTestWebhook(running.serverCert, { bounds: BOUNDS, log });
  dpopKey = await createDpopKey();
}, 60_000);

afterAll(async () => {
  await webhook?.stop();
  await running?.stop();
});

const frontendForm = `grant_type=client_credentials&audience=${encodeURIComponent(ID.orders)}`;
const post = (path: string, length: number) => Buffer.from(
  `POST ${path} HTTP/1.1\r\nhost: issuer\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ${length}\r\n\r\n`,
);

/** A DPoP token request of the mobile client: a request of another client than the flooding one. */
async function mobileToken(): Promise<{ status: number; ms: number }> {
  const started = performance.now();
  const reply = await issuerRequest(running.issuer.url, '/token', {
    caPem: running.mesh.ca.certPem, client: running.mesh.workloads.mobile,
    form: { grant_type: 'client_credentials', audience: ID.orders, scope: 'orders:read' },
    headers: { dpop: await dpopProof(dpopKey, { htm: 'POST', htu: `${ISS}/token` }) },
  });
  return { status: reply.status, ms: performance.now() - started };
}

describe.each([
  ['issuer', () => running.issuer.url],
  ['injector webhook', () => webhook.url],
])('the %s closes what it is not sent', (_name, url) => {
  it('an idle TLS connection without a client certificate, after the header bound', async () => {
    const idle = (await holdTls(url()))!;
    expect(idle).toBeDefined();
    const closedAfter = await idle.closedWithin(BOUNDS.headersMs + MARGIN_MS);
    expect(closedAfter).toBeDefined();
    expect(closedAfter!).toBeGreaterThanOrEqual(BOUNDS.headersMs - 50);
  });

  it('a keep-alive connection after its response, after the keep-alive bound', async () => {
    const conn = (await holdTls(url()))!;
    conn.socket.write(`GET ${url() === webhook.url ? '/healthz' : '/.well-known/jwks.json'} HTTP/1.1\r\nhost: x\r\n\r\n`);
    await expect.poll(() => conn.received()).toMatch(/^HTTP\/1\.1 200 /);
    expect(await conn.closedWithin(BOUNDS.keepAliveMs + MARGIN_MS)).toBeDefined();
  });

  it('a TCP connection that never starts its handshake, and one that dribbles its ClientHello', async () => {
    const silent = holdTcp(url());
    const slow = holdTcp(url());
    // The start of a ClientHello (record header, handshake header), a byte every 100 ms.
    dribble(slow.socket, Buffer.from(`16030100c8010000c40303${'00'.repeat(190)}`, 'hex'), 100);
    expect(await silent.closedWithin(BOUNDS.handshakeMs + MARGIN_MS)).toBeDefined();
    expect(await slow.closedWithin(BOUNDS.handshakeMs + MARGIN_MS)).toBeDefined();
  });

  it('headers sent a byte at a time: 408 at the header bound', async () => {
    const conn = (await holdTls(url(), running.mesh.workloads.frontend))!;
    dribble(conn.socket, Buffer.from(`POST /token HTTP/1.1\r\nhost: issuer\r\nx-slow: ${'a'.repeat(200)}\r\n\r\n`), 50);
    expect(await conn.closedWithin(BOUNDS.headersMs + MARGIN_MS)).toBeDefined();
    expect(parseHttpResponse(conn.received()).status).toBe(408);
  });

  it('a body sent a byte at a time: 408 at the body bound, logged with its reason', async () => {
    const before = events(`${url() === webhook.url ? 'inject' : 'issuer'}_request_aborted`).length;
    const conn = (await holdTls(url(), running.mesh.workloads.frontend))!;
    conn.socket.write(post(url() === webhook.url ? '/mutate' : '/token', frontendForm.length));
    dribble(conn.socket, Buffer.from(frontendForm), 100);
    const closedAfter = await conn.closedWithin(BOUNDS.bodyMs + MARGIN_MS);
    expect(closedAfter).toBeDefined();
    const reply = parseHttpResponse(conn.received());
    expect(reply.status).toBe(408);
    if (url() === running.issuer.url) expect(reply.body).toEqual({ error: 'invalid_request', error_description: 'the request body took too long' });
    const aborted = events(`${url() === webhook.url ? 'inject' : 'issuer'}_request_aborted`).slice(before);
    expect(aborted).toContainEqual({ reason: 'timeout', during: 'body' });
  });
});

describe('what the issuer logs of an aborted request', () => {
  it('a client that closes in the middle of its body: client_closed, not a bare error', async () => {
    const conn = (await holdTls(running.issuer.url, running.mesh.workloads.admin))!;
    conn.socket.write(Buffer.concat([post('/revoke', 100), Buffer.from('token=abc')]));
    await new Promise((r) => setTimeout(r, 200));
    conn.socket.destroy();
    await expect.poll(() => events('issuer_request_aborted')).toContainEqual({ reason: 'client_closed', during: 'body' });
    expect(events('issuer_request_failed')).toEqual([]);
  });

  it('a body larger than a form may be: too_large, answered at once without reading it', async () => {
    const conn = (await holdTls(running.issuer.url, running.mesh.workloads.admin))!;
    conn.socket.write(post('/revoke', 10 * 1024 * 1024));
    expect(await conn.closedWithin(MARGIN_MS)).toBeDefined();
    expect(parseHttpResponse(conn.received())).toMatchObject({ status: 400, body: { error_description: 'the request body is too large' } });
    expect(events('issuer_request_aborted')).toContainEqual({ reason: 'too_large', during: 'body' });
  });
});

describe('the connection cap', () => {
  it('refuses a connection beyond max_connections with a log line, and serves again once idle ones are closed', async () => {
    const held = await Promise.all(Array.from({ length: BOUNDS.maxConnections }, () => holdTls(running.issuer.url)));
    expect(held.every((c) => c !== undefined)).toBe(true);
    expect(await holdTls(running.issuer.url, running.mesh.workloads.mobile)).toBeUndefined();
    expect(events('issuer_connection_refused')[0]).toMatchObject({ reason: 'max_connections reached', max_connections: BOUNDS.maxConnections });
    // The idle ones are closed at the header bound; then a real token request goes through.
    await Promise.all(held.map((c) => c!.closedWithin(BOUNDS.headersMs + MARGIN_MS)));
    expect((await mobileToken()).status).toBe(200);
  });
});

describe('a client flooding /token', () => {
  it('gets 429s while another client is served, each request in well under 2 s', async () => {
    const flood = floodTokens(running.issuer.url, running.mesh.workloads.frontend, frontendForm, { connections: 8, perSecond: 2_500 });
    const served: { status: number; ms: number }[] = [];
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < 20; i++) {
        // Paced under the mobile client's own rate limit.
        await new Promise((r) => setTimeout(r, 60));
        served.push(await mobileToken());
      }
    } finally {
      const counted = await flood.stop();
      expect(counted.statuses['429']).toBeGreaterThan(1_000);
    }
    expect(served.map((s) => s.status)).toEqual(served.map(() => 200));
    // A wide correctness bound: the issuer kept answering others (before, 2-4 s each at this rate).
    expect(Math.max(...served.map((s) => s.ms))).toBeLessThan(2_000);
  }, 60_000);

  it('a 429 does not wait for the body: one too large to discard is not read, and the connection closes', async () => {
    let limited: string | undefined;
    for (let i = 0; i < 100 && !limited; i++) {
      const conn = (await holdTls(running.issuer.url, running.mesh.workloads.frontend))!;
      conn.socket.write(post('/token', 1024 * 1024));
      await conn.closedWithin(MARGIN_MS);
      if (/^HTTP\/1\.1 429 /.test(conn.received())) limited = conn.received();
      conn.socket.destroy();
    }
    expect(parseHttpResponse(limited!).headers).toMatchObject({ connection: 'close', 'retry-after': expect.any(String) });
  });
});
