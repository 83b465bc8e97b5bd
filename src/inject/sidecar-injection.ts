import type { Operation } from 'rfc6902';
import { isRecord } from '../schema/config-schema.js';
import { renderBootstrap, type EnvoyTemplate } from './envoy-bootstrap.js';

/**
 * Sidecar injection as a pure function: a pod (or a pod template) in, the RFC 6902 JSON Patch
 * that adds Envoy and `hopguard authz` out. The admission webhook sends the patch; the offline
 * injector applies it. Only `add` operations, each on a path the pod is checked to have (or not
 * have), so the patch applies to exactly the object it was made for.
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
} as const;

/** On injected pods, for NetworkPolicies: only sidecars reach the issuer and Redis. */
export const INJECTED_LABEL = 'hopguard.dev/sidecar';

export const ENVOY_CONTAINER = 'hopguard-envoy';
export const AUTHZ_CONTAINER = 'hopguard-authz';
const TLS_VOLUME = 'hopguard-tls';
const AUTHZ_CONFIG_VOLUME = 'hopguard-authz-config';
const REDIS_VOLUME = 'hopguard-redis';
const SIDECAR_VOLUMES = [TLS_VOLUME, AUTHZ_CONFIG_VOLUME, REDIS_VOLUME];
/** Where hopguard authz finds the Redis credentials: redis.password_file: /etc/hopguard/redis/password. */
const REDIS_CREDENTIALS_DIR = '/etc/hopguard/redis';

/** Ports the sidecars take in the pod's network namespace (see envoy/sidecar.yaml; egress: egress.listen). */
export const SIDECAR_PORTS = { inbound: 15443, outbound: 15001, health: 15021, envoyAdmin: 15000, authz: 9191, authzAdmin: 9192, egress: 9194 };

export interface InjectionSettings {
  namespace: string;
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
  const ownContainers = [...containers, ...(Array.isArray(spec.initContainers) ? spec.initContainers : [])].filter(isRecord);
  const taken = ownContainers.map((c) => c.name);
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
  const appPort = applicationPort(annotations[ANNOTATIONS.appPort], containers);
  const authzConfigMap = resourceName(annotations[ANNOTATIONS.authzConfig], `hopguard-${serviceAccount}`, ANNOTATIONS.authzConfig);
  const tlsSecret = resourceName(annotations[ANNOTATIONS.tlsSecret], `hopguard-${serviceAccount}-tls`, ANNOTATIONS.tlsSecret);
  const redisSecret = resourceName(annotations[ANNOTATIONS.redisSecret], 'hopguard-redis-sidecar', ANNOTATIONS.redisSecret);

  const bootstrap = renderBootstrap(settings.envoyTemplate, { identity, serviceName: `${serviceAccount}.${namespace}`, appPort });
  const volumes = [
    { name: TLS_VOLUME, secret: { secretName: tlsSecret } },
    { name: AUTHZ_CONFIG_VOLUME, configMap: { name: authzConfigMap } },
    // Optional: a sidecar with store: memory needs none; one whose config names the file fails
    // with "cannot read redis.password_file" rather than the pod never starting.
    { name: REDIS_VOLUME, secret: { secretName: redisSecret, optional: true } },
  ];
  const add = (path: string, value: unknown): Operation => ({ op: 'add', path, value });
  const patch: Operation[] = [
    ...(pod.metadata === undefined ? [add('/metadata', {})] : []),
    ...(metadata.annotations === undefined ? [add('/metadata/annotations', {})] : []),
    add(`/metadata/annotations/${escape(ANNOTATIONS.status)}`, 'injected'),
    add(`/metadata/annotations/${escape(ANNOTATIONS.identity)}`, identity),
    ...(metadata.labels === undefined ? [add('/metadata/labels', {})] : []),
    add(`/metadata/labels/${escape(INJECTED_LABEL)}`, 'injected'),
    add('/spec/containers/-', envoyContainer(settings.images.envoy, bootstrap)),
    add('/spec/containers/-', authzContainer(settings.images.hopguard)),
    ...(spec.volumes === undefined ? [add('/spec/volumes', volumes)] : volumes.map((volume) => add('/spec/volumes/-', volume))),
  ];
  return { injected: true, identity, patch };
}

/** RFC 6901: `~` and `/` in a key become `~0` and `~1`. */
function escape(key: string): string {
  return key.replace(/~/g, '~0').replace(/\//g, '~1');
}

function applicationPort(annotation: unknown, containers: Record<string, unknown>[]): number {
  const taken = new Set(Object.values(SIDECAR_PORTS));
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

function envoyContainer(image: string, bootstrap: EnvoyTemplate): Record<string, unknown> {
  return {
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
    readinessProbe: { httpGet: { path: '/healthz/ready', port: SIDECAR_PORTS.health }, periodSeconds: 5 },
    resources: { requests: { cpu: '50m', memory: '64Mi' }, limits: { memory: '256Mi' } },
    // The envoy user of the official image.
    securityContext: { ...RESTRICTED, runAsUser: 101, runAsGroup: 101 },
    volumeMounts: [TLS_MOUNT],
  };
}

function authzContainer(image: string): Record<string, unknown> {
  return {
    name: AUTHZ_CONTAINER,
    image,
    args: ['authz', '--config', '/etc/hopguard/authz/authz.yaml'],
    ports: [{ name: 'hopguard-admin', containerPort: SIDECAR_PORTS.authzAdmin, protocol: 'TCP' }],
    livenessProbe: { httpGet: { path: '/healthz', port: SIDECAR_PORTS.authzAdmin }, periodSeconds: 10 },
    readinessProbe: { httpGet: { path: '/readyz', port: SIDECAR_PORTS.authzAdmin }, periodSeconds: 5 },
    resources: { requests: { cpu: '50m', memory: '96Mi' }, limits: { memory: '256Mi' } },
    securityContext: { ...RESTRICTED, runAsUser: 10001, runAsGroup: 10001 },
    // The only container that mounts the Redis credentials: not Envoy, never the application.
    volumeMounts: [
      { name: AUTHZ_CONFIG_VOLUME, mountPath: '/etc/hopguard/authz', readOnly: true },
      TLS_MOUNT,
      { name: REDIS_VOLUME, mountPath: REDIS_CREDENTIALS_DIR, readOnly: true },
    ],
  };
}
