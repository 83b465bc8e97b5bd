import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckOutput } from '../src/authz/envoy-client.js';
import { CHECKOUT, authzConfig, createFixtures, startServer, type Fixtures, type Running } from './support/harness.js';

/**
 * store: memory holds at most memory.max_one_time_entries one-time marks (here 3), through the
 * gRPC API: when full of live marks a new one-time use is state_unavailable and counted on
 * /metrics, no mark is forgotten to make room, and marks that expire make room again.
 */

let fixtures: Fixtures;
let server: Running;

beforeAll(async () => {
  fixtures = await createFixtures();
  server = await startServer(authzConfig(fixtures, { clockSkewMs: 0, memory: { maxOneTimeEntries: 3 } }));
});
afterAll(async () => {
  await server?.stop();
  fixtures?.cleanup();
});

const pay = (token: string) => server.envoy.check({
  method: 'POST', path: '/payments', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
});
const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);

async function capacityExhausted(): Promise<number> {
  const text = await (await fetch(`http://${server.authz.adminAddress}/metrics`)).text();
  const line = /^hopguard_store_capacity_exhausted_total(?:\{[^}]*\})? (\d+)/m.exec(text);
  if (!line) throw new Error('no hopguard_store_capacity_exhausted_total on /metrics');
  return Number(line[1]);
}

describe('memory.max_one_time_entries', () => {
  it('refuses a new one-time use while full, forgets none, and takes new ones once marks expire', async () => {
    const shortLived = await Promise.all([0, 1, 2].map(() => fixtures.token({ ttl: 2 })));
    for (const token of shortLived) expect(codeOf(await pay(token))).toBe('allowed');
    const next = await fixtures.token();
    expect(codeOf(await pay(next))).toBe('state_unavailable');
    expect(await capacityExhausted()).toBe(1);
    // Full, but every used token is still refused as used.
    for (const token of shortLived) expect(codeOf(await pay(token))).toBe('token_replayed');
    // Once the three marks expire (exp + clock_skew 0), they are swept and the new use fits.
    await new Promise((r) => setTimeout(r, 2200));
    expect(codeOf(await pay(next))).toBe('allowed');
    expect(codeOf(await pay(next))).toBe('token_replayed');
    expect(await capacityExhausted()).toBe(1);
  });
});
