import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckOutput } from '../src/authz/envoy-client.js';
import { CHECKOUT, ONE_TIME_PAY_ROUTES_YAML, authzYaml, createFixtures, type Fixtures } from './support/harness.js';
import { startSidecar, type SidecarProcess } from './support/process.js';
import { RedisProcess, freePort, uniquePrefix } from './support/redis.js';

/**
 * A Redis that stalls (DEBUG SLEEP, on a redis-server of the test's own) under three sidecars
 * as processes, through the gRPC API: a one-time token answered state_unavailable during the
 * stall is not spent, no token is ever accepted twice, and every check is answered within
 * command_timeout (plus a margin for a loaded machine) however many are in flight.
 */

const COMMAND_TIMEOUT_MS = 800;

let fixtures: Fixtures;
let redis: RedisProcess;
let admin: Redis;
let sidecars: SidecarProcess[];

beforeAll(async () => {
  fixtures = await createFixtures();
  redis = new RedisProcess(await freePort(), ['--enable-debug-command', 'yes']);
  await redis.start();
  admin = new Redis(redis.url);
  sidecars = await startSidecars(COMMAND_TIMEOUT_MS);
}, 60_000);

afterAll(async () => {
  await Promise.all((sidecars ?? []).map((s) => s.stop()));
  admin?.disconnect();
  await redis?.kill();
  fixtures?.cleanup();
});

/** Three sidecars on the test's Redis with this command_timeout, each past its first check. */
async function startSidecars(commandTimeoutMs: number): Promise<SidecarProcess[]> {
  const file = path.join(fixtures.dir, `stall-${commandTimeoutMs}.yaml`);
  writeFileSync(file, `${authzYaml(fixtures)}store: ${redis.url}
redis:
  key_prefix: "${uniquePrefix()}"
  command_timeout: ${commandTimeoutMs}ms
  max_staleness: 60s
${ONE_TIME_PAY_ROUTES_YAML}`);
  const started = await Promise.all([0, 1, 2].map(() => startSidecar(file)));
  // A first check starts a sidecar's signature workers: not what these tests time.
  for (const sidecar of started) await pay(sidecar, await fixtures.token());
  return started;
}

const pay = (sidecar: SidecarProcess, token: string) => sidecar.envoy.check({
  method: 'POST', path: '/payments', headers: { authorization: `Bearer ${token}` }, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
});
const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code ?? 'no code');
const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Redis stops answering for `seconds` from the moment this resolves; `awake` settles when it wakes. */
async function stall(seconds: number): Promise<{ awake: Promise<unknown> }> {
  const awake = admin.call('DEBUG', 'SLEEP', String(seconds));
  // The DEBUG reaches Redis before the checks that are to wait on it.
  await delay(50);
  return { awake };
}

function count(codes: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const code of codes) counts[code] = (counts[code] ?? 0) + 1;
  return counts;
}

describe('a one-time token answered state_unavailable during a Redis stall', () => {
  it('is not spent: after Redis wakes, a retry of it is allowed exactly once across three sidecars', async () => {
    const token = await fixtures.token({ jti: 'stalled-once' });
    const { awake } = await stall(3);
    expect(codeOf(await pay(sidecars[0]!, token))).toBe('state_unavailable');
    await awake;
    const retries: string[] = [];
    for (const sidecar of sidecars) retries.push(codeOf(await pay(sidecar, token)));
    console.log(`retries after the stall: ${retries.join(', ')}`);
    expect(retries).toEqual(['allowed', 'token_replayed', 'token_replayed']);
  });
});

describe('three sidecars hammering one token', () => {
  /** `rounds` waves of 20 concurrent checks on every sidecar; the callback runs before each wave. */
  async function hammer(token: string, rounds: number, beforeRound: (round: number) => Promise<void> = async () => undefined) {
    const codes: string[] = [];
    for (let round = 0; round < rounds; round++) {
      await beforeRound(round);
      const wave = sidecars.flatMap((sidecar) => Array.from({ length: 20 }, () => pay(sidecar, token)));
      codes.push(...(await Promise.all(wave)).map(codeOf));
    }
    return count(codes);
  }

  it('accepts it exactly once without a stall', async () => {
    const counts = await hammer(await fixtures.token({ jti: 'hammered' }), 3);
    console.log(`no stall: ${JSON.stringify(counts)}`);
    expect(counts).toEqual({ allowed: 1, token_replayed: 179 });
  });

  it('accepts it exactly once through stalls, and once it is accepted it stays spent', async () => {
    for (const [i, seconds] of [2, 3].entries()) {
      const token = await fixtures.token({ jti: `hammered-through-stall-${i}` });
      let awake: Promise<unknown> = Promise.resolve();
      // Waves during the stall (all state_unavailable), then after it (one allowed at most).
      const counts = await hammer(token, 6, async (round) => {
        if (round === 0) ({ awake } = await stall(seconds));
        if (round === 3) await awake;
      });
      console.log(`stall of ${seconds} s: ${JSON.stringify(counts)}`);
      expect(counts.allowed).toBe(1);
      expect(Object.keys(counts).sort()).toEqual(expect.arrayContaining(['allowed', 'token_replayed']));
      expect(Object.keys(counts).filter((c) => !['allowed', 'token_replayed', 'state_unavailable'].includes(c))).toEqual([]);
      // Long after the stall, every replica still refuses it.
      await delay(300);
      for (const sidecar of sidecars) expect(codeOf(await pay(sidecar, token))).toBe('token_replayed');
    }
  }, 60_000);
});

describe('command_timeout under overlapping checks', () => {
  /**
   * Without the per-check deadline a check queued behind a stalled auto-pipelined batch is
   * written only when that batch times out, and answers after up to 2 × command_timeout. What
   * a loaded 2-core machine adds to every answer (event-loop lag in the sidecars and in this
   * process, gRPC) does not grow with command_timeout (up to ~900 ms seen at 800 ms), so the
   * timeout is made large enough that the bound sits a whole half-timeout away from both:
   * fixed ≈ T + lag, bound 1.5 T, the regression ≈ 2 T.
   */
  const OVERLAP_TIMEOUT_MS = 2000;
  const BOUND_MS = 1.5 * OVERLAP_TIMEOUT_MS;
  let slow: SidecarProcess[];

  beforeAll(async () => {
    slow = await startSidecars(OVERLAP_TIMEOUT_MS);
  }, 60_000);

  afterAll(async () => {
    await Promise.all((slow ?? []).map((s) => s.stop()));
  });

  it('answers each of 200 overlapping checks during a stall within command_timeout + margin, far below 2 × command_timeout', async () => {
    const tokens = await Promise.all(Array.from({ length: 200 }, (_, i) => fixtures.token({ jti: `overlap-${i}` })));
    // Longer than 2 × command_timeout, so a check that waits for two timeouts shows it.
    const { awake } = await stall(Math.ceil((2 * OVERLAP_TIMEOUT_MS + 1000) / 1000));
    // Arriving over ~200 ms, so they fall into several auto-pipelined batches, as real traffic does.
    const answered = await Promise.all(tokens.map(async (token, i) => {
      await delay(i);
      const started = performance.now();
      const out = await pay(slow[i % 3]!, token);
      return { code: codeOf(out), ms: performance.now() - started };
    }));
    await awake;
    const times = answered.map((a) => a.ms).sort((x, y) => x - y);
    const at = (q: number) => times[Math.min(times.length - 1, Math.floor(q * times.length))]!.toFixed(0);
    console.log(`answer time during a stall, command_timeout ${OVERLAP_TIMEOUT_MS} ms: min ${at(0)} p50 ${at(0.5)} p99 ${at(0.99)} max ${at(1)} ms (bound ${BOUND_MS})`);
    expect(count(answered.map((a) => a.code))).toEqual({ state_unavailable: 200 });
    expect(times.at(-1)!).toBeLessThan(BOUND_MS);
  }, 30_000);
});
