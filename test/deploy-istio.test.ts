import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { stringify } from 'yaml';
import { describe, expect, it } from 'vitest';
import { parseAuthzConfig } from '../src/config/load-authz-config.js';
import { parseIssuerConfig } from '../src/config/load-issuer-config.js';
import { loadEnvoyTemplate } from '../src/inject/envoy-bootstrap.js';
import { injectionSettings, parseInjectConfig } from '../src/inject/inject-config.js';
import { injectManifests } from '../src/inject/offline-inject.js';
import { INJECTED_LABEL, ISTIO_CERTS_DIR } from '../src/inject/sidecar-injection.js';
import { loadEnvoySchema, typeUrlsIn } from './support/deploy-envoy-schema.js';
import { kubernetesProblems } from './support/deploy-kubernetes-schema.js';
import { documents, kustomizeBuild, yamlFiles } from './support/manifests.js';
import { containersMounting, secretAt } from './support/pod-mounts.js';

/**
 * k8s/istio: the example in an Istio mesh. No Istio runs here: what Istio would refuse or
 * misread is caught by its CRD schemas (@kubernetes-models/istio, field names included), every
 * Envoy fragment an EnvoyFilter patches in is read against Envoy's own protos, and the pieces
 * that must agree (provider, ServiceEntry, hopguard's listen ports, the cluster Istio names) are
 * checked against each other.
 */

type Obj = Record<string, any>;
const ISTIO = path.resolve(import.meta.dirname, '../k8s/istio');
const EXT_AUTHZ = 'type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz';
/** Not a kustomize resource: installed with Istio (istioctl install -f / Helm meshConfig). */
const MESH_CONFIG = 'mesh-config.yaml';

const kustomization = documents(readFileSync(path.join(ISTIO, 'kustomization.yaml'), 'utf8'))[0]!;
const PATCHES = path.join(ISTIO, 'patches');
const OWN = yamlFiles(ISTIO).filter((file) => path.basename(file) !== MESH_CONFIG && !file.startsWith(`${PATCHES}/`))
  .flatMap((file) => documents(readFileSync(file, 'utf8')).map((doc) => ({ file: path.relative(ISTIO, file), doc })));
const own = (kind: string) => OWN.filter((r) => r.doc.kind === kind).map((r) => r.doc);
const meshConfig = documents(readFileSync(path.join(ISTIO, MESH_CONFIG), 'utf8'))[0]!;
const built = kustomizeBuild(ISTIO);
const builtNamed = (kind: string, name: string) => built.find((doc) => doc.kind === kind && doc.metadata.name === name)!;
const authzOf = (serviceAccount: string) => parseAuthzConfig(builtNamed('ConfigMap', `hopguard-${serviceAccount}`).data['authz.yaml'], { baseDir: '/' });

/** The Envoy message an EnvoyFilter patch's value is, by what it applies to (Istio's EnvoyFilter reference). */
const PATCH_MESSAGE: Record<string, string> = {
  HTTP_FILTER: 'envoy.extensions.filters.network.http_connection_manager.v3.HttpFilter',
  NETWORK_FILTER: 'envoy.config.listener.v3.Filter',
  LISTENER: 'envoy.config.listener.v3.Listener',
  FILTER_CHAIN: 'envoy.config.listener.v3.FilterChain',
  CLUSTER: 'envoy.config.cluster.v3.Cluster',
};
const shopFilters = own('EnvoyFilter').filter((f) => f.metadata.namespace === 'shop');
const patches = own('EnvoyFilter').flatMap((filter) => (filter.spec.configPatches as Obj[]).map((patch, index) => ({ name: `${filter.metadata.name}[${index}]`, patch })));
const envoy = loadEnvoySchema(patches.map((p) => p.patch.patch.value), Object.values(PATCH_MESSAGE));

describe('k8s/istio: the overlay', () => {
  it('lists only files that exist, and every file but the mesh config snippet', () => {
    expect(kustomization).toMatchObject({ apiVersion: 'kustomize.config.k8s.io/v1beta1', kind: 'Kustomization' });
    for (const resource of kustomization.resources as string[]) expect(existsSync(path.join(ISTIO, resource)), resource).toBe(true);
    const listed = (kustomization.resources as string[]).filter((r) => !r.startsWith('..'));
    expect([...new Set(OWN.map((r) => r.file))].sort()).toEqual([...listed].sort());
    const patchFiles = (kustomization.patches as Obj[]).filter((p) => p.path !== undefined).map((p) => p.path as string);
    expect(yamlFiles(PATCHES).map((file) => path.relative(ISTIO, file)).sort()).toEqual([...patchFiles].sort());
  });

  it('kubectl kustomize builds it, and every object validates, Istio\'s included', () => {
    expect(built.flatMap(kubernetesProblems)).toEqual([]);
    const kinds = new Set(built.map((doc) => doc.kind));
    for (const kind of ['EnvoyFilter', 'ServiceEntry', 'AuthorizationPolicy', 'PeerAuthentication', 'Deployment']) expect(kinds).toContain(kind);
  });

  it.each(OWN.map((r) => [`${r.file}: ${r.doc.kind}/${r.doc.metadata.name}`, r.doc] as const))('%s validates against Istio\'s CRD schema', (_, doc) => {
    expect(kubernetesProblems(doc)).toEqual([]);
  });

  it('the CRD check refuses misspelt fields at any depth, a wrong enum value and a wrong type', () => {
    const filter = structuredClone(own('EnvoyFilter')[0]!);
    filter.spec.workloadSelector.label = {};
    filter.spec.configPatches[0].match.listener.filterChain.filter.subfilter = { name: 'x' };
    filter.spec.configPatches[0].patch.operation = 'MERGED';
    expect(kubernetesProblems(filter)).toEqual([
      'EnvoyFilter/hopguard-inbound: data/spec/configPatches/0/patch/operation must be equal to one of the allowed values',
      'EnvoyFilter/hopguard-inbound: spec.workloadSelector.label: unknown field "label"',
      'EnvoyFilter/hopguard-inbound: spec.configPatches[0].match.listener.filterChain.filter.subfilter: unknown field "subfilter"',
    ]);
    const entry = structuredClone(own('ServiceEntry')[0]!);
    entry.spec.ports[0].number = 'grpc';
    entry.spec.endpoint = entry.spec.endpoints;
    expect(kubernetesProblems(entry)).toEqual([
      'ServiceEntry/hopguard-authz: data/spec/ports/0/number must be integer',
      'ServiceEntry/hopguard-authz: spec.endpoint: unknown field "endpoint"',
    ]);
  });

  it('Istio injects the shop namespace, and callers reach the applications on their HTTP port, through Istio\'s mTLS', () => {
    expect(builtNamed('Namespace', 'shop').metadata.labels).toMatchObject({ 'istio-injection': 'enabled', 'hopguard.dev/injection': 'enabled' });
    expect(own('PeerAuthentication').map((p) => [p.metadata.namespace, p.spec.mtls.mode]).sort()).toEqual([['hopguard-system', 'STRICT'], ['shop', 'STRICT']]);
    for (const name of ['orders', 'payments']) {
      const deployment = builtNamed('Deployment', name);
      const appPort = deployment.spec.template.spec.containers[0].ports[0].containerPort;
      expect(builtNamed('Service', name).spec.ports).toEqual([{ name: 'http', port: appPort, targetPort: appPort, appProtocol: 'http' }]);
      expect(builtNamed('NetworkPolicy', name).spec.ingress[0].ports).toEqual([{ protocol: 'TCP', port: appPort }]);
    }
    const orders = Object.fromEntries((builtNamed('Deployment', 'orders').spec.template.spec.containers[0].env as Obj[]).map((e) => [e.name, e.value]));
    expect(new URL(orders.OUTBOUND).host).toBe(orders.NEXT_HOST);
    expect(authzOf('orders').egress!.destinations.map((d) => d.host)).toContain(orders.NEXT_HOST.split(':')[0]);
  });
});

describe('k8s/istio: hopguard as Istio\'s extension provider', () => {
  const providers = meshConfig.spec.meshConfig.extensionProviders as Obj[];
  const entry = (name: string) => own('ServiceEntry').find((e) => e.metadata.name === name)!;

  it('the mesh config snippet is an IstioOperator whose provider is hopguard authz through the ServiceEntry, failing closed, without the body', () => {
    const { spec: _spec, ...withoutSpec } = meshConfig;
    expect(kubernetesProblems(withoutSpec)).toEqual([]);
    expect(Object.keys(meshConfig.spec)).toEqual(['meshConfig']);
    expect(providers).toHaveLength(1);
    const [provider] = providers;
    expect(Object.keys(provider!)).toEqual(['name', 'envoyExtAuthzGrpc']);
    // The fields of Istio's MeshConfig.ExtensionProvider.EnvoyExternalAuthorizationGrpcProvider.
    const grpc = provider!.envoyExtAuthzGrpc as Obj;
    expect(Object.keys(grpc).every((key) => ['service', 'port', 'timeout', 'failOpen', 'clearRouteCache', 'statusOnError', 'includeRequestBodyInCheck'].includes(key))).toBe(true);
    expect(grpc).toEqual({ service: 'hopguard-authz.local', port: 9191, timeout: '1s', failOpen: false, statusOnError: '503' });
    const authz = entry('hopguard-authz').spec;
    expect(authz.hosts).toEqual([grpc.service]);
    expect(authz.ports).toEqual([{ name: 'grpc', number: grpc.port, protocol: 'GRPC' }]);
    expect(authz).toMatchObject({ endpoints: [{ address: '127.0.0.1' }], resolution: 'STATIC', exportTo: ['.'] });
  });

  it('every AuthorizationPolicy is CUSTOM with that provider and selects a workload whose hopguard listens where the ServiceEntry points', () => {
    const policies = own('AuthorizationPolicy');
    expect(policies.map((p) => p.metadata.name).sort()).toEqual(['hopguard-orders', 'hopguard-payments']);
    for (const policy of policies) {
      expect(policy.spec).toMatchObject({ action: 'CUSTOM', provider: { name: providers[0]!.name }, rules: [{}] });
      const deployment = built.find((d) => d.kind === 'Deployment' && d.metadata.namespace === policy.metadata.namespace
        && JSON.stringify(d.spec.template.metadata.labels) === JSON.stringify(policy.spec.selector.matchLabels))!;
      expect(deployment, policy.metadata.name).toBeDefined();
      const authz = authzOf(deployment.spec.template.spec.serviceAccountName);
      expect(authz.listen).toEqual({ kind: 'tcp', host: '127.0.0.1', port: entry('hopguard-authz').spec.ports[0].number });
    }
  });
});

describe('k8s/istio: the EnvoyFilters', () => {
  it.each(patches.map((p) => [p.name, p.patch] as const))('%s: its value is a valid Envoy message, typed_config resolved by its @type', (_, patch) => {
    const message = PATCH_MESSAGE[patch.applyTo as string];
    expect(message, `applyTo ${patch.applyTo}`).toBeDefined();
    expect(typeUrlsIn(patch.patch.value)).toHaveLength(1);
    // A MERGE value is merged into what Istio generated: the fields Envoy requires are there already.
    const merged = patch.patch.operation === 'MERGE';
    expect(envoy.check(patch.patch.value, message).filter((problem) => !(merged && / (required|is required in) /.test(problem)))).toEqual([]);
  });

  it('the Envoy check refuses a misspelt or misplaced field and an unknown @type inside a patch', () => {
    const value = structuredClone(patches[0]!.patch.patch.value);
    value.typed_config.include_peer_certificat = true;
    value.typed_config.transport_api_version = 'V4';
    value.typed_config.grpc_service = { envoy_grpc: { clusterName: 'x', cluster: 'y' } };
    const message = PATCH_MESSAGE.HTTP_FILTER!;
    expect(envoy.check(value, message)).toEqual([
      'typed_config.transport_api_version: "V4" is not a value of envoy.config.core.v3.ApiVersion (AUTO, V2, V3)',
      'typed_config.include_peer_certificat: unknown field "include_peer_certificat" in envoy.extensions.filters.http.ext_authz.v3.ExtAuthz',
      'typed_config.grpc_service.envoy_grpc.cluster: unknown field "cluster" in envoy.config.core.v3.GrpcService.EnvoyGrpc',
    ]);
    expect(envoy.check({ name: 'x', typed_config: { '@type': 'type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope' } }, message))
      .toEqual(['typed_config.@type: unresolvable type "type.googleapis.com/envoy.extensions.filters.http.nope.v3.Nope" (not in Envoy\'s protos)']);
  });

  it('apply only to the pods hopguard injected, and the issuer\'s to the issuer', () => {
    expect(shopFilters.map((f) => f.metadata.name).sort()).toEqual(['hopguard-egress', 'hopguard-inbound']);
    for (const filter of shopFilters) expect(filter.spec.workloadSelector).toEqual({ labels: { [INJECTED_LABEL]: 'injected' } });
    const issuerFilter = own('EnvoyFilter').find((f) => f.metadata.name === 'hopguard-issuer-xfcc')!;
    expect(issuerFilter.metadata.namespace).toBe('hopguard-system');
    expect(issuerFilter.spec.workloadSelector.labels).toEqual({ 'app.kubernetes.io/name': 'hopguard-issuer' });
    expect(builtNamed('Deployment', 'hopguard-issuer').spec.template.metadata.labels).toMatchObject(issuerFilter.spec.workloadSelector.labels);
  });

  it('inbound: merges the peer certificate and the V3 transport into the ext_authz filter Istio generates for CUSTOM, with no body', () => {
    const [inbound] = own('EnvoyFilter').find((f) => f.metadata.name === 'hopguard-inbound')!.spec.configPatches as Obj[];
    expect(inbound).toMatchObject({
      applyTo: 'HTTP_FILTER',
      match: { context: 'SIDECAR_INBOUND', listener: { filterChain: { filter: { name: 'envoy.filters.network.http_connection_manager', subFilter: { name: 'envoy.filters.http.ext_authz' } } } } },
      patch: { operation: 'MERGE' },
    });
    const config = inbound!.patch.value.typed_config as Obj;
    expect(config).toMatchObject({ '@type': EXT_AUTHZ, include_peer_certificate: true, transport_api_version: 'V3' });
    expect(config).not.toHaveProperty('with_request_body');
    // A merge never sets where the check goes or whether it fails open: Istio's provider does.
    expect(config).not.toHaveProperty('grpc_service');
    expect(config).not.toHaveProperty('failure_mode_allow');
  });

  it('outbound: adds the egress check before the router, on hopguard\'s egress port through Istio\'s cluster for the ServiceEntry, failing closed', () => {
    const [outbound] = own('EnvoyFilter').find((f) => f.metadata.name === 'hopguard-egress')!.spec.configPatches as Obj[];
    expect(outbound).toMatchObject({
      applyTo: 'HTTP_FILTER',
      match: { context: 'SIDECAR_OUTBOUND', listener: { filterChain: { filter: { name: 'envoy.filters.network.http_connection_manager', subFilter: { name: 'envoy.filters.http.router' } } } } },
      patch: { operation: 'INSERT_BEFORE' },
    });
    const config = outbound!.patch.value.typed_config as Obj;
    const egressEntry = own('ServiceEntry').find((e) => e.metadata.name === 'hopguard-egress')!.spec;
    // Istio's cluster names: outbound|<port>|<subset>|<host>.
    expect(config.grpc_service.envoy_grpc).toEqual({ cluster_name: `outbound|${egressEntry.ports[0].number}||${egressEntry.hosts[0]}`, authority: egressEntry.hosts[0] });
    expect(config).toMatchObject({ transport_api_version: 'V3', failure_mode_allow: false, status_on_error: { code: 'ServiceUnavailable' } });
    expect(config).not.toHaveProperty('with_request_body');
    expect(egressEntry).toMatchObject({ endpoints: [{ address: '127.0.0.1' }], resolution: 'STATIC', exportTo: ['.'] });
    const envoyTimeoutMs = Number(String(config.grpc_service.timeout).replace(/s$/, '')) * 1000;
    for (const serviceAccount of ['frontend', 'orders', 'payments']) {
      const authz = authzOf(serviceAccount);
      if (authz.egress === undefined) continue;
      expect(authz.egress.listen, serviceAccount).toEqual({ kind: 'tcp', host: '127.0.0.1', port: egressEntry.ports[0].number });
      // hopguard answers issuer_unavailable before Envoy's own timeout would answer for it.
      expect(authz.issuerClient!.timeoutMs, serviceAccount).toBeLessThan(envoyTimeoutMs);
    }
  });
});

describe('k8s/istio: the injector in mode istio', () => {
  const inject = parseInjectConfig(builtNamed('ConfigMap', 'hopguard-injector').data['inject.yaml'], { baseDir: '/' });
  const settingsFor = injectionSettings(inject, loadEnvoyTemplate(inject.envoyTemplate));

  it('its config loads: mode istio, native sidecars, failing closed as the webhook does', () => {
    expect({ mode: inject.mode, sidecars: inject.sidecars, onError: inject.onError }).toEqual({ mode: 'istio', sidecars: 'native', onError: 'deny' });
    expect(builtNamed('MutatingWebhookConfiguration', 'hopguard-sidecar-injector').webhooks[0].failurePolicy).toBe('Fail');
  });

  it('the replaced config keeps the base\'s decommission: the same store, Redis user, revocation lifetime and audit', () => {
    const baseConfigMap = documents(readFileSync(path.join(ISTIO, '../base/injector.yaml'), 'utf8')).find((d) => d.kind === 'ConfigMap')!;
    const base = parseInjectConfig(baseConfigMap.data['inject.yaml'], { baseDir: '/' });
    const decommission = ({ store, redis, revocationTtlMs, audit }: typeof inject) => ({ store, redis, revocationTtlMs, audit });
    expect(decommission(inject)).toEqual(decommission(base));
    expect(inject.store).not.toBe('memory');
  });

  it.each(['orders', 'payments', 'frontend'])('%s, injected as the overlay builds it, validates, with hopguard authz alone, selected by the EnvoyFilters', (name) => {
    const deployment = builtNamed('Deployment', name);
    const out = injectManifests(stringify(deployment), settingsFor, 'shop');
    const [injected] = documents(out.yaml);
    expect(kubernetesProblems(injected)).toEqual([]);
    const pod = injected!.spec.template;
    expect([...pod.spec.initContainers, ...pod.spec.containers].map((c: Obj) => c.name)).toEqual(['hopguard-authz', name]);
    for (const filter of shopFilters) {
      for (const [key, value] of Object.entries(filter.spec.workloadSelector.labels as Record<string, string>)) expect(pod.metadata.labels[key]).toBe(value);
    }
    expect(JSON.parse(pod.metadata.annotations['proxy.istio.io/config']).proxyMetadata).toEqual({ OUTPUT_CERTS: '/etc/istio-output-certs' });
    // Its audit key as in the example: the workload's own Secret, in hopguard authz alone, read-only.
    const keyDir = path.posix.dirname(authzOf(name).audit.signingKeyFile!);
    expect(secretAt(pod.spec, keyDir, 'hopguard-authz')).toEqual({ secretName: `hopguard-${name}-audit`, readOnly: true });
    expect(containersMounting(pod.spec, `hopguard-${name}-audit`)).toEqual(['hopguard-authz']);
  });
});

describe('k8s/istio: the issuer behind its own Istio proxy, the sidecars reaching it through theirs', () => {
  const issuerDeployment = builtNamed('Deployment', 'hopguard-issuer');
  const issuerConfig = parseIssuerConfig(builtNamed('ConfigMap', 'hopguard-issuer').data['issuer.yaml'], { baseDir: '/' });
  const issuerService = builtNamed('Service', 'hopguard-issuer');

  it('serves plain HTTP with client_auth: xfcc, trusting Istio\'s inbound proxy address, on the port its Service and NetworkPolicy name', () => {
    expect(issuerConfig.tls).toBeUndefined();
    expect(issuerConfig.clientAuth).toEqual({ mode: 'xfcc', trustedProxies: [{ address: '127.0.0.6', prefix: 32, family: 'ipv4' }, { address: '127.0.0.1', prefix: 32, family: 'ipv4' }] });
    const pod = issuerDeployment.spec.template;
    expect(pod.metadata.labels['sidecar.istio.io/inject']).toBe('true');
    const [container] = pod.spec.containers as Obj[];
    const port = (container!.ports as Obj[]).find((p) => p.name === issuerService.spec.ports[0].targetPort)!;
    expect(port.containerPort).toBe(issuerConfig.listen.port);
    expect(issuerService.spec.ports[0]).toMatchObject({ name: 'http', appProtocol: 'http' });
    expect(builtNamed('NetworkPolicy', 'hopguard-issuer').spec.ingress[0].ports).toEqual([{ protocol: 'TCP', port: issuerConfig.listen.port }]);
    // No TLS Secret of its own is mounted any more.
    expect((pod.spec.volumes as Obj[]).map((v) => v.secret?.secretName)).not.toContain('hopguard-issuer-tls');
    expect((container!.volumeMounts as Obj[]).map((m) => m.mountPath)).not.toContain('/etc/hopguard/tls');
  });

  it('audits as in the base: to stdout, with the key its pod still mounts read-only (0440) from hopguard-issuer-audit', () => {
    const baseConfigMap = documents(readFileSync(path.join(ISTIO, '../base/issuer.yaml'), 'utf8')).find((d) => d.kind === 'ConfigMap')!;
    expect(issuerConfig.audit).toEqual(parseIssuerConfig(baseConfigMap.data['issuer.yaml'], { baseDir: '/' }).audit);
    expect(issuerConfig.audit.output).toEqual({ kind: 'stdout' });
    const keyDir = path.posix.dirname(issuerConfig.audit.signingKeyFile!);
    expect(secretAt(issuerDeployment.spec.template.spec, keyDir)).toEqual({ secretName: 'hopguard-issuer-audit', readOnly: true, defaultMode: 0o440 });
  });

  it('its proxy drops any XFCC a client sent and writes its own element with URI and Cert; only mTLS reaches it', () => {
    const [patch] = own('EnvoyFilter').find((f) => f.metadata.name === 'hopguard-issuer-xfcc')!.spec.configPatches as Obj[];
    expect(patch).toMatchObject({
      applyTo: 'NETWORK_FILTER', patch: { operation: 'MERGE' },
      match: { context: 'SIDECAR_INBOUND', listener: { filterChain: { filter: { name: 'envoy.filters.network.http_connection_manager' } } } },
    });
    expect(patch!.patch.value.typed_config).toMatchObject({ forward_client_cert_details: 'SANITIZE_SET', set_current_client_cert_details: { uri: true, cert: true } });
    const strict = own('PeerAuthentication').find((p) => p.metadata.namespace === 'hopguard-system')!;
    expect(strict.spec).toEqual({ selector: { matchLabels: issuerDeployment.spec.selector.matchLabels }, mtls: { mode: 'STRICT' } });
  });

  it.each(['frontend', 'orders', 'payments'])('%s: the same policy as the example, with the issuer and its keys through the mesh and Istio\'s certificate', (serviceAccount) => {
    const example = parseAuthzConfig(
      documents(readFileSync(path.resolve(ISTIO, `../overlays/example/${serviceAccount}.yaml`), 'utf8')).find((d) => d.kind === 'ConfigMap')!.data['authz.yaml'],
      { baseDir: '/' },
    );
    const istio = authzOf(serviceAccount);
    const host = `${issuerService.metadata.name}.${issuerService.metadata.namespace}.svc`;
    expect(istio.issuerClient).toEqual({
      tokenEndpoint: `http://${host}/token`, transport: 'mesh',
      certFile: `${ISTIO_CERTS_DIR}/cert-chain.pem`, keyFile: `${ISTIO_CERTS_DIR}/key.pem`, timeoutMs: example.issuerClient!.timeoutMs,
    });
    expect(issuerService.spec.ports[0].port).toBe(80);
    expect(istio.issuers).toEqual(example.issuers.map(({ jwksCaFile: _ca, ...rest }) => ({ ...rest, jwksUri: `http://${host}/.well-known/jwks.json` })));
    expect(istio.issuers.every((i) => i.issuer === issuerConfig.issuer)).toBe(true);
    // hopguard's own calls leave through the same outbound listeners: other_hosts deny would refuse them.
    expect(istio.egress?.otherHosts).toBe('passthrough');
    const { issuers: _a, issuerClient: _b, egress: egressIstio, ...restIstio } = istio;
    const { issuers: _c, issuerClient: _d, egress: egressExample, ...restExample } = example;
    expect(restIstio).toEqual(restExample);
    expect(istio.audit).toMatchObject({ output: { kind: 'stdout' }, allows: 'all' });
    expect({ ...egressIstio, otherHosts: undefined }).toEqual({ ...egressExample, otherHosts: undefined });
  });
});
