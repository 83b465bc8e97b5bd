import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CheckOutput } from '../src/authz/envoy-client.js';
import { issueCert } from '../src/devkit/pki.js';
import { CHECKOUT, STRANGER, authzYaml, createFixtures, type Fixtures } from './support/harness.js';
import { spawnCli, startSidecar, type SidecarProcess, type Spawned } from './support/process.js';
import { parseInjectConfig } from '../src/inject/inject-config.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { documents } from './support/manifests.js';
import { secretAt } from './support/pod-mounts.js';
import { SHARED_REDIS_URL, deleteKeysUnder, requireSharedRedis, uniquePrefix } from './support/redis.js';

/**
 * Issue 16 #2: `hopguard inject` (a real process, over HTTPS) answers the ValidatingWebhook for
 * ServiceAccount DELETE: always admitted; the workload's tokens revoked through Redis at a real
 * sidecar, except on a dry run; audited.
 */

const prefix = uniquePrefix();
let fixtures: Fixtures;
let injector: Spawned;
let injectorUrl: string;
let sidecar: SidecarProcess;
let auditFile: string;

beforeAll(async () => {
  await requireSharedRedis();
  fixtures = await createFixtures();
  const cert = issueCert(fixtures.ca, fixtures.dir, { name: 'injector', ipSans: ['127.0.0.1'], serverAuth: true });
  const auditKey = path.join(fixtures.dir, 'inject-audit-key.pem');
  writeFileSync(auditKey, generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }));
  auditFile = path.join(fixtures.dir, 'inject-audit.jsonl');
  const injectConfig = path.join(fixtures.dir, 'inject.yaml');
  writeFileSync(injectConfig, `listen: 127.0.0.1:0
tls: { cert: ${cert.certPath}, key: ${cert.keyPath} }
trust_domain: test.local
store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
revocation_ttl: 1h
audit: { output: ${auditFile}, signing_key_file: ${auditKey} }
`);
  injector = spawnCli(['inject', '--config', injectConfig]);
  injectorUrl = (await injector.logEvent('inject_started', 30_000)).url;
  const sidecarConfig = path.join(fixtures.dir, 'orders.yaml');
  writeFileSync(sidecarConfig, `${authzYaml(fixtures)}store: ${SHARED_REDIS_URL}
redis: { key_prefix: "${prefix}", resync_interval: 200ms }
routes:
  - name: read
    path_prefix: /orders/
`);
  sidecar = await startSidecar(sidecarConfig, 30_000);
}, 90_000);

afterAll(async () => {
  await sidecar?.stop();
  if (injector) {
    injector.child.kill('SIGTERM');
    await injector.exited;
  }
  await deleteKeysUnder(SHARED_REDIS_URL, prefix);
  fixtures?.cleanup();
});

/** POST to the injector over HTTPS, trusting the test CA, as the API server would. */
function post(pathName: string, body: string): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(`${injectorUrl}${pathName}`, {
      method: 'POST', ca: fixtures.ca.certPem, headers: { 'content-type': 'application/json' }, agent: false,
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function review(name: string, overrides: Record<string, unknown> = {}) {
  return {
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview',
    request: {
      uid: randomUUID(), kind: { group: '', version: 'v1', kind: 'ServiceAccount' },
      resource: { group: '', version: 'v1', resource: 'serviceaccounts' },
      namespace: 'shop', name, operation: 'DELETE', userInfo: { username: 'system:admin' },
      oldObject: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name, namespace: 'shop' } },
      dryRun: false, ...overrides,
    },
  };
}

async function decommission(body: ReturnType<typeof review>) {
  const reply = await post('/decommission', JSON.stringify(body));
  expect(reply.status).toBe(200);
  expect(JSON.parse(reply.body)).toEqual({
    apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid: body.request.uid, allowed: true },
  });
}

const codeOf = (out: CheckOutput) => (out.allowed ? 'allowed' : out.body?.code);
const read = async (token: string, as: { principal: string; certificatePem: string }) =>
  codeOf(await sidecar.envoy.check({ path: '/orders/1', headers: { authorization: `Bearer ${token}` }, ...as }));
const asCheckout = () => ({ principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });

function audited(): Record<string, any>[] {
  return readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((r) => r.event === 'decommission');
}

describe('POST /decommission', () => {
  it('a dry run is admitted, audited, and revokes nothing', async () => {
    const token = await fixtures.token();
    expect(await read(token, asCheckout())).toBe('allowed');
    await decommission(review('checkout', { dryRun: true }));
    await new Promise((r) => setTimeout(r, 500));
    expect(await read(token, asCheckout())).toBe('allowed');
    await expect.poll(() => audited()).toEqual([expect.objectContaining({
      decision: 'allow', subject: CHECKOUT, caller: 'k8s:system:admin', dry_run: true,
    })]);
    expect(audited()[0]!.revoked).toBeUndefined();
  });

  it('a ServiceAccount DELETE is admitted and its tokens, own and obtained for others, are denied within 1 s', async () => {
    const own = await fixtures.token();
    const onBehalf = await fixtures.token({ sub: 'user-7', clientId: CHECKOUT });
    const other = await fixtures.token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint });
    const asStranger = { principal: STRANGER, certificatePem: fixtures.stranger.certPem };
    await decommission(review('checkout'));
    const started = performance.now();
    let code = await read(own, asCheckout());
    while (code !== 'token_revoked' && performance.now() - started < 1000) code = await read(own, asCheckout());
    expect(code).toBe('token_revoked');
    expect(await read(onBehalf, asCheckout())).toBe('token_revoked');
    expect(await read(other, asStranger)).toBe('allowed');
    await expect.poll(() => audited().filter((r) => r.dry_run === false)).toEqual([expect.objectContaining({
      decision: 'allow', subject: CHECKOUT, revoked: 'subject', caller: 'k8s:system:admin',
    })]);
  });

  it('anything but a ServiceAccount DELETE is admitted, with a warning, and revokes nothing', async () => {
    const token = await fixtures.token({ sub: STRANGER, certThumbprint: fixtures.stranger.thumbprint });
    const pod = review('stranger', { kind: { group: '', version: 'v1', kind: 'Pod' } });
    const reply = await post('/decommission', JSON.stringify(pod));
    expect(reply.status).toBe(200);
    expect(JSON.parse(reply.body).response).toMatchObject({ uid: pod.request.uid, allowed: true, warnings: [expect.stringContaining('only DELETE of ServiceAccounts')] });
    const badName = review('../../stranger');
    expect(JSON.parse((await post('/decommission', JSON.stringify(badName))).body).response.allowed).toBe(true);
    await new Promise((r) => setTimeout(r, 500));
    expect(await read(token, { principal: STRANGER, certificatePem: fixtures.stranger.certPem })).toBe('allowed');
  });

  it('a body that is no AdmissionReview is a 400, and the injector goes on serving', async () => {
    expect(await post('/decommission', 'not json')).toMatchObject({ status: 400, body: 'expected an admission.k8s.io/v1 AdmissionReview\n' });
    expect(await post('/decommission', JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} })))
      .toMatchObject({ status: 400, body: 'the AdmissionReview has no request.uid\n' });
    await decommission(review('nobody', { dryRun: true }));
  });
});

describe('k8s/base/decommission-webhook.yaml', () => {
  const K8S = path.resolve(import.meta.dirname, '../k8s/base');
  const [config] = documents(readFileSync(path.join(K8S, 'decommission-webhook.yaml'), 'utf8'));
  const injectorService = documents(readFileSync(path.join(K8S, 'injector.yaml'), 'utf8')).find((d) => d.kind === 'Service')!;

  it('validates, and a misspelt field is caught', () => {
    expect(kubernetesProblems(config)).toEqual([]);
    const misspelt = structuredClone(config!);
    misspelt.webhooks[0].sideEffect = 'None';
    expect(kubernetesProblems(misspelt)).toEqual(['ValidatingWebhookConfiguration/hopguard-decommission: webhooks[0].sideEffect: unknown field "sideEffect"']);
  });

  it('sends ServiceAccount DELETEs to the injector\'s /decommission, no side effects on dry runs, never blocking a deletion', () => {
    const [webhook] = config!.webhooks;
    expect(webhook).toMatchObject({
      sideEffects: 'NoneOnDryRun', failurePolicy: 'Ignore', admissionReviewVersions: ['v1'],
      clientConfig: { service: { name: injectorService.metadata.name, namespace: injectorService.metadata.namespace, path: '/decommission' } },
      rules: [{ operations: ['DELETE'], apiGroups: [''], apiVersions: ['v1'], resources: ['serviceaccounts'] }],
    });
    expect(injectorService.spec.ports.map((p: { port: number }) => p.port)).toContain(webhook.clientConfig.service.port);
  });

  it('the injector revokes in the shared Redis as its own user: its config names it, its pod mounts only that user\'s credentials, Redis admits it', () => {
    const injector = documents(readFileSync(path.join(K8S, 'injector.yaml'), 'utf8'));
    const config = parseInjectConfig(injector.find((d) => d.kind === 'ConfigMap')!.data['inject.yaml'], { baseDir: '/' });
    expect(config.store).toBe('rediss://hopguard-injector@hopguard-redis.hopguard-system.svc:6379');
    expect(config.redis).toMatchObject({ passwordFile: '/etc/hopguard/redis/password', tlsCaFile: '/etc/hopguard/redis/ca.crt' });
    expect(config.revocationTtlMs).toBeGreaterThanOrEqual(24 * 3600_000);
    expect(readFileSync(path.join(K8S, 'redis-users.acl'), 'utf8')).toMatch(/^user hopguard-injector on /m);
    const pod = injector.find((d) => d.kind === 'Deployment')!.spec.template.spec;
    expect(secretAt(pod, '/etc/hopguard/redis')?.secretName).toBe('hopguard-redis-injector');
    expect(pod.volumes.map((v: { secret?: { secretName: string } }) => v.secret?.secretName).filter(Boolean).sort())
      .toEqual(['hopguard-injector-audit', 'hopguard-injector-tls', 'hopguard-redis-injector']);
    const redisPolicy = documents(readFileSync(path.join(K8S, 'redis.yaml'), 'utf8')).find((d) => d.kind === 'NetworkPolicy')!;
    expect(redisPolicy.spec.ingress.flatMap((rule: { from: unknown[] }) => rule.from))
      .toContainEqual({ podSelector: { matchLabels: { 'app.kubernetes.io/name': 'hopguard-injector' } } });
  });

  it('the injector audits decommissions: its config turns the audit log on with a signing key its pod mounts from a Secret', () => {
    const injector = documents(readFileSync(path.join(K8S, 'injector.yaml'), 'utf8'));
    const config = parseInjectConfig(injector.find((d) => d.kind === 'ConfigMap')!.data['inject.yaml'], { baseDir: '/' });
    expect(config.audit.output).toEqual({ kind: 'stdout' });
    const pod = injector.find((d) => d.kind === 'Deployment')!.spec.template.spec;
    const keyDir = path.posix.dirname(config.audit.signingKeyFile!);
    expect(secretAt(pod, keyDir)).toEqual({ secretName: 'hopguard-injector-audit', readOnly: true, defaultMode: 0o440 });
  });
});
