import { generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueCert } from '../src/devkit/pki.js';
import { createTrustDomain, type TrustDomain } from '../src/devkit/trust-domain.js';
import { SERVER_BOUNDS } from '../src/tls/server-bounds.js';
import { holdTls, type HeldConnection } from './support/held-connection.js';
import { issuerRequest } from './support/issuer-client.js';
import { spawnCli } from './support/process.js';

/**
 * Issue 18 item 7, as the soak found it: 1,002 idle TLS connections (no client certificate
 * needed to open one) made a real token request fail. The issuer runs as a process with its
 * real bounds and cap, an admin listener and an audit file, under the 1,024 file descriptors
 * many containers get: before, the idle connections took the last descriptors.
 */
const IDLE = 1_002;
const FD_LIMIT = 1_024;

let mesh: TrustDomain<'frontend'>;
let configFile: string;

beforeAll(async () => {
  mesh = await createTrustDomain('issuer-idle', { frontend: 'spiffe://test.local/ns/shop/sa/frontend' });
  issueCert(mesh.ca, mesh.dir, { name: 'server', ipSans: ['127.0.0.1'], serverAuth: true });
  writeFileSync(path.join(mesh.dir, 'audit.pem'), generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  configFile = path.join(mesh.dir, 'issuer.yaml');
  writeFileSync(configFile, `listen: 127.0.0.1:0
admin: 127.0.0.1:0
issuer: https://sts.test.local
tls: { cert: server.pem, key: server-key.pem, client_ca: mesh-ca.pem }
keys: { dir: keys }
audit: { output: audit.jsonl, signing_key_file: audit.pem }
clients:
  - id: spiffe://test.local/ns/shop/sa/frontend
    grants: [client_credentials]
    audiences: [spiffe://test.local/ns/shop/sa/orders]
`);
});
afterAll(() => mesh.cleanup());

describe(`${IDLE} idle TLS connections`, () => {
  it('are capped and closed at the header bound, and a real token request then succeeds', async () => {
    const proc = spawnCli(['issuer', '--config', configFile], { fdLimit: FD_LIMIT });
    const held: (HeldConnection | undefined)[] = [];
    try {
      const { url } = await proc.logEvent('issuer_started');
      for (let i = 0; i < IDLE; i += 100) {
        held.push(...await Promise.all(Array.from({ length: Math.min(100, IDLE - i) }, () => holdTls(url))));
      }
      const opened = held.filter((c) => c !== undefined).length;
      expect(opened).toBeLessThanOrEqual(SERVER_BOUNDS.maxConnections);
      const token = () => issuerRequest(url, '/token', {
        caPem: mesh.ca.certPem, client: mesh.workloads.frontend,
        form: { grant_type: 'client_credentials', audience: 'spiffe://test.local/ns/shop/sa/orders' },
      }).then((r) => r.status, () => 0);
      // Within the header bound, the node check interval and a wide margin for the shared machine.
      const deadline = Date.now() + SERVER_BOUNDS.headersMs + 15_000;
      let status = 0;
      while (status !== 200 && Date.now() < deadline) {
        status = await token();
        if (status !== 200) await new Promise((r) => setTimeout(r, 500));
      }
      expect(status).toBe(200);
      const refusals = proc.stderr().split('\n').filter((l) => l.includes('"issuer_connection_refused"'));
      expect(refusals.length).toBeGreaterThan(0);
      // Rate-limited: a line a second at most, however many were refused.
      expect(refusals.length).toBeLessThan(30);
      expect(proc.child.exitCode).toBeNull();
    } finally {
      for (const c of held) c?.socket.destroy();
      proc.child.kill('SIGKILL');
    }
  }, 90_000);
});
