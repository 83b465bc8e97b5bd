/**
 * What tracing and the audit log cost on the check path, in one run, in one process:
 *
 * 1. checks/s of a sidecar over gRPC with them off, tracing on, audit on (every allow
 *    recorded), and both (client and server share the process);
 * 2. the time they add to one check: the span's start and end, and the audit record, in a
 *    loop that yields to the event loop so batch exports and audit flushes run inside the
 *    measured time too.
 *
 *   npm run bench:telemetry
 *
 * Every check is an allow of a cached token on a non-one-time route (the cheapest check, so
 * the overhead shows most), sampled by its traceparent so each one makes a span. Spans go to a
 * loopback OTLP/HTTP endpoint that discards them; the audit log goes to a temp file.
 */

import { spawn } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Metadata } from '@grpc/grpc-js';
import { openAuditLog } from '../src/audit/audit-log.js';
import { validationAudit } from '../src/audit/validation-audit.js';
import { checkRequestMessage } from '../src/authz/envoy-client.js';
import { readHopRequest } from '../src/authz/hop-request.js';
import type { AuthzConfig } from '../src/config/authz-config.js';
import { checkSpans } from '../src/telemetry/check-span.js';
import { silentLogger } from '../src/telemetry/log.js';
import { startTelemetry } from '../src/telemetry/telemetry.js';
import { TRACING_OFF } from '../src/telemetry/tracing.js';
import { fingerprint } from '../src/token/access-token-verifier.js';
import type { Decision } from '../src/vocabulary/decision.js';
import { AUDIENCE, CHECKOUT, DEFAULT_ROUTES, ISSUER, authzConfig, createFixtures, startServer, type Fixtures } from '../test/support/harness.js';

const WARMUP_MS = 1_000;
const MEASURE_MS = 3_000;
const IN_FLIGHT = 32;
const ROUNDS = 2;
const ADDED_MS = 1_500;

/** A collector that discards, in a process of its own: receiving spans is not the sidecar's cost. */
async function discardingCollector(): Promise<{ endpoint: string; close: () => void }> {
  const child = spawn(process.execPath, ['-e', `
    const server = require('node:http').createServer((req, res) => { req.resume(); req.on('end', () => res.writeHead(200).end()); });
    server.listen(0, '127.0.0.1', () => console.log(server.address().port));
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const [port] = await once(child.stdout!, 'data');
  return { endpoint: `http://127.0.0.1:${String(port).trim()}`, close: () => child.kill() };
}

async function checksPerSecond(fixtures: Fixtures, config: AuthzConfig): Promise<number> {
  const server = await startServer(config);
  const token = await fixtures.token();
  const input = { path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem };
  try {
    const run = async (ms: number) => {
      let done = 0;
      const until = performance.now() + ms;
      await Promise.all(Array.from({ length: IN_FLIGHT }, async () => {
        while (performance.now() < until) {
          const out = await server.envoy.check({ ...input, traceparent: `00-${randomBytes(16).toString('hex')}-${randomBytes(8).toString('hex')}-01` });
          if (!out.allowed) throw new Error(`unexpected denial: ${out.body?.code}`);
          done++;
        }
      }));
      return done / (ms / 1000);
    };
    await run(WARMUP_MS);
    return await run(MEASURE_MS);
  } finally {
    await server.stop();
  }
}

/** Microseconds of one call of `fn`, averaged over ADDED_MS, yielding every 200 calls. */
async function microseconds(fn: () => void): Promise<number> {
  let calls = 0;
  const started = performance.now();
  while (performance.now() - started < ADDED_MS) {
    for (let i = 0; i < 200; i++) fn();
    calls += 200;
    await new Promise((resolve) => setImmediate(resolve));
  }
  return ((performance.now() - started) * 1000) / calls;
}

async function addedPerCheck(tracingConfig: AuthzConfig['telemetry'], auditConfig: AuthzConfig['audit']): Promise<[string, number][]> {
  // Made beforehand: gRPC hands the server its metadata, and ids are not what is measured.
  const traceIds = Array.from({ length: 1024 }, () => randomBytes(16).toString('hex'));
  const metadatas = traceIds.map((traceId) => {
    const metadata = new Metadata();
    metadata.set('traceparent', `00-${traceId}-${randomBytes(8).toString('hex')}-01`);
    return metadata;
  });
  let next = 0;
  const request = readHopRequest(checkRequestMessage({ path: '/orders/1', headers: { 'x-request-id': 'bench' }, principal: CHECKOUT }));
  const now = Math.floor(Date.now() / 1000);
  const decision: Decision = {
    allowed: true, route: DEFAULT_ROUTES[1]!, binding: 'mtls', cacheHit: true,
    token: {
      iss: ISSUER, sub: CHECKOUT, clientId: CHECKOUT, jti: 'bench', aud: [AUDIENCE], iat: now, exp: now + 300,
      scope: 'orders:read', scopes: new Set(['orders:read']), fingerprint: fingerprint(ISSUER, 'bench'), claims: {},
    },
  };
  const spanOnce = (start: ReturnType<typeof checkSpans>) => () => {
    start(metadatas[next++ & 1023]!, request).end(decision, request);
  };
  const telemetry = await startTelemetry(tracingConfig);
  const audit = await openAuditLog(auditConfig, { log: silentLogger });
  const record = validationAudit(audit, auditConfig, AUDIENCE);
  try {
    const baseline = await microseconds(spanOnce(checkSpans(TRACING_OFF, AUDIENCE)));
    return [
      ['tracing off (trace id only)', baseline],
      ['tracing on (span, exported)', await microseconds(spanOnce(checkSpans(telemetry.tracing, AUDIENCE)))],
      ['audit record (every allow)', await microseconds(() => record(decision, request, traceIds[next++ & 1023]!))],
    ];
  } finally {
    await audit.close();
    await telemetry.shutdown();
  }
}

async function main(): Promise<void> {
  const fixtures = await createFixtures();
  const collector = await discardingCollector();
  const { privateKey } = generateKeyPairSync('ed25519');
  const keyFile = join(fixtures.dir, 'audit.pem');
  writeFileSync(keyFile, privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const tracing = { tracing: true, otlpMetrics: false, endpoint: collector.endpoint, protocol: 'http/protobuf' } as const;
  const audit = (name: string): AuthzConfig['audit'] => ({
    output: { kind: 'file', path: join(fixtures.dir, `${name}.jsonl`) }, allows: 'all', allowSampleRate: 1, signingKeyFile: keyFile,
    checkpointRecords: 1000, checkpointIntervalMs: 10_000, flushIntervalMs: 250,
  });
  const variants: [string, (round: number) => Partial<AuthzConfig>][] = [
    ['off', () => ({})],
    ['tracing', () => ({ telemetry: tracing })],
    ['audit (all allows)', (round) => ({ audit: audit(`audit-${round}`) })],
    ['tracing + audit', (round) => ({ telemetry: tracing, audit: audit(`both-${round}`) })],
  ];
  const results = new Map<string, number[]>(variants.map(([name]) => [name, []]));
  let added: [string, number][] = [];
  try {
    added = await addedPerCheck(tracing, audit('added'));
    // Rounds interleave the variants, so drift (thermal, GC, other load) spreads over all of them.
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, overrides] of variants) results.get(name)!.push(await checksPerSecond(fixtures, authzConfig(fixtures, overrides(round))));
    }
  } finally {
    collector.close();
    fixtures.cleanup();
  }
  const best = (name: string) => Math.max(...results.get(name)!);
  const off = best('off');
  console.log(`checks/s, ${IN_FLIGHT} in flight, best of ${ROUNDS} x ${MEASURE_MS / 1000}s (node ${process.version}):`);
  for (const [name] of variants) {
    const rate = best(name);
    const change = name === 'off' ? '' : ` (${((rate / off - 1) * 100).toFixed(1)}%)`;
    console.log(`  ${name.padEnd(20)} ${Math.round(rate).toString().padStart(7)}${change}   rounds: ${results.get(name)!.map(Math.round).join(', ')}`);
  }
  console.log(`time per check, averaged over ${ADDED_MS / 1000}s with exports and flushes running:`);
  for (const [name, us] of added) console.log(`  ${name.padEnd(28)} ${us.toFixed(2).padStart(7)} µs`);
}

await main();
