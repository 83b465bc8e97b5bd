import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { readAuditSigningKey } from '../src/audit/audit-files.js';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { createTrustDomain } from '../src/devkit/trust-domain.js';
import { loadEnvoyTemplate, objectsOfType } from '../src/inject/envoy-bootstrap.js';
import { defaultInjectConfig, injectionSettings, parseInjectConfig } from '../src/inject/inject-config.js';
import { injectManifests } from '../src/inject/offline-inject.js';
import { loadEnvoySchema } from './support/deploy-envoy-schema.js';
import { readYaml } from '../src/schema/config-schema.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { documents, kustomizeBuild, yamlFiles } from './support/manifests.js';
import { containersMounting, mountSidecarSecrets, secretAt, sidecarConfigAt } from './support/pod-mounts.js';
import { runCli, spawnCli } from './support/process.js';
import { writeAuditKeyPair } from './support/audit-keys.js';
import { CHECKOUT, authzYaml, createFixtures } from './support/harness.js';
import { EnvoyClient } from '../src/authz/envoy-client.js';

type Obj = Record<string, any>;
const K8S = path.resolve(import.meta.dirname, '../k8s');
const OVERLAY = path.join(K8S, 'overlays/example');

const RESOURCE_FILES = ['base', 'overlays'].flatMap((dir) => yamlFiles(path.join(K8S, dir)));
const RESOURCES = RESOURCE_FILES.flatMap((file) => documents(readFileSync(file, 'utf8')).map((doc) => ({ file: path.relative(K8S, file), doc })));
const byKind = (kind: string) => RESOURCES.filter((r) => r.doc.kind === kind).map((r) => r.doc);
const named = (kind: string, name: string) => byKind(kind).find((doc) => doc.metadata.name === name)!;
const deployments = byKind('Deployment');
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';

describe('k8s/: kustomizations', () => {
  it.each(['base', 'overlays/example'])('%s lists only files and directories that exist', (dir) => {
    const kustomization = documents(readFileSync(path.join(K8S, dir, 'kustomization.yaml'), 'utf8'))[0]!;
    expect(kustomization).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization' });
    for (const resource of kustomization.resources as string[]) {
      const target = path.join(K8S, dir, resource);
      expect(existsSync(target), `${dir}: ${resource}`).toBe(true);
      if (statSync(target).isDirectory()) expect(existsSync(path.join(target, 'kustomization.yaml'))).toBe(true);
    }
  });

  it('every resource file is listed by a kustomization', () => {
    const listed = ['base', 'overlays/example'].flatMap((dir) =>
      (documents(readFileSync(path.join(K8S, dir, 'kustomization.yaml'), 'utf8'))[0]!.resources as string[]).map((r) => path.join(dir, r)));
    expect(RESOURCE_FILES.map((file) => path.relative(K8S, file)).filter((file) => !listed.includes(file))).toEqual([]);
  });

  it('kubectl kustomize builds the example overlay, and every object validates', () => {
    const built = kustomizeBuild(OVERLAY);
    expect(built).toHaveLength(RESOURCES.length);
    expect(built.flatMap(kubernetesProblems)).toEqual([]);
    expect(built.every((doc) => doc.metadata.labels?.['app.kubernetes.io/part-of'] === 'hopguard' || doc.metadata.namespace === 'shop' || doc.metadata.name === 'shop')).toBe(true);
  });
});

describe('k8s/: every resource against the Kubernetes OpenAPI schemas', () => {
  it('has what the deployment needs', () => {
    expect(RESOURCES.map((r) => `${r.doc.kind}/${r.doc.metadata.name}`).sort()).toEqual([
      'ConfigMap/hopguard-frontend', 'ConfigMap/hopguard-injector', 'ConfigMap/hopguard-issuer', 'ConfigMap/hopguard-orders', 'ConfigMap/hopguard-payments',
      'ConfigMap/otel-collector', 'ConfigMap/shop-app',
      'Deployment/frontend', 'Deployment/hopguard-injector', 'Deployment/hopguard-issuer', 'Deployment/hopguard-redis', 'Deployment/orders', 'Deployment/otel-collector',
      'Deployment/payments',
      'MutatingWebhookConfiguration/hopguard-sidecar-injector',
      'Namespace/hopguard-system', 'Namespace/shop',
      'NetworkPolicy/frontend', 'NetworkPolicy/hopguard-issuer', 'NetworkPolicy/hopguard-redis', 'NetworkPolicy/orders', 'NetworkPolicy/payments',
      'PodDisruptionBudget/hopguard-injector', 'PodDisruptionBudget/hopguard-issuer',
      'PrometheusRule/hopguard',
      'Service/hopguard-injector', 'Service/hopguard-issuer', 'Service/hopguard-redis', 'Service/orders', 'Service/otel-collector', 'Service/payments',
      'ServiceAccount/frontend', 'ServiceAccount/hopguard-injector', 'ServiceAccount/hopguard-issuer', 'ServiceAccount/orders', 'ServiceAccount/payments',
      'ValidatingWebhookConfiguration/hopguard-decommission',
    ]);
  });

  it.each(RESOURCES.map((r) => [`${r.file}: ${r.doc.kind}/${r.doc.metadata.name}`, r.doc] as const))('%s', (_, doc) => {
    expect(kubernetesProblems(doc)).toEqual([]);
  });

  it('the schema check rejects misspelt fields, at any depth, which the OpenAPI schemas alone let through', () => {
    const misspelt = structuredClone(named('Deployment', 'hopguard-issuer'));
    misspelt.metadata.labelz = {};
    misspelt.spec.template.spec.containers[0].readinesProbe = misspelt.spec.template.spec.containers[0].readinessProbe;
    misspelt.spec.template.spec.containers[0].securityContext.capabilities.dorp = ['ALL'];
    misspelt.spec.template.spec.volumes[1].secret.secretname = 'x';
    expect(kubernetesProblems(misspelt)).toEqual([
      'Deployment/hopguard-issuer: metadata.labelz: unknown field "labelz"',
      'Deployment/hopguard-issuer: spec.template.spec.containers[0].securityContext.capabilities.dorp: unknown field "dorp"',
      'Deployment/hopguard-issuer: spec.template.spec.containers[0].readinesProbe: unknown field "readinesProbe"',
      'Deployment/hopguard-issuer: spec.template.spec.volumes[1].secret.secretname: unknown field "secretname"',
    ]);
  });

  it('the schema check rejects a wrong type and a missing required field', () => {
    const wrongType = structuredClone(named('Deployment', 'hopguard-issuer'));
    wrongType.spec.replicas = 'two';
    expect(kubernetesProblems(wrongType)).toEqual(['Deployment/hopguard-issuer: data/spec/replicas must be integer']);
    const unnamed = structuredClone(named('Deployment', 'hopguard-issuer'));
    delete unnamed.spec.template.spec.containers[0].name;
    expect(kubernetesProblems(unnamed)).toEqual(['Deployment/hopguard-issuer: data/spec/template/spec/containers/0 must have required property name']);
  });
});

describe('k8s/: workloads run restricted, bounded and probed', () => {
  it.each(deployments.map((d) => [d.metadata.name, d] as const))('%s', (_, deployment) => {
    const pod = deployment.spec.template.spec;
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    for (const container of pod.containers as Obj[]) {
      expect(container.securityContext).toMatchObject({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      expect(container.resources.requests).toHaveProperty('cpu');
      expect(container.resources.limits).toHaveProperty('memory');
      // A container that serves is probed; frontend's shell serves nothing.
      if (container.ports !== undefined) expect(container.readinessProbe).toBeDefined();
    }
  });

  it('the issuer is probed on /healthz and /readyz, and kept available through disruptions', () => {
    const issuer = named('Deployment', 'hopguard-issuer');
    const container = issuer.spec.template.spec.containers[0];
    expect(container.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 'admin' });
    expect(container.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 'admin' });
    expect(issuer.spec.replicas).toBeGreaterThan(1);
    expect(named('PodDisruptionBudget', 'hopguard-issuer').spec.selector).toEqual(issuer.spec.selector);
  });
});

describe('k8s/: Redis takes credentials and TLS, and is not reachable by a label anyone can set', () => {
  const redis = named('Deployment', 'hopguard-redis').spec.template.spec;
  const args = redis.containers[0].args as string[];
  const arg = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
  const mountedSecret = (dir: string) => {
    const mount = (redis.containers[0].volumeMounts as Obj[]).find((m) => dir.startsWith(`${m.mountPath}/`))!;
    return (redis.volumes as Obj[]).find((v) => v.name === mount.name)!.secret?.secretName;
  };
  const aclRules = readFileSync(path.join(K8S, 'base/redis-users.acl'), 'utf8').split('\n').filter((line) => line.startsWith('user '));

  it('runs with protected mode on, TLS only, and the ACL file from a Secret', () => {
    expect(arg('--protected-mode')).toBe('yes');
    expect(arg('--port')).toBe('0');
    expect(arg('--tls-port')).toBe('6379');
    expect(mountedSecret(arg('--aclfile')!)).toBe('hopguard-redis-acl');
    for (const file of ['--tls-cert-file', '--tls-key-file', '--tls-ca-cert-file']) expect(mountedSecret(arg(file)!)).toBe('hopguard-redis-tls');
    expect(arg('--maxmemory-policy')).toBe('noeviction');
  });

  it('requires an ACL user: the default user is off, and every other user has a password', () => {
    expect(aclRules.find((rule) => rule.startsWith('user default '))).toMatch(/^user default off resetpass /);
    for (const rule of aclRules.filter((r) => !r.startsWith('user default '))) {
      expect(rule).toMatch(/^user [\w-]+ on #[A-Z_]+_PASSWORD_SHA256 resetkeys resetchannels -@all /);
      expect(rule).not.toMatch(/nopass|allkeys|allchannels|allcommands|\+@all|~\*|&\*/);
    }
  });

  it('the issuer, the injector and every sidecar connect over rediss:// as a user the ACL file defines, with a password file, never inline', () => {
    const users = aclRules.map((rule) => rule.split(' ')[1]);
    const configs = byKind('ConfigMap').flatMap((map) => Object.entries(map.data as Record<string, string>)
      .filter(([key]) => ['issuer.yaml', 'authz.yaml', 'inject.yaml'].includes(key)).map(([key, text]) => ({ key, name: map.metadata.name, text })));
    expect(configs.length).toBeGreaterThanOrEqual(4);
    const parse = { 'issuer.yaml': parseIssuerConfig, 'authz.yaml': parseAuthzConfig, 'inject.yaml': parseInjectConfig } as Record<string, (text: string, o: { baseDir: string }) => { store: string; redis: object }>;
    for (const { key, name, text } of configs) {
      const config = parse[key]!(text, { baseDir: '/' });
      expect(config.store, name).toMatch(/^rediss:\/\/hopguard-(issuer|sidecar|injector)@hopguard-redis\.hopguard-system\.svc:6379$/);
      expect(users).toContain(/^rediss:\/\/([^@]+)@/.exec(config.store)![1]);
      expect(config.redis, name).toMatchObject({ passwordFile: '/etc/hopguard/redis/password', tlsCaFile: '/etc/hopguard/redis/ca.crt' });
    }
    // Each of hopguard-system's clients mounts its own user's Secret, and no other user's.
    for (const [deployment, user] of [['hopguard-issuer', 'issuer'], ['hopguard-injector', 'injector']]) {
      const pod = named('Deployment', deployment!).spec.template.spec;
      const mount = (pod.containers[0].volumeMounts as Obj[]).find((m) => m.mountPath === '/etc/hopguard/redis')!;
      expect((pod.volumes as Obj[]).find((v) => v.name === mount.name)?.secret.secretName).toBe(`hopguard-redis-${user}`);
      expect((pod.volumes as Obj[]).map((v) => v.secret?.secretName).filter((n) => n?.startsWith('hopguard-redis-')), deployment).toEqual([`hopguard-redis-${user}`]);
    }
  });

  it.each(['hopguard-redis', 'hopguard-issuer'])('NetworkPolicy %s never admits by a pod label alone: other namespaces by the name the API server sets', (name) => {
    const policy = named('NetworkPolicy', name);
    const peers = (policy.spec.ingress as Obj[]).flatMap((rule) => rule.from as Obj[]);
    expect(peers.length).toBeGreaterThan(0);
    for (const peer of peers) {
      if (peer.namespaceSelector === undefined) {
        // Only pods of the policy's own namespace, hopguard-system, which only its operators write to.
        expect(policy.metadata.namespace).toBe('hopguard-system');
        continue;
      }
      const { matchLabels = {}, matchExpressions = [] } = peer.namespaceSelector as Obj;
      const keys = [...Object.keys(matchLabels), ...(matchExpressions as Obj[]).map((e) => e.key)];
      expect(keys).toEqual(['kubernetes.io/metadata.name']);
      expect((matchExpressions as Obj[]).every((e) => e.operator === 'In' && e.values.length > 0)).toBe(true);
    }
  });
});

describe('k8s/: the configs inside the ConfigMaps are valid hopguard configs that agree', () => {
  const configText = (name: string, key: string) => named('ConfigMap', name).data[key] as string;

  it('the issuer config loads, and serves admin on all interfaces for the probes', () => {
    const issuer = parseIssuerConfig(configText('hopguard-issuer', 'issuer.yaml'), { baseDir: '/' });
    expect(issuer.admin).toEqual({ host: '0.0.0.0', port: 9443 });
  });

  it('the injector config loads, and fails closed exactly when the webhook\'s failurePolicy does', () => {
    const inject = parseInjectConfig(configText('hopguard-injector', 'inject.yaml'), { baseDir: '/' });
    const [webhook] = named('MutatingWebhookConfiguration', 'hopguard-sidecar-injector').webhooks;
    expect({ onError: inject.onError, failurePolicy: webhook.failurePolicy }).toEqual({ onError: 'deny', failurePolicy: 'Fail' });
    expect(webhook.clientConfig.service).toMatchObject({ name: 'hopguard-injector', namespace: 'hopguard-system', path: '/mutate' });
    expect(named('Service', 'hopguard-injector').spec.ports[0]).toMatchObject({ port: webhook.clientConfig.service.port });
  });

  const workloads = deployments.filter((d) => d.spec.template.metadata.annotations?.['hopguard.dev/inject'] === 'true');

  it.each(workloads.map((d) => [d.metadata.name, d] as const))('%s: its authz config loads, with the audience the injector derives, and trusts the issuer', (_, deployment) => {
    const serviceAccount = deployment.spec.template.spec.serviceAccountName;
    const authz = parseAuthzConfig(configText(`hopguard-${serviceAccount}`, 'authz.yaml'), { baseDir: '/' });
    expect(authz.audience).toBe(`spiffe://cluster.local/ns/${deployment.metadata.namespace}/sa/${serviceAccount}`);
    expect(authz.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: 9191 });
    expect(authz.admin).toEqual({ host: '0.0.0.0', port: 9192 });
    const issuer = parseIssuerConfig(configText('hopguard-issuer', 'issuer.yaml'), { baseDir: '/' });
    expect(authz.issuers.map((i) => i.issuer)).toEqual([issuer.issuer]);
    // hopguard's spans go where Envoy's do (envoy/sidecar.yaml's otel_collector cluster).
    expect(authz.telemetry).toMatchObject({ tracing: true, endpoint: 'http://otel-collector.hopguard-system.svc:4317', protocol: 'grpc' });
  });

  it.each(workloads.map((d) => [d.metadata.name, d] as const))('%s: hopguard check-config accepts its authz config with the files its injected pod mounts', async (_, deployment) => {
    const serviceAccount = deployment.spec.template.spec.serviceAccountName as string;
    const mesh = await createTrustDomain(`example-${serviceAccount}`, { workload: identityOf(serviceAccount) });
    try {
      const mounts = path.join(mesh.dir, 'etc-hopguard');
      mountSidecarSecrets(mounts, mesh.ca, mesh.workloads.workload);
      const configFile = path.join(mesh.dir, 'authz.yaml');
      writeFileSync(configFile, sidecarConfigAt(mounts, configText(`hopguard-${serviceAccount}`, 'authz.yaml')));
      const { code, stdout, stderr } = await runCli(['check-config', '--config', configFile]);
      expect({ code, stderr }).toEqual({ code: 0, stderr: '' });
      expect(stdout).toMatch(new RegExp(`^config ok: audience ${identityOf(serviceAccount)}`));
      // It did read the audit key: without the Secret's file the sidecar would not start.
      rmSync(path.join(mounts, 'audit/key.pem'));
      const unkeyed = await runCli(['check-config', '--config', configFile]);
      expect({ code: unkeyed.code, stdout: unkeyed.stdout }).toEqual({ code: 2, stdout: '' });
      expect(unkeyed.stderr).toContain(`audit.signing_key_file: cannot read ${mounts}/audit/key.pem`);
    } finally {
      mesh.cleanup();
    }
  });
});

const identityOf = (serviceAccount: string) => `spiffe://cluster.local/ns/shop/sa/${serviceAccount}`;

describe('k8s/: the issuer and every sidecar audit what they decide, each signed with its own key from a Secret', () => {
  const configText = (name: string, key: string) => named('ConfigMap', name).data[key] as string;
  const inject = parseInjectConfig(configText('hopguard-injector', 'inject.yaml'), { baseDir: '/' });
  const settingsFor = injectionSettings(inject, loadEnvoyTemplate(inject.envoyTemplate));
  const workloads = deployments.filter((d) => d.spec.template.metadata.annotations?.['hopguard.dev/inject'] === 'true');
  /** namespace/Secret for each `audit_key NAMESPACE SECRET` of README's deploy step 2b. */
  const readmeAuditSecrets = [...readFileSync(path.resolve(K8S, '../README.md'), 'utf8').matchAll(/^audit_key ([a-z0-9-]+) ([a-z0-9-]+)/gm)]
    .map((m) => `${m[1]}/${m[2]}`);

  it('the issuer audits to stdout with a key its pod mounts read-only (0440) from hopguard-issuer-audit, and a key at that path loads', () => {
    const text = configText('hopguard-issuer', 'issuer.yaml');
    const { audit } = parseIssuerConfig(text, { baseDir: '/' });
    expect(audit.output).toEqual({ kind: 'stdout' });
    const keyDir = path.posix.dirname(audit.signingKeyFile!);
    const pod = named('Deployment', 'hopguard-issuer').spec.template.spec;
    expect(secretAt(pod, keyDir)).toEqual({ secretName: 'hopguard-issuer-audit', readOnly: true, defaultMode: 0o440 });
    expect(containersMounting(pod, 'hopguard-issuer-audit')).toEqual(['issuer']);
    // What the issuer reads as it starts (readAuditSigningKey, in openAuditLog), with a throwaway key.
    const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-issuer-audit-'));
    try {
      mkdirSync(path.join(dir, 'audit'));
      const moved = parseIssuerConfig(text.replaceAll(`${keyDir}/`, `${dir}/audit/`), { baseDir: '/' }).audit;
      expect(() => readAuditSigningKey(moved)).toThrow(`audit.signing_key_file: cannot read ${dir}/audit/key.pem`);
      writeAuditKeyPair(path.join(dir, 'audit'), 'key');
      expect(readAuditSigningKey(moved)?.asymmetricKeyType).toBe('ed25519');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each(workloads.map((d) => [d.metadata.name, d] as const))('%s: its sidecar audits every decision to stdout, with a key the injected pod mounts read-only into hopguard authz alone', (_, deployment) => {
    const serviceAccount = deployment.spec.template.spec.serviceAccountName as string;
    const { audit } = parseAuthzConfig(configText(`hopguard-${serviceAccount}`, 'authz.yaml'), { baseDir: '/' });
    expect(audit).toMatchObject({ output: { kind: 'stdout' }, allows: 'all' });
    const [injected] = documents(injectManifests(stringify(deployment), settingsFor, 'shop').yaml);
    const pod = injected!.spec.template.spec;
    const secret = `hopguard-${serviceAccount}-audit`;
    expect(secretAt(pod, path.posix.dirname(audit.signingKeyFile!), 'hopguard-authz')).toEqual({ secretName: secret, readOnly: true });
    expect(containersMounting(pod, secret)).toEqual(['hopguard-authz']);
  });

  it('README\'s step 2b creates exactly the audit key Secrets the manifests mount, each in its namespace', () => {
    const mounted = ['hopguard-system/hopguard-issuer-audit', 'hopguard-system/hopguard-injector-audit',
      ...workloads.map((d) => `${d.metadata.namespace}/hopguard-${d.spec.template.spec.serviceAccountName}-audit`)];
    expect(secretAt(named('Deployment', 'hopguard-injector').spec.template.spec, '/etc/hopguard/audit')?.secretName).toBe('hopguard-injector-audit');
    expect(readmeAuditSecrets.sort()).toEqual(mounted.sort());
  });

  it('README\'s recipe takes a sidecar\'s audit stream back out of the kubelet\'s CRI log, and it verifies', async () => {
    const awkProgram = /^awk '([^']+)'/m.exec(readFileSync(path.resolve(K8S, '../README.md'), 'utf8'))?.[1];
    expect(awkProgram, 'README step 2b: the awk that takes the stdout lines out of a CRI log').toBeDefined();
    const fixtures = await createFixtures();
    try {
      const { publicPath } = writeAuditKeyPair(fixtures.dir);
      const config = path.join(fixtures.dir, 'authz-stdout.yaml');
      writeFileSync(config, `${authzYaml(fixtures)}routes:\n  - name: read-orders\n    path_prefix: /orders/\naudit:\n  output: stdout\n  allows: all\n  signing_key_file: audit.pem\n`);
      const sidecar = spawnCli(['authz', '--config', config]);
      try {
        const envoy = new EnvoyClient((await sidecar.logEvent('authz_started')).grpc);
        const token = await fixtures.token();
        for (const headers of [{ authorization: `Bearer ${token}` }, {}] as Record<string, string>[]) {
          await envoy.check({ path: `/orders/${'1'.repeat(300)}`, headers, principal: CHECKOUT, certificatePem: fixtures.checkout.certPem });
        }
        envoy.close();
      } finally {
        sidecar.child.kill('SIGTERM');
        expect(await sidecar.exited).toBe(0);
      }
      // The container's two streams as the kubelet writes them: time, stream, F (a whole line) or
      // P (a part the runtime split off), interleaved; the records' long lines split in three.
      const cri = (stream: string, line: string) => {
        const parts = line.length > 200 ? [line.slice(0, 100), line.slice(100, 200), line.slice(200)] : [line];
        return parts.map((part, i) => `2026-12-01T13:00:00.000000000Z ${stream} ${i === parts.length - 1 ? 'F' : 'P'} ${part}`);
      };
      const [out, err] = [sidecar.stdout(), sidecar.stderr()].map((text) => text.trimEnd().split('\n'));
      expect(out!.filter((line) => line.length > 200)).not.toEqual([]);
      const log = path.join(fixtures.dir, '0.log');
      writeFileSync(log, `${out!.flatMap((line, i) => [...cri('stdout', line), ...(err![i] === undefined ? [] : cri('stderr', err![i]!))]).join('\n')}\n`);
      const stream = path.join(fixtures.dir, 'orders-audit.jsonl');
      writeFileSync(stream, execFileSync('awk', [awkProgram!, log], { encoding: 'utf8' }));
      expect(readFileSync(stream, 'utf8')).toBe(sidecar.stdout());
      const verified = await runCli(['audit', 'verify', stream, '--key', publicPath, '--writer', hostname()]);
      expect({ code: verified.code, stderr: verified.stderr }).toEqual({ code: 0, stderr: '' });
      expect(verified.stdout).toMatch(/: \d+ lines, 3 records, 1 checkpoint; signed through line \d+ \(closed\)\n[^]*\nverified\n$/);
      // The CRI file itself is no audit log.
      expect((await runCli(['audit', 'verify', log, '--key', publicPath])).code).toBe(1);
    } finally {
      fixtures.cleanup();
    }
  });
});

describe('k8s/: the example uses egress end to end, frontend → orders → payments, with no token in an application', () => {
  const configText = (name: string, key: string) => named('ConfigMap', name).data[key] as string;
  const issuer = parseIssuerConfig(configText('hopguard-issuer', 'issuer.yaml'), { baseDir: '/' });
  const shop = deployments.filter((d) => d.metadata.namespace === 'shop');
  const sidecars = shop.map((d) => {
    const serviceAccount = d.spec.template.spec.serviceAccountName as string;
    return { name: d.metadata.name as string, identity: identityOf(serviceAccount), authz: parseAuthzConfig(configText(`hopguard-${serviceAccount}`, 'authz.yaml'), { baseDir: '/' }) };
  });
  /** The sidecar a destination host names: <Service>.shop.svc.cluster.local, the Service selecting its Deployment. */
  const calleeOf = (host: string) => {
    const service = named('Service', host.replace(/\.shop\.svc\.cluster\.local$/, ''));
    const deployment = shop.find((d) => service && JSON.stringify(d.spec.template.metadata.labels) === JSON.stringify(service.spec.selector));
    return sidecars.find((s) => s.name === deployment?.metadata.name);
  };
  const hops = sidecars.flatMap((caller) => (caller.authz.egress?.destinations ?? []).map((destination) => ({ caller, destination, callee: calleeOf(destination.host) })));
  const sidecarYaml = readYaml(readFileSync(path.resolve(K8S, '../envoy/sidecar.yaml'), 'utf8'), 'sidecar.yaml') as Obj;

  it('the chain is frontend → orders → payments, each destination addressed to its callee\'s identity', () => {
    expect(hops.map((h) => `${h.caller.name} → ${h.callee?.name}`)).toEqual(['frontend → orders', 'orders → payments']);
    for (const { destination, callee } of hops) expect(destination.audience).toBe(callee!.identity);
  });

  it('every sidecar has issuer_client with its workload certificate, and egress where Envoy\'s hopguard_egress cluster points', () => {
    const egressCluster = (sidecarYaml.static_resources.clusters as Obj[]).find((c) => c.name === 'hopguard_egress')!;
    const outbound = objectsOfType((sidecarYaml.static_resources.listeners as Obj[]).find((l) => l.name === 'outbound'), EXT_AUTHZ)[0] as Obj;
    const envoyTimeoutMs = Number(String(outbound.grpc_service.timeout).replace(/s$/, '')) * 1000;
    for (const { name, authz } of sidecars) {
      expect(authz.issuerClient, name).toEqual({
        tokenEndpoint: `${issuer.issuer}/token`, transport: 'tls',
        caFile: '/etc/hopguard/tls/ca.crt', certFile: '/etc/hopguard/tls/tls.crt', keyFile: '/etc/hopguard/tls/tls.key',
        timeoutMs: expect.any(Number),
      });
      // hopguard answers issuer_unavailable before Envoy's own timeout would answer for it.
      expect(authz.issuerClient!.timeoutMs, name).toBeLessThan(envoyTimeoutMs);
      const { address, port_value } = egressCluster.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address as Obj;
      expect(authz.egress?.listen, name).toEqual({ kind: 'tcp', host: address, port: port_value });
    }
  });

  it('the issuer lets each caller obtain what its destinations ask: its own token at the edge, an exchange after', () => {
    for (const { caller, destination } of hops) {
      const client = issuer.clients.find((c) => c.id === caller.identity);
      expect(client, caller.name).toBeDefined();
      expect(client!.grants).toContain(destination.withoutHandle === 'client_credentials' ? 'client_credentials' : 'token_exchange');
      expect(client!.audiences).toContain(destination.audience);
      expect(client!.scopes).toEqual(expect.arrayContaining(destination.scopes));
    }
  });

  it('each hop asks for the scopes its callee\'s routes need, and an exchange only for scopes the inbound token carries', () => {
    for (const { caller, destination, callee } of hops) {
      expect(destination.scopes, `${caller.name} → ${callee!.name}`).toEqual(expect.arrayContaining(callee!.authz.routes.flatMap((r) => r.scopes)));
      if (destination.withoutHandle !== 'deny') continue;
      // Scopes only narrow along a chain: what every token addressed to this caller carries.
      for (const inbound of hops.filter((h) => h.callee === caller)) expect(inbound.destination.scopes).toEqual(expect.arrayContaining(destination.scopes));
    }
  });

  it('a destination whose callee has a one-time route gets a fresh token per request (a cached one would be token_replayed)', () => {
    for (const { destination, callee } of hops) expect(destination.perRequest).toBe(callee!.authz.routes.some((r) => r.oneTime));
  });

  it('orders\' application passes on the handle and the trace context to payments through its Envoy, and nothing else', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-shop-app-'));
    // Stands in for Envoy's outbound listener (127.0.0.1:15001): records what the application sends.
    const sent: IncomingHttpHeaders[] = [];
    const outbound = createServer((req, res) => {
      sent.push(req.headers);
      req.resume();
      res.setHeader('content-type', 'application/json');
      res.end('{"service":"payments"}');
    });
    await new Promise<void>((resolve) => outbound.listen(0, '127.0.0.1', resolve));
    const orders = named('Deployment', 'orders').spec.template.spec.containers[0] as Obj;
    const env = Object.fromEntries((orders.env as Obj[]).map((e) => [e.name, e.value]));
    const script = path.join(dir, 'shop-app.mjs');
    writeFileSync(script, named('ConfigMap', 'shop-app').data['shop-app.mjs']);
    expect(orders.command).toEqual(['node', '/app/shop-app.mjs']);
    const app = spawn(process.execPath, [script], {
      env: { ...env, PORT: '0', OUTBOUND: `http://127.0.0.1:${(outbound.address() as AddressInfo).port}` }, stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const [line] = await once(app.stdout!, 'data');
      const port = Number(/listening on (\d+)/.exec(String(line))![1]);
      // What orders' Envoy delivers after an inbound allow: the handle and identity headers, no token.
      const inbound = { 'x-hopguard-handle': 'hgh.opaque', 'x-hopguard-subject': identityOf('frontend'), traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01', cookie: 'session=1' };
      const res = await fetch(`http://127.0.0.1:${port}/orders/pay`, { method: 'POST', headers: inbound, body: '{}' });
      const answer = await res.json() as Obj;
      expect(answer).toMatchObject({ service: 'orders', received: inbound, next: { status: 200, body: { service: 'payments' } } });
      expect(sent).toHaveLength(1);
      const { 'content-length': _length, connection: _connection, ...propagated } = sent[0]!;
      expect(propagated).toEqual({
        host: 'payments.shop.svc.cluster.local:15443', 'content-type': 'application/json',
        'x-hopguard-handle': 'hgh.opaque', traceparent: inbound.traceparent,
      });
    } finally {
      app.kill();
      outbound.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('no application container mounts a Secret: the workload key stays with the sidecars', () => {
    for (const deployment of shop) {
      const pod = deployment.spec.template.spec;
      const secretVolumes = ((pod.volumes ?? []) as Obj[]).filter((v) => v.secret !== undefined || v.projected !== undefined).map((v) => v.name);
      const mounting = (pod.containers as Obj[]).filter((c) => ((c.volumeMounts ?? []) as Obj[]).some((m) => secretVolumes.includes(m.name)));
      expect(mounting.map((c) => c.name), deployment.metadata.name).toEqual([]);
    }
  });
});

describe('hopguard inject -f on the example app', () => {
  const config = defaultInjectConfig();
  const settingsFor = injectionSettings(config, loadEnvoyTemplate(config.envoyTemplate));
  const files = ['orders.yaml', 'frontend.yaml', 'payments.yaml'].map((file) => path.join(OVERLAY, file));

  it.each(files)('%s: the injected Deployment validates, and its Envoy bootstrap is a valid Bootstrap', (file) => {
    const text = readFileSync(file, 'utf8');
    const result = injectManifests(text, settingsFor, 'default');
    const out = documents(result.yaml);
    expect(out.map((doc) => doc.kind)).toEqual(documents(text).map((doc) => doc.kind));
    expect(out.flatMap(kubernetesProblems)).toEqual([]);
    const deployment = out.find((doc) => doc.kind === 'Deployment')!;
    const pod = deployment.spec.template;
    expect(pod.spec.containers.map((c: Obj) => c.name)).toEqual([deployment.metadata.name]);
    // Native sidecars (the default): first among the init containers, kept running.
    expect(pod.spec.initContainers.map((c: Obj) => [c.name, c.restartPolicy])).toEqual([['hopguard-envoy', 'Always'], ['hopguard-authz', 'Always']]);
    const containers = [...pod.spec.initContainers, ...pod.spec.containers] as Obj[];
    expect(pod.metadata.annotations['hopguard.dev/identity']).toBe(`spiffe://cluster.local/ns/shop/sa/${deployment.metadata.name}`);
    const args = pod.spec.initContainers[0].args as string[];
    const bootstrap = JSON.parse(args[args.indexOf('--config-yaml') + 1]!) as Obj;
    expect(loadEnvoySchema([bootstrap]).check(bootstrap)).toEqual([]);
    // The sidecar's Redis credentials: mounted by hopguard authz, by no other container.
    const redisVolumes = (pod.spec.volumes as Obj[]).filter((v) => v.secret?.secretName === 'hopguard-redis-sidecar').map((v) => v.name);
    expect(redisVolumes).toHaveLength(1);
    const mounting = containers.filter((c) => (c.volumeMounts ?? []).some((m: Obj) => redisVolumes.includes(m.name)));
    expect(mounting.map((c) => c.name)).toEqual(['hopguard-authz']);
    // The workload certificate, which issuer_client binds tokens to: the sidecars', never the application's.
    const tlsVolumes = (pod.spec.volumes as Obj[]).filter((v) => v.secret?.secretName === `hopguard-${deployment.metadata.name}-tls`).map((v) => v.name);
    expect(tlsVolumes).toHaveLength(1);
    const mountingTls = containers.filter((c) => (c.volumeMounts ?? []).some((m: Obj) => tlsVolumes.includes(m.name)));
    expect(mountingTls.map((c) => c.name)).toEqual(['hopguard-envoy', 'hopguard-authz']);
    // Everything but the workload came through unchanged.
    expect(out.filter((doc) => doc.kind !== 'Deployment')).toEqual(documents(text).filter((doc) => doc.kind !== 'Deployment'));
    expect(result.notes).toEqual([`Deployment/${deployment.metadata.name}: injected as spiffe://cluster.local/ns/shop/sa/${deployment.metadata.name}`]);
  });

  it('is idempotent: injecting the output again changes nothing', () => {
    const once = injectManifests(readFileSync(files[0]!, 'utf8'), settingsFor, 'default');
    const twice = injectManifests(once.yaml, settingsFor, 'default');
    expect(twice.yaml).toBe(once.yaml);
    expect(twice.notes).toEqual(['Deployment/orders: skipped (already injected)']);
  });

  it('the CLI prints the injected manifests and notes each workload on stderr', async () => {
    const { code, stdout, stderr } = await runCli(['inject', '-f', files[0]!]);
    expect({ code, stderr }).toEqual({ code: 0, stderr: 'hopguard inject: Deployment/orders: injected as spiffe://cluster.local/ns/shop/sa/orders\n' });
    expect(documents(stdout).flatMap(kubernetesProblems)).toEqual([]);
  });

  it('the CLI exits 2 naming the workload when an annotated one cannot be injected, or the config is missing', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-inject-cli-'));
    try {
      const file = path.join(dir, 'pod.yaml');
      writeFileSync(file, 'apiVersion: v1\nkind: Pod\nmetadata: { name: bare, annotations: { hopguard.dev/inject: "true" } }\nspec: { containers: [{ name: app, image: x }] }\n');
      expect(await runCli(['inject', '-f', file])).toEqual({
        code: 2, stdout: '',
        stderr: 'hopguard: Pod/bare: no application port: set hopguard.dev/app-port or give the first container a containerPort\nRun "hopguard --help" for usage.\n',
      });
      expect(await runCli(['inject', '-f', file, '--config', path.join(dir, 'missing.yaml')])).toMatchObject({
        code: 2, stderr: `hopguard: ${path.join(dir, 'missing.yaml')}: cannot read the config file: it does not exist (ENOENT)\n`,
      });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
