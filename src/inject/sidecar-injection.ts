import type { Operation } from 'rfc6902';
import { parse as parseYaml } from 'yaml';
import { isRecord } from '../schema/config-schema.js';
import { renderBootstrap, type EnvoyTemplate } from './envoy-bootstrap.js';

/**
 * Sidecar injection as a pure function: a pod (or a pod template) in, the RFC 6902 JSON Patch
 * that adds Envoy and `hopguard authz` out (with `mode: istio`, hopguard authz alone: Istio's
 * injector adds the proxy). The admission webhook sends the patch; the offline injector applies
 * it. Only `add` operations, each on a path the pod is checked to have (or not have, or, for
 * the two Istio annotations it extends, have with what is kept), so the patch applies to exactly
 * the object it was made for.
 *
 * Layout: `native` (the default) adds the sidecars as Kubernetes native sidecars (init
 * containers with restartPolicy: Always, Kubernetes 1.29+), first among the init containers and
 * with startup probes, so the application's containers start only once hopguard answers
 * /readyz, and a Job completes when its application does; `classic` adds them to `containers`.
 */

export const ANNOTATIONS = {
  /** "true" asks for injection; set by the workload's owner on the pod template. */
  inject: 'hopguard.dev/inject',
  /** Set by injection: "injected". A pod that has it is never injected twice. */
  status: 'hopguard.dev/status',
  /** Set by injection: the SPIFFE ID the sidecars serve as. */
  identity: 'hopguard.dev/identity',
  /** The port the application listens on, on 127.0.0.1 (default: the first container's first port). */
  appPort: 'hopguard.dev/app-port',
  /** ConfigMap with authz.yaml (default: hopguard-<serviceAccount>). */
  authzConfig: 'hopguard.dev/authz-config',
  /** Secret with tls.crt, tls.key, ca.crt: the workload certificate (default: hopguard-<serviceAccount>-tls). */
  tlsSecret: 'hopguard.dev/tls-secret',
  /** Secret with the sidecar's Redis password and CA (default: hopguard-redis-sidecar); hopguard authz alone mounts it. */
  redisSecret: 'hopguard.dev/redis-secret',
  /** Secret with key.pem, the workload's audit signing key (default: hopguard-<serviceAccount>-audit); hopguard authz alone mounts it. */
  auditSecret: 'hopguard.dev/audit-secret',
} as const;

/** On injected pods, for NetworkPolicies: only sidecars reach the issuer and Redis. */
export const INJECTED_LABEL = 'hopguard.dev/sidecar';

/** Istio's names: what its injector writes, and what it reads from the pods hopguard injects. */
export const ISTIO = {
  /** Istio's injector's mark on a pod it injected. */
  status: 'sidecar.istio.io/status',
  /** "false" (annotation or label): Istio's injector leaves the pod alone. */
  inject: 'sidecar.istio.io/inject',
  proxyConfig: 'proxy.istio.io/config',
  userVolumeMount: 'sidecar.istio.io/userVolumeMount',
  proxyContainer: 'istio-proxy',
} as const;
/** Ports Istio's proxy and agent take in the pod's network namespace. */
const ISTIO_PORTS = [15000, 15001, 15004, 15006, 15008, 15020, 15021, 15053, 15090];
/**
 * Where Istio's agent writes the workload certificate it gives its proxy (proxyMetadata
 * OUTPUT_CERTS: cert-chain.pem, key.pem, root-cert.pem), in a memory volume shared with
 * hopguard authz alone: issuer_client binds tokens to the certificate the proxy presents, and
 * sees it rotate.
 */
export const ISTIO_CERTS_DIR = '/etc/istio-output-certs';
const ISTIO_CERTS_VOLUME = 'hopguard-istio-certs';

export const ENVOY_CONTAINER = 'hopguard-envoy';
export const AUTHZ_CONTAINER = 'hopguard-authz';
const TLS_VOLUME = 'hopguard-tls';
const AUTHZ_CONFIG_VOLUME = 'hopguard-authz-config';
const REDIS_VOLUME = 'hopguard-redis';
const AUDIT_VOLUME = 'hopguard-audit';
const SIDECAR_VOLUMES = [TLS_VOLUME, AUTHZ_CONFIG_VOLUME, REDIS_VOLUME, AUDIT_VOLUME, ISTIO_CERTS_VOLUME];
/** Where hopguard authz finds the Redis credentials: redis.password_file: /etc/hopguard/redis/password. */
const REDIS_CREDENTIALS_DIR = '/etc/hopguard/redis';
/** Where hopguard authz finds its audit signing key: audit.signing_key_file: /etc/hopguard/audit/key.pem. */
export const AUDIT_KEY_DIR = '/etc/hopguard/audit';

/** Ports the sidecars take in the pod's network namespace (see envoy/sidecar.yaml; egress: egress.listen). */
export const SIDECAR_PORTS = { inbound: 15443, outbound: 15001, health: 15021, envoyAdmin: 15000, authz: 9191, authzAdmin: 9192, egress: 9194 };

/** `hopguard`: Envoy and hopguard authz; `istio`: hopguard authz beside Istio's proxy. */
export type InjectionMode = 'hopguard' | 'istio';
/** `native`: init containers with restartPolicy: Always (Kubernetes 1.29+); `classic`: containers. */
export type SidecarLayout = 'native' | 'classic';

export interface InjectionSettings {
  namespace: string;
  mode: InjectionMode;
  sidecars: SidecarLayout;
  trustDomain: string;
  images: { envoy: string; hopguard: string };
  envoyTemplate: EnvoyTemplate;
}

export type InjectionPlan =
  | { injected: false; reason: string }
  | { injected: true; identity: string; patch: Operation[] };

/** A pod that asks for injection but cannot have it; the message says what to fix. */
export class InjectionError extends Error {
  override readonly name = 'InjectionError';
}

// RFC 1123 labels and subdomains: what Kubernetes allows for namespaces and service accounts.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;

export function planInjection(pod: unknown, settings: InjectionSettings): InjectionPlan {
  if (!isRecord(pod)) throw new InjectionError('the pod is not an object');
  const metadata = pod.metadata === undefined ? {} : pod.metadata;
  if (!isRecord(metadata)) throw new InjectionError('metadata is not an object');
  const annotations = metadata.annotations === undefined ? {} : metadata.annotations;
  if (!isRecord(annotations)) throw new InjectionError('metadata.annotations is not an object');

  if (annotations[ANNOTATIONS.inject] !== 'true') return { injected: false, reason: `not annotated ${ANNOTATIONS.inject}: "true"` };
  if (annotations[ANNOTATIONS.status] !== undefined) return { injected: false, reason: 'already injected' };

  const spec = pod.spec;
  if (!isRecord(spec) || !Array.isArray(spec.containers) || spec.containers.length === 0 || !spec.containers.every(isRecord)) {
    throw new InjectionError('spec.containers must be a non-empty list of containers');
  }
  const containers = spec.containers as Record<string, unknown>[];
  if (spec.initContainers !== undefined && !Array.isArray(spec.initContainers)) throw new InjectionError('spec.initContainers is not a list');
  const initContainers = (spec.initContainers ?? []) as unknown[];
  const ownContainers = [...containers, ...initContainers].filter(isRecord);
  const taken = ownContainers.map((c) => c.name);
  const labels = isRecord(metadata.labels) ? metadata.labels : {};
  checkIstio(settings.mode, annotations, labels, taken);
  for (const name of [ENVOY_CONTAINER, AUTHZ_CONTAINER]) {
    if (taken.includes(name)) throw new InjectionError(`a container is already named ${name}, but the pod has no ${ANNOTATIONS.status} annotation`);
  }
  // A mount names its volume, and the API server validates the pod after injection has added it:
  // the application could otherwise mount the workload key or the Redis credentials by name.
  for (const container of ownContainers) {
    const mounted = (Array.isArray(container.volumeMounts) ? container.volumeMounts : []).map((m) => (isRecord(m) ? m.name : undefined));
    const sidecarOnly = SIDECAR_VOLUMES.find((name) => mounted.includes(name));
    if (sidecarOnly !== undefined) {
      throw new InjectionError(`container ${String(container.name)} mounts ${sidecarOnly}, a volume injection adds for the sidecars alone: remove the mount`);
    }
  }
  if (spec.volumes !== undefined && !Array.isArray(spec.volumes)) throw new InjectionError('spec.volumes is not a list');
  const volumeNames = (spec.volumes ?? []).map((v) => (isRecord(v) ? v.name : undefined));
  // The application would see the sidecars' processes, and with them their files and environment.
  if (spec.shareProcessNamespace === true) {
    throw new InjectionError('spec.shareProcessNamespace: true would let the application read hopguard\'s Redis credentials: remove it');
  }
  for (const name of SIDECAR_VOLUMES) {
    if (volumeNames.includes(name)) throw new InjectionError(`a volume is already named ${name}`);
  }

  const namespace = settings.namespace;
  if (!DNS_LABEL.test(namespace)) throw new InjectionError(`namespace ${JSON.stringify(namespace)} is not a valid namespace name`);
  const serviceAccount = spec.serviceAccountName ?? spec.serviceAccount ?? 'default';
  if (typeof serviceAccount !== 'string' || !DNS_SUBDOMAIN.test(serviceAccount)) {
    throw new InjectionError('spec.serviceAccountName is not a valid service account name');
  }
  const identity = `spiffe://${settings.trustDomain}/ns/${namespace}/sa/${serviceAccount}`;
  const appPort = applicationPort(annotations[ANNOTATIONS.appPort], containers, settings.mode);
  const authzConfigMap = resourceName(annotations[ANNOTATIONS.authzConfig], `hopguard-${serviceAccount}`, ANNOTATIONS.authzConfig);
  const tlsSecret = resourceName(annotations[ANNOTATIONS.tlsSecret], `hopguard-${serviceAccount}-tls`, ANNOTATIONS.tlsSecret);
  const redisSecret = resourceName(annotations[ANNOTATIONS.redisSecret], 'hopguard-redis-sidecar', ANNOTATIONS.redisSecret);
  // One key per workload, named like its certificate: a key taken from one pod signs only that
  // workload's log, and `audit verify --key` tells the workloads apart.
  const auditSecret = resourceName(annotations[ANNOTATIONS.auditSecret], `hopguard-${serviceAccount}-audit`, ANNOTATIONS.auditSecret);

  const istio = settings.mode === 'istio';
  const volumes = [
    // With Istio the workload certificate is Istio's (ISTIO_CERTS_DIR): no Secret of hopguard's.
    ...(istio ? [] : [{ name: TLS_VOLUME, secret: { secretName: tlsSecret } }]),
    { name: AUTHZ_CONFIG_VOLUME, configMap: { name: authzConfigMap } },
    // Optional: a sidecar with store: memory needs none; one whose config names the file fails
    // with "cannot read redis.password_file" rather than the pod never starting.
    { name: REDIS_VOLUME, secret: { secretName: redisSecret, optional: true } },
    // Optional likewise: a config with audit on and no key fails with "cannot read
    // audit.signing_key_file". Default mode as the other two: the pod's fsGroup is the
    // application's, and hopguard authz alone mounts it.
    { name: AUDIT_VOLUME, secret: { secretName: auditSecret, optional: true } },
    ...(istio ? [{ name: ISTIO_CERTS_VOLUME, emptyDir: { medium: 'Memory' } }] : []),
  ];
  const native = settings.sidecars === 'native';
  const sidecars = [
    ...(istio ? [] : [envoyContainer(settings.images.envoy, renderBootstrap(settings.envoyTemplate, { identity, serviceName: `${serviceAccount}.${namespace}`, appPort }), native)]),
    authzContainer(settings.images.hopguard, native, istio),
  ];
  const add = (path: string, value: unknown): Operation => ({ op: 'add', path, value });
  const patch: Operation[] = [
    ...(pod.metadata === undefined ? [add('/metadata', {})] : []),
    ...(metadata.annotations === undefined ? [add('/metadata/annotations', {})] : []),
    add(`/metadata/annotations/${escape(ANNOTATIONS.status)}`, 'injected'),
    add(`/metadata/annotations/${escape(ANNOTATIONS.identity)}`, identity),
    ...(istio ? istioAnnotations(annotations).map(([key, value]) => add(`/metadata/annotations/${escape(key)}`, value)) : []),
    ...(metadata.labels === undefined ? [add('/metadata/labels', {})] : []),
    add(`/metadata/labels/${escape(INJECTED_LABEL)}`, 'injected'),
    // Native sidecars go first: the kubelet starts init containers in order, and the other init
    // containers (and the application) only after a sidecar's startup probe has passed.
    ...(!native ? sidecars.map((c) => add('/spec/containers/-', c))
      : spec.initContainers === undefined ? [add('/spec/initContainers', sidecars)]
        : sidecars.map((c, index) => add(`/spec/initContainers/${index}`, c))),
    ...(spec.volumes === undefined ? [add('/spec/volumes', volumes)] : volumes.map((volume) => add('/spec/volumes/-', volume))),
  ];
  return { injected: true, identity, patch };
}

/**
 * In mode hopguard a pod with Istio's proxy would have two Envoys on the same traffic; in mode
 * istio a pod that opts out of Istio would have none in front of hopguard.
 */
function checkIstio(mode: InjectionMode, annotations: Record<string, unknown>, labels: Record<string, unknown>, containerNames: unknown[]): void {
  const istioInjected = annotations[ISTIO.status] !== undefined || containerNames.includes(ISTIO.proxyContainer);
  if (mode === 'hopguard') {
    if (istioInjected) throw new InjectionError(`the pod has Istio's proxy (${ISTIO.proxyContainer}): set mode: istio in the injector config, so that hopguard adds no Envoy of its own`);
    return;
  }
  if (annotations[ISTIO.inject] === 'false' || labels[ISTIO.inject] === 'false') {
    throw new InjectionError(`mode: istio needs Istio's proxy in front of hopguard, but the pod opts out of Istio injection (${ISTIO.inject}: "false")`);
  }
}

/**
 * What Istio's injector needs to know in mode istio, kept beside what the pod already says:
 * its agent writes the workload certificate where hopguard authz reads it (proxyMetadata
 * OUTPUT_CERTS, and the volume mounted into its proxy), and the application waits for the
 * proxy (holdApplicationUntilProxyStarts) unless the pod says otherwise.
 */
function istioAnnotations(annotations: Record<string, unknown>): [string, string][] {
  let proxyConfig: Record<string, unknown> = {};
  const existing = annotations[ISTIO.proxyConfig];
  if (existing !== undefined) {
    let parsed: unknown;
    try {
      parsed = typeof existing === 'string' ? parseYaml(existing) : undefined;
    } catch {
      parsed = undefined;
    }
    if (!isRecord(parsed)) throw new InjectionError(`${ISTIO.proxyConfig} must be a ProxyConfig mapping (YAML or JSON)`);
    proxyConfig = parsed;
  }
  const metadata = proxyConfig.proxyMetadata ?? {};
  if (!isRecord(metadata)) throw new InjectionError(`${ISTIO.proxyConfig}: proxyMetadata must be a mapping`);
  if (metadata.OUTPUT_CERTS !== undefined && metadata.OUTPUT_CERTS !== ISTIO_CERTS_DIR) {
    throw new InjectionError(`${ISTIO.proxyConfig}: proxyMetadata.OUTPUT_CERTS must be ${ISTIO_CERTS_DIR}, where hopguard authz reads Istio's workload certificate`);
  }
  const merged = { holdApplicationUntilProxyStarts: true, ...proxyConfig, proxyMetadata: { ...metadata, OUTPUT_CERTS: ISTIO_CERTS_DIR } };

  let mounts: unknown[] = [];
  const existingMounts = annotations[ISTIO.userVolumeMount];
  if (existingMounts !== undefined) {
    let parsed: unknown;
    try {
      parsed = typeof existingMounts === 'string' ? JSON.parse(existingMounts) : undefined;
    } catch {
      parsed = undefined;
    }
    // Istio reads it as a JSON list of volume mounts, or a JSON map of them by name.
    if (!Array.isArray(parsed)) throw new InjectionError(`${ISTIO.userVolumeMount} must be a JSON list of volume mounts`);
    mounts = parsed;
  }
  if (mounts.some((m) => isRecord(m) && m.name === ISTIO_CERTS_VOLUME)) throw new InjectionError(`${ISTIO.userVolumeMount} already mounts ${ISTIO_CERTS_VOLUME}`);
  return [
    [ISTIO.proxyConfig, JSON.stringify(merged)],
    [ISTIO.userVolumeMount, JSON.stringify([...mounts, { name: ISTIO_CERTS_VOLUME, mountPath: ISTIO_CERTS_DIR }])],
  ];
}

/** RFC 6901: `~` and `/` in a key become `~0` and `~1`. */
function escape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function applicationPort(annotation: unknown, containers: Record<string, unknown>[], mode: InjectionMode): number {
  const { authz, authzAdmin, egress } = SIDECAR_PORTS;
  const taken = new Set(mode === 'istio' ? [authz, authzAdmin, egress, ...ISTIO_PORTS] : Object.values(SIDECAR_PORTS));
  let port: unknown;
  if (annotation !== undefined) {
    port = typeof annotation === 'string' && /^\d{1,5}$/.test(annotation) ? Number(annotation) : NaN;
  } else {
    const ports = containers[0]?.ports;
    port = Array.isArray(ports) && isRecord(ports[0]) ? ports[0].containerPort : undefined;
    if (port === undefined) {
      throw new InjectionError(`no application port: set ${ANNOTATIONS.appPort} or give the first container a containerPort`);
    }
  }
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new InjectionError(`${ANNOTATIONS.appPort} must be a port number from 1 to 65535`);
  }
  if (taken.has(port)) throw new InjectionError(`the application port ${port} is one the sidecars use (${[...taken].join(', ')})`);
  return port;
}

function resourceName(annotation: unknown, fallback: string, key: string): string {
  if (annotation === undefined) return fallback;
  if (typeof annotation !== 'string' || !DNS_SUBDOMAIN.test(annotation)) throw new InjectionError(`${key} must be a resource name`);
  return annotation;
}

/** Neither sidecar needs privileges, a writable root filesystem or any capability. */
const RESTRICTED = {
  runAsNonRoot: true,
  allowPrivilegeEscalation: false,
  readOnlyRootFilesystem: true,
  capabilities: { drop: ['ALL'] },
  seccompProfile: { type: 'RuntimeDefault' },
};

/**
 * The workload certificate, in the sidecars only: Envoy presents it, and hopguard authz's
 * issuer_client binds the tokens it obtains to it (/etc/hopguard/tls/tls.crt, tls.key, ca.crt).
 * Never the application's: with the key it could obtain tokens of its own.
 */
const TLS_MOUNT = { name: TLS_VOLUME, mountPath: '/etc/hopguard/tls', readOnly: true };

/** A native sidecar: an init container that keeps running, started once its startup probe passes. */
function asNative(container: Record<string, unknown>, startupProbe: Record<string, unknown>): Record<string, unknown> {
  // The kubelet probes every second for up to two minutes before it restarts the sidecar.
  return { ...container, restartPolicy: 'Always', startupProbe: { ...startupProbe, periodSeconds: 1, failureThreshold: 120 } };
}

function envoyContainer(image: string, bootstrap: EnvoyTemplate, native: boolean): Record<string, unknown> {
  const ready = { httpGet: { path: '/healthz/ready', port: SIDECAR_PORTS.health } };
  const container = {
    name: ENVOY_CONTAINER,
    image,
    // Not the image's entrypoint script: it may try to switch users, which a non-root pod cannot.
    command: ['envoy'],
    // The bootstrap is rendered for this pod; JSON is YAML, and Envoy reads it from the argument.
    args: ['--config-yaml', JSON.stringify(bootstrap), '--disable-hot-restart', '--log-level', 'warn'],
    ports: [
      { name: 'hopguard-in', containerPort: SIDECAR_PORTS.inbound, protocol: 'TCP' },
      { name: 'hopguard-health', containerPort: SIDECAR_PORTS.health, protocol: 'TCP' },
    ],
    readinessProbe: { ...ready, periodSeconds: 5 },
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    // The envoy user of the official image.
    securityContext: { ...RESTRICTED, runAsUser: 101, runAsGroup: 101 },
    volumeMounts: [TLS_MOUNT],
  };
  return native ? asNative(container, ready) : container;
}

function authzContainer(image: string, native: boolean, istio: boolean): Record<string, unknown> {
  const ready = { httpGet: { path: '/readyz', port: SIDECAR_PORTS.authzAdmin } };
  const container = {
    name: AUTHZ_CONTAINER,
    image,
    args: ['authz', '--config', '/etc/hopguard/authz/authz.yaml'],
    ports: [{ name: 'hopguard-admin', containerPort: SIDECAR_PORTS.authzAdmin, protocol: 'TCP' }],
    livenessProbe: { httpGet: { path: '/healthz', port: SIDECAR_PORTS.authzAdmin }, periodSeconds: 10 },
    readinessProbe: { ...ready, periodSeconds: 5 },
    resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
    securityContext: { ...RESTRICTED, runAsUser: 10001, runAsGroup: 10001 },
    // The only container that mounts the Redis credentials and the audit key: not Envoy, never the application.
    volumeMounts: [
      { name: AUTHZ_CONFIG_VOLUME, mountPath: '/etc/hopguard/authz', readOnly: true },
      ...(istio ? [] : [TLS_MOUNT]),
      { name: REDIS_VOLUME, mountPath: REDIS_CREDENTIALS_DIR, readOnly: true },
      { name: AUDIT_VOLUME, mountPath: AUDIT_KEY_DIR, readOnly: true },
      // Istio's workload certificate, written by its agent (see ISTIO_CERTS_DIR).
      ...(istio ? [{ name: ISTIO_CERTS_VOLUME, mountPath: ISTIO_CERTS_DIR, readOnly: true }] : []),
    ],
  };
  return native ? asNative(container, ready) : container;
}
