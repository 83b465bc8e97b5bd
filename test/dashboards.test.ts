import { readFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { startIssuer, type RunningIssuer } from '../src/issuer/issuer-service.js';
import { silentLogger } from '../src/telemetry/log.js';
import { documents } from './support/manifests.js';
import { STRANGER, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';
import { startOtlpHttpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';

/**
 * Issue 16 #4, #5: the Grafana dashboards (dashboards/) and the alert rules read only what hopguard
 * exports: every metric they query is on a real sidecar's or issuer's /metrics, and every span
 * attribute the Tempo dashboard's TraceQL reads is on the spans a real sidecar exports.
 */

const ROOT = path.resolve(import.meta.dirname, '..');
type Panel = { id: number; type: string; title: string; gridPos: { y: number }; datasource?: { type: string }; targets?: { expr?: string; query?: string; queryType?: string; datasource: { type: string } }[] };
const readJson = (file: string) => JSON.parse(readFileSync(path.join(ROOT, file), 'utf8'));
const METRICS_DASHBOARD = readJson('dashboards/hopguard.json');
const TRACES_DASHBOARD = readJson('dashboards/hopguard-traces.json');
const RULES = documents(readFileSync(path.join(ROOT, 'alerts/hopguard.rules.yaml'), 'utf8'))[0]!;
const targetsOf = (dashboard: { panels: Panel[] }) => dashboard.panels.flatMap((p) => p.targets ?? []);

let fixtures: Fixtures;
let receiver: OtlpReceiver;
let sidecar: Running;
let mesh: TrustDomain<'client'>;
let issuer: RunningIssuer;
let sidecarMetrics: string;

beforeAll(async () => {
  fixtures = await createFixtures();
  receiver = await startOtlpHttpReceiver();
  sidecar = await startServer(authzConfig(fixtures, {
    telemetry: { tracing: true, otlpMetrics: false, serviceName: 'orders-hopguard', endpoint: receiver.endpoint, protocol: 'http/protobuf' },
  }));
  mesh = await createTrustDomain('dashboards', { client: 'spiffe://dashboards.test/ns/shop/sa/client' });
  const cert = issueCert(mesh.ca, mesh.dir, { name: 'issuer-server', ipSans: ['127.0.0.1'], serverAuth: true });
  issuer = await startIssuer(parseIssuerConfig(`
listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuer: https://sts.dashboards.test
tls: { cert: ${cert.certPath}, key: ${cert.keyPath}, client_ca: ${mesh.ca.certPath} }
keys: { dir: ${path.join(mesh.dir, 'keys')} }
clients:
  - { id: 'spiffe://dashboards.test/ns/shop/sa/client', grants: [client_credentials] }
`, { baseDir: mesh.dir }), { log: silentLogger });
  const token = await fixtures.token();
  const asCheckout = { principal: 'spiffe://test.local/ns/shop/sa/checkout', certificatePem: fixtures.checkout.certPem };
  // An allow, a denial, and the same token from another workload's certificate: a leak.
  expect((await sidecar.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` }, ...asCheckout })).allowed).toBe(true);
  expect((await sidecar.envoy.check({ path: '/orders/1' })).allowed).toBe(false);
  const leaked = await sidecar.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` }, principal: STRANGER, certificatePem: fixtures.stranger.certPem });
  expect(leaked.body?.code).toBe('binding_mismatch');
  sidecarMetrics = await (await fetch(`http://${sidecar.authz.adminAddress}/metrics`)).text();
  // Stopping exports the spans still batched.
  await sidecar.stop();
}, 60_000);

afterAll(async () => {
  await issuer?.stop();
  await receiver?.close();
  fixtures?.cleanup();
  mesh?.cleanup();
});

describe('dashboards/hopguard.json', () => {
  it('has a renewal-health row under the existing panels, panel ids unique', () => {
    const panels: Panel[] = METRICS_DASHBOARD.panels;
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const row = panels.find((p) => p.type === 'row' && p.title === 'Renewal health')!;
    expect(row).toBeDefined();
    const below = panels.filter((p) => p.gridPos.y > row.gridPos.y);
    expect(below.map((p) => p.title)).toEqual(expect.arrayContaining(['Issuer answers by event and outcome', 'Renewal error ratio', 'Security events by type and outcome']));
    expect(panels.filter((p) => p.type !== 'row' && p.gridPos.y < row.gridPos.y).length).toBeGreaterThanOrEqual(7);
  });
});

describe('the metrics the dashboards and the alert rules read', () => {
  it('are all on a sidecar\'s or the issuer\'s /metrics', async () => {
    const exported = `${sidecarMetrics}\n${await (await fetch(`http://${issuer.adminAddress}/metrics`)).text()}`;
    const exprs = [
      ...targetsOf(METRICS_DASHBOARD).map((t) => t.expr!),
      ...RULES.groups.flatMap((g: { rules: { expr: string }[] }) => g.rules.map((r) => r.expr)),
    ];
    const read = [...new Set(exprs.flatMap((expr) => [...expr.matchAll(/\bhopguard_[a-z_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''))))];
    expect(read.length).toBeGreaterThanOrEqual(14);
    expect(read.filter((name) => !new RegExp(`^${name}(_bucket)?[{ ]`, 'm').test(exported))).toEqual([]);
  });
});

describe('dashboards/hopguard-traces.json', () => {
  it('queries Tempo with TraceQL only', () => {
    const panels: Panel[] = TRACES_DASHBOARD.panels;
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    expect(TRACES_DASHBOARD.templating.list.find((v: { name: string }) => v.name === 'datasource')).toMatchObject({ type: 'datasource', query: 'tempo' });
    for (const target of targetsOf(TRACES_DASHBOARD)) expect(target).toMatchObject({ queryType: 'traceql', datasource: { type: 'tempo' } });
    expect(panels.map((p) => p.title)).toEqual(expect.arrayContaining(['Denied hops by code and route', 'Leaked tokens', 'One request\'s hops']));
  });

  it('reads only span names and hopguard.* attributes a sidecar exports, hopguard.leak included', async () => {
    await expect.poll(() => receiver.spans.filter((s) => s.name === 'hopguard.check').length).toBe(3);
    const checks = receiver.spans.filter((s) => s.name === 'hopguard.check');
    const attributes = new Set(checks.flatMap((s) => Object.keys(s.attributes)));
    const queries = targetsOf(TRACES_DASHBOARD).map((t) => t.query!);
    const read = [...new Set(queries.flatMap((q) => [...q.matchAll(/span\.(hopguard\.[a-z_.]+)/g)].map((m) => m[1]!)))];
    expect(read).toEqual(expect.arrayContaining(['hopguard.decision', 'hopguard.deny_code', 'hopguard.route', 'hopguard.leak']));
    expect(read.filter((name) => !attributes.has(name))).toEqual([]);
    expect(checks.map((s) => s.attributes['hopguard.leak']).filter(Boolean)).toEqual(['wrong_certificate']);
    const names = queries.flatMap((q) => [...q.matchAll(/name =~ "([^"]+)"/g)].flatMap((m) => m[1]!.split('|')));
    expect(names).toContain('hopguard.check');
  });
});
