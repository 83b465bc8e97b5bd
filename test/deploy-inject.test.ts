import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { applyPatch, type Operation } from 'rfc6902';
import { parseAllDocuments, stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCa, issueCert, type Ca } from '../src/devkit/pki.js';
import { admit, type AdmissionReviewResponse } from '../src/inject/admission.js';
import { loadEnvoyTemplate } from '../src/inject/envoy-bootstrap.js';
import { defaultInjectConfig, injectionSettings, parseInjectConfig, type InjectConfig } from '../src/inject/inject-config.js';
import { injectManifests } from '../src/inject/offline-inject.js';
import { planInjection } from '../src/inject/sidecar-injection.js';
import { startWebhook, type RunningWebhook } from '../src/inject/webhook-server.js';
import { ConfigError } from '../src/schema/config-error.js';
import { silentLogger } from '../src/telemetry/log.js';
import { loadEnvoySchema } from './support/deploy-envoy-schema.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { containersMounting, secretAt } from './support/pod-mounts.js';
import { runCli, spawnCli } from './support/process.js';

type Obj = Record<string, any>;
const config = defaultInjectConfig();
const settingsFor = injectionSettings(config, loadEnvoyTemplate(config.envoyTemplate));

/** An orders pod as a ReplicaSet would create it; `null`: without annotations. */
function orderPod(annotations: Record<string, string> | null = { 'hopguard.dev/inject': 'true' }): Obj {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { generateName: 'orders-7c9d-', namespace: 'shop', labels: { app: 'orders' }, ...(annotations && { annotations }) },
    spec: {
      serviceAccountName: 'orders',
      containers: [{ name: 'orders', image: 'registry.k8s.io/e2e-test-images/agnhost:2.53', ports: [{ containerPort: 8080 }] }],
      volumes: [{ name: 'scratch', emptyDir: {} }],
    },
  };
}

function review(object: unknown, uid = 'b6f1c0de-0000-4000-8000-000000000001', namespace = 'shop'): Obj {
  return {
    apiVersion: 'admission.k8s.io/v1',
    kind: 'AdmissionReview',
    request: {
      uid, namespace, operation: 'CREATE',
      kind: { group: '', version: 'v1', kind: 'Pod' },
      resource: { group: '', version: 'v1', resource: 'pods' },
      object,
    },
  };
}

function answered(body: unknown, onError: 'deny' | 'allow' = 'deny'): AdmissionReviewResponse['response'] {
  const outcome = admit(body, settingsFor, onError);
  if (outcome.kind !== 'answered') throw new Error(`unanswered: ${outcome.message}`);
  return outcome.review.response;
}

function decodePatch(response: AdmissionReviewResponse['response']): Operation[] {
  expect(response.patchType).toBe('JSONPatch');
  return JSON.parse(Buffer.from(response.patch!, 'base64').toString('utf8')) as Operation[];
}

/** Applies the patch as the API server would: every operation must succeed. */
function patched(pod: Obj, patch: Operation[]): Obj {
  const copy = structuredClone(pod);
  expect(applyPatch(copy, patch)).toEqual(patch.map(() => null));
  return copy;
}

/** Every container of the pod, init containers (where native sidecars go) first. */
function allContainers(pod: Obj): Obj[] {
  return [...(pod.spec.initContainers ?? []), ...pod.spec.containers] as Obj[];
}

function container(pod: Obj, name: string): Obj {
  return allContainers(pod).find((c) => c.name === name)!;
}

function envoyBootstrapOf(pod: Obj): Obj {
  const args = container(pod, 'hopguard-envoy').args as string[];
  return JSON.parse(args[args.indexOf('--config-yaml') + 1]!) as Obj;
}

describe('admission: an annotated pod', () => {
  const response = answered(review(orderPod()));
  const pod = patched(orderPod(), decodePatch(response));

  it('is allowed with a JSONPatch of add operations only', () => {
    expect(response).toMatchObject({ uid: 'b6f1c0de-0000-4000-8000-000000000001', allowed: true });
    expect(decodePatch(response).every((op) => op.op === 'add')).toBe(true);
  });

  it('validates against the Kubernetes Pod schema once patched', () => {
    expect(kubernetesProblems(pod)).toEqual([]);
  });

  it('gains Envoy and hopguard authz as native sidecars, started (startup probe) before the application, restricted and with probes', () => {
    expect((pod.spec.containers as Obj[]).map((c) => c.name)).toEqual(['orders']);
    expect((pod.spec.initContainers as Obj[]).map((c) => [c.name, c.restartPolicy])).toEqual([['hopguard-envoy', 'Always'], ['hopguard-authz', 'Always']]);
    expect(container(pod, 'hopguard-authz').startupProbe).toEqual({ httpGet: { path: '/readyz', port: 9192 }, periodSeconds: 1, failureThreshold: 120 });
    expect(container(pod, 'hopguard-envoy').startupProbe).toEqual({ httpGet: { path: '/healthz/ready', port: 15021 }, periodSeconds: 1, failureThreshold: 120 });
    const authz = container(pod, 'hopguard-authz');
    expect(authz.args).toEqual(['authz', '--config', '/etc/hopguard/authz/authz.yaml']);
    expect(authz.readinessProbe.httpGet).toEqual({ path: '/readyz', port: 9192 });
    expect(authz.livenessProbe.httpGet).toEqual({ path: '/healthz', port: 9192 });
    for (const name of ['hopguard-envoy', 'hopguard-authz']) {
      expect(container(pod, name).securityContext).toMatchObject({
        runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] },
      });
      expect(container(pod, name).resources.limits.memory).toBeDefined();
    }
  });

  it('takes its identity from the service account, and names its config and certificate after it', () => {
    expect(pod.metadata.annotations).toEqual({
      'hopguard.dev/inject': 'true',
      'hopguard.dev/status': 'injected',
      'hopguard.dev/identity': 'spiffe://cluster.local/ns/shop/sa/orders',
    });
    expect(pod.metadata.labels).toEqual({ app: 'orders', 'hopguard.dev/sidecar': 'injected' });
    expect(pod.spec.volumes).toEqual([
      { name: 'scratch', emptyDir: {} },
      { name: 'hopguard-tls', secret: { secretName: 'hopguard-orders-tls' } },
      { name: 'hopguard-authz-config', configMap: { name: 'hopguard-orders' } },
      { name: 'hopguard-redis', secret: { secretName: 'hopguard-redis-sidecar', optional: true } },
      { name: 'hopguard-audit', secret: { secretName: 'hopguard-orders-audit', optional: true } },
    ]);
  });

  it('mounts the Redis credentials into hopguard authz only: never the application, nor Envoy', () => {
    const redisVolumes = (pod.spec.volumes as Obj[]).filter((v) => v.secret?.secretName === 'hopguard-redis-sidecar').map((v) => v.name);
    expect(redisVolumes).toEqual(['hopguard-redis']);
    const mounting = allContainers(pod).filter((c) => (c.volumeMounts ?? []).some((m: Obj) => redisVolumes.includes(m.name)));
    expect(mounting.map((c) => c.name)).toEqual(['hopguard-authz']);
    expect(container(pod, 'hopguard-authz').volumeMounts).toContainEqual({ name: 'hopguard-redis', mountPath: '/etc/hopguard/redis', readOnly: true });
    // Nor through the environment, which a shared process namespace would show.
    expect(JSON.stringify(allContainers(pod))).not.toContain('HOPGUARD_REDIS_PASSWORD');
  });

  it('mounts the workload\'s audit signing key into hopguard authz only, read-only where audit.signing_key_file names it', () => {
    expect(containersMounting(pod.spec, 'hopguard-orders-audit')).toEqual(['hopguard-authz']);
    expect(secretAt(pod.spec, '/etc/hopguard/audit', 'hopguard-authz')).toEqual({ secretName: 'hopguard-orders-audit', readOnly: true });
  });

  it('mounts the workload certificate into the sidecars only: hopguard authz where issuer_client reads it, never the application', () => {
    const tlsVolumes = (pod.spec.volumes as Obj[]).filter((v) => v.secret?.secretName === 'hopguard-orders-tls').map((v) => v.name);
    expect(tlsVolumes).toEqual(['hopguard-tls']);
    const mounting = allContainers(pod).filter((c) => (c.volumeMounts ?? []).some((m: Obj) => tlsVolumes.includes(m.name)));
    expect(mounting.map((c) => c.name)).toEqual(['hopguard-envoy', 'hopguard-authz']);
    // issuer_client's ca_file, cert_file and key_file: /etc/hopguard/tls/{ca.crt,tls.crt,tls.key}.
    expect(container(pod, 'hopguard-authz').volumeMounts).toContainEqual({ name: 'hopguard-tls', mountPath: '/etc/hopguard/tls', readOnly: true });
  });

  it('gives Envoy an outbound listener that asks hopguard\'s egress port, fail closed', () => {
    const bootstrap = envoyBootstrapOf(pod);
    const outbound = (bootstrap.static_resources.listeners as Obj[]).find((l) => l.name === 'outbound')!;
    const [extAuthz] = (outbound.filter_chains[0].filters[0].typed_config.http_filters as Obj[]).map((f) => f.typed_config);
    expect(extAuthz).toMatchObject({ grpc_service: { envoy_grpc: { cluster_name: 'hopguard_egress' } }, failure_mode_allow: false });
    const egress = (bootstrap.static_resources.clusters as Obj[]).find((c) => c.name === 'hopguard_egress')!;
    expect(egress.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address).toEqual({ address: '127.0.0.1', port_value: 9194 });
  });

  it('gives Envoy a bootstrap for this pod that is a valid Envoy Bootstrap', () => {
    const bootstrap = envoyBootstrapOf(pod);
    expect(loadEnvoySchema([bootstrap]).check(bootstrap)).toEqual([]);
    expect(bootstrap.node).toEqual({ id: 'spiffe://cluster.local/ns/shop/sa/orders', cluster: 'orders.shop' });
    const app = (bootstrap.static_resources.clusters as Obj[]).find((c) => c.name === 'local_app')!;
    expect(app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(8080);
    expect(JSON.stringify(bootstrap).match(/"service_name":"([^"]+)"/g)).toEqual(['"service_name":"orders.shop"', '"service_name":"orders.shop"']);
  });

  it('is not injected twice: the patched pod, reviewed again, gets no patch', () => {
    const again = answered(review(pod));
    expect(again).toEqual({ uid: 'b6f1c0de-0000-4000-8000-000000000001', allowed: true });
  });
});

describe('admission: other pods', () => {
  it('a pod without the annotation, or with it not "true", is allowed untouched', () => {
    expect(answered(review(orderPod(null)))).toEqual({ uid: 'b6f1c0de-0000-4000-8000-000000000001', allowed: true });
    expect(answered(review(orderPod({ 'hopguard.dev/inject': 'false' })))).not.toHaveProperty('patch');
  });

  it('a pod with no labels, no volumes and the default service account gets the maps and lists it lacks', () => {
    const pod = orderPod();
    delete pod.metadata.labels;
    delete pod.spec.volumes;
    delete pod.spec.serviceAccountName;
    pod.metadata.annotations['hopguard.dev/app-port'] = '3000';
    const result = patched(pod, decodePatch(answered(review(pod, 'u2', 'payments'))));
    expect(kubernetesProblems(result)).toEqual([]);
    expect(result.metadata.annotations['hopguard.dev/identity']).toBe('spiffe://cluster.local/ns/payments/sa/default');
    expect(result.metadata.labels).toEqual({ 'hopguard.dev/sidecar': 'injected' });
    expect(result.spec.volumes).toHaveLength(4);
    expect(result.spec.volumes).toContainEqual({ name: 'hopguard-audit', secret: { secretName: 'hopguard-default-audit', optional: true } });
    const app = (envoyBootstrapOf(result).static_resources.clusters as Obj[]).find((c) => c.name === 'local_app')!;
    expect(app.load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value).toBe(3000);
  });

  it('honours the trust domain, images and resource names it is configured with', () => {
    const custom = parseInjectConfig('trust_domain: prod.example\nimages: { hopguard: registry.example/hopguard:1.2.3 }\n', { baseDir: '/' });
    const plan = planInjection(
      { ...orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/tls-secret': 'orders-cert', 'hopguard.dev/authz-config': 'orders-policy', 'hopguard.dev/redis-secret': 'orders-redis', 'hopguard.dev/audit-secret': 'orders-audit-key' }) },
      injectionSettings(custom, loadEnvoyTemplate(custom.envoyTemplate))('shop'),
    );
    expect(plan).toMatchObject({ injected: true, identity: 'spiffe://prod.example/ns/shop/sa/orders' });
    const pod = plan.injected ? patched(orderPod(), plan.patch) : {};
    expect(container(pod, 'hopguard-authz').image).toBe('registry.example/hopguard:1.2.3');
    expect(container(pod, 'hopguard-envoy').image).toBe('envoyproxy/envoy:v1.34.1');
    expect(pod.spec.volumes.slice(1)).toEqual([
      { name: 'hopguard-tls', secret: { secretName: 'orders-cert' } },
      { name: 'hopguard-authz-config', configMap: { name: 'orders-policy' } },
      { name: 'hopguard-redis', secret: { secretName: 'orders-redis', optional: true } },
      { name: 'hopguard-audit', secret: { secretName: 'orders-audit-key', optional: true } },
    ]);
  });

  it('a pod that shares its process namespace is refused: the application would see hopguard\'s credentials', () => {
    const pod = orderPod();
    pod.spec.shareProcessNamespace = true;
    expect(answered(review(pod))).toMatchObject({
      allowed: false, status: { message: expect.stringContaining('shareProcessNamespace') },
    });
  });
});

describe('admission: malformed reviews', () => {
  it('a body that is not an AdmissionReview, or has no uid, cannot be answered (the API server applies failurePolicy)', () => {
    expect(admit(undefined, settingsFor, 'deny')).toEqual({ kind: 'unanswerable', message: 'expected an admission.k8s.io/v1 AdmissionReview' });
    expect(admit({ apiVersion: 'admission.k8s.io/v1beta1', kind: 'AdmissionReview', request: {} }, settingsFor, 'allow').kind).toBe('unanswerable');
    const noUid = review(orderPod());
    delete noUid.request.uid;
    expect(admit(noUid, settingsFor, 'allow')).toEqual({ kind: 'unanswerable', message: 'the AdmissionReview has no request.uid' });
  });

  const broken: [string, () => Obj, RegExp][] = [
    ['no containers', () => ({ ...orderPod(), spec: { containers: [] } }), /spec\.containers must be a non-empty list/],
    ['a non-numeric app port', () => orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/app-port': 'http' }), /hopguard\.dev\/app-port must be a port number/],
    ['an app port the sidecars use', () => orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/app-port': '15001' }), /the application port 15001 is one the sidecars use/],
    ['the egress port as the app port', () => orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/app-port': '9194' }), /the application port 9194 is one the sidecars use/],
    ['the application mounting the workload certificate by its volume name', () => {
      const p = orderPod(); p.spec.containers[0].volumeMounts = [{ name: 'hopguard-tls', mountPath: '/certs' }]; return p;
    }, /container orders mounts hopguard-tls, a volume injection adds for the sidecars alone/],
    ['an init container mounting the Redis credentials by their volume name', () => {
      const p = orderPod(); p.spec.initContainers = [{ name: 'setup', image: 'x', volumeMounts: [{ name: 'hopguard-redis', mountPath: '/r' }] }]; return p;
    }, /container setup mounts hopguard-redis/],
    ['the application mounting the audit signing key by its volume name', () => {
      const p = orderPod(); p.spec.containers[0].volumeMounts = [{ name: 'hopguard-audit', mountPath: '/audit' }]; return p;
    }, /container orders mounts hopguard-audit, a volume injection adds for the sidecars alone/],
    ['an audit-secret annotation that is not a resource name', () => orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/audit-secret': 'Orders/Key' }), /hopguard\.dev\/audit-secret must be a resource name/],
    ['no port at all', () => { const p = orderPod(); delete p.spec.containers[0].ports; return p; }, /no application port/],
    ['a container already named hopguard-envoy', () => { const p = orderPod(); p.spec.containers.push({ name: 'hopguard-envoy', image: 'x' }); return p; }, /already named hopguard-envoy/],
    ['annotations that are not a mapping', () => ({ ...orderPod(), metadata: { annotations: ['hopguard.dev/inject'] } }), /metadata\.annotations is not an object/],
  ];

  it.each(broken)('%s: denied with the reason when on_error is deny (fail closed)', (_, pod, reason) => {
    const response = answered(review(pod()), 'deny');
    expect(response.allowed).toBe(false);
    expect(response.status!.code).toBe(400);
    expect(response.status!.message).toMatch(reason);
    expect(response).not.toHaveProperty('patch');
  });

  it.each(broken)('%s: admitted without sidecars and with a warning when on_error is allow (fail open)', (_, pod, reason) => {
    const response = answered(review(pod()), 'allow');
    expect(response.allowed).toBe(true);
    expect(response).not.toHaveProperty('patch');
    expect(response.warnings![0]).toMatch(reason);
  });

  it('a review of something other than a Pod CREATE is refused rather than guessed at', () => {
    const body = review(orderPod());
    body.request.operation = 'UPDATE';
    expect(answered(body).status!.message).toMatch(/only CREATE of Pods/);
  });
});

describe('layouts and Istio', () => {
  const settingsWith = (yaml: string) => {
    const custom = parseInjectConfig(yaml, { baseDir: '/' });
    return injectionSettings(custom, loadEnvoyTemplate(custom.envoyTemplate));
  };
  const inject = (pod: Obj, yaml: string) => {
    const plan = planInjection(pod, settingsWith(yaml)('shop'));
    if (!plan.injected) throw new Error(`not injected: ${plan.reason}`);
    return patched(pod, plan.patch);
  };
  /** A pod as Istio's injector leaves it (its injector ran first, or was reinvoked). */
  const istioInjectedPod = () => {
    const pod = orderPod({ 'hopguard.dev/inject': 'true', 'sidecar.istio.io/status': '{"containers":["istio-proxy"]}' });
    pod.spec.initContainers = [{ name: 'istio-init', image: 'docker.io/istio/proxyv2:1.24.0' }];
    pod.spec.containers.push({ name: 'istio-proxy', image: 'docker.io/istio/proxyv2:1.24.0' });
    return pod;
  };

  it('sidecars: classic adds them beside the application, as before native sidecars', () => {
    const pod = inject(orderPod(), 'sidecars: classic\n');
    expect(kubernetesProblems(pod)).toEqual([]);
    expect((pod.spec.containers as Obj[]).map((c) => c.name)).toEqual(['orders', 'hopguard-envoy', 'hopguard-authz']);
    expect(pod.spec.initContainers).toBeUndefined();
    for (const c of pod.spec.containers as Obj[]) expect([c.restartPolicy, c.startupProbe]).toEqual([undefined, undefined]);
  });

  it('native sidecars go before the pod\'s own init containers, which start only once hopguard is started', () => {
    const own = orderPod();
    own.spec.initContainers = [{ name: 'migrate', image: 'x' }];
    const pod = inject(own, '{}');
    expect(kubernetesProblems(pod)).toEqual([]);
    expect((pod.spec.initContainers as Obj[]).map((c) => c.name)).toEqual(['hopguard-envoy', 'hopguard-authz', 'migrate']);
  });

  it('a Job gets native sidecars too, so it completes when its application does', () => {
    const job = { apiVersion: 'batch/v1', kind: 'Job', metadata: { name: 'report', namespace: 'shop' }, spec: { template: orderPod() } };
    job.spec.template.spec.restartPolicy = 'Never';
    const out = injectManifests(stringify(job), settingsFor, 'shop');
    const pod = (parseAllDocuments(out.yaml)[0]!.toJS() as Obj).spec.template;
    expect((pod.spec.initContainers as Obj[]).every((c) => c.restartPolicy === 'Always')).toBe(true);
    expect(kubernetesProblems({ apiVersion: 'v1', kind: 'Pod', metadata: { name: 'report' }, spec: pod.spec })).toEqual([]);
  });

  it('mode: istio adds hopguard authz alone, with what Istio needs to share its workload certificate with it', () => {
    const pod = inject(orderPod(), 'mode: istio\n');
    expect(kubernetesProblems(pod)).toEqual([]);
    expect(allContainers(pod).map((c) => c.name)).toEqual(['hopguard-authz', 'orders']);
    expect(JSON.parse(pod.metadata.annotations['proxy.istio.io/config'])).toEqual({
      holdApplicationUntilProxyStarts: true, proxyMetadata: { OUTPUT_CERTS: '/etc/istio-output-certs' },
    });
    expect(JSON.parse(pod.metadata.annotations['sidecar.istio.io/userVolumeMount'])).toEqual([{ name: 'hopguard-istio-certs', mountPath: '/etc/istio-output-certs' }]);
    expect(pod.metadata.labels['hopguard.dev/sidecar']).toBe('injected');
    expect(pod.spec.volumes).toContainEqual({ name: 'hopguard-istio-certs', emptyDir: { medium: 'Memory' } });
    // The workload certificate is Istio's: hopguard's own TLS Secret is not mounted.
    expect((pod.spec.volumes as Obj[]).map((v) => v.name)).not.toContain('hopguard-tls');
    // Istio's key: hopguard authz reads it, the application never mounts it.
    const mounting = allContainers(pod).filter((c) => (c.volumeMounts ?? []).some((m: Obj) => m.name === 'hopguard-istio-certs'));
    expect(mounting.map((c) => [c.name, c.volumeMounts.find((m: Obj) => m.name === 'hopguard-istio-certs')])).toEqual([
      ['hopguard-authz', { name: 'hopguard-istio-certs', mountPath: '/etc/istio-output-certs', readOnly: true }],
    ]);
  });

  it('mode: istio keeps the pod\'s own proxy config and user volume mounts, and refuses ones it cannot extend', () => {
    const own = orderPod({
      'hopguard.dev/inject': 'true',
      'proxy.istio.io/config': 'holdApplicationUntilProxyStarts: false\nproxyMetadata: { ISTIO_META_DNS_CAPTURE: "true" }\n',
      'sidecar.istio.io/userVolumeMount': '[{"name":"scratch","mountPath":"/scratch"}]',
    });
    const pod = inject(own, 'mode: istio\n');
    expect(JSON.parse(pod.metadata.annotations['proxy.istio.io/config'])).toEqual({
      holdApplicationUntilProxyStarts: false, proxyMetadata: { ISTIO_META_DNS_CAPTURE: 'true', OUTPUT_CERTS: '/etc/istio-output-certs' },
    });
    expect(JSON.parse(pod.metadata.annotations['sidecar.istio.io/userVolumeMount'])).toEqual([
      { name: 'scratch', mountPath: '/scratch' }, { name: 'hopguard-istio-certs', mountPath: '/etc/istio-output-certs' },
    ]);
    for (const [key, value, reason] of [
      ['proxy.istio.io/config', '[1, 2]', /proxy\.istio\.io\/config must be a ProxyConfig mapping/],
      ['proxy.istio.io/config', 'proxyMetadata: { OUTPUT_CERTS: /elsewhere }', /OUTPUT_CERTS must be \/etc\/istio-output-certs/],
      ['sidecar.istio.io/userVolumeMount', '{"a":', /must be a JSON list of volume mounts/],
    ] as const) {
      expect(() => planInjection(orderPod({ 'hopguard.dev/inject': 'true', [key]: value }), settingsWith('mode: istio\n')('shop')), value).toThrow(reason);
    }
  });

  it('no double injection: after Istio\'s injector, mode istio adds hopguard authz and no Envoy, and reviewed again adds nothing', () => {
    const pod = inject(istioInjectedPod(), 'mode: istio\n');
    expect(kubernetesProblems(pod)).toEqual([]);
    expect(allContainers(pod).map((c) => c.name)).toEqual(['hopguard-authz', 'istio-init', 'orders', 'istio-proxy']);
    expect(planInjection(pod, settingsWith('mode: istio\n')('shop'))).toEqual({ injected: false, reason: 'already injected' });
  });

  it('refuses a pod with Istio\'s proxy in mode hopguard (two Envoys), and one opting out of Istio in mode istio (none)', () => {
    expect(() => planInjection(istioInjectedPod(), settingsFor('shop'))).toThrow('the pod has Istio\'s proxy (istio-proxy): set mode: istio in the injector config, so that hopguard adds no Envoy of its own');
    const optedOut = orderPod({ 'hopguard.dev/inject': 'true', 'sidecar.istio.io/inject': 'false' });
    expect(() => planInjection(optedOut, settingsWith('mode: istio\n')('shop'))).toThrow(/mode: istio needs Istio's proxy in front of hopguard, but the pod opts out/);
    const byLabel = orderPod();
    byLabel.metadata.labels['sidecar.istio.io/inject'] = 'false';
    expect(() => planInjection(byLabel, settingsWith('mode: istio\n')('shop'))).toThrow(/opts out of Istio injection/);
  });

  it('in mode istio the application port may not be one of Istio\'s', () => {
    const pod = orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/app-port': '15006' });
    expect(() => planInjection(pod, settingsWith('mode: istio\n')('shop'))).toThrow(/the application port 15006 is one the sidecars use/);
    expect(planInjection(orderPod({ 'hopguard.dev/inject': 'true', 'hopguard.dev/app-port': '15443' }), settingsWith('mode: istio\n')('shop')).injected).toBe(true);
  });
});

describe('inject config', () => {
  it('defaults everything, and refuses unknown keys and a bad on_error with their paths', () => {
    expect(config).toMatchObject({ trustDomain: 'cluster.local', onError: 'deny', listen: { host: '0.0.0.0', port: 9443 }, mode: 'hopguard', sidecars: 'native' });
    expect(() => parseInjectConfig('mode: linkerd\nsidecars: init\n', { baseDir: '/' })).toThrow(/mode: expected hopguard or istio[\s\S]*sidecars: expected native or classic/);
    expect(() => parseInjectConfig('on_error: ignore\ntrust_domian: x\n', { baseDir: '/', source: 'inject.yaml' })).toThrow(ConfigError);
    try {
      parseInjectConfig('on_error: ignore\ntrust_domian: x\n', { baseDir: '/', source: 'inject.yaml' });
    } catch (err) {
      expect((err as ConfigError).problems).toEqual([
        { path: 'on_error', message: 'expected deny or allow' },
        { path: 'trust_domian', message: 'unknown key "trust_domian"' },
      ]);
    }
  });

  it('refuses an Envoy template without the local_app cluster', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'hopguard-inject-'));
    try {
      writeFileSync(path.join(dir, 'envoy.yaml'), 'static_resources: { clusters: [] }\n');
      expect(() => loadEnvoyTemplate(path.join(dir, 'envoy.yaml'))).toThrow(/needs a cluster named local_app/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the webhook over real HTTPS', () => {
  let dir: string;
  let ca: Ca;
  let webhook: RunningWebhook;

  beforeAll(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'hopguard-webhook-'));
    ca = createCa(dir, 'webhook-ca');
    const serving = issueCert(ca, dir, { name: 'webhook', dnsSans: ['localhost'], serverAuth: true });
    const served: InjectConfig & { tls: NonNullable<InjectConfig['tls']> } = {
      ...config, listen: { host: '127.0.0.1', port: 0 }, tls: { certFile: serving.certPath, keyFile: serving.keyPath },
    };
    webhook = await startWebhook(served, settingsFor, silentLogger);
  });
  afterAll(async () => {
    await webhook?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  /** As the API server calls it: POST, JSON, the server certificate checked against caBundle. */
  function call(method: string, urlPath: string, body?: string, base = webhook.url, trust = ca.certPem): Promise<{ status: number; type: string; text: string }> {
    const url = new URL(urlPath, base.replace('127.0.0.1', 'localhost'));
    return new Promise((resolve, reject) => {
      const req = request(url, { method, ca: trust, agent: false, lookup: (_h, _o, cb) => cb(null, [{ address: '127.0.0.1', family: 4 }]), headers: { 'content-type': 'application/json' } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => { text += chunk; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), text }));
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  it('answers an AdmissionReview with a patch that makes a valid pod', async () => {
    const res = await call('POST', '/mutate', JSON.stringify(review(orderPod())));
    expect(res).toMatchObject({ status: 200, type: 'application/json' });
    const body = JSON.parse(res.text) as AdmissionReviewResponse;
    expect(body).toMatchObject({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { allowed: true } });
    expect(kubernetesProblems(patched(orderPod(), decodePatch(body.response)))).toEqual([]);
  });

  it('answers 400 to a body that is not JSON, 405 to GET /mutate, 200 on /healthz', async () => {
    expect(await call('POST', '/mutate', '{"apiVersion": "admission.k8s.io/v1", ')).toMatchObject({ status: 400, text: 'expected an admission.k8s.io/v1 AdmissionReview\n' });
    expect((await call('GET', '/mutate')).status).toBe(405);
    expect(await call('GET', '/healthz')).toMatchObject({ status: 200, text: 'ok\n' });
  });

  it('picks up a renewed certificate from its files without a restart, and keeps the last good one over a broken pair', async () => {
    const tlsDir = path.join(dir, 'renewing');
    const first = issueCert(ca, tlsDir, { name: 'serving', dnsSans: ['localhost'], serverAuth: true });
    const events: string[] = [];
    const log = { ...silentLogger, info: (event: string) => events.push(event), warn: (event: string) => events.push(event) };
    const renewing = await startWebhook(
      { ...config, listen: { host: '127.0.0.1', port: 0 }, tls: { certFile: first.certPath, keyFile: first.keyPath } }, settingsFor, log, { tlsReloadMs: 50 },
    );
    try {
      expect((await call('GET', '/healthz', undefined, renewing.url)).status).toBe(200);
      const otherDir = path.join(dir, 'other');
      const otherCa = createCa(otherDir, 'other-ca');
      const renewed = issueCert(otherCa, otherDir, { name: 'serving', dnsSans: ['localhost'], serverAuth: true });
      writeFileSync(first.keyPath, readFileSync(renewed.keyPath));
      writeFileSync(first.certPath, readFileSync(renewed.certPath));
      await expect.poll(() => events.includes('inject_tls_reloaded'), { timeout: 5_000 }).toBe(true);
      expect((await call('GET', '/healthz', undefined, renewing.url, otherCa.certPem)).status).toBe(200);
      await expect(call('GET', '/healthz', undefined, renewing.url)).rejects.toThrow(/self-signed|unable to verify|certificate/);

      // A key that does not match the certificate, as a renewal caught half-way would leave.
      writeFileSync(first.keyPath, readFileSync(path.join(dir, 'webhook-key.pem')));
      await expect.poll(() => events.includes('inject_tls_reload_failed'), { timeout: 5_000 }).toBe(true);
      expect((await call('GET', '/healthz', undefined, renewing.url, otherCa.certPem)).status).toBe(200);
    } finally {
      await renewing.stop();
    }
  });

  it('hopguard inject --config serves it as a process, logs each decision without secrets, and exits 0 on SIGTERM', async () => {
    const configFile = path.join(dir, 'inject.yaml');
    writeFileSync(configFile, `listen: 127.0.0.1:0\ntls: { cert: webhook.pem, key: webhook-key.pem }\non_error: allow\n`);
    const proc = spawnCli(['inject', '--config', configFile]);
    try {
      const started = await proc.logEvent('inject_started');
      expect(started).toMatchObject({ trust_domain: 'cluster.local', on_error: 'allow' });
      const res = await call('POST', '/mutate', JSON.stringify(review(orderPod())), started.url);
      expect(JSON.parse(res.text).response.patchType).toBe('JSONPatch');
      expect(await proc.logEvent('inject_injected')).toMatchObject({ namespace: 'shop', pod: 'orders-7c9d-', identity: 'spiffe://cluster.local/ns/shop/sa/orders' });
    } finally {
      proc.child.kill('SIGTERM');
    }
    expect(await proc.exited).toBe(0);
    expect(proc.stderr()).not.toMatch(/BEGIN|PRIVATE/);
  });

  it('hopguard inject without --config or -f, or serving without tls, is a usage error', async () => {
    expect(await runCli(['inject'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--config FILE (or -f FILE to inject offline) is required') });
    const noTls = path.join(dir, 'no-tls.yaml');
    writeFileSync(noTls, 'listen: 127.0.0.1:0\n');
    expect(await runCli(['inject', '--config', noTls])).toMatchObject({ code: 2, stderr: expect.stringContaining('tls (cert, key) is required to serve the webhook') });
    expect((await runCli(['--help'])).stdout).toContain('hopguard inject -f FILE');
  });
});
