/**
 * The messages section (issue 14), `npm run bench -- --only messages`: the consumer's check over
 * loopback HTTP/1.1 against a no-op HTTP server floor (noop-http.ts) on the same request, rounds
 * alternating, as a ratio (target 0.5 x); then what a seal costs next to the one issuer round
 * trip it makes, one at a time.
 *
 * The checked message is a redelivery of one accepted token (redelivered: true): each check
 * parses the body, finds the verified token in the verification cache, compares destination and
 * digest, looks up revocations and asks the store (memory) for the token's mark, and answers.
 * The issuer runs in this driver process, over real TLS; the sidecar is a `hopguard authz` process.
 */

import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import type { TrustDomain } from '../src/devkit/trust-domain.js';
import { IssuerClient } from '../src/issuer-client/issuer-client.js';
import { startIssuer } from '../src/issuer/issuer-service.js';
import { MemoryStore } from '../src/store/memory-store.js';
import { silentLogger } from '../src/telemetry/log.js';
import { percentile, runH2load } from './h2load.js';
import { DEPLOYED_NODE_FLAGS, freePort, startFloor, startHopguard, type ServerProcess } from './processes.js';

const NOOP_HTTP = new URL('./noop-http.js', import.meta.url).pathname;
const DESTINATION = 'bench.jobs';
/** HTTP/1.1 has no streams: concurrency is connections, one request in flight on each. */
const CONNECTIONS = 64;

export interface MessagesBenchContext {
  domain: TrustDomain<'checkout' | 'orders'>;
  /** orders' identity: the sidecar's audience, and the issuer client the seals go through. */
  audience: string;
  issuer: string;
  quick: boolean;
  rounds: number;
  requests: number;
  say(line?: string): void;
  results: Record<string, unknown>;
}

const digestOf = (body: string) => `sha-256=:${createHash('sha256').update(body).digest('base64')}:`;
const median = (values: number[]) => percentile(Float64Array.from(values).sort(), 0.5);

async function postJson(address: string, route: string, body: unknown): Promise<{ status: number; body: any }> {
  const res = await fetch(`http://${address}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, body: await res.json() };
}

export async function messagesSection(ctx: MessagesBenchContext): Promise<void> {
  const { domain, say } = ctx;
  say(`\n== messages: check over loopback HTTP/1.1 (a redelivered message, one token), ${CONNECTIONS} connections, median of ${ctx.rounds} rounds; seal one at a time`);
  const serverCert = issueCert(domain.ca, domain.dir, { name: 'bench-messages-issuer', ipSans: ['127.0.0.1'], serverAuth: true });
  const store = new MemoryStore();
  const issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: off
issuer: ${ctx.issuer}
tls: { cert: ${serverCert.certPath}, key: ${serverCert.keyPath}, client_ca: ${domain.ca.certPath} }
keys: { dir: ${path.join(domain.dir, 'messages-issuer-keys')} }
rate_limit: { per_second: 100000, burst: 100000 }
clients:
  - { id: ${ctx.audience}, grants: [client_credentials], message_audiences: [${ctx.audience}], scopes: [jobs:run] }
`, { baseDir: domain.dir }), { log: silentLogger, store });
  const orders = domain.workloads.orders;
  const servers: ServerProcess[] = [];
  const client = new IssuerClient({ tokenEndpoint: `${issuer.url}/token`, caFile: domain.ca.certPath, certFile: orders.certPath, keyFile: orders.keyPath, timeoutMs: 5_000 });
  try {
    const ports = { grpc: await freePort(), admin: await freePort() };
    const messagesPort = await freePort();
    const config = {
      listen: `127.0.0.1:${ports.grpc}`,
      admin: `127.0.0.1:${ports.admin}`,
      audience: ctx.audience,
      issuers: [{ issuer: ctx.issuer, jwks_uri: `${issuer.url}/.well-known/jwks.json`, jwks_ca_file: domain.ca.certPath, algorithms: ['ES256'] }],
      routes: [{ name: 'health', path: '/healthz', public: true }],
      issuer_client: { token_endpoint: `${issuer.url}/token`, ca_file: domain.ca.certPath, cert_file: orders.certPath, key_file: orders.keyPath },
      messages: {
        listen: `127.0.0.1:${messagesPort}`,
        outgoing: [{ destination: DESTINATION, audience: ctx.audience, scopes: ['jobs:run'], without_handle: 'client_credentials' }],
        incoming: [{ destination: DESTINATION, scopes: ['jobs:run'] }],
      },
    };
    const file = path.join(domain.dir, 'messages-sidecar.yaml');
    writeFileSync(file, stringify(config));
    const sidecar = await startHopguard('hopguard-messages', file, ports, DEPLOYED_NODE_FLAGS);
    servers.push(sidecar);
    const api = `127.0.0.1:${messagesPort}`;

    // One job, sealed and accepted once; the load is its redelivery.
    const job = JSON.stringify({ order: 42, items: ['a', 'b', 'c'] });
    const sealed = await postJson(api, '/v1/messages/seal', { destination: DESTINATION, digest: digestOf(job) });
    if (sealed.status !== 200) throw new Error(`seal: ${JSON.stringify(sealed.body)}`);
    const checkBody = { token: sealed.body.token, destination: DESTINATION, digest: digestOf(job), redelivered: true };
    const first = await postJson(api, '/v1/messages/check', checkBody);
    if (first.body.decision !== 'allow') throw new Error(`check: ${JSON.stringify(first.body)}`);
    const answerBytes = Buffer.byteLength(JSON.stringify(first.body));
    const bodyFile = path.join(domain.dir, 'messages-check.json');
    writeFileSync(bodyFile, JSON.stringify(checkBody));
    const floor = await startFloor('floor-http', NOOP_HTTP, ['0', String(answerBytes)]);
    servers.push(floor);

    const targets = [
      { key: 'floor', title: '(a) floor: node http, reads the body, fixed answer', url: `http://${floor.address}/v1/messages/check` },
      { key: 'check', title: '(m) messages check, redelivered, cache hit', url: `http://${api}/v1/messages/check` },
    ];
    const rates: Record<string, number[]> = { floor: [], check: [] };
    const p99: Record<string, number[]> = { floor: [], check: [] };
    const warmup = Math.max(2_000, Math.round(ctx.requests / 5));
    for (const target of targets) await runH2load({ url: target.url, bodyFile, requests: warmup, connections: CONNECTIONS, streamsPerConnection: 1, http1: true });
    for (let round = 0; round < ctx.rounds; round++) {
      for (const target of targets) {
        const logFile = path.join(domain.dir, `messages-${target.key}.log`);
        const run = await runH2load({ url: target.url, bodyFile, requests: ctx.requests, connections: CONNECTIONS, streamsPerConnection: 1, http1: true, logFile });
        // Every answer must be the 200 allow: a denial (token_replayed, say) is 4xx.
        if (run.status2xx !== ctx.requests || run.failed > 0) throw new Error(`${target.key}: ${run.status2xx} of ${ctx.requests} answered 2xx, ${run.failed} failed`);
        rates[target.key]!.push(run.rate);
        p99[target.key]!.push(percentile(run.latenciesUs, 0.99) / 1000);
      }
    }
    const rows = targets.map((t) => ({
      title: t.title, checksPerSecond: Math.round(median(rates[t.key]!)), p99Ms: Number(median(p99[t.key]!).toFixed(2)),
      xFloor: Number((median(rates[t.key]!) / median(rates.floor!)).toFixed(2)),
    }));
    for (const row of rows) say(`  ${row.title.padEnd(56)} ${String(row.checksPerSecond).padStart(8)} checks/s  p99 ${row.p99Ms.toFixed(2)} ms  ${row.xFloor.toFixed(2)} x floor`);

    // Seal: one issuer round trip (client credentials for a message token over mTLS, keep-alive),
    // next to the same request made straight from this process with the same certificate.
    const n = ctx.quick ? 50 : 300;
    const time = async (once: () => Promise<unknown>) => {
      const times: number[] = [];
      for (let i = -5; i < n; i++) {
        const started = performance.now();
        await once();
        if (i >= 0) times.push(performance.now() - started);
      }
      return { medianMs: Number(median(times).toFixed(2)), p90Ms: Number(percentile(Float64Array.from(times).sort(), 0.9).toFixed(2)) };
    };
    let k = 0;
    const seal = await time(async () => {
      const reply = await postJson(api, '/v1/messages/seal', { destination: DESTINATION, digest: digestOf(`job ${k++}`) });
      if (reply.status !== 200) throw new Error(`seal: ${JSON.stringify(reply.body)}`);
    });
    const direct = await time(() => client.messageToken({
      audience: ctx.audience, scopes: ['jobs:run'], maxDelayMs: 900_000, message: { destination: DESTINATION, digest: digestOf(`direct ${k++}`) },
    }));
    say(`  seal, ${n} one at a time: median ${seal.medianMs.toFixed(2)} ms, p90 ${seal.p90Ms.toFixed(2)} ms;`
      + ` the issuer request alone (from this process, same certificate): median ${direct.medianMs.toFixed(2)} ms, p90 ${direct.p90Ms.toFixed(2)} ms`);
    ctx.results.messages = { connections: CONNECTIONS, rows, seal: { count: n, ...seal }, issuerRequest: direct };
  } finally {
    client.close();
    for (const server of servers) await server.stop();
    await issuer.stop();
    await store.close();
  }
}
