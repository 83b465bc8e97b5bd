import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EnvoyClient } from '../src/authz/envoy-client.js';
import { configMapDir, logEvents, reloadConfig, reloads, replaceFile, start, stop, waitFor } from './support/config-reload.js';
import { CHECKOUT, createFixtures, type Fixtures } from './support/harness.js';

/**
 * Reload under load: a real `hopguard authz` process answers checks from a load generator (several
 * gRPC connections, each sending one check after another) while its config file is replaced 20
 * times, valid and invalid alternately, by a rename over the file and by a ConfigMap ..data swap.
 * Every check must be answered with a decision (no gRPC error), decisions must follow each valid
 * config within 2 s and never flap back, an invalid config must never take effect, and
 * hopguard_config_reloads_total must count 10 ok and 10 failed.
 */

let fixtures: Fixtures;
beforeAll(async () => {
  fixtures = await createFixtures();
});
afterAll(() => fixtures.cleanup());

interface Sample {
  start: number;
  end: number;
  outcome: string;
}

/** Each invalid config is wrong in a different way; each is refused whole. */
const INVALID: ((valid: string) => string)[] = [
  (valid) => valid.replace('token.claims.tenant in data.allowed', 'token.claims.tenant in'),
  (valid) => `${valid}unknown_key: true\n`,
  (valid) => valid.replace('routes:', 'routes: [\n'),
  (valid) => valid.replace(/allowed: .*/, 'allowed: no-such-data-file.yaml'),
  (valid) => valid.replace('scopes: [orders', 'scopes: [orders read'),
];

describe('reload under load', () => {
  it('answers every check, follows valid configs within 2 s, never applies an invalid one', async () => {
    writeFileSync(join(fixtures.dir, 'allowed.yaml'), '[acme]\n');
    const volume = configMapDir(join(fixtures.dir, 'load-configmap'), 'authz.yaml');
    volume.swap(reloadConfig(fixtures));
    const running = await start(volume.file);
    const token = await fixtures.token();
    const clients = Array.from({ length: 4 }, () => new EnvoyClient(running.started.grpc));
    const samples: Sample[] = [];
    const errors: unknown[] = [];
    let loading = true;
    const loops = clients.map(async (client) => {
      while (loading) {
        const startAt = Date.now();
        try {
          const out = await client.check({
            path: '/orders/1', principal: CHECKOUT, certificatePem: fixtures.checkout.certPem, headers: { authorization: `Bearer ${token}` },
          });
          samples.push({ start: startAt, end: Date.now(), outcome: out.allowed ? 'allow' : out.body!.code! });
        } catch (err) {
          errors.push(err);
        }
      }
    });

    // [written at, expected outcome from then on]
    const steps: { at: number; valid: boolean; expect: string }[] = [];
    let expected = 'allow';
    try {
      await waitFor('load', () => (samples.length > 50 ? true : undefined));
      for (let i = 0; i < 20; i++) {
        const valid = i % 2 === 0;
        const next = expected === 'allow' ? 'insufficient_scope' : 'allow';
        const text = reloadConfig(fixtures, { scope: next === 'allow' ? 'orders:read' : 'orders:admin' });
        // An invalid config whose routes, were they applied, would flip the decision: visible if it took effect.
        const content = valid ? text : INVALID[(i >> 1) % INVALID.length]!(text);
        const at = Date.now();
        // Two of every four by a ConfigMap swap, two by a rename over the file.
        if (i % 4 < 2) volume.swap(content);
        else replaceFile(volume.file, content);
        if (valid) {
          expected = next;
          await waitFor(`step ${i} applied`, () => (samples.some((s) => s.start >= at && s.outcome === next) ? true : undefined), 2_000);
          await new Promise((r) => setTimeout(r, 300));
        } else {
          const failures = i / 2 + 0.5;
          await waitFor(`step ${i} refused`, () => (logEvents(running.proc, 'config_reload_failed').length >= failures ? true : undefined));
          await new Promise((r) => setTimeout(r, 300));
        }
        steps.push({ at, valid, expect: expected });
      }
    } finally {
      loading = false;
      await Promise.all(loops);
    }
    const metrics = await (await fetch(`http://${running.admin}/metrics`)).text();
    for (const client of clients) client.close();
    await stop(running);

    expect(errors).toEqual([]);
    expect(samples.length).toBeGreaterThan(500);
    expect(new Set(samples.map((s) => s.outcome))).toEqual(new Set(['allow', 'insufficient_scope']));
    steps.forEach((step, i) => {
      const until = steps[i + 1]?.at ?? Infinity;
      const window = samples.filter((s) => s.start >= step.at && s.start < until);
      expect(window.length, `checks during step ${i}`).toBeGreaterThan(0);
      if (step.valid) {
        // Applied within 2 s, and once a check saw it no later check sees the old config.
        const first = window.find((s) => s.outcome === step.expect)!;
        expect(first.end - step.at, `step ${i} took effect`).toBeLessThan(2_000);
        expect(window.filter((s) => s.start > first.end && s.outcome !== step.expect), `step ${i} flapped`).toEqual([]);
      } else {
        expect(window.filter((s) => s.outcome !== step.expect), `invalid step ${i} took effect`).toEqual([]);
      }
    });
    expect(reloads(metrics, 'ok')).toBe(10);
    expect(reloads(metrics, 'failed')).toBe(10);
  }, 120_000);
});
