import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mergePrometheusText } from '../src/authz/authz-workers.js';
import { checkRequestMessage } from '../src/authz/envoy-client.js';
import { authorizationService } from '../src/authz/envoy-protos.js';
import { createDpopKey, dpopProof } from '../src/devkit/dpop-client.js';
import { createSigningKey, type SigningKey } from '../src/devkit/signing-key.js';
import { CHECKOUT, READ_ORDERS_ROUTES_YAML, authzYaml, createFixtures, jwksServer, writeConfigFile, type Fixtures } from './support/harness.js';
import { runCli, spawnCli } from './support/process.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/** `workers: N`: N processes behind one gRPC listener, one admin listener for all of them. */
let fixtures: Fixtures;
beforeAll(async () => { fixtures = await createFixtures(); });
afterAll(() => fixtures.cleanup());




/** A client on a connection of its own (grpc-js would otherwise share one between clients). */
function connection(address: string) {
  const Authorization = authorizationService();
  const client = new Authorization(address, grpc.credentials.createInsecure(), { 'grpc.use_local_subchannel_pool': 1 }) as grpc.Client & Record<string, any>;
  /** The gRPC status: code 0 is an allow; a denial's message is its deny code. */
  const send = (headers: Record<string, string>) => new Promise<{ code: number; message: string }>((resolve, reject) => {
    client.Check(checkRequestMessage({
      path: '/orders/1', headers, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem,
    }), (err: Error | null, response: { status?: { code?: number; message?: string } }) =>
      (err ? reject(err) : resolve({ code: response.status?.code ?? 0, message: response.status?.message ?? '' })));
  });
  const check = async (token: string) => (await send({ authorization: `Bearer ${token}` })).code;
  return { check, send, close: () => client.close() };
}

function samples(metrics: string, name: string): string[] {
  return metrics.split('\n').filter((line) => line.startsWith(`${name}{`));
}

describe('hopguard authz with workers: 2', () => {
  it('serves one listener from two processes, reports for both, and drains in-flight checks on SIGTERM', async () => {
    const slowKey = await createSigningKey('ES256', 'slow-kid');
    let published: SigningKey[] = [fixtures.key];
    const jwks = await jwksServer(() => published);
    const file = writeConfigFile(fixtures, 'workers.yaml', `${authzYaml(fixtures, { jwks: `jwks_uri: ${jwks.url}` })}workers: 2\njwks:\n  refetch_interval: 1ms\n  check_wait: 500ms\n${READ_ORDERS_ROUTES_YAML}`);
    const proc = spawnCli(['authz', '--config', file]);
    const connections: ReturnType<typeof connection>[] = [];
    try {
      const started = await proc.logEvent('authz_started');
      expect(started.workers).toBe(2);
      expect((await fetch(`http://${started.admin}/readyz`)).status).toBe(200);

      // New connections go to the workers in turn.
      for (let i = 0; i < 4; i++) connections.push(connection(started.grpc));
      const token = await fixtures.token();
      for (const c of connections) expect(await c.check(token)).toBe(0);
      const metrics = await (await fetch(`http://${started.admin}/metrics`)).text();
      const allowed = samples(metrics, 'hopguard_decisions_total').filter((line) => line.includes('code="allowed"'));
      expect(allowed.map((line) => /worker="(\d+)"/.exec(line)![1]).sort()).toEqual(['1', '2']);
      expect(allowed.map((line) => Number(line.split(' ').pop())).reduce((a, b) => a + b)).toBe(4);
      expect(metrics.match(/^# TYPE hopguard_decisions_total /gm)).toHaveLength(1);

      // A token under a new kid makes its worker refetch the JWKS, which now answers slowly:
      // that check is in flight when SIGTERM arrives, and must still be answered.
      // Slow, but within check_wait (a check waits no longer on a refetch).
      jwks.state.delayMs = 300;
      published = [fixtures.key, slowKey];
      const inFlight = connections[0]!.check(await fixtures.token({}, slowKey));
      await new Promise((r) => setTimeout(r, 100));
      proc.child.kill('SIGTERM');
      expect(await inFlight).toBe(0);
      expect(await proc.exited).toBe(0);
      expect(proc.stderr()).toContain('"event":"authz_stopped"');
      expect(proc.stderr().match(/"event":"worker_stopped"/g)).toHaveLength(2);
    } finally {
      for (const c of connections) c.close();
      proc.child.kill('SIGKILL');
      jwks.close();
    }
  });

  it('refuses more than one worker with store: memory when one-time state would be split', async () => {
    const oneTime = `${READ_ORDERS_ROUTES_YAML}    one_time: true\n`;
    const { code, stderr } = await runCli(['check-config', '--config', writeConfigFile(fixtures, 'workers-memory.yaml', `${authzYaml(fixtures)}workers: 2\n${oneTime}`)]);
    expect(code).toBe(2);
    expect(stderr).toContain('workers');
    expect(stderr).toContain('redis');
    const single = await runCli(['check-config', '--config', writeConfigFile(fixtures, 'workers-one.yaml', `${authzYaml(fixtures)}workers: 1\n${oneTime}`)]);
    expect(single.code).toBe(0);
  });

  it('with a redis store, accepts a DPoP proof once across workers, also under binding: none', async () => {
    await requireSharedRedis();
    const prefix = uniquePrefix();
    const file = writeConfigFile(fixtures, 'workers-dpop-redis.yaml',
      `${authzYaml(fixtures)}binding: none\nstore: ${SHARED_REDIS_URL}\nredis:\n  key_prefix: "${prefix}"\nworkers: 2\n${READ_ORDERS_ROUTES_YAML}`);
    const proc = spawnCli(['authz', '--config', file]);
    const connections: ReturnType<typeof connection>[] = [];
    try {
      const started = await proc.logEvent('authz_started');
      expect((await fetch(`http://${started.admin}/readyz`)).status).toBe(200);
      const client = await createDpopKey();
      const token = await fixtures.token({ certThumbprint: undefined, claims: { cnf: { jkt: client.jkt } } });
      const proof = await dpopProof(client, { htm: 'GET', htu: 'https://service.local/orders/1', accessToken: token });
      // The same proof on fresh connections, which go to the workers in turn.
      for (let i = 0; i < 4; i++) connections.push(connection(started.grpc));
      const answers: string[] = [];
      for (const c of connections) {
        const { code, message } = await c.send({ authorization: `DPoP ${token}`, dpop: proof });
        answers.push(code === 0 ? 'allowed' : message);
      }
      expect(answers).toEqual(['allowed', 'dpop_invalid', 'dpop_invalid', 'dpop_invalid']);
      // Both workers answered: the replays reached the worker that had not seen the proof, and were refused there too.
      const metrics = await (await fetch(`http://${started.admin}/metrics`)).text();
      const workers = samples(metrics, 'hopguard_decisions_total').map((line) => /worker="(\d+)"/.exec(line)![1]);
      expect([...new Set(workers)].sort()).toEqual(['1', '2']);
    } finally {
      for (const c of connections) c.close();
      proc.child.kill('SIGKILL');
      await deleteKeysUnder(SHARED_REDIS_URL, prefix);
    }
  });

  it('refuses more than one worker with store: memory and binding: none, which still accepts DPoP-bound tokens', async () => {
    // Each worker would remember used DPoP proof jtis on its own: a proof replayed on a new
    // connection lands on the other worker and is accepted again.
    const file = writeConfigFile(fixtures, 'workers-none.yaml', `${authzYaml(fixtures)}binding: none\nworkers: 2\n${READ_ORDERS_ROUTES_YAML}`);
    for (const command of ['check-config', 'authz']) {
      const { code, stderr } = await runCli([command, '--config', file]);
      expect(code).toBe(2);
      expect(stderr).toContain('workers: more than 1 needs a redis store');
      expect(stderr).toContain('DPoP proofs (binding: none accepts DPoP-bound tokens)');
      expect(stderr).toContain('use a redis store, or workers: 1, or binding: mtls');
    }
  });
});

describe('mergePrometheusText', () => {
  it('keeps one HELP and TYPE per family and labels every sample with its worker', () => {
    const text = (n: number) => [
      '# HELP c_total A counter', '# TYPE c_total counter', `c_total{code="a"} ${n}`,
      '# HELP h A histogram', '# TYPE h histogram', `h_bucket{le="1"} ${n}`, `h_sum ${n}`, `h_count{} ${n}`, '',
    ].join('\n');
    expect(mergePrometheusText([{ worker: '1', text: text(1) }, { worker: '2', text: text(2) }])).toBe([
      '# HELP c_total A counter', '# TYPE c_total counter', 'c_total{worker="1",code="a"} 1', 'c_total{worker="2",code="a"} 2',
      '# HELP h A histogram', '# TYPE h histogram', 'h_bucket{worker="1",le="1"} 1', 'h_sum{worker="1"} 1', 'h_count{worker="1"} 1',
      'h_bucket{worker="2",le="1"} 2', 'h_sum{worker="2"} 2', 'h_count{worker="2"} 2', '',
    ].join('\n'));
  });
});
