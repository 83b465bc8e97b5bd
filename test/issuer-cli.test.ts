import { readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { issuerRequest } from './support/issuer-client.js';
import { runCli, spawnCli } from './support/process.js';

let mesh: TrustDomain<'frontend'>;
let configFile: string;
const keysDir = () => path.join(mesh.dir, 'keys');

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-cli', { frontend: 'spiffe://test.local/ns/shop/sa/frontend' });
  const server = issueCert(mesh.ca, mesh.dir, { name: 'server', ipSans: ['127.0.0.1'], serverAuth: true });
  configFile = path.join(mesh.dir, 'issuer.yaml');
  writeFileSync(configFile, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuer: https://sts.test.local
tls: { cert: server.pem, key: server-key.pem, client_ca: mesh-ca.pem }
keys: { dir: keys, publish_ahead: 10m }
clients:
  - id: spiffe://test.local/ns/shop/sa/frontend
    grants: [client_credentials]
    audiences: [spiffe://test.local/ns/shop/sa/orders]
`);
  expect(server.certPath).toBe(path.join(mesh.dir, 'server.pem'));
});
afterAll(() => mesh.cleanup());

describe('hopguard issuer, as a process', () => {
  it('creates its first key, serves tokens and health, and stops on SIGTERM; no key material in its logs', async () => {
    const proc = spawnCli(['issuer', '--config', configFile]);
    try {
      const started = await proc.logEvent('issuer_started');
      const created = await proc.logEvent('signing_key_created');
      expect(readdirSync(keysDir())).toEqual([`${created.kid}.json`]);
      const health = await fetch(`http://${started.admin}/readyz`);
      expect(health.status).toBe(200);
      const reply = await issuerRequest(started.url, '/token', {
        caPem: mesh.ca.certPem, client: mesh.workloads.frontend,
        form: { grant_type: 'client_credentials', audience: 'spiffe://test.local/ns/shop/sa/orders' },
      });
      expect(reply.status).toBe(200);
      proc.child.kill('SIGTERM');
      expect(await proc.exited).toBe(0);
      const logs = proc.stderr();
      expect(logs).not.toContain('"d"');
      expect(logs).not.toContain(reply.body.access_token.split('.')[2]);
    } finally {
      proc.child.kill('SIGKILL');
    }
  });

  it('keys rotate adds a key that signs after publish_ahead, or at once with --now', async () => {
    const before = readdirSync(keysDir()).length;
    const later = await runCli(['keys', 'rotate', '--config', configFile]);
    expect(later.code).toBe(0);
    const signsFrom = Date.parse(/signs from (\S+)/.exec(later.stdout)![1]!);
    expect(signsFrom - Date.now()).toBeGreaterThan(9 * 60_000);
    const now = await runCli(['keys', 'rotate', '--config', configFile, '--now']);
    expect(Date.parse(/signs from (\S+)/.exec(now.stdout)![1]!)).toBeLessThanOrEqual(Date.now());
    expect(readdirSync(keysDir())).toHaveLength(before + 2);
    expect(later.stdout + now.stdout).not.toMatch(/"d"|private/);
    expect((await runCli(['keys', 'spin', '--config', configFile])).code).toBe(2);
  });

  it('refuses a broken config, naming the key', async () => {
    const bad = path.join(mesh.dir, 'bad.yaml');
    writeFileSync(bad, 'listen: 127.0.0.1:0\nissuer: http://sts\n');
    const { code, stderr } = await runCli(['issuer', '--config', bad]);
    expect(code).toBe(2);
    expect(stderr).toContain('issuer: must be an https URL');
  });
});
