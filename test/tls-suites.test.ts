import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IssuedCert } from '../src/devkit/pki.js';
import type { RunningWebhook } from '../src/inject/webhook-server.js';
import { silentLogger } from '../src/telemetry/log.js';
import { startMeshIssuer, type MeshIssuer } from './support/mesh-issuer.js';
import { startTestWebhook } from './support/test-webhook.js';
import { negotiated, rsaServerCert } from './support/tls-probe.js';

/**
 * TLS on every hopguard server: TLS 1.3, or TLS 1.2 with ECDHE (forward secrecy) only.
 * The servers get RSA certificates, so RSA key exchange would be possible if it were offered
 * (node's default cipher list offers it); openssl s_client is the client.
 */
let running: MeshIssuer;
let webhook: RunningWebhook;
let webhookCert: IssuedCert;
const webhookEvents: string[] = [];

beforeAll(async () => {
  running = await startMeshIssuer('tls-suites', { serverCert: (mesh) => rsaServerCert(mesh.dir, 'issuer-rsa') });
  webhookCert = rsaServerCert(running.mesh.dir, 'webhook-rsa');
  webhook = await startTestWebhook(webhookCert, { log: { ...silentLogger, info: (event) => webhookEvents.push(event) }, tlsReloadMs: 50 });
}, 60_000);

afterAll(async () => {
  await webhook?.stop();
  await running?.stop();
});

const NO_FORWARD_SECRECY = ['AES256-GCM-SHA384', 'AES128-GCM-SHA256', 'AES256-SHA256'];

describe.each([
  ['the issuer', () => running.issuer.url],
  ['the injector webhook', () => webhook.url],
])('%s', (_name, url) => {
  it.each(NO_FORWARD_SECRECY)('refuses the TLS 1.2 suite %s (RSA key exchange, no forward secrecy)', async (cipher) => {
    expect(await negotiated(url(), ['-tls1_2', '-cipher', cipher])).toBeUndefined();
  });

  it('negotiates TLS 1.2 with ECDHE', async () => {
    expect(await negotiated(url(), ['-tls1_2', '-cipher', 'ECDHE-RSA-AES256-GCM-SHA384']))
      .toMatchObject({ protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES256-GCM-SHA384' });
  });

  it('negotiates TLS 1.3', async () => {
    expect((await negotiated(url(), ['-tls1_3']))?.protocol).toBe('TLSv1.3');
  });
});

describe('the injector webhook after a certificate reload', () => {
  it('serves the renewed certificate with the same suites', async () => {
    const renewed = rsaServerCert(running.mesh.dir, 'webhook-rsa');
    expect(renewed.certPath).toBe(webhookCert.certPath);
    for (let waited = 0; !webhookEvents.includes('inject_tls_reloaded') && waited < 10_000; waited += 25) {
      await new Promise((r) => setTimeout(r, 25));
    }
    const ecdhe = await negotiated(webhook.url, ['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256']);
    expect(ecdhe?.certificate).toBe(renewed.certPem);
    for (const cipher of NO_FORWARD_SECRECY) expect(await negotiated(webhook.url, ['-tls1_2', '-cipher', cipher])).toBeUndefined();
  });
});
