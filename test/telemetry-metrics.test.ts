import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MemoryStore } from '../src/store/memory-store.js';
import type { StoreHealth } from '../src/vocabulary/store-health.js';
import { CHECKOUT, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';

/**
 * The Prometheus text exposition format (0.0.4), strictly: every line is a HELP, a TYPE, a
 * comment or a sample; a family's TYPE comes before its samples; label values use the format's escapes;
 * histogram buckets are cumulative and end at +Inf with the count.
 */
interface Sample { name: string; labels: Record<string, string>; value: number }

const NAME = '[a-zA-Z_:][a-zA-Z0-9_:]*';
const LABEL = '([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\\\\n]|\\\\[\\\\"n])*)"';
const SAMPLE = new RegExp(`^(${NAME})(?:\\{((?:${LABEL})(?:,${LABEL})*)?,?\\})? (\\S+)(?: -?\\d+)?$`);
const VALUE = /^(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+)|NaN|[+-]Inf)$/;

function parsePrometheus(text: string): { types: Map<string, string>; samples: Sample[] } {
  const types = new Map<string, string>();
  const samples: Sample[] = [];
  for (const [index, line] of text.split('\n').entries()) {
    const where = `line ${index + 1}: ${line}`;
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) (.*)$/.exec(line);
    if (meta) {
      expect(meta[2], where).toMatch(new RegExp(`^${NAME}$`));
      if (meta[1] === 'TYPE') {
        expect(['counter', 'gauge', 'histogram', 'summary', 'untyped'], where).toContain(meta[3]);
        expect(types.has(meta[2]!), `${where}: second TYPE`).toBe(false);
        types.set(meta[2]!, meta[3]!);
      }
      continue;
    }
    // Any other "#" line is a comment in this format (the exporter writes OpenMetrics' "# UNIT" there).
    if (line.startsWith('#')) continue;
    const match = SAMPLE.exec(line);
    expect(match, where).not.toBeNull();
    const [, name = '', labelText = '', ...rest] = match!;
    const value = rest.at(-1)!;
    expect(value, where).toMatch(VALUE);
    const family = name.replace(/_(bucket|sum|count|total)$/, '');
    expect(types.has(name) || types.has(family), `${where}: sample before its TYPE`).toBe(true);
    const labels = Object.fromEntries([...labelText.matchAll(new RegExp(LABEL, 'g'))].map(([, k, v]) => [k!, v!.replace(/\\(.)/g, (_, c) => (c === 'n' ? '\n' : c))]));
    samples.push({ name, labels, value: Number(value.replace('Inf', 'Infinity')) });
  }
  for (const [family, type] of types) {
    if (type !== 'histogram') continue;
    const series = new Map<string, Sample[]>();
    for (const s of samples.filter((x) => x.name === `${family}_bucket`)) {
      const { le: _le, ...rest } = s.labels;
      const key = JSON.stringify(rest);
      series.set(key, [...(series.get(key) ?? []), s]);
    }
    for (const [key, buckets] of series) {
      const counts = buckets.map((b) => b.value);
      expect(counts, `${family} buckets are cumulative`).toEqual([...counts].sort((a, b) => a - b));
      expect(buckets.at(-1)!.labels.le).toBe('+Inf');
      const count = samples.find((s) => s.name === `${family}_count` && JSON.stringify(s.labels) === key);
      expect(count?.value, `${family}_count`).toBe(counts.at(-1));
    }
  }
  return { types, samples };
}

let fixtures: Fixtures;
let server: Running;
let health: StoreHealth = { state: 'ok' };
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });
const asCheckout = () => ({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });

async function scrape() {
  const response = await fetch(`http://${server.authz.adminAddress}/metrics`);
  expect(response.status).toBe(200);
  expect(response.headers.get('content-type')).toContain('text/plain');
  return parsePrometheus(await response.text());
}

const value = (samples: Sample[], name: string, labels: Record<string, string> = {}) =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)).reduce((sum, s) => sum + s.value, 0);

beforeAll(async () => {
  fixtures = await createFixtures();
  const store = new MemoryStore();
  store.health = () => health;
  writeFileSync(join(fixtures.dir, 'audit.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  server = await startServer(authzConfig(fixtures, {
    audit: {
      output: { kind: 'file', path: join(fixtures.dir, 'audit.jsonl') }, allows: 'all', allowSampleRate: 1,
      signingKeyFile: join(fixtures.dir, 'audit.pem'), checkpointRecords: 100, checkpointIntervalMs: 10_000, flushIntervalMs: 10,
    },
  }), store);
});
afterAll(async () => {
  await server.stop();
  fixtures.cleanup();
});

describe('/metrics', () => {
  it('parses as Prometheus text, and its counters match the decisions made', async () => {
    const token = await fixtures.token();
    const made = { allow: 0, missing_token: 0, no_route: 0, audience_mismatch: 0 };
    for (let i = 0; i < 3; i++) made.allow += Number((await server.envoy.check({ path: '/orders/1', headers: bearer(token), ...asCheckout() })).allowed);
    for (let i = 0; i < 2; i++) made.missing_token += Number((await server.envoy.check({ path: '/orders/1', ...asCheckout() })).body?.code === 'missing_token');
    made.no_route += Number((await server.envoy.check({ path: '/nowhere', headers: bearer(token), ...asCheckout() })).body?.code === 'no_route');
    const foreign = await fixtures.token({ aud: 'spiffe://test.local/ns/shop/sa/payments' });
    made.audience_mismatch += Number((await server.envoy.check({ path: '/orders/1', headers: bearer(foreign), ...asCheckout() })).body?.code === 'audience_mismatch');
    expect(made).toEqual({ allow: 3, missing_token: 2, no_route: 1, audience_mismatch: 1 });

    const { types, samples } = await scrape();
    expect(types.get('hopguard_decisions_total') ?? types.get('hopguard_decisions')).toBe('counter');
    expect(types.get('hopguard_check_duration')).toBe('histogram');
    expect(value(samples, 'hopguard_decisions_total', { decision: 'allow', code: 'allowed', route: 'read-orders' })).toBe(3);
    expect(value(samples, 'hopguard_decisions_total', { code: 'missing_token', route: 'read-orders' })).toBe(2);
    expect(value(samples, 'hopguard_decisions_total', { code: 'no_route', route: '' })).toBe(1);
    expect(value(samples, 'hopguard_decisions_total', { code: 'audience_mismatch' })).toBe(1);
    expect(value(samples, 'hopguard_decisions_total')).toBe(7);
    expect(value(samples, 'hopguard_check_duration_count')).toBe(7);
    // The same token: verified once, then served from the cache.
    expect(value(samples, 'hopguard_verification_cache_lookups_total', { result: 'miss' })).toBe(1);
    expect(value(samples, 'hopguard_verification_cache_lookups_total', { result: 'hit' })).toBe(2);
    expect(value(samples, 'hopguard_jwks_fetches_total', { outcome: 'ok' })).toBe(1);
    expect(value(samples, 'hopguard_store_state', { state: 'ok' })).toBe(1);
    expect(value(samples, 'hopguard_revocation_feed_lag')).toBe(0);
    // Every decision is audited (allows: all) once the writer's next flush has run.
    await expect.poll(async () => value((await scrape()).samples, 'hopguard_audit_records_total', { outcome: 'written' })).toBe(7);
  });

  it('has every series the Grafana dashboard queries', async () => {
    const dashboard = JSON.parse(readFileSync(new URL('../dashboards/hopguard.json', import.meta.url), 'utf8'));
    // The issuer's own series (the renewal-health row) are on the issuer's /metrics: test/dashboards.test.ts.
    const queried = new Set<string>(dashboard.panels.flatMap((panel: { targets?: { expr: string }[] }) =>
      (panel.targets ?? []).flatMap((target) => target.expr.match(/hopguard_[a-z_]+/g) ?? [])).filter((name: string) => !name.startsWith('hopguard_issuer_')));
    expect(queried.size).toBeGreaterThanOrEqual(7);
    const served = new Set((await scrape()).samples.map((s) => s.name));
    for (const name of queried) expect(served, name).toContain(name);
  });

  it('shows the store\'s state and how stale the revocation mirror may be', async () => {
    health = { state: 'degraded', sinceMs: Date.now() - 5_000 };
    let { samples } = await scrape();
    expect(value(samples, 'hopguard_store_state', { state: 'degraded' })).toBe(1);
    expect(value(samples, 'hopguard_store_state', { state: 'ok' })).toBe(0);
    expect(value(samples, 'hopguard_revocation_feed_lag')).toBeGreaterThanOrEqual(5);
    // Past max_staleness the store says only "unavailable": the lag still counts from when the feed was lost.
    health = { state: 'unavailable' };
    ({ samples } = await scrape());
    expect(value(samples, 'hopguard_store_state', { state: 'unavailable' })).toBe(1);
    expect(value(samples, 'hopguard_revocation_feed_lag')).toBeGreaterThanOrEqual(5);
    health = { state: 'ok' };
    ({ samples } = await scrape());
    expect(value(samples, 'hopguard_revocation_feed_lag')).toBe(0);
  });
});
