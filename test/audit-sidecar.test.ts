import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readEd25519Key } from '../src/audit/audit-chain.js';
import type { AuditConfig } from '../src/audit/audit-config.js';
import { verifyAuditLog } from '../src/audit/audit-verify.js';
import { EnvoyClient } from '../src/authz/envoy-client.js';
import { AUDIENCE, CHECKOUT, ISSUER, authzConfig, authzYaml, createFixtures, startServer, type Fixtures } from './support/harness.js';
import { startOtlpHttpReceiver } from './support/otlp-receiver.js';
import { writeAuditKeyPair } from './support/audit-keys.js';
import { runCli, spawnCli } from './support/process.js';

let fixtures: Fixtures;
let publicKeyPath: string;

beforeAll(async () => {
  fixtures = await createFixtures();
  publicKeyPath = writeAuditKeyPair(fixtures.dir).publicPath;
});
afterAll(() => fixtures.cleanup());

const traceparent = (traceId: string) => `00-${traceId}-00f067aa0ba902b7-01`;
// Sampling reads the trace id's last 32 bits as a fraction: 0 is always kept, 2^32-1 never (rate 0.5).
const KEPT = '4bf92f3577b34da6a3ce929d00000000';
const SKIPPED = '4bf92f3577b34da6a3ce929dffffffff';

/** Runs `checks` against a sidecar auditing to a fresh file; returns its validation records after a clean stop. */
async function audited(name: string, audit: Partial<AuditConfig>, checks: (check: (traceId: string, withToken: boolean) => Promise<string | undefined>) => Promise<void>) {
  const path = join(fixtures.dir, `${name}.jsonl`);
  const server = await startServer(authzConfig(fixtures, {
    audit: {
      output: { kind: 'file', path }, allows: 'all', allowSampleRate: 1, signingKeyFile: join(fixtures.dir, 'audit.pem'),
      checkpointRecords: 1000, checkpointIntervalMs: 10_000, flushIntervalMs: 20, ...audit,
    },
  }));
  const token = await fixtures.token({ jti: `${name}-1` });
  try {
    await checks(async (traceId, withToken) => {
      const out = await server.envoy.check({
        path: '/orders/1', headers: withToken ? { authorization: `Bearer ${token}` } : {}, traceparent: traceparent(traceId),
        principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
      });
      return out.body?.trace_id;
    });
  } finally {
    await server.stop();
  }
  const report = await verifyAuditLog(path, [readEd25519Key(publicKeyPath, 'public')]);
  expect(report.findings).toEqual([]);
  expect(report.closed).toBe(true);
  return readFileSync(path, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'validation');
}

describe('the sidecar\'s audit log', () => {
  it('records each decision with its trace id, and verifies after a clean stop', async () => {
    let deniedTrace: string | undefined;
    const records = await audited('all', {}, async (check) => {
      await check(KEPT, true);
      deniedTrace = await check(SKIPPED, false);
    });
    expect(deniedTrace).toBe(SKIPPED);
    expect(records).toEqual([
      expect.objectContaining({
        decision: 'allow', route: 'read-orders', issuer: ISSUER, audience: AUDIENCE, subject: CHECKOUT, client: CHECKOUT,
        caller: CHECKOUT, trace_id: KEPT,
      }),
      expect.objectContaining({ decision: 'deny', code: 'missing_token', route: 'read-orders', trace_id: SKIPPED }),
    ]);
  });

  it('samples allows by trace id, and keeps every denial', async () => {
    const records = await audited('sampled', { allows: 'sampled', allowSampleRate: 0.5 }, async (check) => {
      await check(KEPT, true);
      await check(SKIPPED, true);
      await check(SKIPPED, false);
    });
    expect(records.map((r) => [r.decision, r.trace_id])).toEqual([['allow', KEPT], ['deny', SKIPPED]]);
  });

  it('records no allow with allows: none', async () => {
    const records = await audited('none', { allows: 'none' }, async (check) => {
      await check(KEPT, true);
      await check(KEPT, false);
    });
    expect(records.map((r) => r.decision)).toEqual(['deny']);
  });
});

describe('hopguard authz with audit: and telemetry: in its config file', () => {
  it('audits and traces as configured, closes the log on SIGTERM, and the log verifies with hopguard audit verify', async () => {
    const receiver = await startOtlpHttpReceiver();
    const config = join(fixtures.dir, 'authz-audited.yaml');
    writeFileSync(config, `${authzYaml(fixtures)}routes:
  - name: read-orders
    path_prefix: /orders/
telemetry:
  tracing: true
  service_name: cli-hopguard
  endpoint: ${receiver.endpoint}
audit:
  output: cli-audit.jsonl
  signing_key_file: audit.pem
  allows: all
`);
    const proc = spawnCli(['authz', '--config', config]);
    try {
      const started = await proc.logEvent('authz_started');
      expect(started).toMatchObject({ tracing: true, audit: 'file' });
      const envoy = new EnvoyClient(started.grpc);
      const out = await envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${await fixtures.token()}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });
      envoy.close();
      expect(out.allowed).toBe(true);
    } finally {
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      await receiver.close();
    }
    expect(receiver.spans.map((span) => [span.service, span.name])).toEqual([['cli-hopguard', 'hopguard.check']]);
    const verify = spawnCli(['audit', 'verify', join(fixtures.dir, 'cli-audit.jsonl'), '--key', publicKeyPath]);
    expect(await verify.exited).toBe(0);
    expect(verify.stdout()).toMatch(/3 lines, 2 records, 1 checkpoint; signed through line 3 \(closed\)\nhead: [A-Za-z0-9_-]{43} \(line 3; log [A-Za-z0-9_-]{16}, run 1, writer "[^"]+"\)\nverified/);
  });

  it('a restart continues the file as run 2, logs each run\'s closing head on stderr, and that head, anchored, catches a cut back to run 1', async () => {
    const config = join(fixtures.dir, 'authz-runs.yaml');
    const auditFile = join(fixtures.dir, 'runs-audit.jsonl');
    writeFileSync(config, `${authzYaml(fixtures)}routes:
  - name: read-orders
    path_prefix: /orders/
audit:
  output: runs-audit.jsonl
  signing_key_file: audit.pem
  writer: orders-sidecar
`);
    const runOnce = async () => {
      const proc = spawnCli(['authz', '--config', config]);
      const envoy = new EnvoyClient((await proc.logEvent('authz_started')).grpc);
      expect((await envoy.check({ path: '/orders/1', headers: {}, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem })).allowed).toBe(false);
      envoy.close();
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      return { closed: await proc.logEvent('audit_log_closed'), size: readFileSync(auditFile).length };
    };
    const first = await runOnce();
    const second = await runOnce();
    expect([first.closed.run, second.closed.run]).toEqual([1, 2]);
    expect(second.closed).toMatchObject({ log: first.closed.log, writer: 'orders-sidecar' });

    const verify = (...options: string[]) => runCli(['audit', 'verify', auditFile, '--key', publicKeyPath, ...options]);
    const anchored = await verify('--head', second.closed.head, '--writer', 'orders-sidecar');
    expect(anchored.code).toBe(0);
    expect(anchored.stdout).toContain(`head: ${second.closed.head} (line `);

    writeFileSync(auditFile, readFileSync(auditFile).subarray(0, first.size));
    const cut = await verify('--head', second.closed.head);
    expect(cut.code).toBe(1);
    expect(cut.stdout).toContain(`head: ${first.closed.head} (line `);
    expect(cut.stdout).toContain(`FAIL anchor: the expected head ${second.closed.head} is not in this log`);
  });
});
