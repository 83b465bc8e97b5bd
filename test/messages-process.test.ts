import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULFIL, ID, digestOf, post, startMessagesMesh, type MessagesMesh } from './support/messages-mesh.js';
import { EnvoyClient } from '../src/authz/envoy-client.js';
import { runCli, spawnCli, type Spawned } from './support/process.js';

/**
 * A ledger replica as `hopguard authz --config FILE` (the built CLI, as deployed), beside an
 * in-process one sharing its Redis: check-config accepts the file, the process serves
 * messages.listen, a message is accepted once across both, and SIGTERM drains it to exit 0.
 */

let m: MessagesMesh;
let sidecar: Spawned;
let file: string;
let api: string;

beforeAll(async () => {
  m = await startMessagesMesh('messages-process', { consumers: 1 });
  file = path.join(m.mesh.dir, 'ledger-process.yaml');
  writeFileSync(file, m.consumerYaml(path.join(m.mesh.dir, 'ledger-process-audit.jsonl')));
  sidecar = spawnCli(['authz', '--config', file]);
  const started = await sidecar.logEvent('authz_started', 20_000);
  api = started.messages;
}, 60_000);

afterAll(async () => {
  if (sidecar && sidecar.child.exitCode === null) {
    sidecar.child.kill('SIGTERM');
    await sidecar.exited;
  }
  await m?.stop();
});

describe('a consumer sidecar process', () => {
  it('check-config accepts its config', async () => {
    const result = await runCli(['check-config', '--config', file]);
    expect(result.code, result.stderr).toBe(0);
  });

  it('logs messages.listen as bound, and accepts a message once across itself and another replica', async () => {
    expect(api).toMatch(/^127\.0\.0\.1:\d+$/);
    const handle = await m.handleFor(await m.frontendToken());
    const body = '{"process":true}';
    const sealed = await post(m.producer.authz.messagesAddress!, '/v1/messages/seal', { destination: FULFIL, digest: digestOf(body) }, { 'x-hopguard-handle': handle });
    const request = { token: sealed.body.token, destination: FULFIL, digest: digestOf(body) };
    const answers = await Promise.all([post(api, '/v1/messages/check', request), post(m.consumers[0]!.authz.messagesAddress!, '/v1/messages/check', request)]);
    expect(answers.map((a) => a.body.decision).sort()).toEqual(['allow', 'deny']);
    expect(answers.find((a) => a.body.decision === 'allow')!.body).toMatchObject({ subject: ID.frontend, client_id: ID.orders });
    expect(answers.find((a) => a.body.decision === 'deny')!.body.code).toBe('token_replayed');
  });

  it('drains on SIGTERM and exits 0, having logged no token', async () => {
    sidecar.child.kill('SIGTERM');
    expect(await sidecar.exited).toBe(0);
    expect(sidecar.stderr()).not.toContain('eyJ');
  });
});

describe('messages with workers: 2', () => {
  it('a producer\'s workers open each other\'s handles, and a consumer\'s workers accept a message once between them', async () => {
    const producerFile = path.join(m.mesh.dir, 'orders-workers.yaml');
    writeFileSync(producerFile, `${m.producerYaml()}\nworkers: 2\n`);
    const consumerFile = path.join(m.mesh.dir, 'ledger-workers.yaml');
    writeFileSync(consumerFile, `${m.consumerYaml(path.join(m.mesh.dir, 'ledger-workers-audit.jsonl'))}\nworkers: 2\n`);
    const producer = spawnCli(['authz', '--config', producerFile]);
    const consumer = spawnCli(['authz', '--config', consumerFile]);
    const inbound: EnvoyClient[] = [];
    try {
      const [produced, consumed] = [await producer.logEvent('authz_started', 30_000), await consumer.logEvent('authz_started', 30_000)];
      expect(produced).toMatchObject({ workers: 2, messages: expect.stringMatching(/^127\.0\.0\.1:\d+$/) });
      // Handles from checks over several connections (spread across the workers), sealed over
      // several more: each worker must open the handles the other one made.
      const token = await m.frontendToken();
      for (let i = 0; i < 4; i++) inbound.push(new EnvoyClient(produced.grpc));
      const handles = await Promise.all(inbound.map((client) => m.handleFor(token, client)));
      const bodies = handles.map((_h, i) => `{"worker":${i}}`);
      const seals = await Promise.all(handles.flatMap((handle, i) => [0, 1].map(() => fetch(`http://${produced.messages}/v1/messages/seal`, {
        method: 'POST', headers: { 'content-type': 'application/json', 'x-hopguard-handle': handle, connection: 'close' },
        body: JSON.stringify({ destination: FULFIL, digest: digestOf(bodies[i]!) }),
      }).then(async (res) => ({ status: res.status, body: await res.json() })))));
      expect(seals.map((r) => r.status)).toEqual(Array(8).fill(200));

      const request = { token: seals[0]!.body.token, destination: FULFIL, digest: digestOf(bodies[0]!) };
      const checks = await Promise.all(Array.from({ length: 6 }, () => fetch(`http://${consumed.messages}/v1/messages/check`, {
        method: 'POST', headers: { 'content-type': 'application/json', connection: 'close' }, body: JSON.stringify(request),
      }).then((res) => res.json() as Promise<any>)));
      expect(checks.filter((c) => c.decision === 'allow')).toHaveLength(1);
      expect(checks.filter((c) => c.code === 'token_replayed')).toHaveLength(5);
    } finally {
      for (const client of inbound) client.close();
      for (const proc of [producer, consumer]) {
        proc.child.kill('SIGTERM');
        await proc.exited;
      }
    }
  }, 60_000);
});
