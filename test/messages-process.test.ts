import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FULFIL, ID, digestOf, post, startMessagesMesh, type MessagesMesh } from './support/messages-mesh.js';
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
